"""Event-time correlation (Sigma event_count, value_count, temporal, temporal_ordered) and new-terms.

Each correlation keeps per-group state. ``gt``/``gte`` conditions slide over the stream and fire as
soon as the window holds enough evidence; ``lt``/``lte``/``eq`` can only be decided once a window
closes, so they use tumbling windows that start at a group's first event. After an alert the group's
state is cleared: one alert per correlation window per group.

State is plain data: :meth:`Correlator.snapshot` / :meth:`NewTermsTracker.snapshot` return JSON-able
dicts holding only what can still matter after a given event time (``detect`` stores them between
runs), and ``restore`` puts them back; a restored object continues exactly as the original would.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sigma.correlations import SigmaCorrelationConditionOperator as Op
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType

from kaudit_elk.events.normalize import client_ip
from kaudit_elk.rules.alerts import Alert, group_alert
from kaudit_elk.rules.evaluator import field_getter
from kaudit_elk.rules.loader import PackRule

_MAX_CHAINS = 256
_OPS: dict[Op, Callable[[int, int], bool]] = {
    Op.GT: lambda a, b: a > b,
    Op.GTE: lambda a, b: a >= b,
    Op.LT: lambda a, b: a < b,
    Op.LTE: lambda a, b: a <= b,
    Op.EQ: lambda a, b: a == b,
}


def _norm(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def _hashable(v: Any) -> Any:
    """A value read back from JSON as it was before (lists were tuples)."""
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


@dataclass(slots=True)
class _Group:
    items: deque = field(default_factory=deque)  # (t, auditID, value, rule index)
    counts: dict = field(default_factory=dict)  # distinct value (value_count) or rule index (temporal) -> n
    start: float | None = None
    chains: list = field(default_factory=list)  # temporal_ordered: [start, next step, evidence]


class Correlator:
    """Runs one Sigma correlation rule over matches of its base rules, in event time."""

    def __init__(self, rule: PackRule) -> None:
        sigma = rule.sigma
        assert isinstance(sigma, SigmaCorrelationRule)
        self.rule = rule
        self.type = sigma.type
        self.span = float(sigma.timespan.seconds)
        self.group_by = list(sigma.group_by or [])
        self.base_ids: list[str] = []
        self.base_names: list[str | None] = []
        for ref in sigma.rules:
            self.base_ids.append(str(ref.rule.id) if hasattr(ref.rule, "id") else str(ref.reference))
            self.base_names.append(getattr(ref.rule, "name", None))
        cond = sigma.condition
        self.op = cond.op if cond is not None else Op.GTE
        self.count = int(cond.count) if cond is not None and cond.count is not None else len(self.base_ids)
        self.fieldref = cond.fieldref if cond is not None else None
        self.sliding = self.op in (Op.GT, Op.GTE)
        # group-by getters per base rule, honouring field aliases
        aliases = getattr(sigma.aliases, "aliases", {}) or {}
        self._getters: list[list[Callable[[Any], list[Any]]]] = []
        for i, rid in enumerate(self.base_ids):
            gets = []
            for g in self.group_by:
                path = g
                alias = aliases.get(g)
                if alias is not None:
                    for ref, fld in alias.mapping.items():
                        if ref.reference in (rid, self.base_names[i]):
                            path = fld
                gets.append(field_getter(path))
            self._getters.append(gets)
        self._value_get = field_getter(self.fieldref) if self.fieldref else None
        self.groups: dict[tuple, _Group] = {}

    def indexes_of(self, rule_id: str) -> list[int]:
        return [i for i, r in enumerate(self.base_ids) if r == rule_id]

    def _group_key(self, idx: int, event: Mapping[str, Any]) -> tuple:
        out = []
        for get in self._getters[idx]:
            vals = get(event)
            out.append(_norm(vals[0]) if vals else None)
        return tuple(out)

    def _alert(self, key: tuple, evidence: list[tuple[float, str]], extra: Mapping[str, Any] | None = None) -> Alert:
        return group_alert(self.rule, dict(zip(self.group_by, key)), evidence, extra)

    def feed(self, idx: int, event: Mapping[str, Any], t: float, audit_id: str) -> list[Alert]:
        """A match of base rule number ``idx``; returns alerts (usually none)."""
        key = self._group_key(idx, event)
        grp = self.groups.get(key)
        if grp is None:
            grp = self.groups[key] = _Group()
        value = None
        if self._value_get is not None:
            vals = self._value_get(event)
            value = _norm(vals[0]) if vals else None
            if value is None:
                return []
        if self.type == SigmaCorrelationType.TEMPORAL_ORDERED:
            return self._ordered(key, grp, idx, t, audit_id)
        out: list[Alert] = []
        if not self.sliding and grp.start is not None and t > grp.start + self.span:
            out += self._close(key, grp)
            grp = self.groups.setdefault(key, _Group())
        if grp.start is None:
            grp.start = t
        items = grp.items
        item = (t, audit_id, value, idx)
        items.append(item)
        self._count(grp, item, 1)
        if self.sliding:
            horizon = t - self.span
            while items and items[0][0] < horizon:
                self._count(grp, items.popleft(), -1)
            if self._satisfied(grp):
                out.append(self._alert(key, [(x[0], x[1]) for x in items], self._extra(grp)))
                del self.groups[key]
        return out

    def _count(self, grp: _Group, item: tuple, delta: int) -> None:
        """Keep distinct counts incrementally (value_count: values; temporal: base rules)."""
        if self.type == SigmaCorrelationType.EVENT_COUNT:
            return
        k = item[2] if self.type == SigmaCorrelationType.VALUE_COUNT else item[3]
        n = grp.counts.get(k, 0) + delta
        if n > 0:
            grp.counts[k] = n
        else:
            grp.counts.pop(k, None)

    def _measure(self, grp: _Group) -> int:
        if self.type == SigmaCorrelationType.EVENT_COUNT:
            return len(grp.items)
        return len(grp.counts)  # distinct values, or distinct base rules seen (temporal)

    def _satisfied(self, grp: _Group) -> bool:
        return _OPS[self.op](self._measure(grp), self.count)

    def _extra(self, grp: _Group) -> dict[str, Any]:
        extra: dict[str, Any] = {"correlation": {"type": self.type.name.lower(), "measure": self._measure(grp)}}
        if self.type == SigmaCorrelationType.VALUE_COUNT:
            extra["correlation"]["values"] = sorted(str(v) for v in grp.counts)[:50]
        return extra

    def _close(self, key: tuple, grp: _Group) -> list[Alert]:
        self.groups.pop(key, None)
        if grp.items and self._satisfied(grp):
            return [self._alert(key, [(x[0], x[1]) for x in grp.items], self._extra(grp))]
        return []

    def _ordered(self, key: tuple, grp: _Group, idx: int, t: float, audit_id: str) -> list[Alert]:
        grp.chains = [c for c in grp.chains if t - c[0] <= self.span]
        n = len(self.base_ids)
        for chain in sorted(grp.chains, key=lambda c: c[0]):
            if chain[1] == idx and t >= chain[2][-1][0]:
                chain[1] += 1
                chain[2].append((t, audit_id))
                if chain[1] == n:
                    del self.groups[key]
                    return [self._alert(key, chain[2], {"correlation": {"type": "temporal_ordered", "measure": n}})]
                return []
        if idx == 0:
            grp.chains.append([t, 1, [(t, audit_id)]])
            if len(grp.chains) > _MAX_CHAINS:
                grp.chains.pop(0)
        return []

    # ------------------------------------------------------------------ state

    def snapshot(self, after: float) -> dict[str, Any]:
        """JSON-able state for a stream that continues with events at or after ``after``.

        Dropped because no later event can use them: sliding-window items older than one timespan,
        ordered chains that started more than a timespan ago, and tumbling windows that closed
        before ``after`` (the run that takes the snapshot decides those when it flushes)."""
        horizon = after - self.span
        groups = []
        for key, grp in self.groups.items():
            if self.type == SigmaCorrelationType.TEMPORAL_ORDERED:
                chains = [[c[0], c[1], [list(e) for e in c[2]]] for c in grp.chains if c[0] >= horizon]
                if chains:
                    groups.append({"key": list(key), "chains": chains})
                continue
            if self.sliding:
                items = [list(x) for x in grp.items if x[0] >= horizon]
            elif grp.start is not None and grp.start + self.span < after:
                continue
            else:
                items = [list(x) for x in grp.items]
            if items:
                groups.append({"key": list(key), "start": grp.start, "items": items})
        return {"groups": groups}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace this correlator's state with a :meth:`snapshot`."""
        self.groups = {}
        for g in state.get("groups") or ():
            grp = _Group()
            if "chains" in g:
                grp.chains = [[c[0], c[1], [(e[0], e[1]) for e in c[2]]] for c in g["chains"]]
            else:
                grp.start = g.get("start")
                for x in g.get("items") or ():
                    item = (x[0], x[1], _hashable(x[2]), x[3])
                    grp.items.append(item)
                    self._count(grp, item, 1)
            self.groups[tuple(_hashable(k) for k in g["key"])] = grp

    def flush(self, closed_before: float | None = None) -> list[Alert]:
        """End of stream: decide the still-open tumbling windows (only those ending before
        ``closed_before`` when given: a later event could still join the others)."""
        out: list[Alert] = []
        if not self.sliding and self.type != SigmaCorrelationType.TEMPORAL_ORDERED:
            for key, grp in list(self.groups.items()):
                if closed_before is None or (grp.start is not None and grp.start + self.span < closed_before):
                    out += self._close(key, grp)
        self.groups.clear()
        return out


def ip_term(text: str) -> str:
    """An IP as the engines print ``ip`` field values (IPv4 dotted, IPv6 RFC 5952, IPv4-mapped as IPv4),
    so that terms seen locally and terms read from an aggregation compare equal."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text.lower()
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return addr.compressed


_source_ips = field_getter("sourceIPs")


def _client_ip_getter(event: Any) -> list[Any]:
    ip = client_ip(list(_source_ips(event)))
    return [] if ip is None else [ip_term(ip)]


class NewTermsTracker:
    """kaudit new-terms: a match alerts only if its term tuple was not seen in the history window before.

    The term of ``sourceIPs`` is the client address, the first entry that is an IP (``source.ip`` in
    the index, which lets ``detect`` read the history from an aggregation instead of documents).
    """

    def __init__(self, rule: PackRule) -> None:
        assert rule.new_terms is not None
        self.rule = rule
        self.history = float(rule.new_terms.history)
        self._getters = [_client_ip_getter if f == "sourceIPs" else field_getter(f) for f in rule.new_terms.fields]
        self.seen: dict[tuple, float] = {}

    def terms(self, event: Mapping[str, Any]) -> tuple | None:
        out = []
        for get in self._getters:
            vals = get(event)
            if not vals or vals[0] is None:
                return None
            out.append(_norm(vals[0]))
        return tuple(out)

    def snapshot(self, after: float) -> dict[str, Any]:
        """JSON-able state for a stream that continues at or after ``after`` (terms last seen more than
        the history before ``after`` are dropped: they would be new again anyway)."""
        horizon = after - self.history
        return {"seen": [[list(k), t] for k, t in self.seen.items() if t >= horizon]}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.seen = {tuple(_hashable(x) for x in k): t for k, t in state.get("seen") or ()}

    def observe(self, event: Mapping[str, Any], t: float) -> bool:
        """Record the event's terms; True when they are new (not seen within history before t)."""
        terms = self.terms(event)
        if terms is None:
            return False
        last = self.seen.get(terms)
        self.seen[terms] = t if last is None else max(last, t)
        return last is None or t - last > self.history
