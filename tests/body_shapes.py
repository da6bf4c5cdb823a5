"""Bodies whose typed paths (fieldspec.ELASTIC_BODY_FIELDS) have a shape their mapping cannot take, and
controls that fit: one case per shape rule of fieldspec.BODY_SHAPES.

Each case is (name, event fragment merged over :func:`event`, the ``kaudit.body.untyped`` the document
must hold (``None``: absent, the typed body is the whole body), the engine flavors that refuse the
document when the typed body is left whole). Used by tests/unit/test_body_shapes.py (Python ≡ native),
tests/engine/test_body_shapes_engine.py (≡ the ingest pipeline; the refusals and ``kaudit-elk ingest``
on the real engines).
"""

from __future__ import annotations

import copy
import random
from typing import Any

from kaudit_elk.events import fieldspec as fs

BOTH = frozenset({"opensearch", "elasticsearch"})
ES = frozenset({"elasticsearch"})
NONE: frozenset[str] = frozenset()

_POD_REF = {"resource": "pods", "namespace": "shop", "name": "web", "apiVersion": "v1"}
_CR_REF = {"resource": "widgets", "namespace": "shop", "name": "w1", "apiGroup": "example.com", "apiVersion": "v1"}


def event(name: str, fragment: dict[str, Any]) -> dict[str, Any]:
    """A complete RequestResponse audit Event for a case (auditID = the case name)."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": f"shape-{name}",
        "stage": "ResponseComplete", "requestURI": "/apis/example.com/v1/namespaces/shop/widgets", "verb": "create",
        "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]}, "sourceIPs": ["203.0.113.7"],
        "userAgent": "kubectl/v1.31.0", "objectRef": _CR_REF, "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000001Z", "stageTimestamp": "2026-03-01T10:00:00.002000Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
        **fragment,
    }


CASES: list[tuple[str, dict[str, Any], list[str] | None, frozenset[str]]] = [
    # --- object paths hold a scalar or a list of scalars
    ("cr-spec-string", {"requestObject": {"apiVersion": "example.com/v1", "kind": "Widget",
                                          "metadata": {"name": "w1"}, "spec": "opaque-blob"}}, ["request.spec"], BOTH),
    ("cr-spec-scalar-list", {"requestObject": {"kind": "Widget", "spec": ["a", "b"]},
                             "responseObject": {"kind": "Widget", "spec": ["a", "b"], "status": {"ok": True}}},
     ["request.spec", "response.spec"], BOTH),
    ("cr-rules-string", {"requestObject": {"kind": "Policy", "rules": "allow-all"}}, ["request.rules"], BOTH),
    ("cr-rules-scalar-list", {"requestObject": {"kind": "Policy", "rules": ["allow", "deny"]}}, ["request.rules"], BOTH),
    ("cr-roleref-string", {"requestObject": {"kind": "Grant", "roleRef": "cluster-admin"}}, ["request.roleRef"], BOTH),
    ("containers-list-with-a-scalar", {"objectRef": _POD_REF, "requestObject": {
        "kind": "Pod", "spec": {"containers": [{"name": "a", "image": "nginx"}, "sidecar"]}}},
     ["request.spec.containers"], BOTH),
    # --- typed leaves hold an object
    ("cr-spec-type-object", {"requestObject": {"kind": "Gateway", "spec": {"type": {"name": "internal"}, "port": 80}}},
     ["request.spec.type"], ES),
    ("response-hostnetwork-object", {"responseObject": {"kind": "Widget", "spec": {"hostNetwork": {"enabled": True}}}},
     ["response.spec.hostNetwork"], ES),
    ("capabilities-list-with-an-object", {"objectRef": _POD_REF, "requestObject": {"kind": "Pod", "spec": {"containers": [
        {"name": "a", "image": "nginx", "securityContext": {"capabilities": {"add": ["NET_ADMIN", {"all": True}]}}}]}}},
     ["request.spec.containers.securityContext.capabilities.add"], ES),
    ("hostpath-string", {"objectRef": _POD_REF, "requestObject": {"kind": "Pod", "spec": {
        "volumes": [{"name": "v", "hostPath": "/etc"}], "containers": [{"name": "a", "image": "nginx"}]}}},
     ["request.spec.volumes.hostPath"], ES),
    # --- scalars of the wrong kind (the engines keep the document and drop the value as malformed)
    ("privileged-string-in-second-container", {"objectRef": _POD_REF, "requestObject": {"kind": "Pod", "spec": {
        "containers": [{"name": "a", "image": "nginx", "securityContext": {"privileged": False}},
                       {"name": "b", "image": "busybox", "securityContext": {"privileged": "yes"}}]}}},
     ["request.spec.containers.securityContext.privileged"], NONE),
    ("run-as-user-out-of-integer-range", {"objectRef": _POD_REF, "requestObject": {"kind": "Pod", "spec": {
        "securityContext": {"runAsUser": 3000000000}, "containers": [{"name": "a", "image": "nginx"}]}}},
     ["request.spec.securityContext.runAsUser"], NONE),
    # --- keys: dotted, through a leaf, empty or blank steps
    ("dotted-key-to-a-leaf", {"requestObject": {"kind": "Widget", "spec.type": {"name": "x"}}}, ["request.spec.type"], ES),
    ("dotted-key-through-a-leaf", {"requestObject": {"kind": "Widget", "spec": {"type.name": "x"}}},
     ["request.spec.type.name"], BOTH),
    ("unplaceable-keys", {"requestObject": {"kind": "Widget", ".hidden": 1, "": 2, "a..b": 3, "spec": {"replicas": 2}}},
     ["request.", "request..hidden", "request.a..b"], BOTH),
    ("blank-key-in-spec", {"requestObject": {"kind": "Widget", "spec": {" ": "x", "replicas": 1}}}, ["request.spec. "], ES),
    # --- controls: bodies that fit (the typed body is the whole body)
    ("privileged-pod-fits", {"objectRef": _POD_REF, "requestObject": {"kind": "Pod", "spec": {
        "hostPID": True, "securityContext": {"runAsUser": 0},
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "a", "image": "nginx", "securityContext": {"privileged": True,
                                                                            "capabilities": {"add": ["SYS_ADMIN"]}}}]}}},
     None, NONE),
    ("odd-keys-below-unmapped-paths-fit", {"objectRef": {"resource": "secrets", "namespace": "shop", "name": "pull",
                                                         "apiVersion": "v1"},
                                           "requestObject": {"kind": "Secret", "type": "kubernetes.io/dockercfg",
                                                             "data": {".dockercfg": "e30=", "": "x", "a..b": "y"},
                                                             "metadata": {"labels": {"app.kubernetes.io/name": "x"}}}},
     None, NONE),
    ("nested-lists-of-objects-fit", {"requestObject": {"kind": "Widget", "spec": {"containers": [[{"image": "a"}], None]}}},
     None, NONE),
    ("rules-verbs-string-and-number-fit", {"objectRef": {"resource": "roles", "namespace": "shop", "name": "r",
                                                         "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
                                           "requestObject": {"kind": "Role", "rules": [{"verbs": "get"}, {"verbs": 5}]}},
     None, NONE),
    ("json-patch-fits", {"verb": "patch", "requestObject": [{"op": "replace", "path": "/spec", "value": "x"}]}, None, NONE),
]


def events() -> list[tuple[str, dict[str, Any], list[str] | None, frozenset[str]]]:
    """(name, complete event, expected kaudit.body.untyped, flavors refusing the unfixed document)."""
    return [(name, event(name, fragment), untyped, refused) for name, fragment, untyped, refused in CASES]


#: Values put at typed paths (no integer beyond 64 signed bits: OpenSearch's script processors refuse those).
_LEAVES = ["x", "", 0, -1, 2**31 - 1, -(2**31), 2**31, 2**40, 1.5, True, False, None, {}, {"a": 1}, [], ["a"], [1],
           [True], [{"a": 1}], [None], [["a"]], [[{"a": 1}]], ["a", {"b": 1}], [1, "a", False]]
#: Keys put on the way to a typed path: dotted, empty, blank (ASCII, Java-only and Unicode blanks), or plain.
_ODD_KEYS = ["", " ", ".x", "a.", "a..b", "type.x", "spec.type", "\u3000", "\x1c", "\u00a0x", "x.\u2003", "naïve"]


def mutants(rng: random.Random, n: int) -> list[dict]:
    """Pods and Roles with a random value at a random typed path (or a random odd key on the way)."""
    paths = [p.split(".", 3)[3] for p in fs.ELASTIC_BODY_FIELDS if p.startswith("kubernetes.audit.requestObject.")]
    out = []
    for i in range(n):
        body = {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "nginx"}], "hostPID": True},
                "rules": [{"verbs": ["get"], "resources": ["pods"]}]}
        steps = rng.choice(paths).split(".")
        steps = steps[: rng.randint(1, len(steps))]
        if rng.random() < 0.2:
            steps[rng.randrange(len(steps))] = rng.choice(_ODD_KEYS)
        node = body
        for step in steps[:-1]:
            nxt = node.get(step)
            if isinstance(nxt, list) and nxt and isinstance(nxt[0], dict):
                nxt = nxt[0]
            if not isinstance(nxt, dict):
                nxt = node[step] = {}
            node = nxt
        node[steps[-1]] = copy.deepcopy(rng.choice(_LEAVES))
        out.append({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": f"m{i}", "stage": "ResponseComplete",
                    "verb": "create", "requestReceivedTimestamp": "2026-01-01T00:00:00.000001Z",
                    "objectRef": {"resource": "pods", "namespace": "d", "name": "p", "apiVersion": "v1"},
                    "requestObject": body, "responseObject": copy.deepcopy(body)})
    return out
