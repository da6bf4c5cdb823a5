"""The audit webhook receiver against real engines, as the apiserver's webhook backend uses it."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.base.config import Settings
from kaudit_elk.cluster.engine import Engine, connect
from kaudit_elk.ingest.bulk import IngestOptions
from kaudit_elk.ingest.serve import ServeOptions, make_server
from kaudit_elk.cluster.templates import BootstrapOptions, Names


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class _Forwarder:
    """A TCP forwarder in front of the engine that can be cut and restored (a network outage)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.up = True
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


@pytest.fixture
def webhook(engine: Engine, tmp_path: Path) -> Iterator[tuple[str, Engine, str, _Forwarder, Path]]:
    namespace = f"hook{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    port = int(engine.settings.url.rsplit(":", 1)[1])
    fwd = _Forwarder(port)
    via = connect(Settings(url=f"http://127.0.0.1:{fwd.port}", timeout=5))
    dead = tmp_path / "dead.ndjson"
    server = make_server(via, ServeOptions(port=0, request_budget=3.0, ingest=IngestOptions(
        namespace=namespace, dead_letter=str(dead), backoff_initial=0.1, backoff_max=0.5)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/audit", engine, Names(namespace).stream, fwd, dead
    server.shutdown()
    server.server_close()


def _event_list(corpus_dir: Path) -> tuple[list[dict], bytes]:
    items = [json.loads(line) for line in (corpus_dir / "audit2rbac" / "demo.log").read_text().splitlines()]
    return items, json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).encode()


def _count(engine: Engine, stream: str) -> int:
    engine.request("POST", f"/{stream}/_refresh", ignore=(404,))
    body = engine.request("GET", f"/{stream}/_count", ignore=(404,))
    return body["count"] if body else 0


def test_webhook_batches_are_indexed_once_even_when_resent(webhook, corpus_dir: Path) -> None:
    url, engine, stream, _, _ = webhook
    items, body = _event_list(corpus_dir)
    status, answer = _post(url, body)
    assert status == 200 and answer["indexed"] == len(items)
    from kaudit_elk.events import fastpath
    assert answer["native"] == (len(items) if fastpath.available() else 0)  # the fast path took every event
    status, answer = _post(url, body)  # the apiserver retries a batch it thinks failed
    assert status == 200 and answer["duplicates"] == len(items) and answer["indexed"] == 0
    assert _count(engine, stream) == len(items)


def test_garbage_gets_400_and_is_dead_lettered(webhook) -> None:
    url, _, _, _, dead = webhook
    status, answer = _post(url, b'{"kind": "EventList", "items": [')
    assert status == 400 and "invalid JSON" in answer["error"]
    status, answer = _post(url, b'{"hello": "world"}')
    assert status == 400 and "not an audit event" in answer["error"]
    entries = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [e["raw"] for e in entries] == ['{"kind": "EventList", "items": [', '{"hello": "world"}']


def test_engine_outage_answers_503_then_the_retry_succeeds(webhook, corpus_dir: Path) -> None:
    url, engine, stream, fwd, _ = webhook
    items, body = _event_list(corpus_dir)
    fwd.cut()
    status, answer = _post(url, body)
    assert status == 503 and "retry" in answer["error"]
    fwd.up = True
    status, answer = _post(url, body)
    assert status == 200 and answer["indexed"] + answer["duplicates"] == len(items)
    assert _count(engine, stream) == len(items)
