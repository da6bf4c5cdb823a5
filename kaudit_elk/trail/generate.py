"""``policy generate``: an audit Policy derived from what the rule pack needs.

Order matters (the first matching rule wins): sensitive resources first (Secrets, ConfigMaps,
TokenRequests, TokenReviews at Metadata, so their values are never written), then the dropped
read-only noise, then the bodies the rules need (RBAC and workloads at RequestResponse for writes,
exec/attach/port-forward and CSRs at Request, every other rule's resources at the level it declares),
then Metadata for everything else. Each rule's comment says which pack rules it serves — computed by
running :func:`kaudit_elk.trail.coverage.check` on the generated policy, not written by hand.

Profiles: ``minimal`` (only the bodies rules need, more read-only noise dropped), ``standard``,
``full`` (also every other write at RequestResponse and no discovery/health reads dropped except by
control-plane identities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from kaudit_elk.base.vocab import WRITES
from kaudit_elk.trail.coverage import check
from kaudit_elk.trail.needs import KNOWN_GROUPS, RuleNeed
from kaudit_elk.trail.policy import GroupResources, Policy, PolicyRule

PROFILES = ("minimal", "standard", "full")
RBAC = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
WORKLOADS = {"": ("pods", "replicationcontrollers"),
             "apps": ("deployments", "daemonsets", "statefulsets", "replicasets"),
             "batch": ("jobs", "cronjobs")}
SENSITIVE_RULE = {"": ("secrets", "configmaps", "serviceaccounts/token"), "authentication.k8s.io": ("tokenreviews",)}
_SENSITIVE_NAMES = {"secrets", "configmaps", "serviceaccounts/token", "tokenreviews"}


@dataclass(frozen=True, slots=True)
class _Draft:
    why: str
    rule: PolicyRule


def _gr(groups: dict[str, tuple[str, ...] | list[str]]) -> tuple[GroupResources, ...]:
    return tuple(GroupResources(g, tuple(r)) for g, r in groups.items() if r)


def _needs_by_level(needs: list[RuleNeed], level: str,
                    taken: dict[str, frozenset[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """group -> resources (``res`` or ``res/sub``) and the verbs, of the rules declaring ``level``, leaving
    out what an earlier rule at this level or above already records (``taken``: resource -> verbs, empty: all)."""
    groups: dict[str, list[str]] = {}
    verbs: set[str] = set()
    for need in needs:
        if need.level != level:
            continue
        for alt in need.alternatives:
            res = alt.allow.get("resource")
            if res is None:
                continue
            sub = alt.allow.get("subresource")
            subs = sorted(sub.exact) if sub else [""]
            group_v = alt.allow.get("group")
            v = alt.allow.get("verb")
            want = frozenset(v.exact) if v else frozenset()
            for r in sorted(res.exact):
                for s in subs:
                    name = f"{r}/{s}" if s else r
                    had = taken.get(name)
                    if name in _SENSITIVE_NAMES or (had is not None and (not had or (want and want <= had))):
                        continue
                    for g in (sorted(group_v.exact) if group_v else KNOWN_GROUPS.get(r, ("",))):
                        lst = groups.setdefault(g, [])
                        if name not in lst:
                            lst.append(name)
                    verbs |= set(v.exact) if v else set(WRITES) | {"get", "list", "watch"}
    order = ("get", "list", "watch") + WRITES
    return groups, [x for x in order if x in verbs] + sorted(verbs - set(order))


def draft(needs: list[RuleNeed], profile: str = "standard") -> list[_Draft]:
    """The policy rules, in order, each with the reason it exists."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
    out = [_Draft("Sensitive resources at Metadata only: Secret and ConfigMap values, service account tokens and "
                  "tokens under review are never written to the audit log",
                  PolicyRule("Metadata", resources=_gr(SENSITIVE_RULE)))]
    out.append(_Draft("Read-only noise: kube-proxy watching endpoints and services",
                      PolicyRule("None", users=("system:kube-proxy",), verbs=("watch",),
                                 resources=_gr({"": ("endpoints", "services", "services/status"),
                                                "discovery.k8s.io": ("endpointslices",)}))))
    if profile != "full":
        out.append(_Draft("Read-only noise: kubelets reading their own Node objects",
                          PolicyRule("None", user_groups=("system:nodes",), verbs=("get",),
                                     resources=_gr({"": ("nodes", "nodes/status")}))))
        out.append(_Draft("Read-only noise: health checks",
                          PolicyRule("None", verbs=("get", "head"), non_resource_urls=("/healthz*", "/livez*", "/readyz*"))))
    if profile == "minimal":
        out.append(_Draft("Read-only noise: leader-election reads of the controller manager and scheduler",
                          PolicyRule("None", users=("system:kube-controller-manager", "system:kube-scheduler"),
                                     verbs=("get",), resources=_gr({"coordination.k8s.io": ("leases",)}),
                                     namespaces=("kube-system",))))
        out.append(_Draft("Read-only noise: version, OpenAPI and discovery documents",
                          PolicyRule("None", verbs=("get",),
                                     non_resource_urls=("/version", "/openapi*", "/api", "/api/*", "/apis", "/apis/*"))))
    taken: dict[str, frozenset[str]] = {}
    every = frozenset()
    if profile != "minimal":
        out.append(_Draft("Exec, attach and port-forward sessions with their request (command, container)",
                          PolicyRule("Request", resources=_gr({"": ("pods/exec", "pods/attach", "pods/portforward")}))))
        taken.update(dict.fromkeys(("pods/exec", "pods/attach", "pods/portforward"), every))
        out.append(_Draft("Certificate signing requests and their approval with the request body",
                          PolicyRule("Request", resources=_gr({"certificates.k8s.io": (
                              "certificatesigningrequests", "certificatesigningrequests/approval",
                              "certificatesigningrequests/status")}))))
        taken.update(dict.fromkeys(("certificatesigningrequests", "certificatesigningrequests/approval",
                                    "certificatesigningrequests/status"), every))
        out.append(_Draft("RBAC changes with request and response bodies (rules, roleRef, subjects)",
                          PolicyRule("RequestResponse", verbs=WRITES,
                                     resources=_gr({"rbac.authorization.k8s.io": RBAC}))))
        taken.update(dict.fromkeys(RBAC, frozenset(WRITES)))
        out.append(_Draft("Workload changes with request and response bodies (pod specs and templates)",
                          PolicyRule("RequestResponse", verbs=WRITES,
                                     resources=_gr({g: r + tuple(f"{x}/ephemeralcontainers" for x in r if x == "pods")
                                                    for g, r in WORKLOADS.items()}))))
        taken.update(dict.fromkeys([x for r in WORKLOADS.values() for x in r] + ["pods/ephemeralcontainers"],
                                   frozenset(WRITES)))
    for level in ("RequestResponse", "Request"):
        groups, verbs = _needs_by_level(needs, level, taken)
        if groups:
            out.append(_Draft(f"Resources whose {'request and response bodies' if level == 'RequestResponse' else 'request bodies'} "
                              f"the rules read ({level})", PolicyRule(level, verbs=tuple(verbs), resources=_gr(groups))))
            taken.update({r: frozenset(verbs) for rs in groups.values() for r in rs})
    if profile == "full":
        out.append(_Draft("Every other write with request and response bodies",
                          PolicyRule("RequestResponse", verbs=WRITES)))
    out.append(_Draft("Everything else at Metadata (who did what, when, from where, with which result)",
                      PolicyRule("Metadata")))
    return out


def generate(needs: list[RuleNeed], profile: str = "standard", version: str = "", omit_managed_fields: bool = True) -> str:
    """The Policy YAML with a header and one comment per rule naming the pack rules it serves."""
    drafts = draft(needs, profile)
    policy = Policy(tuple(d.rule for d in drafts), frozenset({"RequestReceived"}), omit_managed_fields, "generated")
    result = check(policy, needs)
    served: dict[int, list[str]] = {}
    targeted = {n.rule_id for n in needs if all("resource" in a.allow or "path" in a.allow for a in n.alternatives)}
    for cov in result.rules:
        if cov.rule_id not in targeted:
            continue
        for idx in cov.served_by:
            served.setdefault(idx, []).append(cov.title)
    lines = [
        f"# Audit policy generated by kaudit-elk {version} (profile {profile}) from {len(needs)} detection rules.",
        "# Use it with kube-apiserver --audit-policy-file; check a policy with `kaudit-elk policy check FILE`.",
        "# Coverage under this policy: " + ", ".join(
            f"{len(result.by_status(s))} {s}" for s in ("ok", "reduced", "degraded", "blind", "withheld")) + ".",
    ]
    for cov in result.rules:
        if cov.status in ("blind", "withheld", "degraded"):
            lines.append(f"#   {cov.status}: {cov.title} (needs {cov.needs})")
    broad = len(needs) - len(targeted)
    lines.append(f"# {broad} rules read requests of any resource (identities, decisions, addresses, user agents):"
                 " every rule below records them except the dropped noise.")
    lines += ["apiVersion: audit.k8s.io/v1", "kind: Policy",
              "# RequestReceived duplicates every request; ResponseStarted/ResponseComplete carry the outcome.",
              "omitStages: [RequestReceived]"]
    if omit_managed_fields:
        lines.append("omitManagedFields: true  # managedFields are noise in bodies (and dropped by ingest anyway)")
    lines.append("rules:")
    for i, d in enumerate(drafts):
        lines.append(f"  # {i}. {d.why}.")
        names = served.get(i, [])
        if names:
            lines.extend(_wrap(f"Serves {len(names)} rule(s): " + "; ".join(names)))
        elif d.rule.level == "None":
            lines.append("  #    Serves no rule: these requests are dropped.")
        body = yaml.safe_dump([_as_dict(d.rule)], sort_keys=False, default_flow_style=None, width=110)
        lines.extend("  " + ln for ln in body.rstrip("\n").split("\n"))
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 108) -> list[str]:
    out, cur = [], "  #    "
    for word in text.split(" "):
        if len(cur) + len(word) + 1 > width and cur.strip() != "#":
            out.append(cur.rstrip())
            cur = "  #      "
        cur += word + " "
    out.append(cur.rstrip())
    return out


def _as_dict(rule: PolicyRule) -> dict[str, Any]:
    d: dict[str, Any] = {"level": rule.level}
    if rule.users:
        d["users"] = list(rule.users)
    if rule.user_groups:
        d["userGroups"] = list(rule.user_groups)
    if rule.verbs:
        d["verbs"] = list(rule.verbs)
    if rule.resources:
        d["resources"] = [{"group": gr.group, "resources": list(gr.resources)}
                          | ({"resourceNames": list(gr.resource_names)} if gr.resource_names else {})
                          for gr in rule.resources]
    if rule.namespaces:
        d["namespaces"] = list(rule.namespaces)
    if rule.non_resource_urls:
        d["nonResourceURLs"] = list(rule.non_resource_urls)
    if rule.omit_stages:
        d["omitStages"] = sorted(rule.omit_stages)
    return d
