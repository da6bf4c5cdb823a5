"""The apiserver's audit webhook backend: receive ``EventList`` batches and index them.

Delivery is at-least-once with idempotent writes: a batch is answered ``200`` only after every
event in it is indexed, known as a duplicate, or dead-lettered; when the engine cannot take it
within ``request_budget`` seconds the answer is ``503`` and the apiserver's webhook backend
retries the batch (re-sent events are recognised by their ``_id`` and not stored twice). A body
that is not JSON or holds no audit events gets ``400`` and is dead-lettered whole.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from kaudit_elk.cluster.engine import Engine
from kaudit_elk.events.envelopes import EnvelopeError, decode
from kaudit_elk.base.errors import ConfigError, EngineError
from kaudit_elk.ingest.bulk import Ingester, IngestOptions, IngestStats
from kaudit_elk.events.sources import Record


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None  # require and verify client certificates (the apiserver's)
    max_body_bytes: int = 32 * 1024 * 1024
    request_budget: float = 20.0  # seconds of engine retries per batch before answering 503
    ingest: IngestOptions = IngestOptions()


class _Receiver:
    """Shared state of one server: the ingester and counters (thread-safe)."""

    def __init__(self, engine: Engine, options: ServeOptions) -> None:
        self.options = options
        ingest_options = replace(options.ingest, retry_for=options.request_budget, checkpoint=None, follow=False)
        self.ingester = Ingester(engine, ingest_options)
        self.lock = threading.Lock()
        self.batches = 0
        self.rejected = 0
        self.unavailable = 0

    def handle(self, body: bytes, peer: str) -> tuple[int, dict[str, Any]]:
        """Process one POST body; returns (HTTP status, JSON answer)."""
        try:
            events = decode(orjson.loads(body))
        except (orjson.JSONDecodeError, EnvelopeError) as exc:
            reason = f"invalid JSON: {exc}" if isinstance(exc, orjson.JSONDecodeError) else f"not an audit event: {exc}"
            self.ingester.dead.write(Record(f"webhook:{peer}", 1, body, None, reason), reason)
            with self.lock:
                self.rejected += 1
                self.ingester.stats.dead_lettered += 1
            return 400, {"error": reason}
        records = []
        for i, event in enumerate(events):
            try:
                raw = orjson.dumps(event)
            except orjson.JSONEncodeError:  # too deeply nested to write back: keep the batch as evidence
                raw, prepared = body, None
            else:
                prepared = self.ingester.prepare(raw)  # the native fast path, when installed
            records.append(Record(f"webhook:{peer}", i + 1, raw, event if prepared is None else None, None, 0, prepared))
        before = _snapshot(self.ingester.stats)
        try:
            self.ingester.run(records)
        except EngineError as exc:
            with self.lock:
                self.unavailable += 1
            return 503, {"error": f"engine unavailable, retry later: {exc}"}
        with self.lock:
            self.batches += 1
        after = _snapshot(self.ingester.stats)
        return 200, {k: after[k] - before[k] for k in after}

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"batches": self.batches, "rejected_batches": self.rejected,
                    "unavailable_answers": self.unavailable, **self.ingester.stats.as_dict()}


def _snapshot(stats: IngestStats) -> dict[str, int]:
    return {k: v for k, v in stats.as_dict().items() if isinstance(v, int)}


def make_server(engine: Engine, options: ServeOptions) -> ThreadingHTTPServer:
    """Build (not start) the webhook server; ``server.serve_forever()`` runs it."""
    receiver = _Receiver(engine, options)

    class Handler(BaseHTTPRequestHandler):
        server_version = "kaudit-elk"
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "5")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path.rstrip("/") in ("/healthz", "/readyz"):
                self._answer(200, {"status": "ok"})
            elif self.path.rstrip("/") == "/stats":
                self._answer(200, receiver.stats())
            else:
                self._answer(404, {"error": "POST audit EventLists to any path; GET /healthz, /stats"})

        def do_POST(self) -> None:  # noqa: N802
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._answer(411, {"error": "Content-Length required"})
                return
            size = int(length)
            if size > options.max_body_bytes:
                self.rfile.read(size)
                self._answer(413, {"error": f"body of {size} bytes exceeds {options.max_body_bytes}"})
                return
            body = self.rfile.read(size)
            status, payload = receiver.handle(body, self.client_address[0])
            self._answer(status, payload)

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((options.host, options.port), Handler)
    server.daemon_threads = True
    server.receiver = receiver  # type: ignore[attr-defined]
    if options.tls_cert or options.tls_key:
        if not (options.tls_cert and options.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(options.tls_cert, options.tls_key)
            if options.client_ca:
                ctx.load_verify_locations(options.client_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS material: {exc}") from None
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    elif options.client_ca:
        raise ConfigError("--client-ca needs --tls-cert and --tls-key")
    return server
