"""The one declaration of how a raw audit Event becomes an indexed document.

The three executions are derived from the tables below (design decision 4):

* ``kaudit_elk.events.normalize`` (client side: ``ingest``, ``serve``, ``scan``) walks them in Python;
* the native fast path (``native/``) is built from them as one JSON object (``fastpath.native_spec``);
* ``kaudit_elk.events.pipeline`` hands them to one painless script (``index_templates/
  audit-pipeline-normalize.painless``) as ``params``, so the server-side ingest pipeline reads the same
  copy list, verb/category tables and pod-spec locations.

The index template generator reads :data:`TYPED_FIELDS` (dotted name -> mapping type),
:data:`FLAT_FIELDS` (whole sub-trees mapped ``flattened`` on Elasticsearch / ``flat_object`` on
OpenSearch) and :data:`KEYWORD_OBJECTS` (objects whose dedotted keys map as ``keyword``).
Anything else in ``_source`` (legacy ``timestamp``/``metadata``, vendor extras) is kept but not
indexed (``dynamic: false``).

Document shape, in short:

``kubernetes.audit.*``
    The raw Event with its own field names, as Elastic's integration stores them. Annotation keys
    are dedotted (``.`` -> ``_``, as Elastic does); ``user.extra`` / ``impersonatedUser.extra`` keys
    keep their dots (as Elastic does: ``authentication.kubernetes.io/pod-name`` is the path
    ``authentication`` > ``kubernetes`` > ``io/pod-name``), except a key the engine could not place,
    which is dedotted (see :data:`DOTTED_KEY_OBJECTS`);
    ``metadata.managedFields`` is removed from both bodies; a body that is not a JSON object
    (a JSON-Patch array) is wrapped as ``{"json_patch": [...]}`` (any other scalar as
    ``{"value": ...}``) so the flattened mapping always gets an object.
``kaudit.*``
    Typed copies of security-relevant body paths (see :data:`KAUDIT_FIELDS`), extracted before
    any truncation so that they survive it.
``data_stream.*``
    ``type: logs``, ``dataset: kubernetes.audit_logs``, ``namespace``: the stream's namespace
    (``NormalizeOptions.namespace``; the server-side pipeline gets it from its stream's bootstrap).
    Elastic's rules filter on ``data_stream.dataset`` and report ``data_stream.namespace``.
ECS
    ``@timestamp``, ``event.*``, ``user.*``, ``source.ip``, ``related.*``, ``url.*``,
    ``http.response.status_code``, ``user_agent.original``, ``orchestrator.*``, ``cloud.provider``.

Decisions (written down because rules and dashboards depend on them):

* ``@timestamp`` = ``requestReceivedTimestamp``, falling back to ``stageTimestamp``, the legacy
  v1beta1 ``timestamp``, then ``metadata.creationTimestamp``. All dates are rewritten to
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds); a timestamp without a zone is UTC.
  ``event.start``/``event.end`` are request/stage time, ``event.duration`` is their
  difference in nanoseconds.
* ``source.ip`` = the first *valid* IP of ``sourceIPs`` (the originating client as the apiserver
  saw it; note that leading entries come from ``X-Forwarded-For``); ``related.ip`` = every valid
  IP. Strings that are not IPs are left out of both (they would reject the document).
* ``user.*`` is the authenticated user; ``user.group.name`` holds the Kubernetes groups.
  When ``impersonatedUser`` is set, the identity the request ran as goes to ``user.effective.*``.
  ``related.user`` = usernames and uids of both, de-duplicated.
* ``event.outcome``: ``failure`` when the authorizer said ``forbid`` or the response code is
  >= 400; ``success`` when the code is < 400, or there is no code and the decision is ``allow``.
* ``event.type`` gets ``allowed``/``denied`` from the decision (``denied`` also for 401/403).
* ``orchestrator.api_version`` is the object's ``group/version`` (``v1`` for the core group).
* ``kaudit.pod.*`` fields are extracted from every pod spec found in ``requestObject`` and
  ``responseObject`` (pods, workload templates, cronjob job templates, pod templates), request
  body first, containers then initContainers then ephemeralContainers. Booleans are ``true``
  when *any* container/body says so; lists are de-duplicated in first-seen order. They are
  present only when a pod spec was found (whatever the verb).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kaudit_elk.base.vocab import WRITE_VERBS as WRITE_VERBS  # the spec's write verbs (normalize, pipeline, native)

ECS_VERSION: Final = "8.11.0"
EVENT_DATASET: Final = "kubernetes.audit_logs"
EVENT_MODULE: Final = "kubernetes"
#: ``data_stream.type`` of every document (the stream is ``logs-kubernetes.audit_logs-<namespace>``).
DATA_STREAM_TYPE: Final = "logs"
#: ``data_stream.namespace`` when none is given (the CLI's default namespace).
DEFAULT_NAMESPACE: Final = "kaudit"
#: ``data_stream.*`` fields: constant per stream, mapped ``constant_keyword`` with the stream's value
#: where the engine has that type, ``keyword`` otherwise.
DATA_STREAM_FIELDS: Final = ("data_stream.type", "data_stream.dataset", "data_stream.namespace")

#: Key under which ``envelopes.decode`` attaches envelope facts to an Event (popped by normalize).
ENVELOPE_KEY: Final = "_kaudit_envelope"

#: Expected JSON types of known raw Event fields; a mismatch is a NormalizeError (dead letter).
RAW_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "kind": (str,),
    "apiVersion": (str,),
    "level": (str,),
    "auditID": (str,),
    "stage": (str,),
    "requestURI": (str,),
    "verb": (str,),
    "userAgent": (str,),
    "user": (dict,),
    "impersonatedUser": (dict,),
    "sourceIPs": (list,),
    "objectRef": (dict,),
    "responseStatus": (dict,),
    "annotations": (dict,),
    "requestReceivedTimestamp": (str,),
    "stageTimestamp": (str,),
    "timestamp": (str,),
}

#: Timestamp sources for ``@timestamp``/``event.start``, first present wins.
TIMESTAMP_SOURCES: Final = (
    ("requestReceivedTimestamp",),
    ("stageTimestamp",),
    ("timestamp",),
    ("metadata", "creationTimestamp"),
)

#: Keys removed from request/response bodies (path inside the body).
DROPPED_BODY_PATHS: Final = (("metadata", "managedFields"),)

#: Objects whose keys are dedotted ("." -> "_") inside kubernetes.audit (Elastic's pipeline dedots
#: annotations, and only them).
DEDOTTED_OBJECTS: Final = (("annotations",),)

#: Objects whose dotted keys are kept as sent, as Elastic's integration keeps them; the engine reads a
#: dot as a path step. A key it could not place is dedotted instead (the rest stay as sent): one with
#: an empty step (``a..b``, ``.a``, ``a.``), or one under another key of the object (``a`` and ``a.b``:
#: ``a`` cannot be a value and an object at once), which would make the engine reject the document.
DOTTED_KEY_OBJECTS: Final = (("user", "extra"), ("impersonatedUser", "extra"))

#: Plain copies: raw Event path -> document field (only when the raw value is present and not null).
COPIES: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    (("verb",), "event.action"),
    (("user", "username"), "user.name"),
    (("user", "uid"), "user.id"),
    (("user", "groups"), "user.group.name"),
    (("impersonatedUser", "username"), "user.effective.name"),
    (("impersonatedUser", "uid"), "user.effective.id"),
    (("impersonatedUser", "groups"), "user.effective.group.name"),
    (("userAgent",), "user_agent.original"),
    (("responseStatus", "code"), "http.response.status_code"),
    (("requestURI",), "url.original"),
    (("objectRef", "namespace"), "orchestrator.namespace"),
    (("objectRef", "resource"), "orchestrator.resource.type"),
    (("objectRef", "name"), "orchestrator.resource.name"),
)

#: Constants set on every document (``data_stream.namespace`` is per stream, not here).
CONSTANTS: Final[dict[str, str]] = {
    "data_stream.type": DATA_STREAM_TYPE,
    "data_stream.dataset": EVENT_DATASET,
    "event.kind": "event",
    "event.module": EVENT_MODULE,
    "event.dataset": EVENT_DATASET,
    "orchestrator.type": "kubernetes",
    "ecs.version": ECS_VERSION,
}

# ---- event.category / event.type ------------------------------------------------------------
IAM_RESOURCES: Final = frozenset(
    {
        "roles", "clusterroles", "rolebindings", "clusterrolebindings", "serviceaccounts",
        "tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews",
        "selfsubjectrulesreviews", "localsubjectaccessreviews", "selfsubjectreviews",
        "certificatesigningrequests", "users", "groups", "userextras", "uids",
    }
)
EXEC_SUBRESOURCES: Final = frozenset({"exec", "attach"})
VERB_TYPES: Final[dict[str, str]] = {
    "create": "creation",
    "update": "change",
    "patch": "change",
    "delete": "deletion",
    "deletecollection": "deletion",
    "get": "access",
    "list": "access",
    "watch": "access",
}

# ---- typed security allow-list (kaudit.*) ---------------------------------------------------
#: Where pod specs live inside a body (first match wins per body).
POD_SPEC_PATHS: Final = (
    ("spec",),  # Pod (recognised by spec.containers)
    ("spec", "template", "spec"),  # Deployment, DaemonSet, StatefulSet, ReplicaSet, Job
    ("spec", "jobTemplate", "spec", "template", "spec"),  # CronJob
    ("template", "spec"),  # PodTemplate
)
CONTAINER_LISTS: Final = ("containers", "initContainers", "ephemeralContainers")
#: Keys that make an object at a POD_SPEC_PATHS location a pod spec (any one, non-null). Volumes and
#: host-namespace flags count too: a patch or a partial spec may carry them without containers.
POD_SPEC_MARKERS: Final = (*CONTAINER_LISTS, "volumes", "hostNetwork", "hostPID", "hostIPC")

# ---- the typed fields: one row each ---------------------------------------------------------
# A row declares a ``kaudit.*`` field once: its mapping type (the index template reads
# :data:`KAUDIT_FIELDS`, derived from the rows), what it means, an example record and the value the
# field must hold in that record's document. tests/unit/test_spec_rows.py runs every example through
# the Python normalizer and the native fast path, tests/engine/test_spec_rows_engine.py through the
# engine's ``_simulate`` with the server-side pipeline (envelope rows excepted: envelopes are split
# client-side).
#
# Pod-spec rows (``kaudit.pod.*``) also carry their extraction rule, and the three executions of it are
# generated from the rows (``python -m kaudit_elk.events.codegen``; tests/unit/test_codegen.py fails when
# the committed output differs): ``kaudit_elk/events/podfields.py``, ``native/src/podfields.rs`` and
# ``index_templates/audit-pipeline-pod-fields.painless``. A rule is
#
# ``sources``
#     where the values are, in order: ``pod:<path>`` inside each pod spec, ``container:<path>`` inside
#     each container (:data:`CONTAINER_LISTS`, in that order); path steps are dotted keys (each step must
#     be an object), ``[]`` walks a list. Per pod spec the ``pod:`` sources are read before the
#     containers; the specs are walked request body first.
# ``value``
#     which values count: ``true`` (JSON true), ``str``, ``nonempty_str``, ``int`` (an integer, not a
#     float), ``nonnull`` (anything but null).
# ``reducer``
#     ``any``: boolean, true when any value counts (false otherwise, always present with a pod spec);
#     ``unique``: the counted values de-duplicated in first-seen order (absent when none);
#     ``first``: the first counted value (absent when none).
#
# The other families (``rbac``, ``service``, ``exec``, ``body``, ``envelope``) are not table-shaped
# (RBAC rules, the exec URI's query, truncation, provider envelopes); their rows name the hand-written
# function that extracts them in each execution (``by``), and their examples hold those functions to the
# row the same way.

#: Pod-spec rule reducers and value kinds (see above).
REDUCERS: Final = ("any", "unique", "first")
VALUE_KINDS: Final = ("true", "str", "nonempty_str", "int", "nonnull")


@dataclass(frozen=True)
class TypedField:
    """One typed ``kaudit.*`` field: mapping type, meaning, example row and (pod fields) extraction rule."""

    name: str
    type: str  # mapping type (TYPED_FIELDS)
    doc: str
    example: dict[str, Any]  # an event fragment merged over EXAMPLE_BASE, or a provider envelope
    expected: Any  # the value the field holds in the example's document
    sources: tuple[str, ...] = ()  # pod-spec rule: "pod:<path>" / "container:<path>"
    value: str = ""  # pod-spec rule: one of VALUE_KINDS
    reducer: str = ""  # pod-spec rule: one of REDUCERS
    by: str = ""  # not generated: the hand-written extractor (normalize.py / fields.rs / painless)

    @property
    def generated(self) -> bool:
        """True when the executions of this field are generated from its rule."""
        return bool(self.sources)


#: The audit Event an example fragment is merged over.
EXAMPLE_BASE: Final[dict[str, Any]] = {
    "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "spec-row",
    "stage": "ResponseComplete", "verb": "create", "requestReceivedTimestamp": "2026-01-01T00:00:00.000001Z",
    "stageTimestamp": "2026-01-01T00:00:00.5Z", "user": {"username": "alice"}, "sourceIPs": ["10.0.0.1"],
}
_POD: Final[dict[str, Any]] = {
    "objectRef": {"resource": "pods", "namespace": "d", "name": "p", "apiVersion": "v1"},
    "requestObject": {"kind": "Pod", "spec": {
        "hostNetwork": True, "hostPID": True, "hostIPC": True, "serviceAccountName": "builder",
        "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}],
        "containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 22, "hostPort": 2222}],
                        "securityContext": {"privileged": True, "allowPrivilegeEscalation": True, "runAsUser": 0,
                                            "capabilities": {"add": ["NET_ADMIN"]},
                                            "seccompProfile": {"type": "Unconfined"}, "procMount": "Unmasked"}}]}},
}
_ROLE: Final[dict[str, Any]] = {
    "objectRef": {"resource": "clusterroles", "name": "r", "apiGroup": "rbac.authorization.k8s.io"},
    "requestObject": {"kind": "ClusterRole", "rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"], "resourceNames": ["db-password"]},
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
}
_BINDING: Final[dict[str, Any]] = {
    "objectRef": {"resource": "clusterrolebindings", "name": "b", "apiGroup": "rbac.authorization.k8s.io"},
    "requestObject": {"kind": "ClusterRoleBinding", "subjects": [{"kind": "User", "name": "eve"}],
                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}},
}
_SERVICE: Final[dict[str, Any]] = {
    "objectRef": {"resource": "services", "namespace": "d", "name": "s", "apiVersion": "v1"},
    "requestObject": {"kind": "Service", "spec": {"type": "NodePort"}},
}
_EXEC: Final[dict[str, Any]] = {
    "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "d", "name": "p", "apiVersion": "v1"},
    "requestURI": "/api/v1/namespaces/d/pods/p/exec?command=cat&command=%2Fetc%2Fshadow&container=app&stdin=true",
}
_LONG_VALUE: Final[dict[str, Any]] = {  # one string leaf over max_value_bytes (8 KiB)
    "objectRef": {"resource": "configmaps", "namespace": "d", "name": "cm", "apiVersion": "v1"},
    "requestObject": {"kind": "ConfigMap", "data": {"k": "x" * 9000}},
}
_BAD_SHAPE: Final[dict[str, Any]] = {  # a custom resource whose spec is a string (an object path): refused by the engines
    "objectRef": {"resource": "widgets", "namespace": "d", "name": "w", "apiGroup": "example.com", "apiVersion": "v1"},
    "requestObject": {"kind": "Widget", "spec": "opaque", "rules": [{"verbs": ["get"]}]},
}
_INNER_JSON: Final = ('{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"spec-env","stage":"ResponseComplete",'
                      '"verb":"get","requestReceivedTimestamp":"2026-01-01T00:00:00.000001Z","user":{"username":"u"}}')
_AKS: Final[dict[str, Any]] = {
    "category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
    "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-1",
    "properties": {"log": _INNER_JSON},
}
_EKS: Final[dict[str, Any]] = {
    "@timestamp": "2026-01-01 00:00:00.000", "@logStream": "kube-apiserver-audit-abc",
    "@log": "123:/aws/eks/prod-2/cluster", "logGroup": "/aws/eks/prod-2/cluster", "@message": _INNER_JSON,
}
_GKE: Final[dict[str, Any]] = {
    "insertId": "g-1", "timestamp": "2026-01-01T00:00:00.000001Z", "logName": "projects/p-1/logs/cloudaudit.googleapis.com%2Factivity",
    "resource": {"type": "k8s_cluster", "labels": {"project_id": "p-1", "location": "europe-west1", "cluster_name": "c"}},
    "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "methodName": "io.k8s.core.v1.pods.get",
                     "resourceName": "core/v1/namespaces/d/pods/p", "authenticationInfo": {"principalEmail": "u@example.com"}},
}

_F = TypedField
_RBAC = "_rbac_fields / rbac_fields / the rbac block"
_ENVELOPE = "envelopes.decode (client-side only)"
#: Every typed ``kaudit.*`` field, in document order.
FIELDS: Final[tuple[TypedField, ...]] = (
    _F("kaudit.pod.privileged", "boolean", "any container's securityContext.privileged", _POD, True,
       ("container:securityContext.privileged",), "true", "any"),
    _F("kaudit.pod.allow_privilege_escalation", "boolean", "any container sets securityContext.allowPrivilegeEscalation "
       "to true explicitly", _POD, True, ("container:securityContext.allowPrivilegeEscalation",), "true", "any"),
    _F("kaudit.pod.host_network", "boolean", "spec.hostNetwork", _POD, True, ("pod:hostNetwork",), "true", "any"),
    _F("kaudit.pod.host_pid", "boolean", "spec.hostPID", _POD, True, ("pod:hostPID",), "true", "any"),
    _F("kaudit.pod.host_ipc", "boolean", "spec.hostIPC", _POD, True, ("pod:hostIPC",), "true", "any"),
    _F("kaudit.pod.host_path", "keyword", "volumes[].hostPath.path", _POD, ["/var/run/docker.sock"],
       ("pod:volumes.[].hostPath.path",), "nonnull", "unique"),
    _F("kaudit.pod.host_ports", "long", "containers[].ports[].hostPort", _POD, [2222],
       ("container:ports.[].hostPort",), "int", "unique"),
    _F("kaudit.pod.capabilities_add", "keyword", "containers[].securityContext.capabilities.add", _POD, ["NET_ADMIN"],
       ("container:securityContext.capabilities.add.[]",), "str", "unique"),
    _F("kaudit.pod.images", "keyword", "containers[].image", _POD, ["nginx:1.27"], ("container:image",), "str", "unique"),
    _F("kaudit.pod.run_as_user", "long", "the pod's and then each container's securityContext.runAsUser", _POD, [1000, 0],
       ("pod:securityContext.runAsUser", "container:securityContext.runAsUser"), "int", "unique"),
    _F("kaudit.pod.service_account", "keyword", "serviceAccountName (or the legacy serviceAccount)", _POD, "builder",
       ("pod:serviceAccountName", "pod:serviceAccount"), "nonempty_str", "first"),
    _F("kaudit.pod.seccomp_profile", "keyword", "seccompProfile.type of the pod and then of each container "
       "(Unconfined: no syscall filter)", _POD, ["RuntimeDefault", "Unconfined"],
       ("pod:securityContext.seccompProfile.type", "container:securityContext.seccompProfile.type"), "str", "unique"),
    _F("kaudit.pod.proc_mount", "keyword", "each container's securityContext.procMount (Unmasked: /proc without the "
       "runtime's masked and read-only paths)", _POD, ["Unmasked"], ("container:securityContext.procMount",), "str", "unique"),
    _F("kaudit.rbac.verbs", "keyword", "union over rules[].verbs, first seen first", _ROLE, ["get", "list"], by=_RBAC),
    _F("kaudit.rbac.resources", "keyword", "union over rules[].resources", _ROLE, ["secrets"], by=_RBAC),
    _F("kaudit.rbac.api_groups", "keyword", "union over rules[].apiGroups", _ROLE, [""], by=_RBAC),
    _F("kaudit.rbac.resource_names", "keyword", "union over rules[].resourceNames", _ROLE, ["db-password"], by=_RBAC),
    _F("kaudit.rbac.non_resource_urls", "keyword", "union over rules[].nonResourceURLs", _ROLE, ["/metrics"], by=_RBAC),
    _F("kaudit.rbac.role_ref.kind", "keyword", "roleRef.kind", _BINDING, "ClusterRole", by=_RBAC),
    _F("kaudit.rbac.role_ref.name", "keyword", "roleRef.name", _BINDING, "cluster-admin", by=_RBAC),
    _F("kaudit.rbac.subjects.kind", "keyword", "union over subjects[].kind", _BINDING, ["User"], by=_RBAC),
    _F("kaudit.rbac.subjects.name", "keyword", "union over subjects[].name", _BINDING, ["eve"], by=_RBAC),
    _F("kaudit.service.type", "keyword", "spec.type of services", _SERVICE, "NodePort",
       by="_service_fields / the service block of normalize.rs / the service block"),
    _F("kaudit.exec.command", "keyword", "decoded command= parameters of exec/attach URIs, space-joined", _EXEC,
       "cat /etc/shadow", by="_exec / exec_fields / the exec block + audit-pipeline-exec-join.painless"),
    _F("kaudit.exec.container", "keyword", "the container= parameter of exec/attach URIs", _EXEC, "app",
       by="_exec / exec_fields / the exec block + audit-pipeline-exec-join.painless"),
    _F("kaudit.body.truncated", "boolean", "set (true) only when a body or a leaf was cut", _LONG_VALUE, True,
       by="_bodies (native declines) / the body block"),
    _F("kaudit.body.original_bytes", "long", "serialized size of both bodies before truncation", _LONG_VALUE,
       9036, by="_bodies (native declines) / the body block"),  # {"kind":"ConfigMap","data":{"k":"x…"}} before the cut
    _F("kaudit.body.untyped", "keyword", "body paths whose value does not fit their typed mapping (BODY_SHAPES), "
       "removed from kubernetes.audit.requestObject/responseObject only: request.<path> / response.<path>, sorted",
       _BAD_SHAPE, ["request.spec"], by="bodyshape.fit_body (native declines) / fitObj in the body block"),
    _F("kaudit.envelope.format", "keyword", "aks | eks | gke (absent for native events)", _AKS, "aks", by=_ENVELOPE),
    _F("kaudit.envelope.resource_id", "keyword", "AKS resourceId", _AKS, _AKS["resourceId"], by=_ENVELOPE),
    _F("kaudit.envelope.category", "keyword", "AKS kube-audit / kube-audit-admin", _AKS, "kube-audit", by=_ENVELOPE),
    _F("kaudit.envelope.project_id", "keyword", "GKE resource.labels.project_id", _GKE, "p-1", by=_ENVELOPE),
    _F("kaudit.envelope.location", "keyword", "GKE resource.labels.location", _GKE, "europe-west1", by=_ENVELOPE),
    _F("kaudit.envelope.log_group", "keyword", "EKS CloudWatch log group", _EKS, "/aws/eks/prod-2/cluster", by=_ENVELOPE),
    _F("kaudit.envelope.log_stream", "keyword", "EKS CloudWatch log stream", _EKS, "kube-apiserver-audit-abc",
       by=_ENVELOPE),
)

#: kaudit.* fields with their mapping types (from the rows).
KAUDIT_FIELDS: Final[dict[str, str]] = {f.name: f.type for f in FIELDS}
#: The pod-spec rows, whose executions are generated.
POD_FIELDS: Final[tuple[TypedField, ...]] = tuple(f for f in FIELDS if f.generated)
#: field -> (example record, the value the field must hold), from the rows.
FIELD_EXAMPLES: Final[dict[str, tuple[dict[str, Any], Any]]] = {f.name: (f.example, f.expected) for f in FIELDS}
#: (pod spec flag, field) of the host-namespace rows.
HOST_NAMESPACE_FLAGS: Final = tuple((f.sources[0][4:], f.name) for f in POD_FIELDS
                                    if f.reducer == "any" and f.sources[0].startswith("pod:host"))

#: Service kinds whose spec.type is copied to kaudit.service.type.
SERVICE_RESOURCES: Final = frozenset({"services"})

#: Marker appended to a string leaf cut at max_value_bytes.
TRUNCATION_SUFFIX: Final = "...[kaudit:truncated]"
#: Key of the marker object that replaces an oversized body.
TRUNCATED_BODY_KEY: Final = "kaudit_truncated"

# ---- mapping types for the index template generator -----------------------------------------
_RAW_TYPED: dict[str, str] = {
    "kubernetes.audit.apiVersion": "keyword",
    "kubernetes.audit.kind": "keyword",
    "kubernetes.audit.level": "keyword",
    "kubernetes.audit.auditID": "keyword",
    "kubernetes.audit.stage": "keyword",
    "kubernetes.audit.requestURI": "keyword",
    "kubernetes.audit.verb": "keyword",
    "kubernetes.audit.userAgent": "keyword",
    "kubernetes.audit.sourceIPs": "exact_text",
    "kubernetes.audit.requestReceivedTimestamp": "date",
    "kubernetes.audit.stageTimestamp": "date",
    "kubernetes.audit.user.username": "keyword",
    "kubernetes.audit.user.uid": "keyword",
    "kubernetes.audit.user.groups": "exact_text",
    "kubernetes.audit.impersonatedUser.username": "keyword",
    "kubernetes.audit.impersonatedUser.uid": "keyword",
    "kubernetes.audit.impersonatedUser.groups": "exact_text",
    "kubernetes.audit.objectRef.resource": "keyword",
    "kubernetes.audit.objectRef.namespace": "keyword",
    "kubernetes.audit.objectRef.name": "keyword",
    "kubernetes.audit.objectRef.uid": "keyword",
    "kubernetes.audit.objectRef.apiGroup": "keyword",
    "kubernetes.audit.objectRef.apiVersion": "keyword",
    "kubernetes.audit.objectRef.resourceVersion": "keyword",
    "kubernetes.audit.objectRef.subresource": "keyword",
    "kubernetes.audit.responseStatus.code": "integer",
    "kubernetes.audit.responseStatus.status": "keyword",
    "kubernetes.audit.responseStatus.message": "text",
    "kubernetes.audit.responseStatus.reason": "keyword",
    "kubernetes.audit.annotations.authorization_k8s_io/decision": "keyword",
    "kubernetes.audit.annotations.authorization_k8s_io/reason": "exact_text",
}
_ECS_TYPED: dict[str, str] = {
    "@timestamp": "date",
    "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword",
    "ecs.version": "keyword",
    "event.kind": "keyword",
    "event.module": "keyword",
    "event.dataset": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.action": "keyword",
    "event.outcome": "keyword",
    "event.start": "date",
    "event.end": "date",
    "event.duration": "long",
    "event.original": "keyword",  # index: false in the template
    "user.name": "keyword",
    "user.id": "keyword",
    "user.group.name": "keyword",
    "user.effective.name": "keyword",
    "user.effective.id": "keyword",
    "user.effective.group.name": "keyword",
    "user_agent.original": "keyword",
    "source.ip": "ip",
    "related.ip": "ip",
    "related.user": "keyword",
    "http.response.status_code": "long",
    "url.original": "keyword",
    "url.path": "keyword",
    "url.query": "keyword",
    "orchestrator.type": "keyword",
    "orchestrator.cluster.name": "keyword",
    "orchestrator.namespace": "keyword",
    "orchestrator.resource.type": "keyword",
    "orchestrator.resource.name": "keyword",
    "orchestrator.api_version": "keyword",
    "cloud.provider": "keyword",
    "error.message": "keyword",
}

#: Every typed (non-flattened) field of a document: dotted name -> mapping type. Types beyond the
#: engine's own names:
#:
#: ``constant_keyword``
#:     one value per stream (``data_stream.*``): ``constant_keyword`` with that value where the engine
#:     has the type, else ``keyword``.
#: ``exact_text``
#:     fields Elastic's integration maps ``text`` (``sourceIPs``, ``*.groups``, the authorizer's reason):
#:     ``text`` here too, so that a data view or EQL/ES|QL over both streams sees one type, but
#:     analysed with the ``keyword`` analyzer (the whole value is one term: KQL phrases and wildcards
#:     match exactly, case-sensitively, as on a keyword), with a ``keyword`` multi-field
#:     ``<name>.keyword`` for term queries, aggregations and EQL's exact comparisons.
TYPED_FIELDS: Final[dict[str, str]] = {**_RAW_TYPED, **_ECS_TYPED, **KAUDIT_FIELDS}

# ---- bodies: Elastic's typed paths on the raw body, kaudit's whole-body copy ------------------
#: Raw body key -> the document field holding kaudit's copy of the whole body (after managedFields
#: removal, wrapping of non-object bodies and truncation, marker included), mapped ``flattened`` (ES) /
#: ``flat_object`` (OpenSearch): every path searchable. kaudit's compiler, scan's engine reads, dashboards
#: and tune search body paths here; ``kubernetes.audit.requestObject``/``responseObject`` keep the body
#: in ``_source`` as Elastic's integration does, but index only :data:`ELASTIC_BODY_FIELDS`.
BODY_COPIES: Final = (("requestObject", "kaudit.body.request"), ("responseObject", "kaudit.body.response"))

#: Sub-trees mapped ``flattened`` (ES) / ``flat_object`` (OpenSearch): any path is a keyword.
FLAT_FIELDS: Final = tuple(field for _, field in BODY_COPIES)

#: The raw bodies: ``object`` mappings with ``dynamic: false`` indexing only these paths, with the types
#: Elastic's integration gives them (its ``fields.yml``; ``flat`` = ``flattened``/``flat_object``), plus the
#: body paths Elastic's 45 prebuilt Kubernetes rules read that it leaves unmapped (``roleRef.name``,
#: ``rules.verbs``/``rules.resources``: keyword, as its ``ecs@mappings`` maps strings). ``rules`` is a
#: plain object here, not ``nested`` as in Elastic's ``fields.yml``: the rules query it with plain KQL
#: (inside ES|QL's ``KQL()``), which matches nothing on a nested path, and nested would add one hidden
#: Lucene document per rule of every Role.
ELASTIC_BODY_FIELDS: Final[dict[str, str]] = {
    **{f"kubernetes.audit.requestObject.{path}": kind for path, kind in {
        "spec.type": "keyword",
        "spec.serviceAccountName": "keyword",
        "spec.restartPolicy": "keyword",
        "spec.hostNetwork": "boolean",
        "spec.hostIPC": "boolean",
        "spec.hostPID": "boolean",
        "spec.volumes.hostPath": "flat",
        "spec.securityContext.runAsUser": "integer",
        "spec.securityContext.runAsGroup": "integer",
        "spec.securityContext.runAsNonRoot": "boolean",
        "spec.containers.image": "exact_text",  # text in Elastic's integration
        "spec.containers.volumeMounts": "flat",
        "spec.containers.securityContext.privileged": "boolean",
        "spec.containers.securityContext.allowPrivilegeEscalation": "boolean",
        "spec.containers.securityContext.runAsUser": "integer",
        "spec.containers.securityContext.runAsGroup": "integer",
        "spec.containers.securityContext.runAsNonRoot": "boolean",
        "spec.containers.securityContext.procMount": "keyword",
        "spec.containers.securityContext.capabilities.add": "keyword",
        "rules.verbs": "keyword",  # Elastic: rules nested, dynamic (see above)
        "rules.resources": "keyword",
        "roleRef.name": "keyword",  # read by "Cluster Admin RoleBinding Created"; unmapped by Elastic
    }.items()},
    **{f"kubernetes.audit.responseObject.{path}": kind for path, kind in {
        "spec.hostNetwork": "boolean",
        "spec.hostIPC": "boolean",
        "spec.hostPID": "boolean",
        "spec.volumes.hostPath": "flat",
        "spec.restartPolicy": "keyword",
        "spec.containers.volumeMounts": "flat",
        "spec.containers.securityContext.privileged": "boolean",
        "spec.containers.securityContext.allowPrivilegeEscalation": "boolean",
        "spec.containers.securityContext.runAsUser": "integer",
        "rules.verbs": "keyword",
        "rules.resources": "keyword",
        "roleRef.kind": "keyword",
    }.items()},
}
#: The two raw body roots (``object``, ``dynamic: false``).
ELASTIC_BODY_ROOTS: Final = ("kubernetes.audit.requestObject", "kubernetes.audit.responseObject")

# ---- body shapes: what a typed body path can hold without the engine refusing the document -----
# A body whose typed path (ELASTIC_BODY_FIELDS) holds a value its mapping cannot take makes the engine
# refuse the whole document (checked with real requests on OpenSearch 2.19.6 / 3.3.0 and Elasticsearch
# 8.19.7, tests/engine/test_body_shapes_engine.py). All three executions (normalize via bodyshape.py, the
# native fast path, which declines such a line to Python, and the ingest pipeline) check each body against
# :data:`BODY_SHAPES` and remove what does not fit from ``kubernetes.audit.requestObject``/``responseObject``
# only; ``kaudit.body.request``/``response`` keep the whole body, and :data:`UNTYPED_FIELD` lists what was
# removed. What each shape takes (a null, a missing value and a null list item always fit; a list fits when
# every item, lists inside it included, fits; the whole value at the path is removed otherwise):
#
# ``object`` (every inner node of the paths, and the body root)
#     an object, or a list of objects. Engines: a scalar or a list holding a scalar is refused by both
#     ("object mapping ... tried to parse field ... as object, but found a concrete value"). Its keys must be
#     placeable: a key that is empty or has an empty or blank step (``.a``, ``a..b``, ``a.``, `` ``, see
#     :data:`BLANK_KEY_CHARS`) is refused ("field name cannot contain only whitespace/dots/be an empty
#     string"; OpenSearch accepts a blank name, Elasticsearch does not) and is removed; a dotted key is the
#     path of its steps (``{"spec.type": {}}`` is ``spec`` > ``type``), and one that runs through a typed
#     leaf (``spec.type.x``) is refused by both and removed. Keys below an unmapped key are never checked
#     (``dynamic: false``: the engines skip them; ``data: {".dockercfg": ...}`` is indexed).
# ``flat`` (``flattened`` / ``flat_object``)
#     an object or a list of objects (Elasticsearch refuses a scalar; OpenSearch skips it).
# ``scalar`` (``keyword``, ``exact_text``)
#     a string, number or boolean (indexed as its text). Elasticsearch refuses an object or a list holding
#     one ("failed to parse field ... of type [keyword]"); OpenSearch skips it.
# ``boolean``
#     JSON ``true``/``false`` only. The engines parse the strings "true"/"false" and drop other scalars as
#     malformed (``index.mapping.ignore_malformed``); kaudit does not rely on either and moves any other
#     scalar out of the typed path too, so what is typed is what the body says. An object: as ``scalar``.
# ``integer``
#     a JSON integer (not a boolean) in [-2^31, 2^31-1]; a float, a numeric string or an integer out of
#     range is coerced or dropped as malformed by the engines and moved out here. An object: as ``scalar``.
#
# (An integer above 2^63-1 anywhere in a document is refused by OpenSearch's script processors, which the
# write-once final pipeline runs: that is not a mapping shape and is not handled here.)

#: Mapping type of a typed body path -> its shape (see above).
BODY_SHAPE_OF_TYPE: Final[dict[str, str]] = {
    "keyword": "scalar", "exact_text": "scalar", "boolean": "boolean", "integer": "integer", "flat": "flat",
}
#: The range of an ``integer`` path.
BODY_INTEGER_RANGE: Final = (-(2**31), 2**31 - 1)
#: Characters that make a key step blank (Java's Character.isWhitespace, which Elasticsearch's field-name
#: check uses, and Unicode White_Space): a step made only of them is refused.
BLANK_KEY_CHARS: Final = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                          "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
#: The document field listing the removed body paths (``request.spec``, ``response.spec.type``; keyword).
UNTYPED_FIELD: Final = "kaudit.body.untyped"


def _shape_tree(root: str) -> dict[str, Any]:
    """The shape tree of one body root: ``{"kind": "object", "keys": {step: node}}``, leaves ``{"kind": ...}``."""
    tree: dict[str, Any] = {"kind": "object", "keys": {}}
    for dotted, kind in ELASTIC_BODY_FIELDS.items():
        if not dotted.startswith(root + "."):
            continue
        node = tree
        steps = dotted[len(root) + 1:].split(".")
        for step in steps[:-1]:
            node = node["keys"].setdefault(step, {"kind": "object", "keys": {}})
            if node["kind"] != "object":
                raise ValueError(f"{dotted}: {step} is a typed leaf and a parent")
        if steps[-1] in node["keys"]:
            raise ValueError(f"{dotted}: a parent and a typed leaf")
        node["keys"][steps[-1]] = {"kind": BODY_SHAPE_OF_TYPE[kind]}
    return tree


#: Raw body key -> (prefix of its paths in :data:`UNTYPED_FIELD`, its shape tree), from ELASTIC_BODY_FIELDS.
BODY_SHAPES: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    raw: (copy.rsplit(".", 1)[1], _shape_tree(root))
    for (raw, copy), root in zip(BODY_COPIES, ELASTIC_BODY_ROOTS)
}

#: ``exact_text`` fields' keyword multi-field (the rule compiler and aggregations use it).
EXACT_SUBFIELD: Final = "keyword"

#: Objects whose keys should map as keyword through a dynamic template.
KEYWORD_OBJECTS: Final = (
    "kubernetes.audit.annotations",
    "kubernetes.audit.user.extra",
    "kubernetes.audit.impersonatedUser.extra",
)

#: Fields only set by the client (envelopes, options); the ingest pipeline does not produce them.
CLIENT_ONLY_FIELDS: Final = ("cloud.provider", "kaudit.envelope.*", "event.original")


def example_record(field_name: str) -> dict[str, Any]:
    """The whole example record of a field's row: the event (fragment over EXAMPLE_BASE) or the envelope."""
    record, _ = FIELD_EXAMPLES[field_name]
    return dict(record) if is_envelope_example(field_name) else {**EXAMPLE_BASE, **record}


def is_envelope_example(field_name: str) -> bool:
    """Rows whose record is a provider envelope (split client-side: no server-side pipeline row)."""
    return "objectRef" not in FIELD_EXAMPLES[field_name][0]
