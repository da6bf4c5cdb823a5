"""Compile pySigma's parsed detection tree into a fast Python predicate over raw audit Event dicts.

Semantics (Sigma): strings compare case-insensitively, ``*``/``?`` are wildcards, lists are OR,
a dotted field path walks nested objects and, through lists, "any element". Audit annotation keys
contain dots (``annotations.authorization.k8s.io/decision``): at each object level the longest
key that matches the remaining path wins. Numbers and strings compare by value (``403`` == ``'403'``).

Two compilers share these semantics: :func:`compile_condition` builds closures (the reference, also
used for exceptions and rare node types), and :func:`compile_rule` / :func:`compile_batch` generate
Python source from the same tree for the hot path (set/tuple tests on lower-cased field values that are
resolved once per event).
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

from kaudit_elk.base.errors import ContentError
from kaudit_elk.rules import derived

Event = Mapping[str, Any]
Predicate = Callable[[Event], bool]
_MISSING = object()


# --------------------------------------------------------------------------- field access


class EventView:
    """One event plus a per-event cache of resolved field values, shared by every rule tested on it."""

    __slots__ = ("event", "memo")

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event
        self.memo: dict[str, list[Any]] = {}


def _resolver(path: str) -> Callable[[Any], list[Any]]:
    """Leaf values at dotted ``path`` of a plain object (lists flattened, longest key first);
    ``kaudit.*`` paths are derived fields (:mod:`kaudit_elk.rules.derived`)."""
    if path.startswith(derived.PREFIX):
        fn = derived.resolver(path)
        if fn is not None:
            return fn
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
                if v.__class__ is list:  # fast path: a flat list of scalars
                    out = [x for x in v if x.__class__ in _SCALARS]
                    if len(out) == len(v):
                        return out
                if isinstance(v, (list, dict)):
                    out = []
                    walk(v, 1, out)
                    return out
                return [v]
            return []

        return get1

    first = parts[0]
    if n == 2:
        second = parts[1]

        def get2(obj: Any) -> list[Any]:
            # fast path: {"a": {"b": scalar}} without a dotted "a.b" key
            if isinstance(obj, dict) and path not in obj:
                inner = obj.get(first)
                if isinstance(inner, dict):
                    v = inner.get(second, _MISSING)
                    if v is _MISSING:
                        return []
                    if not isinstance(v, (list, dict)):
                        return [v]
                    if v.__class__ is list:  # a flat list of scalars
                        out = [x for x in v if x.__class__ in _SCALARS]
                        if len(out) == len(v):
                            return out
                elif inner is None:  # "a" absent or null
                    return []
            out: list[Any] = []
            walk(obj, 0, out)
            return out

        return get2

    def descend(cur: Any, i: int = 0) -> list[Any]:
        # iterative descent through objects from level i; recursion only once a list is met
        while i < n:
            if isinstance(cur, dict):
                for key, j in joined[i]:
                    v = cur.get(key, _MISSING)
                    if v is not _MISSING:
                        cur, i = v, j
                        break
                else:
                    return []
            elif isinstance(cur, list):
                break
            else:
                return []
        if i == n and not isinstance(cur, (list, dict)):
            return [cur]
        out: list[Any] = []
        walk(cur, i, out)
        return out

    if n > _UNROLL_MAX:
        return descend
    return _unrolled(joined, n, descend)


_UNROLL_MAX = 6
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _unrolled(joined: list[list[tuple[str, int]]], n: int, descend: Callable[[Any, int], list[Any]]
              ) -> Callable[[Any], list[Any]]:
    """The descent of ``descend`` through plain dicts, unrolled into straight-line key lookups.

    Candidate keys are tried longest first exactly as in the loop; anything other than a plain
    dict on the way (a list, a dict subclass, ...) hands over to ``descend`` at that level.
    """
    ns: dict[str, Any] = {"_M": _MISSING, "_descend": descend, "_SCALARS": _SCALARS}
    lines = ["def _get(o0):"]
    consts: dict[str, str] = {}

    def emit(i: int, depth: int, ind: str) -> None:
        var = f"o{depth}"
        if i == n:
            lines.append(f"{ind}if {var}.__class__ in _SCALARS:")
            lines.append(f"{ind}    return [{var}]")
            lines.append(f"{ind}return _descend({var}, {n})")
            return
        lines.append(f"{ind}if {var}.__class__ is not dict:")
        lines.append(f"{ind}    return _descend({var}, {i})")
        nxt = f"o{depth + 1}"
        for key, j in joined[i]:
            name = consts.get(key)
            if name is None:
                name = consts[key] = f"_k{len(consts)}"
                ns[name] = key
            lines.append(f"{ind}{nxt} = {var}.get({name}, _M)")
            lines.append(f"{ind}if {nxt} is not _M:")
            emit(j, depth + 1, ind + "    ")
        lines.append(f"{ind}return []")

    emit(0, 0, "    ")
    exec(compile("\n".join(lines) + "\n", "<field resolver>", "exec"), ns)  # noqa: S102 - fixed template
    return ns["_get"]


@lru_cache(maxsize=4096)
def _resolver_cached(path: str) -> Callable[[Any], list[Any]]:
    return _resolver(path)


@lru_cache(maxsize=4096)
def field_getter(path: str) -> Callable[[Any], list[Any]]:
    """Return a function giving every leaf value at dotted ``path`` of an event or EventView."""
    resolve = _resolver(path)

    def get(obj: Any) -> list[Any]:
        if obj.__class__ is EventView:
            memo = obj.memo
            values = memo.get(path)
            if values is None:
                values = memo[path] = resolve(obj.event)
            return values
        return resolve(obj)

    return get


@lru_cache(maxsize=4096)
def lowered_getter(path: str) -> Callable[[Any], list[str]]:
    """Lower-cased text of every scalar leaf at ``path`` (memoized per EventView)."""
    resolve = _resolver(path)
    key = path + "\x00lower"

    parts = path.split(".")
    first, second = parts[0], parts[-1]

    def lower_all(values: list[Any]) -> list[str]:
        out = []
        for v in values:
            if v.__class__ is str:
                out.append(v.lower())
            else:
                t = _as_text(v)
                if t is not None:
                    out.append(t.lower())
        return out

    # fast paths (plain dict event, no dotted key shadowing the path): a single string leaf
    if len(parts) == 1:
        def compute(obj: Any) -> list[str]:
            ev = obj.event if obj.__class__ is EventView else obj
            if ev.__class__ is dict:
                v = ev.get(first, _MISSING)
                if v.__class__ is str:
                    return [v.lower()]
                if v is _MISSING:
                    return []
                if v.__class__ is list:
                    out = [x.lower() for x in v if x.__class__ is str]
                    if len(out) == len(v):
                        return out
            return lower_all(resolve(ev))
    elif len(parts) == 2:
        def compute(obj: Any) -> list[str]:
            ev = obj.event if obj.__class__ is EventView else obj
            if ev.__class__ is dict and path not in ev:
                inner = ev.get(first)
                if inner.__class__ is dict:
                    v = inner.get(second, _MISSING)
                    if v.__class__ is str:
                        return [v.lower()]
                    if v is _MISSING:
                        return []
                    if v.__class__ is list:
                        out = [x.lower() for x in v if x.__class__ is str]
                        if len(out) == len(v):
                            return out
                elif inner is None:  # "a" absent or null
                    return []
            return lower_all(resolve(ev))
    else:
        def compute(obj: Any) -> list[str]:
            return lower_all(resolve(obj.event if obj.__class__ is EventView else obj))

    get_compute = compute

    def get(obj: Any) -> list[str]:
        if obj.__class__ is EventView:
            memo = obj.memo
            values = memo.get(key)
            if values is None:
                values = memo[key] = compute(obj)
            return values
        return compute(obj)

    get.compute = get_compute  # type: ignore[attr-defined]  # no memo: generated code caches in locals
    return get


@lru_cache(maxsize=4096)
def numeric_getter(path: str) -> Callable[[Any], list[float]]:
    """Numeric value of every leaf at ``path`` that is a number or numeric text (memoized per EventView)."""
    resolve = _resolver(path)
    key = path + "\x00num"

    def get(obj: Any) -> list[float]:
        memo = obj.memo if obj.__class__ is EventView else None
        if memo is not None:
            values = memo.get(key)
            if values is not None:
                return values
        values = [n for n in map(_as_number, resolve(obj.event if memo is not None else obj)) if n is not None]
        if memo is not None:
            memo[key] = values
        return values

    return get


@lru_cache(maxsize=65536)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


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
            ip = _parse_ip(v)
            return ip is not None and ip.version == net.version and ip in net

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
    get = lowered_getter(field)
    key = field + "\x00lower"
    disjoint = literals.isdisjoint

    def test_in(e: Any) -> bool:
        if e.__class__ is EventView:
            values = e.memo.get(key)
            if values is None:
                values = get(e)
            return not disjoint(values)
        return not disjoint(get(e))

    return test_in


def _affix_key(node: Any) -> tuple[str, str, str] | None:
    """(field, kind, lowercase literal) for startswith/endswith/contains on a plain string, else None."""
    if not isinstance(node, ConditionFieldEqualsValueExpression):
        return None
    v = node.value
    if not isinstance(v, SigmaString) or isinstance(v, SigmaCasedString) or v.contains_placeholder():
        return None
    parts = v.s
    if len(parts) == 2 and isinstance(parts[0], str) and parts[1] is SpecialChars.WILDCARD_MULTI:
        return node.field, "startswith", parts[0].lower()
    if len(parts) == 2 and parts[0] is SpecialChars.WILDCARD_MULTI and isinstance(parts[1], str):
        return node.field, "endswith", parts[1].lower()
    if len(parts) == 3 and parts[0] is SpecialChars.WILDCARD_MULTI and isinstance(parts[1], str) \
            and parts[2] is SpecialChars.WILDCARD_MULTI:
        return node.field, "contains", parts[1].lower()
    return None


def _compile_affix(field: str, kind: str, literals: tuple[str, ...]) -> Predicate:
    get = lowered_getter(field)
    if kind == "startswith":
        return lambda e: any(v.startswith(literals) for v in get(e))
    if kind == "endswith":
        return lambda e: any(v.endswith(literals) for v in get(e))
    return lambda e: any(lit in v for v in get(e) for lit in literals)


def _cost(node: Any) -> int:
    """Rough evaluation cost used to order AND members (cheap, selective tests first)."""
    if _plain_key(node) is not None:
        return 0
    if _affix_key(node) is not None:
        return 1
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return 2
    if isinstance(node, ConditionOR) and all(_plain_key(a) is not None for a in node.args):
        return 1
    if isinstance(node, ConditionNOT):
        return 4
    return 3


def compile_condition(node: Any, placeholders: Mapping[str, Sequence[str]] | None = None) -> Predicate:
    """Compile one parsed Sigma condition tree node into a predicate."""
    ph = placeholders or {}
    if isinstance(node, ConditionAND):
        args = sorted(node.args, key=_cost)
        fns = tuple(compile_condition(a, ph) for a in args)
        if len(fns) == 1:
            return fns[0]
        if len(fns) == 2:
            a1, a2 = fns
            return lambda e: a1(e) and a2(e)
        if len(fns) == 3:
            b1, b2, b3 = fns
            return lambda e: b1(e) and b2(e) and b3(e)

        def and_(e: Event) -> bool:
            for f in fns:
                if not f(e):
                    return False
            return True

        return and_
    if isinstance(node, ConditionOR):
        grouped: dict[str, set[str]] = {}
        affixes: dict[tuple[str, str], list[str]] = {}
        rest = []
        for a in node.args:
            key = _plain_key(a)
            if key is not None:
                grouped.setdefault(key[0], set()).add(key[1])
                continue
            akey = _affix_key(a)
            if akey is not None:
                affixes.setdefault((akey[0], akey[1]), []).append(akey[2])
                continue
            rest.append(a)
        fns_l = [_compile_set(f, frozenset(vals)) for f, vals in grouped.items()]
        fns_l += [_compile_affix(f, kind, tuple(vals)) for (f, kind), vals in affixes.items()]
        fns_l += [compile_condition(a, ph) for a in rest]
        fns = tuple(fns_l)
        if len(fns) == 1:
            return fns[0]
        if len(fns) == 2:
            o1, o2 = fns
            return lambda e: o1(e) or o2(e)

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
        akey = _affix_key(node)
        if akey is not None:
            return _compile_affix(akey[0], akey[1], (akey[2],))
        return _compile_field(node, ph)
    if isinstance(node, ConditionValueExpression):
        test = _value_test(node.value, ph)
        return lambda e: any(test(s) for s in _leaf_strings(e.event if e.__class__ is EventView else e))
    raise ContentError(f"unsupported Sigma condition node {type(node).__name__}")


class _Codegen:
    """Turns a condition tree into the source of one Python function over an EventView.

    Plain equalities and prefix/suffix/contains tests on the same field become set and tuple
    operations on the field's memoized lower-cased values; AND/OR/NOT become Python boolean
    operators; anything else calls the closure built by :func:`compile_condition`.
    """

    def __init__(self, placeholders: Mapping[str, Sequence[str]]) -> None:
        self.ph = placeholders
        self.ns: dict[str, Any] = {"_sw": _any_startswith, "_ew": _any_endswith, "_in": _any_contains,
                                   "_cmp": _any_compare, "_ex": _any_present, "_cidr": _any_in_network,
                                   "_cidrs": _any_in_networks}
        self.n = 0
        self.locals: dict[tuple[str, str], str] = {}  # (kind, field) -> local variable caching its values

    def cached(self, kind: str, field: str, fill: Callable[[Any], Any], arg: str = "v") -> str:
        """Expression for the field's values, computed on first use (``fill(arg)``) into a function local."""
        name = self.locals.get((kind, field))
        if name is None:
            name = self.locals[(kind, field)] = f"_v{len(self.locals)}"
            self.ns[f"{name}_fill"] = fill
        return f"({name} if {name} is not None else ({name} := {name}_fill({arg})))"

    def function(self, name: str, body: list[str], result: str) -> str:
        """Source of ``def name(v)`` with the cached locals initialised."""
        init = [f"    {n} = None" for n in self.locals.values()]
        return "\n".join([f"def {name}(v):", *init, *body, f"    return {result}", ""])

    def const(self, obj: Any) -> str:
        self.n += 1
        name = f"_c{self.n}"
        self.ns[name] = obj
        return name

    def low(self, field: str) -> str:
        return self.cached("lower", field, lowered_getter(field).compute)  # type: ignore[attr-defined]

    def expr(self, node: Any) -> str:
        if isinstance(node, ConditionAND):
            return "(" + " and ".join(self.expr(a) for a in sorted(node.args, key=_cost)) + ")"
        if isinstance(node, ConditionOR):
            grouped: dict[str, set[str]] = {}
            affixes: dict[tuple[str, str], list[str]] = {}
            parts = []
            cidrs: dict[str, tuple[int, list[Any]]] = {}  # field -> (position in parts, networks)
            for a in node.args:
                key = _plain_key(a)
                akey = None if key is not None else _affix_key(a)
                if key is not None:
                    grouped.setdefault(key[0], set()).add(key[1])
                elif akey is not None:
                    affixes.setdefault((akey[0], akey[1]), []).append(akey[2])
                elif isinstance(a, ConditionFieldEqualsValueExpression) and isinstance(a.value, SigmaCIDRExpression):
                    if a.field not in cidrs:
                        cidrs[a.field] = (len(parts), [])
                        parts.append("")
                    cidrs[a.field][1].append(a.value.network)
                else:
                    parts.append(self.expr(a))
            for f, (pos, nets) in cidrs.items():  # one pass over the field's IPs for all its networks
                parts[pos] = f"_cidrs({self.raw(f)}, {self.const(tuple(nets))})"
            head = [self.leaf_set(f, frozenset(v)) for f, v in grouped.items()]
            head += [self.leaf_affix(f, k, tuple(v)) for (f, k), v in affixes.items()]
            return "(" + " or ".join(head + parts) + ")"
        if isinstance(node, ConditionNOT):
            return f"(not {self.expr(node.args[0])})"
        key = _plain_key(node)
        if key is not None:
            return self.leaf_set(key[0], frozenset([key[1]]))
        akey = _affix_key(node)
        if akey is not None:
            return self.leaf_affix(akey[0], akey[1], (akey[2],))
        if isinstance(node, ConditionFieldEqualsValueExpression):
            val = node.value
            if isinstance(val, SigmaNumber):
                return f"({float(val.number)!r} in {self.num(node.field)})"
            if isinstance(val, SigmaCompareExpression):
                op = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
                      CompareOperators.GTE: ">="}[val.op]
                return f"_cmp({self.num(node.field)}, {self.const(float(val.number.number))}, {op!r})"
            if isinstance(val, SigmaExists):
                return f"(_ex({self.raw(node.field)}) is {val.exists!r})"
            if isinstance(val, SigmaCIDRExpression):
                return f"_cidr({self.raw(node.field)}, {self.const(val.network)})"
        return f"{self.const(compile_condition(node, self.ph))}(v)"

    def raw(self, field: str) -> str:
        return self.cached("raw", field, _resolver_cached(field), "v.event")

    def num(self, field: str) -> str:
        return self.cached("num", field, numeric_getter(field))

    def leaf_set(self, field: str, literals: frozenset[str]) -> str:
        return f"(not {self.const(literals)}.isdisjoint({self.low(field)}))"

    def leaf_affix(self, field: str, kind: str, literals: tuple[str, ...]) -> str:
        fn = {"startswith": "_sw", "endswith": "_ew", "contains": "_in"}[kind]
        return f"{fn}({self.low(field)}, {self.const(literals)})"


def _any_compare(values: list[float], ref: float, op: str) -> bool:
    for n in values:
        if (n < ref if op == "<" else n <= ref if op == "<=" else n > ref if op == ">" else n >= ref):
            return True
    return False


def _any_in_network(values: list[Any], net: Any) -> bool:
    for x in values:
        if isinstance(x, str):
            ip = _parse_ip(x)
            if ip is not None and ip.version == net.version and ip in net:
                return True
    return False


def _any_in_networks(values: list[Any], nets: tuple[Any, ...]) -> bool:
    for x in values:
        if isinstance(x, str):
            ip = _parse_ip(x)
            if ip is not None:
                version = ip.version
                for net in nets:
                    if version == net.version and ip in net:
                        return True
    return False


def _any_present(values: list[Any]) -> bool:
    for x in values:
        if x is not None:
            return True
    return False


def _any_startswith(values: list[str], prefixes: tuple[str, ...]) -> bool:
    for v in values:
        if v.startswith(prefixes):
            return True
    return False


def _any_endswith(values: list[str], suffixes: tuple[str, ...]) -> bool:
    for v in values:
        if v.endswith(suffixes):
            return True
    return False


def _any_contains(values: list[str], needles: tuple[str, ...]) -> bool:
    for v in values:
        for n in needles:
            if n in v:
                return True
    return False


def _exec(src: str, ns: dict[str, Any], name: str, label: str) -> Any:
    exec(compile(src, label, "exec"), ns)  # noqa: S102 - source generated from a parsed Sigma tree
    return ns[name]


def compile_rule(rule: SigmaRule, placeholders: Mapping[str, Sequence[str]] | None = None) -> Predicate:
    """Compile a SigmaRule (all its conditions, OR-ed) into one generated Python predicate.

    The predicate accepts a raw event dict or an :class:`EventView`; ``predicate.on_view`` takes an
    EventView directly.
    """
    gen = _Codegen(placeholders or {})
    body = " or ".join(gen.expr(c.parsed) for c in rule.detection.parsed_condition) or "False"
    on_view = _exec(gen.function("_on_view", [], f"bool({body})"), gen.ns, "_on_view",
                    f"<sigma rule {rule.id or rule.title}>")

    def predicate(e: Any) -> bool:
        return on_view(e if e.__class__ is EventView else EventView(e))

    predicate.on_view = on_view  # type: ignore[attr-defined]
    return predicate


def compile_batch(rules: Sequence[SigmaRule], placeholders: Mapping[str, Sequence[str]] | None = None
                  ) -> Callable[[EventView], list[int]]:
    """One generated function testing several rules on an EventView; returns the indexes that match.

    Field values are resolved at most once per event and kept in function locals, which is what
    makes evaluating a whole pack per event cheap.
    """
    gen = _Codegen(placeholders or {})
    lines = []
    for i, rule in enumerate(rules):
        body = " or ".join(gen.expr(c.parsed) for c in rule.detection.parsed_condition) or "False"
        lines.append(f"    if {body}:\n        out.append({i})")
    src = gen.function("_batch", ["    out = []", *lines], "out")
    return _exec(src, gen.ns, "_batch", f"<sigma batch of {len(rules)} rules>")


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
