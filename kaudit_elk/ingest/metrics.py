"""Prometheus metrics of the webhook receiver and its shipper (``GET /metrics``).

One :class:`ServeMetrics` per receiver, in its own registry (several receivers can live in one
process, as in the tests). Names start with ``kaudit_serve_`` (the HTTP side), ``kaudit_spool_``
(the spool) and ``kaudit_ship_`` (delivery to the engine).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from kaudit_elk.ingest.spool import SpoolStats

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: reasons a request is refused (label values of kaudit_serve_rejected_total)
REJECT_REASONS = ("unauthenticated", "forbidden", "too_large", "length_required", "spool_full_bytes",
                  "spool_full_age", "spool_error", "busy", "read_timeout", "not_json", "method", "connections")
SHIP_STATES = ("starting", "shipping", "idle", "engine_unreachable", "engine_auth", "dead_letter_unwritable",
               "error", "stopped")


class ServeMetrics:
    def __init__(self, spool_stats: Callable[[], SpoolStats]) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the output and nobody graphs them
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("kaudit_serve_requests", "Webhook requests answered, by HTTP status", ["code"], registry=r)
        self.received_bytes = Counter("kaudit_serve_received_bytes", "Request body bytes received", registry=r)
        self.spooled = Counter("kaudit_serve_spooled_batches", "Request bodies durably spooled (acknowledged)", registry=r)
        self.spooled_bytes = Counter("kaudit_serve_spooled_bytes", "Bytes durably spooled (acknowledged)", registry=r)
        self.rejected = Counter("kaudit_serve_rejected", "Requests refused, by reason", ["reason"], registry=r)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.ack_seconds = Histogram("kaudit_serve_ack_seconds", "Time from request start to the acknowledgement",
                                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.spool_write_seconds = Histogram("kaudit_spool_write_seconds", "Duration of one group write + fsync",
                                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
                                             registry=r)
        self.spool_write_group = Histogram("kaudit_spool_write_group_requests",
                                           "Requests acknowledged by one group write + fsync",
                                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.in_flight = Gauge("kaudit_serve_requests_in_flight", "Requests being received", registry=r)
        self.waiting = Gauge("kaudit_serve_requests_waiting",
                             "Requests waiting for a slot (--max-concurrent / --max-inflight-mb), body not read yet",
                             registry=r)
        self.connections = Gauge("kaudit_serve_connections", "Open client connections", registry=r)
        self.connections_accepted = Counter("kaudit_serve_connections_accepted",
                                            "Client connections accepted (each one a TLS handshake under TLS)",
                                            registry=r)

        def stat(name: str) -> Callable[[], float]:
            def read() -> float:
                value = getattr(spool_stats(), name)
                return -1.0 if value is None else float(value)
            return read

        Gauge("kaudit_spool_bytes", "Unshipped bytes in the spool", registry=r).set_function(stat("bytes"))
        Gauge("kaudit_spool_records", "Unshipped batches in the spool", registry=r).set_function(stat("records"))
        Gauge("kaudit_spool_oldest_age_seconds", "Age of the oldest unshipped batch (-1: none)",
              registry=r).set_function(stat("oldest_age"))
        Gauge("kaudit_spool_segments", "Segment files in the spool", registry=r).set_function(stat("segments"))
        Gauge("kaudit_spool_corrupt_bytes", "Bytes moved to corrupt/ (torn or damaged records)",
              registry=r).set_function(stat("corrupt_bytes"))

        self.ship_stats: Callable[[], Any] = lambda: None  # the shipper's committed totals (IngestStats)
        self.yielded = Counter("kaudit_ship_yielded_seconds",
                               "Seconds the shipper paused so that intake had the CPU (spool within its marks)",
                               registry=r)
        r.register(_ShipTotals(self))
        self.bulk_seconds = Histogram("kaudit_ship_bulk_seconds", "Duration of one _bulk request",
                                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.engine_errors = Counter("kaudit_ship_engine_errors", "Engine failures while shipping, by kind", ["kind"],
                                     registry=r)
        for kind in ("unreachable", "auth", "retryable", "dead_letter_unwritable"):
            self.engine_errors.labels(kind)
        self.state = Gauge("kaudit_ship_state", "1 for the shipper's current state", ["state"], registry=r)
        self.set_state("starting")

    def set_state(self, state: str) -> None:  # noqa: D401
        for s in SHIP_STATES:
            self.state.labels(s).set(1 if s == state else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ShipTotals(Collector):
    """Delivery totals read at scrape time from the shipper's committed totals: a batch counts once,
    when the spool cursor moves past it, with the outcome of the attempt that delivered it (a batch
    sent again after a failure, or replayed after a restart, is not counted twice)."""

    def __init__(self, metrics: ServeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[CounterMetricFamily]:
        stats = self.metrics.ship_stats()
        get = (lambda name: getattr(stats, name)) if stats is not None else (lambda name: 0)
        for name, attr, doc in (("kaudit_ship_events_received", "read",
                                 "Audit events of the delivered spooled batches (counted once, as the spool moves past "
                                 "their batch)"),
                                ("kaudit_ship_indexed", "indexed", "Events indexed"),
                                ("kaudit_ship_duplicates", "duplicates", "Events already stored (resent or replayed)"),
                                ("kaudit_ship_skipped", "skipped", "Events left out by the stage policy")):
            yield CounterMetricFamily(name, doc, value=get(attr))
        dead = CounterMetricFamily("kaudit_ship_dead_lettered", "Events or bodies dead-lettered, by reason",
                                   labels=["reason"])
        for reason, n in sorted((dict(stats.reasons) if stats is not None else {}).items()):
            dead.add_metric([reason], n)
        yield dead
