"""Scheduled detections in the cluster: ``kaudit-elk detect`` from cron, no gaps, no duplicates.

Each run, for the whole rule pack:

1. reads every rule's last searched position from ``kaudit-state-<namespace>`` (rules without one
   start ``initial_lookback`` ago);
2. searches from the earliest position minus ``overlap`` (late events) to ``now - delay``, never
   further back than ``max_lookback``, in steps of at most ``max_step`` (catch-up after downtime
   happens in bounded steps, each one committed before the next);
3. writes each step's alerts to ``kaudit-alerts-<namespace>`` with ``_id`` = the deterministic alert
   id and op ``create``: an alert found again (overlap, rerun, crash before the position moved) is a
   409 and is not stored or announced twice;
4. sends the new alerts to the outputs, marks them ``notified``, and only then moves the positions.
   Alerts stored but not yet notified (a crash or an output outage) are re-sent on the next run.

``--since/--until`` backfills a fixed range and leaves the positions alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Protocol

import orjson

from kaudit_elk.cluster.engine import Engine
from kaudit_elk.base.errors import KauditError
from kaudit_elk.rules.alerts import severity_rank
from kaudit_elk.rules.loader import RulePack
from kaudit_elk.cluster.templates import Names

Alert = dict[str, Any]
Window = tuple[datetime, datetime]
Evaluate = Callable[..., list[Alert]]


class OutputError(KauditError):
    """An alert output (webhook, Alertmanager) could not be reached; alerts stay queued."""

    exit_code = 1


class Output(Protocol):
    name: str

    def send(self, alerts: list[Alert]) -> None: ...


@dataclass(frozen=True)
class DetectOptions:
    namespace: str = "kaudit"
    overlap: timedelta = timedelta(minutes=5)
    delay: timedelta = timedelta(seconds=30)
    max_step: timedelta = timedelta(hours=1)
    max_lookback: timedelta = timedelta(days=7)
    initial_lookback: timedelta = timedelta(hours=1)
    since: datetime | None = None  # manual backfill: [since, until), positions untouched
    until: datetime | None = None
    min_severity: str = "informational"  # alerts below are neither stored nor sent


@dataclass
class DetectResult:
    windows: list[Window] = field(default_factory=list)
    new_alerts: list[Alert] = field(default_factory=list)
    known_alerts: int = 0  # found again (already stored): not duplicated
    renotified: int = 0
    positions_moved: bool = False
    incidents: list[dict[str, Any]] = field(default_factory=list)  # incidents announced (new or escalated)
    notes: list[str] = field(default_factory=list)  # e.g. the baselines' warm-up state

    def as_dict(self) -> dict[str, Any]:
        return {"windows": [[_iso(a), _iso(b)] for a, b in self.windows], "new_alerts": len(self.new_alerts),
                "known_alerts": self.known_alerts, "renotified": self.renotified,
                "positions_moved": self.positions_moved, "incidents": len(self.incidents)}


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def plan_windows(positions: dict[str, datetime | None], rule_ids: Iterable[str], now: datetime,
                 options: DetectOptions) -> list[Window]:
    """Pure: the steps of this run. Empty when there is nothing new to search yet."""
    if options.since is not None:
        start, end = options.since, options.until or now - options.delay
    else:
        starts = []
        for rid in rule_ids:
            pos = positions.get(rid)
            starts.append(pos - options.overlap if pos else now - options.initial_lookback)
        if not starts:
            return []
        start = max(min(starts), now - options.max_lookback)
        end = now - options.delay
    windows: list[Window] = []
    while start < end:
        step_end = min(start + options.max_step, end)
        windows.append((start, step_end))
        start = step_end
    return windows


# -- state ----------------------------------------------------------------------------------------
def read_positions(engine: Engine, names: Names) -> dict[str, datetime]:
    body = engine.request("POST", f"/{names.state_index}/_search", {
        "size": 10000, "query": {"term": {"kind": "rule"}}, "_source": ["rule_id", "position"]}, ignore=(404,))
    out: dict[str, datetime] = {}
    for hit in (body or {}).get("hits", {}).get("hits", []):
        src = hit["_source"]
        out[src["rule_id"]] = _parse(src["position"])
    return out


def write_positions(engine: Engine, names: Names, rule_ids: Iterable[str], position: datetime) -> None:
    now = _iso(datetime.now(timezone.utc))
    lines = []
    for rid in rule_ids:
        lines.append(orjson.dumps({"index": {"_index": names.state_index, "_id": f"rule:{rid}"}}))
        lines.append(orjson.dumps({"kind": "rule", "rule_id": rid, "position": _iso(position), "updated": now}))
    if lines:
        result = engine.bulk(b"\n".join(lines) + b"\n", refresh=True)
        if result.get("errors"):
            raise KauditError(f"could not save detection positions in {names.state_index}")


# -- alerts ---------------------------------------------------------------------------------------
def store_alerts(engine: Engine, names: Names, alerts: list[Alert], run_id: str) -> tuple[list[Alert], int]:
    """Create alerts by id; returns (the new ones, how many were already stored)."""
    if not alerts:
        return [], 0
    now = _iso(datetime.now(timezone.utc))
    lines = []
    for alert in alerts:
        doc = dict(alert)
        doc["event"] = dict(doc.get("event") or {}, kind="alert", created=now)
        doc["kaudit"] = {**doc.get("kaudit", {}), "alert": {**doc["kaudit"]["alert"], "notified": False,
                                                            "run_id": run_id,
                                                            "severity_rank": severity_rank(doc["kaudit"]["alert"]["severity"])}}
        lines.append(orjson.dumps({"create": {"_index": names.alerts_index, "_id": alert["kaudit"]["alert"]["id"]}}))
        lines.append(orjson.dumps(doc))
    result = engine.bulk(b"\n".join(lines) + b"\n", refresh=True)
    new: list[Alert] = []
    known = 0
    for alert, item in zip(alerts, result.get("items", [])):
        res = item["create"]
        if res.get("status") in (200, 201):
            new.append(alert)
        elif res.get("status") == 409:
            known += 1
        else:
            raise KauditError(f"could not store alert {alert['kaudit']['alert']['id']} in {names.alerts_index}: "
                              f"{res.get('error')}")
    return new, known


def pending_alerts(engine: Engine, names: Names) -> list[Alert]:
    """Alerts stored but not yet announced (a crash or an output outage in an earlier run)."""
    body = engine.request("POST", f"/{names.alerts_index}/_search", {
        "size": 10000, "query": {"term": {"kaudit.alert.notified": False}},
        "sort": [{"@timestamp": "asc"}]}, ignore=(404,))
    return [h["_source"] for h in (body or {}).get("hits", {}).get("hits", [])]


def mark_notified(engine: Engine, names: Names, alerts: list[Alert]) -> None:
    lines = []
    for alert in alerts:
        lines.append(orjson.dumps({"update": {"_index": names.alerts_index, "_id": alert["kaudit"]["alert"]["id"]}}))
        lines.append(orjson.dumps({"doc": {"kaudit": {"alert": {"notified": True}}}}))
    if lines:
        engine.bulk(b"\n".join(lines) + b"\n", refresh=True)


def _clean(alert: Alert) -> Alert:
    """The alert as announced (bookkeeping fields removed)."""
    out = dict(alert)
    inner = {k: v for k, v in out.get("kaudit", {}).get("alert", {}).items() if k not in ("notified", "run_id", "severity_rank")}
    out["kaudit"] = {**out.get("kaudit", {}), "alert": inner}
    return out


def notify(outputs: list[Output], alerts: list[Alert]) -> None:
    errors = []
    for out in outputs:
        try:
            out.send([_clean(a) for a in alerts])
        except OutputError as exc:
            errors.append(f"{out.name}: {exc}")
    if errors:
        raise OutputError("; ".join(errors) + " (alerts are stored and will be sent again on the next run)")


# -- the run ----------------------------------------------------------------------------------------
def run_detect(engine: Engine, pack: RulePack, options: DetectOptions, outputs: list[Output],
               evaluate: Evaluate | None = None, now: datetime | None = None,
               incidents: Any = "default", baselines: Any = None) -> DetectResult:
    """One detection run (see the module docstring). ``incidents``: an
    :class:`~kaudit_elk.detect.incident_store.IncidentRun` (default: stored, not announced), None: off;
    ``baselines``: :class:`~kaudit_elk.rules.baselines.BaselineOptions` to judge identities against their history."""
    from kaudit_elk.detect import incident_store

    if incidents == "default":
        incidents = incident_store.IncidentRun()
    if evaluate is None:
        from kaudit_elk.detect.engine_search import engine_alerts as evaluate
    names = Names(options.namespace)
    now = now or datetime.now(timezone.utc)
    result = DetectResult()
    run_id = f"{int(time.time() * 1000):x}"
    rule_ids = [r.id for r in pack.rules]
    floor = severity_rank(options.min_severity)

    pending = pending_alerts(engine, names)
    if pending:
        notify(outputs, pending)
        mark_notified(engine, names, pending)
        result.renotified = len(pending)
    if incidents is not None:
        result.renotified += incident_store.resend_pending(engine, names, incidents)

    positions = {} if options.since else read_positions(engine, names)
    for start, end in plan_windows(positions, rule_ids, now, options):
        found = evaluate(engine, names.stream, pack, start, end)
        if baselines is not None:
            from kaudit_elk.detect.baselines_search import baseline_alerts

            found = list(found) + baseline_alerts(engine, names.stream, start, end, baselines, result.notes)
        alerts = [a for a in found if severity_rank(a["kaudit"]["alert"]["severity"]) >= floor]
        touched = incident_store.assign(engine, names, alerts, incidents.options) if incidents is not None else set()
        new, known = store_alerts(engine, names, alerts, run_id)
        result.known_alerts += known
        if new:
            notify(outputs, new)
            mark_notified(engine, names, new)
        if touched:
            announce = incident_store.refresh(engine, names, touched, incidents)
            incident_store.notify(incidents, engine, names, announce)
            result.incidents.extend(announce)
        result.new_alerts.extend(new)
        result.windows.append((start, end))
        if options.since is None:
            write_positions(engine, names, rule_ids, end)
            result.positions_moved = True
    return result
