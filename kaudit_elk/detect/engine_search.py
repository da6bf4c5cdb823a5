"""Run a RulePack in the engine: a cheap prefilter per window in the engine, the pack on its hits here.

The engine's cost for the pack's exact queries is not the documents they return but the queries
themselves: hundreds of case-insensitive patterns, each enumerating its field's terms in every
segment of the shard (history included) and, for a named query, again per returned hit. So the
engine only runs each single-event rule's **prefilter** (:func:`cheap_superset`: its compiled query
with only the leaves that stay cheap — exact terms, numbers, existence, and patterns on fields with
few distinct values such as verb, resource or the authorization decision — and every other leaf
widened to "anything"), united in one ``bool.should``; the documents it returns are read whole and
the rules are evaluated here by :meth:`Runner.feed`, exactly as ``scan`` evaluates them (so
per-request dedupe, correlations and new-terms behave as in ``scan``, and no rule depends on the
engine reproducing Sigma's matching).

Windows: alerts are returned only when their evidence ends in ``[start, end)``. Events before
``start`` (the lookback) only rebuild correlation state; by default the lookback reaches back to a
quiet point (no base-rule prefilter match for a whole correlation timespan, so no base-rule match
either), where every correlation's state is provably empty, capped at ``max_lookback``. New-terms
history is primed from the engine over ``[start - history, start)`` (a composite aggregation —
``sourceIPs`` through ``source.ip``, the term the tracker uses — or the matching documents when a
term field is multi-valued or the rule needs client-side checking).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import orjson
from sigma.conditions import ConditionFieldEqualsValueExpression
from sigma.correlations import SigmaCorrelationRule

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.cluster.engine import EngineRequestError
from kaudit_elk.rules.alerts import Alert, event_time
from kaudit_elk.rules.compiler import (
    MATCH_ALL,
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
                resp = engine.search("/_search", body)
                pit = resp.get("pit_id", pit)
            else:
                resp = engine.search(f"/{index}/_search", body)
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


#: Sigma fields whose distinct values are few and grow slowly (the API surface, stages, decisions,
#: namespaces, identities' groups, clients): a case-insensitive term or a pattern on them enumerates
#: a small terms dictionary, so the prefilter keeps such leaves. Resolved to document fields through
#: the compiler's own mapping (:func:`doc_field`).
LOW_CARDINALITY = ("verb", "stage", "level", "objectRef.resource", "objectRef.subresource", "objectRef.apiGroup",
                   "objectRef.apiVersion", "objectRef.namespace", "annotations.authorization.k8s.io/decision",
                   "user.groups", "impersonatedUser.username", "impersonatedUser.groups", "userAgent",
                   "responseStatus.code")
_CHEAP_FIELDS = frozenset(doc_field(f) for f in LOW_CARDINALITY)


def _cheap_leaf(query: Mapping[str, Any]) -> bool:
    """A leaf whose cost is bounded by the documents it is tested on, not by the shard's terms: exact
    terms (case-insensitive too), a pattern of a few literals, and any leaf on a low-cardinality field."""
    if len(query) != 1:
        return False
    kind, spec = next(iter(query.items()))
    if kind in ("match_all", "match_none", "exists", "range"):
        return True
    if not isinstance(spec, dict) or len(spec) != 1:
        return False
    fieldname, body = next(iter(spec.items()))
    if fieldname in _CHEAP_FIELDS:
        return True
    if kind in ("term", "terms"):  # a term, even case-insensitive, expands to a few postings lists read lazily
        return True
    if kind in ("wildcard", "regexp") and isinstance(body, dict):
        return _few_literals(kind, str(body.get("value", "")))
    return False


#: Lucene reads a multi-term query of at most this many terms lazily, as a disjunction of term queries
#: (its constant-score rewrite's threshold); more terms are read eagerly over the whole segment.
FEW_TERMS = 16
_REGEXP_META = frozenset(".?+*{}[]()~<>#@&\"\\")


def _few_literals(kind: str, pattern: str) -> bool:
    """Whether a pattern denotes a small finite set of literal strings (``a|b|c``, no wildcards): its
    case-insensitive automaton then matches a few terms of the shard's dictionary, not thousands."""
    if kind == "wildcard":
        return not any(c in "*?" for c in pattern.replace("\\*", "").replace("\\?", ""))
    if pattern.startswith("(") and pattern.endswith(")") and pattern.count("(") == 1:
        pattern = pattern[1:-1]  # one group of alternatives: (a|b|c)
    alternatives, i = 1, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c in _REGEXP_META:
            return False
        if c == "|":
            alternatives += 1
        i += 1
    return alternatives <= FEW_TERMS


def cheap_superset(query: Mapping[str, Any], positive: bool = True) -> dict[str, Any]:
    """A query matching at least every document ``query`` matches, from its cheap leaves only
    (:func:`_cheap_leaf`): another leaf becomes match_all where it must hold and match_none where it
    is negated (``not x`` then admits everything). With ``positive`` False the result matches at most
    what ``query`` matches (the inside of a ``must_not``)."""
    if "bool" not in query:
        if _cheap_leaf(query):
            return dict(query)
        return MATCH_ALL if positive else MATCH_NONE
    b = query["bool"]
    parts: list[dict[str, Any]] = []
    for c in list(b.get("filter") or []) + list(b.get("must") or []):
        sub = cheap_superset(c, positive)
        if sub == MATCH_NONE:
            return MATCH_NONE
        if sub != MATCH_ALL:
            parts.append(sub)
    for c in b.get("must_not") or []:
        sub = cheap_superset(c, not positive)
        if sub == MATCH_ALL:
            return MATCH_NONE
        if sub != MATCH_NONE:
            parts.append({"bool": {"must_not": [sub]}})
    should = b.get("should") or []
    if should:
        if str(b.get("minimum_should_match")) != "1":  # the compiler writes only "at least one of"
            return _all_of_parts(parts) if positive else MATCH_NONE
        subs = [x for x in (cheap_superset(c, positive) for c in should) if x != MATCH_NONE]
        if not subs:
            return MATCH_NONE
        if MATCH_ALL not in subs:
            parts.append(subs[0] if len(subs) == 1 else {"bool": {"should": subs, "minimum_should_match": 1}})
    return _all_of_parts(parts)


def _all_of_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if not parts:
        return MATCH_ALL
    return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}


def prefilter_pack(compiled: Mapping[str, CompiledRule]) -> dict[str, CompiledRule]:
    """Each rule's :func:`cheap_superset` as a (not exact) CompiledRule."""
    out = {}
    for rid, c in compiled.items():
        q = cheap_superset(c.query)
        out[rid] = CompiledRule(rid, q, () if q == c.query and c.exact else ("prefilter",))
    return out


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


def union_hits(parts: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The hits of several clause groups' searches, each document (by ``_index``, ``_id``) once with the
    union of its ``matched_queries`` (a list), in order of first appearance."""
    if len(parts) == 1:
        return list(parts[0])
    out: dict[tuple[Any, str], dict[str, Any]] = {}
    for hits in parts:
        for hit in hits:
            key = (hit.get("_index"), hit["_id"])
            prev = out.get(key)
            if prev is None:
                out[key] = dict(hit, matched_queries=_rule_ids_hit(hit))
            else:
                prev["matched_queries"] = list(dict.fromkeys(prev["matched_queries"] + _rule_ids_hit(hit)))
    return list(out.values())


# --------------------------------------------------------------------------- lookback / history


def latest_quiet_point(buckets: Sequence[tuple[float, float]], start: float, span: float, floor: float) -> float:
    """Pure: the latest time T <= ``start`` with no match in [T - span, T), not earlier than ``floor``,
    from the matches' (first, last) time per non-empty histogram bucket, in time order. T is ``start``
    or the first match of a bucket; with buckets at most half the span wide no gap that long fits
    inside one, so T is the latest one; wider buckets may give an earlier T (a longer replay, never a
    wrong state). Times are milliseconds: a bucket's last match may be up to
    1 ms later than its value."""
    if not buckets or buckets[-1][1] + 0.001 <= start - span:
        return start
    for i in range(len(buckets) - 1, -1, -1):
        first = buckets[i][0]
        if first <= floor:
            return floor
        if i == 0:  # nothing matched in [floor, first): quiet if that covers a whole span
            return first if first - span >= floor else floor
        if buckets[i - 1][1] + 0.001 <= first - span:
            return first
    return floor


def correlation_lookback(engine: "Engine", index: str, pack: RulePack, compiled: Mapping[str, CompiledRule],
                         start: float, max_lookback: float) -> float:
    """Seconds before ``start`` to replay so every correlation starts from an empty state: one request,
    a histogram of each correlation's base-rule matches over the ``max_lookback`` before ``start`` (with
    each bucket's first and last match), from which :func:`latest_quiet_point` finds its quiet point."""
    floor = start - max_lookback
    aggs: dict[str, Any] = {}
    spans: dict[str, float] = {}
    for i, r in enumerate(pack.correlations):
        sigma = r.sigma
        assert isinstance(sigma, SigmaCorrelationRule)
        span = float(sigma.timespan.seconds)
        clauses = named_query(compiled, [str(ref.rule.id) for ref in sigma.rules if str(ref.rule.id) in compiled])
        if not clauses:
            continue
        # at most ~5,000 buckets per correlation (the engines' bucket limit is 65,535 per request)
        width = max(1, math.ceil(max(span / 2, max_lookback / 5000)))
        spans[f"c{i}"] = span
        aggs[f"c{i}"] = {"filter": {"bool": {"should": clauses, "minimum_should_match": 1}},
                         "aggs": {"h": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{width}s",
                                                           "min_doc_count": 1},
                                        "aggs": {"lo": {"min": {"field": "@timestamp"}},
                                                 "hi": {"max": {"field": "@timestamp"}}}}}}
    if not aggs:
        return 0.0
    body = {"size": 0, "track_total_hits": False, "aggs": aggs, "query": {"range": {"@timestamp": {
        "gte": _ms(floor), "lt": _ms(start, up=True), "format": "epoch_millis"}}}}
    res = engine.search(f"/{index}/_search", body)["aggregations"]
    back = 0.0
    for name, span in spans.items():
        buckets = [(b["lo"]["value"] / 1000.0, b["hi"]["value"] / 1000.0) for b in res[name]["h"]["buckets"]]
        back = max(back, start - latest_quiet_point(buckets, start, span, floor))
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
                    start: float, keys: Mapping[tuple[str, ...], Mapping[str, str]], page_size: int = 1000,
                    only: set[str] | None = None) -> None:
    """Fill each new-terms tracker (those in ``only`` when given) with what the rule matched in
    [start - history, start)."""
    for rid, tracker in runner.new_terms.items():
        if only is not None and rid not in only:
            continue
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
            for b in _composite(engine, index, query, fields, page_size):
                terms = _bucket_terms(b, len(fields))
                t = b["last"]["value"] / 1000.0
                tracker.seen[terms] = max(tracker.seen.get(terms, t), t)
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


def broad_prefilter(query: Mapping[str, Any]) -> bool:
    """Whether a prefilter admits events by existence alone (no term, pattern or number must hold): a
    new-terms rule keyed on such a selection would have the engine return almost every event."""
    if "bool" not in query:
        return next(iter(query), "") in ("match_all", "exists", "range")
    b = query["bool"]
    parts = list(b.get("filter") or []) + list(b.get("must") or [])
    if b.get("should"):
        parts += list(b["should"])
    return all(broad_prefilter(c) for c in parts)  # must_not parts only narrow


def _bucket_terms(bucket: Mapping[str, Any], n: int) -> tuple[str, ...]:
    """A composite bucket's key as the tracker's term tuple (lowercased, as it compares terms)."""
    return tuple(str(bucket["key"][str(i)]).lower() for i in range(n))


def _composite(engine: "Engine", index: str, query: dict[str, Any], fields: Sequence[str],
               page_size: int) -> Iterator[dict[str, Any]]:
    """Every bucket of a composite aggregation over ``fields`` (their index fields), with the first and
    last @timestamp of each."""
    after = None
    while True:
        comp: dict[str, Any] = {"size": page_size,
                                "sources": [{str(i): {"terms": {"field": _agg_field(f)}}} for i, f in enumerate(fields)]}
        if after is not None:
            comp["after"] = after
        body = {"size": 0, "query": query, "track_total_hits": False,
                "aggs": {"t": {"composite": comp, "aggs": {"first": {"min": {"field": "@timestamp"}},
                                                           "last": {"max": {"field": "@timestamp"}}}}}}
        res = engine.search(f"/{index}/_search", body)["aggregations"]["t"]
        yield from res["buckets"]
        after = res.get("after_key")
        if not res["buckets"] or after is None:
            return


def new_term_hits(engine: "Engine", index: str, runner: Runner, compiled: Mapping[str, CompiledRule],
                  rule_ids: Sequence[str], start: float, end: float, *, source: Any = True,
                  page_size: int = 1000) -> list[dict[str, Any]]:
    """What a new-terms rule with a broad selection needs of [start, end), without reading every event it
    matches: one composite aggregation of its term tuples there (first and last time of each). A tuple
    its tracker knows (seen within the history before its first time here) cannot alert in a window no
    longer than the history: the tracker just learns its last time. Only the documents of the other
    tuples — new ones, rare by nature — are returned, for the runner to judge and alert on exactly as
    ``scan`` does. A window longer than the rule's history reads all of its documents."""
    out: list[dict[str, Any]] = []
    window = {"range": {"@timestamp": {"gte": _ms(start), "lt": _ms(end, up=True) + 1, "format": "epoch_millis"}}}
    for rid in rule_ids:
        tracker, c = runner.new_terms[rid], compiled[rid]
        fields = tracker.rule.new_terms.fields  # type: ignore[union-attr]
        query = {"bool": {"filter": [c.query, window]}}
        if end - start > tracker.history:
            out += search_hits(engine, index, query, source=source, page_size=page_size)
            continue
        new: list[dict[str, Any]] = []
        for b in _composite(engine, index, query, fields, page_size):
            terms = _bucket_terms(b, len(fields))
            first, last = b["first"]["value"] / 1000.0, b["last"]["value"] / 1000.0
            seen = tracker.seen.get(terms)
            if seen is not None and first + 0.001 - seen <= tracker.history:
                tracker.seen[terms] = max(seen, last)  # known: no alert possible here; learn its last time
            else:
                new.append({"bool": {"filter": [{"term": {_agg_field(f): b["key"][str(i)]}}
                                                for i, f in enumerate(fields)]}})
        for group in clause_groups(new):
            out += search_hits(engine, index, {"bool": {"filter": [query], "should": group, "minimum_should_match": 1}},
                               source=source, page_size=page_size)
    return out


# --------------------------------------------------------------------------- the run

#: Version of the saved state's layout (a different one is ignored: the safety net replays instead).
STATE_VERSION = 1
_RESULT_WINDOW = 10000  # index.max_result_window's default: the largest page without search_after
#: Prefiltered documents fetched per request (each slice of a window is one unsorted request; the
#: client puts them in event-time order). As large as a page can be: fewer requests, fewer round trips.
SLICE_HITS = _RESULT_WINDOW
_BUCKETS = 1000
def compile_pack(pack: RulePack, target: QueryTarget) -> dict[str, CompiledRule]:
    """Compiled query per single-event rule id."""
    return {r.id: compile_rule_query(r, target, pack.placeholders) for r in pack.single}


def _epoch_of(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _digest(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:24]


def _semantics(rule: PackRule) -> dict[str, Any]:
    """The parts of a rule's Sigma that decide what it matches and when it fires."""
    d = rule.sigma.to_dict()
    return {k: d.get(k) for k in ("id", "name", "logsource", "detection", "correlation")}


def rule_fingerprints(pack: RulePack, compiled: Mapping[str, CompiledRule]) -> dict[str, str]:
    """A digest per correlation and new-terms rule of everything its saved state depends on (its own
    definition, its base rules' definitions and engine queries, the placeholders): a saved state is
    used only for a rule whose digest is unchanged."""
    out: dict[str, str] = {}
    ph = pack.placeholders
    for r in pack.rules:
        if isinstance(r.sigma, SigmaCorrelationRule):
            bases = []
            for ref in r.sigma.rules:
                bid = str(getattr(ref.rule, "id", ref.reference))
                base = next((b for b in pack.single if b.id == bid), None)
                c = compiled.get(bid)
                bases.append([bid, _semantics(base) if base else None, c.query if c else None,
                              c.exact if c else None, len(base.exceptions) if base else 0])
            out[r.id] = _digest([_semantics(r), bases, ph])
        elif r.new_terms:
            c = compiled.get(r.id)
            out[r.id] = _digest([_semantics(r), [r.new_terms.fields, r.new_terms.history],
                                 c.query if c else None, len(r.exceptions), ph])
    return out


@dataclass
class ReadStats:
    """What reading windows cost: requests, events stored in the searched ranges, documents fetched."""

    requests: int = 0
    events: int = 0
    fetched: int = 0
    replays: int = 0  # windows that had no usable saved state (the safety net ran)


@dataclass
class WindowResult:
    alerts: list[Alert]
    states: dict[float, dict[str, Any]] = field(default_factory=dict)  # checkpoint -> saved state


def _unique(hits: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Merged hit streams with each document once (equal documents have equal keys, so they are adjacent)."""
    prev: tuple[Any, Any] | None = None
    for h in hits:
        key = (h.get("_index"), h["_id"])
        if key != prev:
            yield h
        prev = key


def _hit_key(hit: Mapping[str, Any]) -> tuple:
    """Event-time order (microseconds), then the engine's old tie-breakers: stage time (ms), auditID, stage."""
    src = hit["_source"]
    audit = (src.get("kubernetes") or {}).get("audit") or {}
    st = _epoch(audit.get("stageTimestamp"))
    aid = audit.get("auditID")
    stage = audit.get("stage")
    return (hit["_t"], math.floor(st * 1000) if st is not None else math.inf,
            (0, aid) if isinstance(aid, str) else (1, ""), (0, stage) if isinstance(stage, str) else (1, ""),
            hit.get("_index", ""), hit["_id"])


class EngineDetector:
    """The pack, compiled once, run over windows of one index: one point-in-time per detector, and per
    window usually one request (the prefiltered documents and the events stored), else one planning
    request (how many events, which rules' prefilters match, where in time) plus one request per slice
    of at most :data:`SLICE_HITS` prefiltered documents (empty stretches cost nothing); the documents
    are evaluated here by the pack's runner. Correlation and new-terms state is carried in and out as
    plain data (:meth:`window`'s ``state`` and ``checkpoints``)."""

    def __init__(self, engine: "Engine", index: str, pack: RulePack, page_size: int = 1000) -> None:
        self.engine, self.index, self.pack, self.page_size = engine, index, pack, page_size
        self.compiled = compile_pack(pack, QueryTarget.for_engine(engine))
        self.by_id = {r.id: r for r in pack.single}
        self.keys = redot_keys(pack_fields(pack))
        self.fingerprints = rule_fingerprints(pack, self.compiled)
        # whole documents: the engine returns a stored _source as it is, while filtering it parses every one
        self.source: Any = True
        self.prefilters = prefilter_pack(self.compiled)
        bases = {str(ref.rule.id) for r in pack.correlations for ref in r.sigma.rules}  # type: ignore[union-attr]
        #: new-terms rules keyed on a broad selection: judged from an aggregation (:func:`new_term_hits`)
        self.term_rules = sorted(
            r.id for r in pack.single
            if r.new_terms and r.generate and r.id not in bases and r.id in self.compiled
            and _terms_agg_ok(r, self.compiled[r.id]) and broad_prefilter(self.prefilters[r.id].query))
        self.clauses = {r: c.query for r, c in self.prefilters.items()
                        if c.query != MATCH_NONE and r not in self.term_rules}
        self.stats = ReadStats()
        self._pit: str | None = None
        self._pit_tried = False
        self.active: list[str] | None = None  # rules the current requests carry (None: all)
        self._runner: Runner | None = None
        #: single-event rules some correlation counts (what a lookback before a window must read)
        self.correlation_bases = sorted(bases & set(self.compiled))

    # ------------------------------------------------------------------ requests

    def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        self.stats.requests += 1
        if self._pit is not None:
            body["pit"] = {"id": self._pit, "keep_alive": _KEEP_ALIVE}
            resp = self.engine.search("/_search", body)
            self._pit = resp.get("pit_id", self._pit)
            return resp
        return self.engine.search(f"/{self.index}/_search", body)

    def _ensure_pit(self) -> None:
        if not self._pit_tried:  # engines or roles without point-in-time: plain searches (see _fetch)
            self._pit_tried = True
            self.stats.requests += 1
            self._pit = _open_pit(self.engine, self.index)

    def close(self) -> None:
        if self._pit is not None:
            self.stats.requests += 1
            _close_pit(self.engine, self._pit)
            self._pit = None

    def __enter__(self) -> "EngineDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _ms_range(a: int, b: int) -> dict[str, Any]:
        return {"range": {"@timestamp": {"gte": a, "lt": b, "format": "epoch_millis"}}}

    def _should(self) -> list[dict[str, Any]]:
        """The current rules' prefilters, each distinct one once (many rules share theirs)."""
        rules = self.active if self.active is not None else self.clauses
        seen: dict[bytes, dict[str, Any]] = {}
        for r in rules:
            q = self.clauses[r]
            seen.setdefault(orjson.dumps(q, option=orjson.OPT_SORT_KEYS), q)
        return list(seen.values())

    def _groups(self) -> list[dict[str, Any]]:
        """The current rules' prefilters as ``bool.should`` queries, one per clause group: a pack
        beyond the engines' clause limit is read with one request per group (:func:`clause_groups`)."""
        should = self._should()
        if MATCH_ALL in should:
            return [MATCH_ALL]
        return [{"bool": {"should": g, "minimum_should_match": 1}} for g in clause_groups(should)]

    def _plan(self, a: int, b: int, events: bool = False) -> tuple[list[tuple[int, int, int]], int, int]:
        """One request: (non-empty buckets of [a, b) as (start ms, matching documents, events), their
        width in ms, the events stored in [a, b)) — events per bucket and in all only when asked. With several clause groups a
        bucket's matching documents are the largest count of any group (each group's slice fetch
        then fits in what is planned for it)."""
        width = max(1, -(-(b - a) // _BUCKETS))
        hist = {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{width}ms", "min_doc_count": 1}}
        groups = self._groups()
        per_group = {f"m{i}": {"filter": g, "aggs": {"t": hist}} for i, g in enumerate(groups)}
        if events:
            # (which rules match anything at all is not asked: a filter per rule over every event of the
            # range cost more than the later requests save by carrying fewer clauses)
            body = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": [self._ms_range(a, b)]}},
                    "aggs": {"e": hist, **per_group}}
        elif len(groups) == 1:  # only the matching documents are visited
            body = {"size": 0, "track_total_hits": False,
                    "query": {"bool": {"filter": [self._ms_range(a, b), groups[0]]}},
                    "aggs": {"m0": {"filter": {"match_all": {}}, "aggs": {"t": hist}}}}
        else:
            body = {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": [self._ms_range(a, b)]}},
                    "aggs": per_group}
        resp = self._request(body)
        aggs = resp["aggregations"]
        per_events = {int(x["key"]): int(x["doc_count"]) for x in aggs["e"]["buckets"]} if events else {}
        most: dict[int, int] = {}
        for i in range(len(groups)):
            for x in aggs[f"m{i}"]["t"]["buckets"]:
                k = int(x["key"])
                most[k] = max(most.get(k, 0), int(x["doc_count"]))
        buckets = [(k, m, per_events.get(k, 0)) for k, m in sorted(most.items()) if m]
        if events:  # buckets with events and no match count for progress too
            have = {k for k, _, _ in buckets}
            buckets += [(k, 0, n) for k, n in per_events.items() if k not in have and n]
            buckets.sort()
        total = 0
        if events:
            t = resp["hits"]["total"]
            total = t["value"] if isinstance(t, dict) else int(t)
        return buckets, width, total

    def density(self, start: float, end: float) -> list[tuple[float, float, int, int]]:
        """One request for a backfill's plan: about a thousand time buckets of [start, end) as (start,
        end, matching documents, events), empty ones left out."""
        if not self.clauses:
            return []
        self._ensure_pit()
        self.active = None
        a, b = _ms(start), _ms(end) + 1
        buckets, width, _ = self._plan(a, b, events=True)
        return [(max(a, k) / 1000.0, min(b, k + width) / 1000.0, m, n) for k, m, n in buckets]

    def _buckets(self, a: int, b: int) -> list[tuple[int, int, int]]:
        """Non-empty buckets of matching documents in [a, b) as (start ms, end ms, count): one request."""
        planned, width, _ = self._plan(a, b)
        return [(max(a, k), min(b, k + width), m) for k, m, _ in planned]

    def _slices(self, buckets: list[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
        """[start ms, end ms, matching documents] slices of at most SLICE_HITS documents (a denser
        bucket is planned again, finer), in time order; empty stretches are skipped."""
        cur: list[int] | None = None
        for lo, hi, n in buckets:
            if n > _RESULT_WINDOW and hi - lo > 1:
                if cur:
                    yield cur[0], cur[1], cur[2]
                    cur = None
                yield from self._slices(self._buckets(lo, hi))
                continue
            if cur and cur[2] + n <= SLICE_HITS:
                cur[1], cur[2] = hi, cur[2] + n
            else:
                if cur:
                    yield cur[0], cur[1], cur[2]
                cur = [lo, hi, n]
        if cur:
            yield cur[0], cur[1], cur[2]

    def _fetch(self, a: int, b: int, n: int) -> list[dict[str, Any]]:
        """Every matching document of one slice (unordered), with the fields alerts need: one request
        per clause group (sorted pages only for a millisecond holding more than a page)."""
        size = n if self._pit is not None else min(_RESULT_WINDOW, n + n // 10 + 100)
        parts = []
        for group in self._groups():
            query = {"bool": {"filter": [self._ms_range(a, b), group]}}
            hits: list[dict[str, Any]] = []
            if size <= _RESULT_WINDOW:
                body = {"size": size, "query": query, "sort": ["_doc"], "_source": self.source,
                        "track_total_hits": False}
                hits = self._request(body)["hits"]["hits"]
            if size > _RESULT_WINDOW or (self._pit is None and len(hits) >= size):
                # one millisecond holding more than a page, or documents arrived since planning: sorted pages
                hits = list(search_hits(self.engine, self.index, query, source=self.source, page_size=self.page_size))
                self.stats.requests += 3 + len(hits) // self.page_size  # with its own point-in-time
            parts.append(hits)
        return union_hits(parts)

    def _fetch_window(self, a: int, b: int) -> tuple[list[dict[str, Any]] | None, int]:
        """The common case in one request per clause group: every matching document of [a, b) when
        each group matches fewer than SLICE_HITS (None otherwise), and the events stored there."""
        parts, total = [], 0
        for i, group in enumerate(self._groups()):
            body: dict[str, Any] = {"size": SLICE_HITS, "query": {"bool": {"filter": [self._ms_range(a, b)]}},
                                    "post_filter": group, "sort": ["_doc"], "_source": self.source,
                                    "track_total_hits": False}
            if i == 0:  # aggregations see the query's hits: every event
                body["aggs"] = {"n": {"filter": {"match_all": {}}}}
            resp = self._request(body)
            if i == 0:
                total = int(resp["aggregations"]["n"]["doc_count"])
            hits = resp["hits"]["hits"]
            if len(hits) >= SLICE_HITS:
                return None, total
            parts.append(hits)
        return union_hits(parts), total

    def _ordered(self, hits: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
        self.stats.fetched += len(hits)
        out = []
        for h in hits:
            t = _epoch(h["_source"].get("@timestamp"))
            if t is not None and start <= t < end:
                h["_t"] = t
                out.append(h)
        out.sort(key=_hit_key)
        return out

    def read(self, start: float, end: float,
             density: Sequence[tuple[float, float, int, int]] | None = None,
             rules: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Matching documents with event time in [start, end), in event-time order; each hit gets ``_t``.

        Without ``density`` (a scheduled window) one request usually does it all; with it (a backfill
        step, planned up front) the slices come from it and events are counted from it. With ``rules``
        only those rules' prefilters are read (a lookback: its events are not counted as searched)."""
        if not self.clauses:
            return
        a, b = _ms(start), _ms(end) + 1
        if rules is not None:
            self.active = [r for r in rules if r in self.clauses]
            if not self.active:
                return
            density = None
        else:
            self.active = None
        if density is None:
            hits, total = self._fetch_window(a, b)
            self.stats.events += total if rules is None else 0
            if hits is not None:
                yield from self._ordered(hits, start, end)
                return
            self._ensure_pit()  # planning and slices see one snapshot
            buckets = self._buckets(a, b)
        else:
            self._ensure_pit()
            buckets = []
            for lo, hi, m, n in density:
                if start <= lo < end or (lo < start < hi):
                    self.stats.events += n if lo >= start else 0
                    if m:
                        buckets.append((max(a, round(lo * 1000)), min(b, round(hi * 1000)), m))
        for sa, sb, n in self._slices(buckets):
            yield from self._ordered(self._fetch(sa, sb, n), start, end)

    # ------------------------------------------------------------------ state

    def _usable(self, state: Mapping[str, Any] | None, start: float) -> set[str] | None:
        """Rule ids whose saved state can continue at ``start`` (None: the state cannot be used at all)."""
        if not state or state.get("v") != STATE_VERSION or abs(float(state.get("at", -1)) - start) > 1e-6:
            return None
        saved = state.get("fingerprints") or {}
        return {r for r, fp in self.fingerprints.items() if saved.get(r) == fp}

    def _saved(self, runner: Runner, at: float) -> dict[str, Any]:
        return {"v": STATE_VERSION, "at": at, "fingerprints": self.fingerprints, "runner": runner.snapshot(at)}

    # ------------------------------------------------------------------ the window

    def window(self, start: float, end: float, *, state: Mapping[str, Any] | None = None,
               checkpoints: Sequence[float] = (), lookback: float | None = None,
               max_lookback: float = 86400.0,
               density: Sequence[tuple[float, float, int, int]] | None = None) -> WindowResult:
        """The alerts ``scan`` raises for the events in [start, end) (epoch seconds).

        With a ``state`` saved at ``start`` the run continues from it and reads only the window; rules
        whose state is missing or changed are rebuilt: new-terms history from an aggregation, and
        (for a correlation) the safety net — a replay from a quiet point (at most ``max_lookback``, or
        exactly ``lookback``), after which only alerts ending in the window are returned. The state
        after the events before each of ``checkpoints`` (inside [start, end]) is returned with them."""
        usable = self._usable(state, start) if lookback is None else None
        replay = usable is None
        if not replay:
            runner = self._runner or Runner(self.pack)  # one runner per detector: restore replaces its state
            self._runner = runner
            missing = set(runner.stateful_rules()) - runner.restore(state["runner"], usable)  # type: ignore[index]
            replay = any(c.rule.id in missing for c in runner.correlators)
        lo = start
        if replay:
            self.stats.replays += 1
            runner = self._runner = Runner(self.pack)
            back = lookback if lookback is not None else correlation_lookback(
                self.engine, self.index, self.pack, self.prefilters, start, max_lookback)
            lo = start - back
            missing = set(runner.new_terms)
        if missing & set(runner.new_terms):
            prime_new_terms(self.engine, self.index, runner, self.compiled, start, self.keys, self.page_size,
                            only=missing)
        pending = sorted(c for c in checkpoints if start <= c <= end)
        states: dict[float, dict[str, Any]] = {}
        out: list[Alert] = []
        keys = self.keys
        hits: Iterator[dict[str, Any]] = self.read(start, end, density)
        if self.term_rules:
            extra = self._ordered(new_term_hits(self.engine, self.index, runner, self.compiled, self.term_rules,
                                                start, end, source=self.source, page_size=self.page_size), start, end)
            self.stats.requests += len(self.term_rules)
            if extra:
                hits = _unique(heapq.merge(hits, extra, key=_hit_key))
        if replay and lo < start:
            # The lookback rebuilds state only (its alerts are cut below): the correlations' base rules'
            # documents, plus every rule's over the last pending horizon (a request's earlier stage
            # waiting there for its final stage in the window); from the whole first millisecond.
            lo = (math.floor(lo * 1000) - 0.5) / 1000
            near = max(lo, start - runner.pending_horizon)
            hits = itertools.chain(self.read(lo, near, rules=self.correlation_bases) if lo < near else iter(()),
                                   self.read(near, start, rules=list(self.clauses)), hits)
        for hit in hits:
            t = hit["_t"]
            while pending and t >= pending[0]:
                states[pending[0]] = self._saved(runner, pending[0])
                pending.pop(0)
            out += runner.feed(doc_event(hit["_source"], keys), t)
        for c in pending:
            states[c] = self._saved(runner, c)
        out += runner.flush(closed_before=end)
        if replay:
            out = [a for a in out if (t := alert_end(a)) is not None and start <= t < end]
        return WindowResult(out, states)


def engine_alerts(engine: "Engine", index: str, pack: RulePack, start: datetime, end: datetime, *,
                  lookback: timedelta | None = None, max_lookback: timedelta = timedelta(days=1),
                  page_size: int = 1000) -> list[Alert]:
    """The alerts ``scan`` would raise for the events with @timestamp in [start, end), computed in the engine,
    from no saved state: ``lookback`` fixes the replay before ``start``; None finds the quiet point per
    correlation (at most ``max_lookback``)."""
    with EngineDetector(engine, index, pack, page_size) as det:
        return det.window(_epoch_of(start), _epoch_of(end),
                          lookback=lookback.total_seconds() if lookback is not None else None,
                          max_lookback=max_lookback.total_seconds()).alerts
