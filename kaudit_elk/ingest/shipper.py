"""Ship what ``serve`` spooled: decode, normalize and bulk-index it with the delivery core of ``ingest``.

The shipper reads spooled request bodies in order and turns them into bulk items with
:meth:`Shipper.prepare` (native fast path when installed) — one batch per spool read, always on the
shipper thread and in spool order: the place for anything that must see batches in order, such as
an integrity chain. :meth:`Shipper.ship_batch` then delivers the batch (up to ``workers`` batches at
once) with :class:`kaudit_elk.ingest.bulk.Ingester` (item
classification, retries with backoff, idempotent ``_id``, 409 = duplicate, 4xx = dead letter).
Only when every record of the batch is indexed, a known duplicate or durably dead-lettered does
the spool cursor move past it: an acknowledged batch is eventually indexed or dead-lettered.

**Intake first.** Acknowledgement never waits for the engine, and while requests are being
received the shipper *yields*: it does not decode or normalize (pure Python work that holds the GIL
the receiver's event loop needs — measured: a GIL-bound thread beside the loop multiplies the
acknowledgement p50 by 6–40) as long as the spool is within its marks: the oldest unshipped batch
younger than ``yield_max_lag`` seconds and less than ``yield_max_fill`` of ``--spool-max-mb``
unshipped. Past either mark it ships at full speed whatever intake does, so a burst is absorbed by
the spool and shipped in the next quiet moment, and a sustained overload lags at most
``yield_max_lag`` behind before shipping competes with intake again (``kaudit_ship_yielded_seconds``
counts the pauses).

**Counted once.** Every batch's outcome (events, indexed, duplicates, skipped, dead-lettered) is
counted into the exported totals when the spool cursor moves past it, from the attempt that
delivered it: a batch sent again after an engine failure, or replayed after a restart, is counted
once (its events that an earlier attempt or process had stored count as duplicates).

**Large bodies** (over ``STREAM_DECODE_ABOVE``) that are an ``EventList`` are decoded one event at
a time (ijson, C backend) instead of as one object tree, so a 32 MiB body costs memory for its bytes
and the bulk items, not for ~10x its size in Python objects.

When the engine is unreachable, or refuses our credentials (401/403), nothing is dead-lettered:
the shipper keeps the batch, says why it waits (``state``, the log, ``/readyz``, metrics) and
tries again with backoff, while the receiver keeps acknowledging into the spool.

Before its first write on a connection the shipper checks that the namespace was bootstrapped
(:func:`kaudit_elk.cluster.namespace.require_bootstrapped`, as ``ingest`` does): writing to one
that was not would create the stream with dynamic mappings that lose events. Until it is, the
state is ``not_bootstrapped`` (the detail says which ``bootstrap`` to run) and nothing is sent;
``serve`` refuses to start when this is the verdict at start-up (:attr:`Shipper.checked`).
"""

from __future__ import annotations

import io
import logging
import random
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import ijson
import orjson

from kaudit_elk.base.errors import EngineError
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.namespace import NotBootstrapped, require_bootstrapped
from kaudit_elk.events.envelopes import EnvelopeError, decode
from kaudit_elk.events.sources import Record
from kaudit_elk.ingest.bulk import EngineAuthError, Ingester, IngestOptions, IngestStats, _Batch, _Item
from kaudit_elk.ingest.metrics import ServeMetrics
from kaudit_elk.ingest.spool import Position, Spool, SpoolRecord

log = logging.getLogger("kaudit_elk.serve")

WAITING = frozenset({"engine_unreachable", "engine_auth", "not_bootstrapped", "dead_letter_unwritable", "error"})
_AUTH_TEXT = re.compile(r"HTTP 40[13]\b|authentication failed|permission denied|security_exception")


@dataclass(frozen=True)
class ShipOptions:
    batch_bytes: int = 4 << 20  # spooled bytes read per bulk batch
    attempt_for: float = 30.0  # seconds of engine retries inside one attempt before the shipper backs off
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    poll: float = 0.2  # seconds between looks at an empty spool
    workers: int = 2  # batches being sent at once (the next one is prepared meanwhile)
    yield_to_intake: bool = True  # pause decoding while requests are received (within the marks below)
    yield_max_lag: float = 30.0  # ... unless the oldest unshipped batch is this old (at most half --spool-max-age)
    yield_max_fill: float = 0.5  # ... or this fraction of the spool's byte bound is unshipped
    ingest: IngestOptions = IngestOptions()


#: Bodies larger than this are decoded one event at a time when they are an EventList.
STREAM_DECODE_ABOVE = 4 << 20


class BodyError(ValueError):
    """A spooled body that is not JSON, or holds no audit events; ``what`` names which."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what}: {detail}")
        self.what = what


def _stream_shape(body: bytes) -> bool:
    """True when ``body`` opens as an EventList object whose ``items`` is an array (looked at from
    the start up to the items; the rest is checked while decoding)."""
    kind = None
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(body)):
            if prefix == "":
                if event == "map_key" and value == "items":
                    if kind is None:
                        return False  # kind after the items: not worth a third pass
                elif event not in ("start_map", "map_key"):
                    return False
            elif prefix == "kind":
                kind = value
                if event != "string" or value != "EventList":
                    return False
            elif prefix == "items":
                return event == "start_array" and kind == "EventList"
    except ijson.JSONError:
        return False
    return False


def iter_events(body: bytes) -> Iterator[dict[str, Any]]:
    """The audit Events of one request body, in order, as :func:`decode` reads them.

    Raises :class:`BodyError` before yielding anything when the body is not JSON or not audit
    events (it is dead-lettered whole). An EventList over :data:`STREAM_DECODE_ABOVE` is read twice
    one item at a time — once to check every item, once to yield them — so memory holds one event's
    objects at a time instead of the whole body's tree.
    """
    if len(body) <= STREAM_DECODE_ABOVE or not _stream_shape(body):
        try:
            events = decode(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise BodyError("invalid JSON", str(exc)) from None
        except EnvelopeError as exc:
            raise BodyError("not an audit event", str(exc)) from None
        yield from events
        return

    def items() -> Iterator[dict[str, Any]]:
        for item in ijson.items(io.BytesIO(body), "items.item", use_float=True):
            yield from decode({"kind": "EventList", "items": [item]})  # the same checks as the whole body

    try:
        for _ in items():
            pass
    except ijson.JSONError as exc:
        raise BodyError("invalid JSON", str(exc).splitlines()[0]) from None
    except EnvelopeError as exc:
        raise BodyError("not an audit event", str(exc)) from None
    yield from items()


def split_body(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """A spooled record is one JSON line of request metadata, a newline, then the body as received."""
    head, _, body = payload.partition(b"\n")
    try:
        meta = orjson.loads(head)
    except orjson.JSONDecodeError:
        meta = {}
    return (meta if isinstance(meta, dict) else {}), body


def spool_payload(meta: dict[str, Any], body: bytes) -> bytes:
    return orjson.dumps(meta) + b"\n" + body


def is_auth_failure(exc: EngineError) -> bool:
    return isinstance(exc, EngineAuthError) or getattr(exc, "status", None) in (401, 403) \
        or bool(_AUTH_TEXT.search(str(exc)))


class _TimedEngine:
    """The engine as the Ingester sees it, with each ``_bulk`` timed and engine failures counted."""

    def __init__(self, engine: Engine, metrics: ServeMetrics) -> None:
        self._engine = engine
        self._metrics = metrics

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return self._engine.request(method, path, *args, **kwargs)
        except EngineError as exc:
            status = getattr(exc, "status", None)
            kind = "auth" if status in (401, 403) else "unreachable" if status is None else "retryable"
            self._metrics.engine_errors.labels(kind).inc()
            raise
        finally:
            if path == "/_bulk":
                self._metrics.bulk_seconds.observe(time.monotonic() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


class Shipper:
    """The background thread that empties the spool into the engine."""

    def __init__(self, spool: Spool, connect: Callable[[], Engine], options: ShipOptions, metrics: ServeMetrics,
                 intake_busy: Callable[[], bool] | None = None) -> None:
        self.spool = spool
        self.intake_busy = intake_busy or (lambda: False)
        self.totals = IngestStats()  # outcomes of the batches the cursor moved past (what /metrics shows)
        self._totals_lock = threading.Lock()
        self.connect = connect
        self.options = options
        self.metrics = metrics
        self.ingest_options = replace(options.ingest, retry_for=options.attempt_for, checkpoint=None, follow=False)
        self.ingester: Ingester | None = None
        self.state = "starting"
        self.detail = ""
        self.engine_label = ""
        self.checked = threading.Event()  # set after the first connection attempt and namespace check
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kaudit-shipper", daemon=True)
        metrics.ship_stats = lambda: self.totals

    # -- control -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New records were spooled."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current attempt (records not yet delivered stay in the spool)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _set(self, state: str, detail: str = "") -> None:
        if state != self.state or detail != self.detail:
            if state in WAITING:
                log.warning("shipping waits (%s): %s; the receiver keeps acknowledging into the spool",
                            state.replace("_", " "), detail)
            elif self.state in WAITING:
                log.warning("shipping resumed")
        self.state, self.detail = state, detail
        self.metrics.set_state(state)

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "engine": self.engine_label}

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        """Read and prepare the next batch while earlier ones are being sent (``workers`` at once);
        commit strictly in spool order. On any failure, let the batches in flight finish, forget
        them and read again from the committed cursor (re-sent items are 409 duplicates)."""
        delay = self.options.backoff_initial
        workers = max(1, self.options.workers)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kaudit-ship")
        in_flight: deque[tuple[Future[None], Position, int, IngestStats]] = deque()
        read_at: Position | None = None  # None: from the committed cursor
        try:
            while not self._stop.is_set():
                try:
                    if self.ingester is None:
                        engine = self.connect()
                        self._check_namespace(engine)
                        self.checked.set()
                        self.ingester = Ingester(_TimedEngine(engine, self.metrics),  # type: ignore[arg-type]
                                                 replace(self.ingest_options, writer="serve"))
                        self.engine_label = engine.info.label
                        log.info("shipping to %s", self.engine_label)
                    while in_flight and in_flight[0][0].done():
                        self._settle(in_flight.popleft())
                        delay = self.options.backoff_initial
                    if len(in_flight) < workers:
                        records, end = self.spool.read(read_at or self.spool.cursor, self.options.batch_bytes)
                        if records:
                            stats = IngestStats()
                            items = self.prepare(records, stats)
                            if self.state not in WAITING:  # while waiting, it says so until a batch gets through
                                self._set("shipping")
                            in_flight.append((pool.submit(self.ship_batch, items, stats), end, len(records), stats))
                            read_at = end
                            continue
                    if in_flight:
                        wait_futures([in_flight[0][0]], timeout=self.options.poll)
                        continue
                    read_at = None
                    self._set("idle")
                    self._wake.wait(self.options.poll)
                    self._wake.clear()
                except Exception as exc:  # noqa: BLE001 - classified below; shipping never stops for good
                    for fut, _, _, _ in in_flight:  # their outcomes are dropped: they are read and counted again
                        wait_futures([fut])
                    in_flight.clear()
                    read_at = None
                    self._failed(exc)
                    self.checked.set()
                    self._pause(delay)
                    delay = min(delay * 2, self.options.backoff_max)
            # stopping: commit what has already been delivered, in order
            while in_flight:
                entry = in_flight.popleft()
                wait_futures([entry[0]], timeout=self.options.attempt_for)
                if not entry[0].done() or entry[0].exception() is not None:
                    break
                self._settle(entry)
        except Exception:  # noqa: BLE001 - what is not committed stays in the spool
            log.exception("shipper stopped with batches not committed; they ship at the next start")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self.checked.set()
            self._set("stopped")

    def _settle(self, entry: tuple[Future[None], Position, int, IngestStats]) -> None:
        fut, end, count, stats = entry
        fut.result()  # re-raises the batch's failure
        assert self.ingester is not None
        self.ingester.dead.sync()
        # Counted once: with the cursor's move past the batch (added just before it, so that an
        # empty spool never shows stale totals; taken back if the cursor cannot be written).
        self._count(stats, +1)
        try:
            self.spool.commit(end, count)
        except BaseException:
            self._count(stats, -1)
            raise
        self._set("shipping")

    def _count(self, stats: IngestStats, sign: int) -> None:
        with self._totals_lock:
            t = self.totals
            for name in ("read", "indexed", "duplicates", "skipped", "dead_lettered", "retried_items",
                         "retried_requests"):
                setattr(t, name, getattr(t, name) + sign * getattr(stats, name))
            for reason, n in stats.reasons.items():
                t.reasons[reason] = t.reasons.get(reason, 0) + sign * n
                if not t.reasons[reason]:
                    del t.reasons[reason]

    def _yield_to_intake(self) -> None:
        """While requests are being received and the spool is within its marks, wait: the
        receiver's event loop gets the GIL and the CPU (and the engine is not fed meanwhile)."""
        o = self.options
        if not o.yield_to_intake or not self.intake_busy():
            return
        started = time.monotonic()
        limits = self.spool.limits
        limit_bytes = o.yield_max_fill * limits.max_bytes
        limit_age = min(o.yield_max_lag, limits.max_age / 2)  # never let the spool fill by age while standing back
        while self.intake_busy() and not self._stop.is_set():
            st = self.spool.stats()
            if st.bytes >= limit_bytes or (st.oldest_age or 0.0) >= limit_age:
                break
            self._stop.wait(0.005)
        self.metrics.yielded.inc(time.monotonic() - started)

    def _check_namespace(self, engine: Engine) -> None:
        """Raise NotBootstrapped (the engine connection closed) unless the namespace was bootstrapped."""
        try:
            require_bootstrapped(engine, self.ingest_options.namespace)
        except BaseException:
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing a connection we are giving up on
                pass
            raise

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, NotBootstrapped):  # nothing is written until bootstrap has run; checked again
            self._set("not_bootstrapped", str(exc))
        elif isinstance(exc, EngineError):
            if is_auth_failure(exc):
                self._set("engine_auth", f"the engine refused the credentials: {exc}")
            else:
                self.metrics.engine_errors.labels("unreachable").inc()
                self._set("engine_unreachable", str(exc))
        elif isinstance(exc, OSError):  # the dead-letter file cannot be written: keep everything, retry
            self.metrics.engine_errors.labels("dead_letter_unwritable").inc()
            self._set("dead_letter_unwritable", f"cannot write dead letters: {exc}")
        else:
            log.error("shipping failed unexpectedly; retrying (records stay in the spool)", exc_info=exc)
            self._set("error", f"unexpected {type(exc).__name__}: {exc}")

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds * (0.75 + random.random() / 2))

    # -- one batch -----------------------------------------------------------------------------
    def prepare(self, records: list[SpoolRecord], stats: IngestStats | None = None) -> list[_Item]:
        """Decode spooled bodies into bulk items; undecodable bodies and events are dead-lettered.
        Outcomes (events read, skipped, dead-lettered) are counted in ``stats`` (the batch's)."""
        assert self.ingester is not None
        stats = IngestStats() if stats is None else stats
        ing = self.ingester
        items: list[_Item] = []
        for rec in records:
            self._yield_to_intake()
            meta, body = split_body(rec.payload)
            where = f"webhook:{meta.get('peer', '?')} request {meta.get('id', '?')}"
            try:
                for i, event in enumerate(iter_events(body)):
                    stats.read += 1
                    try:
                        raw = orjson.dumps(event)
                    except orjson.JSONEncodeError:  # nested too deep to write back: the body is the evidence
                        raw, prepared = body, None
                    else:
                        prepared = ing.prepare(raw)
                    record = Record(where, i + 1, raw, event if prepared is None else None, None, 0, prepared)
                    item = ing._to_item(record, stats)
                    if item is not None:
                        record.event = None  # the document is made: do not keep the object tree alive
                        items.append(item)
            except BodyError as exc:
                ing._dead(Record(where, 1, body, None, str(exc)), str(exc), stats)
        return items

    def ship_batch(self, items: list[_Item], stats: IngestStats | None = None) -> None:
        """Deliver one batch: returns when every item is indexed, a duplicate or dead-lettered.

        This is the write path's batch boundary (one call per spool read); raises EngineError
        (EngineAuthError for 401/403) when the engine cannot take it now — then nothing moves.
        """
        assert self.ingester is not None
        if items:
            batch = _Batch(items, {})
            try:
                self.ingester._send(batch, stats)
            except BaseException:
                try:  # what it created is chained, also when it gave up halfway; its own error is reported
                    self.ingester.chain_batch(batch)
                except EngineError:
                    pass  # those documents show up in `verify` as outside the chain
                raise
            self.ingester.chain_batch(batch)  # the integrity link, before the spool moves past the batch
