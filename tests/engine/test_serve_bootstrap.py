"""``serve`` and a namespace that was never bootstrapped (issue 9, case 3), with the real serve process.

Writing to such a namespace would create ``logs-kubernetes.audit_logs-<ns>`` with dynamic mappings
that lose events. ``serve`` refuses to start (exit 2) when it can see that at start-up; when the
engine cannot be reached at start-up, it acknowledges into its spool as always and, on reaching the
engine, ships nothing until ``bootstrap`` has run — then everything acknowledged is indexed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from serve_support import ServeProcess, free_port
from test_serve import Forwarder, count, event_list, wait_for

from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.templates import Names


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError:
        return 0, {}


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status


def _exists(engine: Engine, name: str) -> bool:
    return engine.request("GET", f"/{name}", ignore=(404,)) is not None


def test_serve_refuses_to_start_on_a_namespace_never_bootstrapped(engine: Engine, tmp_path: Path) -> None:
    ns = f"typo{uuid.uuid4().hex[:8]}"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kaudit_elk", "serve", "--url", engine.settings.url,
                             "--namespace", ns, "--listen", f"127.0.0.1:{port}", "--plain-http", "--no-auth",
                             "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dl.ndjson")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"serve kept running on a namespace that was never bootstrapped: {stderr[-2000:]}") from None
    assert proc.returncode == 2, stderr
    assert f"kaudit-elk bootstrap --namespace {ns}" in stderr
    assert "receiving audit webhooks" not in stderr, "it must refuse before listening"
    assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 0, "nothing may listen"
    assert not _exists(engine, Names(ns).stream)


def test_serve_started_while_the_engine_was_away_ships_nothing_until_bootstrap(
        engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    ns = f"late{uuid.uuid4().hex[:8]}"
    stream = Names(ns).stream
    fwd = Forwarder(int(engine.settings.url.rsplit(":", 1)[1]), up=False)  # the engine is away at start-up
    srv = ServeProcess(["--url", f"http://127.0.0.1:{fwd.port}", "--namespace", ns, "--plain-http", "--no-auth",
                        "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dl.ndjson")],
                       env={}, log=tmp_path / "serve.log")
    base = f"http://127.0.0.1:{srv.port}"
    srv.start(lambda: _get(base + "/healthz")[0] == 200)
    try:
        items, body = event_list(corpus_dir)
        assert _post(base + "/audit", body) == 200  # acknowledged into the spool
        fwd.up = True  # the engine comes back: the namespace was never bootstrapped

        def waiting() -> bool:
            status, ready = _get(base + "/readyz")
            return status == 200 and ready.get("shipping", {}).get("state") == "not_bootstrapped"

        wait_for(waiting, what="shipping to wait for bootstrap")
        status, ready = _get(base + "/readyz")
        assert f"kaudit-elk bootstrap --namespace {ns}" in ready["shipping"]["detail"]
        assert "bootstrap" in ready["note"] and ready["spool"]["batches"] == 1
        assert not _exists(engine, stream), "nothing may be written before bootstrap"
        out = subprocess.run([sys.executable, "-m", "kaudit_elk", "bootstrap", "--url", engine.settings.url,
                              "--namespace", ns, "-q"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: _exists(engine, stream) and count(engine, stream) == len(items), seconds=180,
                 what="the acknowledged batch indexed after bootstrap")
        mapping = engine.request("GET", f"/{stream}/_mapping")
        assert all(str(m["mappings"].get("dynamic")).lower() == "false" for m in mapping.values()), \
            "the stream must be the one bootstrap made (kaudit-elk's mappings)"
    finally:
        code = srv.signal(signal.SIGTERM)
        fwd.cut()
    assert code == 0, (tmp_path / "serve.log").read_text()[-2000:]
    assert "not bootstrapped" in (tmp_path / "serve.log").read_text()
