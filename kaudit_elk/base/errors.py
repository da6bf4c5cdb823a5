"""Exceptions and the exit codes they map to (the CLI's single error handler uses these)."""

from __future__ import annotations

# Documented exit codes (README "Exit codes").
EXIT_OK = 0
EXIT_ERROR = 1  # unexpected failure
EXIT_USAGE = 2  # bad flags, config or input that stops the run
EXIT_ENGINE = 3  # engine unreachable, TLS, auth, unsupported version
EXIT_PARTIAL = 4  # the run finished but some records were dead-lettered / rejected
EXIT_ALERTS = 10  # opt-in: alerts at or above --fail-on severity were raised
EXIT_FINDINGS = 5  # policy check, verify, doctor: the check ran and found problems


class KauditError(Exception):
    """Base class: a failure with a message meant for the user."""

    exit_code = EXIT_ERROR


class ConfigError(KauditError):
    """Invalid flags, environment variables or config file."""

    exit_code = EXIT_USAGE


class InputError(KauditError):
    """Input that cannot be read at all (missing file, unreadable stream)."""

    exit_code = EXIT_USAGE


class ContentError(KauditError):
    """Shipped or user content (templates, rules, dashboards) is invalid."""

    exit_code = EXIT_USAGE


class EngineError(KauditError):
    """The search engine could not be used: unreachable, TLS, auth, version, or a failed request."""

    exit_code = EXIT_ENGINE
