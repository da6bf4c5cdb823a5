"""Test infrastructure for serve: a throwaway PKI (openssl), the real webhook client, counting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from kaudit_elk.cluster.engine import Engine

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "tests" / "webhook-client"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # CN kube-apiserver, signed by ca
    client_key: Path
    rogue_cert: Path  # CN kube-apiserver, signed by another CA
    rogue_key: Path
    other_cert: Path  # CN some-kubelet, signed by ca
    other_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and client certificates (seconds)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make test certificates")
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "2", "-subj", f"/CN=kaudit test {ca}", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")

    def issue(name: str, cn: str, ca: str, ext: str) -> None:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext, cwd=d)

    issue("server", "localhost", "ca", "server.ext")
    issue("client", "kube-apiserver", "ca", "client.ext")
    issue("rogue", "kube-apiserver", "rogue-ca", "client.ext")
    issue("other", "some-kubelet", "ca", "client.ext")
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
               d / "rogue.crt", d / "rogue.key", d / "other.crt", d / "other.key")


def webhook_client() -> str:
    """Path of the built webhook client (tests/webhook-client, k8s.io/apiserver's own backend)."""
    if not shutil.which("go") and not os.environ.get("KAUDIT_WEBHOOK_CLIENT"):
        message = "Go is needed to build the webhook client (tests/webhook-client)"
        if os.environ.get("KAUDIT_REQUIRE_ENGINES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    if os.environ.get("KAUDIT_WEBHOOK_CLIENT"):
        return os.environ["KAUDIT_WEBHOOK_CLIENT"]
    out = subprocess.run([str(CLIENT_DIR / "build.sh")], check=True, capture_output=True, text=True, timeout=1200)
    return out.stdout.strip().splitlines()[-1]


def kubeconfig(path: Path, server: str, ca: Path | None, cert: Path | None = None, key: Path | None = None,
               token: str | None = None) -> Path:
    """The webhook kubeconfig an apiserver gets with --audit-webhook-config-file."""
    user: dict = {}
    if cert:
        user["client-certificate"] = str(cert)
        user["client-key"] = str(key)
    if token:
        user["token"] = token
    cluster: dict = {"server": server}
    if ca:
        cluster["certificate-authority"] = str(ca)
    config = {"apiVersion": "v1", "kind": "Config", "preferences": {},
              "clusters": [{"name": "kaudit", "cluster": cluster}],
              "users": [{"name": "apiserver", "user": user}],
              "contexts": [{"name": "webhook", "context": {"cluster": "kaudit", "user": "apiserver"}}],
              "current-context": "webhook"}
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def run_client(kubeconfig_path: Path, events: int, prefix: str, tmp: Path, *extra: str,
               timeout: float = 600) -> tuple[dict, set[tuple[str, str]], int]:
    """Send ``events`` through the webhook backend; returns (summary, acknowledged keys, exit code)."""
    acked = tmp / f"acked-{prefix}.txt"
    proc = subprocess.run([webhook_client(), "-kubeconfig", str(kubeconfig_path), "-events", str(events),
                           "-id-prefix", prefix, "-acked", str(acked), "-batch-max-wait", "200ms",
                           "-initial-backoff", "200ms", *extra],
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"webhook client printed no summary: {proc.stderr[-2000:]}"
    keys = {tuple(line.split(" ", 1)) for line in acked.read_text().splitlines()} if acked.exists() else set()
    return json.loads(lines[-1]), keys, proc.returncode  # type: ignore[return-value]


def indexed_keys(engine: Engine, stream: str, prefix: str) -> Counter:
    """How many documents each (auditID, stage) has in the stream, for auditIDs starting with prefix."""
    engine.request("POST", f"/{stream}/_refresh", ignore=(404,))
    counts: Counter = Counter()
    after = None
    while True:
        comp: dict = {"size": 5000, "sources": [{"id": {"terms": {"field": "kubernetes.audit.auditID"}}},
                                                 {"stage": {"terms": {"field": "kubernetes.audit.stage"}}}]}
        if after:
            comp["after"] = after
        body = engine.request("POST", f"/{stream}/_search", {
            "size": 0, "query": {"prefix": {"kubernetes.audit.auditID": prefix}},
            "aggs": {"k": {"composite": comp}}}, ignore=(404,))
        if not body:
            return counts
        agg = body["aggregations"]["k"]
        for b in agg["buckets"]:
            counts[(b["key"]["id"], b["key"]["stage"])] += b["doc_count"]
        if not agg["buckets"] or "after_key" not in agg:
            return counts
        after = agg["after_key"]
