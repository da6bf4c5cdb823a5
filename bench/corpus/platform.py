"""Platform operators: certificates and secrets, backup, monitoring, GPU, mesh, policy, autoscaling,
storage, security scanning, Crossplane (each function's docstring names what it models)."""

from __future__ import annotations

import random

from . import cluster as C
from .benign import (HOUR, Pod, Sim, create_pod_by_controller, kcm_sa, kubelet, owner_ref, periodic,
                     poisson)
from .events import Emitter, Identity
from .operators import _secret_manifest

ADM = "admissionregistration.k8s.io"


def act_secrets_operators(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """cert-manager issues/renews certificates (CertificateRequest, then the TLS secret in the app namespace);
    external-secrets refreshes synced secrets hourly; Sealed Secrets unseals new SealedSecrets."""
    cm = sim.sa("cert-manager", "cert-manager",
                "cert-manager-certificates-issuing/v1.14.5 (linux/amd64) cert-manager/d5ee8f9d")
    for t in poisson(r, t0, t1, 0.4):
        ns = r.choice(C.APP_NAMESPACES + ("ingress-nginx", "monitoring"))
        name = f"{ns}-tls"
        em.request(t, cm, "create", "certificaterequests", group="cert-manager.io", ns=ns)
        em.request(t + 4, cm, "get", "secrets", ns=ns, name=name)
        em.request(t + 4.2, cm, "update", "secrets", ns=ns, name=name)
        em.request(t + 4.5, cm, "patch", "certificates", group="cert-manager.io", ns=ns, name=name, sub="status")
    es = sim.sa("external-secrets", "external-secrets", C.default_ua("external-secrets"))
    synced = [("payments", "payments-db"), ("checkout", "cart-redis"), ("data", "warehouse-credentials"),
              ("datadog", "datadog-secret"), ("ml", "model-registry-token"), ("search", "opensearch-admin")]
    for i, (ns, name) in enumerate(synced):
        for t in periodic(t0, t1, HOUR, 97.0 * (i + 1)):
            em.request(t, es, "get", "secrets", ns=ns, name=name)
            em.request(t + 0.2, es, "update", "secrets", ns=ns, name=name)
            em.request(t + 0.3, es, "patch", "externalsecrets", group="external-secrets.io", ns=ns, name=name, sub="status")
    ss = sim.sa("kube-system", "sealed-secrets-controller", C.default_ua("controller"))
    for t in periodic(t0, t1, 600.0, 5.0):
        em.request(t, ss, "watch", "sealedsecrets", group="bitnami.com")
    for t in poisson(r, t0, t1, 0.2):
        ns = r.choice(C.APP_NAMESPACES)
        em.request(t, ss, "get", "secrets", ns="kube-system", name="sealed-secrets-keyq8m7x")
        em.request(t + 0.1, ss, "create", "secrets", ns=ns, body=_secret_manifest(ns, f"sealed-{C.suffix(r).lower()}"),
                   code=r.choice((201, 201, 409)))


def act_velero(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """Velero's nightly backup (02:00 UTC): every resource type listed cluster-wide, secrets included."""
    v = sim.sa("velero", "velero", "velero-server/v1.13.2 (linux/amd64) 4d961fb6")
    for t in periodic(t0, t1, 86400.0, 2 * HOUR):
        em.request(t, v, "create", "backups", group="velero.io", ns="velero", name=f"daily-{int(t // 86400)}")
        k = 0
        for res, grp in (("namespaces", ""), ("pods", ""), ("secrets", ""), ("configmaps", ""), ("serviceaccounts", ""),
                         ("services", ""), ("persistentvolumeclaims", ""), ("persistentvolumes", ""),
                         ("deployments", "apps"), ("statefulsets", "apps"), ("daemonsets", "apps"), ("replicasets", "apps"),
                         ("jobs", "batch"), ("cronjobs", "batch"), ("roles", "rbac.authorization.k8s.io"),
                         ("rolebindings", "rbac.authorization.k8s.io"), ("clusterroles", "rbac.authorization.k8s.io"),
                         ("clusterrolebindings", "rbac.authorization.k8s.io"), ("ingresses", "networking.k8s.io"),
                         ("customresourcedefinitions", "apiextensions.k8s.io"), ("certificates", "cert-manager.io")):
            for ns in C.ALL_NAMESPACES if res not in ("namespaces", "persistentvolumes", "clusterroles",
                                                       "clusterrolebindings", "customresourcedefinitions") else (None,):
                k += 1
                em.request(t + 2 + k * 0.05, v, "list", res, group=grp, ns=ns, query="limit=500")
        em.request(t + 300, v, "patch", "backups", group="velero.io", ns="velero", name=f"daily-{int(t // 86400)}")


def act_monitoring(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """Prometheus operator writes the Prometheus config secret and rule configmaps; Prometheus scrapes the
    apiserver's /metrics; the Grafana dashboard sidecar (kiwigrid k8s-sidecar, Python client) watches
    labelled configmaps and secrets in every namespace."""
    po = sim.sa("monitoring", "prometheus-operator", "PrometheusOperator/0.74.0")
    for t in poisson(r, t0, t1, 3):
        em.request(t, po, "get", "secrets", ns="monitoring", name="prometheus-k8s")
        em.request(t + 0.1, po, "update", "secrets", ns="monitoring", name="prometheus-k8s")
        em.request(t + 0.2, po, "update", "configmaps", ns="monitoring", name="prometheus-k8s-rulefiles-0")
        em.request(t + 0.3, po, "update", "statefulsets", group="apps", ns="monitoring", name="prometheus-k8s",
                   body={"kind": "StatefulSet", "metadata": {"name": "prometheus-k8s", "namespace": "monitoring"}},
                   response={"kind": "StatefulSet"})
    prom = sim.sa("monitoring", "prometheus-k8s", "Prometheus/2.52.0")
    for t in periodic(t0, t1, 30.0, 3.0):
        em.request(t, prom, "get", "metrics", request_uri="/metrics", level="Metadata")
    gs = sim.sa("monitoring", "grafana", "OpenAPI-Generator/29.0.0/python")
    for res, label in (("configmaps", "grafana_dashboard"), ("secrets", "grafana_datasource")):
        for t in periodic(t0, t1, 60.0, 11.0 if res == "secrets" else 41.0):
            em.request(t, gs, "watch", res, query=f"labelSelector={label}&timeoutSeconds=60", duration=60.0)


def act_gpu_mesh_policy(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """NVIDIA GPU operator reconciles its DaemonSets and labels GPU nodes; istiod publishes the root CA
    configmap per namespace and patches its injector webhook's caBundle; Kyverno writes policy reports and
    reconciles its webhook configurations; Kyverno's background controller generates per-namespace defaults."""
    gpu = sim.sa("gpu-operator", "gpu-operator", C.default_ua("gpu-operator"))
    for w in (w for w in sim.workloads if w.deployer == "operator:gpu-operator"):
        for t in periodic(t0, t1, 300.0, hash(w.name) % 300):
            em.request(t, gpu, "get", "daemonsets", group="apps", ns=w.ns, name=w.name)
        for t in poisson(r, t0, t1, 0.15):
            em.request(t, gpu, "update", "daemonsets", group="apps", ns=w.ns, name=w.name, body=w.manifest(1),
                       response=w.manifest(1))
    for node in (n for n in sim.nodes if n.gpu):
        for t in periodic(t0, t1, 600.0, 33.0):
            em.request(t, gpu, "patch", "nodes", name=node.name,
                       body={"metadata": {"labels": {"nvidia.com/gpu.deploy.driver": "true"}}},
                       response={"kind": "Node", "metadata": {"name": node.name}})
    istiod = sim.sa("istio-system", "istiod", "pilot-discovery/1.22.1")
    for t in poisson(r, t0, t1, 0.1):
        ns = r.choice(C.ALL_NAMESPACES)
        em.request(t, istiod, "update", "configmaps", ns=ns, name="istio-ca-root-cert")
    for t in poisson(r, t0, t1, 0.05):  # istiod restart / cert rotation: the webhook patcher
        em.request(t, istiod, "patch", "mutatingwebhookconfigurations", group=ADM, name="istio-sidecar-injector",
                   body={"webhooks": [{"name": "namespace.sidecar-injector.istio.io",
                                       "clientConfig": {"caBundle": "LS0tLS1CRUdJTi...=="}}]},
                   response={"kind": "MutatingWebhookConfiguration", "metadata": {"name": "istio-sidecar-injector"}})
        em.request(t + 0.2, istiod, "patch", "validatingwebhookconfigurations", group=ADM,
                   name="istio-validator-istio-system",
                   body={"webhooks": [{"name": "rev.validation.istio.io", "failurePolicy": "Fail",
                                       "clientConfig": {"caBundle": "LS0tLS1CRUdJTi...=="}}]},
                   response={"kind": "ValidatingWebhookConfiguration"})
    ky = sim.sa("kyverno", "kyverno-admission-controller", C.default_ua("kyverno"))
    for t in poisson(r, t0, t1, 0.2):
        for name in ("kyverno-resource-validating-webhook-cfg", "kyverno-policy-validating-webhook-cfg"):
            em.request(t, ky, "update", "validatingwebhookconfigurations", group=ADM, name=name,
                       body={"kind": "ValidatingWebhookConfiguration", "metadata": {"name": name},
                             "webhooks": [{"name": "validate.kyverno.svc-fail",
                                           "clientConfig": {"service": {"name": "kyverno-svc", "namespace": "kyverno",
                                                                        "path": "/validate/fail"}},
                                           "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                      "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}]}]},
                       response={"kind": "ValidatingWebhookConfiguration", "metadata": {"name": name}})
        em.request(t + 0.2, ky, "update", "mutatingwebhookconfigurations", group=ADM,
                   name="kyverno-resource-mutating-webhook-cfg",
                   body={"kind": "MutatingWebhookConfiguration",
                         "metadata": {"name": "kyverno-resource-mutating-webhook-cfg"},
                         "webhooks": [{"name": "mutate.kyverno.svc-fail",
                                       "clientConfig": {"service": {"name": "kyverno-svc", "namespace": "kyverno"}}}]},
                   response={"kind": "MutatingWebhookConfiguration"})
    rep = sim.sa("kyverno", "kyverno-reports-controller", C.default_ua("reports-controller"))
    for t in poisson(r, t0, t1, 60):
        ns = r.choice(C.APP_NAMESPACES)
        em.request(t, rep, r.choice(("create", "update", "delete")), "policyreports", group="wgpolicyk8s.io", ns=ns,
                   name=C.stable_uid("pr", str(int(t)))[:36])
    bg = sim.sa("kyverno", "kyverno-background-controller", C.default_ua("background-controller"))
    for t in poisson(r, t0, t1, 0.5):  # generate rule re-sync: default-deny NetworkPolicy and a view RoleBinding
        ns = r.choice(C.APP_NAMESPACES)
        em.request(t, bg, "update", "networkpolicies", group="networking.k8s.io", ns=ns, name="default-deny",
                   body={"kind": "NetworkPolicy", "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
                   response={"kind": "NetworkPolicy"})
        rb = {"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
              "metadata": {"name": "team-view", "namespace": ns, "labels": {"generate.kyverno.io/policy-name": "team-rbac"}},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
              "subjects": [{"kind": "Group", "name": f"oidc:{ns}-devs", "apiGroup": "rbac.authorization.k8s.io"}]}
        em.request(t + 0.1, bg, "update", "rolebindings", group="rbac.authorization.k8s.io", ns=ns, name="team-view",
                   body=rb, response=rb)


def act_nodes(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """Karpenter consolidation and scale-out: NodeClaims, new nodes joining (CSR approved by the controller
    manager, kubelet registers, DaemonSets place their pods), evictions and node deletion."""
    kp = sim.sa("kube-system", "karpenter", C.default_ua("controller"))
    for t in poisson(r, t0, t1, 0.25):
        sim.node_seq += 1
        i = 100 + sim.node_seq % 120
        node = C.Node(f"ip-10-0-{1 + i % 3}-{i}.eu-west-1.compute.internal", f"10.0.{1 + i % 3}.{i}", i)
        claim = f"general-{C.suffix(r).lower()}"
        em.request(t, kp, "create", "nodeclaims", group="karpenter.sh", name=claim)
        tj = t + r.uniform(60, 120)
        boot = Identity(f"system:bootstrap:{C.suffix(r, 6).lower()}", ("system:bootstrappers", "system:bootstrappers:worker",
                                                                       "system:authenticated"), (node.ip,),
                        C.kube_ua("kubelet"))
        csr = f"csr-{C.suffix(r).lower()}"
        em.request(tj, boot, "create", "certificatesigningrequests", group="certificates.k8s.io",
                   body={"kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1",
                         "metadata": {"generateName": "csr-"},
                         "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                                  "usages": ["digital signature", "client auth"],
                                  "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"}},
                   response={"kind": "CertificateSigningRequest", "metadata": {"name": csr}})
        em.request(tj + 0.5, kcm_sa("certificate-controller"), "update", "certificatesigningrequests",
                   group="certificates.k8s.io", name=csr, sub="approval",
                   body={"kind": "CertificateSigningRequest", "status": {"conditions": [
                       {"type": "Approved", "status": "True", "reason": "AutoApproved",
                        "message": "Auto approving kubelet client certificate after SubjectAccessReview."}]}},
                   response={"kind": "CertificateSigningRequest"})
        em.request(tj + 2, kubelet(node), "create", "nodes",
                   body={"kind": "Node", "apiVersion": "v1", "metadata": {"name": node.name, "labels": {
                       "karpenter.sh/nodepool": "general", "kubernetes.io/hostname": node.name}}},
                   response={"kind": "Node", "metadata": {"name": node.name}})
        sim.nodes.append(node)
        tt = tj + 5
        for w in (w for w in sim.workloads if w.kind == "DaemonSet" and not w.gpu):
            pod = sim.add_pod(f"{w.name}-{C.suffix(r)}", w.ns, node, w.sa, w)
            tt = create_pod_by_controller(sim, em, tt, pod, w.template(1), "daemon-set-controller",
                                          owner_ref("DaemonSet", w.name, w.uid), f"{w.name}-")
    general = [n for n in sim.nodes if n.pool == "general" and not n.gpu]
    if len(general) > 6 and r.random() < 0.25:
        node = r.choice(general[3:])
        t = r.uniform(t0, t1)
        em.request(t, kp, "patch", "nodes", name=node.name,
                   body={"spec": {"taints": [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]}},
                   response={"kind": "Node"})
        for k, p in enumerate([p for p in sim.pods.values() if p.node == node.name]):
            if p.workload is not None and p.workload.kind == "DaemonSet":
                continue
            em.request(t + 1 + k * 0.2, kp, "create", "pods", ns=p.ns, name=p.name, sub="eviction",
                       body={"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": p.name, "namespace": p.ns}})
            sim.pods.pop((p.ns, p.name), None)
        em.request(t + 90, kp, "delete", "nodes", name=node.name, response={"kind": "Node"})
        for p in [p for p in sim.pods.values() if p.node == node.name]:
            sim.pods.pop((p.ns, p.name), None)
        sim.nodes.remove(node)


def act_cluster_services(sim: Sim, em: Emitter, t0: float, t1: float, r: random.Random) -> None:
    """metrics-server's delegated authn/authz, the EBS CSI controller's attach/provision, Datadog's cluster
    agent, Trivy operator scan jobs (and its node-collector), Crossplane's RBAC manager."""
    ms = sim.sa("kube-system", "metrics-server", "metrics-server/v0.7.1 (linux/amd64) kubernetes/$Format")
    for t in periodic(t0, t1, 15.0, 2.0):
        em.request(t, ms, "create", "subjectaccessreviews", group="authorization.k8s.io")
    for t in periodic(t0, t1, 60.0, 9.0):
        em.request(t, ms, "create", "tokenreviews", group="authentication.k8s.io")
    csi = sim.sa("kube-system", "ebs-csi-controller-sa", "csi-attacher/v4.5.1 (linux/amd64) kubernetes/$Format")
    for t in poisson(r, t0, t1, 2):
        va = f"csi-{C.stable_uid('va', str(int(t)))[:32].replace('-', '')}"
        em.request(t, csi, "patch", "volumeattachments", group="storage.k8s.io", name=va, sub="status",
                   body={"status": {"attached": True}}, response={"kind": "VolumeAttachment"})
    dd = sim.sa("datadog", "datadog-cluster-agent", "datadog-cluster-agent/7.54.0 (linux/amd64) kubernetes/$Format")
    for t in periodic(t0, t1, 300.0, 21.0):
        em.request(t, dd, "get", "configmaps", ns="datadog", name="datadog-cluster-id")
        em.request(t + 0.1, dd, "get", "namespaces", ns="kube-system")
    for t in periodic(t0, t1, 60.0, 51.0):
        em.request(t, dd, "list", "nodes", query="limit=500")
    tv = sim.sa("trivy-system", "trivy-operator", C.default_ua("trivy-operator"))
    apps = [w for w in sim.workloads if w.ns in C.APP_NAMESPACES]
    for t in poisson(r, t0, t1, 1.0):
        w = r.choice(apps)
        job = f"scan-vulnerabilityreport-{C.suffix(r, 10).lower()}"
        for _s in (w.env_from_secret,) if w.env_from_secret and r.random() < 0.3 else ():
            em.request(t, tv, "get", "serviceaccounts", ns=w.ns, name=w.sa)
        em.request(t + 0.2, tv, "create", "secrets", ns="trivy-system", body=_secret_manifest("trivy-system", f"{job}-regcred"))
        tmpl = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "trivy-operator"}},
                "spec": {"serviceAccountName": "trivy-operator", "restartPolicy": "Never",
                         "containers": [{"name": w.name, "image": "ghcr.io/aquasecurity/trivy:0.52.2",
                                         "args": ["image", "--slow", w.images[0]],
                                         "securityContext": {"privileged": False, "readOnlyRootFilesystem": True,
                                                             "capabilities": {"drop": ["ALL"]}}}]}}
        jobobj = {"kind": "Job", "apiVersion": "batch/v1",
                  "metadata": {"name": job, "namespace": "trivy-system",
                               "labels": {"app.kubernetes.io/managed-by": "trivy-operator"}},
                  "spec": {"backoffLimit": 0, "template": tmpl}}
        em.request(t + 0.4, tv, "create", "jobs", group="batch", ns="trivy-system", body=jobobj, response=jobobj)
        node = sim.node_for(None, r)
        pod = Pod(f"{job}-{C.suffix(r)}", "trivy-system", node.name, "trivy-operator", None, sim.pod_ip(node),
                  C.stable_uid("pod", job))
        create_pod_by_controller(sim, em, t + 0.6, pod, tmpl, "job-controller",
                                 owner_ref("Job", job, C.stable_uid("job", job), "batch/v1"), f"{job}-")
        em.request(t + r.uniform(30, 120), tv, "get", "pods", ns="trivy-system", name=pod.name, sub="log")
        em.request(t + 130, tv, "create", "vulnerabilityreports", group="aquasecurity.github.io", ns=w.ns)
        em.request(t + 131, tv, "delete", "jobs", group="batch", ns="trivy-system", name=job,
                   body={"kind": "DeleteOptions", "propagationPolicy": "Background"}, response={"kind": "Job"})
    for t in periodic(t0, t1, 86400.0, 4 * HOUR):  # node-collector (CIS benchmark) once a day per node
        for node in [n for n in sim.nodes if n.pool != "control-plane"][:6]:
            job = f"node-collector-{C.suffix(r, 9).lower()}"
            tmpl = {"spec": {"serviceAccountName": "trivy-operator", "hostPID": True, "restartPolicy": "Never",
                             "nodeSelector": {"kubernetes.io/hostname": node.name},
                             "containers": [{"name": "node-collector", "image": "ghcr.io/aquasecurity/node-collector:0.2.1",
                                             "volumeMounts": [{"name": "var-lib-kubelet", "mountPath": "/var/lib/kubelet", "readOnly": True},
                                                              {"name": "etc-kubernetes", "mountPath": "/etc/kubernetes", "readOnly": True}]}],
                             "volumes": [{"name": "var-lib-kubelet", "hostPath": {"path": "/var/lib/kubelet"}},
                                         {"name": "etc-kubernetes", "hostPath": {"path": "/etc/kubernetes"}},
                                         {"name": "etc-systemd", "hostPath": {"path": "/etc/systemd"}}]}}
            jobobj = {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": job, "namespace": "trivy-system"},
                      "spec": {"template": tmpl}}
            em.request(t, tv, "create", "jobs", group="batch", ns="trivy-system", body=jobobj, response=jobobj)
            pod = Pod(f"{job}-{C.suffix(r)}", "trivy-system", node.name, "trivy-operator", None, sim.pod_ip(node),
                      C.stable_uid("pod", job))
            create_pod_by_controller(sim, em, t + 0.3, pod, tmpl, "job-controller",
                                     owner_ref("Job", job, C.stable_uid("job", job), "batch/v1"), f"{job}-")
            t += 20
    rbm = sim.sa("crossplane-system", "rbac-manager", C.default_ua("crossplane"))
    for t in poisson(r, t0, t1, 0.1):  # a provider revision or XRD changed: the RBAC manager refreshes its roles
        prov = r.choice(("provider-aws-s3", "provider-aws-rds", "provider-kubernetes"))
        name = f"crossplane:provider:{prov}-{C.suffix(r, 12).lower()}:system"
        cr = {"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": name},
              "rules": [{"apiGroups": ["s3.aws.upbound.io"], "resources": ["*"], "verbs": ["*"]},
                        {"apiGroups": [""], "resources": ["secrets", "configmaps", "events"],
                         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}
        em.request(t, rbm, "update", "clusterroles", group="rbac.authorization.k8s.io", name=name, body=cr, response=cr)
        crb = {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": prov, "namespace": "crossplane-system"}]}
        em.request(t + 0.1, rbm, "update", "clusterrolebindings", group="rbac.authorization.k8s.io", name=name,
                   body=crb, response=crb)
