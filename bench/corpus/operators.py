"""The operators and tools of the simulated cluster, each with its real service account, namespace,
user agent and request shapes (see each function's docstring for the component it models)."""

from __future__ import annotations

import random
from typing import Any

from . import cluster as C
from .benign import (Pod, Sim, business_factor, create_pod_by_controller, delete_pod, kcm_sa, owner_ref,
                     periodic, poisson)
from .events import Emitter, Identity

LE = "coordination.k8s.io"

# (namespace, service account, user agent, lease namespace, lease name, renew period s)
LEADERS = (
    ("kube-system", "cert-manager", "cert-manager-leader-election/v1.14.5 (linux/amd64) cert-manager/d5ee8f9d",
     "kube-system", "cert-manager-controller", 2.0),
    ("external-secrets", "external-secrets", C.default_ua("external-secrets"), "external-secrets",
     "external-secrets-controller", 2.0),
    ("kyverno", "kyverno-admission-controller", C.default_ua("kyverno"), "kyverno", "kyverno", 2.0),
    ("flux-system", "kustomize-controller", C.default_ua("kustomize-controller"), "flux-system",
     "kustomize-controller-leader-election", 2.0),
    ("flux-system", "helm-controller", C.default_ua("helm-controller"), "flux-system",
     "helm-controller-leader-election", 2.0),
    ("kube-system", "karpenter", C.default_ua("controller"), "kube-system", "karpenter-leader-election", 2.0),
    ("tekton-pipelines", "tekton-pipelines-controller", C.default_ua("controller"), "tekton-pipelines",
     "tekton-pipelines-controller.github.com.tektoncd.pipeline.pkg.reconciler.taskrun.reconciler.00-of-01", 2.0),
    ("kube-system", "ebs-csi-controller-sa", "csi-provisioner/v4.0.1 (linux/amd64) kubernetes/$Format", "kube-system",
     "ebs-csi-aws-com", 10.0),
    ("datadog", "datadog-cluster-agent", "datadog-cluster-agent/7.54.0 (linux/amd64) kubernetes/$Format", "datadog",
     "datadog-leader-election", 5.0),
    ("gpu-operator", "gpu-operator", C.default_ua("gpu-operator"), "gpu-operator", "53822513.nvidia.com", 2.0),
    ("crossplane-system", "crossplane", C.default_ua("crossplane"), "crossplane-system", "crossplane-leader-election-core",
     2.0),
    ("trivy-system", "trivy-operator", C.default_ua("trivy-operator"), "trivy-system", "trivyoperator-lock", 2.0),
)

# (ns, sa, user agent, [(resource, group, namespace or None = cluster-wide)]) reflectors re-watched every 5-10 min
WATCHERS = (
    ("argocd", "argocd-application-controller", "argocd-application-controller/v2.11.3+bd60ef6 (linux/amd64)",
     [(r, g, None) for r, g in (("pods", ""), ("services", ""), ("configmaps", ""), ("secrets", ""), ("deployments", "apps"),
                                ("replicasets", "apps"), ("statefulsets", "apps"), ("daemonsets", "apps"),
                                ("ingresses", "networking.k8s.io"), ("serviceaccounts", ""), ("roles", "rbac.authorization.k8s.io"),
                                ("rolebindings", "rbac.authorization.k8s.io"), ("clusterroles", "rbac.authorization.k8s.io"),
                                ("jobs", "batch"), ("cronjobs", "batch"), ("applications", "argoproj.io"),
                                ("persistentvolumeclaims", ""), ("endpointslices", "discovery.k8s.io"))]),
    ("cert-manager", "cert-manager", "cert-manager-certificates-trigger/v1.14.5 (linux/amd64) cert-manager/d5ee8f9d",
     [("secrets", "", None), ("certificates", "cert-manager.io", None), ("certificaterequests", "cert-manager.io", None),
      ("orders", "acme.cert-manager.io", None), ("ingresses", "networking.k8s.io", None)]),
    ("external-secrets", "external-secrets", C.default_ua("external-secrets"),
     [("externalsecrets", "external-secrets.io", None), ("secrets", "", None), ("clustersecretstores", "external-secrets.io", None)]),
    ("monitoring", "kube-state-metrics", "kube-state-metrics/v2.12.0 (linux/amd64) kubernetes/$Format",
     [(r, g, None) for r, g in (("pods", ""), ("nodes", ""), ("secrets", ""), ("configmaps", ""), ("deployments", "apps"),
                                ("daemonsets", "apps"), ("statefulsets", "apps"), ("jobs", "batch"), ("cronjobs", "batch"),
                                ("persistentvolumes", ""), ("persistentvolumeclaims", ""), ("services", ""),
                                ("namespaces", ""), ("leases", LE), ("horizontalpodautoscalers", "autoscaling"),
                                ("ingresses", "networking.k8s.io"), ("certificatesigningrequests", "certificates.k8s.io"))]),
    ("monitoring", "prometheus-operator", "PrometheusOperator/0.74.0",
     [("servicemonitors", "monitoring.coreos.com", None), ("podmonitors", "monitoring.coreos.com", None),
      ("prometheusrules", "monitoring.coreos.com", None), ("secrets", "", "monitoring"), ("configmaps", "", "monitoring"),
      ("statefulsets", "apps", "monitoring"), ("namespaces", "", None)]),
    ("monitoring", "prometheus-k8s", "Prometheus/2.52.0",
     [("pods", "", None), ("services", "", None), ("endpoints", "", None), ("endpointslices", "discovery.k8s.io", None)]),
    ("datadog", "datadog-cluster-agent", "datadog-cluster-agent/7.54.0 (linux/amd64) kubernetes/$Format",
     [("pods", "", None), ("nodes", "", None), ("services", "", None), ("events", "", None), ("namespaces", "", None),
      ("deployments", "apps", None), ("endpointslices", "discovery.k8s.io", None)]),
    ("istio-system", "istiod", "pilot-discovery/1.22.1",
     [("pods", "", None), ("services", "", None), ("endpointslices", "discovery.k8s.io", None), ("namespaces", "", None),
      ("secrets", "", "istio-system"), ("configmaps", "", None), ("mutatingwebhookconfigurations", "admissionregistration.k8s.io", None),
      ("virtualservices", "networking.istio.io", None), ("destinationrules", "networking.istio.io", None)]),
    ("kyverno", "kyverno-admission-controller", C.default_ua("kyverno"),
     [("clusterpolicies", "kyverno.io", None), ("policies", "kyverno.io", None), ("namespaces", "", None),
      ("validatingwebhookconfigurations", "admissionregistration.k8s.io", None), ("configmaps", "", "kyverno")]),
    ("kube-system", "karpenter", C.default_ua("controller"),
     [("nodes", "", None), ("pods", "", None), ("nodeclaims", "karpenter.sh", None), ("nodepools", "karpenter.sh", None),
      ("persistentvolumes", "", None), ("poddisruptionbudgets", "policy", None)]),
    ("kube-system", "metrics-server", "metrics-server/v0.7.1 (linux/amd64) kubernetes/$Format",
     [("nodes", "", None), ("configmaps", "", "kube-system")]),
    ("trivy-system", "trivy-operator", C.default_ua("trivy-operator"),
     [("pods", "", None), ("replicasets", "apps", None), ("jobs", "batch", "trivy-system"),
      ("vulnerabilityreports", "aquasecurity.github.io", None), ("nodes", "", None)]),
    ("velero", "velero", "velero-server/v1.13.2 (linux/amd64) 4d961fb6",
     [("backups", "velero.io", "velero"), ("schedules", "velero.io", "velero"), ("backupstoragelocations", "velero.io", "velero")]),
    ("crossplane-system", "crossplane", C.default_ua("crossplane"),
     [("compositeresourcedefinitions", "apiextensions.crossplane.io", None), ("compositions", "apiextensions.crossplane.io", None),
      ("providers", "pkg.crossplane.io", None), ("customresourcedefinitions", "apiextensions.k8s.io", None)]),
    ("gpu-operator", "gpu-operator", C.default_ua("gpu-operator"),
     [("clusterpolicies", "nvidia.com", None), ("nodes", "", None), ("daemonsets", "apps", "gpu-operator")]),
    ("tekton-pipelines", "tekton-pipelines-controller", C.default_ua("controller"),
     [("taskruns", "tekton.dev", None), ("pipelineruns", "tekton.dev", None), ("pods", "", None)]),
    ("gitlab-runner", "gitlab-runner", "gitlab-runner 17.1.0 (17-1-stable; go1.22.4; linux/amd64)", []),
    ("arc-systems", "arc-gha-rs-controller", C.default_ua("manager"),
     [("autoscalingrunnersets", "actions.github.com", None), ("ephemeralrunners", "actions.github.com", None),
      ("pods", "", "arc-runners")]),
)


def act_operator_leases(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    for ns, sa, ua, lns, lname, period in LEADERS:
        who = sim.sa(ns, sa, ua)
        for t in periodic(t0, t1, period, sim.rng("le", lname).uniform(0, period)):
            em.request(t, who, "update", "leases", group=LE, ns=lns, name=lname)


def act_watchers(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    for ns, sa, ua, refl in WATCHERS:
        who = sim.sa(ns, sa, ua)
        for res, grp, wns in refl:
            wr = sim.rng("w", sa, res)
            for t in periodic(t0, t1, wr.uniform(300, 600), wr.uniform(0, 300)):
                em.request(t, who, "watch", res, group=grp, ns=wns)
            if r.random() < 0.01:  # reflector relist after "resource version too old"
                em.request(r.uniform(t0, t1), who, "list", res, group=grp, ns=wns, query="limit=500&resourceVersion=0")


def _secret_manifest(ns: str, name: str, typ: str = "Opaque") -> dict[str, Any]:
    return {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns}, "type": typ}


# --------------------------------------------------------------------------- GitOps


def act_flux(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """Flux kustomize-controller: every 10 min per Kustomization, a server-side apply dry run (dryRun=All)
    of every object, then a real apply only of what drifted. helm-controller: HelmRelease status, rare upgrades."""
    kc = sim.sa("flux-system", "kustomize-controller", C.default_ua("kustomize-controller"))
    objs = [w for w in sim.workloads if w.deployer == "flux"]
    extra = [  # cluster-scoped and RBAC objects of the infrastructure kustomizations
        ("clusterroles", "rbac.authorization.k8s.io", None, "cilium",
         {"rules": [{"apiGroups": ["cilium.io"], "resources": ["*"], "verbs": ["*"]},
                    {"apiGroups": [""], "resources": ["pods", "nodes", "namespaces"], "verbs": ["get", "list", "watch"]}]}),
        ("clusterroles", "rbac.authorization.k8s.io", None, "kyverno:admission-controller",
         {"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations",
                                                                                  "mutatingwebhookconfigurations"],
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]}),
        ("clusterrolebindings", "rbac.authorization.k8s.io", None, "cert-manager-controller-certificates",
         {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cert-manager-controller-certificates"},
          "subjects": [{"kind": "ServiceAccount", "name": "cert-manager", "namespace": "cert-manager"}]}),
        ("rolebindings", "rbac.authorization.k8s.io", "kube-system", "sealed-secrets-controller",
         {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sealed-secrets-key-admin"},
          "subjects": [{"kind": "ServiceAccount", "name": "sealed-secrets-controller", "namespace": "kube-system"}]}),
        ("validatingwebhookconfigurations", "admissionregistration.k8s.io", None, "cert-manager-webhook",
         {"webhooks": [{"name": "webhook.cert-manager.io", "clientConfig": {"service": {"name": "cert-manager-webhook",
                                                                                          "namespace": "cert-manager"}},
                        "rules": [{"apiGroups": ["cert-manager.io"], "operations": ["CREATE", "UPDATE"], "resources": ["*/*"]}],
                        "failurePolicy": "Fail", "sideEffects": "None"}]}),
        ("namespaces", "", None, "monitoring", {}),
        ("configmaps", "", "kube-system", "coredns", {"data": {"Corefile": ".:53 { errors\n health\n kubernetes cluster.local }"}}),
    ]
    for ks in range(5):
        phase = sim.rng("ks", ks).uniform(0, 600)
        mine = objs[ks::5] + extra[ks::5]
        for t in periodic(t0, t1, 600.0, phase):
            for i, o in enumerate(mine):
                tt = t + 0.05 * i
                q = "dryRun=All&fieldManager=kustomize-controller&force=true"
                if isinstance(o, C.Workload):
                    res = o.kind.lower() + "s"
                    body = o.manifest(1)
                    em.request(tt, kc, "patch", res, group="apps", ns=o.ns, name=o.name, query=q, body=body,
                               response=body)
                else:
                    res, grp, ns, name, spec = o
                    kind = {"clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding",
                            "rolebindings": "RoleBinding", "namespaces": "Namespace", "configmaps": "ConfigMap",
                            "validatingwebhookconfigurations": "ValidatingWebhookConfiguration"}[res]
                    body = {"apiVersion": f"{grp}/v1" if grp else "v1", "kind": kind,
                            "metadata": {"name": name, **({"namespace": ns} if ns else {}),
                                         "labels": {"kustomize.toolkit.fluxcd.io/name": f"infra-{ks}"}}, **spec}
                    em.request(tt, kc, "patch", res, group=grp, ns=ns, name=name, query=q, body=body, response=body)
            em.request(t + 2, kc, "patch", "kustomizations", group="kustomize.toolkit.fluxcd.io", ns="flux-system",
                       name=f"infra-{ks}", sub="status", query="fieldManager=gotk-kustomize-controller")
    src = sim.sa("flux-system", "source-controller", C.default_ua("source-controller"))
    for t in periodic(t0, t1, 60.0, 7.0):
        em.request(t, src, "patch", "gitrepositories", group="source.toolkit.fluxcd.io", ns="flux-system",
                   name="flux-system", sub="status", query="fieldManager=gotk-source-controller")
    hc = sim.sa("flux-system", "helm-controller", C.default_ua("helm-controller"))
    for t in periodic(t0, t1, 600.0, 91.0):
        for ns, rel in (("monitoring", "kube-prometheus-stack"), ("kyverno", "kyverno"), ("cert-manager", "cert-manager")):
            em.request(t, hc, "list", "secrets", ns=ns, query=f"labelSelector=name%3D{rel}%2Cowner%3Dhelm")
    for t in poisson(r, t0, t1, 0.05):  # an upgrade now and then
        ns, rel = r.choice((("monitoring", "kube-prometheus-stack"), ("kyverno", "kyverno")))
        helm_release(sim, em, t, hc, ns, rel, r)


def helm_release(sim: Sim, em: Emitter, t: float, who: Identity, ns: str, rel: str, r: random.Random) -> None:
    """One Helm upgrade: release history read, new release secret (type helm.sh/release.v1), old one superseded."""
    rev = sim.helm_rev.get(f"{ns}/{rel}", r.randint(3, 40)) + 1
    sim.helm_rev[f"{ns}/{rel}"] = rev
    em.request(t, who, "list", "secrets", ns=ns, query=f"labelSelector=name%3D{rel}%2Cowner%3Dhelm")
    em.request(t + 0.3, who, "get", "secrets", ns=ns, name=f"sh.helm.release.v1.{rel}.v{rev - 1}")
    body = _secret_manifest(ns, f"sh.helm.release.v1.{rel}.v{rev}", "helm.sh/release.v1")
    body["metadata"]["labels"] = {"name": rel, "owner": "helm", "status": "pending-upgrade", "version": str(rev)}
    em.request(t + 0.6, who, "create", "secrets", ns=ns, body=body)
    for w in [w for w in sim.workloads if w.ns == ns][:3]:
        res = w.kind.lower() + "s"
        em.request(t + 1.0, who, "get", res, group="apps", ns=ns, name=w.name)
        em.request(t + 1.1, who, "patch", res, group="apps", ns=ns, name=w.name,
                   body={"metadata": {"labels": {"helm.sh/chart": f"{rel}-{rev}"}}}, response=w.manifest(1))
    em.request(t + 3, who, "update", "secrets", ns=ns, name=f"sh.helm.release.v1.{rel}.v{rev - 1}")
    em.request(t + 3.1, who, "update", "secrets", ns=ns, name=f"sh.helm.release.v1.{rel}.v{rev}")


def rollout(sim: Sim, em: Emitter, t: float, w: C.Workload, r: random.Random) -> None:
    """A Deployment's new ReplicaSet and pods (deployment and replicaset controllers), old pods deleted."""
    if w.kind != "Deployment":
        return
    old = [p for p in sim.pods.values() if p.workload is w]
    h = C.suffix(r, 10).lower()
    sim.rs_hash[w.name] = h
    rs_name = f"{w.name}-{h}"
    rs_uid = C.stable_uid("rs", w.ns, rs_name)
    tmpl = w.template(r.randint(2, 99))
    rs = {"kind": "ReplicaSet", "apiVersion": "apps/v1",
          "metadata": {"name": rs_name, "namespace": w.ns, "ownerReferences": [owner_ref("Deployment", w.name, w.uid)]},
          "spec": {"replicas": 0, "selector": {"matchLabels": {"app.kubernetes.io/name": w.name}}, "template": tmpl}}
    em.request(t + 0.1, kcm_sa("deployment-controller"), "create", "replicasets", group="apps", ns=w.ns, body=rs,
               response=rs)
    tt = t + 0.5
    for i in range(w.replicas):
        node = sim.node_for(w, r)
        pod = sim.add_pod(f"{rs_name}-{C.suffix(r)}", w.ns, node, w.sa, w)
        tt = create_pod_by_controller(sim, em, tt, pod, tmpl, "replicaset-controller",
                                      owner_ref("ReplicaSet", rs_name, rs_uid), f"{rs_name}-")
        if i < len(old):
            delete_pod(sim, em, tt + 1, old[i], kcm_sa("replicaset-controller"))
        em.request(tt + 0.5, kcm_sa("deployment-controller"), "update", "deployments", group="apps", ns=w.ns,
                   name=w.name, sub="status", body={"kind": "Deployment", "status": {"updatedReplicas": i + 1}},
                   response={"kind": "Deployment", "status": {"updatedReplicas": i + 1}})
    for p in old[w.replicas:]:
        delete_pod(sim, em, tt + 2, p, kcm_sa("replicaset-controller"))


def act_argocd(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """Argo CD: application status every 3 min per app; syncs after commits (office hours): a server-side dry
    run then a client-side apply (strategic merge patch) of the changed Deployment, which rolls out."""
    ac = sim.sa("argocd", "argocd-application-controller", "argocd-application-controller/v2.11.3+bd60ef6 (linux/amd64)")
    apps = [w for w in sim.workloads if w.deployer == "argocd"]
    for i, ns in enumerate(sorted({w.ns for w in apps})):
        for t in periodic(t0, t1, 180.0, i * 11.0):
            em.request(t, ac, "patch", "applications", group="argoproj.io", ns="argocd", name=ns)
    rate = 6 * business_factor(t0)
    for t in poisson(r, t0, t1, rate):
        w = r.choice(apps)
        res = w.kind.lower() + "s"
        q = "dryRun=All&fieldManager=argocd-controller"
        em.request(t, ac, "patch", res, group="apps", ns=w.ns, name=w.name, query=q, body=w.manifest(2),
                   response=w.manifest(2))
        em.request(t + 0.4, ac, "patch", res, group="apps", ns=w.ns, name=w.name, query="fieldManager=argocd-controller",
                   body={"spec": {"template": w.template(2)}}, response=w.manifest(2))
        rollout(sim, em, t + 0.5, w, r)
    srv = sim.sa("argocd", "argocd-server", "argocd-server/v2.11.3+bd60ef6 (linux/amd64)")
    for t in periodic(t0, t1, 300.0, 17.0):
        em.request(t, srv, "list", "secrets", ns="argocd", query="labelSelector=argocd.argoproj.io%2Fsecret-type%3Dcluster")


def act_ci(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """GitLab runner (Kubernetes executor): per job a build pod and its secrets in gitlab-ci, attach + exec
    into it, then cleanup; deploy jobs run Helm with the deployer SA. GitHub ARC runners and Tekton TaskRuns."""
    gl = sim.sa("gitlab-runner", "gitlab-runner", "gitlab-runner 17.1.0 (17-1-stable; go1.22.4; linux/amd64)")
    rate = 12 * business_factor(t0) + 1
    for t in poisson(r, t0, t1, rate):
        name = f"runner-{C.suffix(r, 8).lower()}-project-{r.randint(100, 999)}-concurrent-{r.randint(0, 3)}-{C.suffix(r, 8).lower()}"
        ns = "gitlab-runner"  # the chart default: build pods in the runner's namespace
        sec = _secret_manifest(ns, f"{name}-reg", "kubernetes.io/dockerconfigjson")
        em.request(t, gl, "create", "secrets", ns=ns, body=sec)
        tmpl = {"metadata": {"labels": {"pod": name, "job.runner.gitlab.com/pod": name}},
                "spec": {"serviceAccountName": "default", "restartPolicy": "Never",
                         "containers": [{"name": "build", "image": r.choice((
                             "registry.corp.example/ci/builder:2024.06", "gcr.io/kaniko-project/executor:v1.23.0-debug",
                             "docker.io/library/golang:1.22", "docker.io/library/node:20-bookworm")),
                                         "command": ["sh", "-c", "if [ -x /usr/local/bin/bash ]; then\n\texec /usr/local/bin/bash \nelif [ -x /bin/sh ]; then\n\texec /bin/sh \nfi"]},
                                        {"name": "helper", "image": "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.1.0"}],
                         "imagePullSecrets": [{"name": f"{name}-reg"}]}}
        node = sim.node_for(None, r)
        pod = Pod(name, ns, node.name, "default", None, sim.pod_ip(node), C.stable_uid("pod", ns, name))
        body = {"kind": "Pod", "apiVersion": "v1", "metadata": dict(tmpl["metadata"], name=name, namespace=ns),
                "spec": tmpl["spec"]}
        em.request(t + 0.2, gl, "create", "pods", ns=ns, body=body, response=body)
        for k in range(r.randint(3, 8)):
            em.request(t + 2 + k, gl, "get", "pods", ns=ns, name=name)
        dur = r.uniform(60, 900)
        em.request(t + 10, gl, "create", "pods", ns=ns, name=name, sub="attach", duration=dur,
                   query="container=build&stdin=true&stdout=true&stderr=true")
        for k in range(r.randint(2, 5)):
            em.request(t + 12 + k * 20, gl, "create", "pods", ns=ns, name=name, sub="exec", duration=r.uniform(1, 20),
                       query="command=gitlab-runner-helper&command=cache-archiver&container=helper&stderr=true&stdout=true")
        delete_pod(sim, em, t + 12 + dur, pod, gl)
        em.request(t + 13 + dur, gl, "delete", "secrets", ns=ns, name=f"{name}-reg")
        if r.random() < 0.15 and business_factor(t) > 0:
            dep = sim.sa("gitlab-ci", "deployer", "Helm/3.15.2")
            rel_ns = r.choice(C.APP_NAMESPACES)
            helm_release(sim, em, t + 20, dep, rel_ns, rel_ns, r)
            w = next((w for w in sim.workloads if w.ns == rel_ns and w.kind == "Deployment"), None)
            if w is not None:
                rollout(sim, em, t + 22, w, r)
    # GitHub Actions Runner Controller: ephemeral runners (owned by EphemeralRunner) + kubernetes-mode job pods
    arc = sim.sa("arc-systems", "arc-gha-rs-controller", C.default_ua("manager"))
    for t in poisson(r, t0, t1, 6 * business_factor(t0) + 0.5):
        er = f"arc-runner-set-{C.suffix(r).lower()}-runner-{C.suffix(r).lower()}"
        em.request(t, arc, "create", "secrets", ns="arc-runners", body=_secret_manifest("arc-runners", er))
        body = {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": er, "namespace": "arc-runners",
                             "ownerReferences": [owner_ref("EphemeralRunner", er, C.stable_uid("er", er),
                                                           "actions.github.com/v1alpha1")]},
                "spec": {"serviceAccountName": "arc-runner-set-gha-rs-kube-mode", "restartPolicy": "Never",
                         "containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:2.317.0",
                                         "command": ["/home/runner/run.sh"]}]}}
        em.request(t + 0.3, arc, "create", "pods", ns="arc-runners", body=body, response=body)
        runner = sim.sa("arc-runners", "arc-runner-set-gha-rs-kube-mode", "kubernetes-client-node/0.20.0")
        wf = f"{er}-workflow"
        wbody = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": wf, "namespace": "arc-runners"},
                 "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "docker.io/library/python:3.12"}]}}
        em.request(t + 20, runner, "create", "pods", ns="arc-runners", body=wbody, response=wbody)
        for k in range(r.randint(2, 6)):
            em.request(t + 30 + k * 15, runner, "create", "pods", ns="arc-runners", name=wf, sub="exec",
                       duration=r.uniform(2, 60), query="command=sh&command=-e&command=%2F__w%2F_temp%2Fstep.sh&container=job&stderr=true&stdout=true")
        em.request(t + 200, runner, "delete", "pods", ns="arc-runners", name=wf)
        em.request(t + 210, arc, "delete", "pods", ns="arc-runners", name=er)
    # Tekton: TaskRun pods owned by the TaskRun, created by the Tekton controller
    tk = sim.sa("tekton-pipelines", "tekton-pipelines-controller", C.default_ua("controller"))
    for t in poisson(r, t0, t1, 3 * business_factor(t0) + 0.3):
        tr = f"build-{C.suffix(r).lower()}"
        body = {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": f"{tr}-pod", "namespace": "ci",
                             "ownerReferences": [owner_ref("TaskRun", tr, C.stable_uid("tr", tr), "tekton.dev/v1")]},
                "spec": {"serviceAccountName": "pipeline", "restartPolicy": "Never",
                         "initContainers": [{"name": "prepare", "image": "gcr.io/tekton-releases/github.com/tektoncd/pipeline/cmd/entrypoint:v0.59.0"}],
                         "containers": [{"name": "step-build", "image": "gcr.io/kaniko-project/executor:v1.23.0"}]}}
        em.request(t, tk, "create", "pods", ns="ci", body=body, response=body)
        em.request(t + 1, tk, "patch", "taskruns", group="tekton.dev", ns="ci", name=tr, sub="status")
        em.request(t + r.uniform(60, 600), kcm_sa("generic-garbage-collector"), "delete", "pods", ns="ci", name=f"{tr}-pod")
