"""Compile pySigma's parsed detection tree into a fast Python predicate over raw audit Event dicts.

Semantics (Sigma): strings compare case-insensitively, ``*``/``?`` are wildcards, lists are OR,
a dotted field path walks nested objects and, through lists, "any element". Audit annotation keys
contain dots (``annotations.authorization.k8s.io/decision``): at each object level the longest
key that matches the remaining path wins. Numbers and strings compare by value (``403`` == ``'403'``).
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any, Callable, Iterator, Mapping, Sequence

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)
from sigma.types import CompareOperators

from kaudit_elk.errors import ContentError

Event = Mapping[str, Any]
Predicate = Callable[[Event], bool]
_MISSING = object()


# --------------------------------------------------------------------------- field access


@lru_cache(maxsize=4096)
def field_getter(path: str) -> Callable[[Any], list[Any]]:
    """Return a function giving every leaf value at dotted ``path`` (lists flattened, longest key first)."""
    parts = path.split(".")
    n = len(parts)
    # joined[i] = [(key, next_index)] for the candidate keys at level i, longest first
    joined = [[(".".join(parts[i:j]), j) for j in range(n, i, -1)] for i in range(n)]

    def walk(obj: Any, i: int, out: list[Any]) -> None:
        if isinstance(obj, list):
            for el in obj:
                walk(el, i, out)
            return
        if i == n:
            if isinstance(obj, dict):  # an object is searched by its leaf values (like a flattened field)
                for v in obj.values():
                    walk(v, n, out)
            else:
                out.append(obj)
            return
        if not isinstance(obj, dict):
            return
        for key, j in joined[i]:
            v = obj.get(key, _MISSING)
            if v is not _MISSING:
                walk(v, j, out)
                return

    if n == 1:
        key = parts[0]

        def get1(obj: Any) -> list[Any]:
            if isinstance(obj, dict):
                v = obj.get(key, _MISSING)
                if v is _MISSING:
                    return []
                if isinstance(v, (list, dict)):
                    out: list[Any] = []
                    walk(v, 1, out)
                    return out
                return [v]
            return []

        return get1

    def get(obj: Any) -> list[Any]:
        out: list[Any] = []
        walk(obj, 0, out)
        return out

    return get


def first_value(event: Event, path: str) -> Any:
    """The first leaf value at ``path`` or None (convenience for alert fields and group-by)."""
    values = field_getter(path)(event)
    return values[0] if values else None


def _as_text(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return None


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- value matchers


def _expand_placeholders(value: SigmaString, placeholders: Mapping[str, Sequence[str]]) -> list[SigmaString]:
    """Replace Placeholder parts by each configured value (unknown placeholder: no values = no match)."""
    variants: list[list[Any]] = [[]]
    for part in value.s:
        if isinstance(part, Placeholder):
            values = placeholders.get(part.name, [])
            new: list[list[Any]] = []
            for prefix in variants:
                for pv in values:
                    new.append(prefix + list(SigmaString(str(pv)).s))
            variants = new
        else:
            variants = [prefix + [part] for prefix in variants]
    out = []
    for parts in variants:
        s = SigmaString("")
        s.s = tuple(parts)
        out.append(s)
    return out


def _string_matcher(value: SigmaString) -> Callable[[str], bool]:
    """Match one string (case-insensitive unless SigmaCasedString) with Sigma wildcards."""
    cased = isinstance(value, SigmaCasedString)
    parts = value.s
    plain = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if not isinstance(p, str)]
    norm: Callable[[str], str] = (lambda x: x) if cased else str.lower
    if not specials:
        lit = norm("".join(plain))
        return lambda s: norm(s) == lit
    if all(p is SpecialChars.WILDCARD_MULTI for p in specials) and len(plain) <= 1:
        lit = norm(plain[0]) if plain else ""
        lead = parts[0] is SpecialChars.WILDCARD_MULTI
        trail = parts[-1] is SpecialChars.WILDCARD_MULTI
        if lead and trail:
            return lambda s: lit in norm(s)
        if trail:
            return lambda s: norm(s).startswith(lit)
        if lead:
            return lambda s: norm(s).endswith(lit)
    pattern = "".join(
        re.escape(p) if isinstance(p, str) else (".*" if p is SpecialChars.WILDCARD_MULTI else ".")
        for p in parts
    )
    rx = re.compile(pattern, re.DOTALL if cased else re.DOTALL | re.IGNORECASE)
    return lambda s: rx.fullmatch(s) is not None


def _value_test(value: Any, placeholders: Mapping[str, Sequence[str]]) -> Callable[[Any], bool]:
    """A test for one leaf value of the event against one Sigma value."""
    if isinstance(value, SigmaString):
        if value.contains_placeholder():
            tests = [_value_test(v, placeholders) for v in _expand_placeholders(value, placeholders)]
            return lambda v: any(t(v) for t in tests)
        m = _string_matcher(value)
        plain_num = None
        if not value.contains_special():
            plain_num = _as_number("".join(p for p in value.s if isinstance(p, str)))

        def test_str(v: Any) -> bool:
            if isinstance(v, str):
                return m(v)
            if plain_num is not None and not isinstance(v, bool):
                n = _as_number(v)
                if n is not None:
                    return n == plain_num
            t = _as_text(v)
            return t is not None and m(t)

        return test_str
    if isinstance(value, SigmaBool):
        b = value.boolean
        word = "true" if b else "false"
        return lambda v: v is b if isinstance(v, bool) else (isinstance(v, str) and v.lower() == word)
    if isinstance(value, SigmaNumber):
        num = float(value.number)
        return lambda v: _as_number(v) == num
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for f in value.flags:
            flags |= {
                SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
                SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
                SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
            }[f]
        rx = re.compile(value.regexp.to_plain(), flags)

        def test_re(v: Any) -> bool:
            t = _as_text(v)
            return t is not None and rx.search(t) is not None

        return test_re
    if isinstance(value, SigmaCIDRExpression):
        net = value.network

        def test_cidr(v: Any) -> bool:
            if not isinstance(v, str):
                return False
            try:
                return ipaddress.ip_address(v) in net
            except ValueError:
                return False

        return test_cidr
    if isinstance(value, SigmaCompareExpression):
        ref = float(value.number.number)
        op = value.op
        cmp = {
            CompareOperators.LT: lambda n: n < ref,
            CompareOperators.LTE: lambda n: n <= ref,
            CompareOperators.GT: lambda n: n > ref,
            CompareOperators.GTE: lambda n: n >= ref,
        }[op]

        def test_cmp(v: Any) -> bool:
            n = _as_number(v)
            return n is not None and cmp(n)

        return test_cmp
    if isinstance(value, SigmaExpansion):
        tests = [_value_test(v, placeholders) for v in value.values]
        return lambda v: any(t(v) for t in tests)
    raise ContentError(f"unsupported Sigma value type {type(value).__name__}")


def _leaf_strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _leaf_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaf_strings(v)
    else:
        t = _as_text(obj)
        if t is not None:
            yield t


# --------------------------------------------------------------------------- tree compiler


def _compile_field(node: ConditionFieldEqualsValueExpression, placeholders: Mapping[str, Sequence[str]]) -> Predicate:
    get = field_getter(node.field)
    value = node.value
    if isinstance(value, SigmaNull):
        return lambda e: all(v is None for v in get(e))
    if isinstance(value, SigmaExists):
        want = value.exists
        return lambda e: any(v is not None for v in get(e)) is want
    if isinstance(value, SigmaFieldReference):
        other = field_getter(value.field)

        def test_ref(e: Event) -> bool:
            mine = {str(v).lower() for v in get(e) if v is not None}
            return any(str(v).lower() in mine for v in other(e) if v is not None)

        return test_ref
    test = _value_test(value, placeholders)

    def test_field(e: Event) -> bool:
        for v in get(e):
            if test(v):
                return True
        return False

    return test_field


def _plain_key(node: Any) -> tuple[str, str] | None:
    """(field, lowercase literal) for a field = plain string/number equality, else None."""
    if not isinstance(node, ConditionFieldEqualsValueExpression):
        return None
    v = node.value
    if isinstance(v, SigmaString) and not isinstance(v, SigmaCasedString) and not v.contains_special() \
            and not v.contains_placeholder():
        text = "".join(p for p in v.s if isinstance(p, str))
        if _as_number(text) is None and text.lower() not in ("true", "false"):
            return node.field, text.lower()
    return None


def _compile_set(field: str, literals: frozenset[str]) -> Predicate:
    get = field_getter(field)

    def test_in(e: Event) -> bool:
        for v in get(e):
            if isinstance(v, str) and v.lower() in literals:
                return True
        return False

    return test_in


def compile_condition(node: Any, placeholders: Mapping[str, Sequence[str]] | None = None) -> Predicate:
    """Compile one parsed Sigma condition tree node into a predicate."""
    ph = placeholders or {}
    if isinstance(node, ConditionAND):
        fns = tuple(compile_condition(a, ph) for a in node.args)
        if len(fns) == 1:
            return fns[0]

        def and_(e: Event) -> bool:
            for f in fns:
                if not f(e):
                    return False
            return True

        return and_
    if isinstance(node, ConditionOR):
        grouped: dict[str, set[str]] = {}
        rest = []
        for a in node.args:
            key = _plain_key(a)
            if key is None:
                rest.append(a)
            else:
                grouped.setdefault(key[0], set()).add(key[1])
        fns_l = [_compile_set(f, frozenset(vals)) for f, vals in grouped.items()]
        fns_l += [compile_condition(a, ph) for a in rest]
        fns = tuple(fns_l)
        if len(fns) == 1:
            return fns[0]

        def or_(e: Event) -> bool:
            for f in fns:
                if f(e):
                    return True
            return False

        return or_
    if isinstance(node, ConditionNOT):
        inner = compile_condition(node.args[0], ph)
        return lambda e: not inner(e)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        key = _plain_key(node)
        if key is not None:
            return _compile_set(key[0], frozenset([key[1]]))
        return _compile_field(node, ph)
    if isinstance(node, ConditionValueExpression):
        test = _value_test(node.value, ph)
        return lambda e: any(test(s) for s in _leaf_strings(e))
    raise ContentError(f"unsupported Sigma condition node {type(node).__name__}")


def compile_rule(rule: SigmaRule, placeholders: Mapping[str, Sequence[str]] | None = None) -> Predicate:
    """Compile a SigmaRule (all its conditions, OR-ed) into one predicate."""
    fns = [compile_condition(c.parsed, placeholders) for c in rule.detection.parsed_condition]
    if len(fns) == 1:
        return fns[0]
    return lambda e: any(f(e) for f in fns)


def required_values(rule: SigmaRule, field: str) -> frozenset[str] | None:
    """Lower-case literal values ``field`` must take for ``rule`` to match, or None when unconstrained.

    Used to index rules (e.g. by ``objectRef.resource``) so an event is only tested against rules
    that can match it. Only top-level AND members that are plain equalities (or ORs of them) count.
    """
    result: frozenset[str] | None = None
    for cond in rule.detection.parsed_condition:
        vals = _required(cond.parsed, field)
        if vals is None:
            return None
        result = vals if result is None else result | vals
    return result


def _required(node: Any, field: str) -> frozenset[str] | None:
    if isinstance(node, ConditionAND):
        found: frozenset[str] | None = None
        for a in node.args:
            r = _required(a, field)
            if r is not None:
                found = r if found is None else found & r
        return found
    if isinstance(node, ConditionOR):
        acc: set[str] = set()
        for a in node.args:
            r = _required(a, field)
            if r is None:
                return None
            acc |= r
        return frozenset(acc)
    key = _plain_key(node)
    if key is not None and key[0] == field:
        return frozenset([key[1]])
    return None
