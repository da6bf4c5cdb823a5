"""Run a RulePack over a stream of raw audit events: dispatch, per-request dedupe, alerts, correlation.

One alert per request, not per stage: a match at RequestReceived/ResponseStarted waits (in event
time, up to ``pending_horizon`` seconds) for the same auditID's ResponseComplete/Panic, which is
preferred; the earlier stage is used when the final stage never matches or never comes.

:meth:`Runner.snapshot` captures, as plain JSON-able data, everything a stream continuing at a given
event time still needs (correlation groups, new-terms history, undecided earlier stages, recent
per-request dedupe); :meth:`Runner.restore` continues from it. ``detect`` carries it between runs.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from kaudit_elk.base.vocab import FINAL_STAGES
from kaudit_elk.rules.alerts import Alert, event_time, single_alert
from kaudit_elk.rules.correlation import Correlator, NewTermsTracker
from kaudit_elk.rules.evaluator import EventView, compile_batch, required_values
from kaudit_elk.rules.loader import PackRule, RulePack

_EMITTED_CAP = 500_000


class Runner:
    """Stateful evaluator of one pack over one event stream (feed events, then flush)."""

    def __init__(self, pack: RulePack, pending_horizon: float = 600.0) -> None:
        self.pack = pack
        self.rules = [r for r in pack.rules if r.kind != "correlation"]
        self.correlators = [Correlator(r) for r in pack.correlations]
        self.new_terms = {r.id: NewTermsTracker(r) for r in self.rules if r.new_terms}
        self._feeds: dict[str, list[tuple[Correlator, int]]] = {}
        for c in self.correlators:
            for i, rid in enumerate(c.base_ids):
                self._feeds.setdefault(rid, []).append((c, i))
        self._req: list[tuple[frozenset[str] | None, frozenset[str] | None]] = [
            (required_values(r.sigma, "objectRef.resource"), required_values(r.sigma, "verb")) for r in self.rules
        ]
        self._dispatch: dict[tuple[str, str], tuple[tuple[PackRule, ...], Any]] = pack.dispatch
        self.pending_horizon = pending_horizon
        self._has_exceptions = any(r.exceptions for r in self.rules)
        self._pending: dict[tuple[str, str], tuple[Mapping[str, Any], float]] = {}
        self._pending_by_aid: dict[str, set[str]] = {}
        self._emitted: dict[tuple[str, str], float] = {}  # -> event time; insertion-ordered: oldest evicted first
        self._clock = 0.0
        self._n = 0
        self.events = 0
        self.matches = 0

    # ------------------------------------------------------------------ dispatch

    def candidates(self, event: Mapping[str, Any]) -> tuple[tuple[PackRule, ...], Any]:
        """Rules that can match ``event`` (by objectRef.resource and verb) and their compiled batch test."""
        obj = event.get("objectRef")
        res = obj.get("resource") if isinstance(obj, dict) else None
        res = res.lower() if isinstance(res, str) else ""
        verb = event.get("verb")
        verb = verb.lower() if isinstance(verb, str) else ""
        key = (res, verb)
        found = self._dispatch.get(key)
        if found is None:
            rules = tuple(
                r for r, (rr, rv) in zip(self.rules, self._req)
                if (rr is None or res in rr) and (rv is None or verb in rv)
            )
            found = self._dispatch[key] = (rules, compile_batch([r.sigma for r in rules], self.pack.placeholders))
        return found

    # ------------------------------------------------------------------ stream

    def feed(self, event: Mapping[str, Any], t: float | None = None) -> list[Alert]:
        """Evaluate one raw event; returns the alerts it completes (possibly for earlier events).
        ``t`` is its time when the event carries none (e.g. a document's ``@timestamp``)."""
        view = EventView(event)
        rules, batch = self.candidates(event)
        matched = [rules[i] for i in batch(view)]
        if matched and self._has_exceptions:
            matched = [r for r in matched if not r.exceptions or r.matches(view)]
        if t is not None and event_time(event) is None:
            self._clock = max(self._clock, t)
        return self._process(event, view, matched, t)

    def feed_matched(self, event: Mapping[str, Any], rule_ids: Iterable[str], t: float | None = None) -> list[Alert]:
        """Like :meth:`feed`, for an event whose matching single-event rules are already known
        (e.g. an engine's ``matched_queries``); ``t`` is its time when the event carries none."""
        ids = set(rule_ids)
        matched = [r for r in self.rules if r.id in ids]
        if t is not None and event_time(event) is None:
            self._clock = max(self._clock, t)
        return self._process(event, EventView(event), matched, t)

    def _process(self, event: Mapping[str, Any], view: EventView, matched: list[PackRule],
                 t_hint: float | None = None) -> list[Alert]:
        self.events += 1
        self._n += 1
        aid = event.get("auditID")
        pending_check = self._pending and self._n % 1024 == 0
        if not matched and not pending_check and not (self._pending_by_aid and aid in self._pending_by_aid):
            return []
        out: list[Alert] = []
        t = event_time(event) if matched or pending_check else None
        if t is None:
            t = self._clock if t_hint is None else t_hint
        stage = event.get("stage")
        if isinstance(aid, str) and aid and stage is not None:
            final = stage in FINAL_STAGES
            if final and aid in self._pending_by_aid:
                names = {r.id for r in matched}
                for rid in list(self._pending_by_aid[aid]):
                    if rid not in names:
                        ev, te = self._pending.pop((rid, aid))
                        self._pending_by_aid[aid].discard(rid)
                        out += self._accept(self.pack_rule(rid), EventView(ev), te, aid)
            for r in matched:
                k = (r.id, aid)
                if k in self._emitted:
                    continue
                if final:
                    if k in self._pending:
                        self._pending.pop(k)
                        self._pending_by_aid[aid].discard(r.id)
                    out += self._accept(r, view, t, aid)
                elif k not in self._pending:
                    self._pending[k] = (event, t)
                    self._pending_by_aid.setdefault(aid, set()).add(r.id)
            if final and aid in self._pending_by_aid and not self._pending_by_aid[aid]:
                del self._pending_by_aid[aid]
        else:
            for r in matched:
                out += self._accept(r, view, t, aid if isinstance(aid, str) else "")
        if pending_check:
            out += self._expire(t - self.pending_horizon)
        return out

    def flush(self, closed_before: float | None = None) -> list[Alert]:
        """End of stream: emit pending earlier-stage matches and close correlation windows.

        ``closed_before`` (windowed runs): only decide tumbling correlation windows that end before
        this event time; later ones stay undecided for the next window to replay.
        """
        out = self._expire(float("inf"))
        for c in self.correlators:
            out += c.flush(closed_before)
        return out

    def run(self, events: Iterable[Mapping[str, Any]]) -> Iterator[Alert]:
        """Feed every event and flush at the end."""
        for e in events:
            yield from self.feed(e)
        yield from self.flush()

    def prime(self, event: Mapping[str, Any]) -> None:
        """Learn new-terms history from ``event`` without alerting (scan --history)."""
        for r in self.candidates(event)[0]:
            tracker = self.new_terms.get(r.id)
            if tracker is not None and r.matches(event):
                t = event_time(event)
                if t is not None:
                    tracker.observe(event, t)

    # ------------------------------------------------------------------ state

    def stateful_rules(self) -> list[str]:
        """Ids of the rules whose alerts depend on earlier events (correlations, new-terms)."""
        return [c.rule.id for c in self.correlators] + list(self.new_terms)

    def snapshot(self, after: float) -> dict[str, Any]:
        """JSON-able state for a stream that continues with events at or after ``after``.

        Per-request dedupe keeps only the last ``pending_horizon`` of event time: the stages of one
        request share its ``requestReceivedTimestamp``, so older entries cannot be met again."""
        horizon = after - self.pending_horizon
        return {
            "correlations": {c.rule.id: c.snapshot(after) for c in self.correlators},
            "new_terms": {rid: t.snapshot(after) for rid, t in self.new_terms.items()},
            "pending": [[rid, aid, ev, t] for (rid, aid), (ev, t) in self._pending.items()],
            "emitted": [[rid, aid, t] for (rid, aid), t in self._emitted.items() if t >= horizon],
            "clock": self._clock,
            "n": self._n,
        }

    def restore(self, state: Mapping[str, Any], rules: Iterable[str] | None = None) -> set[str]:
        """Continue from a :meth:`snapshot` (whatever this runner held before is replaced); only the
        correlation / new-terms rules in ``rules`` (all when None) take their saved state, the others
        start empty. Returns the stateful rule ids restored."""
        keep = None if rules is None else set(rules)
        done: set[str] = set()
        corr = state.get("correlations") or {}
        for c in self.correlators:
            rid = c.rule.id
            use = rid in corr and (keep is None or rid in keep)
            c.restore(corr[rid] if use else {})
            if use:
                done.add(rid)
        terms = state.get("new_terms") or {}
        for rid, tracker in self.new_terms.items():
            use = rid in terms and (keep is None or rid in keep)
            tracker.restore(terms[rid] if use else {})
            if use:
                done.add(rid)
        known = {r.id for r in self.rules}
        self._pending = {}
        self._pending_by_aid = {}
        for rid, aid, ev, t in state.get("pending") or ():
            if rid in known:
                self._pending[(rid, aid)] = (ev, t)
                self._pending_by_aid.setdefault(aid, set()).add(rid)
        self._emitted = {(rid, aid): t for rid, aid, t in state.get("emitted") or ()}
        self._clock = float(state.get("clock") or 0.0)
        self._n = int(state.get("n") or 0)
        return done

    # ------------------------------------------------------------------ internals

    def pack_rule(self, rule_id: str) -> PackRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def _expire(self, before: float) -> list[Alert]:
        out: list[Alert] = []
        for (rid, aid), (ev, t) in list(self._pending.items()):
            if t < before:
                del self._pending[(rid, aid)]
                s = self._pending_by_aid.get(aid)
                if s is not None:
                    s.discard(rid)
                    if not s:
                        del self._pending_by_aid[aid]
                out += self._accept(self.pack_rule(rid), EventView(ev), t, aid)
        return out

    def _accept(self, rule: PackRule, view: EventView, t: float, aid: str) -> list[Alert]:
        """A deduplicated match: alert (single / new-terms) and feed correlations."""
        self.matches += 1
        if t > self._clock:
            self._clock = t
        if aid:
            emitted = self._emitted
            emitted[(rule.id, aid)] = t
            if len(emitted) > _EMITTED_CAP:
                del emitted[next(iter(emitted))]
        out: list[Alert] = []
        event = view.event
        if rule.generate:
            tracker = self.new_terms.get(rule.id)
            if tracker is None:
                out.append(single_alert(rule, event, t))
            elif tracker.observe(view, t):
                alert = single_alert(rule, event, t)
                alert["kaudit"]["alert"]["new_terms"] = dict(zip(tracker.rule.new_terms.fields,  # type: ignore[union-attr]
                                                                 tracker.terms(view) or ()))
                out.append(alert)
        feeds = self._feeds.get(rule.id)
        if feeds:
            for corr, idx in feeds:
                out += corr.feed(idx, view, t, aid)
        return out
