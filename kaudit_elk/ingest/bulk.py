"""Stream audit events into the cluster: read → normalize → bulk, with nothing lost.

Every record read ends in exactly one bucket of :class:`IngestStats`: indexed, duplicate (the
``_id`` already exists: re-ingest is harmless), skipped by the stage policy, or dead-lettered
(undecodable input, wrong types, or a 4xx item rejection) with its raw bytes and the reason.
429/5xx item results and connection failures are retried with exponential backoff. A checkpoint
file (per input file: the byte offset up to which everything is settled) lets an interrupted run
continue without re-sending or losing events.
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
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import orjson

from kaudit_elk.events import fastpath
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.base.errors import EngineError, InputError
from kaudit_elk.events.normalize import NormalizeError, NormalizeOptions, doc_id, normalize
from kaudit_elk.events.sources import Record, read_records
from kaudit_elk.cluster.templates import Names

RETRYABLE = frozenset({429, 500, 502, 503, 504})
AUTH_FAILURES = frozenset({401, 403})


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


@dataclass
class _Batch:
    items: list[_Item]
    checkpoint: dict[str, int]


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
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._fh = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
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


def load_checkpoint(path: str | None) -> dict[str, int]:
    """Offsets recorded by an earlier run ({} when there is none)."""
    if not path or not os.path.exists(path):
        return {}
    try:
        data = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError:
        raise InputError(f"checkpoint file {path} is not valid JSON; delete it to start over") from None
    return {str(k): int(v) for k, v in (data.get("offsets") or {}).items()}


def save_checkpoint(path: str, offsets: dict[str, int]) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_bytes(orjson.dumps({"offsets": offsets, "updated": time.time()}))
    os.replace(tmp, path)


def event_key(event: dict[str, Any]) -> str:
    """The identity of a request: its auditID, or (without one) a digest of the whole event."""
    audit_id = event.get("auditID")
    if isinstance(audit_id, str) and audit_id:
        return audit_id
    return "sha:" + hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


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
        self.stream = Names(options.namespace).stream
        self.norm = NormalizeOptions(cluster=options.cluster, keep_original=options.keep_original)
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

    def prepare(self, text: bytes) -> tuple | None:
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

    def _to_item(self, record: Record) -> _Item | None:
        prepared = record.prepared
        if prepared is not None:
            if not prepared:
                with self._lock:
                    self.stats.skipped += 1
                return None
            _id, timestamp, source = prepared
            self.stats.native += 1  # only the reading thread writes this counter
            action = orjson.dumps({"create": {"_index": self.stream, "_id": _id}})
            return _Item(record, _id, timestamp, action, source)
        if record.error is not None or record.event is None:
            self._dead(record, record.error or "no event")
            return None
        try:
            key = event_key(record.event)  # before normalize, which consumes envelope facts
            doc = normalize(record.event, self.norm)
            if doc is None:
                with self._lock:
                    self.stats.skipped += 1
                return None
            now = self._now
            doc.setdefault("event", {})["ingested"] = now
            if "@timestamp" not in doc:
                # No timestamp anywhere in the event: index it at ingest time rather than lose it.
                doc["@timestamp"] = now
                doc.setdefault("tags", []).append("kaudit_timestamp_missing")
            source = orjson.dumps(doc)
        except NormalizeError as exc:
            self._dead(record, f"invalid event: {exc}")
            return None
        except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes (about 250 levels)
            self._dead(record, f"invalid event: cannot be written as a document: {exc}")
            return None
        audit = doc.get("kubernetes", {}).get("audit", {})
        _id = doc_id(self.options.cluster, key, str(audit.get("stage", "")))
        action = orjson.dumps({"create": {"_index": self.stream, "_id": _id}})
        return _Item(record, _id, doc["@timestamp"], action, source)

    def _dead(self, record: Record, reason: str) -> None:
        self.dead.write(record, reason)
        with self._lock:
            self.stats.dead_lettered += 1
            kind = reason.split(":", 1)[0][:60]
            self.stats.reasons[kind] = self.stats.reasons.get(kind, 0) + 1

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
                      if datetime.fromisoformat(it.timestamp.replace("Z", "+00:00")).timestamp() < cutoff]
        if not candidates:
            return set()
        body = self.engine.request("POST", f"/{self.stream}/_search", {
            "size": len(candidates), "_source": False, "query": {"ids": {"values": candidates}}})
        return {h["_id"] for h in body["hits"]["hits"]}

    # -- sending ------------------------------------------------------------------------------
    def _send(self, batch: _Batch) -> None:
        pending = batch.items
        existing = self._already_stored(pending)
        if existing:
            keep = []
            for it in pending:
                if it.doc_id in existing:
                    with self._lock:
                        self.stats.duplicates += 1
                else:
                    keep.append(it)
            pending = keep
        delay = self.options.backoff_initial
        started = time.monotonic()
        while pending:
            payload = b"".join(it.action + b"\n" + it.source + b"\n" for it in pending)
            try:
                result = self.engine.request("POST", "/_bulk", body=payload, ndjson=True, params={
                    "pipeline": "_none", "filter_path": "errors,items.*.status,items.*.error"})
            except EngineRequestError as exc:
                if exc.status in AUTH_FAILURES:
                    raise EngineAuthError(f"the engine refused the bulk request: {exc}") from None
                if exc.status not in RETRYABLE:
                    for it in pending:
                        self._dead(it.record, f"bulk request rejected: {exc}")
                    return
                result = None
            except EngineError:
                result = None  # unreachable / connection reset: the engine may be restarting
            if result is None:
                with self._lock:
                    self.stats.retried_requests += 1
            else:
                retry: list[_Item] = []
                for it, entry in zip(pending, result.get("items", [])):
                    res = next(iter(entry.values()))
                    status = int(res.get("status", 0))
                    if status in (200, 201):
                        with self._lock:
                            self.stats.indexed += 1
                    elif status == 409:
                        with self._lock:
                            self.stats.duplicates += 1
                    elif status in RETRYABLE:
                        retry.append(it)
                    elif status in AUTH_FAILURES:
                        from kaudit_elk.cluster.roles import missing_privilege

                        text = _reason(res)
                        raise EngineAuthError(f"the engine refused to write to {self.stream}: "
                                              f"{missing_privilege(text) or text}")
                    else:
                        self._dead(it.record, f"rejected by the engine: {_reason(res)}")
                with self._lock:
                    self.stats.retried_items += len(retry)
                pending = retry
            if not pending:
                break
            if time.monotonic() - started > self.options.retry_for:
                raise EngineError(
                    f"giving up after {self.options.retry_for:.0f}s of failures writing to {self.stream}; "
                    f"{len(pending)} events not indexed (the checkpoint lets a rerun continue)")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.options.backoff_max)

    # -- the run ------------------------------------------------------------------------------
    def run(self, records: Iterable[Record]) -> IngestStats:
        checkpoint: dict[str, int] = {}
        last_offset: dict[str, int] = {}
        safe: dict[str, int] = {}
        in_flight: deque[tuple[Future[None], _Batch]] = deque()
        items: list[_Item] = []
        size = 0
        max_in_flight = max(1, self.options.workers) * 2

        def settle(block: bool) -> None:
            while in_flight and (block or in_flight[0][0].done()):
                fut, batch = in_flight.popleft()
                fut.result()  # re-raises a batch that gave up
                checkpoint.update(batch.checkpoint)
                if self.options.checkpoint:
                    save_checkpoint(self.options.checkpoint, checkpoint)

        with ThreadPoolExecutor(max_workers=max(1, self.options.workers)) as pool:
            def submit() -> None:
                nonlocal items, size
                batch = _Batch(items, dict(safe))
                items, size = [], 0
                while len(in_flight) >= max_in_flight:
                    in_flight[0][0].result()
                    settle(False)
                in_flight.append((pool.submit(self._send, batch), batch))
                settle(False)

            try:
                unreported = 0
                for record in records:
                    unreported += 1
                    if unreported == 256:
                        with self._lock:
                            self.stats.read += unreported
                        self.progress(unreported)
                        unreported = 0
                    if record.source != "-":
                        prev = last_offset.get(record.source)
                        if prev is not None and record.offset != prev:
                            safe[record.source] = prev  # the previous line is complete
                        last_offset[record.source] = record.offset
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
                for fut, _ in in_flight:
                    fut.cancel()
                self.dead.close()
        if self.options.refresh:
            self.engine.refresh(self.stream)
        return self.stats


def ingest(
    engine: Engine,
    paths: Sequence[str],
    options: IngestOptions = IngestOptions(),
    progress: Callable[[int], None] | None = None,
) -> IngestStats:
    """Ingest files (or "-" for stdin) into the audit data stream; returns the counts."""
    offsets = load_checkpoint(options.checkpoint)
    ingester = Ingester(engine, options, progress)
    prepare = ingester.prepare if ingester.native is not None else None
    records = read_records(paths, follow=options.follow, start_offsets=offsets, prepare=prepare)
    return ingester.run(records)
