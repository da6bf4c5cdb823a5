"""The one reader of times and durations, for options, content and stored values alike.

Grammar::

    duration  := number unit                    30s  5m  1.5h  7d  2w  500ms
    number    := digits [ "." digits ]          never negative, never empty
    unit      := ms | s | m | h | d | w         (Sigma timespans: s m h d w M y, whole numbers only;
                                                 M = 30 days, y = 365 days)
    time      := "now" | "now-" duration | ISO8601
    ISO8601   := 2026-01-31 | 2026-01-31T12:00:00[.fraction][Z|+HH:MM]   (a space may replace the T;
                                                 any number of fraction digits; no zone = UTC)

Errors raised for user input are :class:`~kaudit_elk.base.errors.ConfigError` (exit code 2) naming the
option or field and the value; :func:`parse_timespan` raises ValueError (the rule loader words it per
file). All results are aware UTC datetimes or non-negative timedeltas / seconds.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from kaudit_elk.base.errors import ConfigError

#: Duration units in seconds (options and settings).
UNITS: Final[dict[str, float]] = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Sigma timespan units in seconds (correlation ``timespan``, new-terms ``history``).
SIGMA_UNITS: Final[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
DURATION_HINT: Final = "a duration like 30s, 5m, 1h or 7d"
TIME_HINT: Final = "ISO8601 (2026-01-31, 2026-01-31T12:00:00Z), now or now-<duration> (now-15m, now-7d)"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SPAN = re.compile(r"(\d+)([smhdwMy])")
_FRACTION = re.compile(r"\.(\d+)")


def _duration_seconds(text: Any) -> float | None:
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def duration_seconds(text: Any, option: str) -> float:
    """``30s`` / ``5m`` / ``1.5h`` / ``7d`` / ``2w`` / ``500ms`` -> seconds; ConfigError naming ``option``."""
    seconds = _duration_seconds(text)
    if seconds is None:
        raise ConfigError(f"{option}: expected {DURATION_HINT}, got {text!r}")
    return seconds


def parse_duration(text: Any, option: str) -> timedelta:
    """:func:`duration_seconds` as a timedelta."""
    return timedelta(seconds=duration_seconds(text, option))


def setting_seconds(value: Any) -> float | None:
    """An engine's time setting (``5s``, ``500ms``, ``1m``) in seconds; None for ``-1`` or unreadable."""
    return _duration_seconds(str(value))


def parse_timespan(text: Any) -> int:
    """A Sigma timespan (``5m``, ``1h``, ``7d``, ``1M``) -> whole seconds; ValueError when malformed."""
    m = _SPAN.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"bad timespan {text!r} (expected e.g. 30s, 5m, 1h, 7d)")
    return int(m.group(1)) * SIGMA_UNITS[m.group(2)]


def _aware(value: Any) -> datetime | None:
    """ISO8601 text -> datetime with a zone (UTC when it had none), or None. Tries the text as is first
    (the common case, and all there is to it on Python 3.11+), then with ``Z`` and the fraction rewritten
    for older Pythons, which read only ``+00:00`` and exactly 3 or 6 fraction digits."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        text = value.strip().replace("Z", "+00:00")
        m = _FRACTION.search(text, 19)
        if m and len(m.group(1)) != 6:
            text = f"{text[:m.start()]}.{m.group(1)[:6].ljust(6, '0')}{text[m.end():]}"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def iso_time(value: Any) -> datetime | None:
    """ISO8601 text -> aware UTC datetime; None when it is not one (lenient: for stored values)."""
    dt = _aware(value)
    return dt.astimezone(timezone.utc) if dt is not None else None


def epoch(value: Any) -> float | None:
    """ISO8601 text -> UTC epoch seconds; None when it is not one (the detectors' hot path)."""
    dt = _aware(value)
    return dt.timestamp() if dt is not None else None


def parse_iso(value: Any, field: str) -> datetime:
    """:func:`iso_time` for a value that must be a time; ConfigError naming ``field`` and the value."""
    dt = iso_time(value)
    if dt is None:
        raise ConfigError(f"{field}: expected an ISO8601 time (2026-01-31T12:00:00Z), got {value!r}")
    return dt


def parse_time(text: Any, option: str, now: datetime) -> datetime:
    """``now``, ``now-<duration>`` or ISO8601 -> aware UTC datetime; ConfigError naming ``option``."""
    stripped = text.strip() if isinstance(text, str) else text
    if stripped == "now":
        return now
    if isinstance(stripped, str) and stripped.startswith("now-"):
        seconds = _duration_seconds(stripped[4:])
        if seconds is None:
            raise ConfigError(f"{option}: expected {TIME_HINT}, got {text!r} ({stripped[4:]!r} is not {DURATION_HINT})")
        return now - timedelta(seconds=seconds)
    dt = iso_time(stripped)
    if dt is None:
        raise ConfigError(f"{option}: expected {TIME_HINT}, got {text!r}")
    return dt
