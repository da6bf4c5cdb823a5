"""Proposed exceptions from alert history (``kaudit-elk tune``; pure, no I/O).

A benign automation alerts the same way day after day: one identity, in one namespace, with one
client, on one kind of resource. An intrusion is short-lived. So per rule, the alerts of a history
are grouped by that tuple (``user.username``, ``objectRef.namespace``, the user agent's product
prefix, ``objectRef.resource``/``subresource``); a tuple that alerted at least ``min_count`` times
on at least ``min_days`` distinct UTC days is proposed as an exception in the tuning file format
(``--exceptions``), with its count and first/last time seen under ``review`` (ignored when applied).

A proposal for a **high or critical** rule is written commented out, with a warning that it silences
that rule for that identity, unless the caller asks for such proposals to be active; either way the
warning is stated in the file and returned. Correlation alerts are tuned on the base rules of the
correlation, by the correlation's group-by values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import yaml

from kaudit_elk.rules.alerts import iso, severity_rank
from kaudit_elk.rules.incidents import alert_time
from kaudit_elk.rules.loader import RulePack

#: Alert fields → the raw audit Event fields an exception matches.
MATCH_FIELDS = ("user.username", "objectRef.namespace", "userAgent|startswith", "userAgent",
                "objectRef.resource", "objectRef.subresource")


@dataclass
class Proposal:
    """One proposed exception: the rules it applies to, what it matches, and what it was seen doing."""

    rules: list[str]
    title: str
    level: str
    match: dict[str, Any]
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    days: set[str] = field(default_factory=set)
    alert_ids: set[str] = field(default_factory=set)
    source_rule: str = ""

    @property
    def high(self) -> bool:
        return severity_rank(self.level) >= severity_rank("high")

    @property
    def warning(self) -> str | None:
        if not self.high:
            return None
        who = self.match.get("user.username") or "any identity"
        return (f"SILENCES A {self.level.upper()} RULE ({self.title}) FOR {who}: an attacker using this identity "
                f"this way would no longer raise it. Left commented out; enable it only if you are sure.")


def ua_product(ua: str | None) -> str | None:
    """The client's product prefix (``kubectl/``, ``argocd-application-controller/``), without version."""
    if not ua:
        return None
    head = ua.split(" ", 1)[0]
    name, sep, _ = head.partition("/")
    return f"{name}/" if sep and name else None


def alert_pattern(alert: Mapping[str, Any]) -> dict[str, Any]:
    """What an exception for this single-event alert matches (missing fields match only missing values)."""
    orch = alert.get("orchestrator") or {}
    res = (orch.get("resource") or {}).get("type") or ""
    resource, _, sub = res.partition("/")
    ua = (alert.get("user_agent") or {}).get("original")
    product = ua_product(ua)
    out: dict[str, Any] = {"user.username": (alert.get("user") or {}).get("name"),
                           "objectRef.namespace": orch.get("namespace")}
    if product:
        out["userAgent|startswith"] = product
    else:
        out["userAgent"] = ua
    out["objectRef.resource"] = resource or None
    out["objectRef.subresource"] = sub or None
    return out


def _group_pattern(group: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in group.items():
        if v is None:
            continue
        out[str(k)] = v
    return out


def propose(alerts: Iterable[Mapping[str, Any]], pack: RulePack, *, min_count: int = 3,
            min_days: int = 2) -> list[Proposal]:
    """Proposed exceptions for recurring alert patterns (see the module doc), most frequent first."""
    by_id = {r.id: r for r in pack.rules}
    found: dict[tuple[str, str], Proposal] = {}
    for a in alerts:
        rid = str((a.get("rule") or {}).get("id"))
        rule = by_id.get(rid)
        if rule is None:
            continue
        inner = a["kaudit"]["alert"]
        if rule.kind == "correlation":
            pattern = _group_pattern(inner.get("group") or {})
            targets = sorted({str(ref.rule.id) for ref in rule.sigma.rules})  # type: ignore[union-attr]
        else:
            pattern = alert_pattern(a)
            targets = [rid]
        if not pattern or all(v is None for v in pattern.values()):
            continue
        key = (rid, repr(sorted(pattern.items(), key=lambda kv: kv[0])))
        p = found.get(key)
        t = alert_time(a)
        if p is None:
            p = found[key] = Proposal(targets, rule.title, rule.level, pattern, first=t, last=t, source_rule=rid)
        p.count += 1
        p.first, p.last = min(p.first, t), max(p.last, t)
        p.days.add(datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d"))
        p.alert_ids.add(str(inner.get("id")))
    out = [p for p in found.values() if p.count >= min_count and len(p.days) >= min_days]
    return sorted(out, key=lambda p: (-p.count, p.source_rule, repr(sorted(p.match.items()))))


def render(proposals: Sequence[Proposal], *, total_alerts: int, span: tuple[float, float] | None,
           allow_high: bool = False, source: str = "") -> str:
    """The proposals as a tuning YAML file for a person to review (``--exceptions`` reads it)."""
    lines = [
        "# Exceptions proposed by `kaudit-elk tune`" + (f" from {source}" if source else "") + ".",
        f"# History: {total_alerts} alert(s)" + (f" between {iso(span[0])} and {iso(span[1])}" if span else "") + ".",
        f"# {len(proposals)} recurring pattern(s) proposed; together they silence "
        f"{sum(p.count for p in proposals)} of those alerts.",
        "# REVIEW EVERY ENTRY: an exception stops the rule from alerting on whatever it matches, attacks included.",
        "# `review:` says what each pattern was seen doing; it is ignored when the file is applied.",
        "",
        "exceptions:" + ("" if proposals else " []"),
    ]
    for p in proposals:
        entry = {"rule": p.rules[0] if len(p.rules) == 1 else p.rules, "match": p.match,
                 "review": {"rule_title": p.title, "level": p.level, "alerts": p.count,
                            "first_seen": iso(p.first), "last_seen": iso(p.last), "days_seen": len(p.days)}}
        if p.source_rule not in p.rules:
            entry["review"]["correlation"] = p.source_rule
        if p.warning:
            entry["review"]["warning"] = p.warning
        text = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=120).rstrip("\n")
        text = "\n".join("  " + line for line in text.splitlines())
        if p.high and not allow_high:
            lines.append(f"  # WARNING: {p.warning}")
            text = "\n".join("  # " + line[2:] for line in text.splitlines())
        lines.append(text)
    return "\n".join(lines) + "\n"


def silenced(proposals: Sequence[Proposal], allow_high: bool = False) -> set[str]:
    """Alert ids of the history that the active proposals would have silenced."""
    return {x for p in proposals if allow_high or not p.high for x in p.alert_ids}
