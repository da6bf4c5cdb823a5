"""Behaviour baselines per identity (pure, no I/O): each identity judged against its own recent past.

Events are summed per identity and hour (UTC, ``BUCKET`` seconds) into :class:`Bucket` statistics:
requests, client addresses, distinct secrets/configmaps read (``get``), namespaces listed (``list`` of
namespaced resources; a list across all namespaces counts as ``*``) and pods whose logs were read
(``pods/log``). Only final stages count (ResponseComplete, Panic, or no stage), one per request.
``scan`` builds the buckets from events (:class:`ProfileBuilder`), ``detect`` from aggregations
(:mod:`kaudit_elk.detect.baselines_search`); both judge with :func:`judge`.

An hour bucket B of identity U is judged against U's buckets in ``[B - history_days, B)``:

* **off-hours** (low): U is active in B, and never in its history at B's hour of the week or the
  hours beside it;
* **rate spike** (low): U's requests in B exceed ``rate_factor`` x the ``rate_percentile`` of its
  active history hours, and ``rate_floor``;
* **new source addresses** (medium): at least ``new_sources`` client addresses in B that U never used
  in its history;
* **unusual retrieval** (medium): distinct secrets/configmaps read, namespaces listed, or pods whose
  logs were read in B reach ``retrieval_floor`` and exceed ``retrieval_factor`` x U's history maximum.

**Warm-up**: no baseline alert for a bucket whose history window holds events (of anyone) on fewer
than ``warmup_days`` distinct UTC days, nor for an identity active on fewer than ``min_active_days``
days of its history (new identities are what the new-terms rules are for). :func:`warmup_note`
states the warm-up.
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from kaudit_elk.base.vocab import FINAL_STAGES
from kaudit_elk.rules.alerts import alert_id, event_time, iso

FINAL = FINAL_STAGES  # the name detect.baselines_search imports

BUCKET = 3600
RETRIEVAL = ("secrets", "lists", "logs")
NAMESPACED = frozenset({
    "pods", "secrets", "configmaps", "services", "endpoints", "endpointslices", "deployments", "replicasets",
    "daemonsets", "statefulsets", "jobs", "cronjobs", "serviceaccounts", "roles", "rolebindings", "ingresses",
    "persistentvolumeclaims", "events", "leases", "networkpolicies", "poddisruptionbudgets",
    "horizontalpodautoscalers", "limitranges", "resourcequotas", "controllerrevisions",
})


def _rule_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://kaudit-elk/baselines/{name}"))


@dataclass(frozen=True)
class BaselineRule:
    """A built-in behaviour rule: what its alerts say (rule fields and ATT&CK tags)."""

    key: str
    title: str
    level: str
    tags: tuple[str, ...]
    description: str

    @property
    def id(self) -> str:
        return _rule_id(self.key)


RULES = {r.key: r for r in (
    BaselineRule("off_hours", "Identity Active at an Hour It Never Works", "low",
                 ("attack.initial-access", "attack.t1078"),
                 "The identity made requests at an hour of the week it was never active at in its history."),
    BaselineRule("rate_spike", "Request Rate Spike Against the Identity's Own History", "low",
                 ("attack.discovery", "attack.t1613"),
                 "The identity's requests in one hour far exceed its usual hourly rate (a high percentile of its history)."),
    BaselineRule("new_sources", "Burst of New Source Addresses for One Identity", "medium",
                 ("attack.initial-access", "attack.t1078"),
                 "Several client addresses the identity never used before, within one hour: shared or stolen credentials."),
    BaselineRule("secrets", "Unusual Number of Secrets or ConfigMaps Read", "medium",
                 ("attack.credential-access", "attack.t1552.007"),
                 "The identity read many more distinct secrets/configmaps in one hour than it ever did before."),
    BaselineRule("lists", "Listing Across Unusually Many Namespaces", "medium",
                 ("attack.discovery", "attack.collection", "attack.t1613"),
                 "The identity listed resources in many more namespaces in one hour than it ever did before."),
    BaselineRule("logs", "Logs of Unusually Many Pods Read", "medium",
                 ("attack.collection", "attack.exfiltration", "attack.t1530"),
                 "The identity read the logs of many more distinct pods in one hour than it ever did before (pods/log)."),
)}


@dataclass(frozen=True)
class BaselineOptions:
    """Thresholds and warm-up of the behaviour baselines (see the module doc)."""

    history_days: float = 14.0
    warmup_days: float = 7.0
    min_active_days: int = 3
    rate_percentile: float = 99.0
    rate_factor: float = 3.0
    rate_floor: int = 200
    new_sources: int = 3
    retrieval_factor: float = 2.0
    retrieval_floor: int = 10


@dataclass
class Bucket:
    """One identity's activity in one hour."""

    requests: int = 0
    sources: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    logs: set[str] = field(default_factory=set)


Profiles = dict[str, dict[int, Bucket]]  # identity -> hour start (epoch s) -> bucket


def hour_of(t: float) -> int:
    return int(t // BUCKET) * BUCKET


def hour_of_week(hour: int) -> int:
    dt = datetime.fromtimestamp(hour, tz=timezone.utc)
    return dt.weekday() * 24 + dt.hour


def norm_ip(text: Any) -> str | None:
    """A client address as the engine's ``ip`` type gives it back (IPv6 compressed, IPv4-mapped as IPv4)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _first_ip(ips: Any) -> str | None:
    if isinstance(ips, list):
        for x in ips:
            n = norm_ip(x)
            if n is not None:
                return n
    return None


def counts(event: Mapping[str, Any]) -> bool:
    """Whether an event is one request's final record (the one baselines count)."""
    stage = event.get("stage")
    return stage is None or stage in FINAL_STAGES


class ProfileBuilder:
    """Buckets from raw audit events (``scan``); ``judged`` marks the hours whose events were scanned."""

    def __init__(self) -> None:
        self.profiles: Profiles = {}
        self.judged: dict[str, set[int]] = {}
        self.days: set[int] = set()  # UTC day numbers (epoch // 86400) with any event

    def add(self, event: Mapping[str, Any], judged: bool) -> None:
        t = event_time(event)
        if t is None:
            return
        self.days.add(int(t // 86400))
        if not counts(event):
            return
        user = event.get("user")
        name = user.get("username") if isinstance(user, dict) else None
        if not isinstance(name, str) or not name:
            return
        h = hour_of(t)
        b = self.profiles.setdefault(name, {}).get(h)
        if b is None:
            b = self.profiles[name][h] = Bucket()
        b.requests += 1
        ip = _first_ip(event.get("sourceIPs"))
        if ip is not None:
            b.sources.add(ip)
        obj = event.get("objectRef")
        if isinstance(obj, dict):
            verb = event.get("verb")
            res, sub = obj.get("resource"), obj.get("subresource")
            ns, oname = obj.get("namespace"), obj.get("name")
            if verb == "get" and res in ("secrets", "configmaps") and not sub and oname:
                b.secrets.add(f"{res}/{ns or ''}/{oname}")
            elif verb == "list" and res in NAMESPACED and not sub:
                b.lists.add(ns or "*")
            elif verb == "get" and res == "pods" and sub == "log" and oname:
                b.logs.add(f"{ns or ''}/{oname}")
        if judged:
            self.judged.setdefault(name, set()).add(h)


def _percentile(values: list[int], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(1, math.ceil(p / 100.0 * len(ordered)))
    return float(ordered[k - 1])


def _alert(rule: BaselineRule, identity: str, hour: int, detail: Mapping[str, Any]) -> dict[str, Any]:
    group = {"user.username": identity, "baseline": rule.key}
    start, last = iso(hour), iso(hour + BUCKET - 0.001)
    return {
        "@timestamp": last,
        "rule": {"id": rule.id, "name": rule.title, "level": rule.level, "description": rule.description,
                 "kind": "baseline", "audit_level": "Metadata"},
        "kaudit": {"alert": {"id": alert_id(rule.id, [], group, hour), "severity": rule.level, "audit_ids": [],
                             "first_event_time": start, "last_event_time": last, "group": group,
                             "count": int(detail.get("requests", 0)), "baseline": dict(detail)}},
        "tags": list(rule.tags),
        "threat": {"technique": {"id": [t.split(".", 1)[1].upper() for t in rule.tags if t.startswith("attack.t")]}},
        "event": {"kind": "alert"},
        "user": {"name": identity},
    }


def history_days(days: Iterable[int], hour: int, options: BaselineOptions) -> int:
    """Distinct days with data in the history window of the bucket starting at ``hour``."""
    lo, hi = (hour - options.history_days * 86400) / 86400, hour / 86400
    return sum(1 for d in days if lo <= d + 1 and d < hi)


def judge_bucket(identity: str, hour: int, buckets: Mapping[int, Bucket], days: Iterable[int],
                 options: BaselineOptions) -> list[dict[str, Any]]:
    """Baseline alerts for one identity-hour (empty while warming up)."""
    cur = buckets.get(hour)
    if cur is None or cur.requests == 0 or history_days(days, hour, options) < options.warmup_days:
        return []
    lo = hour - options.history_days * 86400
    hist = [(h, b) for h, b in buckets.items() if lo <= h < hour and b.requests]
    days = {h // 86400 for h, _ in hist}
    if len(days) < options.min_active_days:
        return []
    out = []
    week = {hour_of_week(h) for h, _ in hist}
    how = hour_of_week(hour)
    if not {how, (how - 1) % 168, (how + 1) % 168} & week:
        out.append(_alert(RULES["off_hours"], identity, hour, {"requests": cur.requests, "hour_of_week": how,
                                                               "history_hours": len(hist)}))
    p = _percentile([b.requests for _, b in hist], options.rate_percentile)
    limit = max(float(options.rate_floor), options.rate_factor * p)
    if cur.requests > limit:
        out.append(_alert(RULES["rate_spike"], identity, hour, {"requests": cur.requests, "percentile": p,
                                                                "threshold": limit}))
    known = set().union(*(b.sources for _, b in hist))
    new = sorted(cur.sources - known)
    if len(new) >= options.new_sources:
        out.append(_alert(RULES["new_sources"], identity, hour, {"requests": cur.requests, "new_sources": new,
                                                                 "known_sources": len(known)}))
    for key in RETRIEVAL:
        value = len(getattr(cur, key))
        most = max((len(getattr(b, key)) for _, b in hist), default=0)
        if value >= options.retrieval_floor and value > options.retrieval_factor * most:
            out.append(_alert(RULES[key], identity, hour, {"requests": cur.requests, "distinct": value,
                                                           "history_max": most}))
    return out


def judge(profiles: Profiles, judged: Mapping[str, Iterable[int]], days: Iterable[int],
          options: BaselineOptions | None = None) -> list[dict[str, Any]]:
    """Baseline alerts for every judged identity-hour, in (hour, identity, rule) order."""
    options = options or BaselineOptions()
    days = sorted(set(days))
    out = []
    for identity in sorted(judged):
        for hour in sorted(set(judged[identity])):
            out += judge_bucket(identity, hour, profiles.get(identity, {}), days, options)
    return sorted(out, key=lambda a: (a["kaudit"]["alert"]["first_event_time"], a["user"]["name"], a["rule"]["id"]))


def warmup_note(days: Iterable[int], last_hour: int | None, options: BaselineOptions) -> str:
    """One line about the warm-up state at the last judged hour (stated by ``scan`` and ``detect``)."""
    if last_hour is None:
        return "baselines: no events, nothing judged"
    have = history_days(days, last_hour, options)
    if have < options.warmup_days:
        return (f"baselines: warming up, {have} of {options.warmup_days:g} days of history before "
                f"{(iso(last_hour) or '?')[:16]}Z: no baseline alerts until the last {options.history_days:g} days "
                f"hold events on {options.warmup_days:g} days")
    return (f"baselines: {have} days of history (warm-up of {options.warmup_days:g} days done); each identity "
            f"needs {options.min_active_days} active days of its own")


def judged_rule_ids() -> set[str]:
    """The rule ids baseline alerts carry."""
    return {r.id for r in RULES.values()}
