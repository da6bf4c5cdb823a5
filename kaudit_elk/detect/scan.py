"""Run the rule pack over audit log files with no cluster: ``kaudit-elk scan``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from typing import TYPE_CHECKING

from kaudit_elk.rules.alerts import Alert, severity_rank
from kaudit_elk.rules.loader import RulePack
from kaudit_elk.rules.runner import Runner

if TYPE_CHECKING:
    from kaudit_elk.rules.baselines import BaselineOptions

SAMPLE = ("samples", "sample-audit.log")


@dataclass(slots=True)
class ScanStats:
    """Counters of one scan, filled while alerts are consumed."""

    records: int = 0
    events: int = 0
    errors: int = 0
    alerts: int = 0
    error_samples: list[str] = field(default_factory=list)
    baseline_note: str = ""  # warm-up state of the behaviour baselines (when they ran)


def sample_path() -> Path:
    """The sample audit log shipped with the rule pack (``kaudit-elk scan`` with no PATH)."""
    from kaudit_elk.base.content import content_path

    return content_path("detections", *SAMPLE)


def scan(
    paths: Sequence[str],
    rules: RulePack,
    *,
    min_severity: str = "informational",
    history: Sequence[str] = (),
    stats: ScanStats | None = None,
    on_error: Callable[[str], None] | None = None,
    on_event: Callable[[], None] | None = None,
    baselines: "BaselineOptions | None" = None,
) -> Iterator[Alert]:
    """Yield alerts for the events in ``paths`` ("-" is stdin), in stream order.

    ``history`` files are read first to prime new-terms state (no alerts from them). Undecodable
    records are counted in ``stats`` and reported through ``on_error`` as "file:line: reason".
    With ``baselines``, history and scanned events build per-identity baselines and the hours of the
    scanned events are judged against them (:mod:`kaudit_elk.rules.baselines`); those alerts come last.
    """
    from kaudit_elk.events.sources import read_records

    st = stats if stats is not None else ScanStats()
    floor = severity_rank(min_severity)
    runner = Runner(rules)
    profile = None
    if baselines is not None:
        from kaudit_elk.rules.baselines import ProfileBuilder

        profile = ProfileBuilder()
    if history:
        for rec in read_records(list(history)):
            if rec.event is not None:
                runner.prime(rec.event)
                if profile is not None:
                    profile.add(rec.event, judged=False)
    for rec in read_records(list(paths)):
        st.records += 1
        if rec.event is None:
            st.errors += 1
            msg = f"{rec.source}:{rec.line}: {rec.error}"
            if len(st.error_samples) < 20:
                st.error_samples.append(msg)
            if on_error is not None:
                on_error(msg)
            continue
        st.events += 1
        if on_event is not None:
            on_event()
        if profile is not None:
            profile.add(rec.event, judged=True)
        for alert in runner.feed(rec.event):
            if severity_rank(alert["kaudit"]["alert"]["severity"]) >= floor:
                st.alerts += 1
                yield alert
    for alert in runner.flush():
        if severity_rank(alert["kaudit"]["alert"]["severity"]) >= floor:
            st.alerts += 1
            yield alert
    if profile is not None and baselines is not None:
        from kaudit_elk.rules.baselines import judge, warmup_note

        last = max((h for hours in profile.judged.values() for h in hours), default=None)
        st.baseline_note = warmup_note(profile.days, last, baselines)
        for alert in judge(profile.profiles, profile.judged, profile.days, baselines):
            if severity_rank(alert["kaudit"]["alert"]["severity"]) >= floor:
                st.alerts += 1
                yield alert


def scan_events(events: Sequence[dict[str, Any]], rules: RulePack, min_severity: str = "informational") -> list[Alert]:
    """Alerts for in-memory raw events (tests and library use)."""
    floor = severity_rank(min_severity)
    return [a for a in Runner(rules).run(events) if severity_rank(a["kaudit"]["alert"]["severity"]) >= floor]
