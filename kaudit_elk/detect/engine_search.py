"""Run a RulePack in the engine: one named-query search per window, then the local runner on the hits.

Every single-event rule's compiled query (:mod:`kaudit_elk.rules.compiler`) becomes one ``_name``-d
clause of a ``bool.should``; ``matched_queries`` on each hit says which rules matched. Hits come in
event-time order (PIT + ``search_after``) and go through :meth:`Runner.feed_matched`, so per-request
dedupe, correlations and new-terms behave exactly as in ``scan``. Rules whose query is only a broader
prefilter (:attr:`CompiledRule.exact` false) are re-checked client-side on the fetched document.

Windows: alerts are returned only when their evidence ends in ``[start, end)``. Events before
``start`` (the lookback) only rebuild correlation state; by default the lookback reaches back to a
quiet point (no base-rule match for a whole correlation timespan), where every correlation's state
is provably empty, capped at ``max_lookback``. New-terms history is primed from the engine over
``[start - history, start)`` (a composite aggregation — ``sourceIPs`` through ``source.ip``, the term
the tracker uses — or the matching documents when a term field is multi-valued or the rule needs
client-side checking).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from sigma.conditions import ConditionFieldEqualsValueExpression
from sigma.correlations import SigmaCorrelationRule

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.cluster.engine import EngineRequestError
from kaudit_elk.rules.alerts import Alert, event_time
from kaudit_elk.rules.compiler import (
    MATCH_NONE,
    CompiledRule,
    QueryTarget,
    compile_rule_query,
    doc_field,
    field_kind,
)
from kaudit_elk.rules.loader import PackRule, RulePack
from kaudit_elk.rules.runner import Runner

if TYPE_CHECKING:
    from kaudit_elk.cluster.engine import Engine

MULTI_VALUED = frozenset({"sourceIPs", "user.groups", "impersonatedUser.groups"})
_SORT_FIELDS = ("@timestamp", "kubernetes.audit.stageTimestamp", "kubernetes.audit.auditID", "kubernetes.audit.stage")
_KEEP_ALIVE = "2m"
_MAX_QUIET_STEPS = 200


# --------------------------------------------------------------------------- documents -> raw events


def _walk_fields(node: Any, out: set[str]) -> None:
    if isinstance(node, ConditionFieldEqualsValueExpression):
        out.add(node.field)
        ref = getattr(node.value, "field", None)
        if isinstance(ref, str):
            out.add(ref)
    for a in getattr(node, "args", None) or ():
        _walk_fields(a, out)


def pack_fields(pack: RulePack) -> set[str]:
    """Every Sigma field the pack reads (detections, new-terms fields, correlation group-by/aliases/fields)."""
    out: set[str] = set()
    for r in pack.rules:
        if isinstance(r.sigma, SigmaCorrelationRule):
            out.update(r.sigma.group_by or [])
            if r.sigma.condition is not None and r.sigma.condition.fieldref:
                out.add(r.sigma.condition.fieldref)
            for alias in (getattr(r.sigma.aliases, "aliases", {}) or {}).values():
                out.update(alias.mapping.values())
            continue
        for cond in r.sigma.detection.parsed_condition:
            _walk_fields(cond.parsed, out)
        if r.new_terms:
            out.update(r.new_terms.fields)
    return out


def redot_keys(fields: Sequence[str] | set[str]) -> dict[tuple[str, ...], dict[str, str]]:
    """{dedotted object path: {dedotted key: original key}} for the map keys the pack reads."""
    out: dict[tuple[str, ...], dict[str, str]] = {}
    for f in fields:
        for path in fs.DEDOTTED_OBJECTS:
            prefix = ".".join(path) + "."
            if f.startswith(prefix) and "." in f[len(prefix):]:
                key = f[len(prefix):]
                out.setdefault(path, {})[key.replace(".", "_")] = key
    return out


def doc_event(source: Mapping[str, Any], keys: Mapping[tuple[str, ...], Mapping[str, str]]) -> dict[str, Any]:
    """The raw Event from a document's ``kubernetes.audit`` (map keys the pack reads redotted, JSON-Patch unwrapped)."""
    audit = dict(((source.get("kubernetes") or {}).get("audit")) or {})
    for path, names in keys.items():
        parent: Any = audit
        for p in path[:-1]:
            parent = parent.get(p) if isinstance(parent, dict) else None
        obj = parent.get(path[-1]) if isinstance(parent, dict) else None
        if isinstance(obj, dict) and any(k in names for k in obj):
            new = {names.get(k, k): v for k, v in obj.items()}
            if len(path) == 1:
                audit[path[0]] = new
            else:
                audit[path[0]] = {**audit[path[0]], path[-1]: new}
    for body in ("requestObject", "responseObject"):
        b = audit.get(body)
        if isinstance(b, dict) and len(b) == 1 and isinstance(b.get("json_patch"), list):
            audit[body] = b["json_patch"]
    envelope = _envelope(source)
    if envelope:
        audit[fs.ENVELOPE_KEY] = envelope
    return audit


def _envelope(source: Mapping[str, Any]) -> dict[str, Any] | None:
    """The envelope facts ``envelopes.decode`` attached to the raw event (scan hashes them into the alert id
    of an event without auditID). A cluster name equal to ingest's default is taken as not from the envelope."""
    env = (source.get("kaudit") or {}).get("envelope")
    if not isinstance(env, dict) or not env:
        return None
    out = dict(env)
    provider = (source.get("cloud") or {}).get("provider")
    if provider:
        out["provider"] = provider
    cluster = ((source.get("orchestrator") or {}).get("cluster") or {}).get("name")
    if cluster and cluster != "default":
        out["cluster"] = cluster
    return out


#: ``_source`` fields engine evaluation reads.
SOURCE_FIELDS = ["@timestamp", "kubernetes.audit", "kaudit.envelope", "cloud.provider", "orchestrator.cluster.name"]


# --------------------------------------------------------------------------- time


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    return event_time({"stageTimestamp": value}) if isinstance(value, str) else None


def _ms(t: float, up: bool = False) -> int:
    return math.ceil(t * 1000) if up else math.floor(t * 1000)


def _range(gte: float, lt: float) -> dict[str, Any]:
    """Millisecond-widened range on @timestamp (date fields keep milliseconds)."""
    return {"range": {"@timestamp": {"gte": _ms(gte), "lt": _ms(lt, up=True) + 1, "format": "epoch_millis"}}}


def alert_end(alert: Alert) -> float | None:
    """Event time of the alert's last evidence."""
    return _epoch(alert["kaudit"]["alert"].get("last_event_time"))


# --------------------------------------------------------------------------- search


def _sort(engine: "Engine", pit: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{f: {"order": "asc", "missing": "_last"}} for f in _SORT_FIELDS]
    if engine.flavor == "elasticsearch":
        if pit:
            out.append({"_shard_doc": "asc"})
    else:
        out.append({"_id": "asc"})
    return out


def _open_pit(engine: "Engine", index: str) -> str | None:
    try:
        if engine.flavor == "elasticsearch":
            return engine.request("POST", f"/{index}/_pit", params={"keep_alive": _KEEP_ALIVE})["id"]
        return engine.request("POST", f"/{index}/_search/point_in_time", params={"keep_alive": _KEEP_ALIVE})["pit_id"]
    except (EngineRequestError, KeyError, TypeError):
        return None


def _close_pit(engine: "Engine", pit: str) -> None:
    try:
        if engine.flavor == "elasticsearch":
            engine.request("DELETE", "/_pit", body={"id": pit}, ignore=(404,))
        else:
            engine.request("DELETE", "/_search/point_in_time", body={"pit_id": [pit]}, ignore=(404,))
    except EngineRequestError:
        pass


def search_hits(engine: "Engine", index: str, query: dict[str, Any], *, source: Any = True,
                page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every hit of ``query`` in event-time order (PIT + search_after; plain search_after without a PIT)."""
    pit = _open_pit(engine, index)
    try:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": page_size, "query": query, "sort": _sort(engine, pit is not None),
                                    "_source": source, "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            if pit is not None:
                body["pit"] = {"id": pit, "keep_alive": _KEEP_ALIVE}
                resp = engine.request("POST", "/_search", body=body)
                pit = resp.get("pit_id", pit)
            else:
                resp = engine.request("POST", f"/{index}/_search", body=body)
            hits = resp["hits"]["hits"]
            yield from hits
            if len(hits) < page_size:
                return
            after = hits[-1]["sort"]
    finally:
        if pit is not None:
            _close_pit(engine, pit)


def _precise_time(hit: Mapping[str, Any]) -> float:
    audit = ((hit.get("_source") or {}).get("kubernetes") or {}).get("audit") or {}
    t = event_time(audit)
    return t if t is not None else hit["sort"][0] / 1000.0


def in_event_time_order(hits: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Hits re-ordered by microsecond event time within each millisecond (date fields sort by millisecond)."""
    group: list[dict[str, Any]] = []
    for hit in hits:
        if group and hit["sort"][0] != group[0]["sort"][0]:
            yield from sorted(group, key=_precise_time)
            group = []
        group.append(hit)
    yield from sorted(group, key=_precise_time)


def named_query(compiled: Mapping[str, CompiledRule], rule_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One ``_name``-d clause per rule (rules whose query can never match are left out)."""
    return [{"bool": {"filter": [compiled[r].query], "_name": r}} for r in rule_ids if compiled[r].query != MATCH_NONE]


#: Leaf queries per search: the engines refuse a query with more than ``indices.query.bool.max_clause_count``
#: (1024 by default on OpenSearch) leaves, so a large pack is searched in several named-query searches.
CLAUSE_BUDGET = 700


def leaf_count(query: Any) -> int:
    """Leaf queries of a Query DSL tree as the engines count them (a ``terms`` query counts each value)."""
    if isinstance(query, list):
        return sum(leaf_count(q) for q in query)
    if not isinstance(query, dict):
        return 0
    if "bool" in query:
        b = query["bool"]
        return sum(leaf_count(b.get(k) or []) for k in ("must", "should", "filter", "must_not"))
    if "terms" in query:
        vals = [v for k, v in query["terms"].items() if isinstance(v, list)]
        return max(1, sum(len(v) for v in vals))
    return 1


def clause_groups(clauses: Sequence[dict[str, Any]], budget: int = CLAUSE_BUDGET) -> list[list[dict[str, Any]]]:
    """The named clauses packed, in order, into groups of at most ``budget`` leaves (a bigger clause alone)."""
    groups: list[list[dict[str, Any]]] = []
    size = 0
    for c in clauses:
        n = leaf_count(c)
        if not groups or size + n > budget:
            groups.append([])
            size = 0
        groups[-1].append(c)
        size += n
    return groups


def _merge_key(hit: Mapping[str, Any]) -> tuple:
    return tuple((v is None, v if v is not None else 0) for v in hit["sort"][:len(_SORT_FIELDS)])


def named_hits(engine: "Engine", index: str, clauses: Sequence[dict[str, Any]], *, filters: Sequence[Any] = (),
               source: Any = True, page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Hits of any named clause, in sort order, each once with all its ``matched_queries`` (a list).

    Clauses beyond the clause budget go to further searches whose hit streams are merged by sort key;
    a document matched in several searches comes once with the union of its rule names."""
    import heapq

    streams = [search_hits(engine, index, {"bool": {"filter": list(filters), "should": g, "minimum_should_match": 1}},
                           source=source, page_size=page_size) for g in clause_groups(clauses)]
    merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_merge_key)
    prev: dict[str, Any] | None = None
    for hit in merged:
        if prev is not None and hit["_id"] == prev["_id"] and hit.get("_index") == prev.get("_index"):
            prev["matched_queries"] = list(dict.fromkeys(_rule_ids_hit(prev) + _rule_ids_hit(hit)))
            continue
        if prev is not None:
            yield prev
        prev = dict(hit, matched_queries=_rule_ids_hit(hit))
    if prev is not None:
        yield prev


def _rule_ids_hit(hit: Mapping[str, Any]) -> list[str]:
    mq = hit.get("matched_queries") or []
    return list(mq.keys()) if isinstance(mq, dict) else list(mq)


# --------------------------------------------------------------------------- lookback / history


def quiet_point(engine: "Engine", index: str, query: dict[str, Any], start: float, span: float,
                floor: float) -> float:
    """Latest time T <= start with no ``query`` match in [T - span, T), not earlier than ``floor``."""
    t = start
    for _ in range(_MAX_QUIET_STEPS):
        window = {"range": {"@timestamp": {"gte": _ms(t - span), "lt": _ms(t, up=True), "format": "epoch_millis"}}}
        body = {"size": 1, "query": {"bool": {"filter": [query, window]}},
                "sort": [{"@timestamp": "asc"}], "_source": False, "track_total_hits": False}
        hits = engine.request("POST", f"/{index}/_search", body=body)["hits"]["hits"]
        if not hits:
            return t
        first = hits[0]["sort"][0] / 1000.0
        if first >= t:
            return t
        t = first
        if t <= floor:
            return floor
    return floor


def correlation_lookback(engine: "Engine", index: str, pack: RulePack, compiled: Mapping[str, CompiledRule],
                         start: float, max_lookback: float) -> float:
    """Seconds before ``start`` to replay so every correlation starts from an empty state."""
    back = 0.0
    for r in pack.correlations:
        sigma = r.sigma
        assert isinstance(sigma, SigmaCorrelationRule)
        span = float(sigma.timespan.seconds)
        bases = [str(ref.rule.id) for ref in sigma.rules if str(ref.rule.id) in compiled]
        clauses = named_query(compiled, bases)
        if not clauses:
            continue
        query = {"bool": {"should": clauses, "minimum_should_match": 1}}
        t = quiet_point(engine, index, query, start, span, start - max_lookback)
        back = max(back, start - t)
    return back


#: New-terms fields whose term is a single-valued document field of its own (the tracker's rule).
_TERM_FIELDS = {"sourceIPs": "source.ip"}


def _agg_field(field: str) -> str:
    return _TERM_FIELDS.get(field) or doc_field(field)


def _terms_agg_ok(rule: PackRule, compiled: CompiledRule) -> bool:
    fields = rule.new_terms.fields if rule.new_terms else ()
    return compiled.exact and all(
        f in _TERM_FIELDS or (f not in MULTI_VALUED and field_kind(f) == "keyword") for f in fields)


def prime_new_terms(engine: "Engine", index: str, runner: Runner, compiled: Mapping[str, CompiledRule],
                    start: float, keys: Mapping[tuple[str, ...], Mapping[str, str]], page_size: int = 1000) -> None:
    """Fill each new-terms tracker with what the rule matched in [start - history, start)."""
    for rid, tracker in runner.new_terms.items():
        rule = tracker.rule
        c = compiled.get(rid)
        if c is None or c.query == MATCH_NONE or not rule.generate:
            continue
        fields = rule.new_terms.fields  # type: ignore[union-attr]
        agg = _terms_agg_ok(rule, c)
        # events of start's own millisecond come with the window search; documents are cut precisely below
        window = {"range": {"@timestamp": {"gte": _ms(start - tracker.history), "lt": _ms(start, up=not agg),
                                           "format": "epoch_millis"}}}
        query = {"bool": {"filter": [c.query, window]}}
        if agg:
            after = None
            while True:
                comp: dict[str, Any] = {"size": page_size,
                                        "sources": [{str(i): {"terms": {"field": _agg_field(f)}}}
                                                    for i, f in enumerate(fields)]}
                if after is not None:
                    comp["after"] = after
                body = {"size": 0, "query": query, "track_total_hits": False,
                        "aggs": {"t": {"composite": comp, "aggs": {"last": {"max": {"field": "@timestamp"}}}}}}
                res = engine.request("POST", f"/{index}/_search", body=body)["aggregations"]["t"]
                for b in res["buckets"]:
                    terms = tuple(str(b["key"][str(i)]).lower() for i in range(len(fields)))
                    t = b["last"]["value"] / 1000.0
                    tracker.seen[terms] = max(tracker.seen.get(terms, t), t)
                after = res.get("after_key")
                if not res["buckets"] or after is None:
                    break
            continue
        for hit in search_hits(engine, index, query, source=SOURCE_FIELDS, page_size=page_size):
            event = doc_event(hit["_source"], keys)
            if not c.exact and not rule.matches(event):
                continue
            t = event_time(event)
            if t is None:
                t = _epoch(hit["_source"].get("@timestamp"))
            if t is not None and t < start:
                tracker.observe(event, t)


# --------------------------------------------------------------------------- the run


def compile_pack(pack: RulePack, target: QueryTarget) -> dict[str, CompiledRule]:
    """Compiled query per single-event rule id."""
    return {r.id: compile_rule_query(r, target, pack.placeholders) for r in pack.single}


def _epoch_of(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def engine_alerts(engine: "Engine", index: str, pack: RulePack, start: datetime, end: datetime, *,
                  lookback: timedelta | None = None, max_lookback: timedelta = timedelta(days=1),
                  page_size: int = 1000) -> list[Alert]:
    """The alerts ``scan`` would raise for the events with @timestamp in [start, end), computed in the engine.

    ``lookback`` fixes the replay before ``start``; None finds the quiet point per correlation
    (at most ``max_lookback``).
    """
    s, e = _epoch_of(start), _epoch_of(end)
    compiled = compile_pack(pack, QueryTarget.for_engine(engine))
    by_id = {r.id: r for r in pack.single}
    keys = redot_keys(pack_fields(pack))
    back = lookback.total_seconds() if lookback is not None else \
        correlation_lookback(engine, index, pack, compiled, s, max_lookback.total_seconds())
    runner = Runner(pack)
    prime_new_terms(engine, index, runner, compiled, s, keys, page_size)
    clauses = named_query(compiled, list(compiled))
    if not clauses:
        return []
    out: list[Alert] = []
    for hit in in_event_time_order(named_hits(engine, index, clauses, filters=[_range(s - back, e)],
                                              source=SOURCE_FIELDS, page_size=page_size)):
        src = hit["_source"]
        event = doc_event(src, keys)
        ids = [r for r in _rule_ids_hit(hit) if r in compiled and (compiled[r].exact or by_id[r].matches(event))]
        out += runner.feed_matched(event, ids, _epoch(src.get("@timestamp")))
    out += runner.flush(closed_before=e)
    return [a for a in out if (t := alert_end(a)) is not None and s <= t < e]
