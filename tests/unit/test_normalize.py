"""Documents built from real corpus events carry the fields detections and dashboards rely on."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.envelopes import decode
from kaudit_elk.events.normalize import NormalizeError, NormalizeOptions, doc_id, normalize

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "inputs"


def event(name: str, index: int = 0) -> dict:
    data = (GOLDEN / name).read_bytes().lstrip(b"\xef\xbb\xbf")
    try:
        values = [orjson.loads(data)]
    except orjson.JSONDecodeError:
        values = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    return [e for v in values for e in decode(v)][index]


def doc_of(name: str, index: int = 0, **opts) -> dict:
    doc = normalize(event(name, index), NormalizeOptions(**opts))
    assert doc is not None
    return doc


def test_raw_event_kept_under_kubernetes_audit_with_dedotted_annotations():
    doc = doc_of("k8s-audit-pod-exec-file.log")
    audit = doc["kubernetes"]["audit"]
    assert audit["verb"] == "create" and audit["objectRef"]["subresource"] == "exec"
    assert audit["annotations"]["authorization_k8s_io/decision"] == "allow"
    assert audit["annotations"]["apiserver_latency_k8s_io/etcd"] == "561.927µs"
    assert not any("." in k for k in audit["annotations"])


def test_ecs_fields_of_an_exec_event():
    doc = doc_of("k8s-audit-pod-exec-file.log")
    assert doc["@timestamp"] == "2023-05-17T15:08:22.763960Z"
    assert doc["event"]["end"] == "2023-05-17T15:08:30.619910Z"
    assert doc["event"]["duration"] == 7_855_950_000
    assert doc["event"]["action"] == "create" and doc["event"]["outcome"] == "success"
    assert doc["event"]["category"] == ["process"] and doc["event"]["type"] == ["start", "allowed"]
    assert doc["user"] == {"name": "minikube-user", "group": {"name": ["system:masters", "system:authenticated"]}}
    assert doc["source"]["ip"] == "192.168.49.1"
    assert doc["http"]["response"]["status_code"] == 101
    assert doc["url"]["path"] == "/api/v1/namespaces/foo/pods/test-pod-1/exec"
    assert doc["orchestrator"] == {
        "type": "kubernetes", "cluster": {"name": "default"}, "namespace": "foo",
        "resource": {"type": "pods", "name": "test-pod-1"}, "api_version": "v1",
    }
    # the stream's constants, which Elastic's rules filter on (data_stream.dataset) and report (.namespace)
    assert doc["data_stream"] == {"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "kaudit"}
    assert doc_of("k8s-audit-pod-exec-file.log", namespace="prod")["data_stream"]["namespace"] == "prod"


def test_user_extra_keys_keep_their_dots_as_in_elastic_where_the_engine_can_place_them():
    ev = {"kind": "Event", "auditID": "x", "stage": "ResponseComplete",
          "user": {"username": "system:serviceaccount:security:trivy-operator",
                   "extra": {"authentication.kubernetes.io/pod-name": ["trivy-operator-5d8"], "a": ["1"], "a.b": ["2"],
                             "c..d": ["3"], ".e": ["4"]}},
          "impersonatedUser": {"username": "u", "extra": {"iam.gke.io/user-assertion": ["x"]}},
          "annotations": {"authorization.k8s.io/decision": "allow"}}
    audit = normalize(ev)["kubernetes"]["audit"]
    # Elastic's pipeline dedots annotations only: its rules read user.extra.authentication.kubernetes.io/pod-name
    assert audit["user"]["extra"] == {"authentication.kubernetes.io/pod-name": ["trivy-operator-5d8"], "a": ["1"],
                                      "a_b": ["2"], "c__d": ["3"], "_e": ["4"]}
    assert audit["impersonatedUser"]["extra"] == {"iam.gke.io/user-assertion": ["x"]}
    assert audit["annotations"] == {"authorization_k8s_io/decision": "allow"}
    assert ev["user"]["extra"]["a.b"] == ["2"]  # the input is not changed


def test_exec_command_is_decoded_from_the_request_uri():
    # requestURI holds command=%2Fbin%2Fbash and a JSON-escaped "&" (\u0026)
    assert doc_of("k8s-audit-pod-exec-file.log")["kaudit"]["exec"] == {"command": "/bin/bash", "container": "centos"}
    ev = {**event("exec_pod.json"), "requestURI": "/api/v1/namespaces/d/pods/p/exec?command=sh&command=-c&command=cat+%2Fetc%2Fshadow&container=c1"}
    assert normalize(ev)["kaudit"]["exec"] == {"command": "sh -c cat /etc/shadow", "container": "c1"}


def test_attach_has_container_but_no_command():
    doc = doc_of("attach_pod.json")
    assert "command" not in doc["kaudit"]["exec"]


def test_impersonation_goes_to_user_effective():
    doc = doc_of("demo.log")
    assert doc["user"]["name"] == "system:admin"
    assert doc["user"]["effective"]["name"] == "bob"
    assert doc["related"]["user"] == ["system:admin", "bob"]
    assert doc["event"]["outcome"] == "failure" and "denied" in doc["event"]["type"]
    # legacy v1beta1-era event: no requestReceivedTimestamp, @timestamp from "timestamp"
    assert doc["@timestamp"] == "2017-09-11T19:55:05.000000Z"
    assert "duration" not in doc["event"]


def test_privileged_pod_fields_from_second_container():
    pod = doc_of("create_nginx_pod_privileged_2nd_container.json")["kaudit"]["pod"]
    assert pod["privileged"] is True
    assert pod["images"] == ["nginx", "mysql:latest"]
    assert pod["host_network"] is False


def test_host_network_and_host_path_pods():
    assert doc_of("create_nginx_pod_hostnetwork.json")["kaudit"]["pod"]["host_network"] is True
    assert "/etc" in doc_of("create_nginx_pod_sensitive_mount.json")["kaudit"]["pod"]["host_path"]


def test_pod_spec_in_workload_templates_and_cronjobs():
    pod_spec = {"hostPID": True, "containers": [{"image": "busybox", "securityContext": {
        "capabilities": {"add": ["SYS_ADMIN"]}, "runAsUser": 0, "allowPrivilegeEscalation": True}}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}], "serviceAccountName": "builder"}
    base = {"kind": "Event", "auditID": "a", "stage": "ResponseComplete", "verb": "create"}
    deploy = {**base, "objectRef": {"resource": "deployments"}, "requestObject": {"spec": {"template": {"spec": pod_spec}}}}
    cron = {**base, "objectRef": {"resource": "cronjobs"},
            "requestObject": {"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}}
    for ev in (deploy, cron):
        pod = normalize(ev)["kaudit"]["pod"]
        assert pod["host_pid"] is True and pod["host_path"] == ["/"]
        assert pod["capabilities_add"] == ["SYS_ADMIN"] and pod["run_as_user"] == [0]
        assert pod["allow_privilege_escalation"] is True and pod["service_account"] == "builder"


def test_rbac_fields_from_roles_and_bindings():
    rbac = doc_of("create_cluster_role_wildcard_verbs.json")["kaudit"]["rbac"]
    assert "*" in rbac["verbs"]
    binding = doc_of("attach_cluster_admin_role.json")
    assert binding["kaudit"]["rbac"]["role_ref"] == {"kind": "ClusterRole", "name": "cluster-admin"}
    assert binding["kaudit"]["rbac"]["subjects"]["name"]
    assert binding["event"]["category"] == ["iam"] and binding["event"]["type"][0] == "creation"


def test_service_type():
    assert doc_of("create_nginx_service_nodeport.json")["kaudit"]["service"]["type"] == "NodePort"


def test_managed_fields_are_removed_without_touching_the_input():
    ev = event("k8s-audit-priv-pod-file.log")
    ev["requestObject"]["metadata"]["managedFields"] = [{"fieldsV1": {"f:metadata": {".": {}}}}]
    doc = normalize(ev)
    assert "managedFields" not in doc["kubernetes"]["audit"]["requestObject"]["metadata"]
    assert doc["kubernetes"]["audit"]["requestObject"]["metadata"]["name"] == ev["requestObject"]["metadata"]["name"]
    assert "managedFields" in ev["requestObject"]["metadata"]
    assert "authorization.k8s.io/decision" in ev["annotations"]


def test_json_patch_body_is_wrapped_for_the_flattened_mapping():
    ev = {"kind": "Event", "verb": "patch", "requestObject": [{"op": "add", "path": "/x", "value": 1}]}
    assert normalize(ev)["kubernetes"]["audit"]["requestObject"] == {"json_patch": ev["requestObject"]}


def test_oversized_body_is_replaced_by_a_marker_and_counted():
    ev = event("k8s-audit-priv-pod-file.log")
    ev["requestObject"]["metadata"]["annotations"] = {f"k{i}": "v" * 100 for i in range(200)}
    doc = normalize(ev, NormalizeOptions(max_body_bytes=4096))
    body = doc["kubernetes"]["audit"]["requestObject"]
    assert body["kaudit_truncated"] is True and body["kind"] == "Pod" and body["original_bytes"] > 4096
    assert doc["kaudit"]["body"]["truncated"] is True
    assert doc["kaudit"]["pod"]["privileged"] is True  # typed fields survive truncation


def test_long_leaves_are_cut_with_a_marker():
    ev = {"kind": "Event", "verb": "create", "objectRef": {"resource": "configmaps"},
          "requestObject": {"data": {"big": "é" * 10_000, "small": "ok"}}}
    doc = normalize(ev, NormalizeOptions(max_value_bytes=1000))
    data = doc["kubernetes"]["audit"]["requestObject"]["data"]
    assert data["big"].endswith("...[kaudit:truncated]") and len(data["big"].encode()) < 1100
    assert data["small"] == "ok" and doc["kaudit"]["body"]["truncated"] is True


def test_small_bodies_are_not_marked_truncated():
    doc = doc_of("create_nginx_pod_privileged.json")
    assert set(doc["kaudit"]["body"]) == {"request", "response"}  # the copies, no truncation marker


def test_bodies_are_copied_whole_for_kaudits_searches():
    """kaudit.body.request/response = the raw body as stored (managedFields removed, patch wrapped, cut)."""
    raw = event("create_nginx_pod_privileged.json")
    doc = normalize(raw)
    assert doc["kaudit"]["body"]["request"] == doc["kubernetes"]["audit"]["requestObject"] == raw["requestObject"]
    patch = normalize({**raw, "requestObject": [{"op": "replace", "path": "/spec/replicas", "value": 3}]})
    assert patch["kaudit"]["body"]["request"] == {"json_patch": [{"op": "replace", "path": "/spec/replicas", "value": 3}]}
    managed = normalize({**raw, "requestObject": {"kind": "Pod", "metadata": {"name": "p", "managedFields": [{}]}}})
    assert managed["kaudit"]["body"]["request"] == {"kind": "Pod", "metadata": {"name": "p"}}
    big = normalize({**raw, "requestObject": {"kind": "ConfigMap", "data": {f"k{i}": "x" * 4000 for i in range(40)}}})
    body = big["kaudit"]["body"]
    assert body["truncated"] is True and body["request"][fs.TRUNCATED_BODY_KEY] is True
    assert body["request"] == big["kubernetes"]["audit"]["requestObject"]
    assert "request" not in normalize({k: v for k, v in raw.items() if k != "requestObject"})["kaudit"].get("body", {})


def test_stage_filter():
    ev = {**event("k8s-audit-pod-exec-file.log"), "stage": "RequestReceived"}
    assert normalize(ev) is None
    assert normalize(ev, NormalizeOptions(stages=frozenset({"RequestReceived"}))) is not None
    assert normalize({**ev, "stage": "ResponseStarted"}) is not None


def test_doc_id_is_deterministic_and_distinguishes_inputs():
    a = doc_id("prod", "57a794de", "ResponseComplete")
    assert a == doc_id("prod", "57a794de", "ResponseComplete")
    assert len({a, doc_id("dev", "57a794de", "ResponseComplete"), doc_id("prod", "57a794de", "ResponseStarted")}) == 3
    assert doc_id("a", "bc", "d") != doc_id("ab", "c", "d")


@pytest.mark.parametrize(
    "patch, reason",
    [
        ({"verb": 7}, "'verb' must be str"),
        ({"requestReceivedTimestamp": "yesterday"}, "not a valid timestamp"),
        ({"sourceIPs": "1.2.3.4"}, "'sourceIPs' must be list"),
        ({"responseStatus": {"code": "200"}}, "responseStatus.code"),
        ({"user": "alice"}, "'user' must be dict"),
        ({"requestReceivedTimestamp": "1700-01-01T00:00:00Z", "stageTimestamp": "2200-01-01T00:00:00Z"}, "292 years"),
    ],
)
def test_wrong_types_raise_normalize_error_with_reason(patch, reason):
    with pytest.raises(NormalizeError, match=reason):
        normalize({**event("k8s-audit-pod-exec-file.log"), **patch})


def test_envelope_sets_cloud_and_cluster():
    doc = doc_of("test-kube-audit.log", cluster="ignored")
    assert doc["cloud"]["provider"] == "azure"
    assert doc["orchestrator"]["cluster"]["name"] == "test-cluster"
    assert doc["kaudit"]["envelope"]["format"] == "aks"
    assert "_kaudit_envelope" not in doc["kubernetes"]["audit"]
    assert doc_of("k8s-audit-pod-exec-file.log", cluster="prod")["orchestrator"]["cluster"]["name"] == "prod"


def test_keep_original_and_non_iso_timestamps():
    ev = event("eks_audit_tests.jsonl", 2)  # Panther-style "2024-11-13 18:34:10.595141000"
    doc = normalize(ev, NormalizeOptions(keep_original=True))
    assert doc["@timestamp"] == "2024-11-13T18:34:10.595141Z"
    assert doc["event"]["duration"] == 353_000
    assert json.loads(doc["event"]["original"]) == ev


def test_invalid_source_ips_are_left_out_of_ip_fields():
    doc = normalize({"kind": "Event", "verb": "get", "sourceIPs": ["unknown", "10.0.0.1", "::1"]})
    assert doc["source"]["ip"] == "10.0.0.1" and doc["related"]["ip"] == ["10.0.0.1", "::1"]


def test_every_corpus_event_normalizes_or_fails_clearly():
    from kaudit_elk.events.sources import read_records

    count = 0
    for record in read_records(sorted(str(p) for p in GOLDEN.iterdir())):
        if record.event is None:
            continue
        doc = normalize(record.event)
        assert doc is None or doc["event"]["dataset"] == "kubernetes.audit_logs"
        count += 1
    assert count > 350


def test_every_emitted_field_is_declared_for_the_index_template():
    from kaudit_elk.events import fieldspec as fs

    def leaves(obj, prefix=""):
        for k, v in obj.items():
            path = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                yield from leaves(v, path + ".")
            else:
                yield path

    undeclared = set()
    for name in ("k8s-audit-pod-exec-file.log", "demo.log", "create_nginx_pod_sensitive_mount.json",
                 "attach_cluster_admin_role.json", "create_nginx_service_nodeport.json", "test-kube-audit.log"):
        doc = doc_of(name)
        doc.pop("kubernetes")
        body = doc.get("kaudit", {}).get("body", {})
        for copy in fs.FLAT_FIELDS:  # the body copies: flattened, any path
            body.pop(copy.rsplit(".", 1)[1], None)
        if not body:
            doc.get("kaudit", {}).pop("body", None)
        undeclared |= {p for p in leaves(doc) if p not in fs.TYPED_FIELDS}
    assert not undeclared
