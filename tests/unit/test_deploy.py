"""deploy/: the Kubernetes manifests, the apiserver's webhook kubeconfig and flags fit together."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all() -> dict[tuple[str, str], dict]:
    out = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in _docs(path):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def _args(container: dict) -> dict[str, str]:
    found = {}
    for arg in container.get("args", []):
        if arg.startswith("--"):
            key, _, value = arg.partition("=")
            found[key] = value
    return found


def _command_options(name: str) -> set[str]:
    import typer

    from kaudit_elk.cli.main import _register, app

    _register()
    command = typer.main.get_command(app)
    cmd = command.commands[name]  # type: ignore[attr-defined]
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def test_every_manifest_parses_with_the_required_fields() -> None:
    paths = [*DEPLOY.glob("kubernetes/*.yaml"), *DEPLOY.glob("static-pod/*.yaml"), *DEPLOY.glob("apiserver/*.yaml")]
    assert len(paths) >= 8
    for path in paths:
        for doc in _docs(path):
            assert doc.get("apiVersion") and doc.get("kind"), path
            if doc["kind"] != "Config":
                assert doc["metadata"].get("name"), path
    kinds = {kind for kind, _ in _all()}
    assert {"Namespace", "StatefulSet", "Service", "Secret", "NetworkPolicy", "CronJob"} <= kinds


def test_serve_statefulset_two_replicas_each_with_its_own_spool_volume() -> None:
    objs = _all()
    sts = objs[("StatefulSet", "kaudit-serve")]
    spec = sts["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    serve = next(c for c in pod["containers"] if c["name"] == "serve")
    args = _args(serve)
    assert serve["args"][0] == "serve" and set(args) <= _command_options("serve")
    claim = spec["volumeClaimTemplates"][0]["metadata"]["name"]
    mount = next(m for m in serve["volumeMounts"] if m["name"] == claim)["mountPath"]
    assert args["--spool-dir"].startswith(mount + "/") and args["--dead-letter"].startswith(mount + "/")
    assert "ReadWriteOnce" in spec["volumeClaimTemplates"][0]["spec"]["accessModes"]
    assert pod["terminationGracePeriodSeconds"] > 25  # serve's drain on SIGTERM takes up to 25 s
    assert pod["securityContext"]["runAsNonRoot"] and serve["securityContext"]["readOnlyRootFilesystem"]
    # TLS, mTLS and a token: each file comes from a mounted Secret with that key
    mounts = {m["mountPath"]: m["name"] for m in serve["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for flag in ("--tls-cert", "--tls-key", "--client-ca", "--token-file"):
        directory, key = args[flag].rsplit("/", 1)
        secret = volumes[mounts[directory]]["secret"]["secretName"]
        assert key in objs[("Secret", secret)]["data"], (flag, secret)
    for env in serve["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in objs[("Secret", ref["name"])]["data"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}" in dockerfile


def test_service_and_network_policy_match_the_serve_port() -> None:
    objs = _all()
    sts = objs[("StatefulSet", "kaudit-serve")]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    serve = sts["spec"]["template"]["spec"]["containers"][0]
    listen_port = int(_args(serve)["--listen"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in serve["ports"]}
    svc = objs[("Service", sts["spec"]["serviceName"])]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (svc_port,) = svc["spec"]["ports"]
    assert ports[svc_port["targetPort"]] == listen_port
    netpol = objs[("NetworkPolicy", "kaudit-serve")]
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert {p["port"] for rule in netpol["spec"]["ingress"] for p in rule["ports"]} == {listen_port}
    assert set(netpol["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_webhook_kubeconfig_points_at_the_service() -> None:
    objs = _all()
    svc = objs[("Service", "kaudit-serve")]
    cfg = yaml.safe_load((DEPLOY / "apiserver" / "audit-webhook-kubeconfig.yaml").read_text())
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    url = urlsplit(cluster["server"])
    assert url.scheme == "https" and url.hostname == svc["spec"]["clusterIP"]
    assert url.port == svc["spec"]["ports"][0]["port"]
    assert cluster["certificate-authority"] and user["client-certificate"] and user["client-key"]
    assert user.get("tokenFile") or user.get("token")
    sts = objs[("StatefulSet", "kaudit-serve")]
    names = [v for k, v in (a.split("=", 1) for a in sts["spec"]["template"]["spec"]["containers"][0]["args"][1:])
             if k == "--client-name"]
    assert "CN=" + names[0] in (DEPLOY / "apiserver" / "audit-webhook-kubeconfig.yaml").read_text()


def test_apiserver_flags_name_the_kubeconfig_and_fit_serve_limits() -> None:
    flags = dict(line.split("=", 1) for line in (DEPLOY / "apiserver" / "kube-apiserver-flags.txt").read_text().splitlines()
                 if line.startswith("--"))
    assert Path(flags["--audit-webhook-config-file"]).name == "audit-webhook-kubeconfig.yaml"
    assert flags["--audit-webhook-mode"] == "batch"
    from kaudit_elk.ingest.serve import ServeOptions

    # the apiserver splits batches above this size; serve must take the largest one it sends
    assert int(flags["--audit-webhook-truncate-max-batch-size"]) <= ServeOptions().max_body_bytes
    assert int(flags["--audit-webhook-batch-max-size"]) == 400


def test_static_pod_serves_loopback_and_its_kubeconfig_points_there() -> None:
    (pod,) = _docs(DEPLOY / "static-pod" / "kaudit-serve.yaml")
    assert pod["kind"] == "Pod" and pod["spec"]["hostNetwork"] is True
    serve = pod["spec"]["containers"][0]
    args = _args(serve)
    assert set(args) <= _command_options("serve")
    host, port = args["--listen"].rsplit(":", 1)
    assert host == "127.0.0.1"
    cfg = yaml.safe_load((DEPLOY / "static-pod" / "audit-webhook-kubeconfig.yaml").read_text())
    url = urlsplit(cfg["clusters"][0]["cluster"]["server"])
    assert (url.scheme, url.hostname, url.port) == ("https", host, int(port))
    mounts = {m["mountPath"] for m in serve["volumeMounts"]}
    assert any(args["--spool-dir"].startswith(m + "/") for m in mounts)


def test_detect_cronjob_runs_detect_once_at_a_time() -> None:
    objs = _all()
    cron = objs[("CronJob", "kaudit-detect")]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert re.fullmatch(r"[\d*/,-]+( [\d*/,-]+){4}", cron["spec"]["schedule"])
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"][0] == "detect"
    assert set(_args(container)) <= _command_options("detect")
    netpol = objs[("NetworkPolicy", "kaudit-detect")]
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("path", sorted(p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")))
def test_namespaced_objects_live_in_the_kaudit_namespace(path: str) -> None:
    for doc in _docs(DEPLOY / "kubernetes" / path):
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "kaudit"
