"""What is installed in or asked of the engine: the flavor-aware engine adapter, templates, bootstrap,
retention. Imports :mod:`kaudit_elk.events` and :mod:`kaudit_elk.base`."""
