"""Typed body paths that do not fit their mapping are moved out of the typed body (fieldspec.BODY_SHAPES).

Per case of tests/body_shapes.py: the Python normalizer removes exactly the named paths from
``kubernetes.audit.requestObject``/``responseObject``, keeps the whole body in ``kaudit.body.*`` and lists
the paths in ``kaudit.body.untyped``; the native fast path gives the same document or declines the line
(it declines exactly the bodies that do not fit). The engine side (refusals, ingest, the pipeline) is
tests/engine/test_body_shapes_engine.py.
"""

from __future__ import annotations

import copy
import os
import random

import orjson
import pytest

from kaudit_elk.events import fastpath
from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.bodyshape import fit_body
from kaudit_elk.events.normalize import DEFAULT, normalize
from tests.body_shapes import events, mutants

CASES = events()
IDS = [name for name, *_ in CASES]


def _native():
    if not fastpath.available():
        if os.environ.get("KAUDIT_REQUIRE_NATIVE") == "1":
            pytest.fail("KAUDIT_REQUIRE_NATIVE=1 but the native module is not installed or older than fastpath.MIN_NATIVE_VERSION (pip install ./native)")
        pytest.skip("native fast path not installed")
    line = fastpath.line_normalizer(DEFAULT)
    assert line is not None
    return line


def _without(body: dict, path: str) -> dict:
    """``body`` without the subtree at a dotted path (every list item along it), for the expected document."""
    def drop(value, steps):
        if isinstance(value, list):
            return [drop(v, steps) for v in value]
        if not isinstance(value, dict):
            return value
        if len(steps) == 1 or steps[0] not in value:
            key = ".".join(steps)
            return {k: v for k, v in value.items() if k != key} if key in value else {
                k: (drop(v, steps[1:]) if k == steps[0] else v) for k, v in value.items()}
        return {k: (drop(v, steps[1:]) if k == steps[0] else v) for k, v in value.items()}
    return drop(body, path.split("."))


#: Typed bodies where only some list items lose the path (``_without`` drops it from every item).
TYPED_OVERRIDES = {
    ("privileged-string-in-second-container", "requestObject"): {"kind": "Pod", "spec": {"containers": [
        {"name": "a", "image": "nginx", "securityContext": {"privileged": False}},
        {"name": "b", "image": "busybox", "securityContext": {}}]}},
}


@pytest.mark.parametrize(("name", "event", "untyped", "refused"), CASES, ids=IDS)
def test_python_moves_exactly_the_paths_that_do_not_fit(name, event, untyped, refused) -> None:
    before = copy.deepcopy(event)
    doc = normalize(event)
    assert event == before, "the input event was changed"
    audit, body = doc["kubernetes"]["audit"], doc["kaudit"]["body"]
    assert body.get("untyped") == untyped
    for raw, key in (("requestObject", "request"), ("responseObject", "response")):
        if key not in body:
            continue
        whole = body[key]
        assert whole == (event[raw] if isinstance(event[raw], dict) else {"json_patch": event[raw]})
        expected = whole
        for path in untyped or []:
            if path.startswith(key + "."):
                rest = path[len(key) + 1:]
                expected = {k: v for k, v in expected.items() if k != rest} if rest in expected else _without(expected, rest)
        expected = TYPED_OVERRIDES.get((name, raw), expected)
        assert audit[raw] == expected, f"{name}: typed {raw}"
    if untyped is None:
        assert "untyped" not in body


@pytest.mark.parametrize(("name", "event", "untyped", "refused"), CASES, ids=IDS)
def test_native_gives_the_python_document_or_declines_a_body_that_does_not_fit(name, event, untyped, refused) -> None:
    got = _native()(orjson.dumps(event), None)
    if untyped is not None:
        assert got is None, f"{name}: the native path indexed a body that does not fit"
        return
    assert got is not None, f"{name}: the native path declined a body that fits"
    assert orjson.loads(got[2]) == normalize(event)


def test_a_fitted_body_fits() -> None:
    for name, event, _, _ in CASES:
        doc = normalize(event)
        for raw in fs.BODY_SHAPES:
            typed = doc["kubernetes"]["audit"].get(raw)
            if isinstance(typed, dict):
                again: list[str] = []
                assert fit_body(typed, raw, again) is typed and again == [], name


def test_the_shape_trees_cover_every_typed_body_path() -> None:
    for dotted, kind in fs.ELASTIC_BODY_FIELDS.items():
        root = next(r for r in fs.ELASTIC_BODY_ROOTS if dotted.startswith(r + "."))
        raw = root.rsplit(".", 1)[1]
        node = fs.BODY_SHAPES[raw][1]
        for step in dotted[len(root) + 1:].split("."):
            assert node["kind"] == "object"
            node = node["keys"][step]
        assert node == {"kind": fs.BODY_SHAPE_OF_TYPE[kind]}


def test_random_bodies_python_fits_them_and_native_agrees_or_declines() -> None:
    line = _native()
    rng = random.Random(20261202)
    declined = matched = 0
    for event in mutants(rng, 600):
        doc = normalize(event)
        untyped = doc["kaudit"]["body"].get("untyped")
        for raw in fs.BODY_SHAPES:
            again: list[str] = []
            fitted = doc["kubernetes"]["audit"][raw]
            assert fit_body(fitted, raw, again) is fitted and again == [], (event, again)
        got = line(orjson.dumps(event), None)
        if got is None:  # a body that does not fit, or another reason to decline (a string capabilities.add)
            declined += bool(untyped)
        else:
            assert not untyped, f"native indexed a body Python had to fit: {untyped}"
            assert orjson.loads(got[2]) == doc
            matched += 1
    assert declined > 100 and matched > 100


def test_the_lean_check_never_passes_a_body_the_full_walk_changes() -> None:
    from kaudit_elk.events import bodyshape
    from kaudit_elk.events.bodyfits import FITS

    rng = random.Random(7)
    passed = 0
    for event in mutants(rng, 600) + [ev for _, ev, _, _ in CASES]:
        for raw in fs.BODY_SHAPES:
            body = event.get(raw)
            if not isinstance(body, dict):
                continue
            prefix, tree = fs.BODY_SHAPES[raw]
            removed: list[str] = []
            full = bodyshape._fit_object(body, tree["keys"], prefix, removed)
            if FITS[raw](body):
                passed += 1
                assert full is body and removed == [], (body, removed)
    assert passed > 100
