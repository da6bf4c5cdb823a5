"""The apiserver's audit webhook backend: acknowledge ``EventList`` batches after a durable spool.

``POST`` (any path) → limits and credentials are checked before the body is read → the body goes
into the local spool (append + fsync, :mod:`kaudit_elk.ingest.spool`) → ``200``. A background
shipper (:mod:`kaudit_elk.ingest.shipper`) indexes what was spooled; the engine's health never
decides the answer, so the apiserver never waits for the engine and nothing acknowledged is lost.

Answers: ``200`` spooled · ``400`` the body is not JSON · ``401`` missing/bad bearer token or
client certificate · ``403`` a client certificate whose name is not allowed · ``408`` the body came
too slowly · ``411`` no body · ``413`` over ``max_body_bytes`` (Content-Length is checked first;
chunked bodies are counted as they arrive) · ``429`` no slot within ``queue_timeout`` (a request
over ``max_concurrent`` or ``max_inflight_bytes`` waits for one, its body not read yet, instead of
being refused at once) · ``503`` the spool is full (bytes or age) or cannot be written.
408/429/503 carry ``Retry-After``; the apiserver's webhook backend retries any non-2xx answer with
backoff (10 s first), so a refusal costs far more than a short wait.

Server: aiohttp on asyncio (one thread; TLS handshakes never block other clients), TLS by default
with optional client-certificate verification, per-connection header/idle deadlines, a cap on
connections and concurrent requests, ``/healthz`` (no auth), ``/readyz``, ``/metrics``, ``/stats``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from aiohttp import web

from kaudit_elk.base.errors import ConfigError
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.namespace import NotBootstrapped
from kaudit_elk.ingest.metrics import CONTENT_TYPE, ServeMetrics
from kaudit_elk.ingest.shipper import ShipOptions, Shipper
from kaudit_elk.ingest.spool import Spool, SpoolFull, SpoolLimits, SpoolWriter

log = logging.getLogger("kaudit_elk.serve")

TOKEN_ENV = "KAUDIT_SERVE_TOKEN"


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None  # verify client certificates (the apiserver's) against this bundle
    client_names: tuple[str, ...] = ()  # allowed client certificate names (CN or DNS SAN); () = any
    tokens: tuple[str, ...] = ()  # accepted bearer tokens
    plain_http: bool = False  # serve plain HTTP (explicit; loopback only unless insecure)
    insecure: bool = False  # consent to plain HTTP / no authentication on a non-loopback address
    no_auth: bool = False  # consent to accept unauthenticated requests
    spool_dir: str = "kaudit-spool"
    spool: SpoolLimits = SpoolLimits()
    max_body_bytes: int = 32 << 20
    max_inflight_bytes: int = 256 << 20  # request bytes being received at once (memory bound)
    max_concurrent: int = 32  # requests being received or spooled at once
    queue_timeout: float = 10.0  # seconds a request over the caps waits for a slot before its 429
    max_connections: int = 1024
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0  # from a request's first byte to its complete headers
    read_timeout: float = 30.0  # longest pause between two pieces of a body
    request_timeout: float = 60.0  # longest time to receive one whole body
    idle_timeout: float = 120.0  # an idle keep-alive connection is closed after this (> Go's 90 s)
    shutdown_grace: float = 25.0  # SIGTERM: seconds in-flight requests get to finish
    startup_check: float = 15.0  # seconds start-up waits for the engine's word on the namespace (then listens)
    ship: ShipOptions = ShipOptions()
    ship_enabled: bool = True


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_tokens(path: str | None, env: dict[str, str] | None = None) -> tuple[str, ...]:
    """Bearer tokens from a file (one per line; # comments) and/or the KAUDIT_SERVE_TOKEN variable."""
    env = os.environ if env is None else env
    tokens: list[str] = []
    if path:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as exc:
            raise ConfigError(f"--token-file {path}: {exc.strerror}") from None
        tokens += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if not tokens:
            raise ConfigError(f"--token-file {path} holds no token")
    if env.get(TOKEN_ENV):
        tokens.append(env[TOKEN_ENV].strip())
    short = [t for t in tokens if len(t) < 16]
    if short:
        raise ConfigError("a serve token must be at least 16 characters (use e.g. `openssl rand -hex 32`)")
    return tuple(tokens)


def check_options(options: ServeOptions) -> list[str]:
    """Refuse unsafe or inconsistent settings (ConfigError); return warnings worth printing."""
    warnings: list[str] = []
    local = is_loopback(options.host)
    if options.plain_http:
        if options.tls_cert or options.tls_key or options.client_ca:
            raise ConfigError("--plain-http cannot be combined with --tls-cert/--tls-key/--client-ca")
        if not local and not options.insecure:
            raise ConfigError(f"refusing plain HTTP on the non-loopback address {options.host}: audit events and "
                              "tokens would cross the network in clear text; use TLS, or add --insecure")
        warnings.append("serving plain HTTP: use it for loopback trials only")
    else:
        if not (options.tls_cert and options.tls_key):
            raise ConfigError("serve speaks HTTPS: give --tls-cert and --tls-key (or --plain-http for a loopback trial)")
    if options.client_names and not options.client_ca:
        raise ConfigError("--client-name needs --client-ca")
    if not options.client_ca and not options.tokens:
        if not options.no_auth:
            raise ConfigError("serve requires authentication: --client-ca (mTLS) and/or a bearer token "
                              f"(--token-file or {TOKEN_ENV}); --no-auth accepts anyone")
        if not local and not options.insecure:
            raise ConfigError(f"refusing unauthenticated requests on the non-loopback address {options.host}; "
                              "add authentication, or --insecure")
        warnings.append("no authentication: anyone who reaches this port can write audit events")
    if options.max_body_bytes > options.max_inflight_bytes:
        raise ConfigError("--max-body-mb cannot exceed --max-inflight-mb")
    return warnings


def ssl_context(options: ServeOptions) -> ssl.SSLContext | None:
    if options.plain_http:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(options.tls_cert, options.tls_key)  # type: ignore[arg-type]
        if options.client_ca:
            ctx.load_verify_locations(options.client_ca)
            # A certificate, when sent, must verify; a missing one gets a 401 that says so.
            ctx.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS material: {exc}") from None
    return ctx


def cert_names(cert: dict[str, Any] | None) -> list[str]:
    """The subject CN and DNS subjectAltNames of a verified peer certificate."""
    if not cert:
        return []
    names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    names += [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    return names


@dataclass
class ShutdownReport:
    spooled_batches: int
    spooled_bytes: int
    left_batches: int
    left_bytes: int
    shipping: dict[str, Any] = field(default_factory=dict)


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's protocol per connection: connection cap, header and idle deadlines."""

    def __init__(self, receiver: "Receiver", inner: asyncio.Protocol) -> None:
        self.receiver = receiver
        self.inner: asyncio.Protocol | None = inner
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.in_request = False
        self.awaiting_headers = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        r = self.receiver
        if len(r.guards) >= r.options.max_connections:
            r.metrics.rejected.labels("connections").inc()
            transport.abort()
            self.inner = None
            return
        self.transport = transport
        r.guards[transport] = self
        r.metrics.connections.set(len(r.guards))
        r.metrics.connections_accepted.inc()
        self._arm(r.options.idle_timeout)
        assert self.inner is not None
        self.inner.connection_made(transport)

    def _arm(self, seconds: float) -> None:
        if self.timer:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        if self.transport is not None and not self.in_request:
            if self.awaiting_headers:
                self.receiver.metrics.rejected.labels("read_timeout").inc()
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.in_request and not self.awaiting_headers:
            self.awaiting_headers = True
            self._arm(self.receiver.options.header_timeout)
        if self.inner is not None:
            self.inner.data_received(data)

    def request_started(self) -> None:
        self.in_request, self.awaiting_headers = True, False
        if self.timer:
            self.timer.cancel()

    def request_finished(self) -> None:
        self.in_request = False
        if self.transport is not None and not self.transport.is_closing():
            self._arm(self.receiver.options.idle_timeout)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer:
            self.timer.cancel()
        if self.transport is not None:
            self.receiver.guards.pop(self.transport, None)
            self.receiver.metrics.connections.set(len(self.receiver.guards))
        if self.inner is not None:
            self.inner.connection_lost(exc)


def _answer(status: int, payload: dict[str, Any], reason: str | None = None, close: bool = False,
            retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="kaudit-elk"'
    resp = web.Response(status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers)
    if close:
        resp.force_close()
    return resp


class Receiver:
    """One webhook receiver: HTTP server, spool, spool writer and shipper."""

    def __init__(self, options: ServeOptions, connect: Callable[[], Engine]) -> None:
        self.options = options
        self.warnings = check_options(options)
        self.ssl = ssl_context(options)
        self.metrics: ServeMetrics = None  # type: ignore[assignment]
        self.spool = Spool(options.spool_dir, options.spool, on_corrupt=self._corrupt)
        self.metrics = ServeMetrics(self.spool.stats)
        self.writer = SpoolWriter(self.spool, on_write=self._written)
        self.shipper = Shipper(self.spool, connect, options.ship, self.metrics, intake_busy=self.intake_busy)
        self.guards: dict[asyncio.BaseTransport, _Guard] = {}
        self.in_flight = 0
        self.inflight_bytes = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # requests waiting for a slot, FIFO
        self._last_request = 0.0  # monotonic time the last request finished
        self.accepted = 0
        self.accepted_bytes = 0
        self._ids = itertools.count(1)
        self._boot = f"{os.getpid():x}{int(time.time()):x}"
        self.server: asyncio.AbstractServer | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        for region in self.spool.corrupt:
            log.warning("spool: %d damaged bytes at %s offset %d (%s) moved to %s",
                        region.length, region.segment, region.offset, region.reason, region.moved_to)

    def _written(self, requests: int, seconds: float) -> None:
        self.metrics.spool_write_seconds.observe(seconds)
        self.metrics.spool_write_group.observe(requests)

    def intake_busy(self) -> bool:
        """Requests are being received or wait for a slot, or one ended less than 50 ms ago (the
        shipper yields to intake meanwhile; read from the shipper's thread, so no locks)."""
        return self.in_flight > 0 or bool(self._waiters) or time.monotonic() - self._last_request < 0.05

    # -- admission ------------------------------------------------------------------------------
    def _fits(self, reserve: int) -> bool:
        o = self.options
        return self.in_flight < o.max_concurrent and self.inflight_bytes + reserve <= o.max_inflight_bytes

    def _take(self, reserve: int) -> None:
        self.in_flight += 1
        self.inflight_bytes += reserve
        self.metrics.in_flight.set(self.in_flight)

    def _release(self, reserve: int) -> None:
        self.in_flight -= 1
        self.inflight_bytes -= reserve
        self._last_request = time.monotonic()
        self.metrics.in_flight.set(self.in_flight)
        while self._waiters:  # first come, first served
            want, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(want):
                break
            self._waiters.popleft()
            self._take(want)
            fut.set_result(None)
        self.metrics.waiting.set(len(self._waiters))

    async def _admit(self, reserve: int) -> bool:
        """Take a slot for a request of ``reserve`` bytes, waiting up to ``queue_timeout`` in
        arrival order (its body stays unread in the socket meanwhile); False when none came."""
        if not self._waiters and self._fits(reserve):
            self._take(reserve)
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((reserve, fut))
        self.metrics.waiting.set(len(self._waiters))
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.options.queue_timeout)
            return True
        except asyncio.TimeoutError:
            if fut.done():  # admitted as the wait ran out: give the slot back
                self._release(reserve)
            fut.cancel()
            self.metrics.waiting.set(len([w for w in self._waiters if not w[1].done()]))
            return False
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._release(reserve)
            fut.cancel()
            raise

    def _corrupt(self, region: Any) -> None:
        if self.metrics is not None:  # at open, regions are logged by __init__
            log.warning("spool: %d damaged bytes in segment %d at offset %d (%s) moved to %s",
                        region.length, region.segment, region.offset, region.reason, region.moved_to)

    # -- authentication -------------------------------------------------------------------------
    def _authenticate(self, request: web.Request) -> web.Response | None:
        o = self.options
        if o.client_ca:
            cert = request.transport.get_extra_info("peercert") if request.transport else None
            if not cert:
                self.metrics.rejected.labels("unauthenticated").inc()
                return _answer(401, {"error": "a client certificate signed by the configured CA is required"})
            if o.client_names and not set(cert_names(cert)) & set(o.client_names):
                self.metrics.rejected.labels("forbidden").inc()
                return _answer(403, {"error": "this client certificate's name is not allowed"})
        if o.tokens:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                self.metrics.rejected.labels("unauthenticated").inc()
                return _answer(401, {"error": "a bearer token is required"})
            ok = False
            for token in o.tokens:  # compare with every token: no early exit on a match
                ok |= hmac.compare_digest(given.strip().encode(), token.encode())
            if not ok:
                self.metrics.rejected.labels("unauthenticated").inc()
                return _answer(401, {"error": "the bearer token is not valid"})
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        guard = self.guards.get(request.transport) if request.transport else None
        if guard:
            guard.request_started()
        try:
            if request.path != "/healthz":
                denied = self._authenticate(request)
                if denied is not None:
                    self.metrics.requests.labels(str(denied.status)).inc()
                    if request.method == "POST":
                        denied.force_close()  # its body is not read
                    return denied
            resp = await handler(request)
            if request.method == "POST":
                self.metrics.requests.labels(str(resp.status)).inc()
            return resp
        finally:
            if guard:
                guard.request_finished()

    # -- endpoints ------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return _answer(200, {"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        # Ready = the spool takes a typical batch (400 events of ~2.5 KB ≈ 1 MiB) now.
        o = self.options
        full = self.spool.room(min(o.max_body_bytes, 1 << 20, o.spool.max_bytes // 4))
        shipping = self.shipper.status() if self.options.ship_enabled else {"state": "disabled"}
        body: dict[str, Any] = {"ready": full is None, "spool": self._spool_info(), "shipping": shipping}
        if full is not None:
            body["error"] = str(full)
        if shipping["state"] in ("engine_unreachable", "engine_auth", "not_bootstrapped", "dead_letter_unwritable"):
            why = f": {shipping['detail']}" if shipping["state"] == "not_bootstrapped" else ""
            body["note"] = (f"shipping waits ({shipping['state'].replace('_', ' ')}){why}; batches are still "
                            "acknowledged into the spool")
        return _answer(200 if full is None else 503, body)

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def stats(self, request: web.Request) -> web.Response:
        return _answer(200, self.stats_dict())

    def _spool_info(self) -> dict[str, Any]:
        st = self.spool.stats()
        return {"dir": str(self.spool.dir), "bytes": st.bytes, "batches": st.records,
                "oldest_age_seconds": None if st.oldest_age is None else round(st.oldest_age, 1),
                "max_bytes": self.options.spool.max_bytes, "max_age_seconds": self.options.spool.max_age,
                "corrupt_regions": st.corrupt_regions}

    def stats_dict(self) -> dict[str, Any]:
        stats = self.shipper.totals.as_dict()
        return {"accepted_batches": self.accepted, "accepted_bytes": self.accepted_bytes,
                "spool": self._spool_info(), "shipping": self.shipper.status(), **stats}

    async def not_allowed(self, request: web.Request) -> web.Response:
        self.metrics.rejected.labels("method").inc()
        return _answer(405, {"error": "POST audit EventLists to any path; GET /healthz, /readyz, /metrics, /stats"})

    async def receive(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        o = self.options
        length = request.content_length
        if length is not None and length > o.max_body_bytes:
            self.metrics.rejected.labels("too_large").inc()
            return _answer(413, {"error": f"body of {length} bytes exceeds the limit of {o.max_body_bytes}"}, close=True)
        if not request.body_exists:
            self.metrics.rejected.labels("length_required").inc()
            return _answer(411, {"error": "an EventList body is required"})
        reserve = length if length is not None else min(o.max_body_bytes, 1 << 20)
        full = self.spool.room(length or 0)
        if full is not None:
            self.metrics.rejected.labels(f"spool_full_{full.reason}").inc()
            return _answer(503, {"error": f"{full}; retry later"}, close=True, retry_after=5)
        if not await self._admit(reserve):
            self.metrics.rejected.labels("busy").inc()
            return _answer(429, {"error": f"no slot within {o.queue_timeout:g}s ({self.in_flight} requests in "
                                          "flight); retry later"}, close=True, retry_after=1)
        try:
            request_id = f"{self._boot}-{next(self._ids)}"
            peer = request.remote or "?"
            meta: dict[str, Any] = {"id": request_id, "peer": peer, "path": request.path}
            names = cert_names(request.transport.get_extra_info("peercert")) if request.transport else []
            if names:
                meta["client"] = names[0]
            buf = bytearray(orjson.dumps(meta) + b"\n")
            head = len(buf)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + o.request_timeout
            async with asyncio.timeout(deadline) as limit:  # one timer, moved per chunk (no task per read)
                while True:
                    limit.reschedule(min(deadline, loop.time() + o.read_timeout))
                    chunk = await request.content.readany()
                    if not chunk:
                        break
                    if len(buf) - head + len(chunk) > o.max_body_bytes:
                        self.metrics.rejected.labels("too_large").inc()
                        return _answer(413, {"error": f"body exceeds the limit of {o.max_body_bytes} bytes"},
                                       close=True)
                    if len(buf) - head + len(chunk) > reserve:
                        grow = len(buf) - head + len(chunk) - reserve
                        if self.inflight_bytes + grow > o.max_inflight_bytes:
                            self.metrics.rejected.labels("busy").inc()
                            return _answer(429, {"error": "too many request bytes in flight; retry later"},
                                           close=True, retry_after=1)
                        self.inflight_bytes += grow
                        reserve += grow
                    buf += chunk
            size = len(buf) - head
            self.metrics.received_bytes.inc(size)
            first = next((c for c in bytes(buf[head:head + 64]) if c not in b" \t\r\n"), None)
            if first not in (ord("{"), ord("[")):
                self.metrics.rejected.labels("not_json").inc()
                return _answer(400, {"error": "the body is not a JSON EventList"})
            result = await self._spool(buf)
            if isinstance(result, SpoolFull):
                self.metrics.rejected.labels(f"spool_full_{result.reason}").inc()
                return _answer(503, {"error": f"{result}; retry later"}, retry_after=5)
            if isinstance(result, BaseException):
                self.metrics.rejected.labels("spool_error").inc()
                log.error("%s", result)
                return _answer(503, {"error": f"{result}; retry later"}, retry_after=5)
            self.accepted += 1
            self.accepted_bytes += size
            self.metrics.spooled.inc()
            self.metrics.spooled_bytes.inc(size)
            self.metrics.ack_seconds.observe(time.monotonic() - started)
            self.shipper.wake()
            return _answer(200, {"spooled": size, "id": request_id})
        except asyncio.TimeoutError:
            self.metrics.rejected.labels("read_timeout").inc()
            return _answer(408, {"error": "the body arrived too slowly"}, close=True, retry_after=1)
        finally:
            self._release(reserve)

    async def _spool(self, payload: bytearray) -> BaseException | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[BaseException | None] = loop.create_future()

        def done(result: BaseException | None) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(result))

        self.writer.submit(payload, done)
        return await asyncio.shield(fut)  # a client that disconnects does not cancel the write

    # -- life cycle -----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=self.options.max_body_bytes + 1)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/{tail:.*}", self.receive)
        app.router.add_route("*", "/{tail:.*}", self.not_allowed)
        return app

    async def start(self, sock: socket.socket | None = None) -> int:
        """Start shipping and listen (on ``sock`` when given); returns the bound port.

        Refuses (:class:`NotBootstrapped`, exit 2) before listening when the engine answers within
        ``startup_check`` seconds that the namespace was never bootstrapped; an engine that cannot
        be reached does not stop the start (shipping waits and says why).
        """
        o = self.options
        if o.ship_enabled:
            self.shipper.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + o.startup_check
            while not self.shipper.checked.is_set() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if self.shipper.state == "not_bootstrapped":
                detail = self.shipper.detail
                await loop.run_in_executor(None, self._stop_threads)
                self.spool.close()
                raise NotBootstrapped(detail)
        try:
            return await self._listen(sock)
        except BaseException:
            if o.ship_enabled:
                await asyncio.get_running_loop().run_in_executor(None, self._stop_threads)
            raise

    async def _listen(self, sock: socket.socket | None) -> int:
        o = self.options
        self.runner = web.AppRunner(self.app(), handle_signals=False, access_log=None,
                                    keepalive_timeout=o.idle_timeout, shutdown_timeout=o.shutdown_grace,
                                    max_line_size=8190, max_field_size=16384, max_headers=64,
                                    lingering_time=0.5)  # after a 413, unread bodies are discarded 0.5 s at most
        await self.runner.setup()
        factory = self.runner.server
        assert factory is not None
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"ssl": self.ssl, "backlog": 512}
        if self.ssl is not None:
            kwargs["ssl_handshake_timeout"] = o.handshake_timeout
        if sock is not None:
            self.server = await loop.create_server(lambda: _Guard(self, factory()), sock=sock, **kwargs)
        else:
            self.server = await loop.create_server(lambda: _Guard(self, factory()), o.host, o.port,
                                                   reuse_address=True, **kwargs)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> ShutdownReport:
        """Stop accepting, let in-flight requests finish their spool writes, stop shipping."""
        if self.server is not None:
            self.server.close()
        if self.runner is not None:
            await self.runner.cleanup()  # waits up to shutdown_grace for in-flight handlers
        await asyncio.get_running_loop().run_in_executor(None, self._stop_threads)
        st = self.spool.stats()
        report = ShutdownReport(self.accepted, self.accepted_bytes, st.records, st.bytes, self.shipper.status())
        self.spool.close()
        return report

    def _stop_threads(self) -> None:
        self.writer.close()
        if self.options.ship_enabled:
            self.shipper.stop()


def serve_forever(options: ServeOptions, connect: Callable[[], Engine],
                  on_started: Callable[[Receiver], None] | None = None) -> ShutdownReport:
    """Run a receiver until SIGTERM or SIGINT; returns what it accepted and left in the spool."""

    async def main() -> ShutdownReport:
        # The event loop gives up the GIL at every socket, TLS and epoll call; with the default 5 ms
        # switch interval each such call can cost 5 ms while a shipper thread computes (the convoy
        # measured in bench_serve). 0.5 ms bounds that wait; the shipper yields to intake besides.
        sys.setswitchinterval(0.0005)
        receiver = Receiver(options, connect)
        await receiver.start()
        if on_started:
            on_started(receiver)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: no new connections; finishing %d request(s) in flight", receiver.in_flight)
        return await receiver.stop()

    return asyncio.run(main())


class ServerThread:
    """A receiver on its own event loop in a background thread (tests, embedding)."""

    def __init__(self, options: ServeOptions, connect: Callable[[], Engine]) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.receiver: Receiver | None = None
        self.report: ShutdownReport | None = None
        self._thread = threading.Thread(target=self._run, args=(options, connect), daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error

    def _run(self, options: ServeOptions, connect: Callable[[], Engine]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.receiver = Receiver(options, connect)
            self._loop.run_until_complete(self.receiver.start())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    @property
    def port(self) -> int:
        assert self.receiver is not None
        return self.receiver.port

    def stop(self) -> ShutdownReport:
        assert self.receiver is not None
        fut = asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop)
        self.report = fut.result(120)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        return self.report
