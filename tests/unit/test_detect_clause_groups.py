"""A pack beyond the engines' clause limit is read in clause groups (no engine): the groups stay under
the budget and keep every rule once, and the hits of the groups' searches come out as one hit per
document with every rule that matched it."""

from __future__ import annotations

from kaudit_elk.detect.engine_search import (
    CLAUSE_BUDGET,
    clause_groups,
    compile_pack,
    leaf_count,
    named_query,
    union_hits,
)
from kaudit_elk.rules.compiler import QueryTarget
from kaudit_elk.rules.loader import default_pack_dir, load_rules


def test_the_shipped_pack_splits_into_groups_under_the_budget_with_every_rule_once() -> None:
    pack = load_rules([default_pack_dir()])
    for flavor in ("opensearch", "elasticsearch"):
        compiled = compile_pack(pack, QueryTarget(flavor))
        clauses = named_query(compiled, list(compiled))
        groups = clause_groups(clauses, budget=200)
        assert len(groups) >= 3
        assert all(leaf_count(g) <= 200 or len(g) == 1 for g in groups)
        names = [c["bool"]["_name"] for g in groups for c in g]
        assert names == [c["bool"]["_name"] for c in clauses]  # in order, none lost or repeated
        assert all(leaf_count(g) <= CLAUSE_BUDGET for g in clause_groups(clauses))


def test_union_of_group_hits_keeps_each_document_once_with_all_its_rules() -> None:
    a = [{"_index": "i1", "_id": "x", "_source": {"n": 1}, "matched_queries": ["r1"]},
         {"_index": "i1", "_id": "y", "_source": {"n": 2}, "matched_queries": ["r2"]}]
    b = [{"_index": "i1", "_id": "x", "_source": {"n": 1}, "matched_queries": {"r7": 1.0, "r1": 1.0}},
         {"_index": "i2", "_id": "y", "_source": {"n": 3}, "matched_queries": ["r9"]}]  # same id, other index
    out = union_hits([a, b])
    assert [(h["_index"], h["_id"], h["matched_queries"]) for h in out] == [
        ("i1", "x", ["r1", "r7"]), ("i1", "y", ["r2"]), ("i2", "y", ["r9"])]
    assert a[0]["matched_queries"] == ["r1"]  # the inputs are left alone


def test_one_group_is_passed_through() -> None:
    hits = [{"_index": "i", "_id": "1", "matched_queries": ["r"]}]
    assert union_hits([hits]) == hits
