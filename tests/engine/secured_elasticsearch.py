"""A secured Elasticsearch 8.19.7 for tests (test infrastructure, not part of kaudit-elk).

The integ-test zip already downloaded by scripts/engines (its shared download cache) carries
x-pack-security: this unpacks it into its own directory keyed by port, turns security on with the
file realm (users made with the zip's own ``bin/elasticsearch-users``, roles in ``roles.yml``),
starts it as the unprivileged engines user on 127.0.0.1 and stops it afterwards. HTTP stays plain:
these tests are about who may write, not TLS. The file realm reloads its files every second, so a
test can revoke a user while a run is under way, as an operator would.

Port: ``KAUDIT_SECURED_ES_PORT``, default the tested Elasticsearch 8.19.7 port + 4 (transport +100).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

VERSION = "8.19.7"
PASSWORD = "kaudit-test-pw"  # test users only; never a real secret
ROLES = """
kaudit_writer:
  cluster: [monitor]
  indices:
    - names: ["logs-kubernetes.audit_logs-*"]
      privileges: [create_doc, auto_configure, view_index_metadata, read]
    - names: ["kaudit-state-*"]
      privileges: [read]
    - names: ["kaudit-integrity-*"]
      privileges: [create_doc, create_index]
kaudit_elsewhere:
  cluster: [monitor]
  indices:
    - names: ["logs-kubernetes.audit_logs-*"]
      privileges: [read, view_index_metadata]
    - names: ["elsewhere-*"]
      privileges: [create_doc]
kaudit_reader:
  cluster: [monitor]
  indices:
    - names: ["logs-kubernetes.audit_logs-*", "kaudit-state-*", "kaudit-alerts-*"]
      privileges: [read, view_index_metadata]
"""
USERS = {"admin": "superuser", "writer": "kaudit_writer", "reader": "kaudit_reader", "revoked": "kaudit_writer",
         "stranger": "kaudit_elsewhere"}


@dataclass
class SecuredElasticsearch:
    url: str
    home: Path
    pidfile: Path

    def auth(self, user: str) -> dict[str, str]:
        return {"username": user, "password": PASSWORD}

    def status(self, user: str, path: str = "/_security/_authenticate") -> int:
        token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def remove_user(self, user: str) -> None:
        """Revoke ``user`` (edit the file realm as userdel does) and wait until the engine says 401."""
        users = self.home / "config" / "users"
        users.write_text("".join(line + "\n" for line in users.read_text().splitlines()
                                 if not line.startswith(f"{user}:")))
        self._wait(lambda: self.status(user) == 401, f"{user} still authenticates")

    def restore_user(self, user: str, line: str) -> None:
        users = self.home / "config" / "users"
        users.write_text(users.read_text() + line)
        self._wait(lambda: self.status(user) == 200, f"{user} does not authenticate")

    def user_line(self, user: str) -> str:
        return next(line + "\n" for line in (self.home / "config" / "users").read_text().splitlines()
                    if line.startswith(f"{user}:"))

    @staticmethod
    def _wait(ready, what: str, seconds: int = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.25)
        raise RuntimeError(f"secured Elasticsearch: {what} after {seconds}s")

    def stop(self) -> None:
        if self.pidfile.is_file() and self.pidfile.read_text().strip():
            pid = int(self.pidfile.read_text())
            try:
                os.kill(pid, 15)
                for _ in range(120):
                    os.kill(pid, 0)
                    time.sleep(0.5)
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def _java_home() -> str:
    for j in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64", "/usr/lib/jvm/temurin-25-jdk-amd64"):
        if os.access(f"{j}/bin/java", os.X_OK):
            return j
    raise RuntimeError("no JDK under /usr/lib/jvm")


def _as_user(cmd: list[str], env: dict[str, str]) -> list[str]:
    if os.getuid() != 0:
        return ["env", *(f"{k}={v}" for k, v in env.items()), *cmd]
    user = os.environ.get("KAUDIT_ENGINES_USER", "kaudit")
    return ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()), *cmd]


def start(port: int) -> SecuredElasticsearch:
    """Install (once per port), configure and start the secured engine; wait until it is green."""
    if _answers(port):
        raise RuntimeError(f"port {port} is already in use (KAUDIT_SECURED_ES_PORT picks another)")
    engines_home = Path(os.environ.get("KAUDIT_ENGINES_HOME", "/var/tmp/kaudit-engines"))
    archive = engines_home / "downloads" / f"elasticsearch-{VERSION}.zip"
    if not archive.is_file():
        raise RuntimeError(f"{archive} not found: run scripts/engines up elasticsearch first (it downloads it)")
    home = engines_home / f"elasticsearch-{VERSION}-secured-{port}"
    with open(engines_home / "downloads" / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".installed").is_file():
            shutil.rmtree(home, ignore_errors=True)
            tmp = Path(f"{home}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
            (tmp / f"elasticsearch-{VERSION}").rename(home)
            tmp.rmdir()
            for path in (home / "bin").iterdir():
                path.chmod(0o755)
            for path in (home / "jdk").rglob("*") if (home / "jdk").is_dir() else []:
                if path.parent.name == "bin":
                    path.chmod(0o755)
            (home / ".installed").touch()
    java = _java_home()
    env = {"ES_JAVA_HOME": java, "JAVA_HOME": java, "ES_JAVA_OPTS": "-Xms384m -Xmx384m -XX:-HeapDumpOnOutOfMemoryError"}
    shutil.rmtree(home / "data", ignore_errors=True)
    (home / "data").mkdir()
    (home / "logs").mkdir(exist_ok=True)
    (home / "config" / "elasticsearch.yml").write_text(f"""cluster.name: kaudit-secured-elasticsearch
node.name: kaudit-es-secured
network.host: 127.0.0.1
http.port: {port}
transport.port: {port + 100}
discovery.type: single-node
path.data: {home}/data
path.logs: {home}/logs
cluster.routing.allocation.disk.threshold_enabled: false
xpack.security.enabled: true
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
xpack.security.authc.realms.file.file1.order: 0
resource.reload.interval.high: 1s
""")
    (home / "config" / "roles.yml").write_text(ROLES)
    (home / "config" / "users").write_text("")
    (home / "config" / "users_roles").write_text("")
    if os.getuid() == 0:
        user = os.environ.get("KAUDIT_ENGINES_USER", "kaudit")
        subprocess.run(["chown", "-R", user, str(home)], check=True)
    for name, role in USERS.items():
        subprocess.run(_as_user([str(home / "bin" / "elasticsearch-users"), "useradd", name, "-p", PASSWORD,
                                 "-r", role], env), check=True, capture_output=True, timeout=120)
    pidfile = home / "es.pid"
    pidfile.unlink(missing_ok=True)
    pidfile.touch()
    if os.getuid() == 0:
        subprocess.run(["chown", os.environ.get("KAUDIT_ENGINES_USER", "kaudit"), str(pidfile)], check=True)
    subprocess.run(_as_user([str(home / "bin" / "elasticsearch"), "-d", "-p", str(pidfile)], env), check=True,
                   capture_output=True, timeout=180)
    engine = SecuredElasticsearch(f"http://127.0.0.1:{port}", home, pidfile)
    try:
        engine._wait(lambda: engine.status("admin", "/_cluster/health?wait_for_status=yellow&timeout=1s") == 200,
                     "not healthy", 180)
    except (RuntimeError, OSError):
        engine.stop()
        raise
    return engine


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def engine_urls() -> dict[str, str]:
    """The engines under test (``KAUDIT_TEST_ENGINES``, as in conftest.py)."""
    spec = os.environ.get("KAUDIT_TEST_ENGINES", "opensearch=http://127.0.0.1:9200,elasticsearch=http://127.0.0.1:9201")
    pairs = (item.split("=", 1) for item in spec.split(",") if item.strip())
    return {name.strip(): url.strip() for name, url in pairs}


def default_port() -> int:
    if os.environ.get("KAUDIT_SECURED_ES_PORT"):
        return int(os.environ["KAUDIT_SECURED_ES_PORT"])
    url = engine_urls().get("elasticsearch", "http://127.0.0.1:9201")
    return int(url.rstrip("/").rsplit(":", 1)[1]) + 4


if __name__ == "__main__":  # manual use: python tests/engine/secured_elasticsearch.py PORT
    import sys

    es = start(int(sys.argv[1]))
    print(json.dumps({"url": es.url, "home": str(es.home)}))
