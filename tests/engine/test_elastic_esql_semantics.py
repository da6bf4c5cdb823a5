"""The ES|QL evaluator of the Elastic-rules test (``elastic_esql``) keeps ES|QL's semantics where they differ
from a naive reading; no engine needed (``search``/``rlike`` get plain rows, ``rlike`` a Python regex that
stands in only for these plain patterns)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest

from elastic_esql import EsqlUnsupported, Pushdown, evaluate, parse

NOW = datetime(2026, 11, 30, 9, 20, tzinfo=timezone.utc)


def run(query: str, docs: list[dict[str, list[Any]]]) -> list[dict[str, Any]]:
    def search(_query: dict[str, Any], fields: list[str]) -> list[dict[str, list[Any]]]:
        return [{k: v for k, v in d.items() if k in fields} for d in docs]

    def rlike(pattern: str, values: list[str]) -> set[str]:
        return {v for v in values if re.fullmatch(pattern, v)}

    return evaluate(query, search=search, rlike=rlike, exact=lambda f: f, types=lambda f: "keyword", now=NOW).rows


def test_not_on_a_missing_field_is_null_so_the_document_is_dropped() -> None:
    (where,) = [c for c in parse('FROM x | WHERE NOT STARTS_WITH(a.name, "sh.helm")') if c.name == "where"]
    true, false = Pushdown(lambda f: f, lambda f: "keyword").pair(where.expr)
    # true: the field exists and does not start with the prefix (a document without a.name is neither)
    assert true == {"bool": {"filter": [{"exists": {"field": "a.name"}},
                                        {"bool": {"must_not": [{"prefix": {"a.name": {"value": "sh.helm"}}}]}}]}}
    assert false == {"prefix": {"a.name": {"value": "sh.helm"}}}


def test_or_with_a_true_side_is_true_even_when_the_other_is_null() -> None:
    (where,) = [c for c in parse('FROM x | WHERE a == "1" OR b IS NULL') if c.name == "where"]
    true, _ = Pushdown(lambda f: f, lambda f: "keyword").pair(where.expr)
    assert true == {"bool": {"should": [{"term": {"a": {"value": "1"}}},
                                        {"bool": {"must_not": [{"exists": {"field": "b"}}]}}],
                             "minimum_should_match": 1}}


def test_stats_puts_a_row_in_each_group_of_a_multivalued_key_and_counts_distinct_values() -> None:
    rows = run("FROM x | STATS n = COUNT(*), d = COUNT_DISTINCT(r) BY ip | WHERE d >= 2",
               [{"ip": ["10.0.0.1", "10.0.0.2"], "r": ["pods"]}, {"ip": ["10.0.0.1"], "r": ["nodes"]}])
    assert rows == [{"ip": "10.0.0.1", "n": 2, "d": 2}]


def test_a_computed_null_fails_every_comparison_and_grok_without_a_match_is_null() -> None:
    query = ('FROM x | EVAL u = URL_DECODE(uri) | GROK u "%{DATA}\\\\?%{DATA:cmd}&stdout=%{GREEDYDATA}" '
             '| WHERE cmd IS NOT NULL AND cmd RLIKE ".*id.*"')
    assert run(query, [{"uri": ["/exec?command=id&stdout=true"]}]) == [
        {"uri": "/exec?command=id&stdout=true", "u": "/exec?command=id&stdout=true", "cmd": "command=id"}]
    assert run(query, [{"uri": ["/exec?command=id"]}]) == []  # no &stdout=: GROK yields null


def test_a_multivalued_field_in_a_pushed_down_comparison_is_refused() -> None:
    with pytest.raises(EsqlUnsupported, match="multi-valued"):
        run('FROM x | WHERE ip == "10.0.0.1"', [{"ip": ["10.0.0.1", "10.0.0.2"]}])
