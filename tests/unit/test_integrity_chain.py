"""The integrity chain's pure parts: digests that survive the engine round trip, link hashes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kaudit_elk.cluster.integrity import GENESIS, doc_digest, link_hash, prepare, source_digest
from kaudit_elk.events import fastpath
from kaudit_elk.events.normalize import NormalizeOptions, normalize

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"


def _documents() -> list[bytes]:
    out = []
    native = fastpath.line_normalizer(NormalizeOptions())
    for path in sorted(INPUTS.iterdir()):
        for line in path.read_bytes().splitlines():
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(ev, dict) or ev.get("kind") != "Event":
                continue
            if native is not None:
                got = native(line, "2026-01-01T00:00:00.000Z")
                if got:
                    out.append(got[2])
            doc = normalize(dict(ev))
            if doc is not None:
                out.append(orjson.dumps(doc))
    return out


def test_a_stored_source_gives_back_the_digest_of_the_bytes_written() -> None:
    """verify parses _source and writes it again: that must reproduce the digest of what ingest sent."""
    docs = _documents()
    assert len(docs) > 100
    for raw in docs:
        assert source_digest(orjson.loads(raw)) == doc_digest(raw)


def test_any_change_of_a_document_changes_its_digest() -> None:
    raw = _documents()[0]
    doc = orjson.loads(raw)
    doc["user"] = {"name": "mallory"}
    assert source_digest(doc) != doc_digest(raw)


def test_link_hash_covers_chain_seq_prev_ids_and_digests() -> None:
    base = link_hash("c", 1, GENESIS, ["a", "b"], ["1" * 32, "2" * 32])
    assert base == link_hash("c", 1, GENESIS, ["a", "b"], ["1" * 32, "2" * 32])
    variants = [link_hash("d", 1, GENESIS, ["a", "b"], ["1" * 32, "2" * 32]),
                link_hash("c", 2, GENESIS, ["a", "b"], ["1" * 32, "2" * 32]),
                link_hash("c", 1, "f" * 32, ["a", "b"], ["1" * 32, "2" * 32]),
                link_hash("c", 1, GENESIS, ["b", "a"], ["1" * 32, "2" * 32]),
                link_hash("c", 1, GENESIS, ["a"], ["1" * 32]),
                link_hash("c", 1, GENESIS, ["a", "b"], ["1" * 32, "3" * 32]),
                link_hash("c", 1, GENESIS, ["a", "b"], ["1" * 32, "2" * 32], key=b"secret")]
    assert base not in variants and len(set(variants)) == len(variants)


@pytest.mark.parametrize("n", [0, 3])
def test_prepare_digests_created_items(n: int) -> None:
    class It:
        def __init__(self, i: int) -> None:
            self.doc_id, self.timestamp, self.source = f"id{i}", f"2024-01-0{i + 1}T00:00:00Z", b'{"i":%d}' % i

    link = prepare([It(i) for i in range(n)])
    if n == 0:
        assert link is None
        return
    assert link.ids == ["id0", "id1", "id2"]
    assert link.digests == [doc_digest(b'{"i":%d}' % i) for i in range(3)]
    assert (link.min_ts, link.max_ts) == ("2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")
