"""serve's request caps: a request over --max-concurrent waits for a slot (its body unread) and is
acknowledged, instead of a 429 that the apiserver would retry only after 10 s; 429 only once
--queue-timeout has passed without a slot."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

from kaudit_elk.ingest.serve import ServeOptions, ServerThread

EVENT_LIST = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
    {"auditID": "a-1", "stage": "ResponseComplete", "verb": "get", "requestURI": "/api/v1/pods"}]}).encode()


def _post(port: int, results: list[int]) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/audit", data=EVENT_LIST, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            results.append(resp.status)
    except urllib.error.HTTPError as exc:
        results.append(exc.code)


def _hold_a_slot(port: int) -> socket.socket:
    """A request whose headers arrived and whose body is still coming: it holds a slot."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(EVENT_LIST) + EVENT_LIST[:10])
    return sock


def _receiver(tmp_path: Path, **kw: object) -> ServerThread:
    return ServerThread(ServeOptions(port=0, plain_http=True, no_auth=True, spool_dir=str(tmp_path / "spool"),
                                     ship_enabled=False, max_concurrent=1, **kw), lambda: None)  # type: ignore[arg-type, return-value]


def _wait(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_request_over_the_cap_waits_for_a_slot_and_is_acknowledged(tmp_path: Path) -> None:
    srv = _receiver(tmp_path, queue_timeout=30.0)
    try:
        assert srv.receiver is not None
        slow = _hold_a_slot(srv.port)
        _wait(lambda: srv.receiver.in_flight == 1, "the slow request to take the slot")  # type: ignore[union-attr]
        results: list[int] = []
        waiting = threading.Thread(target=_post, args=(srv.port, results))
        waiting.start()
        _wait(lambda: len(srv.receiver._waiters) == 1, "the second request to queue")  # type: ignore[union-attr]
        assert results == []  # not refused: it waits, its body unread
        slow.sendall(EVENT_LIST[10:])  # the slow request completes and frees its slot
        assert b" 200 " in slow.recv(4096).split(b"\r\n", 1)[0] + b" "
        waiting.join(30)
        assert results == [200]
        assert srv.receiver.spool.stats().records == 2  # both acknowledged = both spooled
        slow.close()
    finally:
        srv.stop()


def test_429_only_after_the_queue_timeout(tmp_path: Path) -> None:
    srv = _receiver(tmp_path, queue_timeout=0.3)
    try:
        assert srv.receiver is not None
        slow = _hold_a_slot(srv.port)
        _wait(lambda: srv.receiver.in_flight == 1, "the slow request to take the slot")  # type: ignore[union-attr]
        results: list[int] = []
        _post(srv.port, results)
        assert results == [429]
        rendered = srv.receiver.metrics.render().decode()
        assert 'kaudit_serve_rejected_total{reason="busy"} 1.0' in rendered
        assert "kaudit_serve_requests_waiting 0.0" in rendered  # the refused request left the queue
        slow.sendall(EVENT_LIST[10:])
        assert b" 200 " in slow.recv(4096).split(b"\r\n", 1)[0] + b" "
        assert srv.receiver.in_flight == 0
        slow.close()
    finally:
        srv.stop()
