"""The generated audit policy on a real kube-apiserver (scripts/kube): accepted with --audit-policy-file,
and every request performed against it is recorded at exactly the level ``policy check`` predicts.

Runs when the kube-apiserver binary is cached (scripts/kube build; about 7 minutes once) or
KAUDIT_REQUIRE_KUBE=1 (then a missing binary fails instead of skipping)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.trail.generate import generate
from kaudit_elk.trail.needs import pack_needs
from kaudit_elk.trail.policy import Attributes, UserInfo, evaluate, load_policy

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "scripts" / "kube"
VERSION = os.environ.get("KAUDIT_KUBE_VERSION", "1.34.4")
CACHE = Path(os.environ.get("KAUDIT_KUBE_CACHE", "/var/tmp/kaudit-kube"))
PORT = int(os.environ.get("KAUDIT_TRAIL_KUBE_PORT", "10810"))


def _attrs(ev: dict) -> Attributes:
    """What the apiserver's policy checker saw for this event's request."""
    user = ev.get("user") or {}
    obj = ev.get("objectRef")
    info = UserInfo(user.get("username", ""), tuple(user.get("groups") or ()))
    if not obj:
        return Attributes(info, ev["verb"], False, path=urlsplit(ev["requestURI"]).path)
    sub = obj.get("subresource", "")
    # the request's name is in the URL; a create of the resource itself carries it only in the body
    name = "" if ev["verb"] == "create" and not sub else obj.get("name", "")
    return Attributes(info, ev["verb"], True, obj.get("namespace", ""), obj.get("apiGroup", ""),
                      obj.get("resource", ""), sub, name, urlsplit(ev["requestURI"]).path)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory):
    if not (CACHE / "bin" / f"kube-apiserver-v{VERSION}").exists() and os.environ.get("KAUDIT_REQUIRE_KUBE") != "1":
        pytest.skip("no cached kube-apiserver (scripts/kube build) and KAUDIT_REQUIRE_KUBE is not 1")
    home = tmp_path_factory.mktemp("kube")
    text = generate(pack_needs(load_rules([default_pack_dir()])), "standard", "test")
    policy_file = home / "generated-policy.yaml"
    policy_file.write_text(text)
    env = dict(os.environ, KAUDIT_KUBE_PORT=str(PORT), KAUDIT_ETCD_PORT=str(PORT + 2), KAUDIT_KUBE_HOME=str(home / "run"),
               KAUDIT_KUBE_AUDIT_POLICY_FILE=str(policy_file), KAUDIT_KUBE_WEBHOOK_URL=f"https://127.0.0.1:{PORT + 9}/",
               KAUDIT_KUBE_AUDIT_MAXSIZE="50")
    up = subprocess.run([str(KUBE), "up"], env=env, capture_output=True, text=True, timeout=900)
    try:
        assert up.returncode == 0, f"the apiserver refused the generated policy or did not start:\n{up.stderr[-3000:]}"
        values = dict(line.split("=", 1) for line in subprocess.run(
            [str(KUBE), "env"], env=env, capture_output=True, text=True, check=True).stdout.split() if "=" in line)
        yield values, load_policy(text, str(policy_file))
    finally:
        subprocess.run([str(KUBE), "down"], env=env, capture_output=True, timeout=120)


def _kubectl(env: dict, who: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", env[f"KAUDIT_KUBE_KUBECONFIG_{who.upper()}"],
                           "--request-timeout", "20s", *args], input=stdin, capture_output=True, text=True)


PRIVILEGED_POD = """apiVersion: v1
kind: Pod
metadata: {name: trail-priv, namespace: dev}
spec:
  containers: [{name: c, image: busybox, securityContext: {privileged: true}}]
"""
ROLE = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: trail-exec}
rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create]}]
"""


def test_recorded_levels_equal_the_predicted_ones(kube) -> None:
    env, policy = kube
    # techniques and everyday requests, by three identities
    _kubectl(env, "dev", "apply", "-f", "-", stdin=PRIVILEGED_POD)
    _kubectl(env, "dev", "get", "pods", "-n", "dev")
    _kubectl(env, "dev", "exec", "-n", "dev", "trail-priv", "--", "id")  # fails (no kubelet) but is audited
    _kubectl(env, "admin", "create", "secret", "generic", "trail-s", "-n", "dev", "--from-literal=password=hunter2")
    _kubectl(env, "dev", "get", "secret", "trail-s", "-n", "dev", "-o", "yaml")
    _kubectl(env, "admin", "create", "configmap", "trail-c", "-n", "dev", "--from-literal=token=abc")
    _kubectl(env, "admin", "apply", "-f", "-", stdin=ROLE)
    _kubectl(env, "admin", "create", "clusterrolebinding", "trail-b", "--clusterrole=trail-exec", "--user=dev@example.com")
    _kubectl(env, "admin", "create", "token", "deployer", "-n", "ci")
    _kubectl(env, "ci", "get", "deployments", "-n", "ci")
    _kubectl(env, "ci", "get", "secrets", "-n", "kube-system")  # forbidden
    _kubectl(env, "admin", "get", "--raw", "/version")
    _kubectl(env, "admin", "delete", "pod", "trail-priv", "-n", "dev", "--wait=false")
    time.sleep(2)
    log = Path(env["KAUDIT_KUBE_AUDIT_LOG"])
    events = [orjson.loads(line) for path in sorted(log.parent.glob(log.name + "*"))
              for line in path.read_bytes().splitlines() if line.strip()]
    assert len(events) > 50
    assert not [e for e in events if e["stage"] == "RequestReceived"]  # omitStages: [RequestReceived]
    wrong = []
    seen: dict[str, int] = {}
    for ev in events:
        predicted = evaluate(policy, _attrs(ev))
        seen[ev["level"]] = seen.get(ev["level"], 0) + 1
        if predicted.level != ev["level"] or ev["stage"] in predicted.omit_stages:
            wrong.append((ev["verb"], ev.get("objectRef"), ev["requestURI"], ev["level"], predicted.level))
    assert not wrong, wrong[:10]
    assert {"Metadata", "Request", "RequestResponse"} <= set(seen)

    def level_of(verb: str, resource: str, sub: str = "", name: str | None = None) -> set[str]:
        return {e["level"] for e in events if e["verb"] == verb and (e.get("objectRef") or {}).get("resource") == resource
                and (e.get("objectRef") or {}).get("subresource", "") == sub
                and (name is None or (e.get("objectRef") or {}).get("name") == name)}

    assert level_of("create", "pods") == {"RequestResponse"}
    assert level_of("create", "pods", "exec") == {"Request"}
    assert level_of("create", "clusterroles", name="trail-exec") == {"RequestResponse"}
    assert level_of("create", "secrets") == {"Metadata"} and level_of("get", "secrets", name="trail-s") == {"Metadata"}
    assert level_of("create", "serviceaccounts", "token") == {"Metadata"}
    # no secret value anywhere in the trail
    raw = b"".join(p.read_bytes() for p in log.parent.glob(log.name + "*"))
    assert b"hunter2" not in raw and b"aHVudGVyMg" not in raw and b'"token":"abc"' not in raw
