"""Derived fields (kaudit.*): values computed the way the apiserver interprets the request."""

from __future__ import annotations

from kaudit_elk.rules.derived import actor_namespace, exec_command, query_values, request_grants
from kaudit_elk.rules.compiler import QueryTarget, compile_rule_query
from kaudit_elk.rules.loader import default_pack_dir, load_rules


def _sa(user: str, groups: list[str]) -> dict:
    return {"user": {"username": user, "groups": groups}}


def test_actor_namespace_follows_serviceaccount_split_username():
    assert actor_namespace(_sa("system:serviceaccount:argocd:controller", ["system:serviceaccounts:argocd"])) == ["argocd"]
    # case-sensitive prefix, exactly two parts, valid names, and the token authenticator's group
    assert actor_namespace(_sa("System:ServiceAccount:argocd:controller", ["system:serviceaccounts:argocd"])) == []
    assert actor_namespace(_sa("system:serviceaccount:argocd:a:b", ["system:serviceaccounts:argocd"])) == []
    assert actor_namespace(_sa("system:serviceaccount:Argocd:x", ["system:serviceaccounts:Argocd"])) == []
    assert actor_namespace(_sa("system:serviceaccount:argocd:controller", ["system:authenticated"])) == []
    assert actor_namespace({"user": "nonsense"}) == []


def test_exec_command_is_decoded_like_go_parse_query():
    uri = ("/api/v1/namespaces/a/pods/b/exec?command=sh&command=-c&command=%63url+-sL+https%3A%2F%2Fx"
           "&co%6dmand=id&command=a;b&command=%zz&container=app")
    assert exec_command({"requestURI": uri}) == ["sh", "-c", "curl -sL https://x", "id"]
    assert query_values("/x?dryRun=All", "dryRun") == ["All"]
    assert exec_command({"requestURI": "/api/v1/namespaces/a/pods/b/exec"}) == []


def test_rbac_grants_combine_within_one_rule_only():
    body = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                      {"apiGroups": ["s3.aws.upbound.io"], "resources": ["*"], "verbs": ["*"]}]}
    assert request_grants({"requestObject": body}) == ["|pods|get", "s3.aws.upbound.io|*|*"]
    assert request_grants({"requestObject": [{"op": "add"}]}) == []


def test_rules_reading_derived_fields_are_rechecked_client_side_in_the_engine():
    pack = load_rules([default_pack_dir()])
    target = QueryTarget("opensearch")
    users = [r for r in pack.single if "kaudit." in open(r.path, encoding="utf-8").read().split("\ndetection:")[1]
             .split("\nfalsepositives:")[0]]
    assert len(users) >= 8
    for r in users:
        assert not compile_rule_query(r, target).exact, r.title
