"""The one place that owns output and exit codes: data to stdout, messages to stderr."""

from __future__ import annotations

import errno
import sys
import time
from typing import Any, Callable, Iterable, TextIO, TypeVar

import orjson

from kaudit_elk.base.errors import EXIT_ERROR, EXIT_USAGE, KauditError
from kaudit_elk.base.redact import redact

T = TypeVar("T")


_warned: set[str] = set()


def warn_once(msg: str) -> None:
    """A warning on stderr, at most once per process (also with --quiet: warnings are never hidden)."""
    if msg not in _warned:
        _warned.add(msg)
        sys.stderr.write(f"warning: {redact(msg)}\n")
        sys.stderr.flush()


class Console:
    """Writes data to stdout and messages/progress to stderr; honours --quiet.

    Every text line and message passes :func:`kaudit_elk.base.redact.redact`: no credential, URL
    userinfo, query-string token or registered secret reaches the terminal.
    """

    def __init__(self, quiet: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.quiet = quiet
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def data(self, text: str) -> None:
        text = redact(text)
        self.out.write(text if text.endswith("\n") else text + "\n")

    def json(self, obj: Any) -> None:
        self.out.write(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode() + "\n")

    def ndjson(self, objs: Iterable[Any]) -> None:
        for obj in objs:
            self.out.write(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode() + "\n")

    def info(self, msg: str) -> None:
        if not self.quiet:
            self.err.write(redact(msg) + "\n")
            self.err.flush()

    def warn(self, msg: str) -> None:
        self.err.write(f"warning: {redact(msg)}\n")
        self.err.flush()

    def error(self, msg: str) -> None:
        self.err.write(f"error: {redact(msg)}\n")
        self.err.flush()

    def progress(self, unit: str = "events") -> "Progress":
        return Progress(self, unit)


class Progress:
    """A one-line progress display with a rate, redrawn at most every 0.5 s; silent when quiet or not a TTY."""

    def __init__(self, console: Console, unit: str) -> None:
        self.console = console
        self.unit = unit
        self.count = 0
        self.start = time.monotonic()
        self._last = 0.0
        self.enabled = not console.quiet and getattr(console.err, "isatty", lambda: False)()

    def advance(self, n: int = 1, extra: str = "") -> None:
        self.count += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= 0.5:
            self._last = now
            rate = self.count / max(now - self.start, 1e-9)
            self.console.err.write(f"\r{self.count:,} {self.unit} ({rate:,.0f}/s){'  ' + extra if extra else ''}\x1b[K")
            self.console.err.flush()

    def close(self) -> None:
        if self.enabled:
            self.console.err.write("\r\x1b[K")
            self.console.err.flush()


_ADDRESS_ERRORS = {
    errno.EADDRINUSE: "another process listens on that port: stop it or choose another --listen port",
    errno.EADDRNOTAVAIL: "that address is not on this machine: check the --listen host",
    errno.EACCES: "ports below 1024 need privileges: choose a port of 1024 or more",
}


def run_exit(console: Console, fn: Callable[[], int]) -> None:
    """:func:`run` ``fn`` and exit with the code it returns when that is not 0 (findings, alerts)."""
    import typer

    code = run(console, fn)
    if code:
        raise typer.Exit(code)


def run(console: Console, fn: Callable[[], T]) -> T:
    """Call ``fn``; map known errors to messages on stderr and documented exit codes."""
    import typer

    try:
        return fn()
    except (typer.Exit, typer.Abort):
        raise
    except KauditError as exc:
        console.error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.error("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:
        raise typer.Exit(0) from None
    except FileNotFoundError as exc:
        console.error(f"{exc.filename}: no such file")
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:
        if exc.errno in _ADDRESS_ERRORS:
            console.error(f"cannot listen: {exc.strerror or exc} ({_ADDRESS_ERRORS[exc.errno]})")
            raise typer.Exit(EXIT_USAGE) from None
        where = f"{exc.filename}: " if exc.filename else ""
        console.error(f"{where}{exc.strerror or exc}")
        raise typer.Exit(EXIT_ERROR) from None
    except Exception as exc:  # noqa: BLE001 - last-resort handler, never prints locals
        console.error(f"unexpected {type(exc).__name__}: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
