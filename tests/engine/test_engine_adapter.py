"""The engine adapter against real engines: detection, capabilities, errors, a round trip."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.request
from typing import Iterator

import pytest

from kaudit_elk.base.config import Settings
from kaudit_elk.cluster.engine import Engine, connect
from kaudit_elk.base.errors import EngineError


def _nodes_version(url: str) -> tuple[str, bool]:
    """(node version, whether the server says it is Elasticsearch) read with plain HTTP."""
    with urllib.request.urlopen(url.rstrip("/") + "/_nodes/_local?filter_path=nodes.*.version") as resp:
        body = json.load(resp)
        is_es = resp.headers.get("X-Elastic-Product") == "Elasticsearch"
    return next(iter(body["nodes"].values()))["version"], is_es


def test_flavor_and_version_are_detected(engine: Engine) -> None:
    version, is_es = _nodes_version(engine.settings.url)
    assert engine.info.version_text == version
    assert engine.flavor == ("elasticsearch" if is_es else "opensearch")
    assert engine.info.version[0] in ((2, 3) if engine.flavor == "opensearch" else (8, 9))


def test_capabilities_match_the_flavor(engine: Engine) -> None:
    caps = engine.caps
    if engine.flavor == "opensearch":
        assert caps.flat_type == "flat_object"
        # scripts/engines adds these modules to the integ-test distribution
        assert {"lang-painless", "ingest-common"} <= caps.modules
        assert caps.painless
        assert caps.has_processors({"json", "script", "date", "rename", "set", "remove"})
    else:
        assert caps.flat_type == "flattened"
        assert caps.data_streams


def test_template_and_document_round_trip(engine: Engine, unique_name: str) -> None:
    """A composable template with the flavor's flat type, one document in a data stream, found again."""
    pattern = f"logs-{unique_name}-*"
    template = {
        "index_patterns": [pattern],
        "data_stream": {},
        "priority": 500,
        "template": {
            "settings": {"number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "kubernetes": {"properties": {"audit": {"properties": {
                        "verb": {"type": "keyword"},
                        "requestObject": {"type": engine.caps.flat_type},
                    }}}},
                }
            },
        },
    }
    engine.request("PUT", f"/_index_template/{unique_name}", template)
    try:
        stream = f"logs-{unique_name}-default"
        doc = {"@timestamp": "2024-05-01T10:00:00Z", "kubernetes": {"audit": {
            "verb": "create", "requestObject": {"spec": {"hostNetwork": True, "containers": [{"image": "Nginx:1.25"}]}}}}}
        engine.request("PUT", f"/{stream}/_create/doc-1", doc, params={"refresh": "true"})
        # same id again: a duplicate is refused, never stored twice
        with pytest.raises(EngineError) as dup:
            engine.request("PUT", f"/{stream}/_create/doc-1", doc, params={"refresh": "true"})
        assert getattr(dup.value, "status", None) == 409
        body = engine.request("POST", f"/{stream}/_search", {
            "query": {"bool": {"filter": [
                {"term": {"kubernetes.audit.verb": "create"}},
                {"term": {"kubernetes.audit.requestObject.spec.hostNetwork": "true"}},
            ]}}})
        assert body["hits"]["total"]["value"] == 1
        assert body["hits"]["hits"][0]["_source"]["kubernetes"]["audit"]["requestObject"]["spec"]["hostNetwork"] is True
        mapping = engine.request("GET", f"/{stream}/_mapping")
        props = next(iter(mapping.values()))["mappings"]["properties"]
        assert props["kubernetes"]["properties"]["audit"]["properties"]["requestObject"]["type"] == engine.caps.flat_type
    finally:
        # The Elasticsearch integ-test zip has no data stream REST API (module data-streams), so the
        # stream (and hence its template) may have to stay; names are unique per test.
        engine.request("DELETE", f"/_data_stream/logs-{unique_name}-default", ignore=(400, 404, 405))
        engine.request("DELETE", f"/_index_template/{unique_name}", ignore=(400, 404))


def test_wrong_port_is_a_clear_connection_error() -> None:
    with pytest.raises(EngineError, match="cannot connect"):
        connect(Settings(url="http://127.0.0.1:9", timeout=5))


def test_https_against_plain_http_says_use_http(engine: Engine) -> None:
    url = engine.settings.url.replace("http://", "https://")
    with pytest.raises(EngineError, match="TLS failure.*use http://"):
        connect(Settings(url=url, timeout=10))


def test_http_against_tls_port_is_not_mistaken_for_an_engine() -> None:
    """A TLS-only port answered with plain HTTP gives a connection error, not a crash."""
    import socket
    import ssl as _ssl  # noqa: F401 - the point is the handshake bytes below

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def tls_alert() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(b"\x15\x03\x03\x00\x02\x02\x46")  # TLS alert record: what a TLS server answers
        conn.close()

    t = threading.Thread(target=tls_alert, daemon=True)
    t.start()
    with pytest.raises(EngineError, match="127.0.0.1"):
        connect(Settings(url=f"http://127.0.0.1:{port}", timeout=5))
    server.close()


class _AuthProxy(http.server.BaseHTTPRequestHandler):
    """A reverse proxy requiring basic auth in front of the real engine (a common deployment)."""

    upstream = ""
    token = base64.b64encode(b"auditor:s3cret").decode()

    def _forward(self) -> None:
        if self.headers.get("Authorization") != f"Basic {self.token}":
            status = 401 if not self.headers.get("Authorization") or "Basic" in self.headers.get("Authorization", "") else 403
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error":"unauthorized"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        req = urllib.request.Request(self.upstream + self.path, data=data, method=self.command)
        for key in ("Content-Type", "Accept"):
            if self.headers.get(key):
                req.add_header(key, self.headers[key])
        try:
            with urllib.request.urlopen(req) as resp:
                status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        self.send_response(status)
        for key in ("Content-Type", "X-Elastic-Product"):
            if headers.get(key):
                self.send_header(key, headers[key])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_proxy(engine: Engine) -> Iterator[str]:
    handler = type("Proxy", (_AuthProxy,), {"upstream": engine.settings.url.rstrip("/")})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_basic_auth_right_and_wrong(engine: Engine, auth_proxy: str) -> None:
    ok = connect(Settings(url=auth_proxy, username="auditor", password="s3cret", timeout=20))
    assert ok.flavor == engine.flavor and ok.info.version == engine.info.version
    assert ok.request("GET", "/_cluster/health")["status"] in ("green", "yellow")
    with pytest.raises(EngineError, match="authentication failed \\(HTTP 401\\)") as exc:
        connect(Settings(url=auth_proxy, username="auditor", password="wrong", timeout=20))
    assert "wrong" not in str(exc.value) and "s3cret" not in str(exc.value)


def _breaker(engine: Engine, limit: str | None) -> None:
    engine.request("PUT", "/_cluster/settings", {"transient": {"indices.breaker.request.limit": limit}})


def test_a_read_waits_out_a_tripped_circuit_breaker(engine: Engine, unique_name: str) -> None:
    """A real tripped request breaker answers 429; a search waits it out (detect keeps running through a
    busy spell) and, without a retry budget, fails with the engine's own reason."""
    from kaudit_elk.cluster.engine import EngineRequestError

    engine.request("PUT", f"/{unique_name}/_doc/1", {"user": "alice"}, params={"refresh": "true"})
    agg = {"size": 0, "aggs": {"u": {"terms": {"field": "user.keyword"}}}}
    try:
        _breaker(engine, "1b")
        with pytest.raises(EngineRequestError) as err:
            engine.search(f"/{unique_name}/_search", agg, retry_for=0)
        assert err.value.status == 429 and "circuit_breaking_exception" in str(err.value)
        before = engine.busy_retries
        timer = threading.Timer(1.5, _breaker, (engine, None))
        timer.start()
        body = engine.search(f"/{unique_name}/_search", agg)
        timer.join()
        assert [b["key"] for b in body["aggregations"]["u"]["buckets"]] == ["alice"]
        assert engine.busy_retries > before
    finally:
        _breaker(engine, None)
        engine.request("DELETE", f"/{unique_name}", ignore=(404,))
