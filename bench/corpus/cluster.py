"""The simulated production cluster: nodes, namespaces, workloads and their pod templates (pure data).

Names and shapes follow what the real components ship (their Helm charts / manifests): service accounts,
namespaces, host access of node agents, owner references of controller-made objects.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

K8S = "v1.30.4"
K8S_COMMIT = "a51b3b7"
CP_IPS = ("10.0.0.10", "10.0.0.11", "10.0.0.12")
VPN_EGRESS = ("203.0.113.10", "203.0.113.11", "2001:db8:4a1::10")


def kube_ua(component: str, suffix: str = "") -> str:
    return f"{component}/{K8S} (linux/amd64) kubernetes/{K8S_COMMIT}" + (f"/{suffix}" if suffix else "")


def default_ua(binary: str) -> str:
    """client-go's default user agent for a binary built without version stamping (controller-runtime)."""
    return f"{binary}/v0.0.0 (linux/amd64) kubernetes/$Format"


def stable_uid(*parts: str) -> str:
    h = hashlib.sha256(":".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def suffix(r: random.Random, n: int = 5) -> str:
    return "".join(r.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


@dataclass(slots=True)
class Node:
    name: str
    ip: str
    index: int
    pool: str = "general"
    gpu: bool = False


@dataclass(slots=True)
class Workload:
    """A controller-owned workload: kind, where, its pod template and who deploys it."""

    kind: str  # Deployment | DaemonSet | StatefulSet
    ns: str
    name: str
    sa: str
    images: tuple[str, ...]
    replicas: int = 2
    host: dict[str, Any] = field(default_factory=dict)  # privileged, hostNetwork, hostPID, hostPaths, caps
    deployer: str = "argocd"  # argocd | flux | helm | operator:<sa> | kube-system
    env_from_secret: str | None = None
    configmaps: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    gpu: bool = False

    @property
    def uid(self) -> str:
        return stable_uid(self.kind, self.ns, self.name)

    def template(self, rev: int = 1) -> dict[str, Any]:
        """spec.template as the deployer sends it."""
        h = self.host
        containers = []
        for i, img in enumerate(self.images):
            c: dict[str, Any] = {"name": img.rsplit("/", 1)[-1].split(":")[0] if i else self.name, "image": img,
                                 "imagePullPolicy": "IfNotPresent",
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
            sc: dict[str, Any] = {}
            if h.get("privileged") and i == 0:
                sc["privileged"] = True
            if h.get("caps") and i == 0:
                sc["capabilities"] = {"add": list(h["caps"]), "drop": ["ALL"] if not h.get("privileged") else []}
                if not sc["capabilities"]["drop"]:
                    del sc["capabilities"]["drop"]
            if not h:
                sc.update({"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                           "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}})
            if sc:
                c["securityContext"] = sc
            mounts = [{"name": f"host-{j}", "mountPath": p, **({"readOnly": True} if ro else {})}
                      for j, (p, ro) in enumerate(h.get("hostPaths", ())) if i == 0]
            mounts += [{"name": cm, "mountPath": f"/etc/{cm}"} for cm in self.configmaps]
            if mounts:
                c["volumeMounts"] = mounts
            if self.env_from_secret and i == 0:
                c["envFrom"] = [{"secretRef": {"name": self.env_from_secret}}]
            if self.gpu and i == 0:
                c["resources"]["limits"] = {"nvidia.com/gpu": "1"}
            containers.append(c)
        spec: dict[str, Any] = {"serviceAccountName": self.sa, "containers": containers}
        vols = [{"name": f"host-{j}", "hostPath": {"path": p, "type": ""}}
                for j, (p, _ro) in enumerate(h.get("hostPaths", ()))]
        vols += [{"name": cm, "configMap": {"name": cm}} for cm in self.configmaps]
        vols += [{"name": s, "secret": {"secretName": s}} for s in self.secrets]
        if vols:
            spec["volumes"] = vols
        for k in ("hostNetwork", "hostPID", "hostIPC"):
            if h.get(k):
                spec[k] = True
        if h.get("hostNetwork"):
            spec["dnsPolicy"] = "ClusterFirstWithHostNet"
        if self.kind == "DaemonSet":
            spec["tolerations"] = [{"operator": "Exists"}]
            spec["priorityClassName"] = "system-node-critical" if self.ns == "kube-system" else "system-cluster-critical"
        if self.gpu:
            spec["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
        labels = {"app.kubernetes.io/name": self.name, "app.kubernetes.io/instance": self.name}
        meta: dict[str, Any] = {"labels": labels, "creationTimestamp": None}
        if rev > 1:
            meta["annotations"] = {"kubectl.kubernetes.io/restartedAt": f"rev-{rev}"}
        return {"metadata": meta, "spec": spec}

    def manifest(self, rev: int = 1) -> dict[str, Any]:
        labels = {"app.kubernetes.io/name": self.name, "app.kubernetes.io/instance": self.name}
        if self.deployer == "argocd":
            labels["argocd.argoproj.io/instance"] = self.ns
        elif self.deployer in ("flux", "helm"):
            labels["app.kubernetes.io/managed-by"] = "Helm"
        spec: dict[str, Any] = {"selector": {"matchLabels": {"app.kubernetes.io/name": self.name}},
                                "template": self.template(rev)}
        if self.kind != "DaemonSet":
            spec["replicas"] = self.replicas
        if self.kind == "StatefulSet":
            spec["serviceName"] = self.name
        return {"apiVersion": "apps/v1", "kind": self.kind,
                "metadata": {"name": self.name, "namespace": self.ns, "labels": labels}, "spec": spec}


def workloads() -> list[Workload]:
    """Every workload of the simulated cluster (apps, operators and node agents)."""
    W = Workload
    ro, rw = True, False
    return [
        # --- node agents (DaemonSets with host access, as their charts ship them)
        W("DaemonSet", "kube-system", "cilium", "cilium", ("quay.io/cilium/cilium:v1.15.6",),
          host={"privileged": True, "hostNetwork": True,
                "hostPaths": (("/sys/fs/bpf", rw), ("/proc", rw), ("/run/cilium/cgroupv2", rw), ("/opt/cni/bin", rw),
                              ("/etc/cni/net.d", rw), ("/lib/modules", ro))}, deployer="flux"),
        W("DaemonSet", "kube-system", "kube-proxy", "kube-proxy", ("registry.k8s.io/kube-proxy:v1.30.4",),
          host={"privileged": True, "hostNetwork": True, "hostPaths": (("/run/xtables.lock", rw), ("/lib/modules", ro))},
          deployer="kube-system", configmaps=("kube-proxy",)),
        W("DaemonSet", "kube-system", "ebs-csi-node", "ebs-csi-node-sa",
          ("public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.31.0",
           "public.ecr.aws/eks-distro/kubernetes-csi/node-driver-registrar:v2.10.1"),
          host={"privileged": True, "hostPaths": (("/var/lib/kubelet", rw), ("/dev", rw), ("/etc/selinux", ro))},
          deployer="flux"),
        W("DaemonSet", "monitoring", "node-exporter", "node-exporter", ("quay.io/prometheus/node-exporter:v1.8.1",),
          host={"hostNetwork": True, "hostPID": True, "hostPaths": (("/", ro), ("/proc", ro), ("/sys", ro))},
          deployer="flux"),
        W("DaemonSet", "datadog", "datadog-agent", "datadog-agent",
          ("gcr.io/datadoghq/agent:7.54.0", "gcr.io/datadoghq/agent:7.54.0"),
          host={"hostPaths": (("/var/run/containerd/containerd.sock", ro), ("/proc", ro), ("/sys/fs/cgroup", ro),
                              ("/var/log/pods", ro))}, deployer="helm", env_from_secret="datadog-secret"),
        W("DaemonSet", "logging", "fluent-bit", "fluent-bit", ("cr.fluentbit.io/fluent/fluent-bit:3.0.7",),
          host={"hostPaths": (("/var/log", ro), ("/var/lib/containerd", ro))}, deployer="argocd",
          configmaps=("fluent-bit",)),
        W("DaemonSet", "gpu-operator", "nvidia-driver-daemonset", "nvidia-driver",
          ("nvcr.io/nvidia/driver:550.90.07-ubuntu22.04",),
          host={"privileged": True, "hostPID": True, "hostPaths": (("/run/nvidia", rw), ("/var/log", rw),
                                                                  ("/dev/log", rw), ("/host-etc/os-release", ro))},
          deployer="operator:gpu-operator", gpu=True),
        W("DaemonSet", "gpu-operator", "nvidia-device-plugin-daemonset", "nvidia-device-plugin",
          ("nvcr.io/nvidia/k8s-device-plugin:v0.15.0",),
          host={"privileged": True, "hostPaths": (("/var/lib/kubelet/device-plugins", rw), ("/run/nvidia", rw))},
          deployer="operator:gpu-operator", gpu=True),
        W("DaemonSet", "velero", "node-agent", "velero", ("velero/velero:v1.13.2",),
          host={"privileged": True, "hostPaths": (("/var/lib/kubelet/pods", rw), ("/var/lib/kubelet/plugins", rw))},
          deployer="helm"),
        # --- operators and platform services
        W("Deployment", "argocd", "argocd-server", "argocd-server", ("quay.io/argoproj/argocd:v2.11.3",), 2),
        W("StatefulSet", "argocd", "argocd-application-controller", "argocd-application-controller",
          ("quay.io/argoproj/argocd:v2.11.3",), 1),
        W("Deployment", "argocd", "argocd-repo-server", "argocd-repo-server", ("quay.io/argoproj/argocd:v2.11.3",), 2),
        W("Deployment", "flux-system", "kustomize-controller", "kustomize-controller",
          ("ghcr.io/fluxcd/kustomize-controller:v1.3.0",), 1, deployer="flux"),
        W("Deployment", "flux-system", "helm-controller", "helm-controller", ("ghcr.io/fluxcd/helm-controller:v1.0.1",),
          1, deployer="flux"),
        W("Deployment", "cert-manager", "cert-manager", "cert-manager", ("quay.io/jetstack/cert-manager-controller:v1.14.5",),
          1, deployer="flux"),
        W("Deployment", "cert-manager", "cert-manager-cainjector", "cert-manager-cainjector",
          ("quay.io/jetstack/cert-manager-cainjector:v1.14.5",), 1, deployer="flux"),
        W("Deployment", "external-secrets", "external-secrets", "external-secrets",
          ("ghcr.io/external-secrets/external-secrets:v0.9.19",), 1, deployer="flux"),
        W("Deployment", "kube-system", "sealed-secrets-controller", "sealed-secrets-controller",
          ("docker.io/bitnami/sealed-secrets-controller:0.27.0",), 1, deployer="flux"),
        W("Deployment", "velero", "velero", "velero", ("velero/velero:v1.13.2",), 1, deployer="helm"),
        W("Deployment", "monitoring", "prometheus-operator", "prometheus-operator",
          ("quay.io/prometheus-operator/prometheus-operator:v0.74.0",), 1, deployer="flux"),
        W("Deployment", "monitoring", "kube-state-metrics", "kube-state-metrics",
          ("registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.12.0",), 1, deployer="flux"),
        W("Deployment", "monitoring", "grafana", "grafana",
          ("docker.io/grafana/grafana:11.0.0", "quay.io/kiwigrid/k8s-sidecar:1.27.4"), 1, deployer="flux"),
        W("Deployment", "gpu-operator", "gpu-operator", "gpu-operator", ("nvcr.io/nvidia/gpu-operator:v24.3.0",), 1,
          deployer="helm"),
        W("Deployment", "istio-system", "istiod", "istiod", ("docker.io/istio/pilot:1.22.1",), 2, deployer="helm"),
        W("Deployment", "kyverno", "kyverno-admission-controller", "kyverno-admission-controller",
          ("ghcr.io/kyverno/kyverno:v1.12.4",), 3, deployer="flux"),
        W("Deployment", "kyverno", "kyverno-background-controller", "kyverno-background-controller",
          ("ghcr.io/kyverno/background-controller:v1.12.4",), 1, deployer="flux"),
        W("Deployment", "gitlab-runner", "gitlab-runner", "gitlab-runner",
          ("registry.gitlab.com/gitlab-org/gitlab-runner:alpine-v17.1.0",), 1, deployer="helm"),
        W("Deployment", "arc-systems", "arc-gha-rs-controller", "arc-gha-rs-controller",
          ("ghcr.io/actions/gha-runner-scale-set-controller:0.9.3",), 1, deployer="helm"),
        W("Deployment", "tekton-pipelines", "tekton-pipelines-controller", "tekton-pipelines-controller",
          ("gcr.io/tekton-releases/github.com/tektoncd/pipeline/cmd/controller:v0.59.0",), 1, deployer="flux"),
        W("Deployment", "kube-system", "karpenter", "karpenter", ("public.ecr.aws/karpenter/controller:0.37.0",), 2,
          deployer="helm"),
        W("Deployment", "kube-system", "metrics-server", "metrics-server",
          ("registry.k8s.io/metrics-server/metrics-server:v0.7.1",), 2, deployer="flux"),
        W("Deployment", "kube-system", "ebs-csi-controller", "ebs-csi-controller-sa",
          ("public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.31.0",
           "public.ecr.aws/eks-distro/kubernetes-csi/external-provisioner:v4.0.1",
           "public.ecr.aws/eks-distro/kubernetes-csi/external-attacher:v4.5.1"), 2, deployer="flux"),
        W("Deployment", "kube-system", "coredns", "coredns", ("registry.k8s.io/coredns/coredns:v1.11.1",), 2,
          deployer="kube-system", configmaps=("coredns",)),
        W("Deployment", "datadog", "datadog-cluster-agent", "datadog-cluster-agent",
          ("gcr.io/datadoghq/cluster-agent:7.54.0",), 1, deployer="helm", env_from_secret="datadog-secret"),
        W("Deployment", "trivy-system", "trivy-operator", "trivy-operator",
          ("ghcr.io/aquasecurity/trivy-operator:0.21.3",), 1, deployer="helm"),
        W("Deployment", "crossplane-system", "crossplane", "crossplane", ("xpkg.upbound.io/crossplane/crossplane:v1.16.0",),
          1, deployer="helm"),
        W("Deployment", "crossplane-system", "crossplane-rbac-manager", "rbac-manager",
          ("xpkg.upbound.io/crossplane/crossplane:v1.16.0",), 1, deployer="helm"),
        W("Deployment", "ingress-nginx", "ingress-nginx-controller", "ingress-nginx",
          ("registry.k8s.io/ingress-nginx/controller:v1.10.1",), 3, host={"caps": ("NET_BIND_SERVICE",)},
          deployer="argocd"),
        # --- the business's own applications
        W("Deployment", "payments", "payments-api", "payments-api", ("registry.corp.example/payments/api:4.12.0",), 6,
          env_from_secret="payments-db", configmaps=("payments-config",)),
        W("Deployment", "payments", "payments-worker", "payments-worker",
          ("registry.corp.example/payments/worker:4.12.0",), 3, env_from_secret="payments-db"),
        W("Deployment", "checkout", "checkout-web", "default", ("registry.corp.example/checkout/web:2.31.4",), 8,
          configmaps=("checkout-config",)),
        W("Deployment", "checkout", "cart", "cart", ("registry.corp.example/checkout/cart:2.31.4",), 4,
          env_from_secret="cart-redis"),
        W("StatefulSet", "checkout", "redis", "default", ("docker.io/bitnami/redis:7.2.5",), 3, deployer="helm"),
        W("Deployment", "search", "search-query", "search", ("registry.corp.example/search/query:1.8.2",), 4),
        W("StatefulSet", "search", "opensearch", "opensearch", ("opensearchproject/opensearch:2.15.0",), 3,
          deployer="helm"),
        W("Deployment", "web", "frontend", "frontend", ("registry.corp.example/web/frontend:9.2.1",), 6,
          configmaps=("frontend-config",)),
        W("Deployment", "ml", "inference", "inference", ("registry.corp.example/ml/inference:0.14.0",), 2, gpu=True),
        W("Deployment", "data", "etl-scheduler", "etl", ("registry.corp.example/data/etl:3.3.0",), 1,
          env_from_secret="warehouse-credentials"),
    ]


APP_NAMESPACES = ("payments", "checkout", "search", "web", "ml", "data")
PLATFORM_NAMESPACES = ("argocd", "flux-system", "cert-manager", "external-secrets", "velero", "monitoring",
                       "gpu-operator", "istio-system", "kyverno", "gitlab-runner", "gitlab-ci", "arc-systems",
                       "arc-runners", "tekton-pipelines", "ci", "datadog", "trivy-system", "crossplane-system",
                       "ingress-nginx", "logging")
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "default")
ALL_NAMESPACES = SYSTEM_NAMESPACES + PLATFORM_NAMESPACES + APP_NAMESPACES

CRONJOBS = (  # (ns, name, schedule minutes-of-day or period, image)
    ("data", "nightly-export", "daily:01:30", "registry.corp.example/data/etl:3.3.0"),
    ("data", "hourly-rollup", "hourly:05", "registry.corp.example/data/etl:3.3.0"),
    ("payments", "reconcile-ledger", "hourly:20", "registry.corp.example/payments/worker:4.12.0"),
    ("search", "reindex", "daily:03:00", "registry.corp.example/search/query:1.8.2"),
    ("monitoring", "blackbox-probe-report", "every:15", "registry.corp.example/sre/probe:1.0.3"),
)

HUMANS = (  # (username, groups, role, tool preferences)
    ("maria.schmidt@corp.example", ("oidc:platform-team",), "sre"),
    ("jonas.weber@corp.example", ("oidc:platform-team",), "sre"),
    ("lea.fischer@corp.example", ("oidc:platform-team", "oidc:oncall"), "sre"),
    ("tom.becker@corp.example", ("oidc:payments-devs",), "dev"),
    ("sara.koch@corp.example", ("oidc:payments-devs",), "dev"),
    ("ali.yilmaz@corp.example", ("oidc:checkout-devs",), "dev"),
    ("nina.wolf@corp.example", ("oidc:checkout-devs",), "dev"),
    ("paul.richter@corp.example", ("oidc:search-devs",), "dev"),
    ("emma.hoffmann@corp.example", ("oidc:data-team",), "dev"),
    ("lukas.klein@corp.example", ("oidc:ml-team",), "dev"),
    ("ines.braun@corp.example", ("oidc:security",), "security"),
)
HUMAN_NAMESPACES = {"oidc:payments-devs": ("payments",), "oidc:checkout-devs": ("checkout", "web"),
                    "oidc:search-devs": ("search",), "oidc:data-team": ("data",), "oidc:ml-team": ("ml",)}
HUMAN_TOOLS = (
    ("kubectl/v1.30.2 (darwin/arm64) kubernetes/3968350", 5),
    ("kubectl/v1.29.6 (linux/amd64) kubernetes/062798d", 2),
    ("k9s/v0.32.5 (darwin/arm64) kubernetes/$Format", 3),
    ("Lens/2024.6.261308-latest", 1),
)
