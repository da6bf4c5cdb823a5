"""The benign corpus generator (bench/corpus): deterministic, valid audit Events, the components it claims."""

from __future__ import annotations

import itertools
import os
import stat
from collections import Counter

import orjson
import pytest

from bench.corpus import benign_events
from bench.corpus.__main__ import main as corpus_cli
from kaudit_elk.events.normalize import normalize

REQUIRED = ("kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user", "sourceIPs",
            "userAgent", "responseStatus", "requestReceivedTimestamp", "stageTimestamp", "annotations")


@pytest.fixture(scope="module")
def hour() -> list[dict]:
    return list(benign_events(days=2 / 24, seed=3, nodes=5, start="2026-11-17T09:00:00Z"))


def test_same_seed_same_events_other_seed_other_ids():
    a = [orjson.dumps(e) for e in itertools.islice(benign_events(days=1 / 24, seed=5, nodes=4), 3000)]
    b = [orjson.dumps(e) for e in itertools.islice(benign_events(days=1 / 24, seed=5, nodes=4), 3000)]
    c = [e["auditID"] for e in itertools.islice(benign_events(days=1 / 24, seed=6, nodes=4), 3000)]
    assert a == b
    assert not {orjson.loads(x)["auditID"] for x in a} & set(c)


def test_events_are_valid_audit_events_in_time_order(hour):
    assert len(hour) > 5000
    for ev in hour:
        missing = [k for k in REQUIRED if k not in ev]
        assert not missing, (missing, ev)
        assert ev["kind"] == "Event" and ev["apiVersion"] == "audit.k8s.io/v1"
        assert ev["stage"] in ("ResponseStarted", "ResponseComplete")
        assert ev["level"] in ("Metadata", "Request", "RequestResponse")
        if ev["level"] == "Metadata":
            assert "requestObject" not in ev and "responseObject" not in ev
        assert ev["stageTimestamp"] >= ev["requestReceivedTimestamp"]
        assert isinstance(ev["responseStatus"]["code"], int)
        assert normalize(ev) is not None
    stamps = [e["stageTimestamp"] for e in hour]
    assert stamps == sorted(stamps)


def test_streaming_requests_have_both_stages_under_one_audit_id(hour):
    stages = Counter((e["auditID"], e["stage"]) for e in hour)
    watches = {e["auditID"] for e in hour if e["verb"] == "watch" and e["stage"] == "ResponseComplete"}
    assert watches and all(stages[(a, "ResponseStarted")] == 1 for a in watches)
    assert all(n == 1 for n in stages.values())


def test_the_components_and_people_it_claims_are_there(hour):
    users = {e["user"]["username"] for e in hour}
    agents = " ".join({e["userAgent"] for e in hour})
    for sa in ("kube-system:replicaset-controller", "flux-system:kustomize-controller",
               "argocd:argocd-application-controller", "cert-manager:cert-manager", "external-secrets:external-secrets",
               "gitlab-runner:gitlab-runner", "monitoring:grafana", "kyverno:kyverno-admission-controller",
               "trivy-system:trivy-operator", "kube-system:metrics-server"):
        assert f"system:serviceaccount:{sa}" in users, sa
    assert any(u.startswith("system:node:") for u in users)
    assert any(u.endswith("@corp.example") for u in users)  # office hours
    for ua in ("kubelet/", "kube-controller-manager/", "kubectl/", "OpenAPI-Generator/", "$Format"):
        assert ua in agents, ua
    assert any("dryRun=All" in e["requestURI"] for e in hour)
    assert any((e.get("requestObject") or {}).get("metadata", {}).get("ownerReferences") for e in hour
               if e["objectRef"].get("resource") == "pods")


def test_cli_writes_0600_ndjson(tmp_path):
    out = tmp_path / "c.log"
    assert corpus_cli(["benign", "--days", "0.02", "--nodes", "3", "-o", str(out)]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    lines = out.read_bytes().splitlines()
    assert lines and all(orjson.loads(x)["kind"] == "Event" for x in lines)
