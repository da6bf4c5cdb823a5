"""Every envelope kind decodes to audit Events with the facts users search on."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from kaudit_elk.events.envelopes import EnvelopeError, decode
from kaudit_elk.events.fieldspec import ENVELOPE_KEY

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "inputs"


def _lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (GOLDEN / name).read_text(encoding="utf-8").splitlines() if line.strip()]


NATIVE = _lines("k8s-audit-pod-exec-file.log")[0]


def test_native_event_passes_through_unchanged():
    assert decode(NATIVE) == [NATIVE]


def test_legacy_event_without_apiversion_is_accepted():
    legacy = json.loads((GOLDEN / "exec_pod.json").read_text())
    assert "apiVersion" not in legacy
    [event] = decode(legacy)
    assert event["auditID"] == "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6"


def test_eventlist_and_json_array_yield_every_item():
    other = {**NATIVE, "auditID": "second"}
    batch = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [NATIVE, other]}
    assert [e["auditID"] for e in decode(batch)] == [NATIVE["auditID"], "second"]
    assert [e["auditID"] for e in decode([NATIVE, other])] == [NATIVE["auditID"], "second"]


def test_aks_record_with_log_as_string_and_as_object():
    as_string = _lines("test-kube-audit.log")[0]
    [event] = decode(as_string)
    assert event["auditID"] == "ad26f7bc-f1c6-4097-90f1-e0924e12f257"
    assert event[ENVELOPE_KEY] == {
        "format": "aks", "provider": "azure", "cluster": "test-cluster", "category": "kube-audit",
        "resource_id": as_string["resourceId"],
    }
    as_object = _lines("test-audit.log")[4]
    [event] = decode(as_object)
    assert event["verb"] == "update" and event[ENVELOPE_KEY]["category"] == "kube-audit-admin"


def test_azure_event_hubs_batch_with_bom_pretty_printed_files():
    batch = orjson.loads((GOLDEN / "event.json").read_bytes().lstrip(b"\xef\xbb\xbf"))
    events = decode(batch)
    assert len(events) == 22
    assert {e[ENVELOPE_KEY]["provider"] for e in events} == {"azure"}
    assert any(e.get("responseStatus", {}).get("code") == 409 for e in events)


def test_eks_cloudwatch_export_and_subscription_payload():
    export = {"timestamp": 1, "message": json.dumps(NATIVE), "logStream": "kube-apiserver-audit-abc"}
    [event] = decode(export)
    assert event["auditID"] == NATIVE["auditID"]
    assert event[ENVELOPE_KEY]["provider"] == "aws"
    payload = {
        "messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/prod-eu/cluster", "logStream": "kube-apiserver-audit-1",
        "logEvents": [{"id": "1", "timestamp": 1, "message": json.dumps(NATIVE)}] * 2,
    }
    events = decode(payload)
    assert len(events) == 2 and events[0][ENVELOPE_KEY]["cluster"] == "prod-eu"
    assert decode({"messageType": "CONTROL_MESSAGE", "logEvents": []}) == []


def _gke(method_fragment: str) -> dict:
    return next(e for e in _lines("gke_auditlog_tests.jsonl") if method_fragment in json.dumps(e))


def test_gke_exec_entry_maps_onto_event_fields():
    entry = _gke('"core/v1/namespaces/default/pods/nginx-pod/exec"')
    [event] = decode(entry)
    assert event["verb"] == "create"
    assert event["objectRef"] == {"apiGroup": "", "apiVersion": "v1", "namespace": "default", "resource": "pods",
                                  "name": "nginx-pod", "subresource": "exec"}
    assert event["user"]["username"] == entry["protoPayload"]["authenticationInfo"]["principalEmail"]
    assert event["sourceIPs"] == [entry["protoPayload"]["requestMetadata"]["callerIP"]]
    assert event[ENVELOPE_KEY]["provider"] == "gcp"


def test_gke_status_and_authorization_become_code_and_decision():
    entry = _gke("PERMISSION_DENIED")
    [event] = decode(entry)
    assert event["responseStatus"] == {"code": 403, "message": "PERMISSION_DENIED"}
    assert event["objectRef"]["resource"] == "secrets" and event["objectRef"]["name"] == "tls-cert"
    readyz = _lines("test-audit.log")[3]
    [event] = decode(readyz)
    assert event["auditID"] == "1234abcd"
    assert event["requestURI"] == "/readyz" and "objectRef" not in event
    assert event["responseStatus"]["code"] == 200
    assert event["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert event["userAgent"] == "gke-master-healthcheck"
    assert event[ENVELOPE_KEY]["cluster"] == "test-cluster"


def test_gke_request_and_response_bodies_are_kept():
    entry = _gke('"test-privileged-pod"')
    [event] = decode(entry)
    assert event["requestObject"]["spec"]["containers"][0]["securityContext"]["privileged"] is True
    assert "responseObject" in event


@pytest.mark.parametrize(
    "value, reason",
    [
        ({"kind": 0}, "kind 0"),
        ({"kind": "Event", "apiVersion": "v1", "reason": "Scheduled"}, "core Kubernetes Event"),
        ({"protoPayload": {"methodName": "compute.instances.list", "serviceName": "compute.googleapis.com"}}, "not GKE"),
        ({"category": "Administrative", "operationName": "Microsoft.Compute/virtualMachines/write"}, "no properties.log"),
        ({"properties": {"log": "{broken"}}, "not valid JSON"),
        ("just a string", "a string"),
        ({"hello": "world"}, "unrecognised object"),
    ],
)
def test_non_events_raise_a_clear_envelope_error(value, reason):
    with pytest.raises(EnvelopeError, match=reason):
        decode(value)


def test_envelope_error_is_a_value_error():
    assert issubclass(EnvelopeError, ValueError)
