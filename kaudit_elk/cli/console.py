"""The one place that owns output and exit codes: data to stdout, messages to stderr."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, TextIO, TypeVar

import orjson

from kaudit_elk.base.errors import EXIT_ERROR, EXIT_USAGE, KauditError

T = TypeVar("T")


class Console:
    """Writes data to stdout and messages/progress to stderr; honours --quiet."""

    def __init__(self, quiet: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.quiet = quiet
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def data(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") else text + "\n")

    def json(self, obj: Any) -> None:
        self.out.write(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode() + "\n")

    def ndjson(self, objs: Iterable[Any]) -> None:
        for obj in objs:
            self.out.write(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode() + "\n")

    def info(self, msg: str) -> None:
        if not self.quiet:
            self.err.write(msg + "\n")
            self.err.flush()

    def warn(self, msg: str) -> None:
        self.err.write(f"warning: {msg}\n")
        self.err.flush()

    def error(self, msg: str) -> None:
        self.err.write(f"error: {msg}\n")
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
    except Exception as exc:  # noqa: BLE001 - last-resort handler, never prints locals
        console.error(f"unexpected {type(exc).__name__}: {exc}")
        raise typer.Exit(EXIT_ERROR) from None
