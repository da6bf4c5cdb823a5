"""The audit webhook receiver against real engines and the apiserver's own webhook backend.

The client is tests/webhook-client: k8s.io/apiserver's plugin/pkg/audit/webhook behind
plugin/pkg/audit/buffered, the code kube-apiserver runs for --audit-webhook-config-file.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from serve_support import Pki, indexed_keys, kubeconfig, make_pki, run_client

from kaudit_elk.base.config import Settings
from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine, connect
from kaudit_elk.cluster.templates import BootstrapOptions, Names
from kaudit_elk.ingest.bulk import IngestOptions
from kaudit_elk.ingest.serve import ServeOptions, ServerThread
from kaudit_elk.ingest.shipper import ShipOptions
from kaudit_elk.ingest.spool import SpoolLimits

TOKEN = "t0ken-" + "a" * 32


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Forwarder:
    """A TCP forwarder in front of the engine that can be cut and restored (a network outage)."""

    def __init__(self, target_port: int, up: bool = True) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = up
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def cut(self) -> None:
        self.up = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()


def new_stream(engine: Engine) -> tuple[str, str]:
    namespace = f"hook{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    return namespace, Names(namespace).stream


def ship_options(namespace: str, tmp: Path) -> ShipOptions:
    return ShipOptions(backoff_initial=0.2, backoff_max=1.0, attempt_for=3.0, ingest=IngestOptions(
        namespace=namespace, dead_letter=str(tmp / "dead.ndjson"), backoff_initial=0.1, backoff_max=0.5))


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(connect_fn: Callable[[], Engine], namespace: str, **kw) -> ServerThread:
        kw.setdefault("spool_dir", str(tmp_path / f"spool{len(started)}"))
        srv = ServerThread(ServeOptions(port=0, ship=ship_options(namespace, tmp_path), **kw), connect_fn)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.report is None:
            srv.stop()


def post(url: str, body: bytes, headers: dict | None = None, context: ssl.SSLContext | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60, context=context) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def get(url: str, headers: dict | None = None, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(predicate: Callable[[], bool], seconds: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def event_list(corpus_dir: Path) -> tuple[list[dict], bytes]:
    items = [json.loads(line) for line in (corpus_dir / "audit2rbac" / "demo.log").read_text().splitlines()]
    return items, json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).encode()


def count(engine: Engine, stream: str) -> int:
    engine.request("POST", f"/{stream}/_refresh", ignore=(404, 503))
    body = engine.request("GET", f"/{stream}/_count", ignore=(404, 503))  # 503: shards still starting
    return body["count"] if body else 0


def metric(srv: ServerThread, name: str) -> float:
    assert srv.receiver is not None
    for line in srv.receiver.metrics.render().decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def _mtls(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_real_webhook_backend_over_mtls_and_token_indexes_every_event_once(
        engine: Engine, pki: Pki, start_receiver, tmp_path: Path) -> None:
    namespace, stream = new_stream(engine)
    srv = start_receiver(lambda: connect(engine.settings), namespace, tls_cert=str(pki.server_cert),
                         tls_key=str(pki.server_key), client_ca=str(pki.ca), client_names=("kube-apiserver",),
                         tokens=(TOKEN,))
    cfg = kubeconfig(tmp_path / "hook.yaml", f"https://127.0.0.1:{srv.port}/audit", pki.ca,
                     pki.client_cert, pki.client_key, TOKEN)
    prefix = f"mtls-{uuid.uuid4().hex[:6]}"
    summary, acked, code = run_client(cfg, 3000, prefix, tmp_path)
    assert code == 0 and summary["failed"] == 0 and summary["delivered"] == 3000, summary
    assert len(acked) == 3000 and summary["batches"] >= 8  # 400-event batches
    assert {stage for _, stage in acked} == {"ResponseStarted", "ResponseComplete"}
    wait_for(lambda: sum(indexed_keys(engine, stream, prefix).values()) >= 3000, what="3000 events indexed")
    counts = indexed_keys(engine, stream, prefix)
    assert set(counts) == acked and set(counts.values()) == {1}  # every event exactly once
    # counted once the spool cursor has moved past the batches (just after the engine stored them)
    wait_for(lambda: metric(srv, "kaudit_ship_indexed_total") == 3000, what="3000 indexed in the metrics")


def test_bad_or_missing_credentials_get_401_or_403_and_nothing_is_stored(
        engine: Engine, pki: Pki, start_receiver, tmp_path: Path) -> None:
    namespace, stream = new_stream(engine)
    srv = start_receiver(lambda: connect(engine.settings), namespace, tls_cert=str(pki.server_cert),
                         tls_key=str(pki.server_key), client_ca=str(pki.ca), client_names=("kube-apiserver",),
                         tokens=(TOKEN,))
    url = f"https://127.0.0.1:{srv.port}/audit"
    body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}'
    good = _mtls(pki, pki.client_cert, pki.client_key)
    assert post(url, body, {"Authorization": f"Bearer {TOKEN}"}, good)[0] == 200
    assert post(url, body, {}, good)[0] == 401  # no token
    assert post(url, body, {"Authorization": "Bearer " + "b" * 38}, good)[0] == 401  # wrong token
    assert post(url, body, {"Authorization": f"Bearer {TOKEN}"}, _mtls(pki))[0] == 401  # no client certificate
    other = _mtls(pki, pki.other_cert, pki.other_key)  # signed by the CA, but not the apiserver's name
    assert post(url, body, {"Authorization": f"Bearer {TOKEN}"}, other)[0] == 403
    assert get(f"https://127.0.0.1:{srv.port}/metrics", {}, good)[0] == 401  # /metrics is authenticated
    assert get(f"https://127.0.0.1:{srv.port}/healthz", {}, _mtls(pki))[0] == 200  # /healthz is not
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        post(url, body, {"Authorization": f"Bearer {TOKEN}"}, _mtls(pki, pki.rogue_cert, pki.rogue_key))

    # The real webhook backend with bad credentials: every batch refused, nothing indexed.
    for name, cert, key, token in (("notoken", pki.client_cert, pki.client_key, None),
                                   ("badtoken", pki.client_cert, pki.client_key, "x" * 40),
                                   ("badname", pki.other_cert, pki.other_key, TOKEN)):
        cfg = kubeconfig(tmp_path / f"{name}.yaml", url, pki.ca, cert, key, token)
        summary, acked, code = run_client(cfg, 50, f"{name}-{uuid.uuid4().hex[:6]}", tmp_path)
        assert code != 0 and summary["delivered"] == 0 and summary["failed"] == 50 and not acked, (name, summary)
    assert count(engine, stream) == 0
    rejected = srv.receiver.metrics.render().decode()  # type: ignore[union-attr]
    assert 'kaudit_serve_rejected_total{reason="forbidden"}' in rejected
    assert metric(srv, 'kaudit_serve_rejected_total{reason="unauthenticated"}') >= 3


def test_resent_batches_are_indexed_once_and_garbage_is_refused_or_dead_lettered(
        engine: Engine, start_receiver, corpus_dir: Path, tmp_path: Path) -> None:
    namespace, stream = new_stream(engine)
    srv = start_receiver(lambda: connect(engine.settings), namespace, plain_http=True, tokens=(TOKEN,))
    url = f"http://127.0.0.1:{srv.port}/audit"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    items, body = event_list(corpus_dir)
    assert post(url, body, auth)[0] == 200
    assert post(url, body, auth)[0] == 200  # the apiserver retries a batch it thinks failed
    wait_for(lambda: metric(srv, "kaudit_ship_indexed_total") + metric(srv, "kaudit_ship_duplicates_total")
             >= 2 * len(items), what="both batches shipped")
    assert count(engine, stream) == len(items)
    assert metric(srv, "kaudit_ship_duplicates_total") == len(items)

    status, answer = post(url, b"kind=EventList", auth)  # not JSON at all: refused, not spooled
    assert status == 400 and "not a JSON" in answer["error"]
    status, answer = post(url, b'{"hello": "world"}', auth)  # JSON but no audit events: acknowledged ...
    assert status == 200
    dead = tmp_path / "dead.ndjson"
    wait_for(lambda: dead.exists() and dead.read_text().strip() != "", what="a dead letter")
    entry = json.loads(dead.read_text().splitlines()[0])  # ... and dead-lettered whole, naming the request
    assert entry["raw"] == '{"hello": "world"}' and answer["id"] in entry["source"]
    assert "not an audit event" in entry["reason"]
    assert (dead.stat().st_mode & 0o777) == 0o600


def test_starts_and_acknowledges_while_the_engine_is_unreachable(
        engine: Engine, start_receiver, corpus_dir: Path) -> None:
    namespace, stream = new_stream(engine)
    port = int(engine.settings.url.rsplit(":", 1)[1])
    fwd = Forwarder(port, up=False)  # the engine cannot be reached when serve starts
    via = Settings(url=f"http://127.0.0.1:{fwd.port}", timeout=5)
    srv = start_receiver(lambda: connect(via), namespace, plain_http=True, tokens=(TOKEN,))
    url = f"http://127.0.0.1:{srv.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    items, body = event_list(corpus_dir)
    for _ in range(3):
        assert post(url + "/audit", body, auth)[0] == 200
    wait_for(lambda: srv.receiver.shipper.state == "engine_unreachable", what="shipping waits")  # type: ignore
    status, ready = get(url + "/readyz", auth)
    ready = json.loads(ready)
    assert status == 200 and ready["ready"] and "shipping waits" in ready["note"]
    assert ready["spool"]["batches"] == 3
    assert count(engine, stream) == 0
    fwd.up = True  # the engine comes up
    wait_for(lambda: count(engine, stream) == len(items), what="the spooled batches indexed")
    wait_for(lambda: srv.receiver.spool.stats().records == 0, what="the spool empty")  # type: ignore
    assert metric(srv, "kaudit_ship_duplicates_total") == 2 * len(items)
    assert metric(srv, 'kaudit_ship_engine_errors_total{kind="unreachable"}') > 0


def test_spool_full_answers_503_and_loses_nothing_acknowledged(
        engine: Engine, start_receiver, corpus_dir: Path) -> None:
    namespace, stream = new_stream(engine)
    port = int(engine.settings.url.rsplit(":", 1)[1])
    fwd = Forwarder(port, up=False)
    via = Settings(url=f"http://127.0.0.1:{fwd.port}", timeout=5)
    items, _ = event_list(corpus_dir)
    srv = start_receiver(lambda: connect(via), namespace, plain_http=True, tokens=(TOKEN,),
                         spool=SpoolLimits(max_bytes=200_000))
    url = f"http://127.0.0.1:{srv.port}/audit"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    acked: list[str] = []
    refused = []
    for n in range(20):
        batch = [dict(e, auditID=f"full-{n}-{i}") for i, e in enumerate(items)]
        status, answer = post(url, json.dumps({"kind": "EventList", "items": batch}).encode(), auth)
        (acked if status == 200 else refused).append((n, status, answer))
    assert acked and refused  # some fit, the rest were refused
    assert {status for _, status, _ in refused} == {503}
    assert "spool full" in refused[0][2]["error"]
    assert metric(srv, 'kaudit_serve_rejected_total{reason="spool_full_bytes"}') == len(refused)
    assert get(url.replace("/audit", "/readyz"), auth)[0] == 503  # not ready while full
    fwd.up = True
    wait_for(lambda: count(engine, stream) == len(acked) * len(items), what="every acknowledged event indexed")
    wait_for(lambda: get(url.replace("/audit", "/readyz"), auth)[0] == 200, what="ready again")


def test_unwritable_dead_letter_file_pauses_shipping_and_loses_nothing(
        engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    namespace, stream = new_stream(engine)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # the dead-letter file's parent is a file: it cannot be created
    options = ServeOptions(port=0, plain_http=True, tokens=(TOKEN,), spool_dir=str(tmp_path / "spool"),
                           ship=ShipOptions(backoff_initial=0.2, backoff_max=0.5, attempt_for=3.0,
                                            ingest=IngestOptions(namespace=namespace,
                                                                 dead_letter=str(blocker / "dead.ndjson"))))
    srv = ServerThread(options, lambda: connect(engine.settings))
    try:
        url = f"http://127.0.0.1:{srv.port}/audit"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        items, body = event_list(corpus_dir)
        assert post(url, b'{"not": "audit"}', auth)[0] == 200  # to be dead-lettered
        assert post(url, body, auth)[0] == 200  # good events behind it
        wait_for(lambda: srv.receiver.shipper.state == "dead_letter_unwritable", what="shipping paused")  # type: ignore
        assert srv.receiver.spool.stats().records == 2  # type: ignore[union-attr]  # both kept
        blocker.unlink()
        blocker.mkdir()  # fixed
        wait_for(lambda: count(engine, stream) == len(items), what="the good events indexed")
        wait_for(lambda: srv.receiver.spool.stats().records == 0, what="the spool emptied")  # type: ignore
        entries = [json.loads(x) for x in (blocker / "dead.ndjson").read_text().splitlines()]
        assert [e["raw"] for e in entries] == ['{"not": "audit"}']
        assert metric(srv, 'kaudit_ship_engine_errors_total{kind="dead_letter_unwritable"}') > 0
    finally:
        srv.stop()


def test_sigterm_drains_and_says_what_is_left_in_the_spool(engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    import signal

    from serve_support import ServeProcess

    namespace, stream = new_stream(engine)
    spool = tmp_path / "spool"
    env = {"KAUDIT_URL": "http://127.0.0.1:1", "KAUDIT_NAMESPACE": namespace, "KAUDIT_SERVE_TOKEN": TOKEN}
    args = ["--plain-http", "--spool-dir", str(spool), "--dead-letter", str(tmp_path / "dl.ndjson")]
    serve = ServeProcess(args, env, tmp_path / "serve.log")

    def up() -> bool:
        try:
            return get(f"http://127.0.0.1:{serve.port}/healthz")[0] == 200
        except OSError:
            return False

    serve.start(up)  # the engine URL leads nowhere: everything stays in the spool
    items, body = event_list(corpus_dir)
    for _ in range(3):
        assert post(f"http://127.0.0.1:{serve.port}/audit", body, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert serve.signal(signal.SIGTERM) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "acknowledged 3 batch(es)" in log and "left in the spool" in log and ": 3 batch(es)" in log
    serve.env["KAUDIT_URL"] = engine.settings.url  # the next start ships what was left
    serve.start(up)
    wait_for(lambda: count(engine, stream) == len(items), what="the left batches shipped")
    assert serve.signal(signal.SIGTERM) == 0


class MutedForwarder(Forwarder):
    """A forwarder that, once muted, still delivers requests to the engine but drops its answers:
    the engine indexes a batch and serve never learns it (then serve is killed: a crash between the
    engine's write and the spool cursor's move)."""

    muted = False

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        to_client = a.getpeername()[1] == self.target_port
        try:
            while data := a.recv(65536):
                if not (to_client and self.muted):
                    b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


def _metrics(port: int) -> dict[str, float]:
    status, text = get(f"http://127.0.0.1:{port}/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_a_replay_after_a_crash_counts_each_event_once_in_the_shipping_metrics(
        engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    """Issue 13: serve killed after the engine stored a batch but before the spool cursor moved;
    the restarted serve replays it. Summed over both processes every event counts once."""
    import signal

    from serve_support import ServeProcess

    namespace, stream = new_stream(engine)
    port = int(engine.settings.url.rsplit(":", 1)[1])
    fwd = MutedForwarder(port)
    env = {"KAUDIT_URL": f"http://127.0.0.1:{fwd.port}", "KAUDIT_NAMESPACE": namespace, "KAUDIT_SERVE_TOKEN": TOKEN}
    args = ["--plain-http", "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dl.ndjson")]
    serve = ServeProcess(args, env, tmp_path / "serve.log")

    def up() -> bool:
        try:
            return get(f"http://127.0.0.1:{serve.port}/healthz")[0] == 200
        except OSError:
            return False

    def shipping_state(state: str) -> bool:
        return _metrics(serve.port).get(f'kaudit_ship_state{{state="{state}"}}') == 1.0

    serve.start(up)
    wait_for(lambda: shipping_state("idle"), what="the shipper connected and idle")
    fwd.muted = True
    items, _ = event_list(corpus_dir)
    sent = 0
    for n in range(3):
        batch = [dict(e, auditID=f"crash-{n}-{i}") for i, e in enumerate(items)]
        assert post(f"http://127.0.0.1:{serve.port}/audit", json.dumps({"kind": "EventList", "items": batch}).encode(),
                    {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        sent += len(batch)
    wait_for(lambda: count(engine, stream) == sent, what="the engine to store every event (answers dropped)")
    before = _metrics(serve.port)
    assert before["kaudit_spool_records"] == 3  # nothing delivered as far as serve knows ...
    assert before["kaudit_ship_events_received_total"] == 0  # ... so nothing is counted yet
    assert before["kaudit_ship_indexed_total"] == 0
    assert serve.signal(signal.SIGKILL) == -signal.SIGKILL

    serve.env["KAUDIT_URL"] = engine.settings.url  # restarted, the engine answers again
    serve.start(up)
    wait_for(lambda: _metrics(serve.port)["kaudit_spool_records"] == 0, what="the replay shipped")
    after = _metrics(serve.port)
    assert after["kaudit_ship_events_received_total"] == sent  # each replayed event once
    assert after["kaudit_ship_duplicates_total"] == sent  # stored before the crash: found, not stored again
    assert after["kaudit_ship_indexed_total"] == 0
    assert sum(v for k, v in after.items() if k.startswith("kaudit_ship_dead_lettered_total")) == 0
    assert count(engine, stream) == sent
    assert indexed_keys(engine, stream, "crash-").most_common(1)[0][1] == 1  # every (auditID, stage) once
    assert serve.signal(signal.SIGTERM) == 0


def test_the_shipper_yields_to_intake_within_the_spool_marks(engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    """While a request is being received the shipper does not ship (the receiver keeps the CPU and
    the GIL), until the oldest unshipped batch reaches yield_max_lag; with intake quiet it ships."""
    namespace, stream = new_stream(engine)
    ship = replace(ship_options(namespace, tmp_path), yield_max_lag=4.0)
    srv = ServerThread(ServeOptions(port=0, plain_http=True, tokens=(TOKEN,), spool_dir=str(tmp_path / "spool"),
                                    read_timeout=120.0, request_timeout=120.0, ship=ship),
                       lambda: connect(engine.settings))
    try:
        assert srv.receiver is not None
        url = f"http://127.0.0.1:{srv.port}/audit"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        items, body = event_list(corpus_dir)
        wait_for(lambda: srv.receiver.shipper.state == "idle", what="the shipper idle")  # type: ignore[union-attr]
        slow = socket.create_connection(("127.0.0.1", srv.port))  # a request whose body is still arriving
        slow.sendall(b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body[:100])
        wait_for(lambda: srv.receiver.in_flight == 1, what="intake busy")  # type: ignore[union-attr]
        assert post(url, body, auth)[0] == 200  # acknowledged at once ...
        # ... and shipped only once its age reached the 4 s mark, although intake is still busy
        wait_for(lambda: count(engine, stream) == len(items), what="shipping past the lag mark")
        waited = metric(srv, "kaudit_ship_yielded_seconds_total")
        assert 3.0 < waited, f"the shipper yielded {waited:.1f}s, expected about the 4 s mark"
        slow.sendall(body[100:])
        assert b" 200 " in slow.recv(4096).split(b"\r\n", 1)[0] + b" "
        slow.close()
        wait_for(lambda: srv.receiver.spool.stats().records == 0, what="the slow request's batch shipped")  # type: ignore
        assert metric(srv, "kaudit_ship_events_received_total") == 2 * len(items)
    finally:
        srv.stop()
