"""Drive the real kube-apiserver started by scripts/kube: kubectl as each identity, and raw HTTPS.

Everything here really happens on the control plane: objects are created in etcd, requests are
authorised by RBAC, and the apiserver writes the audit events itself.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Kube:
    """The control plane as scripts/kube describes it (``scripts/kube env``)."""

    url: str
    ca: str
    home: Path
    tokens: dict[str, str]  # identity name -> bearer token (static tokens file)

    @classmethod
    def from_env(cls) -> "Kube | None":
        url = os.environ.get("KAUDIT_KUBE_URL")
        if not url:
            return None
        tokens: dict[str, str] = {}
        for line in Path(os.environ["KAUDIT_KUBE_TOKENS"]).read_text().splitlines():
            token, user = line.split(",")[:2]
            tokens[user] = token
        return cls(url, os.environ["KAUDIT_KUBE_CA"], Path(os.environ["KAUDIT_KUBE_HOME"]), tokens)

    @property
    def audit_log(self) -> Path:
        return Path(os.environ.get("KAUDIT_KUBE_AUDIT_LOG", self.home / "audit" / "audit.log"))

    def token(self, user: str) -> str:
        return self.tokens[user]

    def kubectl(self, user: str | None, *args: str, stdin: str | None = None, check: bool = True,
                token: str | None = None) -> subprocess.CompletedProcess:
        """Run kubectl as a static identity (or with a given bearer token); returns the finished process."""
        cmd = ["kubectl", "--server", self.url, "--certificate-authority", self.ca, "--request-timeout", "20s",
               "--token", token if token is not None else self.token(user or "kaudit-admin"), *args]
        env = dict(os.environ, KUBECONFIG="/dev/null", HOME=str(self.home / "kubectl-home"))
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply(self, user: str, manifest: dict[str, Any] | list[dict[str, Any]]) -> None:
        items = manifest if isinstance(manifest, list) else [manifest]
        text = "\n---\n".join(json.dumps(m) for m in items)
        self.kubectl(user, "apply", "-f", "-", stdin=text)

    def http(self, method: str, path: str, body: Any = None, token: str | None = None,
             user_agent: str = "kaudit-e2e", content_type: str = "application/json") -> tuple[int, Any]:
        """One raw HTTPS request (anonymous when no token); returns (status, parsed body or text)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"User-Agent": user_agent, "Content-Type": content_type,
                                              **({"Authorization": f"Bearer {token}"} if token else {}),})
        ctx = ssl.create_default_context(cafile=self.ca)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=20) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")
