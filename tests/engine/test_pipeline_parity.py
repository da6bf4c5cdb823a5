"""The server-side ingest pipeline produces the same documents as the Python normalizer.

Runs ``_ingest/pipeline/_simulate`` on the real engine with every native corpus event
(envelopes are client-side only; see kaudit_elk.events.pipeline).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kaudit_elk.events.fieldspec import ENVELOPE_KEY
from kaudit_elk.events.normalize import normalize
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
