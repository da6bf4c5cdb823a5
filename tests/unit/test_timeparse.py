"""kaudit_elk.base.timeparse, the one reader of times and durations: its grammar, and errors that name
the option and the bad value (what a user sees after exit code 2)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kaudit_elk.base import timeparse as tp
from kaudit_elk.base.errors import ConfigError

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), ("2w", 1209600), ("500ms", 0.5), ("1.5h", 5400),
    (" 15m ", 900), ("0s", 0),
])
def test_durations(text: str, seconds: float) -> None:
    assert tp.duration_seconds(text, "--delay") == seconds
    assert tp.parse_duration(text, "--delay") == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "-5m", "5 m", "5min", "1e3s", "nanm", "5M", "1.h", "PT5M", None, 5])
def test_a_bad_duration_names_the_option_and_the_value(text: object) -> None:
    with pytest.raises(ConfigError) as err:
        tp.duration_seconds(text, "--max-step")
    assert str(err.value) == f"--max-step: expected a duration like 30s, 5m, 1h or 7d, got {text!r}"


@pytest.mark.parametrize("text, expected", [
    ("now", NOW),
    ("now-15m", NOW - timedelta(minutes=15)),
    ("now-7d", datetime(2026, 1, 3, 12, tzinfo=timezone.utc)),
    ("now-1.5h", NOW - timedelta(minutes=90)),
    ("2026-01-02", datetime(2026, 1, 2, tzinfo=timezone.utc)),
    ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2026-01-02 03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),  # no zone: UTC
    ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)),
    ("2026-01-02T03:04:05.5+02:00", datetime(2026, 1, 2, 1, 4, 5, 500000, tzinfo=timezone.utc)),
])
def test_times(text: str, expected: datetime) -> None:
    got = tp.parse_time(text, "--since", NOW)
    assert got == expected and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text, extra", [
    ("yesterday", ""), ("now+5m", ""), ("2026-13-01", ""), ("", ""),
    ("now-5", " ('5' is not a duration like 30s, 5m, 1h or 7d)"),
    ("now-", " ('' is not a duration like 30s, 5m, 1h or 7d)"),
])
def test_a_bad_time_names_the_option_and_the_value(text: str, extra: str) -> None:
    with pytest.raises(ConfigError) as err:
        tp.parse_time(text, "--until", NOW)
    assert str(err.value) == (f"--until: expected ISO8601 (2026-01-31, 2026-01-31T12:00:00Z), now or now-<duration> "
                              f"(now-15m, now-7d), got {text!r}{extra}")


def test_stored_times_are_read_leniently_or_named_when_required() -> None:
    assert tp.iso_time("2026-01-02T03:04:05.1Z") == datetime(2026, 1, 2, 3, 4, 5, 100000, tzinfo=timezone.utc)
    assert tp.iso_time("not a time") is None and tp.iso_time(None) is None and tp.iso_time(17) is None
    assert tp.epoch("1970-01-01T00:01:00Z") == 60.0 and tp.epoch("") is None
    with pytest.raises(ConfigError, match=r"^detect state position: expected an ISO8601 time .*, got 'garbage'$"):
        tp.parse_iso("garbage", "detect state position")


@pytest.mark.parametrize("value, seconds", [("5s", 5), ("500ms", 0.5), ("1m", 60), ("-1", None), ("30", None), (None, None)])
def test_engine_time_settings(value: object, seconds: float | None) -> None:
    assert tp.setting_seconds(value) == seconds


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), ("1w", 604800),
                                           ("1M", 2592000), ("1y", 31536000)])
def test_sigma_timespans(text: str, seconds: int) -> None:
    assert tp.parse_timespan(text) == seconds


@pytest.mark.parametrize("text", ["1.5h", "500ms", "5", "-5m", ""])
def test_a_bad_sigma_timespan_is_a_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=f"bad timespan {text!r}"):
        tp.parse_timespan(text)


def test_every_caller_uses_the_one_parser() -> None:
    """No module but timeparse reads a time or duration by hand (fromisoformat / unit tables)."""
    import re
    from pathlib import Path

    package = Path(tp.__file__).resolve().parents[1]
    allowed = {"base/timeparse.py", "events/normalize.py"}  # normalize: the ingest hot path's own timestamp reader
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if str(p.relative_to(package)) not in allowed
                 and re.search(r"fromisoformat\(|\"d\": 86400|'d': 86400", p.read_text(encoding="utf-8"))]
    assert not offenders, f"parse times with kaudit_elk.base.timeparse: {offenders}"
