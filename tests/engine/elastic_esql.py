"""Test helper: Elastic's ES|QL rules evaluated on a test engine that has no ES|QL.

Only the constructs the 11 ES|QL rules in ``../shared/corpus/elastic-detection-rules-kubernetes`` use, with
ES|QL's semantics (anything else raises :class:`EsqlUnsupported`, never a guess):

* ``WHERE`` commands on document fields (also those after an ``EVAL`` they do not read: ES|QL's optimizer
  pushes them down the same way) run **in the engine** as Query DSL, translated as ES|QL pushes them to
  Lucene: ``==``/``IN`` -> ``term``/``terms``, ``LIKE`` -> ``wildcard``, ``RLIKE`` -> ``regexp`` (Lucene
  syntax, all flags), ``STARTS_WITH`` -> ``prefix``, ``IS NULL`` -> not ``exists``, ``KQL()`` -> the KQL
  translator; a ``text`` field with a ``keyword`` multi-field is compared on that multi-field (the whole
  value). Three-valued logic is kept: each condition becomes a pair (true, false) of queries, a comparison
  on a missing field being neither, so ``NOT x IN (...)`` drops a document without ``x`` as ES|QL does.
  A multi-valued field in such a comparison (null with a warning in ES|QL) is refused.
* The rows that pass are read from the engine (the ``fields`` API: the values as indexed) and the rest of
  the query runs row by row as ES|QL defines it: ``EVAL`` (``URL_DECODE``, ``REPLACE`` (regex, replace
  all), ``CASE``, ``DATE_TRUNC``, ``TO_STRING``), ``GROK`` (``DATA`` = ``.*?``, ``GREEDYDATA`` = ``.*``,
  unanchored; no match -> null), ``WHERE`` with null propagation, ``STATS ... BY`` (a multi-valued key puts
  the row in each of its groups; ``COUNT``, ``COUNT_DISTINCT``, ``VALUES``, ``MIN``, ``MAX``, ``SUM``) and
  ``KEEP`` (projection). ``RLIKE`` on a computed value is decided by the engine too (Lucene's ``RegExp``
  is what ES|QL runs, with ``\\s`` a literal ``s`` and ``&`` an intersection): the values are written to a
  scratch ``keyword`` index and searched with the same ``regexp`` query.
* ``NOW()`` is the time the rule runs, given by the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from elastic_query import kql_fields, kql_to_dsl


class EsqlUnsupported(ValueError):
    """A construct (or a data shape) this evaluator does not model exactly."""


# ---- tokens ----------------------------------------------------------------------------------------
_TOKEN = re.compile(r'''
    (?P<ws>\s+|//[^\n]*)
  | (?P<tstr>"""(?:.|\n)*?""")
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<bq>`[^`]+`)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<op>==|!=|>=|<=|>|<|\(|\)|,|=|-|\+|\*|/|\|)
  | (?P<word>[A-Za-z_@][\w.@]*)
''', re.X)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
KEYWORDS = {"and", "or", "not", "in", "is", "null", "like", "rlike", "true", "false", "by"}
_UNITS = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600,
          "day": 86400, "days": 86400}


@dataclass(frozen=True)
class Tok:
    kind: str  # str num op word field
    text: str


def tokens(text: str) -> list[Tok]:
    out: list[Tok] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m:
            raise EsqlUnsupported(f"ES|QL not understood at {i}: {text[i:i + 30]!r}")
        i = m.end()
        kind, value = m.lastgroup, m.group()
        if kind == "ws":
            continue
        if kind == "tstr":
            out.append(Tok("str", value[3:-3]))
        elif kind == "str":
            out.append(Tok("str", re.sub(r"\\(.)", lambda e: _escape(e.group(1)), value[1:-1])))
        elif kind == "bq":
            out.append(Tok("field", value[1:-1]))
        elif kind == "word" and value.lower() in KEYWORDS:
            out.append(Tok("op", value.lower()))
        else:
            out.append(Tok(kind, value))
    return out


def _escape(ch: str) -> str:
    if ch not in _ESCAPES:
        raise EsqlUnsupported(f"string escape \\{ch}")
    return _ESCAPES[ch]


# ---- expressions -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Col:
    name: str


@dataclass(frozen=True)
class Call:
    name: str  # lower case
    args: tuple


@dataclass(frozen=True)
class Op:
    op: str  # and or not == != >= <= > < in like rlike isnull notnull + -
    args: tuple


class _Expr:
    def __init__(self, toks: list[Tok]) -> None:
        self.t, self.i = toks, 0

    def peek(self, *texts: str) -> bool:
        return self.i < len(self.t) and self.t[self.i].kind == "op" and self.t[self.i].text in texts

    def take(self, text: str | None = None) -> Tok:
        if self.i >= len(self.t):
            raise EsqlUnsupported(f"unexpected end, wanted {text}")
        tok = self.t[self.i]
        if text is not None and not (tok.kind == "op" and tok.text == text):
            raise EsqlUnsupported(f"expected {text!r}, got {tok.text!r}")
        self.i += 1
        return tok

    def done(self) -> bool:
        return self.i >= len(self.t)

    def expr(self) -> Any:
        left = self.and_e()
        while self.peek("or"):
            self.take()
            left = Op("or", (left, self.and_e()))
        return left

    def and_e(self) -> Any:
        left = self.not_e()
        while self.peek("and"):
            self.take()
            left = Op("and", (left, self.not_e()))
        return left

    def not_e(self) -> Any:
        if self.peek("not"):
            self.take()
            return Op("not", (self.not_e(),))
        return self.predicate()

    def predicate(self) -> Any:
        left = self.additive()
        negate = False
        if self.peek("not") and self.i + 1 < len(self.t) and self.t[self.i + 1].text in ("in", "like", "rlike"):
            self.take()
            negate = True
        if self.peek("==", "!=", ">=", "<=", ">", "<"):
            op = self.take().text
            node: Any = Op(op, (left, self.additive()))
        elif self.peek("in"):
            self.take()
            self.take("(")
            items = [self.additive()]
            while self.peek(","):
                self.take()
                items.append(self.additive())
            self.take(")")
            node = Op("in", (left, tuple(items)))
        elif self.peek("like", "rlike"):
            op = self.take().text
            pat = self.take()
            if pat.kind != "str":
                raise EsqlUnsupported(f"{op} needs a string pattern")
            node = Op(op, (left, Lit(pat.text)))
        elif self.peek("is"):
            self.take()
            if self.peek("not"):
                self.take()
                self.take("null")
                return Op("notnull", (left,))
            self.take("null")
            return Op("isnull", (left,))
        else:
            return left
        return Op("not", (node,)) if negate else node

    def additive(self) -> Any:
        left = self.primary()
        while self.peek("+", "-"):
            op = self.take().text
            left = Op(op, (left, self.primary()))
        return left

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "str":
            return Lit(tok.text)
        if tok.kind == "num":
            value: Any = float(tok.text) if "." in tok.text else int(tok.text)
            nxt = self.t[self.i] if self.i < len(self.t) else None
            if nxt is not None and nxt.kind == "word" and nxt.text.lower() in _UNITS:
                self.i += 1
                return Lit(timedelta(seconds=value * _UNITS[nxt.text.lower()]))
            return Lit(value)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if tok.kind == "op" and tok.text in ("true", "false", "null"):
            return Lit({"true": True, "false": False, "null": None}[tok.text])
        if tok.kind == "field":
            return Col(tok.text)
        if tok.kind == "word":
            if self.peek("("):
                self.take()
                args: list[Any] = []
                if self.peek("*"):
                    self.take()
                    args.append(Lit("*"))
                elif not self.peek(")"):
                    args.append(self.expr())
                    while self.peek(","):
                        self.take()
                        args.append(self.expr())
                self.take(")")
                return Call(tok.text.lower(), tuple(args))
            return Col(tok.text)
        raise EsqlUnsupported(f"unexpected {tok.text!r}")


def parse_expr(toks: list[Tok]) -> Any:
    p = _Expr(toks)
    e = p.expr()
    if not p.done():
        raise EsqlUnsupported(f"unparsed: {[t.text for t in p.t[p.i:]]}")
    return e


# ---- commands ----------------------------------------------------------------------------------------
@dataclass
class Command:
    name: str  # from where eval grok stats keep
    expr: Any = None  # where
    assigns: list[tuple[str, Any]] = field(default_factory=list)  # eval, stats aggregates
    by: list[Any] = field(default_factory=list)  # stats
    source: str = ""  # grok input column
    pattern: str = ""  # grok


def _split(toks: list[Tok], sep: str) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "op" and t.text == "(":
            depth += 1
        elif t.kind == "op" and t.text == ")":
            depth -= 1
        if depth == 0 and t.kind == "op" and t.text == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def _assignments(toks: list[Tok]) -> list[tuple[str, Any]]:
    out = []
    for part in _split(toks, ","):
        if len(part) >= 2 and part[1].kind == "op" and part[1].text == "=":
            out.append((part[0].text, parse_expr(part[2:])))
        else:
            raise EsqlUnsupported(f"unnamed expression {[t.text for t in part]}")
    return out


def parse(text: str) -> list[Command]:
    """The commands of an ES|QL query."""
    out: list[Command] = []
    for part in _split(tokens(text), "|"):
        if not part:
            raise EsqlUnsupported("empty command")
        head, rest = part[0].text.lower(), part[1:]
        if head == "from":
            out.append(Command("from"))
        elif head == "where":
            out.append(Command("where", expr=parse_expr(rest)))
        elif head == "eval":
            out.append(Command("eval", assigns=_assignments(rest)))
        elif head == "grok":
            if len(rest) != 2 or rest[1].kind != "str":
                raise EsqlUnsupported("GROK form")
            out.append(Command("grok", source=rest[0].text, pattern=rest[1].text))
        elif head == "stats":
            by_at = next((i for i, t in enumerate(rest) if t.kind == "op" and t.text == "by"), len(rest))
            by = [parse_expr(p) for p in _split(rest[by_at + 1:], ",")] if by_at < len(rest) else []
            out.append(Command("stats", assigns=_assignments(rest[:by_at]), by=by))
        elif head == "keep":
            out.append(Command("keep", assigns=[(t.text, None) for t in rest if t.kind in ("word", "field", "op")
                                                  and t.text != ","]))
        else:
            raise EsqlUnsupported(f"command {head}")
    if not out or out[0].name != "from":
        raise EsqlUnsupported("a query starts with FROM")
    return out


def columns(e: Any) -> set[str]:
    """Column names an expression reads (KQL() fields not included)."""
    if isinstance(e, Col):
        return {e.name}
    if isinstance(e, Call):
        if e.name == "kql":
            return set()
        return set().union(*(columns(a) for a in e.args)) if e.args else set()
    if isinstance(e, Op):
        out: set[str] = set()
        for a in e.args:
            if isinstance(a, tuple):
                for x in a:
                    out |= columns(x)
            else:
                out |= columns(a)
        return out
    return set()


def kql_in(e: Any) -> list[str]:
    if isinstance(e, Call) and e.name == "kql":
        return [e.args[0].value]
    if isinstance(e, (Call, Op)):
        return [q for a in e.args for q in (kql_in(a) if not isinstance(a, tuple) else [y for x in a for y in kql_in(x)])]
    return []


def query_fields(text: str) -> tuple[set[str], set[str]]:
    """(document fields the query reads as columns, fields only read inside KQL())."""
    defined: set[str] = set()
    direct: set[str] = set()
    kql: set[str] = set()
    for cmd in parse(text):
        exprs: list[Any] = []
        if cmd.name == "where":
            exprs = [cmd.expr]
        elif cmd.name in ("eval", "stats"):
            exprs = [e for _, e in cmd.assigns] + list(cmd.by)
        elif cmd.name == "grok":
            exprs = [Col(cmd.source)]
        elif cmd.name == "keep":
            direct |= {n for n, _ in cmd.assigns if "*" not in n and n not in defined and "." in n
                       and not n.startswith("_")}
        for e in exprs:
            direct |= {c for c in columns(e) if c not in defined}
            for q in kql_in(e):
                kql |= kql_fields(q)
        if cmd.name == "eval":
            defined |= {n for n, _ in cmd.assigns}
        elif cmd.name == "stats":
            defined |= {n for n, _ in cmd.assigns}
        elif cmd.name == "grok":
            defined |= set(re.findall(r"%\{\w+:(\w+)\}", cmd.pattern))
    return {f for f in direct if not f.startswith("Esql.")}, kql


# ---- pushdown: WHERE on document fields -> (true, false) Query DSL --------------------------------------
def _lit(e: Any) -> Any:
    if not isinstance(e, Lit):
        raise EsqlUnsupported(f"literal expected, got {e}")
    return e.value


def _field_of(e: Any) -> tuple[str, bool]:
    """(document field, via to_string) of a comparison's left side."""
    if isinstance(e, Col):
        return e.name, False
    if isinstance(e, Call) and e.name == "to_string" and len(e.args) == 1 and isinstance(e.args[0], Col):
        return e.args[0].name, True
    raise EsqlUnsupported(f"comparison on {e} cannot be pushed down")


def _not(q: dict) -> dict:
    return {"bool": {"must_not": [q]}}


def _all(qs: list[dict]) -> dict:
    return {"bool": {"filter": qs}}


def _any(qs: list[dict]) -> dict:
    return {"bool": {"should": qs, "minimum_should_match": 1}}


@dataclass
class Pushdown:
    exact: Callable[[str], str]  # the field a whole-value comparison uses (text -> its keyword multi-field)
    types: Callable[[str], str]  # the mapping type of a field
    compared: set[str] = field(default_factory=set)

    def pair(self, e: Any) -> tuple[dict, dict]:
        """(documents where ``e`` is true, documents where it is false); others: null."""
        if isinstance(e, Op) and e.op == "and":
            (ta, fa), (tb, fb) = self.pair(e.args[0]), self.pair(e.args[1])
            return _all([ta, tb]), _any([fa, fb])
        if isinstance(e, Op) and e.op == "or":
            (ta, fa), (tb, fb) = self.pair(e.args[0]), self.pair(e.args[1])
            return _any([ta, tb]), _all([fa, fb])
        if isinstance(e, Op) and e.op == "not":
            t, f = self.pair(e.args[0])
            return f, t
        if isinstance(e, Call) and e.name == "kql":
            q = kql_to_dsl(_lit(e.args[0]))
            return q, _not(q)
        if isinstance(e, Op) and e.op in ("isnull", "notnull"):
            name, _ = _field_of(e.args[0])
            q = {"exists": {"field": name}}
            return (_not(q), q) if e.op == "isnull" else (q, _not(q))
        if isinstance(e, Call) and e.name == "starts_with":
            name, _ = _field_of(e.args[0])
            q = {"prefix": {self.exact(name): {"value": _lit(e.args[1])}}}
            return self._leaf(name, q)
        if isinstance(e, Op) and e.op in ("==", "!=", "in", "like", "rlike", ">=", "<=", ">", "<"):
            name, as_string = _field_of(e.args[0])
            ftype = self.types(name)
            if as_string and ftype not in ("ip", "keyword"):
                raise EsqlUnsupported(f"to_string({name}) on {ftype}")
            target = self.exact(name)
            if e.op in ("==", "!="):
                q = {"term": {target: {"value": _lit(e.args[1])}}}
                return self._leaf(name, q) if e.op == "==" else self._leaf(name, q)[::-1]
            if e.op == "in":
                values = [_lit(v) for v in e.args[1]]
                if None in values:
                    raise EsqlUnsupported("null in an IN list")
                return self._leaf(name, {"terms": {target: values}})
            if e.op == "like":
                return self._leaf(name, {"wildcard": {target: {"value": _lit(e.args[1])}}})
            if e.op == "rlike":
                return self._leaf(name, {"regexp": {target: {"value": _lit(e.args[1]), "flags": "ALL",
                                                             "max_determinized_states": 100000}}})
            bound = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}[e.op]
            return self._leaf(name, {"range": {target: {bound: _lit(e.args[1])}}})
        raise EsqlUnsupported(f"WHERE construct {e}")

    def _leaf(self, name: str, q: dict) -> tuple[dict, dict]:
        self.compared.add(name)
        return q, _all([{"exists": {"field": name}}, _not(q)])


# ---- row evaluation ---------------------------------------------------------------------------------------
_GROK = {"DATA": ".*?", "GREEDYDATA": ".*"}


def grok_regex(pattern: str) -> re.Pattern[str]:
    def sub(m: re.Match[str]) -> str:
        name, _, capture = m.group(1).partition(":")
        if name not in _GROK:
            raise EsqlUnsupported(f"grok pattern {name}")
        return f"(?P<{capture}>{_GROK[name]})" if capture else f"(?:{_GROK[name]})"
    return re.compile(re.sub(r"%\{([^}]+)\}", sub, pattern), re.S)


def _java_regex(pattern: str) -> re.Pattern[str]:
    if re.search(r"\\[pPQEGZzAh]|\(\?<[=!]|\$\{", pattern):
        raise EsqlUnsupported(f"Java regex construct in {pattern!r}")
    return re.compile(pattern)


def _url_decode(s: str) -> str | None:
    """java.net.URLDecoder.decode(s, UTF-8): '+' is a space, a malformed escape is an error (null)."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", s):
        return None
    try:
        return urllib.parse.unquote_plus(s, errors="strict")
    except UnicodeDecodeError:
        return None


def _ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass
class Rows:
    """Row-by-row evaluation; ``rlike(pattern, values)`` says which values match (the engine decides)."""

    rlike: Callable[[str, list[str]], set[str]]
    now: datetime

    def value(self, e: Any, row: dict[str, Any]) -> Any:
        if isinstance(e, Lit):
            return e.value
        if isinstance(e, Col):
            return row.get(e.name)
        if isinstance(e, Call):
            return self.call(e, row)
        if isinstance(e, Op):
            return self.op(e, row)
        raise EsqlUnsupported(f"expression {e}")

    @staticmethod
    def single(v: Any) -> Any:
        """A single-value function's argument: null for a multi-valued value (ES|QL warns)."""
        if isinstance(v, list):
            return v[0] if len(v) == 1 else None
        return v

    def call(self, e: Call, row: dict[str, Any]) -> Any:
        n, args = e.name, e.args
        if n == "now":
            return self.now
        if n == "case":
            for i in range(0, len(args) - 1, 2):
                if self.single(self.value(args[i], row)) is True:
                    return self.value(args[i + 1], row)
            return self.value(args[-1], row) if len(args) % 2 else None
        vals = [self.single(self.value(a, row)) for a in args]
        if n == "url_decode":
            return None if vals[0] is None else _url_decode(vals[0])
        if n == "replace":
            if None in vals:
                return None
            return _java_regex(vals[1]).sub(vals[2].replace("\\", "\\\\"), vals[0])
        if n == "to_string":
            return None if vals[0] is None else str(vals[0])
        if n == "starts_with":
            return None if None in vals else vals[0].startswith(vals[1])
        if n == "date_trunc":
            span, ts = vals
            if ts is None:
                return None
            step = int(span.total_seconds())
            epoch = int(_ts(ts).timestamp())
            return datetime.fromtimestamp(epoch - epoch % step, tz=timezone.utc)
        raise EsqlUnsupported(f"function {n}")

    def op(self, e: Op, row: dict[str, Any]) -> Any:
        o = e.op
        if o == "and":
            a, b = (self.single(self.value(x, row)) for x in e.args)
            if a is False or b is False:
                return False
            return None if a is None or b is None else True
        if o == "or":
            a, b = (self.single(self.value(x, row)) for x in e.args)
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        if o == "not":
            a = self.single(self.value(e.args[0], row))
            return None if a is None else not a
        if o in ("isnull", "notnull"):
            v = self.value(e.args[0], row)
            return (v is None) == (o == "isnull")
        left = self.single(self.value(e.args[0], row))
        if o == "in":
            if left is None:
                return None
            items = [self.value(x, row) for x in e.args[1]]
            if left in items:
                return True
            return None if None in items else False
        if o in ("like", "rlike"):
            if left is None:
                return None
            pattern = e.args[1].value
            if o == "rlike":
                return left in self.rlike(pattern, [left])
            return re.fullmatch(_like_regex(pattern), left, re.S) is not None
        right = self.single(self.value(e.args[1], row))
        if left is None or right is None:
            return None
        if o in ("+", "-"):
            if isinstance(left, datetime) or isinstance(right, timedelta):
                return _ts(left) + right if o == "+" else _ts(left) - right
            return left + right if o == "+" else left - right
        if isinstance(left, datetime) or isinstance(right, datetime):
            left, right = _ts(left), _ts(right)
        return {"==": left == right, "!=": left != right, ">=": left >= right, "<=": left <= right,
                ">": left > right, "<": left < right}[o]


def _like_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return "".join(out)


def _flat(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        elif v is not None:
            out.append(v)
    return out


def stats(cmd: Command, rows: list[dict[str, Any]], ev: Rows) -> list[dict[str, Any]]:
    """``STATS aggs BY keys``: a multi-valued key puts the row in each of its groups; a null key is a group."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    names = [k.name if isinstance(k, Col) else str(k) for k in cmd.by]
    for row in rows:
        keys: list[list[Any]] = []
        for k in cmd.by:
            v = ev.value(k, row)
            vs = sorted(set(v), key=str) if isinstance(v, list) else [v]
            keys.append(vs or [None])
        combos: list[tuple] = [()]
        for vs in keys:
            combos = [c + (v,) for c in combos for v in vs]
        for c in combos:
            groups.setdefault(tuple(_hashable(x) for x in c), []).append(row)
    if not cmd.by and not groups:
        groups[()] = []
    out = []
    for key, members in groups.items():
        res: dict[str, Any] = dict(zip(names, key))
        for name, agg in cmd.assigns:
            res[name] = _aggregate(agg, members, ev)
        out.append(res)
    return out


def _hashable(v: Any) -> Any:
    return v


def _aggregate(agg: Any, rows: list[dict[str, Any]], ev: Rows) -> Any:
    if not isinstance(agg, Call):
        raise EsqlUnsupported(f"aggregate {agg}")
    n = agg.name
    if n == "count" and (not agg.args or agg.args[0] == Lit("*")):
        return len(rows)
    values = _flat(ev.value(agg.args[0], r) for r in rows)
    if n == "count":
        return len(values)
    if n == "count_distinct":  # HyperLogLog, exact below its precision threshold (3000)
        if len(values) >= 3000:
            raise EsqlUnsupported("count_distinct beyond its exact range")
        return len({_hashable(v) for v in values})
    if n == "values":
        distinct = list(dict.fromkeys(values))
        return None if not distinct else distinct[0] if len(distinct) == 1 else distinct
    if n in ("min", "max"):
        if not values:
            return None
        dated = [_ts(v) for v in values] if all(isinstance(v, str) for v in values) else values
        return min(dated) if n == "min" else max(dated)
    if n == "sum":
        return sum(values) if values else None
    raise EsqlUnsupported(f"aggregate function {n}")


# ---- the whole query ----------------------------------------------------------------------------------------
@dataclass
class EsqlResult:
    rows: list[dict[str, Any]]
    pushed: dict[str, Any]  # the Query DSL the engine ran
    documents: int  # documents it returned


def evaluate(text: str, *, search: Callable[[dict[str, Any], list[str]], list[dict[str, list[Any]]]],
             rlike: Callable[[str, list[str]], set[str]], exact: Callable[[str], str], types: Callable[[str], str],
             now: datetime) -> EsqlResult:
    """Run an ES|QL query: ``search(query, fields)`` returns the matching documents' ``fields`` (the engine's
    values), ``rlike(pattern, values)`` the values a Lucene regexp matches (the engine decides)."""
    cmds = parse(text)[1:]
    push = Pushdown(exact, types)
    pushed: list[dict] = []
    rest: list[Command] = []
    defined: set[str] = set()
    barrier = False
    for cmd in cmds:
        if cmd.name == "where" and not barrier and not (columns(cmd.expr) & defined):
            pushed.append(push.pair(cmd.expr)[0])
            continue
        if cmd.name == "eval":
            defined |= {n for n, _ in cmd.assigns}
        else:
            barrier = True
        rest.append(cmd)
    read, _ = query_fields(text)
    fields = sorted(read | push.compared)
    query = _all(pushed) if pushed else {"match_all": {}}
    docs = search(query, fields)
    for doc in docs:
        for name in push.compared:
            if len(doc.get(name) or []) > 1:
                raise EsqlUnsupported(f"{name} is multi-valued in a document: ES|QL's null-on-multivalue not modelled")
    rows: list[dict[str, Any]] = []
    for doc in docs:
        row: dict[str, Any] = {}
        for name in fields:
            v = doc.get(name)
            row[name] = None if not v else v[0] if len(v) == 1 else list(v)
        rows.append(row)
    ev = Rows(rlike, now)
    for cmd in rest:
        if cmd.name == "eval":
            for row in rows:
                for name, e in cmd.assigns:
                    row[name] = ev.value(e, row)
        elif cmd.name == "grok":
            rx = grok_regex(cmd.pattern)
            names = list(rx.groupindex)
            for row in rows:
                src = ev.single(row.get(cmd.source))
                m = rx.search(src) if isinstance(src, str) else None
                for name in names:
                    row[name] = m.group(name) if m else None
        elif cmd.name == "where":
            _prefetch_rlike(cmd.expr, rows, ev)
            rows = [row for row in rows if ev.single(ev.value(cmd.expr, row)) is True]
        elif cmd.name == "stats":
            rows = stats(cmd, rows, ev)
        elif cmd.name == "keep":
            pass  # a projection: it removes no row
        else:
            raise EsqlUnsupported(cmd.name)
    return EsqlResult(rows, query, len(docs))


def _prefetch_rlike(e: Any, rows: list[dict[str, Any]], ev: Rows) -> None:
    """Ask the engine once per RLIKE pattern for all the rows' values (the cache in ``ev.rlike`` keeps them)."""
    if isinstance(e, Op) and e.op == "rlike":
        values = [v for v in (ev.single(ev.value(e.args[0], r)) for r in rows) if isinstance(v, str)]
        if values:
            ev.rlike(e.args[1].value, values)
    if isinstance(e, (Op, Call)):
        for a in e.args:
            if not isinstance(a, tuple):
                _prefetch_rlike(a, rows, ev)


def scratch_rlike(request: Callable[..., Any], index: str) -> Callable[[str, list[str]], set[str]]:
    """``rlike(pattern, values)`` decided by the engine's own Lucene ``regexp`` on a scratch keyword index."""
    cache: dict[tuple[str, str], bool] = {}
    created = [False]

    def rlike(pattern: str, values: list[str]) -> set[str]:
        todo = sorted({v for v in values if (pattern, v) not in cache})
        if todo:
            if not created[0]:
                request("PUT", f"/{index}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                             "mappings": {"dynamic": False, "properties": {"v": {"type": "keyword"}}}},
                        ignore=(400,))
                created[0] = True
            ids = {hashlib.sha256(v.encode()).hexdigest(): v for v in todo}
            lines = []
            for i, v in ids.items():
                lines += [json.dumps({"index": {"_index": index, "_id": i}}), json.dumps({"v": v})]
            result = request("POST", "/_bulk", ("\n".join(lines) + "\n").encode(), params={"refresh": "true"},
                             ndjson=True)
            assert not result.get("errors"), result
            body = {"size": len(ids), "_source": False,
                    "query": {"bool": {"filter": [{"ids": {"values": sorted(ids)}},
                                                  {"regexp": {"v": {"value": pattern, "flags": "ALL",
                                                                    "max_determinized_states": 100000}}}]}}}
            hits = {h["_id"] for h in request("POST", f"/{index}/_search", body)["hits"]["hits"]}
            for i, v in ids.items():
                cache[(pattern, v)] = i in hits
        return {v for v in values if cache[(pattern, v)]}

    return rlike
