"""People: engineers on the corporate VPN (its public egress addresses) in office hours, with kubectl, k9s,
Lens and Helm: reads, logs, describes, port-forwards, the odd exec and rollout restart, and the occasional
403 when someone tries a namespace or resource their team has no access to."""

from __future__ import annotations

import random

from . import cluster as C
from .benign import HOUR, Sim, business_factor, poisson
from .events import Emitter, Identity


def human(name: str, groups: tuple[str, ...], ua: str) -> Identity:
    return Identity(name, groups + ("system:authenticated",), C.VPN_EGRESS, ua)


def _tool(r: random.Random) -> str:
    tools = [u for u, _ in C.HUMAN_TOOLS]
    return r.choices(tools, weights=[w for _, w in C.HUMAN_TOOLS])[0]


def act_humans(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    for user, groups, role in C.HUMANS:
        hr = sim.rng("human", user, int(t0 // HOUR))
        f = business_factor(t0)
        if "oidc:oncall" in groups and f == 0 and hr.random() < 0.04:
            f = 0.5  # an on-call page at night
        sessions = 1.2 * f if role != "security" else 0.5 * f
        for t in poisson(hr, t0, t1, sessions):
            session(sim, em, t, human(user, groups, _tool(hr)), role, groups, hr)


def session(sim: Sim, em: Emitter, t: float, who: Identity, role: str, groups: tuple[str, ...],
            r: random.Random) -> None:
    ip = r.choice(C.VPN_EGRESS)
    own = [ns for g in groups for ns in C.HUMAN_NAMESPACES.get(g, ())] or list(C.APP_NAMESPACES)
    ns = r.choice(own)
    pods = [p for p in sim.pods.values() if p.ns == ns] or list(sim.pods.values())
    ua = who.user_agent
    if r.random() < 0.3:
        em.request(t, who, "get", "", request_uri="/api?timeout=32s", ip=ip, level="Metadata")
        em.request(t + 0.05, who, "get", "", request_uri="/apis?timeout=32s", ip=ip, level="Metadata")
    t += 0.3
    if ua.startswith("k9s") or ua.startswith("Lens"):
        for res, grp in (("pods", ""), ("deployments", "apps"), ("namespaces", ""), ("nodes", ""), ("events", "")):
            em.request(t, who, "list", res, group=grp, ns=None if role == "sre" and res != "namespaces" else (
                ns if res not in ("namespaces", "nodes") else None), ip=ip,
                       code=200 if role == "sre" or res in ("pods", "deployments", "events") else 403)
            t += 0.2
        for res in ("pods", "events"):
            em.request(t, who, "watch", res, ns=ns, ip=ip, duration=r.uniform(60, 1800))
    for _ in range(r.randint(2, 12)):
        t += r.uniform(2, 90)
        p = r.choice(pods)
        action = r.choices(("get", "describe", "logs", "follow", "pf", "exec", "restart", "secret", "forbidden",
                            "cani", "top", "events", "helm"),
                           weights=(30, 12, 18, 4, 4, 3 if role == "sre" else 1, 1, 2 if role == "sre" else 1,
                                    3 if role == "dev" else 1, 2, 2, 4, 1 if role == "sre" else 0))[0]
        if action == "get":
            res, grp = r.choice((("pods", ""), ("deployments", "apps"), ("services", ""), ("configmaps", ""),
                                 ("ingresses", "networking.k8s.io"), ("jobs", "batch")))
            em.request(t, who, "list", res, group=grp, ns=ns, ip=ip, query="limit=500")
        elif action == "describe":
            em.request(t, who, "get", "pods", ns=p.ns, name=p.name, ip=ip)
            em.request(t + 0.1, who, "list", "events", ns=p.ns, ip=ip,
                       query=f"fieldSelector=involvedObject.name%3D{p.name}%2CinvolvedObject.namespace%3D{p.ns}&limit=500")
        elif action == "logs":
            em.request(t, who, "get", "pods", ns=p.ns, name=p.name, sub="log", ip=ip,
                       query=f"container={p.name.split('-')[0]}&tailLines=200")
        elif action == "follow":
            em.request(t, who, "get", "pods", ns=p.ns, name=p.name, sub="log", ip=ip, duration=r.uniform(30, 900),
                       query="follow=true&tailLines=50")
        elif action == "pf":
            em.request(t, who, "get", "pods", ns=p.ns, name=p.name, ip=ip)
            em.request(t + 0.2, who, "get", "pods", ns=p.ns, name=p.name, sub="portforward", ip=ip,
                       duration=r.uniform(60, 2400))
        elif action == "exec":
            cmd = r.choice(("command=sh", "command=%2Fbin%2Fbash", "command=env", "command=cat&command=%2Fetc%2Fresolv.conf",
                            "command=curl&command=-s&command=localhost%3A8080%2Fhealthz"))
            em.request(t, who, "get", "pods", ns=p.ns, name=p.name, ip=ip)
            em.request(t + 0.2, who, "get", "pods", ns=p.ns, name=p.name, sub="exec", ip=ip, duration=r.uniform(3, 600),
                       query=f"{cmd}&container={p.name.split('-')[0]}&stdin=true&stdout=true&tty=true")
        elif action == "restart" and p.workload is not None and p.workload.kind == "Deployment":
            w = p.workload
            em.request(t, who, "patch", "deployments", group="apps", ns=w.ns, name=w.name, ip=ip,
                       query="fieldManager=kubectl-rollout",
                       body={"spec": {"template": {"metadata": {"annotations": {
                           "kubectl.kubernetes.io/restartedAt": "2026-11-17T10:31:07+01:00"}}}}},
                       response=w.manifest(3))
        elif action == "secret":
            name = (p.workload.env_from_secret if p.workload and p.workload.env_from_secret else f"{ns}-tls")
            em.request(t, who, "get", "secrets", ns=ns, name=name, ip=ip, code=200 if role == "sre" else 403)
        elif action == "forbidden":
            other = r.choice([n for n in C.APP_NAMESPACES if n not in own] or ["kube-system"])
            res = r.choice(("pods", "secrets", "deployments"))
            em.request(t, who, "list", res, group="apps" if res == "deployments" else "", ns=other, ip=ip, code=403)
        elif action == "cani":
            em.request(t, who, "create", "selfsubjectaccessreviews", group="authorization.k8s.io", ip=ip)
        elif action == "top":
            em.request(t, who, "list", "pods", group="metrics.k8s.io", ns=ns, ip=ip)
        elif action == "events":
            em.request(t, who, "list", "events", ns=ns, ip=ip, query="limit=500")
        elif action == "helm":
            hw = Identity(who.username, who.groups, who.ips, "Helm/3.15.2")
            em.request(t, hw, "list", "secrets", ip=ip, query="labelSelector=owner%3Dhelm")
