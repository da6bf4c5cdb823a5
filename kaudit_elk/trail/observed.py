"""``policy check --from-cluster``: the levels and stages that really arrive, from the stored events.

One composite aggregation over (level, stage, apiGroup, resource, subresource, verb) in a time range,
then, per rule, the events of the request shapes it names (resource, subresource, verb): the levels
they arrived at against the level the rule needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaudit_elk.base.vocab import KEPT_STAGES
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.templates import Names
from kaudit_elk.trail.needs import RuleNeed
from kaudit_elk.trail.policy import RANK

_KEYS = (("level", "kubernetes.audit.level"), ("stage", "kubernetes.audit.stage"),
         ("group", "kubernetes.audit.objectRef.apiGroup"), ("resource", "kubernetes.audit.objectRef.resource"),
         ("subresource", "kubernetes.audit.objectRef.subresource"), ("verb", "kubernetes.audit.verb"))


@dataclass(frozen=True, slots=True)
class Bucket:
    level: str
    stage: str
    group: str
    resource: str
    subresource: str
    verb: str
    count: int


@dataclass(slots=True)
class Observed:
    buckets: list[Bucket]
    levels: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class RuleObservation:
    rule_id: str
    title: str
    needs: str
    events: int
    below: int  # events of its request shapes that arrived below its level
    levels: dict[str, int]
    status: str  # ok | below | no-events | any-request


def fetch(engine: Engine, namespace: str, since: str = "now-24h", until: str = "now") -> Observed:
    """Aggregate the stored events of ``[since, until)``."""
    stream = Names(namespace).stream
    sources = [{k: {"terms": {"field": f, "missing_bucket": True}}} for k, f in _KEYS]
    after: dict[str, Any] | None = None
    buckets: list[Bucket] = []
    while True:
        comp: dict[str, Any] = {"size": 1000, "sources": sources}
        if after:
            comp["after"] = after
        body = engine.request("POST", f"/{stream}/_search", {
            "size": 0, "query": {"range": {"@timestamp": {"gte": since, "lt": until}}},
            "aggs": {"c": {"composite": comp}}}, ignore=(404,))
        agg = ((body or {}).get("aggregations") or {}).get("c") or {}
        for b in agg.get("buckets", []):
            k = b["key"]
            buckets.append(Bucket(*(str(k.get(name) or "") for name, _ in _KEYS), count=int(b["doc_count"])))  # type: ignore[misc, arg-type]  # the six key fields, then count
        after = agg.get("after_key")
        if not after or not agg.get("buckets"):
            break
    out = Observed(buckets)
    for b in buckets:
        out.levels[b.level] = out.levels.get(b.level, 0) + b.count
        out.stages[b.stage] = out.stages.get(b.stage, 0) + b.count
    return out


def compare(observed: Observed, needs: list[RuleNeed]) -> list[RuleObservation]:
    """Per rule: how many events of the request shapes it names arrived, and how many below its level."""
    out = []
    for need in needs:
        targeted = [a for a in need.alternatives if "resource" in a.allow]
        if len(targeted) != len(need.alternatives):
            out.append(RuleObservation(need.rule_id, need.title, need.level, sum(observed.levels.values()), 0,
                                       dict(observed.levels), "any-request"))
            continue
        levels: dict[str, int] = {}
        for b in observed.buckets:
            if b.stage not in KEPT_STAGES:
                continue
            for a in targeted:
                if not a.allow["resource"].admits(b.resource):
                    continue
                sub = a.allow.get("subresource")
                if (sub and not sub.admits(b.subresource)) or (not sub and b.subresource):
                    continue
                verb = a.allow.get("verb")
                if verb and not verb.admits(b.verb):
                    continue
                levels[b.level] = levels.get(b.level, 0) + b.count
                break
        events = sum(levels.values())
        below = sum(n for lv, n in levels.items() if RANK.get(lv, 0) < RANK[need.level])
        status = "no-events" if not events else ("below" if below else "ok")
        out.append(RuleObservation(need.rule_id, need.title, need.level, events, below, levels, status))
    return out
