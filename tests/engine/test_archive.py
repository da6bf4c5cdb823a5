"""Write-once backing indices, archive to an fs snapshot repository and archive verify, on real engines.

The sandbox engines run with ``path.repo`` (scripts/engines), so a relative ``fs`` location works."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.cluster.retention import apply_retention
from kaudit_elk.cluster.templates import BootstrapOptions, Names
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.trail.archive import archive, archive_verify, backing_indices, ensure_repository, list_snapshots
from tests.engine.tamper import overwrite_as_admin, rewrite_actor

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"


def _setup(engine: Engine, tmp_path: Path) -> tuple[str, str]:
    namespace = f"arch{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    repo = f"kaudit-test-{namespace}"
    try:
        ensure_repository(engine, repo, f"kaudit-test-{namespace}")
    except EngineRequestError as exc:
        pytest.fail(f"cannot register an fs repository (is path.repo set by scripts/engines?): {exc}")
    return namespace, repo


def _ingest(engine: Engine, namespace: str, files: list[Path], tmp_path: Path) -> int:
    stats = ingest(engine, [str(p) for p in files], IngestOptions(namespace=namespace, refresh=True,
                                                                  dead_letter=str(tmp_path / "dead.ndjson")))
    return stats.indexed


def test_archive_round_trip_and_a_tampered_period(engine: Engine, tmp_path: Path) -> None:
    namespace, repo = _setup(engine, tmp_path)
    files = sorted(p for p in INPUTS.iterdir() if p.is_file())
    stream = Names(namespace).stream
    first = _ingest(engine, namespace, files[: len(files) // 2], tmp_path)
    engine.request("POST", f"/{stream}/_rollover")
    second = _ingest(engine, namespace, files[len(files) // 2:], tmp_path)
    engine.request("POST", f"/{stream}/_rollover")
    old, middle, _write = backing_indices(engine, namespace)
    hit = engine.request("POST", f"/{middle}/_search", {"size": 1, "seq_no_primary_term": True})["hits"]["hits"][0]
    overwrite_as_admin(engine, middle, hit["_id"], rewrite_actor(hit["_source"]), if_seq_no=hit["_seq_no"],
                       if_primary_term=hit["_primary_term"], refresh="true")

    result = archive(engine, namespace, repo)
    assert [s.backing_index for s in result.created] == [old, middle]
    assert [s.docs for s in result.created] == [first, second]
    again = archive(engine, namespace, repo)
    assert again.created == [] and again.already == [old, middle]  # idempotent
    snaps = {s.backing_index: s.name for s in list_snapshots(engine, repo, namespace)}

    clean = archive_verify(engine, namespace, snaps[old], repo)
    assert clean.ok and not clean.notes, clean.as_dict()
    assert clean.stored == first and clean.documents == first
    tampered = archive_verify(engine, namespace, snaps[middle], repo)
    assert [i for r in tampered.bad_links for i in r.modified] == [hit["_id"]]
    assert tampered.deleted == 0 and not tampered.inserted
    leftovers = engine.request("GET", "/kaudit-restore-*/_settings", ignore=(404,)) or {}
    assert not [n for n in leftovers if namespace in n]  # the scratch copies are gone


def test_rolled_over_backing_indices_are_write_once(engine: Engine, tmp_path: Path) -> None:
    namespace, _ = _setup(engine, tmp_path)
    _ingest(engine, namespace, sorted(INPUTS.iterdir())[:3], tmp_path)
    plan = apply_retention(engine, namespace, retention_days=36500, rollover_age="0s")
    assert plan.rollover and len(plan.block) == 1
    closed = plan.block[0]
    hit = engine.request("POST", f"/{closed}/_search", {"size": 1, "seq_no_primary_term": True})["hits"]["hits"][0]
    with pytest.raises(EngineRequestError) as err:
        engine.request("PUT", f"/{closed}/_doc/{hit['_id']}", dict(hit["_source"], verb="tampered"),
                       params={"if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"]})
    # the write block (403); on OpenSearch the write-once final pipeline refuses it first (400)
    assert err.value.status == 403 or (err.value.status == 400 and "write-once" in str(err.value))
    settings = engine.request("GET", f"/{closed}/_settings")[closed]["settings"]["index"]
    assert settings["blocks"]["write"] == "true"
    with pytest.raises(EngineRequestError):
        engine.request("DELETE", f"/{closed}/_doc/{hit['_id']}")
    # new events still go to the (new) write index
    assert _ingest(engine, namespace, sorted(INPUTS.iterdir())[3:5], tmp_path) > 0
    assert apply_retention(engine, namespace, retention_days=36500, rollover_age="1d").block == []
