"""The integrity chain: every bulk batch a writer stores is chained to the one before it.

Each writer (one ``ingest`` run, one ``serve`` process) keeps its own chain in the index
``kaudit-integrity-<namespace>``: link ``seq`` of chain ``C`` (``_id`` ``C:seq``) lists the ids of
the documents the batch created and a digest of each, and its hash covers the chain id, the seq,
the previous link's hash and those ids and digests. ``verify`` (``kaudit_elk.trail.verify``)
recomputes the digests from the stored documents and the hashes along each chain.

Digest of a document: BLAKE2b-128 of its compact JSON text in stored key order — the bytes the
writer sent, which is what ``orjson.dumps`` gives back for the ``_source`` the engine returns (both
engines return ``_source`` verbatim). With ``KAUDIT_INTEGRITY_KEY`` set, link hashes are keyed
BLAKE2b (a MAC): without the key, someone who can write both indices cannot forge a consistent chain.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import orjson

from kaudit_elk.base.errors import EngineError
from kaudit_elk.cluster.engine import Engine, EngineRequestError

GENESIS = "0" * 32
KEY_ENV = "KAUDIT_INTEGRITY_KEY"

MAPPING: dict[str, Any] = {
    "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}},
    "mappings": {"dynamic": False, "properties": {
        "chain": {"type": "keyword"}, "seq": {"type": "long"}, "prev": {"type": "keyword"},
        "hash": {"type": "keyword"}, "keyed": {"type": "boolean"}, "canonical": {"type": "boolean"}, "count": {"type": "integer"},
        "created": {"type": "date"}, "min_ts": {"type": "date"}, "max_ts": {"type": "date"},
        "stream": {"type": "keyword"}, "writer": {"type": "keyword"}, "indices": {"type": "keyword"},
        "ids": {"type": "keyword", "doc_values": False},
        "digests": {"type": "keyword", "index": False, "doc_values": False},
    }},
}


def integrity_index(namespace: str) -> str:
    return f"kaudit-integrity-{namespace}"


def doc_digest(source: bytes) -> str:
    """The digest of one stored document (its compact JSON text)."""
    return hashlib.blake2b(source, digest_size=16).hexdigest()


def source_digest(source: Any, canonical: bool = False) -> str:
    """The digest of a ``_source`` as returned by the engine (parsed): key order kept, or, for a
    ``canonical`` link, keys sorted."""
    return doc_digest(orjson.dumps(source, option=orjson.OPT_SORT_KEYS) if canonical else orjson.dumps(source))


def canonical_digest(source: bytes) -> str:
    """The digest of a document's JSON with its keys sorted: what survives an ingest pipeline, which
    stores the ``_source`` it re-serialised from a map (OpenSearch's write-once final pipeline)."""
    return doc_digest(orjson.dumps(orjson.loads(source), option=orjson.OPT_SORT_KEYS))


def _key() -> bytes | None:
    key = os.environ.get(KEY_ENV)
    return key.encode() if key else None


def link_hash(chain: str, seq: int, prev: str, ids: Sequence[str], digests: Sequence[str],
              key: bytes | None = None) -> str:
    """The hash of one link: chain id, seq, previous hash, then every (id, digest) in order."""
    h = hashlib.blake2b(digest_size=16, key=key or b"")
    h.update(f"{chain}\n{seq}\n{prev}\n{len(ids)}\n".encode())
    for i, d in zip(ids, digests):
        h.update(i.encode())
        h.update(b"\0")
        h.update(d.encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(slots=True)
class PreparedLink:
    """A batch's documents with their digests (computed in the worker thread that sent them)."""

    ids: list[str]
    digests: list[str]
    min_ts: str | None
    max_ts: str | None
    indices: list[str]
    #: digests over sorted keys (:func:`canonical_digest`), not the bytes sent
    canonical: bool = False


def prepare(items: Sequence[Any], indices: Sequence[str] = (), canonical: bool = False) -> PreparedLink | None:
    """Digests of created items (objects with ``doc_id``, ``timestamp``, ``source``) and the backing
    indices they were created in; None when there are none. ``canonical``: over sorted keys, for a
    stream whose documents pass an ingest pipeline (which does not keep the key order)."""
    if not items:
        return None
    ts = [it.timestamp for it in items if it.timestamp]
    digest = canonical_digest if canonical else doc_digest
    return PreparedLink([it.doc_id for it in items], [digest(it.source) for it in items],
                        min(ts) if ts else None, max(ts) if ts else None, sorted({i for i in indices if i}), canonical)


def ensure_index(engine: Engine, index: str) -> None:
    """Create the integrity index with its mapping unless it exists."""
    try:
        engine.request("PUT", f"/{index}", MAPPING)
    except EngineRequestError as exc:
        if "already_exists" not in str(exc.body):
            raise


class ChainWriter:
    """Appends links for one writer; thread-safe (links are written in the order ``commit`` is called)."""

    def __init__(self, engine: Engine, namespace: str, stream: str, writer: str = "ingest",
                 retry_for: float = 60.0) -> None:
        self.engine = engine
        self.index = integrity_index(namespace)
        self.stream = stream
        self.writer = writer
        self.chain = f"{writer}-{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000)}-{uuid.uuid4().hex[:6]}"
        self.seq = 0
        self.prev = GENESIS
        self.retry_for = retry_for
        self.key = _key()
        #: OpenSearch streams pass bootstrap's write-once final pipeline, which re-serialises each
        #: document: digest them over sorted keys there (the link says so)
        self.canonical = engine.flavor == "opensearch"
        self._lock = threading.Lock()
        self._ready = False

    def _ensure_index(self) -> None:
        if self._ready:
            return
        ensure_index(self.engine, self.index)
        self._ready = True

    def commit(self, link: PreparedLink | None) -> None:
        """Write the next link (no-op for an empty batch)."""
        if link is None:
            return
        with self._lock:
            self._ensure_index()
            seq = self.seq + 1
            digest = link_hash(self.chain, seq, self.prev, link.ids, link.digests, self.key)
            doc = {"chain": self.chain, "seq": seq, "prev": self.prev, "hash": digest, "keyed": self.key is not None,
                   "count": len(link.ids), "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                   .replace("+00:00", "Z"), "min_ts": link.min_ts, "max_ts": link.max_ts, "stream": self.stream,
                   "writer": self.writer, "indices": link.indices, "ids": link.ids, "digests": link.digests}
            if link.canonical:
                doc["canonical"] = True
            self._write(f"{self.chain}:{seq:012d}", doc)
            self.seq, self.prev = seq, digest

    def _write(self, _id: str, doc: dict[str, Any]) -> None:
        started, delay = time.monotonic(), 0.5
        while True:
            try:
                self.engine.request("PUT", f"/{self.index}/_create/{_id}", doc)
                return
            except EngineRequestError as exc:
                if exc.status == 409:
                    return  # written by an earlier attempt whose answer was lost
                if exc.status not in (429, 500, 502, 503, 504):
                    raise
            except EngineError:
                pass
            if time.monotonic() - started > self.retry_for:
                raise EngineError(f"cannot write integrity link {_id} to {self.index} for {self.retry_for:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
