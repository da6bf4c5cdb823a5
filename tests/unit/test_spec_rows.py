"""One test per typed field of the spec (kaudit_elk.events.fieldspec.FIELD_EXAMPLES): the row's example
record through the Python normalizer and the native fast path must give the row's value. The engine's
execution (the server-side pipeline in ``_simulate``) is tests/engine/test_spec_rows_engine.py.

A new typed field without a row fails ``test_every_typed_field_has_an_example_row``; a row one execution
does not implement fails that execution's test.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest

from kaudit_elk.events import envelopes, fastpath
from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.normalize import DEFAULT, normalize

ROWS = sorted(fs.FIELD_EXAMPLES)
#: Rows the native path hands to Python by design (it declines the line; ingest then normalizes it in
#: Python): GKE entries (not split natively), bodies that need truncating and bodies with a typed path that
#: does not fit its mapping (fieldspec.BODY_SHAPES).
NATIVE_DECLINES = {"kaudit.envelope.project_id", "kaudit.envelope.location", "kaudit.body.truncated",
                   "kaudit.body.original_bytes", "kaudit.body.untyped"}


def field_of(doc: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path (ECS objects nest), or a KeyError naming the missing part."""
    value: Any = doc
    for key in dotted.split("."):
        value = value[key]
    return value


def python_doc(name: str) -> dict[str, Any]:
    record = fs.example_record(name)
    if fs.is_envelope_example(name):
        [event] = envelopes.decode(record)
    else:
        event = record
    doc = normalize(event)
    assert doc is not None
    return doc


def test_every_typed_field_has_an_example_row() -> None:
    assert sorted(fs.KAUDIT_FIELDS) == ROWS


@pytest.mark.parametrize("name", ROWS)
def test_python_normalizer_yields_the_rows_value(name: str) -> None:
    assert field_of(python_doc(name), name) == fs.FIELD_EXAMPLES[name][1]


@pytest.mark.parametrize("name", ROWS)
def test_native_fast_path_yields_the_rows_value(name: str) -> None:
    if not fastpath.available():
        if os.environ.get("KAUDIT_REQUIRE_NATIVE") == "1":
            pytest.fail("KAUDIT_REQUIRE_NATIVE=1 but the native module is not installed or older than fastpath.MIN_NATIVE_VERSION (pip install ./native)")
        pytest.skip("native fast path not installed")
    line = fastpath.line_normalizer(DEFAULT)
    assert line is not None
    text = orjson.dumps(fs.example_record(name))
    got = line(text, None)
    if got is None and fs.is_envelope_example(name):
        got = fastpath.enveloped(line, text, None)
    if name in NATIVE_DECLINES:
        assert got is None, f"{name}: the native path now handles its row: take it off NATIVE_DECLINES"
        return
    assert got is not None, f"{name}: the native fast path declined its example"
    _doc_id, _timestamp, body = got
    doc = orjson.loads(body)
    assert field_of(doc, name) == fs.FIELD_EXAMPLES[name][1]
    assert doc == python_doc(name), f"{name}: native and Python documents differ"
