"""The ingest pipeline is generated from fieldspec and uses only processors both engines ship.

Parity with the normalizer on a real engine: tests/engine/test_pipeline_parity.py.
"""

from __future__ import annotations

import json

import pytest

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.pipeline import build_pipeline

# ingest-common + painless processors present in OpenSearch 2.x and Elasticsearch 8.x
COMMON = {"json", "remove", "fail", "drop", "script", "foreach", "urldecode", "set", "append", "rename", "date"}


def _types(processors: list[dict]) -> set[str]:
    out = set()
    for proc in processors:
        (kind, body), = proc.items()
        out.add(kind)
        if kind == "foreach":
            out |= _types([body["processor"]])
    return out


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
def test_pipeline_is_json_and_uses_available_processors(flavor):
    pipe = build_pipeline(flavor)
    json.dumps(pipe)
    allowed = COMMON | ({"copy"} if flavor == "opensearch" else set())
    assert _types(pipe["processors"]) | _types(pipe["on_failure"]) <= allowed


def test_failures_keep_the_document_and_say_why():
    kinds = {(k, b.get("field") or b.get("target_field")) for p in build_pipeline("elasticsearch")["on_failure"] for k, b in p.items()}
    assert ("set", "event.kind") in kinds and ("set", "error.message") in kinds
    os_kinds = {(k, b.get("target_field")) for p in build_pipeline("opensearch")["on_failure"] for k, b in p.items()}
    assert ("copy", "error.message") in os_kinds  # no mustache needed on OpenSearch's minimal build


def test_script_params_come_from_fieldspec():
    script = next(p["script"] for p in build_pipeline("opensearch")["processors"] if p.get("script", {}).get("tag") == "kaudit-normalize")
    params = script["params"]
    assert params["copies"] == [[list(src), dst] for src, dst in fs.COPIES]
    assert params["pod_spec_paths"] == [list(p) for p in fs.POD_SPEC_PATHS]
    assert set(params["iam_resources"]) == fs.IAM_RESOURCES
    assert params["cluster"] == "default"
    assert build_pipeline("opensearch", cluster="prod")["processors"][4]["script"]["params"]["cluster"] == "prod"


def test_raw_message_is_parsed_into_kubernetes_audit():
    first = build_pipeline("opensearch")["processors"][0]["json"]
    assert first["field"] == "message" and first["target_field"] == "kubernetes.audit"


def test_stage_filter_matches_normalizer_default():
    drop = next(p["drop"] for p in build_pipeline("opensearch")["processors"] if "drop" in p)
    for stage in ("ResponseComplete", "ResponseStarted", "Panic"):
        assert f"'{stage}'" in drop["if"]
    assert "RequestReceived" not in drop["if"]


def test_unknown_flavor_is_rejected():
    with pytest.raises(ValueError, match="flavor"):
        build_pipeline("solr")


def test_typed_fields_cover_what_the_normalizer_emits():
    assert fs.TYPED_FIELDS["kaudit.pod.privileged"] == "boolean"
    assert fs.TYPED_FIELDS["source.ip"] == "ip"
    assert fs.TYPED_FIELDS["@timestamp"] == "date"
    assert set(fs.FLAT_FIELDS) == {"kaudit.body.request", "kaudit.body.response"}
    for _, dst in fs.COPIES:
        assert dst in fs.TYPED_FIELDS
