"""No audit event is lost because its body does not fit the typed body mapping (fieldspec.BODY_SHAPES).

On the real engines: (1) each bad-shape case of tests/body_shapes.py is refused by the engines it names
when the typed body is left whole (what Elastic's integration does with it), and indexed otherwise;
(2) ``kaudit-elk ingest`` indexes every case (none dead-lettered), the typed body without what did not
fit, ``kaudit.body.untyped`` naming it, the whole body searchable in the ``kaudit.body.*`` copy;
(3) the server-side pipeline (``_simulate``) gives the Python normalizer's document for every case;
(4) ``scan`` (raw events) and ``detect`` (the engine) alert alike on attacks that carry a decoy field of
a bad shape.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from kaudit_elk.cluster.templates import Names
from kaudit_elk.detect.engine_search import engine_alerts
from kaudit_elk.events.normalize import normalize
from kaudit_elk.events.pipeline import build_pipeline
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.rules.runner import Runner
import random

from tests.body_shapes import event, events, mutants

pytestmark = pytest.mark.engine

#: A value of the removed subtree, searched in the copy (flattened / flat_object: every leaf a keyword).
IN_THE_COPY = {
    "cr-spec-string": ("kaudit.body.request.spec", "opaque-blob"),
    "cr-rules-string": ("kaudit.body.request.rules", "allow-all"),
    "cr-roleref-string": ("kaudit.body.request.roleRef", "cluster-admin"),
    "cr-spec-type-object": ("kaudit.body.request.spec.type.name", "internal"),
    "response-hostnetwork-object": ("kaudit.body.response.spec.hostNetwork.enabled", "true"),
    "run-as-user-out-of-integer-range": ("kaudit.body.request.spec.securityContext.runAsUser", "3000000000"),
    "privileged-string-in-second-container": ("kaudit.body.request.spec.containers.securityContext.privileged", "yes"),
}


def kaudit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaudit_elk", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def namespace(engine):
    from kaudit_elk.cluster.bootstrap import apply, build_plan
    from kaudit_elk.cluster.templates import BootstrapOptions

    name = f"shapes{uuid.uuid4().hex[:10]}"
    options = BootstrapOptions(namespace=name)
    apply(engine, build_plan(engine, options), options)
    yield name
    engine.request("DELETE", f"/_data_stream/{Names(name).stream}", ignore=(400, 404, 405))


def _whole_typed_body(doc: dict) -> dict:
    """The document as it would be without the check: the typed bodies are the whole bodies."""
    doc = orjson.loads(orjson.dumps(doc))
    body = doc["kaudit"]["body"]
    body.pop("untyped", None)
    for raw, copy in (("requestObject", "request"), ("responseObject", "response")):
        if copy in body:
            doc["kubernetes"]["audit"][raw] = body[copy]
    return doc


def _bulk(engine, index: str, docs: list[dict]) -> list[dict]:
    lines = b"".join(orjson.dumps({"create": {}}) + b"\n" + orjson.dumps(d) + b"\n" for d in docs)
    result = engine.request("POST", f"/{index}/_bulk", body=lines, params={"pipeline": "_none", "refresh": "true"},
                            ndjson=True)
    return [item["create"] for item in result["items"]]


def test_the_engines_refuse_the_whole_body_where_the_cases_say(engine, namespace):
    cases = events()
    docs = [_whole_typed_body(normalize(ev)) for _, ev, _, _ in cases]
    results = _bulk(engine, Names(namespace).stream, docs)
    wrong = []
    for (name, _, _, refused_by), result in zip(cases, results):
        refused = result["status"] >= 300
        if refused != (engine.flavor in refused_by):
            wrong.append(f"{name}: {'refused' if refused else 'indexed'} ({result.get('error', {}).get('reason', '')[:120]})")
    assert not wrong, "\n".join(wrong)
    assert sum(engine.flavor in r for *_, r in cases) >= 6


def test_ingest_indexes_every_bad_shape_event_with_the_body_searchable_in_the_copy(engine, namespace, tmp_path: Path):
    cases = events()
    path = tmp_path / "shapes.ndjson"
    path.write_bytes(b"".join(orjson.dumps(ev) + b"\n" for _, ev, _, _ in cases))
    dead = tmp_path / "dead.ndjson"
    run = kaudit("ingest", str(path), "--url", engine.settings.url, "--namespace", namespace, "--dead-letter", str(dead),
                 "--refresh", "--no-integrity")
    assert run.returncode == 0, run.stderr
    assert not dead.exists() or dead.read_text() == "", dead.read_text()
    index = Names(namespace).stream
    found = engine.request("POST", f"/{index}/_search", body={"size": 100, "query": {"match_all": {}}})["hits"]["hits"]
    by_id = {h["_source"]["kubernetes"]["audit"]["auditID"]: h["_source"] for h in found}
    assert sorted(by_id) == sorted(ev["auditID"] for _, ev, _, _ in cases)
    for name, ev, untyped, _ in cases:
        src = by_id[ev["auditID"]]
        assert src["event"]["kind"] == "event", name
        assert src["kaudit"]["body"].get("untyped") == untyped, name
        if untyped is None:
            assert src["kubernetes"]["audit"].get("requestObject") == src["kaudit"]["body"].get("request"), name
    for name, (field, value) in IN_THE_COPY.items():
        query = {"bool": {"filter": [{"term": {field: value}}, {"term": {"kubernetes.audit.auditID": f"shape-{name}"}}]}}
        hits = engine.request("POST", f"/{index}/_search", body={"query": query})["hits"]["hits"]
        assert len(hits) == 1, f"{name}: {field}={value} not found in the copy"
    untyped_hits = engine.request("POST", f"/{index}/_search", body={
        "query": {"term": {"kaudit.body.untyped": "request.spec"}}})["hits"]["hits"]
    assert {h["_source"]["kubernetes"]["audit"]["auditID"] for h in untyped_hits} == {
        "shape-cr-spec-string", "shape-cr-spec-scalar-list"}


def test_pipeline_matches_the_normalizer_on_every_shape_case(pipeline_engine):
    cases = events()
    body = {"pipeline": build_pipeline(pipeline_engine.flavor),
            "docs": [{"_source": {"message": orjson.dumps(ev).decode()}} for _, ev, _, _ in cases]}
    results = pipeline_engine.request("POST", "/_ingest/pipeline/_simulate", body=body)["docs"]
    for (name, ev, untyped, _), result in zip(cases, results):
        assert "error" not in result, f"{name}: {result['error']}"
        src = result["doc"]["_source"]
        assert src["kaudit"]["body"].get("untyped") == untyped, name
        assert src == normalize(ev), f"{name}: pipeline and normalizer differ"


def test_pipeline_matches_the_normalizer_on_random_bad_and_good_bodies(pipeline_engine):
    """Random values and odd keys at the typed paths: the painless walk removes what Python removes."""
    cases = mutants(random.Random(20261202), 300)
    assert sum(bool(normalize(ev)["kaudit"]["body"].get("untyped")) for ev in cases) > 100
    for start in range(0, len(cases), 100):
        batch = cases[start:start + 100]
        body = {"pipeline": build_pipeline(pipeline_engine.flavor),
                "docs": [{"_source": {"message": orjson.dumps(ev).decode()}} for ev in batch]}
        results = pipeline_engine.request("POST", "/_ingest/pipeline/_simulate", body=body)["docs"]
        for ev, result in zip(batch, results):
            assert "error" not in result, f"{ev['requestObject']}: {result['error']}"
            assert result["doc"]["_source"] == normalize(ev), f"pipeline and normalizer differ on {ev['requestObject']}"


# ---- detection is not blinded ---------------------------------------------------------------------------
_DEPLOY_REF = {"resource": "deployments", "namespace": "shop", "name": "web", "apiGroup": "apps", "apiVersion": "v1"}
_POD_REF = {"resource": "pods", "namespace": "shop", "name": "debug", "apiVersion": "v1"}
#: Attacks whose request carries a decoy field of a bad shape (the apiserver drops an unknown field with a
#: warning and applies the rest), with the rule each must raise.
ATTACKS = [
    ("decoy-rules-string", {  # refused by both engines if typed whole
        "verb": "patch", "requestURI": "/apis/apps/v1/namespaces/shop/deployments/web", "objectRef": _DEPLOY_REF,
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": {"spec": {"template": {"spec": {"hostPID": True}}}, "rules": "decoy"}},
     "Workload Template Requesting Host Access"),
    ("decoy-spec-type-object", {  # refused by Elasticsearch if typed whole
        "requestURI": "/api/v1/namespaces/shop/pods", "objectRef": _POD_REF,
        "requestObject": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": "shop"},
                          "spec": {"type": {"decoy": True},
                                   "containers": [{"name": "sh", "image": "alpine:3.20",
                                                   "securityContext": {"privileged": True}}]}}},
     "Privileged Container Created"),
]


def test_scan_and_detect_alert_alike_on_attacks_with_a_bad_shape_decoy(engine, namespace, tmp_path: Path):
    pack = load_rules([default_pack_dir()])
    raw = [event(name, fragment) for name, fragment, _ in ATTACKS]
    assert all(normalize(ev)["kaudit"]["body"].get("untyped") for ev in raw)
    path = tmp_path / "attacks.ndjson"
    path.write_bytes(b"".join(orjson.dumps(ev) + b"\n" for ev in raw))
    run = kaudit("ingest", str(path), "--url", engine.settings.url, "--namespace", namespace,
                 "--dead-letter", str(tmp_path / "dead.ndjson"), "--refresh", "--no-integrity")
    assert run.returncode == 0, run.stderr
    scanned = list(Runner(pack).run(raw))
    start = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
    detected = engine_alerts(engine, Names(namespace).stream, pack, start, start + timedelta(hours=2))
    scan_ids = {a["kaudit"]["alert"]["id"] for a in scanned}
    assert scan_ids == {a["kaudit"]["alert"]["id"] for a in detected}
    titles = {a["rule"]["name"] for a in scanned}
    for _, _, title in ATTACKS:
        assert title in titles, f"scan did not raise {title!r}: {sorted(titles)}"
