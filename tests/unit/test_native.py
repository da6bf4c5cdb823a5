"""The native fast path (kaudit_elk_native, native/) gives the Python normalizer's documents, byte
for byte, or declines the line so that Python handles it.

In the full run (scripts/test sets KAUDIT_REQUIRE_NATIVE=1) the module must be installed; a
developer checkout without Rust skips these tests and uses the Python path everywhere.
"""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from kaudit_elk.events import fastpath
from kaudit_elk.events.envelopes import EnvelopeError, decode
from kaudit_elk.ingest.bulk import event_key
from kaudit_elk.events.normalize import DEFAULT, NormalizeError, NormalizeOptions, doc_id, normalize

if not fastpath.available():
    if os.environ.get("KAUDIT_REQUIRE_NATIVE") == "1":
        raise RuntimeError("KAUDIT_REQUIRE_NATIVE=1 but kaudit_elk_native is not installed or older than fastpath.MIN_NATIVE_VERSION (pip install ./native)")
    pytest.skip("kaudit_elk_native is not installed", allow_module_level=True)

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"
INGESTED = "2026-11-28T05:00:00.000Z"


def python_result(text: bytes, options: NormalizeOptions, ingested: str | None) -> object:
    """What the Python path makes of one line: None (error/envelope), () (skipped) or (id, ts, bytes)."""
    try:
        events = decode(orjson.loads(text))
    except (orjson.JSONDecodeError, EnvelopeError):
        return None
    if len(events) != 1:
        return None
    event = events[0]
    key = event_key(event)
    try:
        doc = normalize(event, options)
    except NormalizeError:
        return None
    if doc is None:
        return ()
    if ingested is not None:
        doc["event"]["ingested"] = ingested
    # The fast path gives no id (so ingest takes the Python path) without a non-empty auditID or
    # with a null stage: Python's id is then a digest of the event / contains "None".
    audit_id = event.get("auditID")
    plain = isinstance(audit_id, str) and audit_id and not ("stage" in event and event["stage"] is None)
    _id = doc_id(options.cluster, key, str(event.get("stage", ""))) if plain else None
    return (_id, doc.get("@timestamp"), orjson.dumps(doc))


def corpus_lines() -> list[bytes]:
    lines = []
    for path in sorted(INPUTS.iterdir()):
        for raw in path.read_bytes().splitlines():
            if raw.strip():
                lines.append(raw.strip())
    return lines


def variants(text: bytes) -> list[bytes]:
    """The same event written the ways other writers write it (indent, ASCII escapes, spaces)."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [text]
    return [
        text,
        orjson.dumps(obj),
        orjson.dumps(obj, option=orjson.OPT_INDENT_2),
        json.dumps(obj, ensure_ascii=True).encode(),  # \uXXXX for non-ASCII, ", " and ": "
        json.dumps(obj).replace("&", "\\u0026").replace("<", "\\u003c").encode(),  # Go's encoding/json
    ]


def check(text: bytes, options: NormalizeOptions = DEFAULT, ingested: str | None = None) -> object:
    """Assert the native result is the Python result (or a decline); return the native result."""
    native = fastpath.line_normalizer(options)
    assert native is not None
    got = native(text, ingested)
    if got is not None:
        expected = python_result(text, options, ingested)
        assert got == expected, text[:300]
    return got


OPTION_SETS = [
    DEFAULT,
    NormalizeOptions(cluster="prod-eu-1", namespace="prod_eu", keep_original=True),
    NormalizeOptions(stages=frozenset({"ResponseComplete", "ResponseStarted", "Panic", "RequestReceived"})),
    NormalizeOptions(max_value_bytes=300, max_body_bytes=600),  # small limits: long bodies are Python's
]


def has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(map(has_float, value.values()))
    if isinstance(value, list):
        return any(map(has_float, value))
    return False


def should_handle(text: bytes, options: NormalizeOptions, ingested: str | None) -> bool:
    """Whether the fast path is expected to take this line rather than decline it."""
    try:
        obj = orjson.loads(text)
        events = decode(obj)
    except (orjson.JSONDecodeError, EnvelopeError):
        return False
    expected = python_result(text, options, ingested)
    if len(events) != 1 or events[0] is not obj or expected is None or has_float(obj):
        return False
    if expected == ():
        return True
    limit = min(options.max_value_bytes, options.max_body_bytes)
    bodies = [obj[k] for k in ("requestObject", "responseObject") if obj.get(k) is not None]
    if any(len(orjson.dumps(b)) > limit - 16 for b in bodies):
        return False  # near or over the truncation limits: Python's job
    return not (ingested is not None and expected[1] is None)  # no timestamp: ingest stamps one


@pytest.mark.parametrize("options", OPTION_SETS, ids=["default", "cluster+original", "all-stages", "small-limits"])
def test_every_corpus_line_and_its_rewritings_match_python(options: NormalizeOptions) -> None:
    handled = declined = 0
    for line in corpus_lines():
        for text in variants(line):
            for ingested in (None, INGESTED):
                got = check(text, options, ingested)
                if got is not None:
                    handled += 1
                elif should_handle(text, options, ingested):
                    declined += 1
                    raise AssertionError(f"declined a line Python handles plainly: {text[:300]!r}")
    assert handled >= 1000 and declined == 0


def test_ingest_stamp_and_id_follow_the_python_rules() -> None:
    event = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": "ResponseComplete",
             "verb": "get", "requestURI": "/api/v1/pods?limit=500&watch=false",
             "requestReceivedTimestamp": "2026-01-02T03:04:05.123456Z", "stageTimestamp": "2026-01-02T03:04:05.223456Z"}
    got = check(orjson.dumps(event), ingested=INGESTED)
    assert got is not None and got[0] == doc_id("default", "a-1", "ResponseComplete")
    doc = orjson.loads(got[2])
    assert list(doc["event"])[-1] == "ingested" and doc["event"]["duration"] == 100_000_000
    assert doc["url"] == {"original": event["requestURI"], "path": "/api/v1/pods", "query": "limit=500&watch=false"}


@pytest.mark.parametrize("case, text", [
    ("float anywhere", b'{"kind":"Event","auditID":"x","stage":"ResponseComplete","requestObject":{"w":1.5}}'),
    ("integer over 64 bits", b'{"kind":"Event","auditID":"x","requestObject":{"n":18446744073709551616}}'),
    ("duplicate key", b'{"kind":"Event","auditID":"x","verb":"get","verb":"list"}'),
    ("lone surrogate", b'{"kind":"Event","auditID":"x","verb":"\\ud800"}'),
    ("envelope (AKS)", b'{"category":"kube-audit","operationName":"x","properties":{"log":"{}"}}'),
    ("EventList", b'{"kind":"EventList","items":[]}'),
    ("core Event", b'{"kind":"Event","apiVersion":"v1","reason":"Pulled"}'),
    ("wrong type", b'{"kind":"Event","auditID":"x","verb":["get"]}'),
    ("bool status code", b'{"kind":"Event","auditID":"x","responseStatus":{"code":true}}'),
    ("offset timestamp", b'{"kind":"Event","auditID":"x","requestReceivedTimestamp":"2026-01-01T00:00:00+02:00"}'),
    ("no timestamp while ingesting", b'{"kind":"Event","auditID":"x","verb":"get"}'),
    ("non-ASCII digits in an IP", '{"kind":"Event","auditID":"x","stageTimestamp":"2026-01-01T00:00:00Z","sourceIPs":["١.2.3.4"]}'.encode()),
    ("annotation keys collide when dedotted", b'{"kind":"Event","auditID":"x","stageTimestamp":"2026-01-01T00:00:00Z","annotations":{"a.b":"1","a_b":"2"}}'),
    ("a string leaf over the value limit", b'{"kind":"Event","auditID":"x","stageTimestamp":"2026-01-01T00:00:00Z","requestObject":{"data":"' + b"A" * 9000 + b'"}}'),
    ("event.duration beyond 64 bits", b'{"kind":"Event","auditID":"x","requestReceivedTimestamp":"1900-01-01T00:00:00Z","stageTimestamp":"2200-01-01T00:00:00Z"}'),
    ("nested deeper than documents go", b'{"kind":"Event","auditID":"x","stageTimestamp":"2026-01-01T00:00:00Z","x":' + b"[" * 251 + b"]" * 251 + b"}"),
    ("dedotted extra key meets another key", b'{"kind":"Event","auditID":"x","stageTimestamp":"2026-01-01T00:00:00Z","user":{"extra":{"a":["1"],"a.b":["2"],"a_b":["3"]}}}'),
    ("invalid JSON", b'{"kind":"Event",'),
    ("not UTF-8", b'{"kind":"Event","auditID":"\xff"}'),
])
def test_declines_what_only_python_does_right(case: str, text: bytes) -> None:
    native = fastpath.line_normalizer(DEFAULT)
    assert native(text, INGESTED) is None, case


@pytest.mark.parametrize("case, event", [
    ("dotted annotations and extra", {"annotations": {"authorization.k8s.io/decision": "forbid", "x.y": "z"},
                                      "user": {"username": "u", "extra": {"a.b": ["c"]}}}),
    ("extra keys kept, unplaceable ones dedotted", {
        "user": {"username": "u", "extra": {"authentication.kubernetes.io/pod-name": ["p"], "a": ["1"], "a.b": ["2"],
                                            "a.b.c": ["3"], "x..y": ["4"], ".z": ["5"], "w.": ["6"]}},
        "impersonatedUser": {"username": "i", "extra": {"iam.gke.io/user-assertion": ["x"], "k": ["y"]}}}),
    ("managedFields dropped", {"verb": "update", "objectRef": {"resource": "configmaps"},
                               "requestObject": {"kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [{"m": 1}]}}}),
    ("exec command", {"verb": "create", "objectRef": {"resource": "pods", "subresource": "exec"},
                      "requestURI": "/api/v1/namespaces/d/pods/p/exec?command=sh&command=-c&command=cat%20%2Fetc%2Fshadow+x&container=c&stdin=true"}),
    ("privileged pod", {"verb": "create", "objectRef": {"resource": "pods"}, "requestObject": {
        "spec": {"hostPID": True, "volumes": [{"hostPath": {"path": "/"}}],
                 "containers": [{"image": "i", "securityContext": {"privileged": True, "runAsUser": 0,
                                                                    "capabilities": {"add": ["SYS_ADMIN"]}},
                                 "ports": [{"hostPort": 22}]}]}}}),
    ("cluster role", {"verb": "create", "objectRef": {"resource": "clusterrolebindings"}, "requestObject": {
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "eve"}]}}),
    ("json patch body", {"verb": "patch", "requestObject": [{"op": "add", "path": "/x", "value": 1}]}),
    ("impersonation and IPv6", {"user": {"username": "admin"}, "impersonatedUser": {"username": "system:admin"},
                                "sourceIPs": ["2001:db8::1", "10.0.0.1", "2001:db8::1"]}),
    ("legacy v1beta1 timestamp", {"apiVersion": "audit.k8s.io/v1beta1", "timestamp": "2019-01-01T00:00:00Z"}),
    ("space-separated timestamp", {"requestReceivedTimestamp": "2026-01-01 10:00:00.5"}),
    ("escapes and control characters", {"userAgent": "a\"b\\c\u0001\u007f\u2028é", "verb": "get"}),
    ("forbidden", {"verb": "delete", "responseStatus": {"code": 403}}),
    ("stage filtered out", {"stage": "RequestReceived"}),
])
def test_hand_written_events_match_python(case: str, event: dict) -> None:
    base = {"kind": "Event", "auditID": "id-" + case, "stage": "ResponseComplete",
            "requestReceivedTimestamp": "2026-01-01T00:00:00.000001Z"}
    if "timestamp" in event or "requestReceivedTimestamp" in event:
        del base["requestReceivedTimestamp"]
    text = orjson.dumps({**base, **event})
    for options in OPTION_SETS:
        for written in variants(text):
            assert check(written, options) is not None or options.max_value_bytes < 8192, case
    if event.get("stage") == "RequestReceived":
        assert check(text) == ()


def test_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAUDIT_NATIVE", "0")
    assert not fastpath.available()
    assert fastpath.line_normalizer(replace(DEFAULT)) is None


# ---- seeded mutation fuzzing: corpus events with values swapped, removed and added at random ----
_VALUES = [None, True, False, 0, 1, -1, 403, 2**63, -2**63, "", "x", "a.b", "10.0.0.1", "::1", "1.2.3.999",
           "2026-01-01T00:00:00Z", "2026-01-01 00:00:00.1234567", "exec", "attach", "pods", "services",
           "clusterroles", "create", "forbid", "allow", [], [1], ["x"], ["10.0.0.1", "10.0.0.1"], {}, {"a": 1},
           {"x.y": "z"}, "é\u2028\"\\", "\x01", "%zz", "command=a%20b", {"containers": [{"image": "i"}]}, {"path": "/"}]
_KEYS = ["kind", "apiVersion", "auditID", "stage", "requestURI", "verb", "user", "impersonatedUser", "sourceIPs",
         "objectRef", "responseStatus", "requestObject", "responseObject", "requestReceivedTimestamp",
         "stageTimestamp", "annotations", "timestamp", "metadata", "username", "uid", "groups", "extra", "resource",
         "subresource", "namespace", "name", "apiGroup", "code", "spec", "template", "jobTemplate", "containers",
         "initContainers", "volumes", "hostPath", "path", "securityContext", "privileged", "runAsUser",
         "capabilities", "add", "ports", "hostPort", "rules", "verbs", "roleRef", "subjects", "managedFields",
         "type", "hostNetwork", "serviceAccountName", "authorization.k8s.io/decision"]


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(event: dict, rng: random.Random) -> dict:
    event = copy.deepcopy(event)
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(_paths(event)[1:] or [("kind",)])
        parent: Any = event
        for key in path[:-1]:
            parent = parent[key]
        target, roll = parent[path[-1]], rng.random()
        if roll < 0.5:
            parent[path[-1]] = copy.deepcopy(rng.choice(_VALUES))
        elif roll < 0.7 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(target, dict):
            target[rng.choice(_KEYS)] = copy.deepcopy(rng.choice(_VALUES))
        elif isinstance(target, list):
            target.append(copy.deepcopy(rng.choice(_VALUES)))
        else:
            parent[path[-1]] = {rng.choice(_KEYS): copy.deepcopy(rng.choice(_VALUES))}
    return event


def test_random_mutations_match_python_or_are_declined() -> None:
    rng = random.Random(20261128)
    events: list[dict] = []
    for line in corpus_lines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("kind") == "Event":
            events.append(obj)
    natives = [(options, fastpath.line_normalizer(options)) for options in OPTION_SETS]
    handled = 0
    for i in range(4000):
        text = orjson.dumps(_mutate(rng.choice(events), rng))
        options, native = natives[i % len(natives)]
        ingested = INGESTED if i % 2 else None
        got = native(text, ingested)  # type: ignore[misc]
        if got is not None:
            handled += 1
            assert got == python_result(text, options, ingested), text[:400]
    assert handled > 1000  # the mutations mostly stay within what the fast path takes


def test_version_command_says_whether_the_fast_path_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kaudit_elk.cli.main import app

    on = CliRunner().invoke(app, ["version", "--output", "json"])
    assert on.exit_code == 0 and json.loads(on.stdout)["native"] == fastpath.version() is not None
    monkeypatch.setenv("KAUDIT_NATIVE", "0")
    off = CliRunner().invoke(app, ["version"])
    assert off.exit_code == 0 and "no native fast path" in off.stdout


_INNER = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "env-1", "stage": "ResponseComplete",
          "verb": "get", "requestReceivedTimestamp": "2026-01-01T00:00:00.000001Z", "user": {"username": "u"}}
_ENVELOPES = [
    ("AKS record", {"category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
                    "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/Prod-1",
                    "properties": {"log": json.dumps(_INNER)}}, True),
    ("EKS export", {"@timestamp": "2026-01-01 00:00:00.000", "@logStream": "kube-apiserver-audit-abc",
                    "@log": "123:/aws/eks/prod-2/cluster", "logGroup": "/aws/eks/prod-2/cluster",
                    "@message": json.dumps(_INNER)}, True),
    ("EKS export, event as an object", {"logGroup": "/aws/eks/prod-2/cluster", "message": _INNER}, False),
    ("EKS export holding an EventList", {"logGroup": "/aws/eks/x/cluster",
                                         "message": json.dumps({"kind": "EventList", "items": [_INNER]})}, False),
    ("AKS record with a non-string fact", {"category": "kube-audit", "operationName": "x", "resourceId": 7,
                                           "properties": {"log": json.dumps(_INNER)}}, False),
    ("GKE entry", {"protoPayload": {"methodName": "io.k8s.core.v1.pods.get"}, "insertId": "g"}, False),
]


@pytest.mark.parametrize("case, record, fast", _ENVELOPES, ids=[e[0] for e in _ENVELOPES])
def test_aks_and_eks_envelopes_take_the_fast_path_with_their_facts(case: str, record: dict, fast: bool) -> None:
    text = orjson.dumps(record)
    for options in OPTION_SETS:
        line = fastpath.line_normalizer(options)
        assert line(text, INGESTED) is None  # the line itself is an envelope
        got = fastpath.enveloped(line, text, INGESTED)  # type: ignore[arg-type]
        assert (got is not None) == fast, case
        if got is not None:
            assert got == python_result(text, options, INGESTED)
            doc = orjson.loads(got[2])
            assert doc["cloud"]["provider"] in ("azure", "aws") and doc["orchestrator"]["cluster"]["name"].startswith("prod-")


def test_corpus_envelope_lines_match_python() -> None:
    handled = 0
    for options in OPTION_SETS:
        line = fastpath.line_normalizer(options)
        for text in corpus_lines():
            for ingested in (None, INGESTED):
                if line(text, ingested) is None:
                    got = fastpath.enveloped(line, text, ingested)  # type: ignore[arg-type]
                    if got is not None:
                        handled += 1
                        assert got == python_result(text, options, ingested), text[:300]
    assert handled >= 100  # the corpus's AKS and EKS lines with a string event


def test_native_module_is_built_from_one_json_spec_of_the_field_spec_tables() -> None:
    import kaudit_elk_native

    from kaudit_elk.events import envelopes, fieldspec as fs

    spec = orjson.loads(fastpath.native_spec())
    assert spec["verb_types"] == fs.VERB_TYPES and spec["pod_markers"] == list(fs.POD_SPEC_MARKERS)
    assert spec["event_markers"] == list(envelopes.EVENT_MARKERS) and spec["stream_type"] == fs.DATA_STREAM_TYPE
    options = dict(cluster="c", namespace="n", stages=["ResponseComplete"], keep_original=False,
                   max_body_bytes=1000, max_value_bytes=100)
    for key in spec:  # every table is required, and a missing one is named
        broken = orjson.dumps({k: v for k, v in spec.items() if k != key}).decode()
        with pytest.raises(ValueError, match=key):
            kaudit_elk_native.Normalizer(broken, **options)
