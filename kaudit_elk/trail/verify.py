"""``kaudit-elk verify``: recompute the integrity chain from the stored documents.

For a time range: every chain link whose documents overlap it (and the links between and just
before them, for the linkage), each link's hash from its ids, digests and the previous hash, each
listed document's digest from its stored ``_source``, and every stored document of the range that no
link lists. Reports, per link, documents **modified** (digest differs) and **deleted** (not found);
documents **inserted** outside the chain; links missing, altered or out of order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.cluster.integrity import GENESIS, _key, integrity_index, link_hash, source_digest
from kaudit_elk.cluster.templates import Names

_CHUNK = 500


@dataclass(slots=True)
class LinkReport:
    chain: str
    seq: int
    created: str
    count: int
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.modified or self.deleted or self.problems)


@dataclass(slots=True)
class VerifyReport:
    since: str
    until: str
    chains: int = 0
    links: int = 0
    documents: int = 0  # documents listed by the checked links
    stored: int = 0  # documents stored in the range
    inserted: list[dict[str, Any]] = field(default_factory=list)  # {id, index, timestamp}
    bad_links: list[LinkReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unverified_hashes: int = 0  # keyed links checked without the key
    elsewhere: int = 0  # archive verify: documents of a link that spans another backing index, not in this one

    @property
    def modified(self) -> int:
        return sum(len(r.modified) for r in self.bad_links)

    @property
    def deleted(self) -> int:
        return sum(len(r.deleted) for r in self.bad_links)

    @property
    def ok(self) -> bool:
        return not self.bad_links and not self.inserted

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "ok": self.ok, "chains": self.chains, "links": self.links,
                "documents": self.documents, "stored": self.stored, "modified": self.modified,
                "deleted": self.deleted, "inserted": self.inserted, "unverified_hashes": self.unverified_hashes,
                "elsewhere": self.elsewhere,
                "notes": self.notes,
                "bad_links": [{"chain": r.chain, "seq": r.seq, "created": r.created, "count": r.count,
                               "modified": r.modified, "deleted": r.deleted, "problems": r.problems}
                              for r in self.bad_links]}


def _scroll(engine: Engine, index: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    page = engine.request("POST", f"/{index}/_search", body, params={"scroll": "2m"}, ignore=(404,))
    scroll_id = None
    try:
        while page and page["hits"]["hits"]:
            scroll_id = page.get("_scroll_id")
            yield from page["hits"]["hits"]
            if not scroll_id:
                break
            page = engine.request("POST", "/_search/scroll", {"scroll": "2m", "scroll_id": scroll_id})
    finally:
        if scroll_id:
            engine.request("DELETE", "/_search/scroll", {"scroll_id": scroll_id}, ignore=(404,))


def verify(engine: Engine, namespace: str, since: str = "now-24h", until: str = "now",
           stream: str | None = None, chain_index: str | None = None, key: bytes | None = None,
           backing_index: str | None = None) -> VerifyReport:
    """Check the stored documents of ``[since, until]`` against the integrity chain.

    ``stream`` and ``chain_index`` default to the namespace's data stream and integrity index. ``archive
    verify`` passes restored copies and ``backing_index``, the original name of the one backing index the
    copy holds: then the links of documents created in it are checked, and every document of the copy."""
    stream = stream or Names(namespace).stream
    chain_index = chain_index or integrity_index(namespace)
    key = key if key is not None else _key()
    report = VerifyReport(since, until)
    for target in (stream, chain_index):
        try:
            engine.request("POST", f"/{target}/_refresh", ignore=(404,))
        except EngineRequestError:
            pass  # a reader without the refresh privilege sees what the periodic refresh made searchable
    if backing_index:
        link_query: dict[str, Any] = {"term": {"indices": backing_index}}
        doc_query: dict[str, Any] = {"match_all": {}}
    else:
        link_query = {"bool": {"filter": [{"range": {"min_ts": {"lte": until}}}, {"range": {"max_ts": {"gte": since}}}]}}
        doc_query = {"range": {"@timestamp": {"gte": since, "lte": until}}}
    links = list(_scroll(engine, chain_index, {"size": 200, "sort": ["_doc"], "query": link_query}))
    by_chain: dict[str, dict[int, dict[str, Any]]] = {}
    for hit in links:
        src = hit["_source"]
        by_chain.setdefault(str(src.get("chain")), {})[int(src.get("seq", 0))] = src
    expected: dict[str, tuple[LinkReport, str, bool]] = {}
    spans: set[str] = set()
    for chain, seqs in sorted(by_chain.items()):
        lo, hi = min(seqs), max(seqs)
        wanted = [s for s in range(max(1, lo - 1), hi + 1) if s not in seqs]
        if wanted:
            got = engine.request("POST", f"/{chain_index}/_mget",
                                 {"ids": [f"{chain}:{s:012d}" for s in wanted]})
            for doc in got.get("docs", []):
                if doc.get("found"):
                    src = doc["_source"]
                    seqs[int(src["seq"])] = src
        report.chains += 1
        prev_hash = None
        for seq in range(max(1, lo - 1), hi + 1):
            src = seqs.get(seq)
            if src is None:
                if seq >= lo:
                    rep = LinkReport(chain, seq, "", 0, problems=["link missing from the integrity index"])
                    report.bad_links.append(rep)
                prev_hash = None
                continue
            if seq == lo - 1:
                prev_hash = src.get("hash")
                continue
            rep = LinkReport(chain, seq, str(src.get("created", "")), int(src.get("count", 0)))
            report.links += 1
            ids, digests = list(src.get("ids") or []), list(src.get("digests") or [])
            if len(ids) != len(digests) or len(ids) != rep.count:
                rep.problems.append("link altered: ids, digests and count disagree")
            if src.get("keyed") and key is None:
                report.unverified_hashes += 1
            elif link_hash(chain, seq, str(src.get("prev")), ids, digests, key) != src.get("hash"):
                rep.problems.append("link altered: its hash does not match its content"
                                    + (" (or a different KAUDIT_INTEGRITY_KEY)" if src.get("keyed") else ""))
            if seq == 1 and src.get("prev") != GENESIS:
                rep.problems.append("first link does not start from the genesis hash")
            if prev_hash is not None and src.get("prev") != prev_hash:
                rep.problems.append(f"chain broken: prev does not match the hash of link {seq - 1}")
            prev_hash = src.get("hash")
            if backing_index and list(src.get("indices") or []) != [backing_index]:
                if backing_index not in (src.get("indices") or []):
                    continue  # a link between two of this index's links, about documents elsewhere
                spans.update(ids)  # created in this and another index: a miss here is not a deletion
            for i, d in zip(ids, digests):
                expected[i] = (rep, d, bool(src.get("canonical")))
            if rep.problems:
                report.bad_links.append(rep)
    report.documents = len(expected)
    found: dict[str, list[tuple[str, Any]]] = {}
    ids = list(expected)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        body = engine.request("POST", f"/{stream}/_search", {"size": len(chunk) * 2, "query": {"ids": {"values": chunk}}},
                              ignore=(404,))
        for hit in (body or {}).get("hits", {}).get("hits", []):
            found.setdefault(hit["_id"], []).append((hit["_index"], hit["_source"]))
    for _id, (rep, digest, canonical) in expected.items():
        copies = found.get(_id)
        if not copies:
            if _id in spans:
                report.elsewhere += 1
                continue
            rep.deleted.append(_id)
        elif any(source_digest(src, canonical) != digest for _, src in copies):
            rep.modified.append(_id)
    seen_bad = {id(r) for r in report.bad_links}
    for rep, _, _ in expected.values():
        if (rep.modified or rep.deleted) and id(rep) not in seen_bad:
            report.bad_links.append(rep)
            seen_bad.add(id(rep))
    for hit in _scroll(engine, stream, {"size": 2000, "sort": ["_doc"], "_source": ["@timestamp"], "query": doc_query}):
        report.stored += 1
        if hit["_id"] not in expected:
            report.inserted.append({"id": hit["_id"], "index": hit["_index"],
                                    "timestamp": (hit.get("_source") or {}).get("@timestamp")})
        elif len(found.get(hit["_id"], [])) > 1 and not any(x["id"] == hit["_id"] for x in report.inserted):
            report.inserted.append({"id": hit["_id"], "index": hit["_index"], "timestamp":
                                    (hit.get("_source") or {}).get("@timestamp"), "note": "a second copy of a chained id"})
    if not links:  # nothing vouches for the range: not "clean" (documents and links may both have been deleted)
        report.notes.append(
            f"no integrity link in {chain_index} covers a document of this range (event time, @timestamp): "
            + ("nothing is stored in it either; widen --since/--until to where the events are"
               if not report.stored else
               "the stored documents were written without the chain (ingest --no-integrity, another shipper) "
               "or the integrity index was deleted"))
    report.bad_links.sort(key=lambda r: (r.chain, r.seq))
    return report
