"""The audit Policy evaluator against the apiserver's own test cases, and its validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaudit_elk.base.errors import ContentError
from kaudit_elk.trail.policy import Attributes, UserInfo, evaluate, load_policy

CASES = yaml.safe_load((Path(__file__).parent / "data" / "audit_policy_checker_cases.yaml").read_text())


def _attrs(spec: dict) -> Attributes:
    user = spec.get("user")
    return Attributes(UserInfo(user["name"], tuple(user["groups"])) if user else None, spec["verb"],
                      spec["resourceRequest"], spec.get("namespace", ""), spec.get("apiGroup", ""),
                      spec.get("resource", ""), spec.get("subresource", ""), spec.get("name", ""), spec.get("path", ""))


def _policy(rule_names: list[str], omit: list[str]) -> str:
    return yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": omit,
                           "rules": [CASES["rules"][n] for n in rule_names]})


@pytest.mark.parametrize("omit", [[], ["RequestReceived", "ResponseStarted"]])
@pytest.mark.parametrize("case", CASES["levels"], ids=lambda c: f"{c[0]}-{'+'.join(c[2:])}")
def test_levels_as_the_apiserver_decides(case: list, omit: list[str]) -> None:
    request, level, *rules = case
    decision = evaluate(load_policy(_policy(rules, omit)), _attrs(CASES["requests"][request]))
    assert decision.level == level
    assert decision.omit_stages == frozenset(omit)


@pytest.mark.parametrize("case", CASES["stages"], ids=lambda c: f"{c[0]}-{c[4]}-{len(c[2])}")
def test_rule_omit_stages_union_the_policys(case: list) -> None:
    request, level, policy_omit, expected, *rules = case
    decision = evaluate(load_policy(_policy(rules, policy_omit)), _attrs(CASES["requests"][request]))
    assert (decision.level, decision.omit_stages) == (level, frozenset(expected))


@pytest.mark.parametrize("policy_default,rule_value,want", [(False, None, False), (True, None, True),
                                                            (True, False, False), (False, True, True)])
def test_omit_managed_fields_rule_overrides_policy(policy_default: bool, rule_value: bool | None, want: bool) -> None:
    rule = {"level": "RequestResponse", "verbs": ["get"]}
    if rule_value is not None:
        rule["omitManagedFields"] = rule_value
    pol = load_policy(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                      "omitManagedFields": policy_default, "rules": [rule]}))
    assert evaluate(pol, Attributes(None, "get")).omit_managed_fields is want


def test_resource_wildcards_and_resource_names() -> None:
    pol = load_policy("""
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources: [{group: "", resources: [configmaps], resourceNames: [controller-leader]}]
  - level: Request
    resources: [{group: "", resources: ["pods/*"]}]
  - level: RequestResponse
    resources: [{group: apps, resources: ["*/scale"]}]
  - level: Metadata
""")
    u = UserInfo("alice", ("system:authenticated",))
    def level(**kw) -> str:
        return evaluate(pol, Attributes(u, kw.pop("verb", "get"), True, **kw)).level
    assert level(namespace="kube-system", resource="configmaps", name="controller-leader") == "None"
    assert level(namespace="kube-system", resource="configmaps", name="other") == "Metadata"
    assert level(namespace="a", resource="pods") == "Request"  # "pods/*" also matches the resource itself
    assert level(namespace="a", resource="pods", subresource="exec") == "Request"
    assert level(namespace="a", api_group="apps", resource="deployments", subresource="scale") == "RequestResponse"
    assert level(namespace="a", api_group="apps", resource="deployments") == "Metadata"
    assert level(namespace="a", api_group="", resource="deployments", subresource="scale") == "Metadata"


def test_non_resource_urls_need_a_non_resource_request() -> None:
    pol = load_policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
                      "  - {level: None, nonResourceURLs: ['/healthz*', /version]}\n  - {level: Metadata}\n")
    u = UserInfo("alice", ("system:authenticated",))
    assert evaluate(pol, Attributes(u, "get", False, path="/healthz/etcd")).level == "None"
    assert evaluate(pol, Attributes(u, "get", False, path="/version")).level == "None"
    assert evaluate(pol, Attributes(u, "get", False, path="/versions")).level == "Metadata"
    assert evaluate(pol, Attributes(u, "get", True, resource="healthz")).level == "Metadata"


def test_invalid_policies_are_refused_with_file_and_line() -> None:
    text = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestRecieved]
rules:
  - level: Metadata
  - level: Everything
  - level: None
    nonResourceURLs: [healthz, /a*b]
    resources: [{group: rbac.authorization.k8s.io/v1, resourceNames: [x]}]
"""
    with pytest.raises(ContentError) as err:
        load_policy(text, "audit-policy.yaml")
    msg = str(err.value)
    assert "RequestRecieved" in msg and "allowed stages" in msg
    assert "audit-policy.yaml:6: rules[1]: level 'Everything'" in msg
    assert "audit-policy.yaml:7: rules[2].nonResourceURLs[0]: 'healthz'" in msg
    assert "'/a*b': a wildcard" in msg
    assert "rbac.authorization.k8s.io/v1" in msg and "requires at least one resource" in msg
    assert "both regular resources and non-resource URLs" in msg


def test_zero_rules_wrong_kind_and_unknown_fields() -> None:
    with pytest.raises(ContentError, match="0 rules"):
        load_policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n")
    with pytest.raises(ContentError, match="audit.k8s.io/v1"):
        load_policy("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n")
    pol = load_policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - {level: None, levl: x}\n", "p.yaml")
    assert pol.warnings == ("p.yaml:4: rules[0]: unknown field 'levl' (the apiserver ignores it)",)


def test_no_rule_matches_means_none() -> None:
    pol = load_policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Panic]\nrules:\n  - {level: Metadata, verbs: [create]}\n")
    d = evaluate(pol, Attributes(UserInfo("a"), "get"))
    assert (d.level, d.rule, d.omit_stages) == ("None", None, frozenset({"Panic"}))
