"""normalize() executes kaudit_elk.events.fieldspec inline (for speed); these tests hold it to every table."""

from __future__ import annotations

import pytest

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.normalize import NormalizeError, NormalizeOptions, normalize

BASE = {"kind": "Event", "auditID": "a-1", "stage": "ResponseComplete", "verb": "create",
        "requestReceivedTimestamp": "2024-05-01T10:00:00.000001Z", "stageTimestamp": "2024-05-01T10:00:00.5Z"}


def _put(obj: dict, path: tuple[str, ...], value: object) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = value


def _get(doc: dict, dotted: str) -> object:
    for key in dotted.split("."):
        doc = doc[key]
    return doc


@pytest.mark.parametrize("src, dst", fs.COPIES, ids=[d for _, d in fs.COPIES])
def test_every_copy_of_the_spec_is_applied(src: tuple[str, ...], dst: str) -> None:
    event = dict(BASE)
    value = 201 if dst == "http.response.status_code" else (["g1", "g2"] if src[-1] == "groups" else f"v-{dst}")
    if src == ("verb",):
        value = "patch"
    _put(event, src, value)
    assert _get(normalize(event), dst) == value


@pytest.mark.parametrize("path", fs.TIMESTAMP_SOURCES)
def test_timestamp_sources_in_spec_order(path: tuple[str, ...]) -> None:
    event = {k: v for k, v in BASE.items() if not k.endswith("Timestamp")}
    _put(event, path, "2021-02-03T04:05:06Z")
    for later in fs.TIMESTAMP_SOURCES[fs.TIMESTAMP_SOURCES.index(path) + 1:]:
        _put(event, later, "1999-01-01T00:00:00Z")
    assert normalize(event)["@timestamp"].startswith("2021-02-03T04:05:06")


@pytest.mark.parametrize("path", fs.DEDOTTED_OBJECTS)
def test_dedotted_objects(path: tuple[str, ...]) -> None:
    event = dict(BASE, user={"username": "u"}, impersonatedUser={"username": "i"})
    _put(event, path + ("a.b/c",), "x" if path == ("annotations",) else ["x"])
    obj = normalize(event)["kubernetes"]["audit"]
    for key in path:
        obj = obj[key]
    assert "a_b/c" in obj and "a.b/c" not in obj


@pytest.mark.parametrize("path", fs.DOTTED_KEY_OBJECTS)
def test_dotted_key_objects_keep_placeable_keys(path: tuple[str, ...]) -> None:
    event = dict(BASE, user={"username": "u"}, impersonatedUser={"username": "i"})
    _put(event, path + ("a.b/c",), ["x"])
    _put(event, path + ("a.b/c.d",), ["y"])  # under another key: dedotted
    obj = normalize(event)["kubernetes"]["audit"]
    for key in path:
        obj = obj[key]
    assert obj == {"a.b/c": ["x"], "a_b/c_d": ["y"]}


def test_data_stream_constants_and_namespace() -> None:
    doc = normalize(dict(BASE), NormalizeOptions(namespace="team_a"))
    assert doc["data_stream"] == {"type": fs.DATA_STREAM_TYPE, "dataset": fs.EVENT_DATASET, "namespace": "team_a"}
    assert {k: v for k, v in fs.CONSTANTS.items() if k.startswith("data_stream.")} == {
        "data_stream.type": doc["data_stream"]["type"], "data_stream.dataset": doc["data_stream"]["dataset"]}


@pytest.mark.parametrize("spec_path", fs.POD_SPEC_PATHS)
@pytest.mark.parametrize("marker", fs.POD_SPEC_MARKERS)
def test_pod_specs_found_at_every_path_by_every_marker(spec_path: tuple[str, ...], marker: str) -> None:
    spec: dict = {"hostPID": True}
    if marker in fs.CONTAINER_LISTS:
        spec[marker] = [{"name": "c", "image": "img:1"}]
    elif marker == "volumes":
        spec[marker] = [{"name": "v", "hostPath": {"path": "/etc"}}]
    else:
        spec[marker] = True
    body: dict = {}
    _put(body, spec_path, spec)
    doc = normalize(dict(BASE, objectRef={"resource": "pods"}, requestObject=body))
    assert doc["kaudit"]["pod"]["host_pid"] is True


@pytest.mark.parametrize("flag, field", fs.HOST_NAMESPACE_FLAGS)
def test_host_namespace_flags(flag: str, field: str) -> None:
    body = {"spec": {"containers": [{"name": "c"}], flag: True}}
    doc = normalize(dict(BASE, objectRef={"resource": "pods"}, requestObject=body))
    assert _get(doc, field) is True


@pytest.mark.parametrize("field, types", list(fs.RAW_TYPES.items()))
def test_every_raw_type_is_enforced(field: str, types: tuple[type, ...]) -> None:
    wrong: object = 12345 if str not in types else {"not": "a string"}
    with pytest.raises(NormalizeError, match=field):
        normalize(dict(BASE, **{field: wrong}))
