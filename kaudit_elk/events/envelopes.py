"""Unwrap the shapes audit events arrive in into plain audit.k8s.io Events.

``decode(obj)`` takes one parsed JSON value and returns the Events it holds:

* a native Event (with or without ``apiVersion``/``kind``, legacy v1beta1 fields included);
* an ``EventList`` (the webhook payload) or a JSON array of any of these;
* an AKS diagnostic record (``properties.log`` as object or JSON string) and the Azure Event Hubs
  batch ``{"records": [...]}``;
* an EKS CloudWatch export (the Event JSON string in ``message``/``@message``) and a CloudWatch
  Logs subscription payload (``logEvents[].message``; a ``CONTROL_MESSAGE`` holds no events);
* a GKE Cloud Audit Log entry (``protoPayload.methodName`` ``io.k8s.*``), mapped onto Event fields.

Envelope facts (cloud provider, cluster name, AKS resource id, GKE project...) are attached to each
Event under :data:`kaudit_elk.events.fieldspec.ENVELOPE_KEY`; ``normalize`` turns them into
``cloud.provider``, ``orchestrator.cluster.name`` and ``kaudit.envelope.*``.
Anything else raises :class:`EnvelopeError` with the reason.
"""

from __future__ import annotations

from typing import Any

import orjson

from kaudit_elk.events.fieldspec import ENVELOPE_KEY

#: Fields whose presence marks an object without ``kind`` as an audit Event.
EVENT_MARKERS = ("auditID", "verb", "requestURI", "stage", "level", "objectRef", "requestReceivedTimestamp")
_EVENT_MARKER_SET = frozenset(EVENT_MARKERS)

#: gRPC status codes (Cloud Audit Logs ``status.code``) -> HTTP status.
GRPC_TO_HTTP: dict[int, int] = {
    0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400,
    10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}

_K8S_VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
     "proxy", "connect", "impersonate", "bind", "escalate", "approve", "sign", "use", "put", "post", "head", "options"}
)


class EnvelopeError(ValueError):
    """A JSON value that is neither an audit Event nor a known envelope of Events."""


def decode(obj: Any) -> list[dict[str, Any]]:
    """Return the audit Events held by one parsed JSON value (raise EnvelopeError if none apply)."""
    if type(obj) is dict and obj.get("kind") == "Event":  # fast path: a native Event, as apiservers write it
        api = obj.get("apiVersion")
        if api is None or (type(api) is str and api.startswith("audit.k8s.io/")):
            return [obj]
    if isinstance(obj, list):
        out: list[dict[str, Any]] = []
        for item in obj:
            out.extend(decode(item))
        return out
    if not isinstance(obj, dict):
        raise EnvelopeError(f"expected a JSON object, got {_kind_of(obj)}")
    shape = _shape(obj)
    if shape == "eventlist":
        return [_native(i) for i in _list(obj, "items")]
    if shape == "event":
        return [_native(obj)]
    if shape == "gke":
        return [_gke(obj)]
    if shape == "aks":
        return [_aks(obj)]
    if shape == "records":
        out = []
        for rec in _list(obj, "records"):
            out.extend(decode(rec))
        return out
    if shape == "cloudwatch":
        return _cloudwatch_subscription(obj)
    if shape in _MESSAGE_KEYS:
        return _eks_export(obj, shape)
    kind = obj.get("kind")
    if kind is not None:
        raise EnvelopeError(f"not an audit event: kind {kind!r}")
    keys = ", ".join(sorted(map(str, obj))[:6]) or "none"
    raise EnvelopeError(f"not an audit event: unrecognised object (keys: {keys})")


_MESSAGE_KEYS = ("message", "@message")


def _shape(obj: dict[str, Any]) -> str:
    """Which reader an object goes to: "eventlist", "event", "gke", "aks", "records", "cloudwatch",
    the key of an EKS export's event ("message" or "@message"), or "unknown"."""
    kind = obj.get("kind")
    if kind == "EventList":
        return "eventlist"
    if kind == "Event" or (kind is None and not _EVENT_MARKER_SET.isdisjoint(obj)):
        return "event"
    if "protoPayload" in obj:
        return "gke"
    if "properties" in obj or ("category" in obj and "operationName" in obj):
        return "aks"
    if "records" in obj:
        return "records"
    if "logEvents" in obj or obj.get("messageType") == "CONTROL_MESSAGE":
        return "cloudwatch"
    for key in _MESSAGE_KEYS:
        if isinstance(obj.get(key), (str, dict)):
            return key
    return "unknown"


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise EnvelopeError(f"{key!r} must be an array, got {_kind_of(value)}")
    return value


def _native(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise EnvelopeError(f"not an audit event: expected an object, got {_kind_of(obj)}")
    kind = obj.get("kind", "Event")
    if kind != "Event":
        raise EnvelopeError(f"not an audit event: kind {kind!r}")
    api = obj.get("apiVersion")
    if api is not None and not (isinstance(api, str) and api.startswith("audit.k8s.io/")):
        raise EnvelopeError(f"not an audit event: apiVersion {api!r} (a core Kubernetes Event?)")
    return obj


def _facts(envelope: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in envelope.items() if v not in (None, "")}


def _with_envelope(event: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
    return {**event, ENVELOPE_KEY: _facts(envelope)}


def split_envelope(obj: Any) -> tuple[str, dict[str, str]] | None:
    """(the Event's JSON text, envelope facts) when ``obj`` is an AKS record or an EKS export whose
    event is a JSON *string* with string facts; else None. It stands for ``decode(obj)``: the same
    dispatch (``_shape``) and the same facts (the native fast path uses this)."""
    if type(obj) is not dict:
        return None
    shape = _shape(obj)
    if shape == "aks":
        props = obj.get("properties")
        inner, facts = (props.get("log") if type(props) is dict else None), _facts(_aks_envelope(obj))
    elif shape in _MESSAGE_KEYS:
        inner, facts = obj[shape], _facts(_eks_envelope(obj))
    else:
        return None
    if type(inner) is not str:
        return None
    for value in facts.values():
        if type(value) is not str:
            return None
    return inner, facts


def _parse_json_text(text: str | bytes, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"{where} is not valid JSON: {exc}") from None


# ---- Azure (AKS diagnostic settings) --------------------------------------------------------
def _aks(rec: dict[str, Any]) -> dict[str, Any]:
    props = rec.get("properties")
    log = props.get("log") if isinstance(props, dict) else None
    if log is None:
        raise EnvelopeError(
            f"not an audit event: Azure record category {rec.get('category')!r} has no properties.log"
        )
    if isinstance(log, str):
        log = _parse_json_text(log, "AKS properties.log")
    return _with_envelope(_native(log), _aks_envelope(rec))


def _aks_envelope(rec: dict[str, Any]) -> dict[str, Any]:
    resource_id = rec.get("resourceId")
    return {
        "format": "aks",
        "provider": "azure",
        "cluster": _aks_cluster(resource_id),
        "resource_id": resource_id,
        "category": rec.get("category"),
    }


def _aks_cluster(resource_id: Any) -> str | None:
    if not isinstance(resource_id, str):
        return None
    parts = resource_id.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "managedclusters":
            return parts[i + 1].lower()
    return None


# ---- AWS (EKS via CloudWatch Logs) ----------------------------------------------------------
def _eks_cluster(log_group: Any) -> str | None:
    if isinstance(log_group, str) and log_group.startswith("/aws/eks/"):
        return log_group.split("/")[3] or None
    return None


def _eks_export(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    message = obj[key]
    inner = message if isinstance(message, dict) else _parse_json_text(message, f"CloudWatch {key}")
    envelope = _eks_envelope(obj)
    return [_with_envelope(ev, envelope) for ev in decode(inner)]


def _eks_envelope(obj: dict[str, Any]) -> dict[str, Any]:
    log_group = obj.get("logGroup") or obj.get("@logGroup") or obj.get("log_group")
    return {
        "format": "eks",
        "provider": "aws",
        "cluster": _eks_cluster(log_group),
        "log_group": log_group,
        "log_stream": obj.get("logStream") or obj.get("logStreamName") or obj.get("@logStream"),
    }


def _cloudwatch_subscription(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj.get("messageType") == "CONTROL_MESSAGE":
        return []
    envelope = {
        "format": "eks",
        "provider": "aws",
        "cluster": _eks_cluster(obj.get("logGroup")),
        "log_group": obj.get("logGroup"),
        "log_stream": obj.get("logStream"),
    }
    out = []
    for item in _list(obj, "logEvents"):
        message = item.get("message") if isinstance(item, dict) else None
        if not isinstance(message, str):
            raise EnvelopeError("CloudWatch logEvents item without a message string")
        for ev in decode(_parse_json_text(message, "CloudWatch logEvents message")):
            out.append(_with_envelope(ev, envelope))
    return out


# ---- Google (GKE Cloud Audit Logs) ----------------------------------------------------------
def _gke(entry: dict[str, Any]) -> dict[str, Any]:
    proto = entry.get("protoPayload")
    if not isinstance(proto, dict):
        raise EnvelopeError("protoPayload must be an object")
    method = proto.get("methodName")
    if not (isinstance(method, str) and method.startswith("io.k8s.")):
        service = proto.get("serviceName") or "unknown service"
        raise EnvelopeError(f"not an audit event: Cloud Audit Log entry from {service} (methodName {method!r}), not GKE")
    event: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete"}
    audit_id = entry.get("insertId") or (entry.get("operation") or {}).get("id")
    if audit_id:
        event["auditID"] = audit_id
    verb, method_ref = _gke_method(method)
    event["verb"] = verb
    ref = _gke_resource_name(proto["resourceName"]) if proto.get("resourceName") else method_ref
    if ref is not None:
        event["objectRef"] = ref
    elif isinstance(proto.get("resourceName"), str):
        event["requestURI"] = "/" + proto["resourceName"].lstrip("/")
    auth = proto.get("authenticationInfo") or {}
    if isinstance(auth, dict) and auth.get("principalEmail"):
        event["user"] = {"username": auth["principalEmail"]}
    meta = proto.get("requestMetadata") or {}
    if isinstance(meta, dict):
        ip = meta.get("callerIp") or meta.get("callerIP")
        if ip:
            event["sourceIPs"] = [ip]
        if meta.get("callerSuppliedUserAgent"):
            event["userAgent"] = meta["callerSuppliedUserAgent"]
    status = proto.get("status")
    if isinstance(status, dict):
        grpc = status.get("code", 0)
        rs: dict[str, Any] = {"code": GRPC_TO_HTTP.get(grpc, 500) if isinstance(grpc, int) else grpc}
        if status.get("message"):
            rs["message"] = status["message"]
        event["responseStatus"] = rs
    when = entry.get("timestamp") or entry.get("receiveTimestamp")
    if when:
        event["requestReceivedTimestamp"] = when
        event["stageTimestamp"] = when
    annotations = _gke_annotations(entry.get("labels"), proto.get("authorizationInfo"))
    if annotations:
        event["annotations"] = annotations
    if "request" in proto:
        event["requestObject"] = proto["request"]
    if "response" in proto:
        event["responseObject"] = proto["response"]
    labels = (entry.get("resource") or {}).get("labels") or {}
    envelope = {
        "format": "gke",
        "provider": "gcp",
        "cluster": labels.get("cluster_name"),
        "project_id": labels.get("project_id"),
        "location": labels.get("location"),
    }
    return _with_envelope(event, envelope)


def _gke_method(method: str) -> tuple[str, dict[str, Any] | None]:
    """``io.k8s.core.v1.pods.exec.create`` -> ("create", objectRef guess); ``io.k8s.readyz`` -> ("get", None)."""
    parts = method[len("io.k8s."):].split(".")
    if len(parts) == 1:
        return (parts[0] if parts[0] in _K8S_VERBS else "get"), None
    verb = parts[-1]
    if len(parts) >= 4:
        group = "" if parts[0] == "core" else parts[0]
        ref = {"apiGroup": group, "apiVersion": parts[1], "resource": parts[2]}
        if len(parts) == 5:
            ref["subresource"] = parts[3]
        return verb, ref
    return verb, None


def _gke_resource_name(name: Any) -> dict[str, Any] | None:
    """``core/v1/namespaces/ns/pods/p/exec`` -> objectRef; None for non-resource paths like ``readyz``."""
    if not isinstance(name, str):
        return None
    segs = [s for s in name.split("/") if s]
    if len(segs) < 3 or not (segs[1].startswith("v") and segs[1][1:2].isdigit()):
        return None
    ref: dict[str, Any] = {"apiGroup": "" if segs[0] == "core" else segs[0], "apiVersion": segs[1]}
    rest = segs[2:]
    if rest[0] == "namespaces" and len(rest) >= 3:
        ref["namespace"] = rest[1]
        rest = rest[2:]
    ref["resource"] = rest[0]
    if len(rest) > 1:
        ref["name"] = rest[1]
    if len(rest) > 2:
        ref["subresource"] = rest[2]
    if segs[1] in ("v1",) and segs[0] == "core" and rest[0] in ("healthz", "readyz", "livez", "version"):
        return None
    return ref


def _gke_annotations(labels: Any, authz: Any) -> dict[str, str]:
    out = {k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {}
    if "authorization.k8s.io/decision" not in out and isinstance(authz, list) and authz:
        granted = all(isinstance(a, dict) and a.get("granted") is True for a in authz)
        out["authorization.k8s.io/decision"] = "allow" if granted else "forbid"
    return out
