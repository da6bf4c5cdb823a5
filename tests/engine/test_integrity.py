"""The integrity chain on real engines: clean after ingest; modified, deleted, inserted documents and
removed links are each found and named."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.cluster.integrity import integrity_index
from kaudit_elk.cluster.templates import BootstrapOptions, Names
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.trail.verify import verify
from tests.engine.tamper import overwrite_as_admin, rewrite_actor

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"
SINCE = "2000-01-01T00:00:00Z"


def _ingest(engine: Engine, tmp_path: Path, batch_bytes: int = 4 * 1024 * 1024) -> tuple[str, int]:
    namespace = f"trail{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    files = sorted(str(p) for p in INPUTS.iterdir() if p.is_file())
    stats = ingest(engine, files, IngestOptions(namespace=namespace, dead_letter=str(tmp_path / "dead.ndjson"),
                                                batch_bytes=batch_bytes, refresh=True))
    assert stats.indexed > 50
    return namespace, stats.indexed


def _hits(engine: Engine, namespace: str, n: int) -> list[dict]:
    body = engine.request("POST", f"/{Names(namespace).stream}/_search",
                          {"size": n, "sort": [{"@timestamp": "asc"}], "seq_no_primary_term": True})
    return body["hits"]["hits"]


def test_clean_chain_verifies(engine: Engine, tmp_path: Path) -> None:
    namespace, indexed = _ingest(engine, tmp_path)
    report = verify(engine, namespace, SINCE)
    assert report.ok, report.as_dict()
    assert report.documents == indexed and report.stored == indexed
    assert report.links >= 1 and report.chains == 1
    again = ingest(engine, [str(p) for p in sorted(INPUTS.iterdir())],
                   IngestOptions(namespace=namespace, dead_letter=str(tmp_path / "d2.ndjson"), refresh=True))
    assert again.indexed == 0  # a re-ingest creates nothing, so it adds no link and verify stays clean
    assert verify(engine, namespace, SINCE).ok


def test_modified_deleted_and_inserted_documents_are_reported(engine: Engine, tmp_path: Path) -> None:
    namespace, indexed = _ingest(engine, tmp_path)
    first, second = _hits(engine, namespace, 2)
    changed = rewrite_actor(first["_source"])
    overwrite_as_admin(engine, first["_index"], first["_id"], changed, if_seq_no=str(first["_seq_no"]),
                        if_primary_term=str(first["_primary_term"]), refresh="true")
    engine.request("DELETE", f"/{second['_index']}/_doc/{second['_id']}", params={"refresh": "true"})
    forged = dict(second["_source"], **{"@timestamp": "2024-01-02T03:04:05.000Z"})
    stream = Names(namespace).stream
    created = engine.request("POST", f"/{stream}/_doc", forged, params={"op_type": "create", "refresh": "true"})
    report = verify(engine, namespace, SINCE)
    assert not report.ok
    assert [i for r in report.bad_links for i in r.modified] == [first["_id"]]
    assert [i for r in report.bad_links for i in r.deleted] == [second["_id"]]
    assert [d["id"] for d in report.inserted] == [created["_id"]]
    assert report.documents == indexed and report.stored == indexed  # -1 deleted, +1 inserted
    assert not any(r.problems for r in report.bad_links)  # the links themselves are intact


def test_removed_or_altered_link_breaks_the_chain(engine: Engine, tmp_path: Path) -> None:
    namespace, indexed = _ingest(engine, tmp_path, batch_bytes=64 * 1024)
    index = integrity_index(namespace)
    links = engine.request("POST", f"/{index}/_search", {"size": 100, "sort": [{"seq": "asc"}]})["hits"]["hits"]
    assert len(links) >= 3
    removed, altered = links[1], links[2]
    engine.request("DELETE", f"/{index}/_doc/{removed['_id']}", params={"refresh": "true"})
    src = dict(altered["_source"])
    src["digests"] = list(src["digests"])
    src["digests"][0] = "0" * 32
    overwrite_as_admin(engine, index, altered["_id"], src, refresh="true")
    report = verify(engine, namespace, SINCE)
    problems = {r.seq: r.problems for r in report.bad_links if r.problems}
    assert problems[removed["_source"]["seq"]] == ["link missing from the integrity index"]
    assert any("hash does not match" in p for p in problems[altered["_source"]["seq"]])
    # the documents of the removed link are no longer vouched for by any link
    assert {d["id"] for d in report.inserted} == set(removed["_source"]["ids"])
    # the altered link's first document now has a digest that does not match
    assert altered["_source"]["ids"][0] in {i for r in report.bad_links for i in r.modified}


def test_keyed_chain_needs_the_key(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAUDIT_INTEGRITY_KEY", "a-test-key-of-some-length")
    namespace, _ = _ingest(engine, tmp_path)
    assert verify(engine, namespace, SINCE).ok
    assert not verify(engine, namespace, SINCE, key=b"wrong").ok
    monkeypatch.delenv("KAUDIT_INTEGRITY_KEY")
    report = verify(engine, namespace, SINCE)
    assert report.ok and report.unverified_hashes == report.links


def test_stored_documents_and_links_are_write_once(engine: Engine, tmp_path: Path) -> None:
    """Nothing the writer may send overwrites a stored audit document or integrity link: on OpenSearch the
    write-once final pipeline refuses every write but a create (its security plugin has no create-only
    permission); on Elasticsearch the writer's ``create_doc`` privilege does (tests/e2e/test_writer_role.py)."""
    if engine.flavor != "opensearch":
        pytest.skip("Elasticsearch refuses overwrites by the writer's create_doc privilege, not by a pipeline")
    namespace, _ = _ingest(engine, tmp_path)
    (doc,) = _hits(engine, namespace, 1)
    link = engine.request("POST", f"/{integrity_index(namespace)}/_search", {"size": 1, "seq_no_primary_term": True})
    (link,) = link["hits"]["hits"]
    forged = {"@timestamp": "2020-01-01T00:00:00Z", "kaudit": {"forged": True}}
    for hit in (doc, link):
        path = f"/{hit['_index']}/_doc/{hit['_id']}"
        for params in ({}, {"if_seq_no": str(hit["_seq_no"]), "if_primary_term": str(hit["_primary_term"])},
                       {"version": "99", "version_type": "external"}):
            with pytest.raises(EngineRequestError, match="write-once"):
                engine.request("PUT", path, forged, params=params)
        with pytest.raises(EngineRequestError, match="write-once"):
            engine.request("POST", f"/{hit['_index']}/_update/{hit['_id']}", {"doc": forged})
        bulk = engine.request("POST", "/_bulk", "\n".join(orjson.dumps(x).decode() for x in (
            {"index": {"_index": hit["_index"], "_id": hit["_id"]}}, forged)) + "\n", params={"refresh": "true"})
        assert "write-once" in str(bulk["items"][0]["index"]["error"])
        stored = engine.request("GET", path)
        assert stored["_source"] == hit["_source"] and stored["_seq_no"] == hit["_seq_no"]
    assert verify(engine, namespace, SINCE).ok
