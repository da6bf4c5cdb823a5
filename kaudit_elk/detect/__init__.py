"""Running rules on data: ``scan`` (files), ``scheduled`` (cron runs against the engine),
``engine_search`` (compiled rules executed in the engine), ``outputs`` (notifications)."""
