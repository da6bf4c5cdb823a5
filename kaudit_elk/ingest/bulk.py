"""Stream audit events into the cluster: read → normalize → bulk, with nothing lost.

Every record read ends in exactly one bucket of :class:`IngestStats`: indexed, duplicate (the
``_id`` already exists: re-ingest is harmless), skipped by the stage policy, or dead-lettered
(undecodable input, wrong types, or a 400 item rejection) with its raw bytes and the reason.
429/5xx item results and connection failures are retried with exponential backoff. A refusal of the
write as a whole (401/403/404, a closed index, a cluster block, any non-retryable failure of the
bulk request itself) is an engine error: the run stops, nothing is dead-lettered and the checkpoint
stays before the refused batch. A checkpoint file (per input file, by its identity: the byte offset
up to which everything is settled; see :mod:`kaudit_elk.events.checkpoint`) lets an interrupted or
rotated run continue without losing events. Dead-letter files are created 0600 and can be given to
``ingest`` again: their ``raw``/``raw_base64`` records are replayed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

import orjson

from kaudit_elk.events import fastpath
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.base.errors import EngineError
from kaudit_elk.base.timeparse import parse_iso
from kaudit_elk.events.normalize import NormalizeError, NormalizeOptions, doc_id, normalize
from kaudit_elk.base.files import open_private
from kaudit_elk.events.checkpoint import Checkpoint, FileId
from kaudit_elk.events.sources import Record, read_records
from kaudit_elk.cluster.templates import Names
from kaudit_elk.cluster import integrity

RETRYABLE = frozenset({429, 500, 502, 503, 504})
AUTH_FAILURES = frozenset({401, 403})
#: Item results that say the target refuses every write (credentials, privileges, a closed or
#: missing index, a cluster block): an engine error, not a bad record. Nothing is dead-lettered.
REFUSED = frozenset({401, 403, 404})
REFUSED_TYPES = frozenset({"security_exception", "cluster_block_exception", "index_closed_exception",
                           "index_not_found_exception"})


class EngineAuthError(EngineError):
    """The engine refused our credentials or permissions (401/403): nothing is dead-lettered for it,
    the records stay where they are (file checkpoint, serve's spool) until the credentials work."""


@dataclass(frozen=True)
class IngestOptions:
    namespace: str = "kaudit"
    cluster: str = "default"
    batch_bytes: int = 4 * 1024 * 1024
    workers: int = 2
    retry_for: float = 600.0  # give up on a batch after this many seconds of failures
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    dead_letter: str | None = "kaudit-dead-letters.ndjson"
    checkpoint: str | None = None
    keep_original: bool = False
    follow: bool = False
    refresh: bool = False  # refresh the stream at the end (tests, demos)
    integrity: bool = True  # chain every batch in kaudit-integrity-<namespace> (kaudit_elk.cluster.integrity)
    writer: str = "ingest"  # names the writer's chain (ingest | serve)


@dataclass
class IngestStats:
    read: int = 0
    indexed: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    retried_items: int = 0
    retried_requests: int = 0
    native: int = 0  # records normalized by the native fast path (kaudit_elk.events.fastpath)
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("read", "indexed", "duplicates", "skipped", "dead_lettered",
                                               "retried_items", "retried_requests", "native")} | {"reasons": self.reasons}


@dataclass(slots=True)
class _Item:
    record: Record
    doc_id: str
    timestamp: str  # the document's @timestamp (ISO8601)
    action: bytes
    source: bytes


#: Settled positions: (device, inode) -> (file identity, path, offset).
Positions = dict[tuple[int, int], tuple[FileId, str, int]]


@dataclass
class _Batch:
    items: list[_Item]
    checkpoint: Positions
    created: list[_Item] = field(default_factory=list)  # items the engine created (for the integrity chain)
    created_in: list[str] = field(default_factory=list)  # the backing index each was created in
    link: Any = None


class DeadLetters:
    """Append-only NDJSON file of records that could not be indexed, with reasons."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fh: Any = None
        self._lock = threading.Lock()

    def write(self, record: Record, reason: str) -> None:
        entry: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "source": record.source, "line": record.line, "reason": reason,
        }
        try:
            entry["raw"] = record.raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["raw_base64"] = base64.b64encode(record.raw).decode()
        if self.path is None:
            return
        with self._lock:
            if self._fh is None:
                self._fh = open_private(self.path, "ab")  # raw audit events: 0600
            self._fh.write(orjson.dumps(entry) + b"\n")
            self._fh.flush()

    def sync(self) -> None:
        """Make what was written durable (serve commits its spool cursor only after this)."""
        with self._lock:
            if self._fh is not None:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def event_key(event: dict[str, Any]) -> str:
    """The identity of a request: its auditID, or (without one) a digest of the whole event."""
    audit_id = event.get("auditID")
    if isinstance(audit_id, str) and audit_id:
        return audit_id
    return "sha:" + hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def _error_type(item_result: dict[str, Any]) -> str:
    err = item_result.get("error")
    return str(err.get("type", "")) if isinstance(err, dict) else ""


def _reason(item_result: dict[str, Any]) -> str:
    err = item_result.get("error")
    if isinstance(err, dict):
        cause = err.get("caused_by") or {}
        text = f"{err.get('type')}: {err.get('reason')}"
        if cause:
            text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return text
    return str(err or f"HTTP {item_result.get('status')}")


class Ingester:
    """One ingest run against one engine. Use :func:`ingest` unless you need the pieces."""

    def __init__(self, engine: Engine, options: IngestOptions, progress: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        self.options = options
        self._on_idle: Callable[[], None] | None = None
        self.stream = Names(options.namespace).stream
        self.norm = NormalizeOptions(cluster=options.cluster, namespace=options.namespace,
                                      keep_original=options.keep_original)
        self.stats = IngestStats()
        self.dead = DeadLetters(options.dead_letter)
        self.progress = progress or (lambda n: None)
        self._lock = threading.Lock()
        self._write_index_created: float | None = None
        self._now_at = 0.0
        self._now_text = ""
        self._backing_indices = 0
        self._stream_info_at = 0.0
        self.native = fastpath.line_normalizer(self.norm)
        self.chain = integrity.ChainWriter(engine, options.namespace, self.stream, options.writer,
                                           retry_for=options.retry_for) \
            if options.integrity else None
        self._refresh_stream_info()

    # -- reading and normalizing (pure per record) --------------------------------------------
    @property
    def _now(self) -> str:
        """Ingest time, formatted at most once per second (it is stamped on every document)."""
        now = time.time()
        if now - self._now_at >= 1.0:
            self._now_at = now
            self._now_text = datetime.fromtimestamp(now, timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
        return self._now_text

    def prepare(self, text: bytes) -> tuple[Any, ...] | None:
        """Native fast path for one line (see :mod:`kaudit_elk.events.fastpath`): () when the stage is
        filtered out, (doc_id, @timestamp, document bytes), or None to decode it in Python."""
        if self.native is None:
            return None
        now = self._now
        result = self.native(text, now)
        if result is None:
            result = fastpath.enveloped(self.native, text, now)
        if result and result[0] is None:
            return None  # no auditID: the id is a digest of the decoded event (Python path)
        return result

    def _to_item(self, record: Record, stats: IngestStats | None = None) -> _Item | None:
        """The bulk item of a record (None: skipped or dead-lettered, counted in ``stats``,
        by default this run's)."""
        stats = self.stats if stats is None else stats
        prepared = record.prepared
        if prepared is not None:
            if not prepared:
                with self._lock:
                    stats.skipped += 1
                return None
            _id, timestamp, source = prepared
            self.stats.native += 1  # only the reading thread writes this counter
            action = orjson.dumps({"create": {"_index": self.stream, "_id": _id}})
            return _Item(record, _id, timestamp, action, source)
        if record.error is not None or record.event is None:
            self._dead(record, record.error or "no event", stats)
            return None
        try:
            key = event_key(record.event)  # before normalize, which consumes envelope facts
            doc = normalize(record.event, self.norm)
            if doc is None:
                with self._lock:
                    stats.skipped += 1
                return None
            now = self._now
            doc.setdefault("event", {})["ingested"] = now
            if "@timestamp" not in doc:
                # No timestamp anywhere in the event: index it at ingest time rather than lose it.
                doc["@timestamp"] = now
                doc.setdefault("tags", []).append("kaudit_timestamp_missing")
            source = orjson.dumps(doc)
        except NormalizeError as exc:
            self._dead(record, f"invalid event: {exc}", stats)
            return None
        except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes (about 250 levels)
            self._dead(record, f"invalid event: cannot be written as a document: {exc}", stats)
            return None
        audit = doc.get("kubernetes", {}).get("audit", {})
        _id = doc_id(self.options.cluster, key, str(audit.get("stage", "")))
        action = orjson.dumps({"create": {"_index": self.stream, "_id": _id}})
        return _Item(record, _id, doc["@timestamp"], action, source)

    def _dead(self, record: Record, reason: str, stats: IngestStats | None = None) -> None:
        stats = self.stats if stats is None else stats
        self.dead.write(record, reason)
        with self._lock:
            stats.dead_lettered += 1
            kind = reason.split(":", 1)[0][:60]
            stats.reasons[kind] = stats.reasons.get(kind, 0) + 1

    # -- duplicates across rollover -----------------------------------------------------------
    def _refresh_stream_info(self) -> None:
        body = self.engine.request("GET", f"/{self.stream}/_settings/index.creation_date", ignore=(404,))
        dates = [int(v["settings"]["index"]["creation_date"]) / 1000 for v in (body or {}).values()]
        self._backing_indices = len(dates)
        self._write_index_created = max(dates) if dates else None
        self._stream_info_at = time.monotonic()

    def _already_stored(self, items: list[_Item]) -> set[str]:
        """IDs of items that may sit in an older backing index (only after a rollover).

        ``_create`` rejects a duplicate ``_id`` only within the write index. An event older than the
        write index may have been stored before the rollover, so those (and only those) are looked up.
        """
        if time.monotonic() - self._stream_info_at > 300:  # long --follow runs see later rollovers
            self._refresh_stream_info()
        if self._backing_indices < 2 or self._write_index_created is None:
            return set()
        cutoff = self._write_index_created + 300  # clock skew margin
        candidates = [it.doc_id for it in items
                      if parse_iso(it.timestamp, "@timestamp").timestamp() < cutoff]
        if not candidates:
            return set()
        body = self.engine.request("POST", f"/{self.stream}/_search", {
            "size": len(candidates), "_source": False, "query": {"ids": {"values": candidates}}})
        return {h["_id"] for h in body["hits"]["hits"]}

    # -- sending ------------------------------------------------------------------------------
    def _send(self, batch: _Batch, stats: IngestStats | None = None) -> None:
        stats = self.stats if stats is None else stats
        pending = batch.items
        existing = self._already_stored(pending)
        if existing:
            keep = []
            for it in pending:
                if it.doc_id in existing:
                    with self._lock:
                        stats.duplicates += 1
                else:
                    keep.append(it)
            pending = keep
        delay = self.options.backoff_initial
        started = time.monotonic()
        while pending:
            payload = b"".join(it.action + b"\n" + it.source + b"\n" for it in pending)
            try:
                result = self.engine.request("POST", "/_bulk", body=payload, ndjson=True, params={
                    "pipeline": "_none", "filter_path": "errors,items.*.status,items.*.error,items.*._index"})
            except EngineRequestError as exc:
                if exc.status not in RETRYABLE and exc.status != 0:  # 0: no status at all, retry
                    raise self._refused(exc.status, str(exc), len(pending)) from None
                result = None
            except EngineError:
                result = None  # unreachable / connection reset: the engine may be restarting
            if result is None:
                with self._lock:
                    stats.retried_requests += 1
            else:
                retry: list[_Item] = []
                for it, entry in zip(pending, result.get("items", [])):
                    res = next(iter(entry.values()))
                    status = int(res.get("status", 0))
                    if status in (200, 201):
                        batch.created.append(it)
                        batch.created_in.append(str(res.get("_index", "")))
                        with self._lock:
                            stats.indexed += 1
                    elif status == 409:
                        with self._lock:
                            stats.duplicates += 1
                    elif status in RETRYABLE:
                        retry.append(it)
                    elif status in REFUSED or _error_type(res) in REFUSED_TYPES:
                        from kaudit_elk.cluster.roles import missing_privilege

                        text = _reason(res)
                        raise self._refused(status, f"HTTP {status}: {missing_privilege(text) or text}", len(pending))
                    else:
                        self._dead(it.record, f"rejected by the engine: {_reason(res)}", stats)
                with self._lock:
                    stats.retried_items += len(retry)
                pending = retry
            if not pending:
                break
            if time.monotonic() - started > self.options.retry_for:
                raise EngineError(
                    f"giving up after {self.options.retry_for:.0f}s of failures writing to {self.stream}; "
                    f"{len(pending)} events not indexed (the checkpoint lets a rerun continue)")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.options.backoff_max)

    def _refused(self, status: int, why: str, count: int) -> EngineError:
        """The engine refuses the write as a whole: stop, dead-letter nothing, keep the checkpoint."""
        kind = EngineAuthError if status in AUTH_FAILURES else EngineError
        return kind(
            f"the engine refused writes to {self.stream} ({why}); stopped without dead-lettering: "
            f"{count} event(s) of this batch and everything after it are not indexed and stay where they are "
            "(the checkpoint does not move past them); fix the credentials/privileges or the index, then run again")

    def idle(self) -> None:
        """The input has nothing new for now (``--follow``): send the batch being filled."""
        if self._on_idle is not None:
            self._on_idle()

    def chain_batch(self, batch: _Batch) -> None:
        """Digest and chain what ``batch`` created (for callers that send batches themselves: serve's shipper)."""
        if self.chain is not None:
            self.chain.commit(integrity.prepare(batch.created, batch.created_in, self.chain.canonical))

    def _send_chained(self, batch: _Batch) -> None:
        """Send, then digest what was created (in the worker thread; ``settle`` writes the link in order)."""
        try:
            self._send(batch)
        finally:
            if self.chain is not None:
                batch.link = integrity.prepare(batch.created, batch.created_in, self.chain.canonical)

    # -- the run ------------------------------------------------------------------------------
    def run(self, records: Iterable[Record], checkpoint: Checkpoint | None = None) -> IngestStats:
        """Send ``records``; after each settled batch (in order) record the positions in ``checkpoint``."""
        checkpoint = checkpoint if checkpoint is not None else Checkpoint(self.options.checkpoint)
        last_offset: Positions = {}
        safe: Positions = {}
        in_flight: deque[tuple[Future[None], _Batch]] = deque()
        items: list[_Item] = []
        size = 0
        max_in_flight = max(1, self.options.workers) * 2

        def settle(block: bool) -> None:
            while in_flight and (block or in_flight[0][0].done()):
                fut, batch = in_flight.popleft()
                try:
                    fut.result()  # re-raises a batch that gave up or was refused
                except BaseException:
                    if self.chain is not None:  # chain what it did create; its own failure is what is reported
                        try:
                            self.chain.commit(batch.link)
                        except EngineError:
                            pass  # those documents show up in `verify` as outside the chain
                    raise
                if self.chain is not None:
                    self.chain.commit(batch.link)
                if batch.checkpoint:
                    checkpoint.update({fid: (path, off) for fid, path, off in batch.checkpoint.values()})

        with ThreadPoolExecutor(max_workers=max(1, self.options.workers)) as pool:
            def submit() -> None:
                nonlocal items, size
                batch = _Batch(items, dict(safe))
                items, size = [], 0
                while len(in_flight) >= max_in_flight:
                    in_flight[0][0].result()
                    settle(False)
                in_flight.append((pool.submit(self._send_chained, batch), batch))
                settle(False)

            def on_idle() -> None:  # --follow and nothing new: send what waits (a quiet file is not held back)
                safe.update(last_offset)  # follow yields complete lines only
                if items:
                    submit()
                else:
                    settle(False)

            self._on_idle = on_idle

            try:
                unreported = 0
                for record in records:
                    unreported += 1
                    if unreported == 256:
                        with self._lock:
                            self.stats.read += unreported
                        self.progress(unreported)
                        unreported = 0
                    fid = record.file
                    if fid is not None:
                        key = (fid.dev, fid.ino)
                        prev = last_offset.get(key)
                        if prev is not None and record.offset != prev[2]:
                            safe[key] = prev  # the previous line is complete
                        last_offset[key] = (fid, record.source, record.offset)
                    item = self._to_item(record)
                    if item is not None:
                        items.append(item)
                        size += len(item.action) + len(item.source) + 2
                    if size >= self.options.batch_bytes:
                        submit()
                with self._lock:
                    self.stats.read += unreported
                self.progress(unreported)
                safe.update(last_offset)  # end of input: every line is complete
                if items or not in_flight:
                    submit()
                settle(True)
            finally:
                self._on_idle = None
                for fut, _ in in_flight:
                    fut.cancel()
                self.dead.close()
        if self.options.refresh:
            self.engine.refresh(self.stream)
            if self.chain is not None and self.chain.seq:
                self.engine.refresh(self.chain.index)
        return self.stats


def ingest(
    engine: Engine,
    paths: Sequence[str],
    options: IngestOptions = IngestOptions(),
    progress: Callable[[int], None] | None = None,
) -> IngestStats:
    """Ingest files (or "-" for stdin) into the audit data stream; returns the counts."""
    checkpoint = Checkpoint(options.checkpoint)
    ingester = Ingester(engine, options, progress)
    prepare = ingester.prepare if ingester.native is not None else None
    records = read_records(paths, follow=options.follow, prepare=prepare,
                           checkpoint=checkpoint if options.checkpoint else None, on_idle=ingester.idle)
    return ingester.run(records, checkpoint)
