"""Test helper: Elastic's rule languages as Query DSL, the way Elastic's own engines run them.

* KQL (``kuery``, the ``query`` and ``new_terms`` rules) is translated the way Kibana's KQL builds
  Query DSL: ``and`` -> ``bool.filter``, ``or`` -> ``bool.should`` (at least one), ``not`` ->
  ``bool.must_not``, ``field:*`` -> ``exists``, a quoted value -> ``match_phrase``, an unquoted value ->
  ``match``, an unquoted value with a wildcard -> ``query_string`` on that one field (special characters
  escaped, ``*`` kept), value lists ``field:(a or b and not c)`` distributed over the field.
* EQL's boolean part (``any where ...`` and the steps of a ``sequence``) is translated as EQL does on a
  keyword (or a text field's keyword multi-field): ``==`` -> ``term``, ``!=`` -> not ``term``, ``in`` ->
  ``terms``, ``like`` -> ``wildcard`` (case-sensitive), ``: value`` -> case-insensitive ``term``,
  ``== null`` -> not ``exists``. The sequence's join and time window are the caller's to check.
* ES|QL: see ``elastic_esql.py``.

Own code; only what the 45 rules in ``../shared/corpus/elastic-detection-rules-kubernetes`` use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

# ---- KQL ----------------------------------------------------------------------------------------

_KQL_SPECIAL = set('\\():<>"*{}')
_QS_SPECIAL = set('+-=&|><!(){}[]^"~?:\\/ ')


@dataclass(frozen=True)
class _Tok:
    kind: str  # ( ) : AND OR NOT VALUE
    text: str = ""
    quoted: bool = False
    wildcard: bool = False
    raw: tuple = ()  # unquoted value: (char, is_wildcard) pairs


def _kql_tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "():":
            out.append(_Tok(c))
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ValueError(f"unterminated quoted value at {i}: {text[i:i + 30]!r}")
            out.append(_Tok("VALUE", "".join(buf), quoted=True))
            i = j + 1
        else:
            j, raw = i, []
            while j < n and not text[j].isspace() and text[j] not in '():"':
                if text[j] == "\\" and j + 1 < n:
                    raw.append((text[j + 1], False))
                    j += 2
                    continue
                if text[j] in "<>{}":
                    raise ValueError(f"KQL construct not used by the rules at {j}: {text[j:j + 20]!r}")
                raw.append((text[j], text[j] == "*"))
                j += 1
            word = "".join(ch for ch, _ in raw)
            escaped = any(not w and ch in _KQL_SPECIAL for ch, w in raw) or "\\" in text[i:j]
            if word.lower() in ("and", "or", "not") and not escaped:
                out.append(_Tok(word.upper()))
            else:
                out.append(_Tok("VALUE", word, wildcard=any(w for _, w in raw), raw=tuple(raw)))
            i = j
    return out


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self, kind: str) -> bool:
        return self.i < len(self.t) and self.t[self.i].kind == kind

    def take(self, kind: str) -> _Tok:
        if not self.peek(kind):
            got = self.t[self.i] if self.i < len(self.t) else "end"
            raise ValueError(f"expected {kind}, got {got}")
        self.i += 1
        return self.t[self.i - 1]

    # query level
    def query(self) -> dict:
        parts = [self.and_q()]
        while self.peek("OR"):
            self.take("OR")
            parts.append(self.and_q())
        return _or(parts)

    def and_q(self) -> dict:
        parts = [self.not_q()]
        while self.peek("AND"):
            self.take("AND")
            parts.append(self.not_q())
        return _and(parts)

    def not_q(self) -> dict:
        if self.peek("NOT"):
            self.take("NOT")
            return _not(self.not_q())
        if self.peek("("):
            self.take("(")
            q = self.query()
            self.take(")")
            return q
        field = self.take("VALUE")
        if field.quoted or field.wildcard:
            raise ValueError(f"field name expected, got {field.text!r}")
        self.take(":")
        return self.values(field.text)

    # value level (``field:(...)``)
    def values(self, field: str) -> dict:
        if self.peek("("):
            self.take("(")
            q = self.v_or(field)
            self.take(")")
            return q
        return _leaf(field, self.take("VALUE"))

    def v_or(self, field: str) -> dict:
        parts = [self.v_and(field)]
        while self.peek("OR"):
            self.take("OR")
            parts.append(self.v_and(field))
        return _or(parts)

    def v_and(self, field: str) -> dict:
        parts = [self.v_not(field)]
        while self.peek("AND"):
            self.take("AND")
            parts.append(self.v_not(field))
        return _and(parts)

    def v_not(self, field: str) -> dict:
        if self.peek("NOT"):
            self.take("NOT")
            return _not(self.v_not(field))
        return self.values(field)


def _or(parts: list[dict]) -> dict:
    return parts[0] if len(parts) == 1 else {"bool": {"should": parts, "minimum_should_match": 1}}


def _and(parts: list[dict]) -> dict:
    return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}


def _not(q: dict) -> dict:
    return {"bool": {"must_not": q}}


def _leaf(field: str, tok: _Tok) -> dict:
    if tok.quoted:
        return {"match_phrase": {field: tok.text}}
    if tok.raw == (("*", True),):
        return {"exists": {"field": field}}
    if tok.wildcard:
        query = "".join("*" if w else ("\\" + ch if ch in _QS_SPECIAL else ch) for ch, w in tok.raw)
        return {"query_string": {"fields": [field], "query": query}}
    return {"match": {field: tok.text}}


def kql_to_dsl(text: str) -> dict[str, Any]:
    """Query DSL for a KQL query, built as Kibana builds it."""
    p = _Parser(_kql_tokens(text))
    q = p.query()
    if p.i != len(p.t):
        raise ValueError(f"unparsed KQL from token {p.i}: {p.t[p.i]}")
    return q


# ---- EQL ----------------------------------------------------------------------------------------

_EQL_TOKEN = re.compile(r"""
    (?P<ws>\s+|/\*.*?\*/|//[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<field>`[^`]+`)
  | (?P<op>==|!=|:|\(|\)|,|\[|\])
  | (?P<word>[A-Za-z_@][\w.@/-]*(?:=\d+\w*)?)
""", re.S | re.X)


def _eql_tokens(text: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(text):
        m = _EQL_TOKEN.match(text, i)
        if not m:
            raise ValueError(f"EQL not understood at {i}: {text[i:i + 30]!r}")
        i = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        value = m.group()
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "field":
            value, kind = value[1:-1], "word"
        out.append((kind, value))
    return out


class _Eql:
    def __init__(self, tokens: list[tuple[str, str]], exact: Callable[[str], str]) -> None:
        self.t, self.i, self.exact = tokens, 0, exact

    def peek(self, value: str) -> bool:
        return self.i < len(self.t) and self.t[self.i][1].lower() == value

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.t[self.i]
        if value is not None and tok[1].lower() != value:
            raise ValueError(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def expr(self) -> dict:
        parts = [self.and_e()]
        while self.peek("or"):
            self.take()
            parts.append(self.and_e())
        return _or(parts)

    def and_e(self) -> dict:
        parts = [self.not_e()]
        while self.peek("and"):
            self.take()
            parts.append(self.not_e())
        return _and(parts)

    def not_e(self) -> dict:
        if self.peek("not"):
            self.take()
            return _not(self.not_e())
        if self.peek("("):
            self.take("(")
            q = self.expr()
            self.take(")")
            return q
        return self.comparison()

    def values(self) -> list[str | None]:
        if self.peek("("):
            self.take("(")
            out = [self.value()]
            while self.peek(","):
                self.take(",")
                out.append(self.value())
            self.take(")")
            return out
        return [self.value()]

    def value(self) -> str | None:
        kind, text = self.take()
        if kind == "str":
            return text
        if text.lower() == "null":
            return None
        raise ValueError(f"value expected, got {text!r}")

    def comparison(self) -> dict:
        _, field = self.take()
        target = self.exact(field)
        _, op = self.take()
        op = op.lower()
        values = self.values()
        if op in ("==", "!=") and values == [None]:
            q = {"exists": {"field": target}}
            return q if op == "!=" else _not(q)
        if op == "==":
            return {"term": {target: {"value": values[0]}}}
        if op == "!=":
            return _not({"term": {target: {"value": values[0]}}})
        if op == "in":
            return {"terms": {target: values}}
        if op == ":":
            return _or([{"term": {target: {"value": v, "case_insensitive": True}}} for v in values])
        if op == "like":
            return _or([{"wildcard": {target: {"value": v}}} for v in values])
        raise ValueError(f"EQL operator not used by the rules: {op}")


@dataclass(frozen=True)
class EqlQuery:
    """``any where`` -> one step; a ``sequence by <join> with maxspan=<span>`` -> its steps in order."""

    steps: tuple[dict, ...]
    join: str | None = None
    maxspan_seconds: int | None = None


def eql_to_dsl(text: str, exact: Callable[[str], str] = lambda f: f) -> EqlQuery:
    """The Query DSL of each step of an EQL query; ``exact(field)`` names the field EQL compares exactly
    (for a text field with a keyword multi-field, that multi-field)."""
    tokens = _eql_tokens(text)
    if tokens[0][1] == "any" and tokens[1][1] == "where":
        p = _Eql(tokens[2:], exact)
        q = p.expr()
        if p.i != len(p.t):
            raise ValueError(f"unparsed EQL: {p.t[p.i:]}")
        return EqlQuery((q,))
    if tokens[0][1] != "sequence" or tokens[1][1] != "by":
        raise ValueError("EQL form not used by the rules")
    join = tokens[2][1]
    m = re.fullmatch(r"maxspan=(\d+)([smh])", tokens[4][1]) if tokens[3][1] == "with" else None
    if m is None:
        raise ValueError("sequence without maxspan")
    span = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    steps, p = [], _Eql(tokens[5:], exact)
    while p.i < len(p.t):
        p.take("[")
        p.take("any")
        p.take("where")
        steps.append(p.expr())
        p.take("]")
    return EqlQuery(tuple(steps), join, span)


def eql_fields(text: str) -> set[str]:
    """Document fields an EQL query reads."""
    words = {v for k, v in _eql_tokens(text) if k == "word"}
    return {w for w in words if "." in w and not w.startswith("maxspan")}


# ---- fields ------------------------------------------------------------------------------------------

def kql_fields(text: str) -> set[str]:
    """Field names a KQL query reads."""
    toks = _kql_tokens(text)
    return {toks[i - 1].text for i, t in enumerate(toks) if t.kind == ":" and i > 0}
