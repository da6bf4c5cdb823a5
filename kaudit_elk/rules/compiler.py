"""Compile pySigma detection trees into Elasticsearch/OpenSearch Query DSL with the local evaluator's semantics.

Pure functions, no I/O. A Sigma field ``X`` is searched as ``kubernetes.audit.X`` (annotation and
``user.extra``/``impersonatedUser.extra`` keys dedotted); a body path ``requestObject.X`` /
``responseObject.X`` as ``kaudit.body.request.X`` / ``kaudit.body.response.X``, the flattened copy of the
whole body (the raw bodies index only Elastic's typed paths). What each construct becomes, per field type
(verified on ES 8.19/9.2 and OpenSearch 2.19/3.3 by ``tests/engine/test_rules_parity.py``):

==============  ==================================  ===========================================
construct       keyword / body (flattened, flat_object)  integer (``responseStatus.code``)
==============  ==================================  ===========================================
plain string    ``term`` + ``case_insensitive``     ``term`` on the number (text: match nothing)
wildcards       ``prefix``/``wildcard`` + ci (*)    unsupported
re              ``regexp`` (translated subset) (*)  unsupported
cidr            ``related.ip`` for ``sourceIPs``;   match nothing
                IPv4 prefixes elsewhere
exists / null   ``exists`` (body leaf: ``prefix ""``)  ``exists``
gt/gte/lt/lte   unsupported (values are strings)    ``range``
==============  ==================================  ===========================================

(*) Elasticsearch ``flattened`` keyed fields accept ``term``/``terms``/``prefix``/``exists`` only:
``wildcard`` and ``regexp`` are rejected there, so those leaves are unsupported on ES bodies.
A body path that names an object (``requestObject.data``, ``spec.tls``; see :data:`BODY_OBJECT_SUFFIXES`)
cannot be searched by its leaves in either engine, and is unsupported too.

Unsupported leaves never produce a silently wrong query: :func:`compile_rule_query` replaces them by
``match_all`` (or ``match_none`` under a NOT), which yields a *broader* prefilter, and reports the
reasons; the caller evaluates such rules client-side on the fetched documents
(:mod:`kaudit_elk.detect.engine_search`). :func:`compile_query` raises :class:`UnsupportedInEngine` instead.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.base.errors import ContentError
from kaudit_elk.rules.evaluator import _expand_placeholders

if TYPE_CHECKING:
    from kaudit_elk.cluster.engine import Engine
    from kaudit_elk.rules.loader import PackRule

PREFIX = "kubernetes.audit."
MATCH_ALL: dict[str, Any] = {"match_all": {}}
MATCH_NONE: dict[str, Any] = {"match_none": {}}
#: Body paths (suffixes, dot-aligned) that hold objects or lists of objects in Kubernetes API objects.
BODY_OBJECT_SUFFIXES = (
    "data", "stringData", "binaryData", "metadata", "metadata.labels", "metadata.annotations", "spec", "status",
    "template", "spec.tls", "containers", "initContainers", "ephemeralContainers", "volumes", "securityContext",
    "capabilities", "hostPath", "roleRef", "subjects", "rules", "env", "ports", "volumeMounts", "selector",
    "matchLabels", "json_patch",
)
#: Keys of a JSON-Patch operation (a patch body is indexed as ``{"json_patch": [...]}``).
JSON_PATCH_KEYS = frozenset({"op", "path", "value", "from"})
_DEDOTTED = tuple(".".join(p) + "." for p in fs.DEDOTTED_OBJECTS)
#: Sigma body roots (``requestObject``) -> the flattened whole-body copy searched for them (``kaudit.body.request``).
BODY_FIELDS: dict[str, str] = dict(fs.BODY_COPIES)
_FLAT = tuple(BODY_FIELDS)
_KEYWORD_OBJECTS = tuple(f[len(PREFIX):] + "." for f in fs.KEYWORD_OBJECTS)
_NUMERIC = frozenset({"integer", "long", "short", "byte", "float", "double"})
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


class UnsupportedInEngine(ContentError):
    """A rule (or one of its conditions) cannot be expressed exactly as Query DSL for this engine."""

    def __init__(self, rule_id: str, reasons: Sequence[str]) -> None:
        self.rule_id = rule_id
        self.reasons = tuple(reasons)
        super().__init__(f"rule {rule_id}: not expressible in the engine: " + "; ".join(self.reasons))


@dataclass(frozen=True, slots=True)
class QueryTarget:
    """What the query compiler may use on one engine flavor (body fields: flattened vs flat_object)."""

    flavor: str  # "elasticsearch" | "opensearch"

    @property
    def body_wildcard(self) -> bool:
        """wildcard/regexp on a keyed body sub-field (flat_object yes, flattened no)."""
        return self.flavor == "opensearch"

    @classmethod
    def for_engine(cls, engine: "Engine") -> "QueryTarget":
        return cls(engine.flavor)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule's query: exact when ``reasons`` is empty, else a broader prefilter plus why."""

    rule_id: str
    query: dict[str, Any]
    reasons: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return not self.reasons


class _Unsupported(Exception):
    """A leaf that has no exact query; ``superset`` (if any) is a query matching at least its events."""

    def __init__(self, message: str, superset: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.superset = superset


# --------------------------------------------------------------------------- fields


def _source_field(sigma_field: str) -> str:
    """Document field of a Sigma field: ``kubernetes.audit.`` + raw path, dedotted map keys; a body path
    (``requestObject.spec.hostPID``) is searched in kaudit's flattened body copy (``kaudit.body.request.spec.hostPID``)."""
    root, dot, rest = sigma_field.partition(".")
    if root in BODY_FIELDS:
        return BODY_FIELDS[root] + dot + rest
    for prefix in _DEDOTTED:
        if sigma_field.startswith(prefix) and len(sigma_field) > len(prefix):
            return PREFIX + prefix + sigma_field[len(prefix):].replace(".", "_")
    return PREFIX + sigma_field


def doc_field(sigma_field: str) -> str:
    """Indexed field exact queries of a Sigma field use: its document field, or for an ``exact_text``
    field (text as in Elastic's integration) its keyword multi-field."""
    field = _source_field(sigma_field)
    if fs.TYPED_FIELDS.get(field) == "exact_text":
        return f"{field}.{fs.EXACT_SUBFIELD}"
    return field


def field_kind(sigma_field: str) -> str | None:
    """Mapping kind of a Sigma field: keyword, integer, date, text, body, body_root, body_object or None."""
    for root in _FLAT:
        if sigma_field == root:
            return "body_root"
        if sigma_field.startswith(root + "."):
            rest = sigma_field[len(root) + 1:]
            if any(rest == s or rest.endswith("." + s) for s in BODY_OBJECT_SUFFIXES):
                return "body_object"
            return "body"
    typed = fs.TYPED_FIELDS.get(_source_field(sigma_field))
    if typed is not None:
        if typed == "exact_text":
            return "keyword"  # queried through its keyword multi-field
        return "integer" if typed in _NUMERIC else typed
    for obj in _KEYWORD_OBJECTS:
        if sigma_field.startswith(obj) and len(sigma_field) > len(obj):
            return "keyword"
    return None


# --------------------------------------------------------------------------- values


def _ci(field: str, kind: str, value: str, cased: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"value": value}
    if not cased:
        body["case_insensitive"] = True
    return {kind: {field: body}}


def _number_texts(text: str) -> list[str] | None:
    """How a number equal to ``text`` is written in an indexed string (flattened keeps JSON's text)."""
    try:
        num = float(text)
    except ValueError:
        return None
    out = [text]
    if num.is_integer() and abs(num) < 1e15:
        out += [str(int(num)), f"{int(num)}.0"]
    else:
        out.append(repr(num))
    return list(dict.fromkeys(out))


def _regex_literal(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else "\\" + c for c in text)


def _as_regex(query: dict[str, Any]) -> tuple[str, str, str, bool] | None:
    """(field, shape, Lucene-escaped core, case-insensitive) of a term/prefix/wildcard leaf whose value is
    ``core``, ``core*``, ``*core`` or ``*core*`` (shape exact/prefix/suffix/contains), else None."""
    if len(query) != 1:
        return None
    (kind, spec), = query.items()
    if kind not in ("term", "prefix", "wildcard") or len(spec) != 1:
        return None
    (field, body), = spec.items()
    if not isinstance(body, dict) or not isinstance(body.get("value"), str) or not body["value"]:
        return None
    ci = bool(body.get("case_insensitive"))
    value = body["value"]
    if kind == "term":
        return field, "exact", _regex_literal(value), ci
    if kind == "prefix":
        return field, "prefix", _regex_literal(value), ci
    lead, trail = value.startswith("*"), value.endswith("*") and not value.endswith("\\*")
    core = value[1 if lead else 0: len(value) - 1 if trail else len(value)]
    out, i = [], 0
    while i < len(core):
        c = core[i]
        if c == "\\" and i + 1 < len(core):
            out.append(_regex_literal(core[i + 1]))
            i += 2
            continue
        if c in "*?":
            return None
        out.append(_regex_literal(c))
        i += 1
    if not out:
        return None
    shape = "contains" if lead and trail else "suffix" if lead else "prefix" if trail else "exact"
    return field, shape, "".join(out), ci


_SHAPES = {"exact": "({})", "prefix": "({}).*", "suffix": ".*({})", "contains": ".*({}).*"}


def _merge_alternatives(queries: list[dict[str, Any]], target: QueryTarget | None) -> list[dict[str, Any]]:
    """OR-ed term/prefix/suffix/contains leaves on one field -> one regexp per shape (keeps the bool clause
    count under the engines' limit; ``(a|b).*`` determinizes far better than ``a.*|b.*``)."""
    if target is None:
        return queries
    groups: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}
    rest: list[dict[str, Any]] = []
    for q in queries:
        rx = _as_regex(q)
        if rx is None or (not target.body_wildcard and _is_body(rx[0])):
            rest.append(q)
        else:
            groups.setdefault((rx[0], rx[1], rx[3]), []).append(q)
    if all(len(v) < 2 for v in groups.values()):
        return queries
    merged = []
    for (field, shape, ci), members in groups.items():
        if len(members) == 1:
            merged += members
            continue
        cores = dict.fromkeys(_as_regex(m)[2] for m in members)  # type: ignore[index]
        body: dict[str, Any] = {"value": _SHAPES[shape].format("|".join(cores)), "flags": "NONE",
                                "max_determinized_states": 100000}
        if ci:
            body["case_insensitive"] = True
        merged.append({"regexp": {field: body}})
    return merged + rest


def _is_body(field: str) -> bool:
    return any(field == f or field.startswith(f + ".") for f in fs.FLAT_FIELDS)


def _any_of(queries: list[dict[str, Any]], target: QueryTarget | None = None) -> dict[str, Any]:
    queries = [q for q in queries if q != MATCH_NONE]
    if not queries:
        return MATCH_NONE
    if MATCH_ALL in queries:
        return MATCH_ALL
    queries = _merge_alternatives(queries, target)
    if len(queries) == 1:
        return queries[0]
    return {"bool": {"should": queries, "minimum_should_match": 1}}


def _all_of(queries: list[dict[str, Any]]) -> dict[str, Any]:
    queries = [q for q in queries if q != MATCH_ALL]
    if MATCH_NONE in queries:
        return MATCH_NONE
    if not queries:
        return MATCH_ALL
    if len(queries) == 1:
        return queries[0]
    return {"bool": {"filter": queries}}


def _not(query: dict[str, Any]) -> dict[str, Any]:
    if query == MATCH_ALL:
        return MATCH_NONE
    if query == MATCH_NONE:
        return MATCH_ALL
    return {"bool": {"must_not": [query]}}


def _wildcard_text(parts: Sequence[Any]) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(re.sub(r"([\\*?])", r"\\\1", p))
        else:
            out.append("*" if p is SpecialChars.WILDCARD_MULTI else "?")
    return "".join(out)


def _string(field: str, kind: str, value: SigmaString, target: QueryTarget) -> dict[str, Any]:
    cased = isinstance(value, SigmaCasedString)
    parts = value.s
    plain = "".join(p for p in parts if isinstance(p, str))
    if kind == "integer":
        if value.contains_special():
            raise _Unsupported(f"{field}: wildcard on a number")
        try:
            num = float(plain)
        except ValueError:
            return MATCH_NONE  # a number's text never equals a non-numeric string
        return {"term": {field: int(num)}} if num.is_integer() else MATCH_NONE
    if kind not in ("keyword", "body", "body_root"):
        raise _Unsupported(f"{field}: string match on a {kind} field")
    if not value.contains_special():
        texts = _number_texts(plain) if kind != "keyword" else None
        if texts and len(texts) > 1:  # a JSON number in a body compares by value, a string by text
            raise _Unsupported(f"{field}: numeric text in a body (number vs string told apart client-side)",
                               _any_of([{"term": {field: t}} for t in texts]))
        return _ci(field, "term", plain, cased)
    prefix_only = (parts[-1] is SpecialChars.WILDCARD_MULTI
                   and all(isinstance(p, str) for p in parts[:-1]))
    if prefix_only:
        return _ci(field, "prefix", plain, cased)
    if kind == "body" and not target.body_wildcard:
        raise _Unsupported(f"{field}: wildcard on an Elasticsearch flattened sub-field")
    return _ci(field, "wildcard", _wildcard_text(parts), cased)


_LUCENE_RESERVED = set('@&~<>#"/')  # literal in Python regexps, operators (or query_string delimiters) in Lucene


def lucene_regexp(pattern: str) -> str:
    """Python ``re.search`` pattern -> anchored Lucene regexp, for a safe subset; raises ValueError otherwise."""
    body = pattern
    start = body.startswith("^")
    if start:
        body = body[1:]
    end = body.endswith("$") and not body.endswith("\\$")
    if end:
        body = body[:-1]
    out: list[str] = [] if start else [".*"]
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = body[i + 1]
            if nxt.isalnum():
                raise ValueError(f"escape \\{nxt}")
            out.append("\\" + nxt)
            i += 2
            continue
        if c == "[":
            j = i + 1
            cls = ["["]
            if j < n and body[j] == "^":
                cls.append("^")
                j += 1
            if j < n and body[j] == "]":
                cls.append("\\]")
                j += 1
            while j < n and body[j] != "]":
                ch = body[j]
                if ch == "\\":
                    if j + 1 >= n or body[j + 1].isalnum():
                        raise ValueError("escape in class")
                    cls.append("\\" + body[j + 1])
                    j += 2
                    continue
                if ch == "[":
                    raise ValueError("nested class")
                cls.append("\\" + ch if ch in _LUCENE_RESERVED else ch)
                j += 1
            if j >= n:
                raise ValueError("unterminated class")
            out.append("".join(cls) + "]")
            i = j + 1
            continue
        if c == "(":
            if body.startswith("(?:", i):
                out.append("(")
                i += 3
                continue
            if body.startswith("(?", i):
                raise ValueError("group flags")
            out.append("(")
        elif c in "^$":
            raise ValueError("anchor inside the pattern")
        elif c in "*+?" and i + 1 < n and body[i + 1] in "?+":
            raise ValueError("lazy/possessive quantifier")
        elif c in _LUCENE_RESERVED:
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    if not end:
        out.append(".*")
    return "".join(out)


def _cidr_queries(field: str, net: ipaddress.IPv4Network) -> list[dict[str, Any]]:
    """Every IPv4 address of ``net`` as text: dot-terminated octet prefixes, exact terms in the last octet."""
    octets = str(net.network_address).split(".")
    full, rest = divmod(net.prefixlen, 8)
    if full == 0 and rest == 0:
        raise _Unsupported(f"{field}: cidr /0")
    if rest == 0:
        text = ".".join(octets[:full])
        return [{"term": {field: {"value": text}}}] if full == 4 else [{"prefix": {field: {"value": text + "."}}}]
    base = int(octets[full])
    heads = [".".join(octets[:full] + [str(v)]) for v in range(base, base + (1 << (8 - rest)))]
    if full == 3:
        return [{"term": {field: {"value": h}}} for h in heads]
    return [{"prefix": {field: {"value": h + "."}}} for h in heads]


def _value(field: str, sigma_field: str, kind: str, value: Any, target: QueryTarget,
           placeholders: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    if isinstance(value, SigmaString):
        if value.contains_placeholder():
            return _any_of([_value(field, sigma_field, kind, v, target, placeholders)
                            for v in _expand_placeholders(value, placeholders)])
        return _string(field, kind, value, target)
    if isinstance(value, SigmaExpansion):
        return _any_of([_value(field, sigma_field, kind, v, target, placeholders) for v in value.values])
    if isinstance(value, SigmaBool):
        if kind == "integer":
            return MATCH_NONE
        if kind not in ("keyword", "body", "body_root"):
            raise _Unsupported(f"{field}: boolean on a {kind} field")
        return _ci(field, "term", "true" if value.boolean else "false", False)
    if isinstance(value, SigmaNumber):
        num = float(value.number)
        if kind == "integer":
            return {"term": {field: int(num)}} if num.is_integer() else MATCH_NONE
        raise _Unsupported(f"{field}: number on a {kind} field (any numeric text compares equal)")
    if isinstance(value, SigmaCompareExpression):
        if kind != "integer":
            raise _Unsupported(f"{field}: numeric comparison on a {kind} field (indexed as text)")
        op = {CompareOperators.LT: "lt", CompareOperators.LTE: "lte", CompareOperators.GT: "gt",
              CompareOperators.GTE: "gte"}[value.op]
        return {"range": {field: {op: value.number.number}}}
    if isinstance(value, SigmaRegularExpression):
        if kind == "integer":
            raise _Unsupported(f"{field}: regular expression on a number")
        if kind not in ("keyword", "body", "body_root") or (kind == "body" and not target.body_wildcard):
            raise _Unsupported(f"{field}: regular expression on a {kind} field of {target.flavor}")
        flags = set(value.flags)
        if flags - {SigmaRegularExpressionFlag.IGNORECASE}:
            raise _Unsupported(f"{field}: regular expression flags {sorted(f.name for f in flags)}")
        try:
            rx = lucene_regexp(value.regexp.to_plain())
        except ValueError as exc:
            raise _Unsupported(f"{field}: regular expression not translatable to Lucene ({exc})") from None
        body: dict[str, Any] = {"value": rx, "flags": "NONE"}
        if SigmaRegularExpressionFlag.IGNORECASE in flags:
            body["case_insensitive"] = True
        return {"regexp": {field: body}}
    if isinstance(value, SigmaCIDRExpression):
        net = value.network
        if kind == "integer":
            return MATCH_NONE
        if sigma_field == "sourceIPs":
            if net.version == 6 and net.overlaps(_IPV4_MAPPED):
                raise _Unsupported(f"{field}: IPv6 cidr overlapping IPv4-mapped addresses")
            return {"term": {"related.ip": str(net)}}  # related.ip = every valid IP of sourceIPs
        if net.version != 4 or kind not in ("keyword", "body", "body_root"):
            raise _Unsupported(f"{field}: cidr on a {kind} field")
        return _any_of(_cidr_queries(field, net), target)  # type: ignore[arg-type]  # prefixes work on flattened too
    raise _Unsupported(f"{field}: Sigma value type {type(value).__name__}")


def _exists(field: str, kind: str) -> dict[str, Any]:
    if kind == "body":
        return {"prefix": {field: {"value": ""}}}  # exists on flat_object leaves fails on OpenSearch 2.x
    if kind == "body_object":
        raise _Unsupported(f"{field}: exists on a body object (its leaves are not addressable)")
    return {"exists": {"field": field}}


def _leaf(node: ConditionFieldEqualsValueExpression, target: QueryTarget,
          placeholders: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    sigma_field = node.field
    kind = field_kind(sigma_field)
    if kind is None:
        raise _Unsupported(f"{sigma_field}: not indexed")
    fields = _doc_fields(sigma_field)
    value = node.value
    if isinstance(value, (SigmaExists, SigmaNull)):
        q = _any_of([_exists(f, kind) for f in fields])
        return q if isinstance(value, SigmaExists) and value.exists else _not(q)
    if kind in ("date", "text"):
        raise _Unsupported(f"{sigma_field}: value match on a {kind} field")
    if kind == "body_object":
        raise _Unsupported(f"{sigma_field}: body path names an object (matching its leaves is client-side)",
                           _root_superset(sigma_field, value, target, placeholders))
    try:
        return _any_of([_value(f, sigma_field, kind, value, target, placeholders) for f in fields], target)
    except _Unsupported as exc:
        if kind == "body" and exc.superset is None:
            exc.superset = _root_superset(sigma_field, value, target, placeholders)
        raise


def _doc_fields(sigma_field: str) -> list[str]:
    """Document fields holding a Sigma field's values: a body path starting like a JSON-Patch operation
    (``requestObject.value``) is also searched in the wrapped patch array (``requestObject.json_patch.value``)."""
    field = doc_field(sigma_field)
    root, _, rest = sigma_field.partition(".")
    if root in ("requestObject", "responseObject") and rest.split(".", 1)[0] in JSON_PATCH_KEYS:
        return [field, f"{BODY_FIELDS[root]}.json_patch.{rest}"]
    return [field]


def _root_superset(sigma_field: str, value: Any, target: QueryTarget,
                   placeholders: Mapping[str, Sequence[str]]) -> dict[str, Any] | None:
    """The same value test on the body's root field (any leaf of the body): a superset of the path's test."""
    root = sigma_field.split(".", 1)[0]
    try:
        return _value(BODY_FIELDS[root], root, "body_root", value, target, placeholders)
    except _Unsupported:
        return None


def _node(node: Any, target: QueryTarget, placeholders: Mapping[str, Sequence[str]], positive: bool,
          reasons: list[str]) -> dict[str, Any]:
    if isinstance(node, ConditionAND):
        return _all_of([_node(a, target, placeholders, positive, reasons) for a in node.args])
    if isinstance(node, ConditionOR):
        return _any_of([_node(a, target, placeholders, positive, reasons) for a in node.args], target)
    if isinstance(node, ConditionNOT):
        return _not(_node(node.args[0], target, placeholders, not positive, reasons))
    try:
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return _leaf(node, target, placeholders)
        if isinstance(node, ConditionValueExpression):
            raise _Unsupported("keyword search (a value without a field)")
        raise _Unsupported(f"condition node {type(node).__name__}")
    except _Unsupported as exc:
        reasons.append(str(exc))
        if positive:  # broader: never loses a match
            return exc.superset if exc.superset is not None else MATCH_ALL
        return MATCH_NONE


def compile_detection(sigma_rule: Any, target: QueryTarget, placeholders: Mapping[str, Sequence[str]] | None = None,
                      positive: bool = True) -> tuple[dict[str, Any], list[str]]:
    """(query, reasons) for a SigmaRule's detection (its conditions OR-ed); see :func:`compile_rule_query`."""
    reasons: list[str] = []
    ph = placeholders or {}
    q = _any_of([_node(c.parsed, target, ph, positive, reasons) for c in sigma_rule.detection.parsed_condition])
    return q, reasons


def compile_rule_query(rule: "PackRule", target: QueryTarget,
                       placeholders: Mapping[str, Sequence[str]] | None = None) -> CompiledRule:
    """The rule's detection minus its tuning exceptions, as Query DSL (exact, or a broader prefilter + reasons).

    Sigma filter documents are already part of the detection (pySigma applies them). Tuning exceptions
    are compiled when the loader kept their Sigma tree (``predicate.sigma``); otherwise they are applied
    client-side and the query is the detection alone (a superset).
    """
    if rule.kind == "correlation":
        raise ContentError(f"rule {rule.id}: correlations have no single query")
    query, reasons = compile_detection(rule.sigma, target, placeholders)
    excluded = []
    for exc in rule.exceptions:
        tree = getattr(exc, "sigma", None)
        if tree is None:
            reasons.append("tuning exception without a Sigma tree (applied client-side)")
            continue
        eq, ereasons = compile_detection(tree, target, placeholders, positive=False)
        reasons += ereasons
        excluded.append(eq)
    if excluded:
        query = _all_of([query] + [_not(e) for e in excluded])
    return CompiledRule(rule.id, query, tuple(dict.fromkeys(reasons)))


def compile_query(rule: "PackRule", target: QueryTarget,
                  placeholders: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The rule's exact Query DSL; raises :class:`UnsupportedInEngine` when it can only be prefiltered."""
    compiled = compile_rule_query(rule, target, placeholders)
    if not compiled.exact:
        raise UnsupportedInEngine(rule.id, compiled.reasons)
    return compiled.query


# --------------------------------------------------------------------------- Lucene (saved searches)

_QS_SPECIAL = set('+-=&|><!(){}[]^"~*?:\\/ ')


def _qs_field(field: str) -> str:
    return "".join("\\" + c if c in _QS_SPECIAL else c for c in field)


def _qs_regex_char(c: str, ci: bool) -> str:
    if ci and c.lower() != c.upper() and len(c.lower()) == 1 and len(c.upper()) == 1:
        return f"[{_regex_literal(c.lower())}{_regex_literal(c.upper())}]"
    return _regex_literal(c)


def _qs_string(field: str, kind: str, value: SigmaString) -> str:
    cased = isinstance(value, SigmaCasedString)
    parts = value.s
    plain = "".join(p for p in parts if isinstance(p, str))
    if kind == "integer":
        if value.contains_special():
            raise _Unsupported("wildcard on a number")
        try:
            num = float(plain)
        except ValueError:
            raise _Unsupported("text on a number") from None
        if not num.is_integer():
            raise _Unsupported("fraction on an integer")
        return f"{_qs_field(field)}:{int(num)}"
    if kind == "body" and (value.contains_special() or (not cased and plain.lower() != plain.upper())):
        raise _Unsupported("case-insensitive or wildcard match on a body field (no regexp on flattened)")
    if kind not in ("keyword", "body", "body_root"):
        raise _Unsupported(f"string on a {kind} field")
    if kind == "body" and _number_texts(plain) and len(_number_texts(plain) or []) > 1:
        raise _Unsupported("number written several ways")
    if not value.contains_special() and (cased or plain.lower() == plain.upper()):
        return f'{_qs_field(field)}:"' + plain.replace("\\", "\\\\").replace('"', '\\"') + '"'
    rx = "".join(
        "".join(_qs_regex_char(c, not cased) for c in p) if isinstance(p, str)
        else (".*" if p is SpecialChars.WILDCARD_MULTI else ".")
        for p in parts
    )
    return f"{_qs_field(field)}:/" + rx + "/"


def _qs_value(field: str, sigma_field: str, kind: str, value: Any, placeholders: Mapping[str, Sequence[str]]) -> str:
    if isinstance(value, SigmaString):
        if value.contains_placeholder():
            alts = [_qs_value(field, sigma_field, kind, v, placeholders) for v in _expand_placeholders(value, placeholders)]
            if not alts:
                raise _Unsupported("placeholder without values")
            return "(" + " OR ".join(alts) + ")"
        return _qs_string(field, kind, value)
    if isinstance(value, SigmaExpansion):
        return "(" + " OR ".join(_qs_value(field, sigma_field, kind, v, placeholders) for v in value.values) + ")"
    if isinstance(value, SigmaCompareExpression) and kind == "integer":
        op = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
              CompareOperators.GTE: ">="}[value.op]
        return f"{_qs_field(field)}:{op}{value.number.number}"
    if isinstance(value, SigmaNumber) and kind == "integer":
        num = float(value.number)
        if not num.is_integer():
            raise _Unsupported("fraction on an integer")
        return f"{_qs_field(field)}:{int(num)}"
    if isinstance(value, SigmaCIDRExpression) and sigma_field == "sourceIPs":
        if value.network.version == 6 and value.network.overlaps(_IPV4_MAPPED):
            raise _Unsupported("IPv6 cidr overlapping IPv4-mapped addresses")
        return "related.ip:" + _qs_field(str(value.network))
    if isinstance(value, SigmaRegularExpression) and kind == "keyword" and not value.flags:
        try:
            rx = lucene_regexp(value.regexp.to_plain())
        except ValueError as exc:
            raise _Unsupported(str(exc)) from None
        return f"{_qs_field(field)}:/" + rx + "/"
    raise _Unsupported(f"{type(value).__name__} on a {kind} field")


def _qs_node(node: Any, placeholders: Mapping[str, Sequence[str]]) -> str:
    if isinstance(node, ConditionAND):
        return "(" + " AND ".join(_qs_node(a, placeholders) for a in node.args) + ")"
    if isinstance(node, ConditionOR):
        return "(" + " OR ".join(_qs_node(a, placeholders) for a in node.args) + ")"
    if isinstance(node, ConditionNOT):
        return "(NOT " + _qs_node(node.args[0], placeholders) + ")"
    if not isinstance(node, ConditionFieldEqualsValueExpression):
        raise _Unsupported("keyword search")
    kind = field_kind(node.field)
    field = doc_field(node.field)
    if kind is None or kind in ("body_object", "date", "text"):
        raise _Unsupported(f"{node.field}: {kind or 'not indexed'}")
    value = node.value
    if isinstance(value, (SigmaExists, SigmaNull)):
        exists = f"_exists_:{_qs_field(field)}"
        want = value.exists if isinstance(value, SigmaExists) else False
        if kind == "body":
            raise _Unsupported("exists on a body field")
        return exists if want else f"(NOT {exists})"
    if isinstance(value, SigmaBool) and kind in ("keyword", "body"):
        word = "true" if value.boolean else "false"
        if kind == "body":
            raise _Unsupported("boolean text on a body field is case-insensitive")
        return f"{_qs_field(field)}:/" + "".join(_qs_regex_char(c, True) for c in word) + "/"
    return _qs_value(field, node.field, kind, value, placeholders)


def compile_lucene(rule: "PackRule", placeholders: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """The rule as a Lucene ``query_string`` (saved searches in Kibana/OSD), or None when it cannot be exact.

    Case-insensitive text becomes a regexp with ``[aA]`` classes on keyword fields; body fields only take
    quoted values without letters (no regexp on Elasticsearch ``flattened``). Tuning exceptions without a
    Sigma tree make the rule inexpressible.
    """
    if rule.kind == "correlation" or any(getattr(e, "sigma", None) is None for e in rule.exceptions):
        return None
    ph = placeholders or {}
    try:
        parts = [_qs_node(c.parsed, ph) for c in rule.sigma.detection.parsed_condition]
        for exc in rule.exceptions:
            parts = ["(" + " OR ".join(parts) + ")"] + [
                "(NOT (" + " OR ".join(_qs_node(c.parsed, ph) for c in exc.sigma.detection.parsed_condition) + "))"]
            parts = [" AND ".join(parts)]
    except _Unsupported:
        return None
    return " OR ".join(parts) if len(parts) > 1 else parts[0]


def rule_searches(pack: Any) -> list[tuple[str, str, str]]:
    """``(rule id, title, Lucene query)`` for every single-event rule expressible as a query string
    (input of :func:`kaudit_elk.views.dashboards.saved_searches_for_rules`)."""
    out = []
    for r in pack.single:
        q = compile_lucene(r, pack.placeholders)
        if q is not None:
            out.append((r.id, r.title, q))
    return out
