"""Test infrastructure for serve: a throwaway PKI (openssl), the real webhook client, counting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
    engine.request("POST", f"/{stream}/_refresh", ignore=(404, 503))
    counts: Counter = Counter()
    after = None
    while True:
        comp: dict = {"size": 5000, "sources": [{"id": {"terms": {"field": "kubernetes.audit.auditID"}}},
                                                 {"stage": {"terms": {"field": "kubernetes.audit.stage"}}}]}
        if after:
            comp["after"] = after
        body = engine.request("POST", f"/{stream}/_search", {
            "size": 0, "query": {"prefix": {"kubernetes.audit.auditID": prefix}},
            "aggs": {"k": {"composite": comp}}}, ignore=(404, 503))
        if not body:
            return counts
        agg = body["aggregations"]["k"]
        for b in agg["buckets"]:
            counts[(b["key"]["id"], b["key"]["stage"])] += b["doc_count"]
        if not agg["buckets"] or "after_key" not in agg:
            return counts
        after = agg["after_key"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SecuredElasticsearch:
    """A real Elasticsearch with security on (file realm), run from a test engine's install with
    its own config directory (ES_PATH_CONF) and data; users can lose and regain their role."""

    url: str
    home: Path
    conf: Path
    pid: int
    admin: tuple[str, str]
    writer: tuple[str, str]
    run_user: str

    def set_writer_role(self, role: str) -> None:
        """Rewrite users_roles (the file realm reloads it within about 5 s)."""
        lines = [f"superuser:{self.admin[0]}"] + ([f"{role}:{self.writer[0]}"] if role else [])
        tmp = self.conf / "users_roles.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.chmod(tmp, 0o660)
        if os.getuid() == 0:
            shutil.chown(tmp, user=self.run_user)
        os.replace(tmp, self.conf / "users_roles")

    def stop(self) -> None:
        import signal
        import time

        try:
            os.kill(self.pid, signal.SIGTERM)
            for _ in range(60):
                os.kill(self.pid, 0)
                time.sleep(0.5)
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.home, ignore_errors=True)


WRITER_ROLES = """kaudit_writer:
  cluster: ["monitor"]
  indices:
    - names: ["logs-kubernetes.audit_logs-*"]
      privileges: ["create_doc", "create_index", "auto_configure", "view_index_metadata", "read", "monitor"]
"""


def start_secured_elasticsearch(es_url: str, version: str = "8.19.7") -> SecuredElasticsearch:
    """Start it beside the test Elasticsearch at ``es_url`` (same install, another config and ports)."""
    import time
    import urllib.request

    engines_home = Path(os.environ.get("KAUDIT_ENGINES_HOME", "/var/tmp/kaudit-engines"))
    port = es_url.rstrip("/").rsplit(":", 1)[1]
    install = engines_home / f"elasticsearch-{version}-{port}"
    if not (install / "bin" / "elasticsearch").exists():
        pytest.skip(f"no Elasticsearch install at {install}")
    http_port, transport_port = free_port(), free_port()
    home = engines_home / f"serve-secured-es-{http_port}"
    conf, data = home / "config", home / "data"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(install / "config", conf)
    (conf / "elasticsearch.keystore").unlink(missing_ok=True)
    for name in ("users", "users_roles"):
        (conf / name).write_text("")
    (conf / "elasticsearch.yml").write_text(
        f"cluster.name: kaudit-serve-secured\nnode.name: secured\nnetwork.host: 127.0.0.1\n"
        f"http.port: {http_port}\ntransport.port: {transport_port}\ndiscovery.type: single-node\n"
        f"path.data: {data}\npath.logs: {home / 'logs'}\nxpack.security.enabled: true\n"
        "xpack.security.http.ssl.enabled: false\nxpack.security.transport.ssl.enabled: false\n"
        "resource.reload.interval.high: 1s\ncluster.routing.allocation.disk.threshold_enabled: false\n")
    (conf / "roles.yml").write_text(WRITER_ROLES)
    run_user = os.environ.get("KAUDIT_ENGINES_USER", "kaudit")
    env = dict(os.environ, ES_PATH_CONF=str(conf), ES_JAVA_OPTS="-Xms256m -Xmx256m")
    java = next((j for j in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64")
                 if Path(j, "bin", "java").exists()), None)
    if java:
        env["ES_JAVA_HOME"] = java
    admin, writer = ("kaudit-admin", "admin-" + os.urandom(6).hex()), ("kaudit-shipper", "ship-" + os.urandom(6).hex())
    for user, password, role in (admin + ("superuser",), writer + ("kaudit_writer",)):
        subprocess.run([str(install / "bin" / "elasticsearch-users"), "useradd", user, "-p", password, "-r", role],
                       env=env, check=True, capture_output=True, timeout=120)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    pidfile = home / "es.pid"
    prefix: list[str] = []
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", run_user, str(home)], check=True)
        prefix = ["runuser", "-u", run_user, "--", "env", *[f"{k}={env[k]}" for k in ("ES_PATH_CONF", "ES_JAVA_OPTS")],
                  *([f"ES_JAVA_HOME={java}"] if java else [])]
    subprocess.run([*prefix, str(install / "bin" / "elasticsearch"), "-d", "-p", str(pidfile)], env=env, check=True,
                   capture_output=True, timeout=180)
    url = f"http://127.0.0.1:{http_port}"
    import base64

    auth = "Basic " + base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    for _ in range(180):
        try:
            req = urllib.request.Request(url + "/_cluster/health?wait_for_status=yellow&timeout=1s",
                                         headers={"Authorization": auth})
            with urllib.request.urlopen(req, timeout=5):
                break
        except OSError:
            time.sleep(1)
    else:
        raise AssertionError(f"secured Elasticsearch did not start (see {home / 'logs'})")
    return SecuredElasticsearch(url, home, conf, int(pidfile.read_text()), admin, writer, run_user)


_RUNNING: list[subprocess.Popen] = []


def _kill_leftovers() -> None:
    for proc in _RUNNING:
        if proc.poll() is None:
            proc.kill()


import atexit  # noqa: E402

atexit.register(_kill_leftovers)  # a failed test must not leave its serve running


class ServeProcess:
    """``kaudit-elk serve`` as its own process (for SIGKILL, SIGTERM and memory figures)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int | None = None) -> None:
        import sys

        self.port = port or free_port()
        self.args = [sys.executable, "-m", "kaudit_elk", "serve", "--listen", f"127.0.0.1:{self.port}", *args]
        self.env = dict(os.environ, **env)
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, ready: "Callable[[], bool]") -> "ServeProcess":
        import time

        self._fh = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._fh, stderr=self._fh)
        _RUNNING.append(self.proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if ready():
                return self
            time.sleep(0.1)
        raise AssertionError(f"serve did not come up: {self.log.read_text()[-2000:]}")

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(120)
        self._fh.close()
        return code

    def peak_rss_mib(self) -> float:
        """The process's peak resident set (VmHWM)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")
