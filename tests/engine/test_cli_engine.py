"""The CLI end to end on real engines: bootstrap (with dashboards), dry-run, ingest exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from kaudit_elk.cluster.engine import Engine


def kaudit(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaudit_elk", *args], capture_output=True, text=True, timeout=timeout)


class _UI(BaseHTTPRequestHandler):
    """Records saved-object imports (checks what we send; not a model of Kibana)."""

    seen: list = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        count = body.count(b'"type":')
        payload = json.dumps({"success": True, "successCount": count, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ui() -> Iterator[tuple[str, type]]:
    handler = type("UI", (_UI,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def test_bootstrap_cli_is_idempotent_and_imports_dashboards(engine: Engine, ui) -> None:
    url, handler = ui
    ns = f"cli{uuid.uuid4().hex[:8]}"
    flag = "--dashboards-url" if engine.flavor == "opensearch" else "--kibana-url"
    dry = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("create ") >= 5 and handler.seen == []
    first = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, flag, url, "-o", "json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {s["action"] for s in report["steps"]} == {"create"}
    [(path, headers, body)] = handler.seen
    assert path == "/api/saved_objects/_import?overwrite=true"
    assert headers["osd-xsrf" if engine.flavor == "opensearch" else "kbn-xsrf"] == "true"
    assert f"logs-kubernetes.audit_logs-{ns}".encode() in body
    second = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns)
    assert second.returncode == 0 and "nothing to change" in second.stderr
    assert set(line.split()[0] for line in second.stdout.splitlines()) == {"unchanged"}


def test_ingest_cli_reports_dead_letters_with_exit_code_4(engine: Engine, tmp_path: Path, corpus_dir: Path) -> None:
    ns = f"cli{uuid.uuid4().hex[:8]}"
    assert kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, "-q").returncode == 0
    good = (corpus_dir / "audit2rbac" / "demo.log").read_text().splitlines()[:3]
    path = tmp_path / "in.log"
    path.write_text("\n".join(good + ["{broken"]) + "\n")
    dead = tmp_path / "dead.ndjson"
    out = kaudit("ingest", "--url", engine.settings.url, "--namespace", ns, str(path), "--dead-letter", str(dead),
                 "--refresh", "-o", "json")
    assert out.returncode == 4, out.stderr
    stats = json.loads(out.stdout)
    assert (stats["indexed"], stats["dead_lettered"]) == (3, 1)
    assert f"{dead}" in out.stderr and json.loads(dead.read_text())["line"] == 4
    missing = kaudit("ingest", "--url", engine.settings.url, "--namespace", ns, str(tmp_path / "nope.log"))
    assert missing.returncode == 2 and "nope.log" in missing.stderr
    down = kaudit("ingest", "--url", "http://127.0.0.1:9", str(path))
    assert down.returncode == 3 and "cannot connect" in down.stderr


def test_create_roles_on_a_cluster_without_security_says_so(engine: Engine) -> None:
    """The sandbox engines run without a security API (no OpenSearch Security plugin, x-pack security off):
    --create-roles and --create-api-key stop with exit 2 saying that, not with the engine's 'no handler' 400."""
    from kaudit_elk.cluster.engine import EngineRequestError

    probe = "/_plugins/_security/api/roles" if engine.flavor == "opensearch" else "/_security/role"
    try:
        engine.request("GET", probe)
        pytest.skip("this engine has a security API")
    except EngineRequestError:
        pass
    ns = f"cli{uuid.uuid4().hex[:8]}"
    runs = [["--create-roles", "--roles-only"]]
    if engine.flavor == "elasticsearch":
        runs.append(["--create-api-key", "writer", "--roles-only"])
    for extra in runs:
        out = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, *extra)
        assert out.returncode == 2, out.stderr
        assert "this cluster has no security API" in out.stderr and "no handler found" not in out.stderr
        assert "unexpected" not in out.stderr and out.stdout == ""


def test_commands_on_a_mistyped_namespace_fail_instead_of_doing_nothing(engine: Engine) -> None:
    """retention, archive and verify on a namespace never bootstrapped (a --namespace typo) exit 2 naming it,
    instead of exit 0 with nothing rolled over or archived; a bootstrapped namespace with no events is fine."""
    typo = f"typo{uuid.uuid4().hex[:8]}"
    for args in (["retention"], ["retention", "--dry-run"], ["archive", "--dry-run"], ["archive", "verify"],
                 ["verify"]):
        out = kaudit(*args, "--url", engine.settings.url, "--namespace", typo)
        assert out.returncode == 2, (args, out.stderr)
        assert f"namespace {typo!r} was never bootstrapped" in out.stderr and out.stdout == "", (args, out.stderr)
    ns = f"cli{uuid.uuid4().hex[:8]}"
    assert kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, "-q").returncode == 0
    out = kaudit("retention", "--url", engine.settings.url, "--namespace", ns, "--dry-run")
    assert out.returncode == 0 and "would not roll over" in out.stdout, out.stderr
