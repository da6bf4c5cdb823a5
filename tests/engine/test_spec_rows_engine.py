"""The engine's execution of every field-spec row: the server-side pipeline in ``_simulate`` must give
each row's value, and the same document as the Python normalizer (tests/unit/test_spec_rows.py runs
the Python and native executions). Envelope rows are client-side only (kaudit_elk.events.pipeline)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.pipeline import build_pipeline
from tests.unit.test_spec_rows import field_of, python_doc

pytestmark = pytest.mark.engine

ROWS = sorted(n for n in fs.FIELD_EXAMPLES if not fs.is_envelope_example(n))


@pytest.fixture(scope="module")
def simulated(pipeline_engine: Any) -> dict[str, dict[str, Any]]:
    """name -> the pipeline's document for that row's example (one _simulate call for all rows)."""
    docs = [{"_source": {"message": orjson.dumps(fs.example_record(n)).decode()}} for n in ROWS]
    body = {"pipeline": build_pipeline(pipeline_engine.flavor), "docs": docs}
    results = pipeline_engine.request("POST", "/_ingest/pipeline/_simulate", body=body)["docs"]
    return dict(zip(ROWS, results))


def test_every_event_row_is_run_in_the_engine() -> None:
    assert len(ROWS) == len(fs.FIELD_EXAMPLES) - sum(map(fs.is_envelope_example, fs.FIELD_EXAMPLES)) > 20


@pytest.mark.parametrize("name", ROWS)
def test_server_side_pipeline_yields_the_rows_value(simulated: dict[str, dict[str, Any]], name: str) -> None:
    result = simulated[name]
    assert "error" not in result, f"{name}: {result.get('error')}"
    doc = result["doc"]["_source"]
    assert field_of(doc, name) == fs.FIELD_EXAMPLES[name][1]
    assert doc == python_doc(name), f"{name}: pipeline and Python documents differ"
