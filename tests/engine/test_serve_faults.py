"""serve under faults, with the apiserver's own webhook backend sending throughout.

Engine stopped for 60 s, serve SIGKILLed and restarted, engine credentials revoked and restored,
abusive clients (an idle socket, 300 slow sockets, a 2 GB Content-Length, a 200 MB body).
``KAUDIT_FAULT_TESTS=0`` skips them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from serve_support import (REPO, Pki, ServeProcess, indexed_keys, kubeconfig, run_client,
                           start_secured_elasticsearch)
from test_serve import TOKEN, count, get, metric, new_stream, pki, wait_for  # noqa: F401 - pki is a fixture

from kaudit_elk.base.config import Settings
from kaudit_elk.cluster.engine import Engine, connect
from kaudit_elk.ingest.serve import ServeOptions, ServerThread
from kaudit_elk.ingest.shipper import ShipOptions
from kaudit_elk.ingest.bulk import IngestOptions

pytestmark = [pytest.mark.skipif(os.environ.get("KAUDIT_FAULT_TESTS", "1") == "0", reason="KAUDIT_FAULT_TESTS=0"),
              pytest.mark.timeout(1500)]  # minutes of traffic, an engine restart, and a loaded machine


def _engines(port: str, *args: str) -> None:
    env = dict(os.environ, KAUDIT_OPENSEARCH_VERSION="2.19.6", KAUDIT_OPENSEARCH_PORT=port)
    for _attempt in range(2):  # a loaded machine can take longer than the script waits for a start
        out = subprocess.run([str(REPO / "scripts" / "engines"), *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, timeout=300)
        if out.returncode == 0:
            return
    raise AssertionError(f"scripts/engines {' '.join(args)} failed: {out.stderr[-2000:]}")


class Sender(threading.Thread):
    """The webhook client sending in the background; ``result`` is (summary, acked keys, exit code)."""

    def __init__(self, cfg: Path, events: int, prefix: str, tmp: Path, *extra: str) -> None:
        super().__init__(daemon=True)
        self.args = (cfg, events, prefix, tmp, *extra)
        self.result: tuple | None = None

    def run(self) -> None:
        self.result = run_client(*self.args, timeout=900)  # type: ignore[arg-type]


def _serve_env(engine_url: str, namespace: str) -> dict[str, str]:
    return {"KAUDIT_URL": engine_url, "KAUDIT_NAMESPACE": namespace, "KAUDIT_SERVE_TOKEN": TOKEN}


def _healthy(port: int, context: ssl.SSLContext | None = None) -> bool:
    scheme = "https" if context else "http"
    try:
        return get(f"{scheme}://127.0.0.1:{port}/healthz", context=context)[0] == 200
    except OSError:
        return False


def test_engine_stopped_60s_mid_stream_acks_continue_and_nothing_is_lost(
        sandbox_opensearch: Engine, pki: Pki, tmp_path: Path) -> None:
    engine = sandbox_opensearch
    port = engine.settings.url.rstrip("/").rsplit(":", 1)[1]
    namespace, stream = new_stream(engine)
    srv = ServerThread(ServeOptions(port=0, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                                    tokens=(TOKEN,), spool_dir=str(tmp_path / "spool"),
                                    ship=ShipOptions(backoff_initial=0.5, backoff_max=2.0, attempt_for=5.0,
                                                     ingest=IngestOptions(namespace=namespace,
                                                                          dead_letter=str(tmp_path / "dl.ndjson")))),
                       lambda: connect(Settings(url=engine.settings.url, timeout=10)))
    try:
        cfg = kubeconfig(tmp_path / "hook.yaml", f"https://127.0.0.1:{srv.port}/audit", pki.ca, token=TOKEN)
        prefix = f"outage-{uuid.uuid4().hex[:6]}"
        sender = Sender(cfg, 15000, prefix, tmp_path, "-rate", "120")  # about 2 minutes of traffic
        sender.start()
        wait_for(lambda: count(engine, stream) > 500, what="shipping under way")
        _engines(port, "down", "opensearch")
        down_at = time.monotonic()
        acked_before = srv.receiver.accepted  # type: ignore[union-attr]
        time.sleep(60)
        acked_during = srv.receiver.accepted - acked_before  # type: ignore[union-attr]
        status, ready = get(f"https://127.0.0.1:{srv.port}/readyz", {"Authorization": f"Bearer {TOKEN}"},
                            ssl.create_default_context(cafile=str(pki.ca)))
        _engines(port, "up", "opensearch")
        assert time.monotonic() - down_at >= 60
        sender.join(900)
        summary, acked, code = sender.result  # type: ignore[misc]
        assert code == 0 and summary["failed"] == 0 and summary["delivered"] == 15000, summary
        assert acked_during > 20  # 200s continued from the spool while the engine was down
        assert status == 200 and json.loads(ready)["shipping"]["state"] == "engine_unreachable"
        wait_for(lambda: sum(indexed_keys(engine, stream, prefix).values()) >= len(acked), 300,
                 what="every acknowledged event indexed")
        counts = indexed_keys(engine, stream, prefix)
        assert set(counts) == acked and set(counts.values()) == {1}
        assert not (tmp_path / "dl.ndjson").exists()
        # The batches in flight when the engine went away were sent again after it came back: the
        # shipping metrics still count each event once.
        wait_for(lambda: srv.receiver.spool.stats().records == 0, what="the spool empty")  # type: ignore[union-attr]
        events = metric(srv, "kaudit_ship_events_received_total")
        assert events == summary["delivered"], events
        assert metric(srv, "kaudit_ship_indexed_total") + metric(srv, "kaudit_ship_duplicates_total") == events
    finally:
        srv.stop()


def test_serve_sigkilled_mid_stream_and_restarted_every_acknowledged_event_indexed_once(
        sandbox_opensearch: Engine, pki: Pki, tmp_path: Path) -> None:
    engine = sandbox_opensearch
    namespace, stream = new_stream(engine)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dl.ndjson")]
    serve = ServeProcess(args, _serve_env(engine.settings.url, namespace), tmp_path / "serve.log")
    serve.start(lambda: _healthy(serve.port, ctx))
    cfg = kubeconfig(tmp_path / "hook.yaml", f"https://127.0.0.1:{serve.port}/audit", pki.ca, token=TOKEN)
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    # A 1 s initial backoff gives five attempts over about 8 s: the restart fits in that window.
    sender = Sender(cfg, 12000, prefix, tmp_path, "-rate", "1000", "-initial-backoff", "1s")
    sender.start()
    kills = 0
    for _ in range(2):
        time.sleep(3)
        assert serve.signal(signal.SIGKILL) == -signal.SIGKILL
        kills += 1
        serve.start(lambda: _healthy(serve.port, ctx))
    sender.join(900)
    summary, acked, code = sender.result  # type: ignore[misc]
    print(f"\nSIGKILL x2: delivered {summary['delivered']}, failed {summary['failed']}")
    assert summary["delivered"] == len(acked) > 0 and kills == 2
    assert summary["delivered"] + summary["failed"] == 12000
    wait_for(lambda: sum(indexed_keys(engine, stream, prefix).values()) >= len(acked), 300,
             what="every acknowledged event indexed")
    counts = indexed_keys(engine, stream, prefix)
    assert acked <= set(counts) and set(counts.values()) == {1}  # acknowledged ⊆ indexed, each exactly once
    assert serve.signal(signal.SIGTERM) == 0
    assert "left in the spool" in serve.log.read_text()


def test_engine_credentials_revoked_nothing_dead_lettered_and_shipping_resumes(
        engine: Engine, pki: Pki, tmp_path: Path) -> None:
    if engine.flavor != "elasticsearch" or engine.info.version_text != "8.19.7":
        pytest.skip("runs once, beside the test Elasticsearch 8.19.7")
    from kaudit_elk.cluster.bootstrap import apply, build_plan
    from kaudit_elk.cluster.templates import BootstrapOptions, Names

    secured = start_secured_elasticsearch(engine.settings.url)
    try:
        admin = connect(Settings(url=secured.url, username=secured.admin[0], password=secured.admin[1]))
        namespace = f"auth{uuid.uuid4().hex[:6]}"
        options = BootstrapOptions(namespace=namespace)
        apply(admin, build_plan(admin, options), options)
        stream = Names(namespace).stream
        writer = Settings(url=secured.url, username=secured.writer[0], password=secured.writer[1], timeout=10)
        dead = tmp_path / "dl.ndjson"
        srv = ServerThread(ServeOptions(port=0, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                                        tokens=(TOKEN,), spool_dir=str(tmp_path / "spool"),
                                        ship=ShipOptions(backoff_initial=0.5, backoff_max=2.0, attempt_for=3.0,
                                                         ingest=IngestOptions(namespace=namespace,
                                                                              dead_letter=str(dead)))),
                           lambda: connect(writer))
        cfg = kubeconfig(tmp_path / "hook.yaml", f"https://127.0.0.1:{srv.port}/audit", pki.ca, token=TOKEN)
        first, acked1, code = run_client(cfg, 800, f"before-{uuid.uuid4().hex[:4]}", tmp_path)
        assert code == 0
        wait_for(lambda: count(admin, stream) == 800, what="shipping with working credentials")
        secured.set_writer_role("")  # credentials revoked: the user keeps its password, loses its role
        wait_for(lambda: _writer_refused(writer), 60, what="the role change to take effect")
        prefix = f"revoked-{uuid.uuid4().hex[:4]}"
        summary, acked, code = run_client(cfg, 2000, prefix, tmp_path)
        assert code == 0 and summary["delivered"] == 2000  # still acknowledged into the spool
        wait_for(lambda: srv.receiver.shipper.state == "engine_auth", 60, what="shipping paused")  # type: ignore
        status, ready = get(f"https://127.0.0.1:{srv.port}/readyz", {"Authorization": f"Bearer {TOKEN}"},
                            ssl.create_default_context(cafile=str(pki.ca)))
        assert status == 200 and "engine auth" in json.loads(ready)["note"]
        assert count(admin, stream) == 800 and not dead.exists()  # nothing shipped, nothing dead-lettered
        secured.set_writer_role("kaudit_writer")  # fixed
        wait_for(lambda: count(admin, stream) == 2800, 120, what="shipping resumed")
        counts = indexed_keys(admin, stream, prefix)
        assert set(counts) == acked and set(counts.values()) == {1}
        assert not dead.exists()
        rendered = srv.receiver.metrics.render().decode()  # type: ignore[union-attr]
        assert 'kaudit_ship_engine_errors_total{kind="auth"}' in rendered
        srv.stop()
    finally:
        secured.stop()


def _writer_refused(settings: Settings) -> bool:
    from kaudit_elk.base.errors import EngineError

    try:
        eng = connect(settings, probe_capabilities=False)
        eng.request("POST", "/logs-kubernetes.audit_logs-probe/_search")
        return False
    except EngineError as exc:
        return "403" in str(exc) or "401" in str(exc)


def _tls_socket(port: int, ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def test_abusive_clients_leave_others_unaffected_and_memory_bounded(
        sandbox_opensearch: Engine, pki: Pki, tmp_path: Path) -> None:
    engine = sandbox_opensearch
    namespace, stream = new_stream(engine)
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--client-ca", str(pki.ca),
            "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dl.ndjson")]
    serve = ServeProcess(args, _serve_env(engine.settings.url, namespace), tmp_path / "serve.log")
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    serve.start(lambda: _healthy(serve.port, ctx))
    port = serve.port
    idle = socket.create_connection(("127.0.0.1", port))  # connects and never says anything
    slow = []
    for _ in range(300):  # TLS done, then headers one byte at a time
        s = _tls_socket(port, pki.ca)
        s.sendall(b"P")
        slow.append(s)
    answers: dict[str, bytes] = {}

    client = (pki.client_cert, pki.client_key)  # authenticated clients gone wrong

    def huge_length() -> None:
        s = _tls_socket(port, pki.ca, client)
        s.sendall(b"POST /audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n" + b"[" * 65536)
        answers["2GB"] = s.recv(4096)

    def big_chunked() -> None:
        s = _tls_socket(port, pki.ca, client)
        s.sendall(b"POST /audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                  b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"[" * 0x100000 + b"\r\n"
        sent = 0
        try:
            while sent < 200 << 20:
                s.sendall(chunk)
                sent += 0x100000
        except OSError:
            pass
        try:
            answers["200MB"] = s.recv(4096)
        except OSError as exc:  # refused so early that the answer was lost to the reset
            answers["200MB"] = f"reset: {exc}".encode()
        answers["200MB-sent"] = str(sent).encode()

    abusers = [threading.Thread(target=f, daemon=True) for f in (huge_length, big_chunked)]
    for t in abusers:
        t.start()
    cfg = kubeconfig(tmp_path / "hook.yaml", f"https://127.0.0.1:{port}/audit", pki.ca,
                     pki.client_cert, pki.client_key, TOKEN)
    prefix = f"abuse-{uuid.uuid4().hex[:6]}"
    summary, acked, code = run_client(cfg, 4000, prefix, tmp_path, "-rate", "2000")
    for t in abusers:
        t.join(120)
    assert code == 0 and summary["failed"] == 0 and summary["delivered"] == 4000, summary
    assert answers["2GB"].startswith(b"HTTP/1.1 413"), answers["2GB"][:200]
    assert answers["200MB"].startswith((b"HTTP/1.1 413", b"reset")), answers["200MB"][:200]
    good = ssl.create_default_context(cafile=str(pki.ca))
    good.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    status, text = get(f"https://127.0.0.1:{port}/metrics", {"Authorization": f"Bearer {TOKEN}"}, good)
    assert status == 200 and 'kaudit_serve_rejected_total{reason="too_large"} 2.0' in text.decode()
    wait_for(lambda: sum(indexed_keys(engine, stream, prefix).values()) >= 4000, 300, what="indexed")
    assert set(indexed_keys(engine, stream, prefix).values()) == {1}
    rss = serve.peak_rss_mib()
    print(f"\nserve peak RSS with the abusers: {rss:.0f} MiB")
    assert rss < 512, f"peak RSS {rss:.0f} MiB"
    idle.settimeout(120)
    assert idle.recv(1) == b""  # the silent connection was closed (TLS handshake timeout)
    idle.close()
    for s in slow:
        s.close()
    assert serve.signal(signal.SIGTERM) == 0
    metrics = (tmp_path / "serve.log").read_text()
    assert "stopped: acknowledged" in metrics
