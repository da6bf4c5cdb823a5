"""What each rule of the pack needs from the audit log: the requests it can match, and at which level.

A rule's Sigma condition is reduced to alternatives over the request attributes an audit policy can
select on (verb, objectRef.apiGroup/resource/subresource/namespace/name, user.username/groups,
requestURI): positive equalities and prefixes constrain an attribute, negated ones exclude values
(the usual ``selection and not filter_*``), anything else (bodies, annotations, user agents) leaves
the request attributes open. A rule that names a resource but no subresource is taken to mean the
resource itself (rules that care about ``pods/exec`` say so). Correlation rules need what the rules
they count need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.correlations import SigmaCorrelationRule
from sigma.types import SigmaString, SpecialChars

from kaudit_elk.base.vocab import EVENT_AUDIT_LEVELS
from kaudit_elk.rules.loader import PackRule, RulePack

FIELDS = {
    "verb": "verb",
    "objectRef.apiGroup": "group",
    "objectRef.resource": "resource",
    "objectRef.subresource": "subresource",
    "objectRef.namespace": "namespace",
    "objectRef.name": "name",
    "user.username": "user",
    "user.groups": "groups",
    "requestURI": "path",
}

# The API group of the resources rules name without saying which group (objectRef.apiGroup is rarely set).
KNOWN_GROUPS: dict[str, tuple[str, ...]] = {
    **{r: ("",) for r in ("pods", "secrets", "configmaps", "services", "serviceaccounts", "namespaces", "nodes",
                          "endpoints", "persistentvolumes", "persistentvolumeclaims", "replicationcontrollers",
                          "resourcequotas", "limitranges", "podtemplates", "bindings", "componentstatuses")},
    "events": ("", "events.k8s.io"),
    **{r: ("apps",) for r in ("deployments", "daemonsets", "statefulsets", "replicasets", "controllerrevisions")},
    "jobs": ("batch",), "cronjobs": ("batch",),
    **{r: ("rbac.authorization.k8s.io",) for r in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")},
    "certificatesigningrequests": ("certificates.k8s.io",),
    "mutatingwebhookconfigurations": ("admissionregistration.k8s.io",),
    "validatingwebhookconfigurations": ("admissionregistration.k8s.io",),
    "validatingadmissionpolicies": ("admissionregistration.k8s.io",),
    "validatingadmissionpolicybindings": ("admissionregistration.k8s.io",),
    "ingresses": ("networking.k8s.io",), "networkpolicies": ("networking.k8s.io",),
    "tokenreviews": ("authentication.k8s.io",), "selfsubjectreviews": ("authentication.k8s.io",),
    **{r: ("authorization.k8s.io",) for r in ("selfsubjectaccessreviews", "selfsubjectrulesreviews",
                                              "subjectaccessreviews", "localsubjectaccessreviews")},
    "leases": ("coordination.k8s.io",),
    "customresourcedefinitions": ("apiextensions.k8s.io",),
    "podsecuritypolicies": ("policy",), "poddisruptionbudgets": ("policy",),
    "priorityclasses": ("scheduling.k8s.io",), "storageclasses": ("storage.k8s.io",),
    "horizontalpodautoscalers": ("autoscaling",),
}
CLUSTER_SCOPED = frozenset({
    "nodes", "namespaces", "persistentvolumes", "componentstatuses", "clusterroles", "clusterrolebindings",
    "certificatesigningrequests", "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
    "validatingadmissionpolicies", "validatingadmissionpolicybindings", "tokenreviews", "selfsubjectreviews",
    "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews", "customresourcedefinitions",
    "podsecuritypolicies", "priorityclasses", "storageclasses",
})
NAMESPACED = frozenset(r for r in KNOWN_GROUPS if r not in CLUSTER_SCOPED)


@dataclass(frozen=True, slots=True)
class Values:
    """Values an attribute may take: exact values and prefixes (a probe value is made for each prefix)."""

    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()

    def admits(self, value: str) -> bool:
        return value in self.exact or any(value.startswith(p) for p in self.prefixes)

    def probes(self) -> list[str]:
        out = sorted(self.exact)
        for p in sorted(self.prefixes):
            out.append(p + ("kaudit-probe:probe" if p.endswith("system:serviceaccount:") else "kaudit-probe"))
        return out


@dataclass(frozen=True, slots=True)
class Alternative:
    """One way a rule can match: attribute -> allowed values (absent: any), attribute -> excluded values."""

    allow: dict[str, Values] = field(default_factory=dict)
    deny: dict[str, Values] = field(default_factory=dict)

    def excludes(self, attr: str, value: str) -> bool:
        d = self.deny.get(attr)
        return d is not None and d.admits(value)


@dataclass(frozen=True, slots=True)
class RuleNeed:
    """What one pack rule needs: a level and the request shapes (alternatives) it can match."""

    rule_id: str
    title: str
    level: str  # Metadata | Request | RequestResponse
    alternatives: tuple[Alternative, ...]
    via: tuple[str, ...] = ()  # correlation rules: the titles of the rules they count


# --------------------------------------------------------------------------- Sigma -> alternatives


def _literal(value: Any) -> tuple[str, str] | None:
    """('exact', text) / ('prefix', text) for a plain or trailing-wildcard SigmaString, else None."""
    if not isinstance(value, SigmaString) or value.contains_placeholder():
        return None
    parts = list(value.s)
    if parts and parts[-1] == SpecialChars.WILDCARD_MULTI and all(isinstance(p, str) for p in parts[:-1]):
        return "prefix", "".join(parts[:-1])
    if all(isinstance(p, str) for p in parts):
        return "exact", "".join(parts)
    return None


def _leaf(node: Any) -> tuple[str, str, str] | None:
    if isinstance(node, ConditionFieldEqualsValueExpression) and node.field in FIELDS:
        lit = _literal(node.value)
        if lit is not None:
            return FIELDS[node.field], lit[0], lit[1]
    return None


def _vals(kind: str, text: str) -> Values:
    return Values(frozenset([text])) if kind == "exact" else Values(prefixes=frozenset([text]))


def _union(a: Values, b: Values) -> Values:
    return Values(a.exact | b.exact, a.prefixes | b.prefixes)


def _intersect(a: Values, b: Values) -> Values | None:
    exact = {v for v in a.exact if b.admits(v)} | {v for v in b.exact if a.admits(v)}
    prefixes = {p for p in a.prefixes if any(p.startswith(q) for q in b.prefixes)} | \
               {q for q in b.prefixes if any(q.startswith(p) for p in a.prefixes)}
    if not exact and not prefixes:
        return None
    return Values(frozenset(exact), frozenset(prefixes))


def _and(x: Alternative, y: Alternative) -> Alternative | None:
    allow = dict(x.allow)
    for k, v in y.allow.items():
        if k in allow:
            both = _intersect(allow[k], v)
            if both is None:
                return None
            allow[k] = both
        else:
            allow[k] = v
    deny = dict(x.deny)
    for k, v in y.deny.items():
        deny[k] = _union(deny[k], v) if k in deny else v
    return Alternative(allow, deny)


def _exclusions(node: Any) -> dict[str, Values] | None:
    """NOT(node) as exclusions, when node is an OR of plain/prefix equalities on request attributes."""
    leaf = _leaf(node)
    if leaf is not None:
        return {leaf[0]: _vals(leaf[1], leaf[2])}
    if isinstance(node, ConditionOR):
        out: dict[str, Values] = {}
        for arg in node.args:
            sub = _exclusions(arg)
            if sub is None:
                return None
            for k, v in sub.items():
                out[k] = _union(out[k], v) if k in out else v
        return out
    return None


def _alternatives(node: Any, limit: int = 256) -> list[Alternative]:
    if isinstance(node, ConditionAND):
        acc = [Alternative()]
        for arg in node.args:
            nxt = []
            for a in acc:
                for b in _alternatives(arg, limit):
                    both = _and(a, b)
                    if both is not None:
                        nxt.append(both)
            acc = nxt[:limit] if len(nxt) > limit else nxt
        return acc
    if isinstance(node, ConditionOR):
        out: list[Alternative] = []
        for arg in node.args:
            out.extend(_alternatives(arg, limit))
        return _merge_or(out)
    if isinstance(node, ConditionNOT):
        excl = _exclusions(node.args[0])
        return [Alternative(deny=excl)] if excl else [Alternative()]
    leaf = _leaf(node)
    if leaf is not None:
        return [Alternative(allow={leaf[0]: _vals(leaf[1], leaf[2])})]
    return [Alternative()]


def _merge_or(alts: list[Alternative]) -> list[Alternative]:
    """OR of alternatives that differ in one allowed attribute only -> one alternative (value lists)."""
    merged: list[Alternative] = []
    for alt in alts:
        for i, m in enumerate(merged):
            if m.deny == alt.deny and m.allow.keys() == alt.allow.keys():
                diff = [k for k in alt.allow if alt.allow[k] != m.allow[k]]
                if len(diff) <= 1:
                    allow = dict(m.allow)
                    for k in diff:
                        allow[k] = _union(m.allow[k], alt.allow[k])
                    merged[i] = Alternative(allow, m.deny)
                    break
        else:
            merged.append(alt)
    return merged


def rule_alternatives(rule: PackRule) -> list[Alternative]:
    """The request shapes a single-event (or new-terms) rule can match."""
    out: list[Alternative] = []
    for cond in rule.sigma.detection.parsed_condition:
        out.extend(_alternatives(cond.parsed))
    return _merge_or(out) or [Alternative()]


def pack_needs(pack: RulePack) -> list[RuleNeed]:
    """One RuleNeed per rule of the pack, in pack order."""
    by_ref: dict[str, PackRule] = {}
    for r in pack.rules:
        by_ref[r.id] = r
        if r.name:
            by_ref[r.name] = r
    out: list[RuleNeed] = []
    for r in pack.rules:
        level = r.audit_level or "Metadata"
        if isinstance(r.sigma, SigmaCorrelationRule):
            alts: list[Alternative] = []
            via = []
            for ref in r.sigma.rules:
                target = by_ref.get(str(getattr(ref, "reference", ref)))
                if target is None or isinstance(target.sigma, SigmaCorrelationRule):
                    continue
                alts.extend(rule_alternatives(target))
                via.append(target.title)
                level = _max_level(level, target.audit_level or "Metadata")
            out.append(RuleNeed(r.id, r.title, level, tuple(alts or [Alternative()]), tuple(via)))
        else:
            out.append(RuleNeed(r.id, r.title, level, tuple(rule_alternatives(r))))
    return out


def _max_level(a: str, b: str) -> str:
    return a if EVENT_AUDIT_LEVELS.index(a) >= EVENT_AUDIT_LEVELS.index(b) else b


def resources_named(needs: Iterable[RuleNeed]) -> set[str]:
    """Every resource some rule names (for probes and for the generator)."""
    out: set[str] = set()
    for n in needs:
        for a in n.alternatives:
            v = a.allow.get("resource")
            if v:
                out |= v.exact
    return out
