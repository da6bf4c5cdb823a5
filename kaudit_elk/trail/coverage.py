"""``policy check``: which rules a policy leaves blind or degraded, and which policy rules write secrets.

Every rule's request shapes (:mod:`kaudit_elk.trail.needs`) are expanded into probe requests over the
values that matter to *this* policy (the users, groups, verbs, resources, namespaces, names and URLs
it mentions, plus one value it does not mention), and each probe is decided exactly as the apiserver
does (:func:`kaudit_elk.trail.policy.evaluate`). Probes are grouped by which policy rules they can
match (a bit mask per attribute), so the expansion stays small. A rule is

* ``ok``: every request it can match is recorded at its level or above, in a stage ingest keeps;
* ``reduced``: only read-only requests of control-plane identities (or health/discovery URLs) are not
  recorded, by a policy rule made for that (``level: None``, read-only verbs, ``system:`` identities);
* ``degraded``: some requests it can match are recorded below its level or not at all;
* ``blind``: none is recorded at its level;
* ``withheld``: blind because the bodies it needs are those of Secrets, ConfigMaps or tokens, which a
  safe policy keeps at Metadata (recording them writes secret values into the audit log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Any, Iterable

from kaudit_elk.trail.needs import (CLUSTER_SCOPED, KNOWN_GROUPS, NAMESPACED, Alternative, RuleNeed, Values)
from kaudit_elk.base.vocab import AUDIT_LEVELS, RESOURCE_VERBS, WRITE_VERBS
from kaudit_elk.base.vocab import KEPT_STAGES as KEPT_STAGES  # re-exported
from kaudit_elk.trail.policy import (RANK, Attributes, Policy, PolicyRule, UserInfo, describe,
                                     identity_matches, target_matches, verb_matches)

NON_RESOURCE_VERBS = ("get", "post", "put", "patch", "delete", "head", "options")
READ_ONLY = frozenset({"get", "list", "watch"})
NAMELESS_VERBS = frozenset({"create", "list", "watch", "deletecollection"})
LONG_RUNNING_SUBS = frozenset({"exec", "attach", "portforward", "proxy", "log"})
PROBE = "kaudit-probe"

# (group, resource, subresource) whose bodies hold secret values, and the verbs/level that write them.
SENSITIVE: tuple[tuple[str, str, str, str], ...] = (
    ("", "secrets", "", "Secret data"),
    ("", "configmaps", "", "ConfigMap data (often credentials)"),
    ("", "serviceaccounts", "token", "service account tokens (TokenRequest responses)"),
    ("authentication.k8s.io", "tokenreviews", "", "bearer tokens under review (TokenReview spec.token)"),
)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A slice of a rule's requests recorded below its level: which policy rule decides it, an example."""

    policy_rule: int | None
    level: str
    stages_lost: bool
    example: Attributes
    noise: bool


@dataclass(slots=True)
class RuleCoverage:
    rule_id: str
    title: str
    needs: str
    status: str  # ok | reduced | degraded | blind | withheld
    lowest: str  # the lowest level any of its requests gets
    highest: str
    shortfalls: list[Shortfall] = field(default_factory=list)
    served_by: set[int] = field(default_factory=set)  # policy rules recording some of its requests at its level
    via: tuple[str, ...] = ()

    def reason(self, policy: Policy) -> str:
        if self.status == "ok":
            return ""
        parts = []
        for s in self.shortfalls[:3]:
            who = describe(policy.rules[s.policy_rule], s.policy_rule) if s.policy_rule is not None \
                else "no rule matches (default None)"
            what = "its stages are omitted" if s.stages_lost and RANK[s.level] >= RANK[self.needs] else f"level {s.level}"
            parts.append(f"{probe_text(s.example)} gets {what} from {who}")
        more = len(self.shortfalls) - 3
        return "; ".join(parts) + (f"; and {more} more slice(s)" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class Leak:
    policy_rule: int
    level: str
    what: str
    example: Attributes


@dataclass(slots=True)
class CheckResult:
    policy: Policy
    rules: list[RuleCoverage]
    leaks: list[Leak]

    def by_status(self, status: str) -> list[RuleCoverage]:
        return [r for r in self.rules if r.status == status]


def probe_text(a: Attributes) -> str:
    who = a.user.name if a.user else "(no user)"
    if not a.resource_request:
        return f"{a.verb} {a.path} by {who}"
    res = f"{a.api_group + '/' if a.api_group else ''}{a.resource}{'/' + a.subresource if a.subresource else ''}"
    where = f" in {a.namespace}" if a.namespace else ""
    name = f" {a.name}" if a.name else ""
    return f"{a.verb} {res}{name}{where} by {who}"


# --------------------------------------------------------------------------- probe values


class _Universe:
    """The values of each request attribute that can make a difference under ``policy``."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        rules = policy.rules
        self.users = {u for r in rules for u in r.users}
        self.groups = {g for r in rules for g in r.user_groups}
        self.verbs = {v for r in rules for v in r.verbs}
        self.namespaces = {n for r in rules for n in r.namespaces}
        self.urls = {u for r in rules for u in r.non_resource_urls}
        self.api_groups = {gr.group for r in rules for gr in r.resources}
        self.resources: dict[str, set[str]] = {}  # resource -> subresources mentioned
        self.any_subs: set[str] = set()
        self.names: set[str] = set()
        for r in rules:
            for gr in r.resources:
                self.names.update(gr.resource_names)
                for res in gr.resources:
                    base, _, sub = res.partition("/")
                    if base == "*":
                        if sub and sub != "*":
                            self.any_subs.add(sub)
                        continue
                    subs = self.resources.setdefault(base, set())
                    if sub == "*":
                        subs.add(PROBE)
                    elif sub:
                        subs.add(sub)

    def identities(self, alt: Alternative) -> list[UserInfo]:
        want = alt.allow.get("user")
        names = want.probes() if want else sorted(self.users | {f"{PROBE}-user", "system:anonymous",
                                                               f"system:serviceaccount:{PROBE}:probe",
                                                               f"system:node:{PROBE}"})
        want_groups = alt.allow.get("groups")
        out = []
        for name in names:
            if alt.excludes("user", name):
                continue
            implied = _implied_groups(name)
            variants = [implied]
            extra = [] if name == "system:anonymous" else (want_groups.probes() if want_groups else sorted(self.groups))
            for g in extra:
                if g not in implied:
                    variants.append(implied + (g,))
            for groups in variants:
                if want_groups and not any(want_groups.admits(g) for g in groups):
                    continue
                if any(alt.excludes("groups", g) for g in groups):
                    continue
                out.append(UserInfo(name, groups))
        return out

    def verbs_for(self, alt: Alternative, resource_request: bool) -> list[str]:
        want = alt.allow.get("verb")
        base = RESOURCE_VERBS if resource_request else NON_RESOURCE_VERBS
        verbs = want.probes() if want else sorted(set(base) | self.verbs)
        return [v for v in verbs if not alt.excludes("verb", v)]

    def targets(self, alt: Alternative) -> list[Attributes]:
        """Resource and non-resource targets (user and verb left empty)."""
        out: list[Attributes] = []
        a = alt.allow
        object_constrained = any(k in a for k in ("group", "resource", "subresource", "namespace", "name"))
        if "resource" in a:
            resources = a["resource"].probes()
        else:
            resources = sorted(set(self.resources) | {f"{PROBE}s"})
        for res in resources:
            if alt.excludes("resource", res):
                continue
            groups = a["group"].probes() if "group" in a else list(
                KNOWN_GROUPS.get(res) or sorted(self.api_groups | {"", f"{PROBE}.example.com"}))
            if "subresource" in a:
                subs = a["subresource"].probes()
            elif "resource" in a:
                subs = [""]  # a rule naming a resource and no subresource means the resource itself
            else:
                subs = [""] + sorted(self.resources.get(res, set()) | self.any_subs)
            if "namespace" in a:
                namespaces = a["namespace"].probes()
            elif res in CLUSTER_SCOPED:
                namespaces = [""]
            else:
                namespaces = sorted(self.namespaces | {f"{PROBE}-ns"} | (set() if res in NAMESPACED else {""}))
                if res in NAMESPACED:
                    namespaces = [n for n in namespaces if n]
            names = a["name"].probes() if "name" in a else sorted(self.names | {"", f"{PROBE}-name"})
            for group, sub, ns, name in product(groups, subs, namespaces, names):
                if alt.excludes("group", group) or alt.excludes("subresource", sub) or alt.excludes("namespace", ns) \
                        or alt.excludes("name", name):
                    continue
                out.append(Attributes(None, "", True, ns, group, res, sub, name, ""))
        if not object_constrained:
            want = a.get("path")
            paths = want.probes() if want else sorted(
                {u if not u.endswith("*") else u.rstrip("*") + PROBE for u in self.urls if u != "*"}
                | {f"/{PROBE}", "/healthz", "/version", "/api", "/apis", "/metrics"})
            out.extend(Attributes(None, "", False, path=p) for p in paths if not alt.excludes("path", p))
        return out


def _implied_groups(name: str) -> tuple[str, ...]:
    """The groups the apiserver's authenticators give such a user."""
    if name == "system:anonymous":
        return ("system:unauthenticated",)
    parts = name.split(":")
    if name.startswith("system:serviceaccount:") and len(parts) == 4:
        return ("system:serviceaccounts", f"system:serviceaccounts:{parts[2]}", "system:authenticated")
    if name.startswith("system:node:"):
        return ("system:nodes", "system:authenticated")
    return ("system:authenticated",)


def _mask(rules: tuple[PolicyRule, ...], test) -> int:
    m = 0
    for i, r in enumerate(rules):
        if test(r):
            m |= 1 << i
    return m


def _first(mask: int) -> int | None:
    return (mask & -mask).bit_length() - 1 if mask else None


# --------------------------------------------------------------------------- checking


def is_noise_rule(rule: PolicyRule) -> bool:
    """A policy rule made to drop read-only control-plane traffic or health/discovery URLs."""
    if not rule.verbs or not set(rule.verbs) <= READ_ONLY | {"head", "options"}:
        return False
    if rule.non_resource_urls and not rule.resources and not rule.namespaces:
        return True
    idents = list(rule.users) + list(rule.user_groups)
    return bool(idents) and all(i.startswith("system:") and i not in ("system:authenticated", "system:unauthenticated",
                                                                    "system:anonymous") for i in idents)


def _recorded(level: str, omit: frozenset[str], verb: str, sub: str) -> bool:
    """Whether a request decided at ``level`` reaches the index in a stage ingest keeps."""
    if level == "None":
        return False
    if "ResponseComplete" not in omit:
        return True
    long_running = verb == "watch" or sub in LONG_RUNNING_SUBS
    return long_running and "ResponseStarted" not in omit


def _decide_all(policy: Policy, alts: Iterable[Alternative], universe: _Universe):
    """Yield (rule index or None, level, omit stages, example Attributes) per distinct probe class."""
    rules = policy.rules
    seen: set[tuple] = set()
    for alt in alts:
        idents = {}
        for u in universe.identities(alt):
            idents.setdefault(_mask(rules, lambda r, u=u: identity_matches(r, u)), u)
        for tgt in universe.targets(alt):
            tmask = _mask(rules, lambda r, t=tgt: target_matches(r, t))
            for verb in universe.verbs_for(alt, tgt.resource_request):
                if tgt.resource_request and tgt.name and verb in NAMELESS_VERBS:
                    continue
                vmask = _mask(rules, lambda r, v=verb: verb_matches(r, v))
                lr = verb == "watch" or tgt.subresource in LONG_RUNNING_SUBS
                for imask, user in idents.items():
                    idx = _first(imask & vmask & tmask)
                    key = (idx, lr)
                    if key in seen:
                        continue
                    seen.add(key)
                    example = Attributes(user, verb, tgt.resource_request, tgt.namespace, tgt.api_group,
                                         tgt.resource, tgt.subresource, tgt.name, tgt.path)
                    if idx is None:
                        yield None, "None", policy.omit_stages, example
                    else:
                        r = rules[idx]
                        yield idx, r.level, r.omit_stages | policy.omit_stages, example


def _is_sensitive_need(need: RuleNeed) -> bool:
    if need.level == "Metadata":
        return False
    for alt in need.alternatives:
        res = alt.allow.get("resource")
        if res is None or not res.exact:
            return False
        sub = alt.allow.get("subresource")
        subs = sub.exact if sub else {""}
        for r in res.exact:
            for s in subs:
                if not any(r == sr and s == ss for _, sr, ss, _ in SENSITIVE):
                    return False
    return True


def check(policy: Policy, needs: list[RuleNeed]) -> CheckResult:
    """Decide every rule's requests under ``policy``; find policy rules that write secret values."""
    universe = _Universe(policy)
    out: list[RuleCoverage] = []
    for need in needs:
        want = RANK[need.level]
        lowest, highest = 3, 0
        short: list[Shortfall] = []
        served: set[int] = set()
        for idx, level, omit, example in _decide_all(policy, need.alternatives, universe):
            recorded = _recorded(level, omit, example.verb, example.subresource)
            got = RANK[level] if recorded else 0
            lowest, highest = min(lowest, got), max(highest, got)
            if got >= want:
                if idx is not None:
                    served.add(idx)
                continue
            noise = idx is not None and is_noise_rule(policy.rules[idx])
            short.append(Shortfall(idx, level, not recorded, example, noise))
        if highest < want:
            status = "withheld" if _is_sensitive_need(need) else "blind"
        elif not short:
            status = "ok"
        elif all(s.noise for s in short):
            status = "reduced"
        else:
            status = "degraded"
        short.sort(key=lambda s: (s.noise, -1 if s.policy_rule is None else s.policy_rule))
        out.append(RuleCoverage(need.rule_id, need.title, need.level, status, AUDIT_LEVELS[lowest], AUDIT_LEVELS[highest],
                                short, served, need.via))
    return CheckResult(policy, out, find_leaks(policy, universe))


def find_leaks(policy: Policy, universe: _Universe | None = None) -> list[Leak]:
    """Policy rules that make the apiserver write secret values (one entry per policy rule and kind)."""
    universe = universe or _Universe(policy)
    found: dict[tuple[int, str], Leak] = {}
    for group, resource, sub, what in SENSITIVE:
        verbs = ("create",) if resource in ("tokenreviews",) or sub == "token" else RESOURCE_VERBS
        alt = Alternative(allow={"group": Values(frozenset([group])), "resource": Values(frozenset([resource])),
                                 "subresource": Values(frozenset([sub])), "verb": Values(frozenset(verbs))})
        for idx, level, omit, example in _decide_all(policy, [alt], universe):
            if idx is None or not _recorded(level, omit, example.verb, sub):
                continue
            if sub == "token":
                leaks = level == "RequestResponse"  # the token is in the response; the request holds none
            else:
                leaks = level == "RequestResponse" or (level == "Request" and example.verb in WRITE_VERBS)
            if leaks:
                found.setdefault((idx, what), Leak(idx, level, what, example))
    return sorted(found.values(), key=lambda x: (x.policy_rule, x.what))


def as_json(result: CheckResult) -> dict[str, Any]:
    """The check result for ``--output json``."""
    def ex(a: Attributes) -> dict[str, Any]:
        return {"user": a.user.name if a.user else None, "groups": list(a.user.groups) if a.user else [],
                "verb": a.verb, "resource_request": a.resource_request, "namespace": a.namespace,
                "api_group": a.api_group, "resource": a.resource, "subresource": a.subresource,
                "name": a.name, "path": a.path}

    return {
        "policy": result.policy.source,
        "summary": {s: len(result.by_status(s)) for s in ("ok", "reduced", "degraded", "blind", "withheld")}
        | {"leaks": len(result.leaks)},
        "rules": [{"id": r.rule_id, "title": r.title, "needs": r.needs, "status": r.status, "lowest": r.lowest,
                   "highest": r.highest, "reason": r.reason(result.policy), "via": list(r.via),
                   "served_by": sorted(r.served_by),
                   "shortfalls": [{"policy_rule": s.policy_rule, "level": s.level, "stages_lost": s.stages_lost,
                                   "noise": s.noise, "example": ex(s.example)} for s in r.shortfalls[:20]]}
                  for r in result.rules],
        "leaks": [{"policy_rule": x.policy_rule, "line": result.policy.rules[x.policy_rule].line, "level": x.level,
                   "writes": x.what, "example": ex(x.example)} for x in result.leaks],
        "warnings": list(result.policy.warnings),
    }
