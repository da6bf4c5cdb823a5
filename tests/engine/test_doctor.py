"""doctor on real engines: green on a healthy deployment, and each injected fault named with its fix."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

import pytest

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.retention import apply_retention
from kaudit_elk.cluster.templates import BootstrapOptions, Names
from kaudit_elk.detect.scheduled import DetectOptions, run_detect
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.trail.archive import archive, backing_indices, ensure_repository
from kaudit_elk.trail.doctor import DoctorOptions, doctor

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"
SINCE = "2000-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def pack():
    return load_rules([default_pack_dir()])


def _healthy(engine: Engine, tmp_path: Path, pack) -> tuple[str, DoctorOptions]:
    namespace = f"doc{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    files = sorted(str(p) for p in INPUTS.iterdir() if p.is_file())
    ingest(engine, files[:10], IngestOptions(namespace=namespace, refresh=True, dead_letter=None))
    apply_retention(engine, namespace, retention_days=36500, rollover_age="0s")  # roll over, block writes
    ingest(engine, files[10:20], IngestOptions(namespace=namespace, refresh=True, dead_letter=None))
    repo = f"kaudit-test-{namespace}"
    ensure_repository(engine, repo, repo)
    archive(engine, namespace, repo)
    run_detect(engine, pack, DetectOptions(namespace=namespace), [])
    return namespace, DoctorOptions(namespace=namespace, verify_window=SINCE, repository=repo,
                                    dead_letter=str(tmp_path / "none.ndjson"))


def _by_name(report) -> dict:
    return {c.name: c for c in report.checks}


def test_healthy_deployment_is_green_and_each_fault_is_named(engine: Engine, tmp_path: Path, pack) -> None:
    namespace, options = _healthy(engine, tmp_path, pack)
    report = doctor(engine, options)
    assert not report.failed, [(c.name, c.detail) for c in report.failed]
    assert {c.name for c in report.checks} >= {"content installed", "lifecycle", "mapping", "data fresh", "dead letters",
                                                "detect runs", "alerts delivered", "integrity chain", "archive recent"}
    assert all(c.status == "ok" for c in report.checks), [(c.name, c.status, c.detail) for c in report.checks]

    # stale data and a detect that stopped completing runs: two hours pass with nothing arriving
    later = doctor(engine, dataclasses.replace(options, now=time.time() + 7200))
    checks = _by_name(later)
    assert checks["data fresh"].status == "fail" and "no new events from" in checks["data fresh"].detail
    assert "webhook" in checks["data fresh"].fix
    assert checks["detect runs"].status == "fail" and "failing or not scheduled" in checks["detect runs"].detail
    assert "kaudit-elk detect" in checks["detect runs"].fix

    # broken chain: a stored document deleted behind kaudit-elk's back
    names = Names(namespace)
    write_index = backing_indices(engine, namespace)[-1]  # the rolled-over one is write-blocked
    hit = engine.request("POST", f"/{write_index}/_search", {"size": 1})["hits"]["hits"][0]
    engine.request("DELETE", f"/{hit['_index']}/_doc/{hit['_id']}", params={"refresh": "true"})
    checks = _by_name(doctor(engine, options))
    assert checks["integrity chain"].status == "fail" and "1 deleted" in checks["integrity chain"].detail
    assert "kaudit-elk verify" in checks["integrity chain"].fix

    # an alert stored but never delivered
    engine.request("PUT", f"/{names.alerts_index}/_doc/stuck-alert", {
        "event": {"kind": "alert", "created": "2020-01-01T00:00:00Z"}, "kaudit": {"alert": {"notified": False}}},
        params={"refresh": "true"})
    checks = _by_name(doctor(engine, options))
    assert checks["alerts delivered"].status == "fail" and "not delivered" in checks["alerts delivered"].detail

    # missing template (the audit stream's own cannot be deleted while the stream uses it; the alerts' can)
    engine.request("DELETE", f"/_index_template/{names.alerts_template}")
    checks = _by_name(doctor(engine, options))
    assert checks["content installed"].status == "fail"
    assert f"index_template {names.alerts_template}" in checks["content installed"].detail
    assert checks["content installed"].fix == f"kaudit-elk bootstrap --namespace {namespace}"
