"""The engine prefilter (no engine): each rule's cheap superset keeps only cheap leaves, widens an
expensive leaf where it must hold and drops it where it is negated, so it never loses a match."""

from __future__ import annotations

from kaudit_elk.detect.engine_search import _cheap_leaf, cheap_superset, compile_pack, prefilter_pack
from kaudit_elk.rules.compiler import MATCH_ALL, MATCH_NONE, QueryTarget
from kaudit_elk.rules.loader import default_pack_dir, load_rules

VERB = {"term": {"kubernetes.audit.verb": {"value": "create", "case_insensitive": True}}}
USER = {"regexp": {"kubernetes.audit.user.username": {"value": "system:.*", "case_insensitive": True}}}
URI = {"wildcard": {"kubernetes.audit.requestURI": {"value": "*exec*", "case_insensitive": True}}}
CODE = {"term": {"kubernetes.audit.responseStatus.code": 403}}


def _any(*qs):
    return {"bool": {"should": list(qs), "minimum_should_match": 1}}


def _leaves(q):
    if "bool" in q:
        for k in ("filter", "must", "should", "must_not"):
            for c in q["bool"].get(k) or []:
                yield from _leaves(c)
    else:
        yield q


def test_an_expensive_leaf_widens_where_it_must_hold_and_is_dropped_where_negated() -> None:
    assert cheap_superset({"bool": {"filter": [VERB, USER]}}) == VERB
    assert cheap_superset(_any(VERB, URI)) == MATCH_ALL  # either may hold: anything may match
    assert cheap_superset(_any(VERB, CODE)) == _any(VERB, CODE)
    assert cheap_superset({"bool": {"filter": [VERB, {"bool": {"must_not": [USER]}}]}}) == VERB
    # a negated cheap part stays; a negated OR with an expensive part keeps only the cheap exclusion
    neg = {"bool": {"must_not": [_any(CODE, USER)]}}
    assert cheap_superset({"bool": {"filter": [VERB, neg]}}) == {"bool": {"filter": [VERB, neg_code()]}}
    assert cheap_superset(MATCH_NONE) == MATCH_NONE


def neg_code():
    return {"bool": {"must_not": [CODE]}}


def test_every_rule_of_the_shipped_pack_has_a_prefilter_of_cheap_leaves_only() -> None:
    pack = load_rules([default_pack_dir()])
    for flavor in ("opensearch", "elasticsearch"):
        compiled = compile_pack(pack, QueryTarget(flavor))
        pre = prefilter_pack(compiled)
        assert set(pre) == set(compiled)
        narrowed = 0
        for rid, c in pre.items():
            assert all(_cheap_leaf(x) for x in _leaves(c.query)), rid
            if c.query != MATCH_ALL:
                narrowed += 1
            if c.exact:  # kept whole: only when the rule's query was exact and cheap already
                assert c.query == compiled[rid].query and compiled[rid].exact
        assert narrowed >= len(pre) * 3 // 4  # most rules keep a selective prefilter


def test_a_case_insensitive_term_or_a_few_literals_stays_but_an_open_pattern_is_widened() -> None:
    admins = {"regexp": {"kubernetes.audit.user.username": {
        "value": "(admin|kubernetes\\-admin|minikube\\-user)", "case_insensitive": True}}}
    name = {"term": {"kubernetes.audit.user.username": {"value": "Alice", "case_insensitive": True}}}
    assert _cheap_leaf(admins) and _cheap_leaf(name)  # a few terms of the dictionary, read lazily
    assert not _cheap_leaf(USER) and not _cheap_leaf(URI)  # system:.* / *exec*: thousands of terms
    many = {"regexp": {"kubernetes.audit.user.username": {"value": "|".join(f"u{i}" for i in range(17))}}}
    assert not _cheap_leaf(many)
    assert cheap_superset({"bool": {"filter": [admins, URI]}}) == admins


def test_no_rule_of_the_shipped_pack_makes_the_engine_return_every_event() -> None:
    pack = load_rules([default_pack_dir()])
    for flavor in ("opensearch", "elasticsearch"):
        pre = prefilter_pack(compile_pack(pack, QueryTarget(flavor)))
        assert [r for r, c in pre.items() if c.query == MATCH_ALL] == []
