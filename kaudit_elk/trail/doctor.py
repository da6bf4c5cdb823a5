"""``kaudit-elk doctor``: a live deployment checked end to end, each problem with its fix.

Checks: content installed and current (every object bootstrap installs, with the digest it recorded, and
the kaudit-elk version), lifecycle attached (ILM/ISM on the backing indices, or client-side retention
keeping up) and rolled-over indices write-once, mapping healthy (the audit template's mapping in force,
field count against the limit, fields with conflicting types), data fresh per Kubernetes cluster (last
event age), dead letters (the local file and pipeline errors in the stream), detect runs recent and
alerts delivered, integrity chain unbroken (``verify`` over a recent range), archive recent. Each check
is ``ok``, ``warn`` or ``fail``; ``fail`` makes the exit status nonzero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kaudit_elk import __version__
from kaudit_elk.base.errors import KauditError
from kaudit_elk.base.timeparse import parse_iso
from kaudit_elk.cluster.bootstrap import installed_version, observe_one
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.cluster.integrity import integrity_index
from kaudit_elk.cluster.templates import BootstrapOptions, Names, desired_objects
from kaudit_elk.events import fieldspec


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


@dataclass(slots=True)
class DoctorOptions:
    namespace: str = "kaudit"
    max_data_age: float = 900.0  # seconds without events from a cluster before it fails
    max_detect_age: float = 1800.0  # seconds since detect last moved its positions
    verify_window: str = "now-1h"
    repository: str | None = "kaudit-archive"
    max_archive_age: float = 2 * 86400.0  # a closed index older than this without a snapshot
    dead_letter: str | None = "kaudit-dead-letters.ndjson"
    now: float | None = None


@dataclass(slots=True)
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)  # for --prometheus-textfile
    cluster_ages: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def _age(text: str | None, now: float) -> float | None:
    if not text:
        return None
    return now - parse_iso(str(text), "stored time").timestamp()


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def check_content(engine: Engine, o: DoctorOptions, report: DoctorReport) -> None:
    desired, _ = desired_objects(engine.flavor, engine.caps, BootstrapOptions(namespace=o.namespace))
    recorded = installed_version(engine, o.namespace)
    missing = []
    changed = []
    for obj in desired:
        seen = observe_one(engine, obj)
        if seen.body is None:
            missing.append(f"{obj.kind} {obj.name}")
        elif recorded and seen.digest != (recorded.get("objects") or {}).get(f"{obj.kind}/{obj.name}"):
            changed.append(f"{obj.kind} {obj.name}")
    if missing:
        report.checks.append(Check("content installed", "fail", "missing: " + ", ".join(missing),
                                   f"kaudit-elk bootstrap --namespace {o.namespace}"))
    elif not recorded:
        report.checks.append(Check("content installed", "warn", "objects present but no bootstrap record in "
                                   f"{Names(o.namespace).state_index}", f"kaudit-elk bootstrap --namespace {o.namespace}"))
    elif changed:
        report.checks.append(Check("content installed", "warn", "changed outside kaudit-elk since bootstrap: "
                                   + ", ".join(changed), "kaudit-elk bootstrap --dry-run (shows the diff), then bootstrap"))
    elif recorded.get("version") != __version__:
        report.checks.append(Check("content installed", "warn", f"installed by kaudit-elk {recorded.get('version')}, "
                                   f"this is {__version__}", "kaudit-elk bootstrap (updates the content)"))
    else:
        report.checks.append(Check("content installed", "ok", f"{len(desired)} objects, kaudit-elk {__version__}"))


def _backing(engine: Engine, stream: str) -> list[tuple[str, dict[str, Any]]]:
    body = engine.request("GET", f"/{stream}/_settings", ignore=(404,)) or {}
    return sorted(body.items(), key=lambda kv: int(kv[1]["settings"]["index"]["creation_date"]))


def check_lifecycle(engine: Engine, o: DoctorOptions, report: DoctorReport, now: float) -> None:
    stream = Names(o.namespace).stream
    indices = _backing(engine, stream)
    if not indices:
        report.checks.append(Check("lifecycle", "fail", f"no data stream {stream}",
                                   "kaudit-elk bootstrap, then ingest or serve"))
        return
    closed = indices[:-1]
    writable = [n for n, b in closed if str(((b["settings"]["index"].get("blocks") or {}).get("write"))).lower() != "true"]
    lifecycle = engine.caps.lifecycle
    if lifecycle:
        managed = [n for n, b in indices if (b["settings"]["index"].get("lifecycle") or {}).get("name")
                   or (b["settings"].get("index", {}).get("plugins") or {}).get("index_state_management")]
        detail = f"{lifecycle.upper()} on {len(managed)} of {len(indices)} backing indices"
        status = "ok" if len(managed) == len(indices) or lifecycle == "ism" else "fail"
        fix = "" if status == "ok" else "kaudit-elk bootstrap (attaches the policy to new backing indices)"
    else:
        write_name, write_body = indices[-1]
        age = now - int(write_body["settings"]["index"]["creation_date"]) / 1000
        detail = f"client-side retention; write index {write_name} is {_human(age)} old"
        status = "warn" if age > 2 * 86400 else "ok"
        fix = "cron kaudit-elk retention daily (rolls over, deletes expired indices, blocks writes)" if status != "ok" else ""
    if writable:
        status = "fail"
        detail += f"; {len(writable)} rolled-over index(es) still writable: {', '.join(writable[:3])}"
        fix = "kaudit-elk retention (sets index.blocks.write on rolled-over indices)"
    report.checks.append(Check("lifecycle", status, detail, fix))


def _leaf_fields(props: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in props.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out.update(_leaf_fields(spec["properties"], path + "."))
        else:
            out[path] = spec.get("type", "object")
        for sub, sspec in (spec.get("fields") or {}).items():
            out[f"{path}.{sub}"] = sspec.get("type", "")
    return out


def check_mapping(engine: Engine, o: DoctorOptions, report: DoctorReport) -> None:
    stream = Names(o.namespace).stream
    body = engine.request("GET", f"/{stream}/_mapping", ignore=(404,)) or {}
    if not body:
        report.checks.append(Check("mapping", "fail", f"no mapping for {stream}", "kaudit-elk bootstrap"))
        return
    name, latest = sorted(body.items())[-1]
    fields = _leaf_fields(latest.get("mappings", {}).get("properties", {}))
    flat = fields.get(fieldspec.FLAT_FIELDS[0])  # kaudit.body.request, the body copy rules search
    settings = engine.request("GET", f"/{name}/_settings/index.mapping.total_fields.limit",
                              params={"include_defaults": "true"}) or {}
    idx = settings.get(name, {})
    limit = int(((idx.get("settings") or {}).get("index", {}).get("mapping", {}).get("total_fields", {}).get("limit"))
                or ((idx.get("defaults") or {}).get("index", {}).get("mapping", {}).get("total_fields", {}).get("limit"))
                or 1000)
    types: dict[str, set[str]] = {}
    for mapping in body.values():
        for f, t in _leaf_fields(mapping.get("mappings", {}).get("properties", {})).items():
            types.setdefault(f, set()).add(t)
    conflicts = sorted(f for f, t in types.items() if len(t) > 1)
    report.figures["mapping_fields"] = len(fields)
    if flat not in ("flattened", "flat_object"):
        report.checks.append(Check("mapping", "fail", f"{name}: the body copy {fieldspec.FLAT_FIELDS[0]} mapped as {flat or 'nothing'}, not "
                                   "flattened/flat_object: the audit template was not in force when it was created",
                                   "kaudit-elk bootstrap, then roll the stream over (POST /<stream>/_rollover)"))
    elif conflicts:
        report.checks.append(Check("mapping", "warn", f"{len(conflicts)} field(s) with conflicting types across backing "
                                   f"indices: {', '.join(conflicts[:5])}", "kaudit-elk bootstrap --dry-run (check the diff)"))
    elif len(fields) > 0.8 * limit:
        report.checks.append(Check("mapping", "warn", f"{len(fields)} fields of {limit} allowed", "check who adds fields"))
    else:
        report.checks.append(Check("mapping", "ok", f"{len(fields)} fields of {limit} allowed, no conflicts"))


def check_freshness(engine: Engine, o: DoctorOptions, report: DoctorReport, now: float) -> None:
    stream = Names(o.namespace).stream
    body = engine.request("POST", f"/{stream}/_search", {"size": 0, "aggs": {"c": {
        "terms": {"field": "orchestrator.cluster.name", "size": 500, "missing": "(none)"},
        "aggs": {"last": {"max": {"field": "@timestamp"}}, "ingested": {"max": {"field": "event.ingested"}}}}}},
        ignore=(404,))
    buckets = ((body or {}).get("aggregations") or {}).get("c", {}).get("buckets", [])
    if not buckets:
        report.checks.append(Check("data fresh", "fail", "no events stored",
                                   "point the apiserver's audit webhook at kaudit-elk serve, or run ingest"))
        return
    stale = []
    for b in buckets:
        last = b["ingested"].get("value") or b["last"].get("value")
        age = now - last / 1000 if last is not None else float("inf")
        report.cluster_ages[str(b["key"])] = age
        if age > o.max_data_age:
            stale.append(f"{b['key']} ({_human(age)} ago)")
    if stale:
        report.checks.append(Check("data fresh", "fail", "no new events from " + ", ".join(stale),
                                   "check the apiserver's --audit-webhook-config-file / log shipper and `serve` logs"))
    else:
        report.checks.append(Check("data fresh", "ok", ", ".join(f"{k} {_human(v)} ago"
                                                                   for k, v in sorted(report.cluster_ages.items()))))


def check_dead_letters(engine: Engine, o: DoctorOptions, report: DoctorReport, now: float) -> None:
    notes, status, n = [], "ok", 0
    if o.dead_letter and os.path.exists(o.dead_letter):
        with open(o.dead_letter, "rb") as fh:
            n = sum(1 for _ in fh)
        if n:
            status = "warn"
            notes.append(f"{n} record(s) in {o.dead_letter} (last written {_human(now - os.path.getmtime(o.dead_letter))} ago)")
    stream = Names(o.namespace).stream
    body = engine.request("POST", f"/{stream}/_count", {"query": {"bool": {"filter": [
        {"term": {"event.kind": "pipeline_error"}}, {"range": {"@timestamp": {"gte": "now-24h"}}}]}}}, ignore=(404,))
    errors = int((body or {}).get("count", 0))
    report.figures["dead_letters"] = float(n)
    if errors:
        status = "warn"
        notes.append(f"{errors} pipeline error document(s) in the last 24h")
    report.checks.append(Check("dead letters", status, "; ".join(notes) or "none",
                               "read the reasons, fix the source, re-ingest the file" if notes else ""))


def check_detect(engine: Engine, o: DoctorOptions, report: DoctorReport, now: float) -> None:
    names = Names(o.namespace)
    body = engine.request("POST", f"/{names.state_index}/_search", {"size": 0, "query": {"term": {"kind": "rule"}},
                                                                     "aggs": {"u": {"max": {"field": "updated"}}}},
                          ignore=(404,))
    value = ((body or {}).get("aggregations") or {}).get("u", {}).get("value")
    if value is None:
        report.checks.append(Check("detect runs", "fail", "detect has never completed a run",
                                   "schedule kaudit-elk detect (cron or CronJob, every 5 minutes)"))
    else:
        age = now - value / 1000
        report.figures["detect_last_success_age_seconds"] = age
        if age > o.max_detect_age:
            report.checks.append(Check("detect runs", "fail", f"last completed run {_human(age)} ago: failing or not "
                                       "scheduled", "run kaudit-elk detect by hand and read its error; check the schedule"))
        else:
            report.checks.append(Check("detect runs", "ok", f"last completed run {_human(age)} ago"))
    pending = engine.request("POST", f"/{names.alerts_index}/_search", {"size": 1, "track_total_hits": True,
                             "query": {"term": {"kaudit.alert.notified": False}},
                             "sort": [{"event.created": "asc"}]}, ignore=(404,))
    hits = (pending or {}).get("hits", {})
    n = int(hits.get("total", {}).get("value", 0)) if hits else 0
    last = engine.request("POST", f"/{names.alerts_index}/_search", {"size": 0, "aggs": {"l": {"max": {"field": "event.created"}}}},
                          ignore=(404,))
    last_v = ((last or {}).get("aggregations") or {}).get("l", {}).get("value")
    oldest = _age(((hits.get("hits") or [{}])[0].get("_source") or {}).get("event", {}).get("created"), now) if n else None
    if n and oldest is not None and oldest > 600:
        report.checks.append(Check("alerts delivered", "fail", f"{n} alert(s) stored but not delivered, oldest "
                                   f"{_human(oldest)} ago", "check detect's --alertmanager/--webhook outputs (they are re-sent on the next run)"))
    else:
        detail = f"last alert {_human(now - last_v / 1000)} ago" if last_v else "no alerts stored yet"
        report.checks.append(Check("alerts delivered", "ok", detail + (f"; {n} being delivered" if n else "")))


def check_integrity(engine: Engine, o: DoctorOptions, report: DoctorReport) -> None:
    from kaudit_elk.trail.verify import verify

    if engine.request("GET", f"/{integrity_index(o.namespace)}/_settings", ignore=(404,)) is None:
        report.checks.append(Check("integrity chain", "fail", f"no {integrity_index(o.namespace)}: nothing is chained",
                                   "ingest and serve chain by default: do not pass --no-integrity"))
        return
    r = verify(engine, o.namespace, o.verify_window, "now")
    bad = sum(1 for x in r.bad_links if x.problems)
    report.figures["integrity_problems"] = float(r.modified + r.deleted + len(r.inserted) + bad)
    if r.ok:
        note = f"{r.links} link(s), {r.documents} documents since {o.verify_window}: unbroken"
        report.checks.append(Check("integrity chain", "ok", note))
    else:
        report.checks.append(Check("integrity chain", "fail", f"since {o.verify_window}: {r.modified} modified, {r.deleted} "
                                   f"deleted, {len(r.inserted)} outside the chain, {bad} bad link(s)",
                                   f"kaudit-elk verify --since {o.verify_window} (names every document); investigate"))


def check_archive(engine: Engine, o: DoctorOptions, report: DoctorReport, now: float) -> None:
    from kaudit_elk.trail.archive import list_snapshots

    if not o.repository:
        return
    if engine.request("GET", f"/_snapshot/{o.repository}", ignore=(404,)) is None:
        report.checks.append(Check("archive recent", "warn", f"no snapshot repository {o.repository}",
                                   "kaudit-elk archive --fs-location PATH (or register S3/GCS/Azure), cron it daily"))
        return
    have = {s.backing_index for s in list_snapshots(engine, o.repository, o.namespace) if s.state == "SUCCESS"}
    closed = _backing(engine, Names(o.namespace).stream)[:-1]
    late = [n for n, b in closed if n not in have
            and now - int(b["settings"]["index"]["creation_date"]) / 1000 > o.max_archive_age]
    if late:
        report.checks.append(Check("archive recent", "fail", f"{len(late)} closed period(s) not archived: {', '.join(late[:3])}",
                                   f"kaudit-elk archive --repository {o.repository} (cron it daily)"))
    else:
        report.checks.append(Check("archive recent", "ok", f"{len(have)} period(s) archived, {len(closed)} closed"))


def doctor(engine: Engine, options: DoctorOptions) -> DoctorReport:
    """Run every check; a check that cannot run is itself a failure (named, with the engine's error)."""
    report = DoctorReport()
    now = options.now or time.time()
    report.checks.append(Check("engine", "ok", f"{engine.info.label}"))
    steps: list[tuple[str, Callable[[], None]]] = [
        ("content installed", lambda: check_content(engine, options, report)),
        ("lifecycle", lambda: check_lifecycle(engine, options, report, now)),
        ("mapping", lambda: check_mapping(engine, options, report)),
        ("data fresh", lambda: check_freshness(engine, options, report, now)),
        ("dead letters", lambda: check_dead_letters(engine, options, report, now)),
        ("detect runs", lambda: check_detect(engine, options, report, now)),
        ("integrity chain", lambda: check_integrity(engine, options, report)),
        ("archive recent", lambda: check_archive(engine, options, report, now)),
    ]
    for name, step in steps:
        try:
            step()
        except (EngineRequestError, KauditError) as exc:
            report.checks.append(Check(name, "fail", f"check failed: {exc}", "see the error; check the credentials' privileges"))
    report.figures["checks_failed"] = float(len(report.failed))
    return report
