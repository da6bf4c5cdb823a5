"""The Sigma -> Query DSL / Lucene compiler: the DSL for each construct, per engine flavor, and the
engine-evaluation helpers that need no engine (document -> raw event, matches-given runner mode)."""

from __future__ import annotations

from typing import Any

import pytest
from sigma.rule import SigmaRule

from kaudit_elk.events.normalize import normalize
from kaudit_elk.rules.compiler import (
    MATCH_ALL,
    MATCH_NONE,
    QueryTarget,
    UnsupportedInEngine,
    compile_lucene,
    compile_query,
    compile_rule_query,
    doc_field,
    field_kind,
    lucene_regexp,
)
from kaudit_elk.detect.engine_search import doc_event, in_event_time_order, pack_fields, redot_keys
from kaudit_elk.rules.evaluator import compile_rule
from kaudit_elk.rules.loader import PackRule, default_pack_dir, load_rules
from kaudit_elk.rules.runner import Runner

ES = QueryTarget("elasticsearch")
OS = QueryTarget("opensearch")


def rule(detection: dict[str, Any], exceptions: list[dict[str, Any]] | None = None) -> PackRule:
    def sigma(det: dict[str, Any]) -> SigmaRule:
        return SigmaRule.from_dict({"title": "t", "id": "11111111-1111-1111-1111-111111111111",
                                    "logsource": {"product": "kubernetes", "service": "audit"}, "detection": det})

    r = PackRule(id="r1", title="t", level="high", kind="single", sigma=sigma(detection), path="x.yml")
    r.predicate = compile_rule(r.sigma)  # type: ignore[arg-type]
    for det in exceptions or []:
        pred = compile_rule(sigma(det))
        pred.sigma = sigma(det)  # type: ignore[attr-defined]
        r.exceptions.append(pred)
    return r


def dsl(item: dict[str, Any], target: QueryTarget = ES, placeholders: dict | None = None):
    c = compile_rule_query(rule({"sel": item, "condition": "sel"}), target, placeholders)
    return c.query, c.reasons


F = "kubernetes.audit."
REQ = "kaudit.body.request"  # the flattened body copy the compiler searches body paths in
RESP = "kaudit.body.response"


def test_field_names_and_kinds():
    assert doc_field("annotations.authorization.k8s.io/decision") == F + "annotations.authorization_k8s_io/decision"
    # user.extra keys keep their dots, as Elastic's integration stores them
    assert doc_field("user.extra.authentication.kubernetes.io/pod-name") == F + "user.extra.authentication.kubernetes.io/pod-name"
    assert field_kind("user.extra.authentication.kubernetes.io/pod-name") == "keyword"
    # text as in Elastic's integration: exact queries go to the keyword multi-field
    for name in ("user.groups", "impersonatedUser.groups", "sourceIPs"):
        assert doc_field(name) == F + name + ".keyword" and field_kind(name) == "keyword"
    assert doc_field("objectRef.resource") == F + "objectRef.resource"
    assert field_kind("verb") == "keyword"
    assert field_kind("responseStatus.code") == "integer"
    assert field_kind("requestObject.spec.hostNetwork") == "body"
    assert field_kind("requestObject.data") == "body_object"
    assert field_kind("requestObject") == "body_root"
    assert field_kind("annotations.pod-security.kubernetes.io/enforce-policy") == "keyword"
    assert field_kind("responseStatus.message") == "text"
    assert field_kind("metadata.creationTimestamp") is None


def test_plain_string_is_a_case_insensitive_term():
    assert dsl({"verb": "create"}) == ({"term": {F + "verb": {"value": "create", "case_insensitive": True}}}, ())


def test_cased_modifier_drops_case_insensitivity():
    assert dsl({"verb|cased": "Create"})[0] == {"term": {F + "verb": {"value": "Create"}}}


def test_startswith_is_a_prefix_and_contains_a_wildcard():
    assert dsl({"userAgent|startswith": "curl/"})[0] == {"prefix": {F + "userAgent": {"value": "curl/", "case_insensitive": True}}}
    assert dsl({"requestURI|contains": "a*b?"})[0] == {"wildcard": {F + "requestURI": {"value": "*a*b?*", "case_insensitive": True}}}
    assert dsl({"requestURI|contains": "a\\*b"})[0] == {"wildcard": {F + "requestURI": {"value": "*a\\*b*", "case_insensitive": True}}}
    assert dsl({"requestURI|endswith": "/exec"})[0] == {"wildcard": {F + "requestURI": {"value": "*/exec", "case_insensitive": True}}}
    assert dsl({"requestURI": "/api/*/pods?x"})[0] == {"wildcard": {F + "requestURI": {"value": "/api/*/pods?x", "case_insensitive": True}}}


def test_lists_are_or_and_merge_into_one_regexp_per_shape():
    q, _ = dsl({"user.username": ["alice", "bob"]})
    assert q == {"regexp": {F + "user.username": {"value": "(alice|bob)", "flags": "NONE", "case_insensitive": True,
                                                   "max_determinized_states": 100000}}}
    q, _ = dsl({"userAgent|contains": ["curl", "wget"]})
    assert q["regexp"][F + "userAgent"]["value"] == ".*(curl|wget).*"
    q, _ = dsl({"userAgent|startswith": ["a.b", "c"]})
    assert q["regexp"][F + "userAgent"]["value"] == "(a\\.b|c).*"
    assert dsl({"verb": ["get"]})[0] == {"term": {F + "verb": {"value": "get", "case_insensitive": True}}}


def test_all_modifier_is_and():
    q, _ = dsl({"requestURI|contains|all": ["a", "b"]})
    assert q == {"bool": {"filter": [
        {"wildcard": {F + "requestURI": {"value": "*a*", "case_insensitive": True}}},
        {"wildcard": {F + "requestURI": {"value": "*b*", "case_insensitive": True}}}]}}


def test_integer_field_numbers_text_and_ranges():
    assert dsl({"responseStatus.code": 403})[0] == {"term": {F + "responseStatus.code": 403}}
    assert dsl({"responseStatus.code": "403"})[0] == {"term": {F + "responseStatus.code": 403}}
    assert dsl({"responseStatus.code": "forbidden"})[0] == MATCH_NONE
    assert dsl({"responseStatus.code|gte": 400})[0] == {"range": {F + "responseStatus.code": {"gte": 400}}}
    assert dsl({"responseStatus.code|lt": 300})[0] == {"range": {F + "responseStatus.code": {"lt": 300}}}


def test_comparison_on_a_text_indexed_field_is_unsupported_and_relaxed():
    q, reasons = dsl({"requestObject.spec.replicas|gt": 3})
    assert q == MATCH_ALL and "numeric comparison" in reasons[0]


def test_body_values_are_strings():
    assert dsl({"requestObject.spec.hostNetwork": True})[0] == {
        "term": {REQ + ".spec.hostNetwork": {"value": "true", "case_insensitive": True}}}
    # numeric text: a JSON number compares by value, a string by text -> spellings prefilter, client decides
    q, reasons = dsl({"requestObject.spec.securityContext.runAsUser": "0"})
    assert q == {"bool": {"should": [{"term": {REQ + ".spec.securityContext.runAsUser": "0"}},
                                     {"term": {REQ + ".spec.securityContext.runAsUser": "0.0"}}],
                          "minimum_should_match": 1}}
    assert "numeric text" in reasons[0]
    q, reasons = dsl({"requestObject.spec.securityContext.runAsUser": 0})  # "00", "0e0" equal 0 too
    assert q == MATCH_ALL and reasons


def test_json_patch_paths_also_search_the_wrapped_patch_array():
    q, _ = dsl({"requestObject.op": "replace"})
    assert q == {"bool": {"should": [
        {"term": {REQ + ".op": {"value": "replace", "case_insensitive": True}}},
        {"term": {REQ + ".json_patch.op": {"value": "replace", "case_insensitive": True}}}],
        "minimum_should_match": 1}}
    assert dsl({"requestObject.spec.op": "x"})[0] == {"term": {REQ + ".spec.op": {"value": "x", "case_insensitive": True}}}


def test_body_wildcards_differ_between_flattened_and_flat_object():
    item = {"requestObject.spec.containers.image|contains": "busybox"}
    q, reasons = dsl(item, ES)  # keyed flattened fields reject wildcard: the body root's leaves prefilter
    assert q == {"wildcard": {REQ: {"value": "*busybox*", "case_insensitive": True}}}
    assert "flattened" in reasons[0]
    q, reasons = dsl(item, OS)
    assert q == {"wildcard": {REQ + ".spec.containers.image": {"value": "*busybox*", "case_insensitive": True}}}
    assert not reasons
    # a prefix works on both
    q, reasons = dsl({"requestObject.spec.containers.image|startswith": "busybox"}, ES)
    assert q["prefix"] and not reasons


def test_exists_and_null():
    assert dsl({"impersonatedUser.username|exists": True})[0] == {"exists": {"field": F + "impersonatedUser.username"}}
    assert dsl({"impersonatedUser.username|exists": False})[0] == {
        "bool": {"must_not": [{"exists": {"field": F + "impersonatedUser.username"}}]}}
    assert dsl({"requestObject.spec.hostPID|exists": True})[0] == {"prefix": {REQ + ".spec.hostPID": {"value": ""}}}
    assert dsl({"userAgent": None})[0] == {"bool": {"must_not": [{"exists": {"field": F + "userAgent"}}]}}


def test_body_object_paths_are_client_side_with_the_right_polarity():
    # exists: false on an object: the unsupported leaf becomes match_none under the NOT -> everything
    q, reasons = dsl({"verb": "create", "requestObject.spec.tls|exists": False})
    assert q == {"term": {F + "verb": {"value": "create", "case_insensitive": True}}}
    assert "object" in reasons[0]
    q, reasons = dsl({"requestObject.data|contains": "password"})
    assert q == {"wildcard": {REQ: {"value": "*password*", "case_insensitive": True}}} and reasons
    r = rule({"s": {"verb": "get"}, "f": {"requestObject.data|contains": "x"}, "condition": "s and not f"})
    assert compile_rule_query(r, ES).query == {"term": {F + "verb": {"value": "get", "case_insensitive": True}}}


def test_not_of_unsupported_leaf_is_relaxed_to_a_superset():
    r = rule({"sel": {"verb": "get"}, "filter": {"requestObject.data|contains": "x"}, "condition": "sel and not filter"})
    c = compile_rule_query(r, ES)
    assert c.query == {"term": {F + "verb": {"value": "get", "case_insensitive": True}}} and not c.exact
    with pytest.raises(UnsupportedInEngine, match="r1"):
        compile_query(r, ES)


def test_cidr_uses_related_ip_for_source_ips_and_prefixes_elsewhere():
    assert dsl({"sourceIPs|cidr": "10.0.0.0/8"})[0] == {"term": {"related.ip": "10.0.0.0/8"}}
    assert dsl({"sourceIPs|cidr": "fc00::/7"})[0] == {"term": {"related.ip": "fc00::/7"}}
    q, _ = dsl({"requestObject.spec.clusterIP|cidr": "172.16.0.0/14"}, OS)
    assert q["regexp"][REQ + ".spec.clusterIP"]["value"] == "(172\\.16\\.|172\\.17\\.|172\\.18\\.|172\\.19\\.).*"
    q, _ = dsl({"requestObject.spec.clusterIP|cidr": "172.16.0.0/14"}, ES)  # no regexp on keyed flattened
    assert [x["prefix"] for x in q["bool"]["should"]] == [
        {REQ + ".spec.clusterIP": {"value": p}} for p in ("172.16.", "172.17.", "172.18.", "172.19.")]
    assert dsl({"requestObject.spec.clusterIP|cidr": "10.1.2.3/32"})[0] == {"term": {REQ + ".spec.clusterIP": {"value": "10.1.2.3"}}}
    assert dsl({"requestObject.spec.clusterIP|cidr": "10.1.0.0/16"})[0] == {"prefix": {REQ + ".spec.clusterIP": {"value": "10.1."}}}
    q, _ = dsl({"requestObject.spec.clusterIP|cidr": "10.1.2.16/30"}, ES)  # last octet: exact values, not prefixes
    assert [x["term"][REQ + ".spec.clusterIP"]["value"] for x in q["bool"]["should"]] == [
        "10.1.2.16", "10.1.2.17", "10.1.2.18", "10.1.2.19"]
    q, reasons = dsl({"sourceIPs|cidr": "::/0"})
    assert q == MATCH_ALL and "IPv4-mapped" in reasons[0]


def test_regular_expressions():
    q, _ = dsl({"userAgent|re": "^kubectl/v1\\.[0-9]+"})
    assert q == {"regexp": {F + "userAgent": {"value": "kubectl\\/v1\\.[0-9]+.*", "flags": "NONE"}}}
    q, _ = dsl({"userAgent|re|i": "curl"})
    assert q == {"regexp": {F + "userAgent": {"value": ".*curl.*", "flags": "NONE", "case_insensitive": True}}}
    q, reasons = dsl({"userAgent|re": "(^|/)curl"})
    assert q == MATCH_ALL and "anchor" in reasons[0]
    q, reasons = dsl({"requestObject.spec.containers.image|re": "^busybox"}, ES)
    assert q == {"regexp": {REQ: {"value": "busybox.*", "flags": "NONE"}}} and reasons
    assert dsl({"requestObject.spec.containers.image|re": "^busybox"}, OS)[0]["regexp"]


def test_lucene_regexp_translation():
    assert lucene_regexp("^a(?:b|c)+$") == "a(b|c)+"
    assert lucene_regexp("x@y") == ".*x\\@y.*"
    assert lucene_regexp("[a-z0-9-]+\\.io/") == ".*[a-z0-9-]+\\.io\\/.*"
    for bad in ("\\d+", "a^b", "(?i)x", "a*?"):
        with pytest.raises(ValueError):
            lucene_regexp(bad)


def test_placeholders_expand_and_empty_matches_nothing():
    q, _ = dsl({"user.username|expand": "%admins%"}, placeholders={"admins": ["root", "alice*"]})
    assert q == {"bool": {"should": [
        {"term": {F + "user.username": {"value": "root", "case_insensitive": True}}},
        {"prefix": {F + "user.username": {"value": "alice", "case_insensitive": True}}}], "minimum_should_match": 1}}
    assert dsl({"user.username|expand": "%nobody%"}, placeholders={"nobody": []})[0] == MATCH_NONE


def test_base64offset_is_an_or_of_variants():
    q, _ = dsl({"requestURI|base64offset|contains": "abc"})
    assert [x["wildcard"][F + "requestURI"]["value"] for x in q["bool"]["should"]] == ["*YWJj*", "*FiY*", "*hYm*"]


def test_keyword_search_and_field_reference_fall_back():
    c = compile_rule_query(rule({"kw": ["evil"], "condition": "kw"}), ES)
    assert c.query == MATCH_ALL and "keyword search" in c.reasons[0]
    q, reasons = dsl({"user.username|fieldref": "impersonatedUser.username"})
    assert q == MATCH_ALL and reasons


def test_annotations_are_searched_dedotted():
    q, _ = dsl({"annotations.authorization.k8s.io/decision": "forbid"})
    assert q == {"term": {F + "annotations.authorization_k8s_io/decision": {"value": "forbid", "case_insensitive": True}}}


def test_exceptions_with_a_sigma_tree_are_compiled_as_must_not():
    r = rule({"sel": {"verb": "get"}, "condition": "sel"}, exceptions=[{"e": {"user.username": "alice"}, "condition": "e"}])
    c = compile_rule_query(r, ES)
    assert c.exact
    assert c.query == {"bool": {"filter": [
        {"term": {F + "verb": {"value": "get", "case_insensitive": True}}},
        {"bool": {"must_not": [{"term": {F + "user.username": {"value": "alice", "case_insensitive": True}}}]}}]}}


def test_exceptions_without_a_tree_make_the_query_a_prefilter():
    r = rule({"sel": {"verb": "get"}, "condition": "sel"})
    r.exceptions.append(lambda e: False)
    c = compile_rule_query(r, ES)
    assert not c.exact and "client-side" in c.reasons[0]
    assert compile_lucene(r) is None


def test_lucene_query_strings():
    r = rule({"sel": {"verb": "create", "responseStatus.code|gte": 400, "sourceIPs|cidr": "10.0.0.0/8"},
              "f": {"impersonatedUser.username|exists": True}, "condition": "sel and not f"})
    assert compile_lucene(r) == (
        "((kubernetes.audit.verb:/[cC][rR][eE][aA][tT][eE]/ AND kubernetes.audit.responseStatus.code:>=400"
        " AND related.ip:10.0.0.0\\/8) AND (NOT _exists_:kubernetes.audit.impersonatedUser.username))")
    assert compile_lucene(rule({"s": {"annotations.authorization.k8s.io/decision": "*"}, "condition": "s"})) == \
        "kubernetes.audit.annotations.authorization_k8s_io\\/decision:/.*/"
    assert compile_lucene(rule({"s": {"requestObject.spec.hostPID": True}, "condition": "s"})) is None
    assert compile_lucene(rule({"s": {"requestObject.spec.replicas": "3"}, "condition": "s"})) is None


def test_every_shipped_rule_compiles_on_both_flavors():
    pack = load_rules([default_pack_dir()])
    for target in (ES, OS):
        for r in pack.single:
            c = compile_rule_query(r, target, pack.placeholders)
            assert c.query, r.title
    # rules reading derived fields (kaudit.*) are re-checked client-side by design; the others stay exact
    plain = [r for r in pack.single
             if "kaudit." not in open(r.path, encoding="utf-8").read().split("\ndetection:")[1].split("\nfalsepositives:")[0]]
    es_exact = sum(compile_rule_query(r, ES, pack.placeholders).exact for r in plain)
    os_exact = sum(compile_rule_query(r, OS, pack.placeholders).exact for r in plain)
    assert os_exact >= es_exact >= len(plain) - 10


# --------------------------------------------------------------------------- engine-evaluation helpers


def test_doc_event_redots_read_keys_and_unwraps_json_patch():
    raw = {"auditID": "a", "stage": "ResponseComplete", "verb": "patch", "requestReceivedTimestamp": "2024-01-01T00:00:00Z",
           "annotations": {"authorization.k8s.io/decision": "allow", "x.y": "z"},
           "requestObject": [{"op": "add", "path": "/a", "value": 1}],
           "_kaudit_envelope": {"format": "gke", "provider": "gcp", "cluster": "c1", "project_id": "p"}}
    doc = normalize(raw)
    keys = redot_keys({"annotations.authorization.k8s.io/decision"})
    event = doc_event(doc, keys)
    assert event["annotations"] == {"authorization.k8s.io/decision": "allow", "x_y": "z"}
    assert event["requestObject"] == raw["requestObject"]
    assert event["_kaudit_envelope"] == raw["_kaudit_envelope"]


def test_pack_fields_cover_detections_new_terms_and_correlations():
    pack = load_rules([default_pack_dir()])
    fields = pack_fields(pack)
    assert {"annotations.authorization.k8s.io/decision", "objectRef.name", "userAgent"} <= fields


def test_feed_matched_gives_the_same_alerts_as_feed():
    pack = load_rules([default_pack_dir()])
    events = [{"auditID": f"id{i}", "stage": "ResponseComplete", "verb": "get", "user": {"username": "mallory"},
               "sourceIPs": ["203.0.113.9"], "userAgent": "curl/8", "objectRef": {"resource": "secrets", "namespace": "prod",
               "name": f"s{i}"}, "responseStatus": {"code": 200},
               "annotations": {"authorization.k8s.io/decision": "allow"},
               "requestReceivedTimestamp": f"2026-01-15T10:00:0{i}.000000Z"} for i in range(6)]
    expected = list(Runner(pack).run(events))
    runner = Runner(pack)
    got = []
    for e in events:
        got += runner.feed_matched(e, [r.id for r in pack.single if r.matches(e)])
    got += runner.flush()
    assert [a["kaudit"]["alert"]["id"] for a in got] == [a["kaudit"]["alert"]["id"] for a in expected]
    assert any(a["rule"]["kind"] == "correlation" for a in got)


def test_hits_are_reordered_by_microseconds_within_a_millisecond():
    def hit(ts: str, ms: int) -> dict:
        return {"sort": [ms], "_source": {"kubernetes": {"audit": {"requestReceivedTimestamp": ts}}}}

    hits = [hit("2026-01-01T00:00:00.000900Z", 1), hit("2026-01-01T00:00:00.000100Z", 1), hit("2026-01-01T00:00:00.001Z", 2)]
    order = [h["_source"]["kubernetes"]["audit"]["requestReceivedTimestamp"] for h in in_event_time_order(iter(hits))]
    assert order == ["2026-01-01T00:00:00.000100Z", "2026-01-01T00:00:00.000900Z", "2026-01-01T00:00:00.001Z"]



def test_windowed_flush_leaves_open_tumbling_windows_undecided(tmp_path):
    (tmp_path / "r.yml").write_text("""
title: delete
id: 22222222-2222-2222-2222-222222222222
name: del
logsource: {product: kubernetes, service: audit}
detection: {sel: {verb: delete}, condition: sel}
---
title: few deletes
id: 33333333-3333-3333-3333-333333333333
correlation: {type: event_count, rules: [del], group-by: [user.username], timespan: 10m, condition: {lte: 2}}
""")
    pack = load_rules([tmp_path])
    events = [{"auditID": f"d{i}", "stage": "ResponseComplete", "verb": "delete", "user": {"username": "u"},
               "requestReceivedTimestamp": f"2026-01-15T10:0{i}:00Z"} for i in range(2)]
    t0 = 1768471200.0  # 2026-01-15T10:00:00Z

    def run(closed_before):
        runner = Runner(pack)
        for e in events:
            runner.feed(e)
        return [a for a in runner.flush(closed_before) if a["rule"]["kind"] == "correlation"]

    assert run(t0 + 300) == []  # the 10-minute window is still open at 10:05
    assert len(run(t0 + 601)) == 1 and len(run(None)) == 1
