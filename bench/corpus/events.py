"""Build valid audit.k8s.io/v1 Events the way a kube-apiserver writes them (pure functions).

The simulated audit policy is a common production one (kube-up/GKE style): ``RequestReceived`` omitted;
secrets, configmaps, token and access reviews, leases and events at ``Metadata``; reads at ``Request``;
writes to built-in API groups at ``RequestResponse``; writes to other groups (CRDs) at ``Metadata``.
Watches and streaming subresources (exec, attach, port-forward, log follow) log ``ResponseStarted`` and
``ResponseComplete``; everything else only ``ResponseComplete``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from kaudit_elk.base.vocab import WRITE_VERBS
BUILTIN_GROUPS = frozenset({
    "", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy", "autoscaling",
    "admissionregistration.k8s.io", "storage.k8s.io", "certificates.k8s.io", "apiextensions.k8s.io",
    "scheduling.k8s.io", "node.k8s.io", "discovery.k8s.io", "apiregistration.k8s.io",
})
METADATA_RESOURCES = frozenset({
    "secrets", "configmaps", "tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews",
    "selfsubjectrulesreviews", "localsubjectaccessreviews", "selfsubjectreviews", "leases", "events",
})
STREAMING = frozenset({"exec", "attach", "portforward"})
VERSION_OF = {"": "v1", "apps": "v1", "batch": "v1", "rbac.authorization.k8s.io": "v1", "networking.k8s.io": "v1",
              "policy": "v1", "autoscaling": "v2", "admissionregistration.k8s.io": "v1", "storage.k8s.io": "v1",
              "certificates.k8s.io": "v1", "apiextensions.k8s.io": "v1", "coordination.k8s.io": "v1",
              "discovery.k8s.io": "v1", "events.k8s.io": "v1", "authorization.k8s.io": "v1",
              "authentication.k8s.io": "v1", "scheduling.k8s.io": "v1", "node.k8s.io": "v1",
              "apiregistration.k8s.io": "v1", "metrics.k8s.io": "v1beta1"}
CLUSTER_SCOPED = frozenset({
    "nodes", "namespaces", "persistentvolumes", "clusterroles", "clusterrolebindings", "customresourcedefinitions",
    "mutatingwebhookconfigurations", "validatingwebhookconfigurations", "storageclasses", "csidrivers", "csinodes",
    "volumeattachments", "priorityclasses", "runtimeclasses", "certificatesigningrequests", "tokenreviews",
    "subjectaccessreviews", "selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews",
    "apiservices", "flowschemas", "prioritylevelconfigurations", "ingressclasses", "ciliumidentities",
    "clusterpolicies", "nodeclaims", "nodepools", "clusterissuers", "clustersecretstores", "providers",
    "compositeresourcedefinitions", "compositions", "nodefeatures", "clusterpolicyreports",
})
REASON = {200: "", 201: "", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 422: "Invalid"}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sends a request: user info as the authenticator fills it, client address(es) and user agent."""

    username: str
    groups: tuple[str, ...]
    ips: tuple[str, ...]
    user_agent: str
    uid: str | None = None
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def user(self) -> dict[str, Any]:
        u: dict[str, Any] = {"username": self.username}
        if self.uid:
            u["uid"] = self.uid
        u["groups"] = list(self.groups)
        if self.extra:
            u["extra"] = {k: list(v) for k, v in self.extra}
        return u


def service_account(ns: str, name: str, ua: str, ips: tuple[str, ...], *, pod: str | None = None,
                    node: str | None = None, seed: str = "") -> Identity:
    """A pod's bound service-account token (user.extra as the 1.30 token authenticator sets it)."""
    r = random.Random(f"sa:{ns}:{name}:{seed}")
    extra: list[tuple[str, tuple[str, ...]]] = [("authentication.kubernetes.io/credential-id", (f"JTI={_uuid(r)}",))]
    if node:
        extra.append(("authentication.kubernetes.io/node-name", (node,)))
        extra.append(("authentication.kubernetes.io/node-uid", (_uuid(r),)))
    if pod:
        extra.append(("authentication.kubernetes.io/pod-name", (pod,)))
        extra.append(("authentication.kubernetes.io/pod-uid", (_uuid(r),)))
    return Identity(f"system:serviceaccount:{ns}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
                    ips, ua, uid=_uuid(r), extra=tuple(sorted(extra)))


def _uuid(r: random.Random) -> str:
    h = "%032x" % r.getrandbits(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_SECOND: dict[int, str] = {}


def iso(t: float) -> str:
    """RFC 3339 with microseconds, as the apiserver writes MicroTime."""
    s = int(t)
    head = _SECOND.get(s)
    if head is None:
        if len(_SECOND) > 4096:
            _SECOND.clear()
        head = _SECOND[s] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return f"{head}.{int((t - s) * 1e6):06d}Z"


def level_for(resource: str, group: str, verb: str, subresource: str | None, username: str = "") -> str | None:
    """The simulated policy's level for a request (None = not logged).

    Like the production policies it imitates, it drops lease heartbeats (``get``/``update`` of
    coordination.k8s.io leases: node leases, leader election, apiserver identity): the highest-volume
    requests of any cluster (every 2-10 s per component), with no security value. Creating or deleting a
    lease stays logged.
    """
    if resource == "leases" and verb in ("get", "update"):
        return None
    if resource in METADATA_RESOURCES or subresource in ("token", "log") or group not in BUILTIN_GROUPS \
            and group not in ("coordination.k8s.io", "authorization.k8s.io", "authentication.k8s.io",
                              "events.k8s.io", "discovery.k8s.io", "metrics.k8s.io") and verb in WRITE_VERBS:
        return "Metadata"
    if verb in ("get", "list", "watch") or subresource in STREAMING or subresource == "proxy":
        return "Request"
    if group in BUILTIN_GROUPS:
        return "RequestResponse"
    return "Metadata"


def uri(resource: str, group: str = "", *, ns: str | None = None, name: str | None = None,
        sub: str | None = None, query: str = "") -> str:
    version = VERSION_OF.get(group, "v1alpha1" if "." in group else "v1")
    base = "/api/v1" if group == "" else f"/apis/{group}/{version}"
    path = base + (f"/namespaces/{ns}" if ns and resource != "namespaces" else "") + f"/{resource}"
    if resource == "namespaces" and ns and not name:
        name = ns
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path + (f"?{query}" if query else "")


@dataclass(slots=True)
class Emitter:
    """Collects (emit time, event) pairs; auditIDs come from the emitter's own seeded generator."""

    rng: random.Random
    out: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def aid(self) -> str:
        return _uuid(self.rng)

    def request(self, t: float, who: Identity, verb: str, resource: str, *, group: str = "",
                ns: str | None = None, name: str | None = None, sub: str | None = None, query: str = "",
                code: int | None = None, body: Any = None, response: Any = None, duration: float | None = None,
                request_uri: str | None = None, ip: str | None = None, annotations: dict[str, str] | None = None,
                reason: str | None = None, level: str | None = None, uid: str | None = None) -> str:
        """Append the events of one request; returns its auditID."""
        if ns is None and resource not in CLUSTER_SCOPED and verb in ("list", "watch"):
            pass  # cluster-wide collection
        lvl = level or level_for(resource, group, verb, sub, who.username)
        if lvl is None:
            return ""
        if code is None:
            code = 201 if verb == "create" and sub not in STREAMING and sub != "proxy" else 200
            if sub in STREAMING:
                code = 101
        aid = self.aid()
        ref: dict[str, Any] = {"resource": resource}
        if ns and resource != "namespaces":
            ref["namespace"] = ns
        if name or (resource == "namespaces" and ns):
            ref["name"] = name or ns
        if group:
            ref["apiGroup"] = group
        ref["apiVersion"] = VERSION_OF.get(group, "v1alpha1" if "." in group else "v1")
        if sub:
            ref["subresource"] = sub
        if uid:
            ref["uid"] = uid
        if request_uri is None:
            if verb == "watch":
                rv = self.rng.randint(10_000_000, 99_999_999)
                to = self.rng.randint(300, 600)
                q = "&".join(x for x in (query, f"allowWatchBookmarks=true&resourceVersion={rv}"
                                         f"&timeout={to // 60}m{to % 60}s&timeoutSeconds={to}&watch=true") if x)
                duration = duration if duration is not None else float(to)
                request_uri = uri(resource, group, ns=ns, name=None, query=q)
            elif verb == "list":
                q = query or "limit=500&resourceVersion=0"
                request_uri = uri(resource, group, ns=ns, query=q)
            else:
                request_uri = uri(resource, group, ns=ns, name=name, sub=sub, query=query)
        ann = {"authorization.k8s.io/decision": "forbid" if code == 403 else "allow",
               "authorization.k8s.io/reason": reason if reason is not None else (
                   "" if code == 403 else _rbac_reason(who, ns))}
        if annotations:
            ann.update(annotations)
        status: dict[str, Any] = {"metadata": {}, "code": code}
        if code >= 400:
            status.update({"status": "Failure", "reason": REASON.get(code, "BadRequest"),
                           "message": _message(code, who, verb, resource, group, ns, name)})
            if code == 403:
                ann["authorization.k8s.io/reason"] = ""
        ev: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": lvl, "auditID": aid, "stage": "ResponseComplete",
            "requestURI": request_uri, "verb": verb, "user": who.user(),
            "sourceIPs": [ip or self.rng.choice(who.ips)], "userAgent": who.user_agent, "objectRef": ref,
            "responseStatus": status,
        }
        if lvl in ("Request", "RequestResponse") and body is not None:
            ev["requestObject"] = body
        if lvl == "RequestResponse" and response is not None and code < 400:
            ev["responseObject"] = response
        latency = self.rng.uniform(0.0008, 0.03) if verb != "list" else self.rng.uniform(0.004, 0.25)
        ev["requestReceivedTimestamp"] = iso(t)
        streaming = verb == "watch" or sub in STREAMING or (sub == "log" and "follow=true" in request_uri)
        if streaming:
            started = dict(ev, stage="ResponseStarted", stageTimestamp=iso(t + latency), annotations=ann)
            if verb == "watch" or sub == "log":
                started["responseStatus"] = {"metadata": {}, "code": 200}
            self.out.append((t + latency, started))
            end = t + (duration if duration is not None else self.rng.uniform(5, 120))
            ev["stageTimestamp"] = iso(end)
            ev["annotations"] = ann
            if verb == "watch":
                ev["responseStatus"] = {"metadata": {}, "code": 200}
            self.out.append((end, ev))
        else:
            ev["stageTimestamp"] = iso(t + latency)
            ev["annotations"] = ann
            self.out.append((t + latency, ev))
        return aid


def _rbac_reason(who: Identity, ns: str | None) -> str:
    if who.username.startswith("system:node:"):
        return ""
    if "system:masters" in who.groups:
        return ""
    role = who.username.rsplit(":", 1)[-1] if who.username.startswith("system:serviceaccount:") else "view"
    if ns:
        return f'RBAC: allowed by RoleBinding "{role}/{ns}" of Role "{role}" to User "{who.username}"'
    return f'RBAC: allowed by ClusterRoleBinding "{role}" of ClusterRole "{role}" to User "{who.username}"'


def _message(code: int, who: Identity, verb: str, resource: str, group: str, ns: str | None, name: str | None) -> str:
    if code == 403:
        scope = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        g = f'in API group "{group}"'
        return f'{resource} {quote(name or "", safe="")!r} is forbidden: User "{who.username}" cannot {verb} ' \
               f'resource "{resource}" {g}{scope}'.replace("''", '""')
    if code == 404:
        return f'{resource} "{name}" not found'
    if code == 409:
        return f'{resource} "{name}" already exists'
    return "the request is invalid"
