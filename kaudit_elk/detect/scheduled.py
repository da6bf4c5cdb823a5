"""Scheduled detections in the cluster: ``kaudit-elk detect`` from cron, no gaps, no duplicates.

Each run, for the whole rule pack:

1. reads every rule's last searched position and the saved detection state (correlation groups,
   new-terms history, undecided request stages) from ``kaudit-state-<namespace>`` (rules without a
   position start ``initial_lookback`` ago);
2. searches from the earliest position minus ``overlap`` (late events) to ``now - delay`` (``delay`` never
   shorter than the stream's refresh interval: :func:`effective_delay`), never
   further back than ``max_lookback``, in steps of at most ``max_step`` (catch-up after downtime
   happens in bounded steps, each one committed before the next). The saved state is the state after
   the events before that start, so a run reads only its window; without a usable state (first run,
   a changed rule, a rewound position) the engine search replays from a quiet point instead;
3. writes each step's alerts (final for that step: :func:`finish_window`) to
   ``kaudit-alerts-<namespace>`` with ``_id`` = the deterministic alert id and op ``create``: an alert
   found again (overlap, rerun, crash before the position moved) is a 409 and is not stored or
   announced twice;
4. sends the new alerts at or above ``notify_severity`` to the outputs, marks them ``notified``, and
   only then moves the positions and the state, together in one bulk request. Alerts stored but not
   yet notified (a crash or an output outage) are re-sent on the next run.

``--since/--until`` backfills a fixed range in steps sized by how many documents match (empty
stretches cost one request), carrying the state from step to step, and leaves the positions and
the saved state alone.
"""

from __future__ import annotations

import base64
import time
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Protocol

import orjson

from kaudit_elk.base.errors import KauditError
from kaudit_elk.base.timeparse import parse_iso, setting_seconds
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.cluster.namespace import require_bootstrapped
from kaudit_elk.cluster.templates import Names
from kaudit_elk.detect.engine_search import EngineDetector
from kaudit_elk.rules.alerts import severity_rank
from kaudit_elk.rules.loader import RulePack

Alert = dict[str, Any]
Window = tuple[datetime, datetime]
STATE_ID = "detect-state"
#: Matching documents per backfill step (the step adapts to the density; empty stretches merge).
BACKFILL_STEP_HITS = 50_000


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
    # how far before a window the correlation replay (no usable saved state) may reach; None: a day for
    # scheduled runs, for a backfill 4x the pack's longest correlation timespan (at least an hour)
    max_replay: timedelta | None = None
    until: datetime | None = None
    min_severity: str = "informational"  # alerts below are neither stored nor sent
    # alerts below are stored (for dashboards, incidents) but not sent; None: as min_severity (the CLI: medium)
    notify_severity: str | None = None


@dataclass
class DetectResult:
    windows: list[Window] = field(default_factory=list)
    new_alerts: list[Alert] = field(default_factory=list)
    known_alerts: int = 0  # found again (already stored): not duplicated
    renotified: int = 0
    positions_moved: bool = False
    incidents: list[dict[str, Any]] = field(default_factory=list)  # incidents announced (new or escalated)
    notes: list[str] = field(default_factory=list)  # e.g. the baselines' warm-up state

    notified: int = 0  # new alerts sent to the outputs (at or above notify_severity)
    events: int = 0  # events stored in the searched ranges
    matched: int = 0  # documents read (the prefilter's candidates, each evaluated against the pack)
    requests: int = 0  # search requests (planning, fetching, replay, history)
    replays: int = 0  # steps without a usable saved state (the quiet-point replay ran)

    def as_dict(self) -> dict[str, Any]:
        return {"windows": [[_iso(a), _iso(b)] for a, b in self.windows], "new_alerts": len(self.new_alerts),
                "known_alerts": self.known_alerts, "renotified": self.renotified, "notified": self.notified,
                "positions_moved": self.positions_moved, "events": self.events, "matched": self.matched,
                "requests": self.requests, "replays": self.replays, "incidents": len(self.incidents)}


@dataclass(frozen=True)
class StepProgress:
    """Reported after each step: which step of how many, and what has been read so far."""

    step: int
    steps: int
    window: Window
    events: int
    matched: int
    new_alerts: int
    elapsed: float
    total_events: int | None = None  # known for backfills (planned up front)

    @property
    def eta(self) -> float | None:
        """Seconds left, from the share of events (or steps) done so far."""
        if self.total_events and self.events:
            done = self.events / self.total_events
        else:
            done = self.step / self.steps if self.steps else 1.0
        return None if done <= 0 else max(0.0, self.elapsed * (1 - done) / done)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return parse_iso(text, "detect state position")


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


def backfill_steps(buckets: list[tuple[datetime, datetime, int]], start: datetime, end: datetime,
                   step_hits: int = BACKFILL_STEP_HITS, max_step: timedelta | None = None) -> list[Window]:
    """Pure: [start, end) cut into steps of about ``step_hits`` matching documents, from the matches per
    time bucket (a dense bucket is a step of its own), none longer than ``max_step``."""
    steps = _density_steps(buckets, start, end, step_hits)
    if max_step is None:
        return steps
    out: list[Window] = []
    for a, b in steps:
        while a < b:
            out.append((a, min(a + max_step, b)))
            a = out[-1][1]
    return out


def _density_steps(buckets: list[tuple[datetime, datetime, int]], start: datetime, end: datetime,
                   step_hits: int) -> list[Window]:
    steps: list[Window] = []
    cur, n = start, 0
    for _lo, hi, count in buckets:
        if n and n + count > step_hits:
            cut = max(cur, min(_lo, end))
            if cut > cur:
                steps.append((cur, cut))
                cur, n = cut, 0
        n += count
        if n >= step_hits:
            cut = min(max(hi, cur), end)
            if cut > cur:
                steps.append((cur, cut))
                cur, n = cut, 0
    if cur < end:
        steps.append((cur, end))
    return steps


# -- state ----------------------------------------------------------------------------------------
def read_positions(engine: Engine, names: Names) -> dict[str, datetime]:
    body = engine.request("POST", f"/{names.state_index}/_search", {
        "size": 10000, "query": {"term": {"kind": "rule"}}, "_source": ["rule_id", "position"]}, ignore=(404,))
    out: dict[str, datetime] = {}
    for hit in (body or {}).get("hits", {}).get("hits", []):
        src = hit["_source"]
        out[src["rule_id"]] = _parse(src["position"])
    return out


def write_positions(engine: Engine, names: Names, rule_ids: Iterable[str], position: datetime,
                    state: dict[str, Any] | None | bool = False) -> None:
    """Move every rule's position; with ``state`` (a saved detection state, or None to clear it) the state
    document goes in the same bulk request, so positions and state move together."""
    now = _iso(datetime.now(timezone.utc))
    lines = []
    if state is not False:
        lines.append(orjson.dumps({"index": {"_index": names.state_index, "_id": STATE_ID}}))
        lines.append(orjson.dumps(state_document(state, now)))
    for rid in rule_ids:
        lines.append(orjson.dumps({"index": {"_index": names.state_index, "_id": f"rule:{rid}"}}))
        lines.append(orjson.dumps({"kind": "rule", "rule_id": rid, "position": _iso(position), "updated": now}))
    if lines:
        result = engine.bulk(b"\n".join(lines) + b"\n", refresh=True)
        if result.get("errors"):
            raise KauditError(f"could not save detection positions in {names.state_index}")


def state_document(state: dict[str, Any] | None, updated: str) -> dict[str, Any]:
    """The stored form of a detection state: compressed JSON (kept in ``_source``, not indexed)."""
    doc: dict[str, Any] = {"kind": "state", "updated": updated, "version": "1"}
    if state is not None:
        doc["position"] = _iso(datetime.fromtimestamp(state["at"], timezone.utc))
        doc["state"] = base64.b64encode(zlib.compress(orjson.dumps(state), 6)).decode()
    return doc


def read_state(engine: Engine, names: Names) -> dict[str, Any] | None:
    """The saved detection state, or None (none saved, or unreadable: the run then replays)."""
    body = engine.request("GET", f"/{names.state_index}/_doc/{STATE_ID}", ignore=(404,))
    blob = ((body or {}).get("_source") or {}).get("state")
    if not blob:
        return None
    try:
        return orjson.loads(zlib.decompress(base64.b64decode(blob)))
    except (ValueError, zlib.error, orjson.JSONDecodeError):
        return None


# -- alerts ---------------------------------------------------------------------------------------
def store_alerts(engine: Engine, names: Names, alerts: list[Alert], run_id: str,
                 notify_floor: int = 0) -> tuple[list[Alert], int]:
    """Create alerts by id; returns (the new ones, how many were already stored). Alerts below
    ``notify_floor`` (a severity rank) are stored as ``notified`` already: nothing will announce them."""
    if not alerts:
        return [], 0
    now = _iso(datetime.now(timezone.utc))
    lines = []
    for alert in alerts:
        doc = dict(alert)
        doc["event"] = dict(doc.get("event") or {}, kind="alert", created=now)
        quiet = severity_rank(doc["kaudit"]["alert"]["severity"]) < notify_floor
        doc["kaudit"] = {**doc.get("kaudit", {}), "alert": {**doc["kaudit"]["alert"], "notified": quiet,
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
def _seconds(value: Any) -> float | None:
    """An index setting's time value ('5s', '500ms', '1m') in seconds; None for -1 or unreadable."""
    return setting_seconds(value)


@dataclass(frozen=True)
class Visibility:
    """How soon an event the engine has received is searchable in the audit stream, from what the
    detector may read (the index settings; it may not refresh a stream it only reads)."""

    lag: float = 0.0  # the longest explicit refresh interval of the backing indices (seconds)
    idle_possible: bool = False  # a backing index without an explicit interval: it may go search-idle
    disabled: tuple[str, ...] = ()  # backing indices with refresh turned off (-1)
    exists: bool = True  # False: the stream was not created yet (nothing ingested)


def stream_visibility(engine: Engine, names: Names) -> Visibility:
    """The stream's refresh settings (``view_index_metadata`` / ``indices:monitor/settings/get``, which
    the detector role has); nothing known when they cannot be read."""
    try:
        body = engine.request("GET", f"/{names.stream}/_settings/index.refresh_interval",
                              params={"flat_settings": "true"}, ignore=(404,))
    except EngineRequestError:
        return Visibility()
    if body is None:
        return Visibility(exists=False)
    lag, idle, off = 0.0, False, []
    for index, item in sorted((body or {}).items()):
        value = ((item or {}).get("settings") or {}).get("index.refresh_interval")
        if value is None:
            idle, lag = True, max(lag, 1.0)  # the default interval, skipped while the shard is search-idle
            continue
        seconds = _seconds(value)
        if seconds is None:
            off.append(index)
        else:
            lag = max(lag, seconds)
    return Visibility(lag, idle, tuple(off))


def wake_stream(engine: Engine, names: Names) -> None:
    """A plain search: a shard gone search-idle (no explicit refresh interval) refreshes before it
    answers, so what it holds is searchable before the window is read (a point-in-time alone does not
    wake it). The detector only reads the stream: it never calls ``_refresh`` there."""
    try:
        engine.request("POST", f"/{names.stream}/_search", {"size": 0, "track_total_hits": False}, ignore=(404,))
    except EngineRequestError:
        pass


def effective_delay(options: DetectOptions, seen: Visibility, notes: list[str]) -> timedelta:
    """``--delay``, but never shorter than the stream's refresh interval: a scheduled window must not
    end where events may still be invisible (they would be passed, and with a short overlap lost)."""
    if seen.disabled:
        notes.append(f"detect: refresh is turned off on {', '.join(seen.disabled)} (index.refresh_interval -1): "
                     "events there are searchable only after someone refreshes it")
    lag = timedelta(seconds=seen.lag)
    if lag <= options.delay:
        return options.delay
    notes.append(f"detect: the audit stream refreshes every {seen.lag:g}s, so windows end {seen.lag:g}s ago "
                 f"(--delay {options.delay.total_seconds():g}s is shorter)")
    return lag


def finish_window(engine: Engine, names: Names, alerts: list[Alert], options: DetectOptions, outputs: list[Output],
                  run_id: str, result: DetectResult, incidents: Any = None) -> list[Alert]:
    """The alerts of one window are final here: group them into incidents, store the new ones, announce
    those at or above ``notify_severity``, mark them notified, then announce the incidents they touched.
    Returns the new alerts (stored for the first time)."""
    from kaudit_elk.detect import incident_store

    floor = severity_rank(options.min_severity)
    loud = severity_rank(options.notify_severity or options.min_severity)
    alerts = [a for a in alerts if severity_rank(a["kaudit"]["alert"]["severity"]) >= floor]
    touched = incident_store.assign(engine, names, alerts, incidents.options) if incidents is not None else set()
    new, known = store_alerts(engine, names, alerts, run_id, notify_floor=loud)
    result.known_alerts += known
    announce = [a for a in new if severity_rank(a["kaudit"]["alert"]["severity"]) >= loud]
    if announce:
        notify(outputs, announce)
        mark_notified(engine, names, announce)
    if touched:
        changed = incident_store.refresh(engine, names, touched, incidents)
        incident_store.notify(incidents, engine, names, changed)
        result.incidents.extend(changed)
    result.new_alerts.extend(new)
    result.notified += len(announce)
    return new


#: The replay cap of a scheduled run (its saved state makes a replay the exception).
SCHEDULED_REPLAY = timedelta(days=1)


def replay_cap(pack: RulePack, options: DetectOptions) -> timedelta:
    """How far before a window a correlation replay may reach. A backfill's events before ``--since``
    only prime correlations, and a busy base rule never leaves a quiet timespan, so by default it
    replays 4x the longest correlation timespan: exact for sliding counts whose evidence fits in it."""
    if options.max_replay is not None:
        return options.max_replay
    if options.since is None:
        return SCHEDULED_REPLAY
    spans = [float(r.sigma.timespan.seconds) for r in pack.correlations]  # type: ignore[union-attr]
    return max(timedelta(hours=1), timedelta(seconds=4 * max(spans, default=0.0)))


def _plan_backfill(detector: EngineDetector, start: datetime, end: datetime,
                   max_step: timedelta) -> tuple[list[Window], list, int]:
    """Steps for a backfill, sized by the matches per time bucket (one planning request); the buckets;
    and the events stored in the range."""
    density = detector.density(_epoch(start), _epoch(end))
    as_dt = [(datetime.fromtimestamp(a, timezone.utc), datetime.fromtimestamp(b, timezone.utc), m)
             for a, b, m, _ in density]
    return backfill_steps(as_dt, start, end, max_step=max_step), density, sum(n for *_, n in density)


def run_detect(engine: Engine, pack: RulePack, options: DetectOptions, outputs: list[Output],
               now: datetime | None = None, progress: Callable[[StepProgress], None] | None = None,
               incidents: Any = "default", baselines: Any = None) -> DetectResult:
    """One detection run (see the module docstring). ``progress`` is called after each step;
    ``incidents``: an :class:`~kaudit_elk.detect.incident_store.IncidentRun` (default: stored, not
    announced), None: off; ``baselines``: :class:`~kaudit_elk.rules.baselines.BaselineOptions` to judge
    identities against their history."""
    from kaudit_elk.detect import incident_store

    if incidents == "default":
        incidents = incident_store.IncidentRun()
    names = Names(options.namespace)
    now = now or datetime.now(timezone.utc)
    result = DetectResult()
    run_id = f"{int(time.time() * 1000):x}"
    rule_ids = [r.id for r in pack.rules]
    began = time.monotonic()
    busy = engine.busy_retries

    require_bootstrapped(engine, options.namespace, purpose="detect")
    pending = pending_alerts(engine, names)
    if pending:
        notify(outputs, pending)
        mark_notified(engine, names, pending)
        result.renotified = len(pending)
    if incidents is not None:
        result.renotified += incident_store.resend_pending(engine, names, incidents)

    scheduled = options.since is None
    seen = stream_visibility(engine, names)
    if seen.idle_possible:
        wake_stream(engine, names)
    if not seen.exists:
        result.notes.append(f"detect: nothing was ingested into namespace {options.namespace!r} yet "
                            f"({names.stream} does not exist): nothing to search")
        return result
    if scheduled:
        options = replace(options, delay=effective_delay(options, seen, result.notes))
    with EngineDetector(engine, names.stream, pack) as detector:
        total: int | None = None
        density = None
        if scheduled:
            positions = read_positions(engine, names)
            windows = plan_windows(positions, rule_ids, now, options)
            state = read_state(engine, names) if windows else None
            if len(windows) > 1:  # catching up: one planning request, then empty steps cost nothing
                density = detector.density(_epoch(windows[0][0]), _epoch(windows[-1][1]))
        else:
            start, end = options.since, options.until or now - options.delay  # type: ignore[assignment]
            windows, density, total = _plan_backfill(detector, start, end, options.max_step) if start < end else ([], [], 0)
            state = None
        # the next run starts at (position - overlap): the state saved with a position is the state there
        resume = {w[1]: _epoch(w[1] - options.overlap) for w in windows} if scheduled else {}
        wanted = sorted(set(resume.values()) | {_epoch(w[1]) for w in windows})
        saved: dict[float, dict[str, Any]] = {}
        replay = replay_cap(pack, options).total_seconds()
        for i, (start, end) in enumerate(windows):
            s, e = _epoch(start), _epoch(end)
            out = detector.window(s, e, state=state, checkpoints=[c for c in wanted if s <= c <= e], density=density,
                                  max_lookback=replay)
            saved.update(out.states)
            state = out.states.get(e)
            found = out.alerts
            if baselines is not None:
                from kaudit_elk.detect.baselines_search import baseline_alerts

                found = found + baseline_alerts(engine, names.stream, start, end, baselines, result.notes)
            finish_window(engine, names, found, options, outputs, run_id, result, incidents)
            result.windows.append((start, end))
            if scheduled:
                write_positions(engine, names, rule_ids, end, state=saved.get(resume[end]))
                result.positions_moved = True
                saved = {c: v for c, v in saved.items() if c >= resume[end]}
            st = detector.stats
            if progress is not None:
                progress(StepProgress(i + 1, len(windows), (start, end), st.events, st.fetched, len(result.new_alerts),
                                      time.monotonic() - began, total))
        st = detector.stats
    result.events, result.matched, result.requests, result.replays = st.events, st.fetched, st.requests, st.replays
    if engine.busy_retries > busy:
        result.notes.append(f"detect: the engine was busy (HTTP 429/503): {engine.busy_retries - busy} reads "
                            "waited and were retried")
    return result


def _epoch(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
