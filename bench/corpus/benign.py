"""Benign traffic of a busy production cluster, hour by hour (deterministic for a seed).

Every actor is a function ``(sim, em, t0, t1, rng)`` that appends the requests it makes in ``[t0, t1)``
to the emitter; the simulation keeps the shared state (nodes, pods, release revisions) that actors change.
Rates follow the components' defaults (lease renewals every 2 s or 10 s, watch timeouts of 5–10 minutes,
token refresh at 80 % of an hour, Flux's 10-minute reconciliation, Argo CD's 3-minute refresh, ...).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import cluster as C
from .events import Emitter, Identity, service_account

HOUR = 3600.0


def periodic(t0: float, t1: float, period: float, phase: float) -> Iterator[float]:
    """Times phase + k*period inside [t0, t1)."""
    k = math.ceil((t0 - phase) / period)
    t = phase + k * period
    while t < t1:
        yield t
        t += period


def poisson(rng: random.Random, t0: float, t1: float, per_hour: float) -> Iterator[float]:
    if per_hour <= 0:
        return
    t = t0
    while True:
        t += rng.expovariate(per_hour / HOUR)
        if t >= t1:
            return
        yield t


def business_factor(t: float, tz_offset_h: float = 1.0) -> float:
    """Activity of office workers: weekdays 08–18 local time, a little in the evening, nothing at night."""
    lt = t + tz_offset_h * HOUR
    day = int(lt // 86400 + 4) % 7  # 1970-01-01 was a Thursday -> 0 = Monday
    hour = (lt % 86400) / HOUR
    if day >= 5:
        return 0.0
    if 8.5 <= hour < 12.5 or 13.5 <= hour < 18:
        return 1.0
    if 12.5 <= hour < 13.5 or 18 <= hour < 19.5 or 8 <= hour < 8.5:
        return 0.4
    return 0.0


@dataclass(slots=True)
class Pod:
    name: str
    ns: str
    node: str
    sa: str
    workload: C.Workload | None
    ip: str
    uid: str


@dataclass
class Sim:
    """Cluster state shared by the actors."""

    seed: int
    nodes: list[C.Node]
    workloads: list[C.Workload]
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)
    rs_hash: dict[str, str] = field(default_factory=dict)
    helm_rev: dict[str, int] = field(default_factory=dict)
    next_ip: int = 10
    node_seq: int = 0

    def rng(self, *parts: Any) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    def node_for(self, w: C.Workload | None, r: random.Random) -> C.Node:
        pool = [n for n in self.nodes if n.pool != "control-plane" and (n.gpu if w is not None and w.gpu else True)]
        return r.choice(pool or self.nodes)

    def pod_ip(self, node: C.Node) -> str:
        self.next_ip = self.next_ip % 250 + 1
        return f"10.244.{node.index}.{self.next_ip}"

    def add_pod(self, name: str, ns: str, node: C.Node, sa: str, w: C.Workload | None) -> Pod:
        p = Pod(name, ns, node.name, sa, w, self.pod_ip(node), C.stable_uid("pod", ns, name))
        self.pods[(ns, name)] = p
        return p

    def sa(self, ns: str, name: str, ua: str, pod: Pod | None = None) -> Identity:
        if pod is None:
            pods = [p for p in self.pods.values() if p.ns == ns and p.sa == name]
            pod = pods[0] if pods else None
        ips = (pod.ip,) if pod else (f"10.244.1.{hash(name) % 200 + 20}",)
        return service_account(ns, name, ua, ips, pod=pod.name if pod else None,
                               node=pod.node if pod else None, seed=str(self.seed))


def make_nodes(n: int, gpu_nodes: int) -> list[C.Node]:
    nodes = [C.Node(f"cp-{i + 1}.corp.internal", C.CP_IPS[i], 200 + i, "control-plane") for i in range(3)]
    for i in range(n):
        a, b = 1 + i % 3, 20 + i * 7 % 230
        nodes.append(C.Node(f"ip-10-0-{a}-{b}.eu-west-1.compute.internal", f"10.0.{a}.{b}", i + 1,
                            "gpu" if i < gpu_nodes else "general", gpu=i < gpu_nodes))
    return nodes


def initial_pods(sim: Sim) -> None:
    for w in sim.workloads:
        r = sim.rng("init", w.ns, w.name)
        if w.kind == "DaemonSet":
            for node in sim.nodes:
                if w.gpu and not node.gpu:
                    continue
                if node.pool == "control-plane" and w.ns != "kube-system":
                    continue
                sim.add_pod(f"{w.name}-{C.suffix(r)}", w.ns, node, w.sa, w)
        elif w.kind == "StatefulSet":
            for i in range(w.replicas):
                sim.add_pod(f"{w.name}-{i}", w.ns, sim.node_for(w, r), w.sa, w)
        else:
            h = sim.rs_hash.setdefault(w.name, C.suffix(r, 10).lower())
            for _ in range(w.replicas):
                sim.add_pod(f"{w.name}-{h}-{C.suffix(r)}", w.ns, sim.node_for(w, r), w.sa, w)


# --------------------------------------------------------------------------- shared request shapes


def owner_ref(kind: str, name: str, uid: str, api: str = "apps/v1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": True, "blockOwnerDeletion": True}


def pod_object(sim: Sim, pod: Pod, template: dict[str, Any], owner: dict[str, Any] | None,
               gen_name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = dict(template.get("metadata") or {})
    meta.pop("creationTimestamp", None)
    if gen_name:
        meta["generateName"] = gen_name
    else:
        meta["name"] = pod.name
    meta["namespace"] = pod.ns
    if owner:
        meta["ownerReferences"] = [owner]
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": dict(template["spec"]), "status": {}}


def create_pod_by_controller(sim: Sim, em: Emitter, t: float, pod: Pod, template: dict[str, Any],
                             controller: str, owner: dict[str, Any], gen_name: str) -> float:
    """The controller's pod create, the scheduler's binding and the kubelet's first status patch."""
    who = kcm_sa(controller)
    body = pod_object(sim, pod, template, owner, gen_name)
    resp = dict(body, metadata=dict(body["metadata"], name=pod.name, uid=pod.uid,
                                    resourceVersion=str(em.rng.randint(10**7, 10**8))))
    em.request(t, who, "create", "pods", ns=pod.ns, body=body, response=resp,
               annotations={"pod-security.kubernetes.io/enforce-policy": "baseline:latest"})
    t += em.rng.uniform(0.005, 0.05)
    binding = {"kind": "Binding", "apiVersion": "v1", "metadata": {"name": pod.name, "namespace": pod.ns, "uid": pod.uid},
               "target": {"kind": "Node", "name": pod.node}}
    em.request(t, SCHEDULER, "create", "pods", ns=pod.ns, name=pod.name, sub="binding", body=binding,
               response={"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    t += em.rng.uniform(1, 6)
    node = next((n for n in sim.nodes if n.name == pod.node), None)
    if node is not None:
        em.request(t, kubelet(node), "patch", "pods", ns=pod.ns, name=pod.name, sub="status",
                   body={"metadata": {"uid": pod.uid}, "status": {"phase": "Running", "podIP": pod.ip}},
                   response={"kind": "Pod", "apiVersion": "v1", "metadata": {"name": pod.name, "namespace": pod.ns},
                             "status": {"phase": "Running", "podIP": pod.ip}})
    return t


def delete_pod(sim: Sim, em: Emitter, t: float, pod: Pod, who: Identity) -> None:
    em.request(t, who, "delete", "pods", ns=pod.ns, name=pod.name,
               body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
               response={"kind": "Pod", "apiVersion": "v1", "metadata": {"name": pod.name, "namespace": pod.ns,
                                                                          "uid": pod.uid}})
    node = next((n for n in sim.nodes if n.name == pod.node), None)
    if node is not None:
        em.request(t + em.rng.uniform(20, 35), kubelet(node), "delete", "pods", ns=pod.ns, name=pod.name,
                   body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                         "preconditions": {"uid": pod.uid}})
    sim.pods.pop((pod.ns, pod.name), None)


# --------------------------------------------------------------------------- identities

APISERVER = Identity("system:apiserver", ("system:authenticated", "system:masters"), ("::1",),
                     C.kube_ua("kube-apiserver"), uid="b7c0a4e1-3e7f-4a55-9d2c-6c1b5b0e8a31")
KCM = Identity("system:kube-controller-manager", ("system:authenticated",), C.CP_IPS,
               C.kube_ua("kube-controller-manager", "leader-election"))
KCM_PLAIN = Identity("system:kube-controller-manager", ("system:authenticated",), C.CP_IPS,
                     C.kube_ua("kube-controller-manager"))
SCHEDULER = Identity("system:kube-scheduler", ("system:authenticated",), C.CP_IPS, C.kube_ua("kube-scheduler", "scheduler"))
SCHEDULER_LE = Identity("system:kube-scheduler", ("system:authenticated",), C.CP_IPS,
                        C.kube_ua("kube-scheduler", "leader-election"))


def kcm_sa(controller: str) -> Identity:
    """A kube-controller-manager controller running with --use-service-account-credentials."""
    user = f"system:serviceaccount:kube-system:{controller}"
    return Identity(user, ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
                    (C.CP_IPS[0],), C.kube_ua("kube-controller-manager", user),
                    uid=C.stable_uid("sa", "kube-system", controller))


def kubelet(node: C.Node) -> Identity:
    return Identity(f"system:node:{node.name}", ("system:nodes", "system:authenticated"), (node.ip,),
                    C.kube_ua("kubelet"))


# --------------------------------------------------------------------------- control plane


def act_leases(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """Leader election (2 s renewals by the leader, standbys polling) and apiserver identity leases."""
    for who, name in ((KCM, "kube-controller-manager"), (SCHEDULER_LE, "kube-scheduler")):
        ip = C.CP_IPS[0] if name == "kube-controller-manager" else C.CP_IPS[1]
        for t in periodic(t0, t1, 2.0, 0.3 if name == "kube-scheduler" else 1.1):
            em.request(t, who, "update", "leases", group="coordination.k8s.io", ns="kube-system", name=name, ip=ip)
        for t in periodic(t0, t1, 4.0, 0.7):
            em.request(t, who, "get", "leases", group="coordination.k8s.io", ns="kube-system", name=name,
                       ip=C.CP_IPS[2])
    for i in range(len(C.CP_IPS)):
        name = f"apiserver-{C.stable_uid('apiserver', str(i))[:26].replace('-', '')}"
        for t in periodic(t0, t1, 10.0, i * 3.1):
            em.request(t, APISERVER, "update", "leases", group="coordination.k8s.io", ns="kube-system", name=name,
                       ip="::1" if i else "127.0.0.1")


def act_kubelets(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    by_node: dict[str, list[Pod]] = {}
    for p in sim.pods.values():
        by_node.setdefault(p.node, []).append(p)
    for node in sim.nodes:
        who = kubelet(node)
        nr = sim.rng("kubelet-phase", node.name)
        for t in periodic(t0, t1, 10.0, nr.uniform(0, 10)):
            em.request(t, who, "update", "leases", group="coordination.k8s.io", ns="kube-node-lease", name=node.name)
        for t in periodic(t0, t1, 300.0, nr.uniform(0, 300)):
            em.request(t, who, "patch", "nodes", name=node.name, sub="status",
                       body={"status": {"conditions": [{"type": "Ready", "status": "True",
                                                        "lastHeartbeatTime": "", "reason": "KubeletReady"}]}},
                       response={"kind": "Node", "apiVersion": "v1", "metadata": {"name": node.name},
                                 "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        for res, q in (("pods", f"fieldSelector=spec.nodeName%3D{node.name}"),
                       ("nodes", f"fieldSelector=metadata.name%3D{node.name}"), ("services", ""),
                       ("csidrivers", ""), ("runtimeclasses", "")):
            grp = {"csidrivers": "storage.k8s.io", "runtimeclasses": "node.k8s.io"}.get(res, "")
            for t in periodic(t0, t1, nr.uniform(300, 600), nr.uniform(0, 300)):
                em.request(t, who, "watch", res, group=grp, query=q)
        for t in periodic(t0, t1, 600.0, nr.uniform(0, 600)):
            em.request(t, who, "get", "nodes", name=node.name)
        for p in by_node.get(node.name, ()):
            pr = sim.rng("pod-phase", p.ns, p.name)
            # bound service-account token refresh at 80 % of its 1 h lifetime
            for t in periodic(t0, t1, 2880.0, pr.uniform(0, 2880)):
                em.request(t, who, "create", "serviceaccounts", ns=p.ns, name=p.sa, sub="token")
            w = p.workload
            refs = [("configmaps", "kube-root-ca.crt")]
            if w is not None:
                refs += [("configmaps", cm) for cm in w.configmaps] + [("secrets", s) for s in w.secrets]
                if w.env_from_secret:
                    refs.append(("secrets", w.env_from_secret))
            for res, name in refs:
                for t in periodic(t0, t1, pr.uniform(300, 600), pr.uniform(0, 300)):
                    em.request(t, who, "watch", res, ns=p.ns, query=f"fieldSelector=metadata.name%3D{name}")
            if w is not None and w.env_from_secret and r.random() < 0.02:
                em.request(r.uniform(t0, t1), who, "get", "secrets", ns=p.ns, name=w.env_from_secret)


def act_node_proxies(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """kube-proxy and CoreDNS watches; Cilium agents' endpoint/identity writes."""
    for node in sim.nodes:
        nr = sim.rng("kp", node.name)
        kp = service_account("kube-system", "kube-proxy", C.kube_ua("kube-proxy"), (node.ip,),
                             pod=f"kube-proxy-{C.suffix(nr)}", node=node.name, seed=str(sim.seed))
        for res, grp in (("endpointslices", "discovery.k8s.io"), ("services", ""), ("nodes", "")):
            for t in periodic(t0, t1, nr.uniform(300, 600), nr.uniform(0, 300)):
                em.request(t, kp, "watch", res, group=grp,
                           query="labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name"
                           if res == "services" else "")
        cil = service_account("kube-system", "cilium", "cilium-agent/1.15.6 (linux/amd64) kubernetes/$Format",
                              (node.ip,), pod=f"cilium-{C.suffix(nr)}", node=node.name, seed=str(sim.seed))
        for res in ("ciliumnetworkpolicies", "ciliumendpoints", "ciliumidentities", "ciliumnodes"):
            for t in periodic(t0, t1, nr.uniform(300, 600), nr.uniform(0, 300)):
                em.request(t, cil, "watch", res, group="cilium.io")
        for t in poisson(r, t0, t1, 6):
            em.request(t, cil, "update", "ciliumnodes", group="cilium.io", name=node.name)
    coredns = sim.sa("kube-system", "coredns", "coredns/v1.11.1 (linux/amd64) kubernetes/$Format")
    for res, grp in (("endpointslices", "discovery.k8s.io"), ("services", ""), ("namespaces", "")):
        for t in periodic(t0, t1, 420.0, 13.0):
            em.request(t, coredns, "watch", res, group=grp)


def act_controllers(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """kube-controller-manager's controllers: watches, HPA metrics, endpoint slices, namespace and GC sweeps."""
    for ctrl, res, grp in (("replicaset-controller", "replicasets", "apps"), ("deployment-controller", "deployments", "apps"),
                           ("daemon-set-controller", "daemonsets", "apps"), ("statefulset-controller", "statefulsets", "apps"),
                           ("job-controller", "jobs", "batch"), ("cronjob-controller", "cronjobs", "batch"),
                           ("endpointslice-controller", "endpointslices", "discovery.k8s.io"),
                           ("namespace-controller", "namespaces", ""), ("node-controller", "nodes", ""),
                           ("generic-garbage-collector", "pods", ""), ("resourcequota-controller", "resourcequotas", ""),
                           ("persistent-volume-binder", "persistentvolumeclaims", ""),
                           ("attachdetach-controller", "volumeattachments", "storage.k8s.io"),
                           ("service-account-controller", "serviceaccounts", ""),
                           ("root-ca-cert-publisher", "configmaps", ""), ("disruption-controller", "poddisruptionbudgets", "policy")):
        who = kcm_sa(ctrl)
        cr = sim.rng("ctrl", ctrl)
        for t in periodic(t0, t1, cr.uniform(300, 600), cr.uniform(0, 300)):
            em.request(t, KCM_PLAIN if ctrl == "generic-garbage-collector" else who, "watch", res, group=grp)
    hpa = kcm_sa("horizontal-pod-autoscaler")
    for ns, dep in (("payments", "payments-api"), ("checkout", "checkout-web"), ("web", "frontend")):
        for t in periodic(t0, t1, 15.0, hash(dep) % 15):
            em.request(t, hpa, "get", "deployments", group="apps", ns=ns, name=dep, sub="scale")
            em.request(t + 0.01, hpa, "list", "pods", group="metrics.k8s.io", ns=ns,
                       query=f"labelSelector=app.kubernetes.io%2Fname%3D{dep}")
            em.request(t + 0.03, hpa, "update", "horizontalpodautoscalers", group="autoscaling", ns=ns, name=dep,
                       sub="status", body={"kind": "HorizontalPodAutoscaler", "status": {"currentReplicas": 6}},
                       response={"kind": "HorizontalPodAutoscaler", "status": {"currentReplicas": 6}})
    eps = kcm_sa("endpointslice-controller")
    for t in poisson(r, t0, t1, 40):
        ns = r.choice(C.APP_NAMESPACES)
        em.request(t, eps, "update", "endpointslices", group="discovery.k8s.io", ns=ns, name=f"{ns}-{C.suffix(r)}",
                   body={"kind": "EndpointSlice", "addressType": "IPv4"}, response={"kind": "EndpointSlice"})
    nc = kcm_sa("node-controller")
    for t in periodic(t0, t1, 30.0, 4.0):
        em.request(t, nc, "list", "leases", group="coordination.k8s.io", ns="kube-node-lease")


def act_cronjobs(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """CronJobs: the cronjob controller creates a Job, the job controller its pod, TTL cleanup deletes both."""
    for ns, name, sched, image in C.CRONJOBS:
        kind, _, spec = sched.partition(":")
        if kind == "every":
            times = list(periodic(t0, t1, int(spec) * 60, 0))
        elif kind == "hourly":
            times = list(periodic(t0, t1, HOUR, int(spec) * 60))
        else:
            hh, mm = spec.split(":")
            times = list(periodic(t0, t1, 86400, int(hh) * HOUR + int(mm) * 60))
        for t in times:
            job = f"{name}-{int(t // 60)}"
            cj_uid = C.stable_uid("cronjob", ns, name)
            job_uid = C.stable_uid("job", ns, job)
            tmpl = {"metadata": {"labels": {"batch.kubernetes.io/job-name": job}},
                    "spec": {"restartPolicy": "OnFailure", "serviceAccountName": "default",
                             "containers": [{"name": name, "image": image,
                                             "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False}}]}}
            jobobj = {"kind": "Job", "apiVersion": "batch/v1",
                      "metadata": {"name": job, "namespace": ns,
                                   "ownerReferences": [owner_ref("CronJob", name, cj_uid, "batch/v1")]},
                      "spec": {"template": tmpl}}
            em.request(t + 0.2, kcm_sa("cronjob-controller"), "create", "jobs", group="batch", ns=ns, body=jobobj,
                       response=jobobj)
            node = sim.node_for(None, r)
            pod = Pod(f"{job}-{C.suffix(r)}", ns, node.name, "default", None, sim.pod_ip(node),
                      C.stable_uid("pod", ns, job))
            create_pod_by_controller(sim, em, t + 0.5, pod, tmpl, "job-controller",
                                     owner_ref("Job", job, job_uid, "batch/v1"), f"{job}-")
            done = t + r.uniform(30, 400)
            em.request(done, kcm_sa("job-controller"), "update", "jobs", group="batch", ns=ns, name=job, sub="status",
                       body={"kind": "Job", "status": {"succeeded": 1}}, response={"kind": "Job", "status": {"succeeded": 1}})
            em.request(done + 600, kcm_sa("ttl-after-finished-controller"), "delete", "jobs", group="batch", ns=ns,
                       name=job, body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
                       response={"kind": "Job", "metadata": {"name": job}})
            em.request(done + 601, KCM_PLAIN, "delete", "pods", ns=ns, name=pod.name,
                       body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
                             "preconditions": {"uid": pod.uid}})
