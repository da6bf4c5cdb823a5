"""The server-side ingest pipeline produces the same documents as the Python normalizer.

Runs ``_ingest/pipeline/_simulate`` on the real engine with every native corpus event
(envelopes are client-side only; see kaudit_elk.events.pipeline).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kaudit_elk.events.fieldspec import ENVELOPE_KEY
from kaudit_elk.events.normalize import NormalizeOptions, normalize
from kaudit_elk.events.pipeline import build_pipeline
from kaudit_elk.events.sources import read_records

pytestmark = pytest.mark.engine

CORPUS = Path(__file__).resolve().parents[1] / "golden" / "inputs"
PROCESSORS = {"json", "script", "remove", "drop", "fail", "foreach", "urldecode", "set"}


def _native_events() -> list[tuple[str, dict]]:
    """(file name, event) for every corpus event that needs no envelope (the pipeline's input)."""
    records = read_records(sorted(str(p) for p in CORPUS.iterdir()))
    return [(Path(r.source).name, r.event) for r in records if r.event is not None and ENVELOPE_KEY not in r.event]


def _simulate(engine, docs: list[dict]) -> list[dict]:
    body = {"pipeline": build_pipeline(engine.flavor), "docs": [{"_source": d} for d in docs]}
    return engine.request("POST", "/_ingest/pipeline/_simulate", body=body)["docs"]


@pytest.fixture
def needs_processors(pipeline_engine):
    engine = pipeline_engine
    needed = PROCESSORS | ({"copy"} if engine.flavor == "opensearch" else set())
    missing = sorted(needed - set(engine.caps.ingest_processors))
    assert not missing, f"the sandbox engine should have ingest processors {missing} (scripts/engines)"
    return engine


def test_pipeline_matches_normalizer_on_every_native_corpus_event(needs_processors):
    events = _native_events()
    assert len(events) > 100
    results = _simulate(needs_processors, [{"message": orjson.dumps(e).decode()} for _, e in events])
    compared = 0
    for (name, event), result in zip(events, results):
        expected = normalize(event)
        if expected is None:
            assert result is None, f"{name}: pipeline kept an event the normalizer filters out"
            continue
        assert "error" not in result, f"{name}: {result['error']}"
        assert result["doc"]["_source"] == expected, f"{name}: pipeline and normalizer differ"
        compared += 1
    assert compared > 100


def test_pipeline_accepts_an_already_parsed_event(needs_processors):
    _, event = next((n, e) for n, e in _native_events() if n == "k8s-audit-pod-exec-file.log")
    [result] = _simulate(needs_processors, [{"kubernetes": {"audit": event}}])
    assert result["doc"]["_source"] == normalize(event)
    assert result["doc"]["_source"]["kaudit"]["exec"]["command"] == "/bin/bash"


def test_pipeline_marks_bad_events_instead_of_losing_them(needs_processors):
    bad = {"kind": "Event", "verb": 7, "stage": "ResponseComplete", "auditID": "x"}
    [result] = _simulate(needs_processors, [{"message": orjson.dumps(bad).decode()}])
    src = result["doc"]["_source"]
    assert src["event"]["kind"] == "pipeline_error"
    assert "verb" in src["error"]["message"]
    [garbage] = _simulate(needs_processors, [{"message": "{not json"}])
    assert garbage["doc"]["_source"]["event"]["kind"] == "pipeline_error"
    assert garbage["doc"]["_source"]["message"] == "{not json"


def test_pipeline_drops_stages_the_normalizer_filters(needs_processors):
    event = {"kind": "Event", "auditID": "a", "stage": "RequestReceived", "verb": "get"}
    assert normalize(event) is None
    [result] = _simulate(needs_processors, [{"message": orjson.dumps(event).decode()}])
    assert result is None


def test_pipeline_keeps_extra_keys_and_sets_its_streams_data_stream(needs_processors):
    """user.extra keys keep their dots as in Elastic's integration (unplaceable ones dedotted, as the
    normalizer does); data_stream.* is the pipeline's own stream even when a shipper sent other values."""
    event = {"kind": "Event", "auditID": "x1", "stage": "ResponseComplete", "verb": "get",
             "requestReceivedTimestamp": "2026-01-01T00:00:00.000001Z",
             "user": {"username": "system:serviceaccount:cert-manager:cert-manager",
                      "extra": {"authentication.kubernetes.io/pod-name": ["cert-manager-7f9"], "a": ["1"], "a.b": ["2"],
                                "c..d": ["3"], "e.": ["4"]}},
             "impersonatedUser": {"username": "i", "extra": {"iam.gke.io/user-assertion": ["x"]}}}
    body = {"pipeline": build_pipeline(needs_processors.flavor, namespace="team_a"),
            "docs": [{"_source": {"message": orjson.dumps(event).decode(),
                                  "data_stream": {"type": "logs", "dataset": "generic", "namespace": "default"}}}]}
    [result] = needs_processors.request("POST", "/_ingest/pipeline/_simulate", body=body)["docs"]
    assert result["doc"]["_source"] == normalize(event, NormalizeOptions(namespace="team_a"))
    assert result["doc"]["_source"]["kubernetes"]["audit"]["user"]["extra"]["authentication.kubernetes.io/pod-name"]
    assert result["doc"]["_source"]["data_stream"] == {"type": "logs", "dataset": "kubernetes.audit_logs",
                                                      "namespace": "team_a"}
