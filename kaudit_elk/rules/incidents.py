"""Incidents: the alerts of one actor close in time, as one thing a person looks at (pure, no I/O).

An **actor** is an identity (``user.name``) plus a source (``source.ip``). Anonymous identities
(``system:anonymous``, missing) carry no identity, and correlation alerts grouped by only one of the
two carry only that one; such an alert joins the open incident that agrees on what it has (the one
with more matching parts, then the most recent, then the smallest id). An incident stays open while
its actor keeps alerting: an alert more than ``gap`` after the incident's last alert, or more than
``max_span`` after its first, starts a new one. Alerts are taken in (alert time, alert id) order, so
the same alerts always give the same incidents, whichever way they were computed (``scan``, or
``detect`` window by window from the stored state).

A **workload credential** (a ``system:serviceaccount:`` or ``system:node:`` identity) used from an address
outside the cluster's networks (not RFC 1918, loopback, link-local, CGNAT or IPv6 ULA: the ranges the
pack's rules treat as internal) joins the open incident of that same outside address even when its
identity differs: the usual pivot of a stolen kubeconfig or CI token is to a pod's token from the same
host, and a workload credential is not normally used from outside at all. Two *people* sharing an outside
address (a VPN's egress) are not joined.

A **node's own credential** (``system:node:NAME``, a kubelet) and a **pod-bound service-account token
issued for a pod on that node** (the token's ``authentication.kubernetes.io/node-name``, recorded in the
alert as ``kaudit.alert.node``) join each other's open incident whatever their addresses: someone holding a
pod's token on a node who then acts with that node's kubelet credential (a static pod dropped on the host,
mirrored by the kubelet) is one intrusion seen through two identities. Two pods' tokens on the same node
are not joined (co-scheduled workloads are unrelated), only a token and its node.

**Risk** (risk-based alerting): each rule of the incident counts once at the highest severity it
reached (``SEVERITY_POINTS``), plus 10% per repeat up to five; the sum is multiplied by
``1 + 0.5 * (distinct ATT&CK tactics - 1)``: the same points spread over more tactics is more likely an
intrusion than one noisy rule. The incident's severity is the higher of its worst alert and the
severity its risk reaches (``RISK_SEVERITY``). Tactics come from the rules' ``attack.<tactic>`` tags.

The incident id is derived from its first alert's id: stable while alerts join.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from kaudit_elk.base.timeparse import epoch
from kaudit_elk.base.vocab import SEVERITIES
from kaudit_elk.rules.alerts import NODE_PREFIX, credential_node, iso, severity_rank

Alert = dict[str, Any]
Incident = dict[str, Any]

#: ATT&CK Enterprise tactics in kill-chain order, as Sigma tags spell them (``attack.<name>``).
TACTICS = ("reconnaissance", "resource-development", "initial-access", "execution", "persistence",
           "privilege-escalation", "defense-evasion", "credential-access", "discovery", "lateral-movement",
           "collection", "command-and-control", "exfiltration", "impact")
TACTIC_TITLES = {t: t.replace("-", " ").title().replace("And", "and") for t in TACTICS}
SEVERITY_POINTS = {"informational": 1, "low": 5, "medium": 15, "high": 30, "critical": 50}
#: (minimum risk, severity): the severity an incident's risk alone reaches.
RISK_SEVERITY = ((150, "critical"), (75, "high"), (30, "medium"), (10, "low"), (0, "informational"))
#: Identities that say nothing about who is acting.
ANONYMOUS = frozenset({"system:anonymous", "system:unauthenticated", ""})
MAX_ALERT_IDS = 500
#: The networks the pack's rules treat as inside the cluster or the organisation.
INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
    "::1/128", "fc00::/7", "fe80::/10"))
WORKLOAD_PREFIXES = ("system:serviceaccount:", NODE_PREFIX)


@dataclass(frozen=True)
class IncidentOptions:
    """How alerts are grouped: a new incident after ``gap`` seconds of quiet or ``max_span`` seconds in all."""

    gap: float = 2 * 3600.0
    max_span: float = 24 * 3600.0


@dataclass
class OpenIncident:
    """What assignment needs to know of an incident (rebuilt from the store in ``detect``)."""

    id: str
    identity: str | None
    source: str | None
    first: float
    last: float
    #: the node the incident's credential is bound to or is (see the module doc), None when unknown
    node: str | None = None


# --------------------------------------------------------------------------- alert facts


def _epoch(value: Any) -> float | None:
    return epoch(value)


def alert_time(alert: Mapping[str, Any]) -> float:
    """The alert's time (its last evidence), epoch seconds; 0 when it has none."""
    a = alert.get("kaudit", {}).get("alert", {})
    for v in (a.get("last_event_time"), alert.get("@timestamp"), a.get("first_event_time")):
        t = _epoch(v)
        if t is not None:
            return t
    return 0.0


def alert_key(alert: Mapping[str, Any]) -> tuple[float, str]:
    """The order incidents are built in: (alert time, alert id)."""
    return alert_time(alert), str(alert["kaudit"]["alert"]["id"])


def actor(alert: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(identity, source address) of an alert; None where the alert does not say."""
    user = (alert.get("user") or {}).get("name")
    identity = None if user is None or str(user).lower() in ANONYMOUS else str(user)
    ip = (alert.get("source") or {}).get("ip")
    return identity, (str(ip) if ip else None)


def is_outside(ip: str | None) -> bool:
    """True for an address outside the internal networks (:data:`INTERNAL_NETWORKS`)."""
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not any(addr.version == n.version and addr in n for n in INTERNAL_NETWORKS)


def alert_node(alert: Mapping[str, Any]) -> str | None:
    """The node an alert's credential is bound to or is (``kaudit.alert.node``; a kubelet's own name)."""
    node = alert.get("kaudit", {}).get("alert", {}).get("node")
    if isinstance(node, str) and node:
        return node
    return credential_node({"username": (alert.get("user") or {}).get("name")})


def node_linked(identity: str | None, node: str | None, other_identity: str | None, other_node: str | None) -> bool:
    """True when one side is a kubelet and the other a pod token issued for a pod on that kubelet's node."""
    if node is None or node != other_node or identity == other_identity:
        return False
    return (identity or "").startswith(NODE_PREFIX) != (other_identity or "").startswith(NODE_PREFIX)


def is_workload(identity: str | None) -> bool:
    """A service account's or a node's identity (not a person's)."""
    return identity is not None and identity.startswith(WORKLOAD_PREFIXES)


def tactics_of(tags: Iterable[str]) -> list[str]:
    """ATT&CK tactics named by Sigma tags (``attack.privilege-escalation`` or ``attack.privilege_escalation``)."""
    out = []
    for tag in tags:
        t = str(tag).lower()
        if t.startswith("attack."):
            name = t[7:].replace("_", "-")
            if name in TACTICS and name not in out:
                out.append(name)
    return sorted(out, key=TACTICS.index)


def incident_id(first_alert_id: str) -> str:
    """Deterministic incident id: from the id of the alert that opened it."""
    return hashlib.sha256(f"incident:{first_alert_id}".encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- assignment


class Assigner:
    """Gives each alert, in :func:`alert_key` order, the id of the incident it belongs to."""

    def __init__(self, options: IncidentOptions | None = None, open_incidents: Iterable[OpenIncident] = ()) -> None:
        self.options = options or IncidentOptions()
        self.open: dict[str, OpenIncident] = {i.id: i for i in open_incidents}

    def _candidates(self, identity: str | None, source: str | None, t: float,
                    node: str | None = None) -> list[tuple[int, float, str]]:
        out = []
        for inc in self.open.values():
            if t - inc.last > self.options.gap or t - inc.first > self.options.max_span or inc.first - t > self.options.gap:
                continue
            if node_linked(identity, node, inc.identity, inc.node):
                out.append((1, inc.last, inc.id))  # a kubelet and a pod token of its node: one intrusion
                continue
            if source is not None and inc.source is not None and source != inc.source:
                continue
            if identity is not None and inc.identity is not None and identity != inc.identity:
                # a workload credential from the same outside address follows the address
                if not (source == inc.source and is_outside(source)
                        and (is_workload(identity) or is_workload(inc.identity))):
                    continue
            exact = (identity is not None and identity == inc.identity) + (source is not None and source == inc.source)
            if exact:
                out.append((exact, inc.last, inc.id))
        return out

    def assign(self, alert: Mapping[str, Any]) -> str:
        """The incident id for ``alert`` (opening a new incident when none is open for its actor)."""
        t, aid = alert_key(alert)
        identity, source = actor(alert)
        node = alert_node(alert)
        found = self._candidates(identity, source, t, node) if identity or source else []
        if found:
            _, _, iid = min(found, key=lambda c: (-c[0], -c[1], c[2]))
            inc = self.open[iid]
            inc.identity = inc.identity or identity
            inc.source = inc.source or source
            inc.node = inc.node or (node if identity == inc.identity else None)
            inc.last = max(inc.last, t)
            inc.first = min(inc.first, t)
            return iid
        iid = incident_id(aid)
        self.open[iid] = OpenIncident(iid, identity, source, t, t, node)
        return iid

    def drop_closed(self, now: float) -> None:
        """Forget incidents no alert at ``now`` or later can join."""
        for iid in [i for i, inc in self.open.items() if now - inc.last > self.options.gap
                    or now - inc.first > self.options.max_span]:
            del self.open[iid]


# --------------------------------------------------------------------------- summary


def risk_score(rules: Sequence[Mapping[str, Any]], tactics: Sequence[str]) -> int:
    """Risk of an incident from its rules ({severity, count}) and distinct tactics (see the module doc)."""
    base = 0.0
    for r in rules:
        points = SEVERITY_POINTS.get(str(r["severity"]).lower(), SEVERITY_POINTS["medium"])
        base += points * (1 + 0.1 * min(max(int(r["count"]) - 1, 0), 5))
    return int(round(base * (1 + 0.5 * max(len(tactics) - 1, 0))))


def risk_severity(risk: int) -> str:
    for floor, level in RISK_SEVERITY:
        if risk >= floor:
            return level
    return "informational"


def summarize(iid: str, alerts: Sequence[Mapping[str, Any]], options: IncidentOptions | None = None) -> Incident:
    """The incident document for its alerts (any order; the same alerts give the same document)."""
    options = options or IncidentOptions()
    ordered = sorted(alerts, key=alert_key)
    rules: dict[str, dict[str, Any]] = {}
    tactic_first: dict[str, float] = {}
    identities: dict[str, None] = {}
    sources: dict[str, None] = {}
    namespaces: dict[str, None] = {}
    users_seen: dict[str, None] = {}
    nodes: dict[str | None, str] = {}  # identity -> the node its credential is bound to or is
    for a in ordered:
        t = alert_time(a)
        rule = a.get("rule") or {}
        sev = str(a["kaudit"]["alert"].get("severity") or rule.get("level") or "medium").lower()
        tags = list(a.get("tags") or [])
        rid = str(rule.get("id"))
        r = rules.get(rid)
        if r is None:
            r = rules[rid] = {"id": rule.get("id"), "name": rule.get("name") or rule.get("title"),
                                         "severity": sev, "count": 0, "first": t, "last": t,
                                         "tactics": tactics_of(tags),
                                         "techniques": sorted({str(x).split(".", 1)[1].upper() for x in tags
                                                               if str(x).lower().startswith("attack.t")})}
        r["count"] += 1
        r["last"] = t
        if severity_rank(sev) > severity_rank(r["severity"]):
            r["severity"] = sev
        for tac in r["tactics"]:
            tactic_first.setdefault(tac, t)
        identity, source = actor(a)
        if identity:
            identities[identity] = None
        node = alert_node(a)
        if node is not None:
            nodes.setdefault(identity, node)
        name = (a.get("user") or {}).get("name")
        if name:
            users_seen[str(name)] = None
        if source:
            sources[source] = None
        ns = (a.get("orchestrator") or {}).get("namespace")
        if ns:
            namespaces[str(ns)] = None
    rule_list = sorted(rules.values(), key=lambda r: (r["first"], str(r["id"])))
    progression = sorted(tactic_first.items(), key=lambda kv: (kv[1], TACTICS.index(kv[0])))
    tactics = [t for t, _ in progression]
    risk = risk_score(rule_list, tactics)
    worst = max((r["severity"] for r in rule_list), key=severity_rank, default="informational")
    by_risk = risk_severity(risk)
    severity = max(worst, by_risk, key=severity_rank)
    first, last = alert_time(ordered[0]), alert_time(ordered[-1])
    who = next(iter(identities), None) or next(iter(users_seen), None)
    src = next(iter(sources), None)
    actor_text = f"{who or 'unknown identity'} from {src or 'unknown address'}"
    steps = " → ".join(TACTIC_TITLES[t] for t in tactics) or "no ATT&CK tactic"
    doc: Incident = {
        "@timestamp": iso(last),
        "event": {"kind": "incident"},
        "kaudit": {"incident": {
            "id": iid,
            "title": f"{actor_text}: {len(rule_list)} rule(s), {steps}",
            "severity": severity,
            "severity_rank": severity_rank(severity),
            "risk_score": risk,
            "tactics": tactics,
            "tactic_count": len(tactics),
            "progression": [{"tactic": t, "first_seen": iso(ts)} for t, ts in progression],
            "rules": [{**{k: v for k, v in r.items() if k not in ("first", "last")},
                       "first_seen": iso(r["first"]), "last_seen": iso(r["last"])} for r in rule_list],
            "rule_ids": [r["id"] for r in rule_list],
            "alert_count": len(ordered),
            "alert_ids": [str(a["kaudit"]["alert"]["id"]) for a in ordered][-MAX_ALERT_IDS:],
            "first_alert_time": iso(first),
            "last_alert_time": iso(last),
            "closes_at": iso(min(last + options.gap, first + options.max_span)),
            "actor": {"identity": who, "source_ip": src, **({"node": nodes[who]} if who in nodes else {})},
            "identities": list(users_seen),
            "source_ips": list(sources),
            "namespaces": sorted(namespaces),
        }},
        "threat": {"tactic": {"name": [TACTIC_TITLES[t] for t in tactics]},
                   "technique": {"id": sorted({x for r in rule_list for x in r["techniques"]})}},
    }
    if who:
        doc["user"] = {"name": who}
    if src:
        doc["source"] = {"ip": src}
    return doc


def notify_signature(incident: Mapping[str, Any]) -> str:
    """What a person is told again about: a higher severity or a new tactic (not every joining alert)."""
    inc = incident["kaudit"]["incident"]
    return f"{inc['severity']}|{','.join(inc['tactics'])}"


def build_incidents(alerts: Iterable[Mapping[str, Any]], options: IncidentOptions | None = None) -> list[Incident]:
    """Every incident of ``alerts`` (scan: all alerts of the run), ordered by first alert."""
    options = options or IncidentOptions()
    ordered = sorted(alerts, key=alert_key)
    assigner = Assigner(options)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for a in ordered:
        groups.setdefault(assigner.assign(a), []).append(a)
    out = [summarize(iid, group, options) for iid, group in groups.items()]
    return sorted(out, key=lambda i: (i["kaudit"]["incident"]["first_alert_time"] or "", i["kaudit"]["incident"]["id"]))


def open_incident(doc: Mapping[str, Any]) -> OpenIncident:
    """The assignment state of a stored incident document."""
    inc = doc["kaudit"]["incident"]
    return OpenIncident(inc["id"], inc["actor"].get("identity") if inc["actor"].get("identity") and
                        str(inc["actor"]["identity"]).lower() not in ANONYMOUS else None,
                        inc["actor"].get("source_ip"), _epoch(inc["first_alert_time"]) or 0.0,
                        _epoch(inc["last_alert_time"]) or 0.0, inc["actor"].get("node"))


__all__ = ["IncidentOptions", "Assigner", "is_outside", "is_workload", "OpenIncident", "build_incidents", "summarize", "risk_score",
           "tactics_of", "actor", "notify_signature", "SEVERITIES"]
