"""The audit report: pure computation of ReportData, then rendering to HTML, Markdown or JSON.

``compute(documents, alerts, ...)`` turns normalized audit documents (``kaudit_elk.events.normalize``)
and alert dicts (from ``scan`` or the alerts index) into a :class:`ReportData`; it does no I/O.
``documents_from_files`` (sources + normalize) and ``documents_from_engine`` (the same documents
read back from the cluster, so both modes compute identical numbers; ``aggregate_overview`` gives
the cluster-side totals to detect a truncated read) are the thin shells that feed it. The HTML
(template ``dashboards/report/report.html.j2``) is one self-contained file: inline CSS and inline
SVG charts, no scripts, fonts or images.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from kaudit_elk.base.timeparse import iso_time
from kaudit_elk.base.vocab import AUDIT_LEVELS, SEVERITIES, WRITE_VERBS
from kaudit_elk.rules.response import notes_for


def _response(rule_id: Any) -> dict[str, Any]:
    """``{"response": notes}`` for a rule with triage/response notes (detections/response.yml), else {}."""
    note = notes_for(str(rule_id))
    return {"response": note} if note else {}

_LEVEL_RANK = {name: i for i, name in enumerate(AUDIT_LEVELS)}
STAGE_PREFERENCE = {"ResponseComplete": 4, "Panic": 4, "ResponseStarted": 2, "RequestReceived": 1}
RBAC_RESOURCES = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings"})
WORKLOAD_RESOURCES = frozenset({"pods", "deployments", "daemonsets", "statefulsets", "replicasets", "jobs",
                                "cronjobs", "replicationcontrollers"})
SESSION_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
TOP_N = 10
LIST_LIMIT = 50

Format = Literal["html", "markdown", "json"]


# --------------------------------------------------------------------------- data model


@dataclass
class ReportData:
    """Everything the report shows; plain data (JSON-serialisable with ``as_dict``)."""

    title: str
    generated_at: str
    period_start: str | None
    period_end: str | None
    inputs: list[str]
    summary: dict[str, int]
    timeline_unit: str
    timeline: list[dict[str, Any]]  # {start, success, failure, unknown}
    top_users: list[dict[str, Any]]  # {name, requests, failures, denied}
    top_source_ips: list[dict[str, Any]]
    top_user_agents: list[dict[str, Any]]
    denied_by_actor: list[dict[str, Any]]  # {user, verb, resource, namespace, count}
    denied_latest: list[dict[str, Any]]
    alerts_by_severity: list[dict[str, Any]]  # {severity, count}
    alerts_by_rule: list[dict[str, Any]]  # {rule_id, rule, severity, count}
    alerts_latest: list[dict[str, Any]]
    rbac_changes: list[dict[str, Any]]
    workload_changes: list[dict[str, Any]]
    exec_sessions: list[dict[str, Any]]
    levels: dict[str, int]
    stages: dict[str, int]
    coverage_checks: list[dict[str, Any]]  # {check, needs, events, sufficient, status, note}
    rule_coverage: list[dict[str, Any]]  # {rule_id, rule, needs, status}
    notes: list[str] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)  # {id, severity, risk, title, tactics, alerts, first, last}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- small pure helpers


def get(doc: Mapping[str, Any], dotted: str) -> Any:
    """Value at a dotted path of a nested document (None when absent)."""
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def _audit(doc: Mapping[str, Any], key: str) -> Any:
    return get(doc, f"kubernetes.audit.{key}")


def _status(doc: Mapping[str, Any]) -> int | None:
    code = get(doc, "http.response.status_code")
    if code is None:
        code = _audit(doc, "responseStatus.code")
    try:
        return int(code) if code is not None else None
    except (TypeError, ValueError):
        return None


def is_denied(doc: Mapping[str, Any]) -> bool:
    """403 or an authorizer decision of forbid."""
    decision = get(doc, "kubernetes.audit.annotations.authorization_k8s_io/decision")
    return _status(doc) == 403 or decision == "forbid"


def is_unauthenticated(doc: Mapping[str, Any]) -> bool:
    return _status(doc) == 401


def is_anonymous(doc: Mapping[str, Any]) -> bool:
    groups = _audit(doc, "user.groups") or []
    return get(doc, "user.name") == "system:anonymous" or "system:unauthenticated" in groups


def requests_of(documents: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One document per API request: stages of one auditID collapse to the most final stage."""
    by_id: dict[str, Mapping[str, Any]] = {}
    out: list[Mapping[str, Any]] = []
    for doc in documents:
        aid = _audit(doc, "auditID")
        if not aid:
            out.append(doc)
            continue
        prev = by_id.get(aid)
        if prev is None or STAGE_PREFERENCE.get(_audit(doc, "stage"), 3) > STAGE_PREFERENCE.get(_audit(prev, "stage"), 3):
            by_id[aid] = doc
    return out + list(by_id.values())


#: Most columns the events-over-time chart draws (more periods are merged into wider columns).
MAX_COLUMNS = 400


def timeline_unit(start: datetime, end: datetime) -> tuple[str, timedelta]:
    """Bucket size for the events-over-time chart: hours up to 3 days, days up to 120 days, then weeks."""
    span = end - start
    if span <= timedelta(days=3):
        return "hour", timedelta(hours=1)
    if span <= timedelta(days=120):
        return "day", timedelta(days=1)
    return "week", timedelta(days=7)


def _floor(dt: datetime, unit: str) -> datetime:
    if unit == "hour":
        return dt.replace(minute=0, second=0, microsecond=0)
    day = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if unit == "week" else day


def _row(doc: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "time": _iso(iso_time(doc.get("@timestamp"))),
        "user": get(doc, "user.name"),
        "as_user": get(doc, "user.effective.name"),
        "verb": get(doc, "event.action") or _audit(doc, "verb"),
        "resource": get(doc, "orchestrator.resource.type") or _audit(doc, "objectRef.resource"),
        "namespace": get(doc, "orchestrator.namespace") or _audit(doc, "objectRef.namespace"),
        "name": get(doc, "orchestrator.resource.name") or _audit(doc, "objectRef.name"),
        "status": _status(doc),
        "source_ip": get(doc, "source.ip"),
        **extra,
    }


def _newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: r.get("time") or "", reverse=True)


def _top(counter: Counter[Any], n: int = TOP_N) -> list[tuple[Any, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n]


# --------------------------------------------------------------------------- computation


def _workload_detail(doc: Mapping[str, Any]) -> list[str]:
    pod = get(doc, "kaudit.pod") or {}
    flags = [name for key, name in (("privileged", "privileged"), ("host_network", "hostNetwork"),
                                    ("host_pid", "hostPID"), ("host_ipc", "hostIPC")) if pod.get(key) is True]
    paths = pod.get("host_path")
    if paths:
        flags.append("hostPath " + ", ".join(paths if isinstance(paths, list) else [paths]))
    caps = pod.get("capabilities_add")
    if caps:
        flags.append("cap_add " + ", ".join(caps if isinstance(caps, list) else [caps]))
    return flags


def _rbac_detail(doc: Mapping[str, Any]) -> str:
    rbac = get(doc, "kaudit.rbac") or {}
    parts = []
    role = get(rbac, "role_ref.name")
    if role:
        parts.append(f"roleRef {role}")
    subjects = get(rbac, "subjects.name")
    if subjects:
        parts.append("subjects " + ", ".join(subjects if isinstance(subjects, list) else [subjects]))
    for key in ("verbs", "resources"):
        if rbac.get(key):
            vals = rbac[key] if isinstance(rbac[key], list) else [rbac[key]]
            parts.append(f"{key} " + ", ".join(str(v) for v in vals))
    return "; ".join(parts)


def _coverage(requests: Sequence[Mapping[str, Any]], rules: Sequence[tuple[str, str, str | None]],
              levels: Counter[Any], stages: Counter[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def rank(doc: Mapping[str, Any]) -> int:
        return _LEVEL_RANK.get(_audit(doc, "level") or "", -1)

    def check(name: str, needs: str, docs: list[Mapping[str, Any]], note: str) -> dict[str, Any]:
        known = [d for d in docs if rank(d) >= 0]
        enough = sum(1 for d in known if rank(d) >= _LEVEL_RANK[needs])
        if not docs:
            status = "no events"
        elif not known:
            status = "level unknown"
        else:
            status = "met" if enough == len(known) else ("partly met" if enough else "not met")
        return {"check": name, "needs": needs, "events": len(docs), "sufficient": enough, "status": status, "note": note}

    pod_writes = [d for d in requests if _audit(d, "objectRef.resource") == "pods" and not _audit(d, "objectRef.subresource")
                  and _audit(d, "verb") in WRITE_VERBS - {"delete", "deletecollection"}]
    rbac_writes = [d for d in requests if _audit(d, "objectRef.resource") in RBAC_RESOURCES and _audit(d, "verb") in WRITE_VERBS - {"delete", "deletecollection"}]
    checks = [
        check("Who did what, when, from where", "Metadata", list(requests), "every rule needs at least Metadata"),
        check("Pod specs (privileged, host namespaces, hostPath)", "Request", pod_writes,
              "pod create/update bodies are needed to see privileged and host settings"),
        check("RBAC contents (rules, roleRef, subjects)", "Request", rbac_writes,
              "role and binding bodies are needed to see what was granted"),
    ]
    secret_bodies = [d for d in requests if _audit(d, "objectRef.resource") == "secrets" and rank(d) >= _LEVEL_RANK["Request"]]
    checks.append({"check": "Secret values kept out of the log", "needs": "Metadata only", "events": len(secret_bodies),
                   "sufficient": 0 if secret_bodies else None,
                   "status": "not met" if secret_bodies else "met",
                   "note": "secrets logged at Request or RequestResponse put secret data into the audit log"})
    final = stages.get("ResponseComplete", 0) + stages.get("Panic", 0)
    checks.append({"check": "Final stage recorded (outcome known)", "needs": "ResponseComplete stage",
                   "events": sum(stages.values()), "sufficient": final,
                   "status": "met" if final else ("level unknown" if not stages else "not met"),
                   "note": "without ResponseComplete the response code and outcome are missing"})
    best = max((_LEVEL_RANK[lv] for lv in levels if lv in _LEVEL_RANK), default=-1)
    rule_rows = []
    for rule_id, title, needs in rules:
        need = needs or "Metadata"
        if best < 0:
            status = "level unknown"
        else:
            status = "met" if best >= _LEVEL_RANK.get(need, 1) else "not met"
        rule_rows.append({"rule_id": rule_id, "rule": title, "needs": need, "status": status})
    return checks, rule_rows


def compute(
    documents: Iterable[Mapping[str, Any]],
    alerts: Iterable[Mapping[str, Any]] = (),
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    rules: Sequence[tuple[str, str, str | None]] = (),
    inputs: Sequence[str] = (),
    skipped: int = 0,
    unreadable: int = 0,
    title: str = "Kubernetes audit report",
    now: datetime | None = None,
    notes: Sequence[str] = (),
) -> ReportData:
    """Report data from normalized documents and alert dicts, limited to [start, end) when given.

    ``rules`` is ``(rule id, title, required audit level)`` for the coverage section;
    ``skipped``/``unreadable`` are input records the caller could not turn into documents.
    """
    docs: list[Mapping[str, Any]] = []
    undated = 0
    for doc in documents:
        ts = iso_time(doc.get("@timestamp"))
        if ts is None:
            if start or end:
                continue
            undated += 1
        elif (start and ts < start) or (end and ts >= end):
            continue
        docs.append(doc)
    reqs = requests_of(docs)
    times = [t for d in reqs if (t := iso_time(d.get("@timestamp")))]
    p_start = start or (min(times) if times else None)
    p_end = end or (max(times) if times else None)

    levels = Counter(_audit(d, "level") or "unknown" for d in docs)
    stages = Counter(_audit(d, "stage") or "unknown" for d in docs)
    denied = [d for d in reqs if is_denied(d)]
    outcome = Counter(get(d, "event.outcome") or "unknown" for d in reqs)

    # events over time
    unit, step = timeline_unit(p_start, p_end) if p_start and p_end else ("day", timedelta(days=1))
    buckets: dict[datetime, Counter[Any]] = defaultdict(Counter)
    for d in reqs:
        ts = iso_time(d.get("@timestamp"))
        if ts:
            o = get(d, "event.outcome")
            buckets[_floor(ts, unit)][o if o in ("success", "failure") else "unknown"] += 1
    timeline = []
    if buckets:
        # Always dense, so the chart is proportional to time (empty periods show as gaps); more than
        # MAX_COLUMNS periods are merged into columns of several periods each.
        first = min(buckets)
        periods = int((max(buckets) - first) / step) + 1
        per_column = math.ceil(periods / MAX_COLUMNS)
        merged: dict[int, Counter[Any]] = defaultdict(Counter)
        for k, c in buckets.items():
            merged[int((k - first) / step) // per_column].update(c)
        for i in range(math.ceil(periods / per_column)):
            c = merged.get(i, Counter())
            timeline.append({"start": _iso(first + i * per_column * step), "success": c["success"],
                             "failure": c["failure"], "unknown": c["unknown"]})
        if per_column > 1:
            unit = f"{per_column} {unit}s"

    # actors
    users: dict[str, Counter[Any]] = defaultdict(Counter)
    for d in reqs:
        u = get(d, "user.name") or "(unknown)"
        users[u]["requests"] += 1
        users[u]["failures"] += get(d, "event.outcome") == "failure"
        users[u]["denied"] += is_denied(d)
    top_users = [{"name": u, **{k: users[u][k] for k in ("requests", "failures", "denied")}}
                 for u, _ in _top(Counter({u: c["requests"] for u, c in users.items()}))]
    ips = Counter(str(get(d, "source.ip")) for d in reqs if get(d, "source.ip"))
    agents = Counter(str(get(d, "user_agent.original")) for d in reqs if get(d, "user_agent.original"))

    by_actor = Counter((get(d, "user.name") or "(unknown)", get(d, "event.action") or "", _row(d)["resource"] or "(non-resource)",
                        _row(d)["namespace"] or "") for d in denied)

    # alerts
    alert_list = []
    for a in alerts:
        ts = iso_time(a.get("@timestamp"))
        if (start or end) and (ts is None or (start and ts < start) or (end and ts >= end)):
            continue
        alert_list.append(a)
    sev = Counter(str(get(a, "kaudit.alert.severity") or get(a, "rule.level") or "unknown").lower() for a in alert_list)
    by_rule: Counter[Any] = Counter()
    rule_sev: dict[tuple[str, str], str] = {}
    for a in alert_list:
        key = (str(get(a, "rule.id") or ""), str(get(a, "rule.name") or get(a, "rule.id") or "(unnamed rule)"))
        by_rule[key] += 1
        rule_sev[key] = str(get(a, "kaudit.alert.severity") or get(a, "rule.level") or "unknown").lower()
    sev_order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    alerts_latest = _newest_first([{
        "time": _iso(iso_time(a.get("@timestamp"))), "severity": rule_sev.get((str(get(a, "rule.id") or ""), str(get(a, "rule.name") or get(a, "rule.id") or "(unnamed rule)"))),
        "rule": get(a, "rule.name") or get(a, "rule.id"), "user": get(a, "user.name"),
        "source_ip": get(a, "source.ip"), "events": len(get(a, "kaudit.alert.audit_ids") or []) or get(a, "kaudit.alert.count"),
    } for a in alert_list])[:LIST_LIMIT]
    # rule names from alerts join the coverage table when the caller gave no rule list
    if not rules:
        seen: dict[str, tuple[str, str, str | None]] = {}
        for a in alert_list:
            rid = str(get(a, "rule.id") or "")
            if rid and rid not in seen:
                seen[rid] = (rid, str(get(a, "rule.name") or rid), get(a, "rule.audit_level"))
        rules = list(seen.values())

    # changes and sessions
    rbac = [_row(d, detail=_rbac_detail(d), outcome=get(d, "event.outcome")) for d in reqs
            if _audit(d, "objectRef.resource") in RBAC_RESOURCES and _audit(d, "verb") in WRITE_VERBS]
    workloads = [_row(d, detail=", ".join(_workload_detail(d)), outcome=get(d, "event.outcome")) for d in reqs
                 if _audit(d, "objectRef.resource") in WORKLOAD_RESOURCES and not _audit(d, "objectRef.subresource")
                 and _audit(d, "verb") in WRITE_VERBS]
    sessions = [_row(d, kind=_audit(d, "objectRef.subresource"), command=get(d, "kaudit.exec.command"),
                     container=get(d, "kaudit.exec.container"), outcome=get(d, "event.outcome"))
                for d in reqs if _audit(d, "objectRef.subresource") in SESSION_SUBRESOURCES]
    checks, rule_rows = _coverage(reqs, rules, levels, stages)

    notes = list(notes)
    if undated:
        notes.append(f"{undated} events had no timestamp; they are counted but not on the timeline")
    if skipped or unreadable:
        notes.append(f"{unreadable} input records could not be read or normalized and {skipped} were skipped as not "
                     "audit events; they are not in this report")
    summary = {
        "events": len(docs), "requests": len(reqs), "users": len({get(d, "user.name") for d in reqs if get(d, "user.name")}),
        "source_ips": len(ips), "namespaces": len({_row(d)["namespace"] for d in reqs if _row(d)["namespace"]}),
        "succeeded": outcome.get("success", 0), "failed": outcome.get("failure", 0), "denied": len(denied),
        "unauthenticated": sum(is_unauthenticated(d) for d in reqs), "anonymous": sum(is_anonymous(d) for d in reqs),
        "changes": sum(1 for d in reqs if _audit(d, "verb") in WRITE_VERBS), "rbac_changes": len(rbac),
        "exec_sessions": len(sessions), "alerts": len(alert_list), "skipped_records": skipped + unreadable,
    }
    return ReportData(
        title=title, generated_at=_iso(now or datetime.now(timezone.utc)) or "",
        period_start=_iso(p_start), period_end=_iso(p_end), inputs=list(inputs), summary=summary,
        timeline_unit=unit, timeline=timeline, top_users=top_users,
        top_source_ips=[{"name": k, "requests": v} for k, v in _top(ips)],
        top_user_agents=[{"name": k, "requests": v} for k, v in _top(agents)],
        denied_by_actor=[{"user": u, "verb": v, "resource": r, "namespace": n, "count": c}
                         for (u, v, r, n), c in _top(by_actor, 20)],
        denied_latest=_newest_first([_row(d) for d in denied])[:LIST_LIMIT],
        alerts_by_severity=sorted(({"severity": s, "count": c} for s, c in sev.items()),
                                  key=lambda r: sev_order.get(r["severity"], 99)),
        alerts_by_rule=sorted(({"rule_id": k[0], "rule": k[1], "severity": rule_sev[k], "count": c,
                                **_response(k[0])} for k, c in by_rule.items()),
                              key=lambda r: (sev_order.get(r["severity"], 99), -r["count"], r["rule"])),
        alerts_latest=alerts_latest,
        rbac_changes=_newest_first(rbac)[:LIST_LIMIT], workload_changes=_newest_first(workloads)[:LIST_LIMIT],
        exec_sessions=_newest_first(sessions)[:LIST_LIMIT],
        levels=dict(_top(levels, 10)), stages=dict(_top(stages, 10)),
        coverage_checks=checks, rule_coverage=rule_rows, notes=notes, incidents=_incident_rows(alert_list),
    )


def _incident_rows(alerts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The period's alerts grouped into incidents (as ``scan --incidents`` does), highest risk first."""
    from kaudit_elk.rules.incidents import build_incidents

    usable = [a for a in alerts if isinstance((a.get("kaudit") or {}).get("alert"), dict) and a["kaudit"]["alert"].get("id")]
    rows = [{"id": i["id"], "severity": i["severity"], "risk": i["risk_score"], "title": i["title"],
             "tactics": i["tactics"], "alerts": i["alert_count"], "first": i["first_alert_time"],
             "last": i["last_alert_time"]} for i in (doc["kaudit"]["incident"] for doc in build_incidents(usable))]
    return sorted(rows, key=lambda r: (-r["risk"], r["first"] or "", r["id"]))[:LIST_LIMIT]


# --------------------------------------------------------------------------- I/O shells


def documents_from_files(
    paths: Sequence[str], on_error: Callable[[str], None] | None = None
) -> tuple[list[dict[str, Any]], int, int]:
    """Normalize every record of ``paths``: (documents, skipped non-audit records, unreadable records);
    ``on_error`` hears each unreadable record as "file:line: reason"."""
    from kaudit_elk.events.normalize import normalize
    from kaudit_elk.events.sources import read_records

    docs: list[dict[str, Any]] = []
    skipped = unreadable = 0
    for rec in read_records(list(paths)):
        if rec.error or rec.event is None:
            unreadable += 1
            if on_error is not None:
                on_error(f"{rec.source}:{rec.line}: {rec.error or 'no audit event'}")
            continue
        try:
            doc = normalize(rec.event)
        except ValueError as exc:
            unreadable += 1
            if on_error is not None:
                on_error(f"{rec.source}:{rec.line}: invalid event: {exc}")
            continue
        if doc is None:
            skipped += 1
        else:
            docs.append(doc)
    return docs, skipped, unreadable


def documents_from_engine(engine: Any, index: str, start: datetime | None, end: datetime | None,
                          limit: int = 100_000, page: int = 5_000) -> list[dict[str, Any]]:
    """Read the documents of a time range from the cluster, newest first, up to ``limit``.

    When the period holds more than ``limit`` events the newest are kept (the report states what it
    covers: :func:`coverage_note`). Uses ``search_after`` on (@timestamp, auditID, stage) so large
    ranges page safely.
    """
    rng: dict[str, Any] = {}
    if start:
        rng["gte"] = _iso(start)
    if end:
        rng["lt"] = _iso(end)
    query = {"range": {"@timestamp": rng}} if rng else {"match_all": {}}
    docs: list[dict[str, Any]] = []
    after: list[Any] | None = None
    while len(docs) < limit:
        body: dict[str, Any] = {"size": min(page, limit - len(docs)), "query": query,
                                "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "date"}},
                                         {"kubernetes.audit.auditID": {"order": "desc", "unmapped_type": "keyword"}},
                                         {"kubernetes.audit.stage": {"order": "desc", "unmapped_type": "keyword"}}]}
        if after:
            body["search_after"] = after
        resp = engine.request("POST", f"/{index}/_search", body=body, ignore=(404,)) or {}
        hits = (resp.get("hits") or {}).get("hits") or []
        if not hits:
            break
        docs += [h.get("_source") or {} for h in hits]
        after = hits[-1].get("sort")
        if len(hits) < body["size"] or after is None:
            break
    return docs


def coverage_note(read: int, total: int, docs: Sequence[Mapping[str, Any]]) -> str | None:
    """What a cluster report covers when the period holds more events than were read (None: everything)."""
    if total <= read:
        return None
    times = [t for d in docs if (t := iso_time(d.get("@timestamp")))]
    since = f" (from {_iso(min(times))})" if times else ""
    return (f"this report covers the newest {read:,} of the {total:,} events in the period{since}: older events "
            "are not in its tables and charts; narrow --from/--to or raise --max-events to cover them all")


def aggregate_overview(engine: Any, index: str, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    """Cluster-side totals for the period (aggregations only): used to state the report's completeness."""
    rng: dict[str, Any] = {}
    if start:
        rng["gte"] = _iso(start)
    if end:
        rng["lt"] = _iso(end)
    body = {"size": 0, "track_total_hits": True, "query": {"range": {"@timestamp": rng}} if rng else {"match_all": {}},
            "aggs": {"requests": {"cardinality": {"field": "kubernetes.audit.auditID"}},
                     "users": {"cardinality": {"field": "user.name"}},
                     "levels": {"terms": {"field": "kubernetes.audit.level", "size": 10}}}}
    resp = engine.request("POST", f"/{index}/_search", body=body, ignore=(404,)) or {}
    total = (resp.get("hits") or {}).get("total") or {}
    aggs = resp.get("aggregations") or {}
    return {"events": total.get("value", 0) if isinstance(total, dict) else int(total or 0),
            "requests": (aggs.get("requests") or {}).get("value", 0),
            "users": (aggs.get("users") or {}).get("value", 0),
            "levels": {b["key"]: b["doc_count"] for b in (aggs.get("levels") or {}).get("buckets", [])}}


# --------------------------------------------------------------------------- SVG charts (pure)

PALETTE = {"success": "#2f9e6b", "failure": "#d1495b", "unknown": "#9aa5b1", "bar": "#3f6fb5",
           "critical": "#8b1e3f", "high": "#d1495b", "medium": "#e59f3a", "low": "#3f6fb5", "informational": "#9aa5b1"}


def svg_timeline(rows: Sequence[Mapping[str, Any]], unit: str, width: int = 880, height: int = 220) -> str:
    """Stacked columns (success / failure / unknown) over time, with a y-axis and first/last labels."""
    if not rows:
        return '<p class="empty">No events with a timestamp in this period.</p>'
    pad_l, pad_r, pad_t, pad_b = 48, 12, 12, 36
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    totals = [r["success"] + r["failure"] + r["unknown"] for r in rows]
    top = max(max(totals), 1)
    step = plot_w / len(rows)
    bar_w = max(step * 0.8, 1.0)
    parts = [f'<svg class="chart" role="img" aria-label="Requests per {unit}" viewBox="0 0 {width} {height}" '
             f'width="100%" xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.5, 1):
        y = pad_t + plot_h * (1 - frac)
        parts.append(f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{round(top * frac)}</text>')
    for i, r in enumerate(rows):
        x = pad_l + i * step + (step - bar_w) / 2
        y = pad_t + plot_h
        for key in ("success", "failure", "unknown"):
            h = plot_h * r[key] / top
            if h <= 0:
                continue
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{PALETTE[key]}">'
                         f'<title>{html.escape(r["start"])}: {r[key]} {key}</title></rect>')
    label = {"hour": 13, "day": 10, "week": 10}.get(unit, 10)
    if len(rows) <= 16:  # few (possibly non-contiguous) periods: label columns, skipping to avoid overlap
        every = max(1, math.ceil(6.5 * label / step))
        for i, r in enumerate(rows):
            if i % every:
                continue
            x = pad_l + i * step + step / 2
            parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" class="tick">'
                         f'{html.escape(r["start"][:label])}</text>')
    else:
        parts.append(f'<text x="{pad_l}" y="{height - 10}" class="tick">{html.escape(rows[0]["start"][:label])}</text>')
        parts.append(f'<text x="{width - pad_r}" y="{height - 10}" text-anchor="end" class="tick">'
                     f'{html.escape(rows[-1]["start"][:label])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(items: Sequence[tuple[str, int]], width: int = 420, color: str | None = None,
             colors: Mapping[str, str] | None = None, label: str = "") -> str:
    """Horizontal bars with the label on the left and the value at the bar's end."""
    if not items:
        return '<p class="empty">None in this period.</p>'
    row_h, label_w, pad = 22, 200, 44
    height = row_h * len(items) + 6
    top = max(v for _, v in items) or 1
    parts = [f'<svg class="chart" role="img" aria-label="{html.escape(label)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i, (name, value) in enumerate(items):
        y = 3 + i * row_h
        w = (width - label_w - pad) * value / top
        fill = (colors or {}).get(name, color or PALETTE["bar"])
        short = name if len(name) <= 28 else name[:27] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="label">'
                     f'<title>{html.escape(name)}</title>{html.escape(short)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 7}" fill="{fill}" rx="2"/>')
        parts.append(f'<text x="{label_w + w + 5:.1f}" y="{y + 15}" class="value">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- rendering


def render(data: ReportData, fmt: Format = "html") -> str:
    """The report as a self-contained HTML page, Markdown, or JSON."""
    if fmt == "json":
        return json.dumps(data.as_dict(), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return render_markdown(data)
    if fmt == "html":
        return render_html(data)
    raise ValueError(f"unknown report format {fmt!r}")


def render_html(data: ReportData) -> str:
    import jinja2

    from kaudit_elk.base.content import content_dir

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(content_dir("dashboards") / "report")), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             finalize=number)
    charts = {
        "timeline": svg_timeline(data.timeline, data.timeline_unit),
        "users": svg_bars([(r["name"], r["requests"]) for r in data.top_users], label="Top users"),
        "ips": svg_bars([(r["name"], r["requests"]) for r in data.top_source_ips], label="Top source IPs"),
        "denied": svg_bars([(f'{r["user"]} {r["verb"]} {r["resource"]}', r["count"]) for r in data.denied_by_actor[:TOP_N]],
                           color=PALETTE["failure"], label="Denied requests"),
        "severity": svg_bars([(r["severity"], r["count"]) for r in data.alerts_by_severity], colors=PALETTE,
                             label="Alerts by severity"),
        "rules": svg_bars(sorted(((r["rule"], r["count"]) for r in data.alerts_by_rule), key=lambda kv: -kv[1])[:TOP_N],
                          label="Top rules by alerts"),
        "levels": svg_bars(list(data.levels.items()), label="Audit levels"),
    }
    return env.get_template("report.html.j2").render(d=data, charts=charts, palette=PALETTE)


def number(value: Any) -> Any:
    """Integers with thousands separators (1,234,567) for people; anything else unchanged."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return value


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return ("" if v is None else str(number(v))).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) if len(lines) > 2 else "_None in this period._"


def render_markdown(d: ReportData) -> str:
    s = d.summary
    out = [f"# {d.title}", "",
           f"Period: {d.period_start or 'n/a'} to {d.period_end or 'n/a'} (UTC) · generated {d.generated_at}", ""]
    if d.inputs:
        out += ["Inputs: " + ", ".join(f"`{p}`" for p in d.inputs), ""]
    out += ["## Summary", "", _md_table(["Measure", "Value"], [
        ("Audit events", s["events"]), ("API requests", s["requests"]), ("Users", s["users"]),
        ("Source IPs", s["source_ips"]), ("Namespaces", s["namespaces"]), ("Failed requests", s["failed"]),
        ("Denied (403 / forbid)", s["denied"]), ("Unauthenticated (401)", s["unauthenticated"]),
        ("Anonymous", s["anonymous"]), ("Changes", s["changes"]), ("RBAC changes", s["rbac_changes"]),
        ("exec/attach/port-forward sessions", s["exec_sessions"]), ("Alerts", s["alerts"]),
        ("Input records not reported", s["skipped_records"])]), ""]
    out += [f"## Events over time (per {d.timeline_unit})", "",
            _md_table(["Start", "Succeeded", "Failed", "Unknown"],
                      [(r["start"], r["success"], r["failure"], r["unknown"]) for r in d.timeline if
                       r["success"] + r["failure"] + r["unknown"]]), ""]
    out += ["## Top actors", "", _md_table(["User", "Requests", "Failed", "Denied"],
                                            [(r["name"], r["requests"], r["failures"], r["denied"]) for r in d.top_users]), "",
            _md_table(["Source IP", "Requests"], [(r["name"], r["requests"]) for r in d.top_source_ips]), "",
            _md_table(["User agent", "Requests"], [(r["name"], r["requests"]) for r in d.top_user_agents]), ""]
    out += ["## Denied requests", "", _md_table(["User", "Verb", "Resource", "Namespace", "Count"],
                                                 [(r["user"], r["verb"], r["resource"], r["namespace"], r["count"]) for r in d.denied_by_actor]), ""]
    out += ["## Alerts", "", _md_table(["Severity", "Alerts"], [(r["severity"], r["count"]) for r in d.alerts_by_severity]), "",
            _md_table(["Rule", "Severity", "Alerts"], [(r["rule"], r["severity"], r["count"]) for r in d.alerts_by_rule]), ""]
    responded = [r for r in d.alerts_by_rule if r.get("response")]
    if responded:
        out += ["### Response", ""]
        for r in responded:
            note = r["response"]
            out += [f"**{r['rule']}** — check: " + " ".join(note["triage"]) + f" Open `{note['search']}`. Contain: "
                    + " ".join(note["contain"]), ""]
    out += ["## Incidents", "", "Alerts of one actor (identity and source address) close in time, with a risk score.", "",
            _md_table(["Severity", "Risk", "Incident", "Alerts", "First alert", "Last alert"],
                      [(r["severity"], r["risk"], r["title"], r["alerts"], r["first"], r["last"]) for r in d.incidents]), ""]
    cols = ["Time", "User", "Verb", "Resource", "Namespace", "Name", "Outcome", "Detail"]
    out += ["## RBAC and workload changes", "", "### RBAC", "",
            _md_table(cols, [(r["time"], r["user"], r["verb"], r["resource"], r["namespace"], r["name"], r["outcome"], r["detail"]) for r in d.rbac_changes]),
            "", "### Workloads", "",
            _md_table(cols, [(r["time"], r["user"], r["verb"], r["resource"], r["namespace"], r["name"], r["outcome"], r["detail"]) for r in d.workload_changes]), ""]
    out += ["## exec, attach and port-forward sessions", "",
            _md_table(["Time", "User", "Session", "Namespace", "Pod", "Container", "Command", "Outcome"],
                      [(r["time"], r["user"], r["kind"], r["namespace"], r["name"], r["container"], r["command"], r["outcome"]) for r in d.exec_sessions]), ""]
    out += ["## Audit coverage", "", "Levels: " + (", ".join(f"{k} {v}" for k, v in d.levels.items()) or "none"),
            "", "Stages: " + (", ".join(f"{k} {v}" for k, v in d.stages.items()) or "none"), "",
            _md_table(["Check", "Needs", "Events", "Sufficient", "Status"],
                      [(c["check"], c["needs"], c["events"], c["sufficient"], c["status"]) for c in d.coverage_checks]), ""]
    if d.rule_coverage:
        out += [_md_table(["Rule", "Needs audit level", "Status"], [(r["rule"], r["needs"], r["status"]) for r in d.rule_coverage]), ""]
    if d.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in d.notes] + [""]
    return "\n".join(out)


# --------------------------------------------------------------------------- the report as one call

def describe_inputs(paths: Sequence[str]) -> list[str]:
    """Input files as shown in the report: all of them when few, else a count and their common folder."""
    import os

    if len(paths) <= 5:
        return list(paths)
    try:
        common = os.path.commonpath([os.path.abspath(p) for p in paths])
    except ValueError:
        common = ""
    return [f"{len(paths)} files under {common}" if common else f"{len(paths)} files"]


def alerts_from_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Alerts from an NDJSON file (``scan`` output); a bad line is an error naming file and line."""
    import orjson

    from kaudit_elk.base.errors import InputError

    alerts = []
    try:
        with open(path, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read alerts file {path}: {exc.strerror}") from None
    for n, line in enumerate(lines, start=1):
        if line.strip():
            try:
                alerts.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not a JSON alert: {exc}") from None
    return alerts


def _shipped_pack() -> Any | None:
    """The shipped rule pack, or None when it cannot be loaded (the report then says so)."""
    try:
        from kaudit_elk.rules.loader import default_pack_dir, load_rules

        return load_rules([default_pack_dir()])
    except Exception:  # noqa: BLE001 - the report works without rules
        return None


def _rules_of(pack: Any | None) -> list[tuple[str, str, str | None]]:
    return [(r.id, r.title, r.audit_level) for r in pack.rules] if pack is not None else []


def from_files(
    paths: Sequence[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    alerts: Iterable[Mapping[str, Any]] | None = None,
    scan: Callable[[list[str], Any], Iterable[Mapping[str, Any]]] | None = None,
    title: str = "Kubernetes audit report",
    warn: Callable[[str], None] | None = None,
) -> ReportData:
    """``kaudit-elk report FILES``: normalize the files; the alerts are ``alerts`` or, when None, what
    ``scan(paths, pack)`` finds with the shipped pack (``kaudit_elk.detect.scan.scan``; None: no alerts
    section). ``warn`` hears each unreadable record ("file:line: reason") and why alerts were not computed."""
    pack = _shipped_pack()
    docs, skipped, unreadable = documents_from_files(paths, on_error=warn)
    if alerts is None:
        alerts = []
        if scan is not None and pack is None:
            (warn or (lambda _m: None))("alerts not computed: the rule pack could not be loaded")
        elif scan is not None:
            alerts = list(scan(list(paths), pack))
    return compute(docs, alerts, start=start, end=end, rules=_rules_of(pack), inputs=describe_inputs(paths),
                   skipped=skipped, unreadable=unreadable, title=title)


def from_engine(
    engine: Any,
    namespace: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    alerts: Iterable[Mapping[str, Any]] | None = None,
    max_events: int = 100_000,
    title: str = "Kubernetes audit report",
    warn: Callable[[str], None] | None = None,
) -> ReportData:
    """``kaudit-elk report`` on the cluster: the newest ``max_events`` events of [start, end) of the
    namespace's stream and, unless ``alerts`` are given, its stored alerts. When the period holds more
    events than were read the report says so in its notes (and ``warn`` hears it).

    A namespace with no stream (never bootstrapped, or nothing ever stored) raises
    :class:`kaudit_elk.cluster.namespace.NothingStored` (exit 2) instead of making an empty report.
    """
    from kaudit_elk.base.errors import ConfigError
    from kaudit_elk.cluster.namespace import detect_has_run, require_stream

    if max_events < 1:
        raise ConfigError(f"--max-events must be 1 or more, got {max_events}")
    require_stream(engine, namespace)
    index = f"logs-kubernetes.audit_logs-{namespace}"
    docs = documents_from_engine(engine, index, start, end, limit=max_events)
    totals = aggregate_overview(engine, index, start, end)
    notes: list[str] = []
    covers = coverage_note(len(docs), totals["events"], docs)
    if covers:
        (warn or (lambda _m: None))(covers)
        notes.append(covers)
    if alerts is None:
        alerts = documents_from_engine(engine, f"kaudit-alerts-{namespace}", start, end)
        if not alerts and not detect_has_run(engine, namespace):
            never = (f"detect has never run for namespace {namespace}: the alerts section is empty because no rule "
                     "was run, not because none matched (schedule kaudit-elk detect, or give --alerts)")
            (warn or (lambda _m: None))(never)
            notes.append(never)
    url = getattr(getattr(engine, "settings", None), "url", "")
    return compute(docs, alerts, start=start, end=end, rules=_rules_of(_shipped_pack()),
                   inputs=[f"{url} {index}".strip()], title=title, notes=notes)
