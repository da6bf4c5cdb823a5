"""Client-side lifecycle and exactly-once across rollover, on engines without ILM/ISM."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.cluster.retention import BackingIndex, apply_retention, observe, plan_retention
from kaudit_elk.cluster.templates import BootstrapOptions, Names


def _setup(engine: Engine, corpus_dir: Path, tmp_path: Path) -> tuple[str, str, Path]:
    namespace = f"ret{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    path = tmp_path / "old.log"
    lines = (corpus_dir / "audit2rbac" / "demo.log").read_text().splitlines()  # events from 2017
    path.write_text("\n".join(lines) + "\n")
    return namespace, Names(namespace).stream, path


def _count(engine: Engine, stream: str) -> int:
    engine.request("POST", f"/{stream}/_refresh")
    return engine.request("GET", f"/{stream}/_count")["count"]


def test_reingest_after_rollover_stores_nothing_twice(engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    namespace, stream, path = _setup(engine, corpus_dir, tmp_path)
    first = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    engine.request("POST", f"/{stream}/_rollover")
    assert len(observe(engine, stream)) == 2
    again = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    assert again.indexed == 0 and again.duplicates == first.indexed
    assert _count(engine, stream) == first.indexed


def test_retention_rolls_over_and_deletes_only_expired_indices(engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    namespace, stream, path = _setup(engine, corpus_dir, tmp_path)
    stats = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    # the write index holds 2017 events and is older than the 0s rollover age: roll over, delete nothing yet
    plan = apply_retention(engine, namespace, retention_days=90, rollover_age="0s")
    assert plan.rollover and plan.delete == []
    assert _count(engine, stream) == stats.indexed
    # a recent event lands in the new write index
    recent = json.loads(path.read_text().splitlines()[0])
    recent.update(auditID="recent-1", requestReceivedTimestamp="2099-01-01T00:00:00Z")
    fresh = tmp_path / "recent.log"
    fresh.write_text(json.dumps(recent) + "\n")
    ingest(engine, [str(fresh)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    dry = apply_retention(engine, namespace, retention_days=90, rollover_age="30d", dry_run=True)
    assert len(dry.delete) == 1 and _count(engine, stream) == stats.indexed + 1  # dry run deletes nothing
    plan = apply_retention(engine, namespace, retention_days=90, rollover_age="30d")
    assert len(plan.delete) == 1 and not plan.rollover
    assert _count(engine, stream) == 1  # only the recent event is left


def test_plan_never_deletes_the_write_index_or_unexpired_data() -> None:
    day = 86400.0
    now = 1000 * day
    idx = [BackingIndex("a", now - 200 * day, now - 150 * day, 5), BackingIndex("b", now - 100 * day, now - 80 * day, 5),
           BackingIndex("c", now - 50 * day, now - 200 * day, 5)]
    plan = plan_retention(idx, now, retention_s=90 * day, rollover_s=1 * day)
    assert plan.delete == ["a"] and plan.keep == ["b", "c"] and plan.rollover
    assert plan_retention([BackingIndex("w", now - 5 * day, None, 0)], now, 90 * day, day).rollover is False
