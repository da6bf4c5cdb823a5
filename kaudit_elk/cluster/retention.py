"""Client-side lifecycle for engines without ILM/ISM: roll the stream over, delete expired indices.

Used by ``kaudit-elk retention`` (run it daily from cron) where bootstrap reported that no
lifecycle engine exists (e.g. the Elasticsearch integ-test build, OpenSearch without the
index-management plugin). Only core APIs are used: ``_rollover``, ``_settings``, ``_search``,
``DELETE <index>``, ``_block/write``. A backing index is deleted only when its *newest* event is older
than the retention period, and the write index is never deleted. Every backing index that is no longer
the write index gets a write block (``index.blocks.write``): rolled-over audit data is write-once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kaudit_elk.base.timeparse import duration_seconds
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.templates import Names

@dataclass(frozen=True)
class BackingIndex:
    name: str
    created: float  # epoch seconds
    newest_event: float | None  # epoch seconds of max(@timestamp), None when empty
    docs: int
    write_blocked: bool = False


@dataclass
class RetentionPlan:
    rollover: bool
    delete: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    block: list[str] = field(default_factory=list)  # closed indices to make read-only (the write index too after a rollover)


def plan_retention(indices: list[BackingIndex], now: float, retention_s: float, rollover_s: float) -> RetentionPlan:
    """Pure decision: roll over an old non-empty write index; delete fully expired older indices."""
    if not indices:
        return RetentionPlan(False)
    ordered = sorted(indices, key=lambda i: i.created)
    write = ordered[-1]
    plan = RetentionPlan(rollover=write.docs > 0 and now - write.created >= rollover_s)
    for idx in ordered[:-1]:
        expired = idx.newest_event is None or now - idx.newest_event > retention_s
        (plan.delete if expired else plan.keep).append(idx.name)
        if not expired and not idx.write_blocked:
            plan.block.append(idx.name)
    plan.keep.append(write.name)
    if plan.rollover:
        plan.block.append(write.name)
    return plan


def observe(engine: Engine, stream: str) -> list[BackingIndex]:
    """Backing indices of ``stream`` with creation time, newest event and doc count."""
    settings = engine.request("GET", f"/{stream}/_settings/index.creation_date,index.blocks.write", ignore=(404,)) or {}
    out = []
    for name, body in settings.items():
        index_settings = body["settings"]["index"]
        created = int(index_settings["creation_date"]) / 1000
        blocked = str((index_settings.get("blocks") or {}).get("write", "false")).lower() == "true"
        res = engine.request("POST", f"/{name}/_search", {
            "size": 0, "track_total_hits": True, "aggs": {"newest": {"max": {"field": "@timestamp"}}}})
        newest = res["aggregations"]["newest"]["value"]
        out.append(BackingIndex(name, created, newest / 1000 if newest is not None else None,
                                res["hits"]["total"]["value"], blocked))
    return out


def apply_retention(engine: Engine, namespace: str, retention_days: float, rollover_age: str = "1d",
                    dry_run: bool = False, now: float | None = None) -> RetentionPlan:
    """Roll over and delete as planned; returns the plan (what was, or would be, done)."""
    stream = Names(namespace).stream
    plan = plan_retention(observe(engine, stream), now or time.time(), retention_days * 86400, duration_seconds(rollover_age, "rollover age"))
    if dry_run:
        return plan
    if plan.rollover:
        engine.request("POST", f"/{stream}/_rollover")
    for name in plan.delete:
        engine.request("DELETE", f"/{name}")
    for name in plan.block:
        engine.request("PUT", f"/{name}/_block/write")
    return plan
