"""Run every rule's own test events (``kaudit.tests``) and measure catalogue coverage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from kaudit_elk.rules.evaluator import compile_rule
from kaudit_elk.rules.loader import PackRule, RulePack
from kaudit_elk.rules.runner import Runner

# The 80 ideas of the detection catalogue (shared/reference/detection-catalogue.md, section 1), plus
# section H: families the catalogue lacks (issue 14: unusual retrieval, the audit trail, new addresses).
CATALOGUE: tuple[str, ...] = tuple(
    f"{section}{i}" for section, count in (("A", 15), ("B", 2), ("C", 16), ("D", 9), ("E", 14), ("F", 13), ("G", 11),
                                               ("H", 6))
    for i in range(1, count + 1)
)
_BASE_TIME = datetime(2026, 1, 15, 10, 0, 0, tzinfo=timezone.utc)


@dataclass(slots=True)
class RuleTestResult:
    """Outcome of one rule's test cases."""

    rule: PackRule
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.passed > 0


def complete_events(case: Any, rule_id: str, case_no: int) -> list[dict[str, Any]]:
    """A test case (one event or a list) with auditID, stage and timestamps filled in where missing."""
    events = case if isinstance(case, list) else [case]
    out = []
    for i, ev in enumerate(events):
        e = dict(ev)
        e.setdefault("auditID", f"test-{rule_id[:8]}-{case_no}-{i}")
        e.setdefault("stage", "ResponseComplete")
        ts = (_BASE_TIME + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        e.setdefault("requestReceivedTimestamp", ts)
        e.setdefault("stageTimestamp", e["requestReceivedTimestamp"])
        out.append(e)
    return out


def _mini_pack(pack: RulePack, rule: PackRule, placeholders: Mapping[str, Sequence[str]]) -> RulePack:
    """The rule under test (always generating) plus the base rules a correlation needs."""
    import copy

    members: list[PackRule] = []
    if rule.kind == "correlation":
        refs = {str(getattr(r.rule, "id", "")) for r in rule.sigma.rules}  # type: ignore[union-attr]
        members = [copy.copy(r) for r in pack.rules if r.id in refs]
        for m in members:
            m.generate = False
    target = copy.copy(rule)
    target.generate = True
    if rule.kind != "correlation" and placeholders != pack.placeholders:
        target.predicate = compile_rule(rule.sigma, placeholders)  # type: ignore[arg-type]
    return RulePack(rules=members + [target], placeholders={k: list(v) for k, v in placeholders.items()})


def run_rule_tests(pack: RulePack, rule: PackRule) -> RuleTestResult:
    """Every ``match`` case must raise an alert of ``rule``; every ``no_match`` case must not.

    A case is one event or a list of events (a stream). For new-terms rules all events but the last
    are history and only the last one is evaluated.
    """
    result = RuleTestResult(rule)
    tests = rule.tests or {}
    placeholders = {**pack.placeholders, **{k: [str(x) for x in v] for k, v in (tests.get("placeholders") or {}).items()}}
    mini = _mini_pack(pack, rule, placeholders)
    for expect, cases in (("match", tests.get("match") or []), ("no_match", tests.get("no_match") or [])):
        for n, case in enumerate(cases):
            events = complete_events(case, rule.id, n)
            runner = Runner(mini)
            if rule.kind == "new_terms":  # earlier events are history, the last one is the probe
                for e in events[:-1]:
                    runner.prime(e)
                events = events[-1:]
            alerts = [a for a in runner.run(events) if a["rule"]["id"] == rule.id]
            if (expect == "match") == bool(alerts):
                result.passed += 1
            else:
                what = "no alert" if expect == "match" else f"{len(alerts)} alert(s)"
                result.failures.append(f"{expect}[{n}]: {what}")
    return result


@dataclass(slots=True)
class PackTestReport:
    """Summary of ``rules test``."""

    results: list[RuleTestResult]
    covered: list[str]

    @property
    def failed(self) -> list[RuleTestResult]:
        return [r for r in self.results if not r.ok]


def run_pack_tests(pack: RulePack) -> PackTestReport:
    """Run every rule's tests; a rule without test events counts as failed."""
    results = []
    for rule in pack.rules:
        res = run_rule_tests(pack, rule)
        if not rule.tests.get("match") or not rule.tests.get("no_match"):
            res.failures.append("needs at least one match and one no_match test case")
        results.append(res)
    covered = sorted({c for r in pack.rules for c in r.catalogue if c in CATALOGUE},
                     key=lambda c: (c[0], int(c[1:])))
    return PackTestReport(results=results, covered=covered)
