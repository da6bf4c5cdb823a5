"""Sigma semantics of the local evaluator on raw audit Event dicts."""

from __future__ import annotations

import pytest
from sigma.rule import SigmaRule

from kaudit_elk.rules.evaluator import compile_rule, field_getter, required_values


def pred(detection: dict, placeholders=None):
    rule = SigmaRule.from_dict({"title": "t", "logsource": {"product": "kubernetes", "service": "audit"},
                                "detection": detection})
    return compile_rule(rule, placeholders)


def sel(item: dict, placeholders=None):
    return pred({"s": item, "condition": "s"}, placeholders)


EVENT = {
    "verb": "create",
    "user": {"username": "Alice@Example.com", "groups": ["devs", "system:authenticated"]},
    "sourceIPs": ["10.1.2.3", "198.51.100.7"],
    "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
    "objectRef": {"resource": "pods", "namespace": "default"},
    "responseStatus": {"code": 201},
    "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io": "decoy"},
    "requestObject": {"spec": {"hostPID": True, "containers": [
        {"name": "a", "image": "nginx", "securityContext": {"privileged": False}},
        {"name": "b", "image": "busybox", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}},
    ]}},
    "user_extra": None,
}


@pytest.mark.parametrize("item,expected", [
    ({"verb": "CREATE"}, True),  # case-insensitive
    ({"verb": ["get", "create"]}, True),  # list = OR
    ({"verb": "cre*"}, True),
    ({"verb": "cr?ate"}, True),
    ({"verb": "cr?te"}, False),
    ({"user.username|contains": "example"}, True),
    ({"user.username|startswith": "alice"}, True),
    ({"user.username|endswith": ".com"}, True),
    ({"user.username|re": "^Alice@"}, True),
    ({"user.username|re": "^alice@"}, False),  # regex is case-sensitive
    ({"user.groups": "devs"}, True),  # list field: any element
    ({"user.groups|all": ["devs", "system:authenticated"]}, True),
    ({"user.groups|all": ["devs", "admins"]}, False),
    ({"sourceIPs|cidr": "198.51.100.0/24"}, True),
    ({"sourceIPs|cidr": "192.168.0.0/16"}, False),
    ({"responseStatus.code": 201}, True),
    ({"responseStatus.code": "201"}, True),  # number vs string
    ({"responseStatus.code|gte": 200}, True),
    ({"responseStatus.code|lt": 200}, False),
    ({"responseStatus.code|gt": 200}, True),
    ({"responseStatus.code|lte": 201}, True),
    ({"requestObject.spec.hostPID": True}, True),
    ({"requestObject.spec.hostPID": "true"}, True),
    ({"requestObject.spec.hostNetwork": True}, False),
    ({"requestObject.spec.containers.securityContext.privileged": True}, True),  # any element of a list
    ({"requestObject.spec.containers.securityContext.capabilities.add": "sys_admin"}, True),
    ({"annotations.authorization.k8s.io/decision": "allow"}, True),  # dotted key, longest match wins
    ({"requestObject.spec.hostIPC": None}, True),  # null = missing
    ({"verb": None}, False),
    ({"requestObject.spec.hostIPC|exists": False}, True),
    ({"verb|exists": True}, True),
    ({"requestObject.spec": "busybox"}, True),  # an object path matches any of its leaf values
    ({"requestObject.spec": "busy"}, False),
    ({"requestObject.spec.containers|contains": "busy"}, True),  # object: searched by leaf values
])
def test_field_semantics(item, expected):
    assert sel(item)(EVENT) is expected


def test_conditions_not_and_one_of():
    p = pred({"sel": {"verb": "create"}, "filter_a": {"user.username|startswith": "system:"},
              "filter_b": {"objectRef.namespace": "kube-system"}, "condition": "sel and not 1 of filter_*"})
    assert p(EVENT)
    assert not p({**EVENT, "objectRef": {"resource": "pods", "namespace": "kube-system"}})
    assert p({**EVENT, "user": {}})  # missing field: the filter does not match, so NOT is true


def test_keyword_search_and_escaped_wildcard():
    assert pred({"k": ["busybox"], "condition": "k"})(EVENT)
    star = sel({"requestObject.rules.verbs": "\\*"})
    assert star({"requestObject": {"rules": [{"verbs": ["*"]}]}})
    assert not star({"requestObject": {"rules": [{"verbs": ["get"]}]}})


def test_placeholders_expand_and_unknown_matches_nothing():
    item = {"user.username|expand": "%allowed%"}
    assert sel(item, {"allowed": ["alice@*"]})(EVENT)
    assert not sel(item, {"allowed": ["bob"]})(EVENT)
    assert not sel(item)(EVENT)


def test_base64offset_modifier():
    import base64

    event = {"requestObject": {"spec": {"request": base64.b64encode(b"xxO=system:masters,CN=eve").decode()}}}
    assert sel({"requestObject.spec.request|base64offset|contains": "system:masters"})(event)


def test_field_getter_prefers_longest_key():
    get = field_getter("user.extra.authentication.kubernetes.io/pod-name")
    assert get({"user": {"extra": {"authentication.kubernetes.io/pod-name": ["web-1"], "authentication": {"x": 1}}}}) == ["web-1"]
    assert get({"user": {}}) == []


def test_required_values_index_rules_by_resource():
    rule = SigmaRule.from_dict({"title": "t", "logsource": {"product": "kubernetes", "service": "audit"},
                                "detection": {"s": {"objectRef.resource": ["Pods", "secrets"], "verb": "get"},
                                              "condition": "s"}})
    assert required_values(rule, "objectRef.resource") == {"pods", "secrets"}
    rule2 = SigmaRule.from_dict({"title": "t", "logsource": {"product": "kubernetes", "service": "audit"},
                                 "detection": {"a": {"objectRef.resource": "pods"}, "b": {"verb": "get"},
                                               "condition": "a or b"}})
    assert required_values(rule2, "objectRef.resource") is None
