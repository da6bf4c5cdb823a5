"""Behaviour baselines in the engine: the hour buckets of :mod:`kaudit_elk.rules.baselines` as aggregations.

A detect window ``[start, end)`` judges the identity-hours that *close* in it (bucket end in
``(start, end]``), so each hour is judged once, complete, whatever the run schedule. For those hours:
a daily ``date_histogram`` finds the days with data (warm-up), a composite aggregation the identities
active in them, and five composite aggregations over ``[first hour - history_days, last hour end)``
(identity x 1h ``date_histogram`` x the fields each statistic needs: requests, ``source.ip``,
secrets/configmaps read, namespaces listed, pods whose logs were read) rebuild exactly the buckets
``scan`` builds from events; :func:`kaudit_elk.rules.baselines.judge` then decides on both sides.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

from kaudit_elk.rules.baselines import (
    BUCKET,
    FINAL,
    NAMESPACED,
    BaselineOptions,
    Bucket,
    Profiles,
    history_days,
    judge,
    norm_ip,
    warmup_note,
)

if TYPE_CHECKING:
    from kaudit_elk.cluster.engine import Engine

Alert = dict[str, Any]
_A = "kubernetes.audit."
_PAGE = 1000


def _epoch(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def judged_hours(start: float, end: float) -> tuple[int, int] | None:
    """(first, last) hour start whose bucket ends in (start, end]; None when no hour closes in the window."""
    first = (math.floor((start - BUCKET) / BUCKET) + 1) * BUCKET
    last = math.floor((end - BUCKET) / BUCKET) * BUCKET
    return (first, last) if first <= last else None


def _final_stage() -> dict[str, Any]:
    return {"bool": {"should": [{"terms": {f"{_A}stage": sorted(FINAL)}},
                                {"bool": {"must_not": {"exists": {"field": f"{_A}stage"}}}}],
                     "minimum_should_match": 1}}


def _range(lo: float, hi: float) -> dict[str, Any]:
    return {"range": {"@timestamp": {"gte": int(lo * 1000), "lt": int(hi * 1000), "format": "epoch_millis"}}}


def _composite(engine: "Engine", index: str, query: dict[str, Any],
               sources: list[tuple[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Every bucket of one composite aggregation (paged by after_key)."""
    after = None
    while True:
        comp: dict[str, Any] = {"size": _PAGE, "sources": [{name: spec} for name, spec in sources]}
        if after is not None:
            comp["after"] = after
        body = {"size": 0, "query": query, "track_total_hits": False, "aggs": {"c": {"composite": comp}}}
        res = engine.search(f"/{index}/_search", body)["aggregations"]["c"]
        yield from res["buckets"]
        after = res.get("after_key")
        if not res["buckets"] or after is None:
            return


def _terms(field: str, missing: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"terms": {"field": field}}
    if missing:
        spec["terms"]["missing_bucket"] = True
    return spec


_HOUR = {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{BUCKET}s"}}


def data_days(engine: "Engine", index: str, lo: float, hi: float) -> set[int]:
    """UTC day numbers (epoch // 86400) with any stored event in [lo, hi) (the warm-up)."""
    body = {"size": 0, "track_total_hits": False, "query": _range(lo, hi),
            "aggs": {"d": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1d", "min_doc_count": 1}}}}
    resp = engine.search(f"/{index}/_search", body, ignore=(404,))
    buckets = (((resp or {}).get("aggregations") or {}).get("d") or {}).get("buckets") or []
    return {int(b["key"] // 86_400_000) for b in buckets if b["doc_count"]}


def profiles(engine: "Engine", index: str, identities: list[str], lo: float, hi: float) -> Profiles:
    """The hour buckets of ``identities`` over [lo, hi), as :class:`~kaudit_elk.rules.baselines.ProfileBuilder` makes them."""
    out: Profiles = {}

    def bucket(b: dict[str, Any]) -> Bucket:
        per = out.setdefault(str(b["key"]["u"]), {})
        h = int(b["key"]["h"] // 1000)
        if h not in per:
            per[h] = Bucket()
        return per[h]

    base = [_final_stage(), _range(lo, hi), {"terms": {"user.name": identities}}]
    head = [("u", _terms("user.name")), ("h", _HOUR)]
    for b in _composite(engine, index, {"bool": {"filter": base}}, head):
        bucket(b).requests += b["doc_count"]
    for b in _composite(engine, index, {"bool": {"filter": base}}, head + [("ip", _terms("source.ip"))]):
        ip = norm_ip(b["key"]["ip"])
        if ip is not None:
            bucket(b).sources.add(ip)
    no_sub = {"bool": {"must_not": {"exists": {"field": f"{_A}objectRef.subresource"}}}}
    secrets = {"bool": {"filter": base + [{"term": {f"{_A}verb": "get"}}, no_sub,
                                          {"terms": {f"{_A}objectRef.resource": ["secrets", "configmaps"]}},
                                          {"exists": {"field": f"{_A}objectRef.name"}}]}}
    for b in _composite(engine, index, secrets, head + [("r", _terms(f"{_A}objectRef.resource")),
                                                         ("ns", _terms(f"{_A}objectRef.namespace", True)),
                                                         ("n", _terms(f"{_A}objectRef.name"))]):
        k = b["key"]
        bucket(b).secrets.add(f"{k['r']}/{k['ns'] or ''}/{k['n']}")
    lists = {"bool": {"filter": base + [{"term": {f"{_A}verb": "list"}}, no_sub,
                                        {"terms": {f"{_A}objectRef.resource": sorted(NAMESPACED)}}]}}
    for b in _composite(engine, index, lists, head + [("ns", _terms(f"{_A}objectRef.namespace", True))]):
        bucket(b).lists.add(b["key"]["ns"] or "*")
    logs = {"bool": {"filter": base + [{"term": {f"{_A}verb": "get"}}, {"term": {f"{_A}objectRef.resource": "pods"}},
                                       {"term": {f"{_A}objectRef.subresource": "log"}},
                                       {"exists": {"field": f"{_A}objectRef.name"}}]}}
    for b in _composite(engine, index, logs, head + [("ns", _terms(f"{_A}objectRef.namespace", True)),
                                                      ("n", _terms(f"{_A}objectRef.name"))]):
        bucket(b).logs.add(f"{b['key']['ns'] or ''}/{b['key']['n']}")
    return out


def baseline_alerts(engine: "Engine", index: str, start: datetime, end: datetime,
                    options: BaselineOptions | None = None, notes: list[str] | None = None) -> list[Alert]:
    """Baseline alerts of the identity-hours closing in [start, end) — what ``scan`` raises for those hours."""
    options = options or BaselineOptions()
    hours = judged_hours(_epoch(start), _epoch(end))
    if hours is None:
        return []
    first_h, last_h = hours
    days = data_days(engine, index, first_h - options.history_days * 86400 - 86400, last_h + BUCKET)
    if notes is not None:
        notes.append(warmup_note(days, last_h, options))
    if history_days(days, last_h, options) < options.warmup_days:
        return []
    window = {"bool": {"filter": [_final_stage(), _range(first_h, last_h + BUCKET)]}}
    active: dict[str, set[int]] = {}
    for b in _composite(engine, index, window, [("u", _terms("user.name")), ("h", _HOUR)]):
        active.setdefault(str(b["key"]["u"]), set()).add(int(b["key"]["h"] // 1000))
    if not active:
        return []
    found: Profiles = {}
    names = sorted(active)
    for i in range(0, len(names), 500):
        found.update(profiles(engine, index, names[i:i + 500], first_h - options.history_days * 86400,
                              last_h + BUCKET))
    return judge(found, active, days, options)
