"""Incidents in the cluster: ``kaudit-incidents-<namespace>``, kept in step with the alerts ``detect`` stores.

Per window of a run (hooks in :func:`kaudit_elk.detect.scheduled.run_detect`):

1. :func:`assign` — before the window's alerts are stored: alerts already stored keep the incident
   they were given (looked up by alert id); the others go through :class:`~kaudit_elk.rules.incidents.Assigner`
   primed with the incidents still open, and carry ``kaudit.alert.incident_id`` into the alerts index.
2. :func:`refresh` — after they are stored: every incident that got an alert is recomputed from
   *all* its stored alerts (:func:`~kaudit_elk.rules.incidents.summarize`, the function ``scan`` uses) and
   written with ``_id`` = its id. A rerun, an overlap or a run killed between the two steps recomputes the
   same document: incidents are exactly-once in effect, like alerts.
3. an incident whose severity reaches the notification floor and whose :func:`notify_signature`
   (severity and tactics) changed is marked ``notify_pending``, sent to the incident outputs, and then
   marked notified; a crash or an outage re-sends it on the next run (:func:`resend_pending`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import orjson

from kaudit_elk.base.errors import KauditError
from kaudit_elk.cluster.templates import Names
from kaudit_elk.rules.alerts import iso, severity_rank
from kaudit_elk.rules.incidents import (
    Assigner,
    Incident,
    IncidentOptions,
    alert_key,
    alert_time,
    notify_signature,
    open_incident,
    summarize,
)

if TYPE_CHECKING:
    from kaudit_elk.cluster.engine import Engine

Alert = dict[str, Any]
_PAGE = 1000
_BOOKKEEPING = ("notified_signature", "notify_pending", "updated")
#: What :func:`~kaudit_elk.rules.incidents.summarize` reads of a stored alert.
_SUMMARY_FIELDS = ["@timestamp", "rule.id", "rule.name", "rule.title", "rule.level", "kaudit.alert.id",
                   "kaudit.alert.severity", "kaudit.alert.first_event_time", "kaudit.alert.last_event_time", "tags",
                   "user.name", "source.ip", "orchestrator.namespace"]


@dataclass
class IncidentRun:
    """Incident settings of a detect run: grouping, notification floor, where incidents are announced."""

    options: IncidentOptions = field(default_factory=IncidentOptions)
    min_severity: str = "medium"
    outputs: list[Any] = field(default_factory=list)


def _search(engine: "Engine", index: str, query: dict[str, Any], source: Any = True) -> Iterator[dict[str, Any]]:
    """Every hit of ``query`` (search_after on @timestamp and the document id)."""
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {"size": _PAGE, "query": query, "_source": source, "track_total_hits": False,
                                "sort": [{"@timestamp": {"order": "asc", "missing": "_last"}},
                                         {"kaudit.alert.id" if index.startswith("kaudit-alerts-") else
                                          "kaudit.incident.id": "asc"}]}
        if after is not None:
            body["search_after"] = after
        resp = engine.search(f"/{index}/_search", body, ignore=(404,))
        hits = ((resp or {}).get("hits") or {}).get("hits") or []
        yield from hits
        if len(hits) < _PAGE:
            return
        after = hits[-1]["sort"]


def _chunks(items: Sequence[str], n: int = 1000) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def stored_assignments(engine: "Engine", names: Names, alert_ids: Sequence[str]) -> dict[str, str]:
    """{alert id: incident id} for the alerts already stored with an incident."""
    out: dict[str, str] = {}
    for chunk in _chunks(list(alert_ids)):
        resp = engine.request("POST", f"/{names.alerts_index}/_search", body={
            "size": len(chunk), "query": {"ids": {"values": list(chunk)}},
            "_source": ["kaudit.alert.id", "kaudit.alert.incident_id"]}, ignore=(404,))
        for hit in ((resp or {}).get("hits") or {}).get("hits") or []:
            a = hit["_source"].get("kaudit", {}).get("alert", {})
            if a.get("incident_id"):
                out[hit["_id"]] = a["incident_id"]
    return out


def open_incidents(engine: "Engine", names: Names, since: float) -> list[dict[str, Any]]:
    """Stored incidents an alert at ``since`` or later may still join."""
    query = {"range": {"kaudit.incident.closes_at": {"gte": int(since * 1000), "format": "epoch_millis"}}}
    return [h["_source"] for h in _search(engine, names.incidents_index, query)]


def assign(engine: "Engine", names: Names, alerts: list[Alert], options: IncidentOptions) -> set[str]:
    """Give every alert of the window its incident (``kaudit.alert.incident_id``); returns the incidents touched."""
    if not alerts:
        return set()
    ordered = sorted(alerts, key=alert_key)
    known = stored_assignments(engine, names, [a["kaudit"]["alert"]["id"] for a in ordered])
    assigner = Assigner(options, [open_incident(d) for d in open_incidents(engine, names, alert_time(ordered[0]))])
    touched: set[str] = set()
    for a in ordered:
        inner = a["kaudit"]["alert"]
        iid = known.get(inner["id"]) or assigner.assign(a)
        inner["incident_id"] = iid
        touched.add(iid)
    return touched


def incident_alerts(engine: "Engine", names: Names, iid: str) -> list[dict[str, Any]]:
    """Every stored alert of one incident."""
    return [h["_source"] for h in _search(engine, names.alerts_index, {"term": {"kaudit.alert.incident_id": iid}},
                                          source=_SUMMARY_FIELDS)]


def stored_incidents(engine: "Engine", names: Names, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = list(ids)
    out: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        resp = engine.request("POST", f"/{names.incidents_index}/_search", body={
            "size": len(chunk), "query": {"ids": {"values": list(chunk)}}}, ignore=(404,))
        for hit in ((resp or {}).get("hits") or {}).get("hits") or []:
            out[hit["_id"]] = hit["_source"]
    return out


def _write(engine: "Engine", names: Names, docs: list[Incident]) -> None:
    lines = []
    for doc in docs:
        lines.append(orjson.dumps({"index": {"_index": names.incidents_index, "_id": doc["kaudit"]["incident"]["id"]}}))
        lines.append(orjson.dumps(doc))
    if not lines:
        return
    result = engine.bulk(b"\n".join(lines) + b"\n", refresh=True)
    if result.get("errors"):
        bad: dict[str, Any] = next((i for i in result.get("items", []) if i.get("index", {}).get("error")), {})
        raise KauditError(f"could not store incidents in {names.incidents_index}: {bad.get('index', {}).get('error')}")


def refresh(engine: "Engine", names: Names, touched: Iterable[str], run: IncidentRun) -> list[Incident]:
    """Recompute the touched incidents from their stored alerts and store them; returns those to announce."""
    ids = sorted(touched)
    if not ids:
        return []
    before = stored_incidents(engine, names, ids)
    floor = severity_rank(run.min_severity)
    now = iso(datetime.now(timezone.utc).timestamp())
    docs: list[Incident] = []
    announce: list[Incident] = []
    for iid in ids:
        alerts = incident_alerts(engine, names, iid)
        if not alerts:
            continue
        doc = summarize(iid, alerts, run.options)
        inner = doc["kaudit"]["incident"]
        old = (before.get(iid) or {}).get("kaudit", {}).get("incident", {})
        inner["notified_signature"] = old.get("notified_signature")
        sig = notify_signature(doc)
        inner["notify_pending"] = bool(old.get("notify_pending")) or (
            severity_rank(inner["severity"]) >= floor and sig != inner["notified_signature"])
        inner["updated"] = now
        docs.append(doc)
        if inner["notify_pending"]:
            announce.append(doc)
    _write(engine, names, docs)
    return announce


def clean(doc: Incident) -> Incident:
    """The incident as announced (bookkeeping removed)."""
    out = dict(doc)
    out["kaudit"] = {**doc["kaudit"], "incident": {k: v for k, v in doc["kaudit"]["incident"].items()
                                                   if k not in _BOOKKEEPING}}
    return out


def notify(run: IncidentRun, engine: "Engine", names: Names, incidents: list[Incident]) -> None:
    """Announce ``incidents`` on every incident output, then mark them notified."""
    from kaudit_elk.detect.scheduled import OutputError

    if not incidents:
        return
    errors = []
    for out in run.outputs:
        try:
            out.send_incidents([clean(i) for i in incidents])
        except OutputError as exc:
            errors.append(f"{out.name}: {exc}")
    if errors:
        raise OutputError("; ".join(errors) + " (incidents are stored and will be sent again on the next run)")
    lines = []
    for doc in incidents:
        lines.append(orjson.dumps({"update": {"_index": names.incidents_index, "_id": doc["kaudit"]["incident"]["id"]}}))
        lines.append(orjson.dumps({"doc": {"kaudit": {"incident": {"notify_pending": False,
                                                                   "notified_signature": notify_signature(doc)}}}}))
    engine.bulk(b"\n".join(lines) + b"\n", refresh=True)


def resend_pending(engine: "Engine", names: Names, run: IncidentRun) -> int:
    """Announce incidents stored but not yet announced (an earlier run crashed or an output was down)."""
    pending = [h["_source"] for h in _search(engine, names.incidents_index,
                                             {"term": {"kaudit.incident.notify_pending": True}})]
    notify(run, engine, names, pending)
    return len(pending)
