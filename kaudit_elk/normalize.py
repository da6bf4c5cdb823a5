"""Raw audit Event -> index document (pure, no I/O; the client-side hot path).

The mapping is declared in :mod:`kaudit_elk.fieldspec`; this module executes it. The same spec
drives the server-side ingest pipeline (:mod:`kaudit_elk.pipeline`), and an engine test proves
both produce the same documents.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import orjson

from kaudit_elk import fieldspec as fs


@dataclass(frozen=True)
class NormalizeOptions:
    """How documents are built; the defaults suit most clusters."""

    cluster: str = "default"
    keep_original: bool = False
    max_body_bytes: int = 64 * 1024  # per body, after managedFields removal
    max_value_bytes: int = 8 * 1024  # any single string leaf in a body
    stages: frozenset = field(default=frozenset({"ResponseComplete", "ResponseStarted", "Panic"}))


DEFAULT = NormalizeOptions()


class NormalizeError(ValueError):
    """The event has a known field of the wrong type or an unparsable value (dead-letter it)."""


class SkipEvent(Exception):
    """The event's stage is filtered out by policy (``normalize`` returns None for it)."""


def doc_id(cluster: str, audit_id: str, stage: str) -> str:
    """Deterministic document ``_id`` from (cluster, auditID, stage): 32 hex chars (blake2b-128)."""
    key = f"{cluster}\x1f{audit_id}\x1f{stage}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def normalize(event: dict, options: NormalizeOptions = DEFAULT) -> dict | None:
    """Build the document for one raw Event; None when its stage is filtered out."""
    try:
        return _normalize(event, options)
    except SkipEvent:
        return None


# ---------------------------------------------------------------------------------------------
_RAW_TYPES = fs.RAW_TYPES


def _copy_plan() -> tuple[tuple[str, tuple[tuple[str | None, tuple[str, ...]], ...]], ...]:
    """fieldspec.COPIES grouped by the raw top-level key (sources are one or two levels deep)."""
    plan: dict[str, list] = {}
    for src, dst in fs.COPIES:
        if len(src) > 2:
            raise AssertionError(f"copy source {src} deeper than two levels")
        plan.setdefault(src[0], []).append((src[1] if len(src) == 2 else None, tuple(dst.split("."))))
    return tuple((top, tuple(items)) for top, items in plan.items())


_COPY_PLAN = _copy_plan()
_DEDOT = fs.DEDOTTED_OBJECTS
_UTC = timezone.utc


def _normalize(event: dict, options: NormalizeOptions) -> dict:
    if not isinstance(event, dict):
        raise NormalizeError(f"event must be a JSON object, got {type(event).__name__}")
    raw_types = _RAW_TYPES
    for key, value in event.items():
        types = raw_types.get(key)
        if types is not None and value is not None and not isinstance(value, types):
            raise NormalizeError(f"field {key!r} must be {types[0].__name__}, got {type(value).__name__}: {_short(value)}")
    stage = event.get("stage")
    if stage is not None and stage not in options.stages:
        raise SkipEvent(stage)

    audit = dict(event)
    envelope = audit.pop(fs.ENVELOPE_KEY, None)
    for path in _DEDOT:
        _dedot_at(audit, path)

    doc: dict[str, Any] = {}
    start, start_dt = _first_timestamp(event)
    if start is not None:
        doc["@timestamp"] = start
    ev: dict[str, Any] = {
        "kind": "event",
        "module": fs.EVENT_MODULE,
        "dataset": fs.EVENT_DATASET,
    }
    doc["event"] = ev
    doc["ecs"] = {"version": fs.ECS_VERSION}
    for top, plan in _COPY_PLAN:
        obj = event.get(top)
        if obj is None:
            continue
        for sub, dst in plan:
            value = obj if sub is None else obj.get(sub)
            if value is not None:
                parent = doc
                for key in dst[:-1]:
                    child = parent.get(key)
                    if child is None:
                        child = parent[key] = {}
                    parent = child
                parent[dst[-1]] = value

    if start is not None:
        ev["start"] = start
    stage_ts = event.get("stageTimestamp")
    if stage_ts is not None:
        end, end_dt = _parse_ts(stage_ts, "stageTimestamp")
        ev["end"] = end
        if start_dt is not None and event.get("requestReceivedTimestamp") is not None:
            delta = end_dt - start_dt
            ev["duration"] = ((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000

    ref = event.get("objectRef") or {}
    verb = event.get("verb")
    annotations = audit.get("annotations") or {}  # dedotted: also accepts pre-dedotted shippers
    decision = annotations.get("authorization_k8s_io/decision")
    status = event.get("responseStatus") or {}
    code = status.get("code")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise NormalizeError(f"field 'responseStatus.code' must be int, got {type(code).__name__}: {_short(code)}")
    ev["category"], ev["type"] = _category_type(verb, ref, decision, code)
    outcome = _outcome(decision, code)
    if outcome is not None:
        ev["outcome"] = outcome

    _source_ips(doc, event.get("sourceIPs"))
    _related_users(doc, event)
    _url(doc, event.get("requestURI"))
    orch = doc.setdefault("orchestrator", {})
    orch["type"] = "kubernetes"
    cluster = options.cluster
    if envelope:
        cluster = envelope.get("cluster") or cluster
    orch["cluster"] = {"name": cluster}
    api_version = ref.get("apiVersion")
    if api_version:
        group = ref.get("apiGroup")
        orch["api_version"] = f"{group}/{api_version}" if group else api_version

    kaudit: dict[str, Any] = {}
    _exec(kaudit, ref, event.get("requestURI"))
    bodies = [b for b in (event.get("requestObject"), event.get("responseObject")) if isinstance(b, dict)]
    if bodies:
        _pod_fields(kaudit, bodies)
        _rbac_fields(kaudit, bodies)
        if ref.get("resource") in fs.SERVICE_RESOURCES:
            _service_fields(kaudit, bodies)
    _bodies(audit, kaudit, options)
    if envelope:
        provider = envelope.get("provider")
        if provider:
            doc["cloud"] = {"provider": provider}
        env = {k: v for k, v in envelope.items() if k not in ("provider", "cluster")}
        if env:
            kaudit["envelope"] = env
    if kaudit:
        doc["kaudit"] = kaudit
    if options.keep_original:
        ev["original"] = orjson.dumps({k: v for k, v in event.items() if k != fs.ENVELOPE_KEY}).decode()
    doc["kubernetes"] = {"audit": audit}
    return doc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(obj: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _dedot_at(audit: dict, path: tuple[str, ...]) -> None:
    if len(path) == 1:
        obj = audit.get(path[0])
        if isinstance(obj, dict) and any("." in k for k in obj):
            audit[path[0]] = {k.replace(".", "_"): v for k, v in obj.items()}
        return
    top = audit.get(path[0])
    if not isinstance(top, dict):
        return
    obj = top.get(path[1])
    if isinstance(obj, dict) and any("." in k for k in obj):
        audit[path[0]] = {**top, path[1]: {k.replace(".", "_"): v for k, v in obj.items()}}  # never mutate the input


# ---- timestamps -----------------------------------------------------------------------------
def _parse_ts(value: Any, name: str) -> tuple[str, datetime]:
    """Any RFC3339/ISO-8601-ish timestamp -> (canonical ``...ffffffZ`` string, aware datetime)."""
    if not isinstance(value, str):
        raise NormalizeError(f"field {name!r} must be a timestamp string, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise NormalizeError(f"field {name!r} is not a valid timestamp: {_short(value)}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_UTC)
    elif dt.utcoffset():
        dt = dt.astimezone(_UTC)
    if len(value) == 27 and value[26] == "Z" and value[19] == ".":
        return value.replace(" ", "T"), dt
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), dt


def _first_timestamp(event: dict) -> tuple[str | None, datetime | None]:
    value = event.get("requestReceivedTimestamp")
    if value is not None:
        return _parse_ts(value, "requestReceivedTimestamp")
    for path in fs.TIMESTAMP_SOURCES:
        value = _get(event, path)
        if value is not None:
            return _parse_ts(value, ".".join(path))
    return None, None


# ---- event.category / type / outcome --------------------------------------------------------
def _category_type(verb: Any, ref: dict, decision: Any, code: Any) -> tuple[list[str], list[str]]:
    resource = ref.get("resource")
    sub = ref.get("subresource")
    if sub in fs.EXEC_SUBRESOURCES:
        category, types = ["process"], ["start"]
    elif resource in fs.IAM_RESOURCES:
        category, types = ["iam"], [fs.VERB_TYPES.get(verb, "info")]
    elif verb in fs.WRITE_VERBS:
        category, types = ["configuration"], [fs.VERB_TYPES[verb]]
    else:
        category, types = ["api"], [fs.VERB_TYPES.get(verb, "info")]
    if decision == "forbid" or code in (401, 403):
        types.append("denied")
    elif decision == "allow":
        types.append("allowed")
    return category, types


def _outcome(decision: Any, code: Any) -> str | None:
    if decision == "forbid":
        return "failure"
    if code is not None:
        return "failure" if code >= 400 else "success"
    if decision == "allow":
        return "success"
    return None


# ---- source / related / url -----------------------------------------------------------------
@lru_cache(maxsize=4096)
def _is_ip_cached(text: str) -> bool:
    return _is_ip(text)


def _is_ip(text: Any) -> bool:
    """Cheap check that ES/OpenSearch will accept ``text`` as an ``ip`` (same rule in painless)."""
    if not isinstance(text, str) or not text or len(text) > 45:
        return False
    if ":" in text:
        return all(c in "0123456789abcdefABCDEF:." for c in text) and text.count(":") >= 2
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def _source_ips(doc: dict, ips: Any) -> None:
    if not ips:
        return
    valid: list[str] = []
    for ip in ips:
        if isinstance(ip, str) and _is_ip_cached(ip) and ip not in valid:
            valid.append(ip)
    if valid:
        doc["source"] = {"ip": valid[0]}
        doc["related"] = {"ip": valid}


def _related_users(doc: dict, event: dict) -> None:
    users: list[str] = []
    for who in (event.get("user"), event.get("impersonatedUser")):
        if isinstance(who, dict):
            for key in ("username", "uid"):
                value = who.get(key)
                if isinstance(value, str) and value and value not in users:
                    users.append(value)
    if users:
        doc.setdefault("related", {})["user"] = users


def _url(doc: dict, uri: Any) -> None:
    if not uri:
        return
    path, sep, query = uri.partition("?")
    url = doc.setdefault("url", {})
    url["path"] = path
    if query:
        url["query"] = query


def _exec(kaudit: dict, ref: dict, uri: Any) -> None:
    if ref.get("subresource") not in fs.EXEC_SUBRESOURCES or not uri:
        return
    query = uri.partition("?")[2]
    if not query:
        return
    command: list[str] = []
    container = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "command":
            command.append(value)
        elif key == "container" and container is None:
            container = value
    out: dict[str, Any] = {}
    if command:
        out["command"] = " ".join(command)
    if container is not None:
        out["container"] = container
    if out:
        kaudit["exec"] = out


# ---- typed security fields ------------------------------------------------------------------
def _add(values: list, value: Any) -> None:
    if value is not None and value not in values:
        values.append(value)


def _pod_specs(body: dict) -> list[dict]:
    for path in fs.POD_SPEC_PATHS:
        spec = _get(body, path)
        if isinstance(spec, dict) and any(spec.get(k) is not None for k in fs.POD_SPEC_MARKERS):
            return [spec]
    return []


def _pod_fields(kaudit: dict, bodies: list[dict]) -> None:
    specs = [s for b in bodies for s in _pod_specs(b)]
    if not specs:
        return
    privileged = escalation = False
    flags = {name: False for _, name in fs.HOST_NAMESPACE_FLAGS}
    host_path: list = []
    host_ports: list = []
    caps: list = []
    images: list = []
    run_as: list = []
    account = None
    for spec in specs:
        for key, name in fs.HOST_NAMESPACE_FLAGS:
            if spec.get(key) is True:
                flags[name] = True
        for vol in spec.get("volumes") or ():
            if isinstance(vol, dict) and isinstance(vol.get("hostPath"), dict):
                _add(host_path, vol["hostPath"].get("path"))
        psc = spec.get("securityContext")
        if isinstance(psc, dict) and isinstance(psc.get("runAsUser"), int):
            _add(run_as, psc["runAsUser"])
        if account is None:
            for key in ("serviceAccountName", "serviceAccount"):
                if isinstance(spec.get(key), str) and spec[key]:
                    account = spec[key]
                    break
        for list_name in fs.CONTAINER_LISTS:
            for c in spec.get(list_name) or ():
                if not isinstance(c, dict):
                    continue
                image = c.get("image")
                if isinstance(image, str):
                    _add(images, image)
                for port in c.get("ports") or ():
                    if isinstance(port, dict) and isinstance(port.get("hostPort"), int):
                        _add(host_ports, port["hostPort"])
                sc = c.get("securityContext")
                if not isinstance(sc, dict):
                    continue
                if sc.get("privileged") is True:
                    privileged = True
                if sc.get("allowPrivilegeEscalation") is True:
                    escalation = True
                if isinstance(sc.get("runAsUser"), int):
                    _add(run_as, sc["runAsUser"])
                cap = sc.get("capabilities")
                if isinstance(cap, dict):
                    for name in cap.get("add") or ():
                        if isinstance(name, str):
                            _add(caps, name)
    pod: dict[str, Any] = {"privileged": privileged, "allow_privilege_escalation": escalation}
    for _, name in fs.HOST_NAMESPACE_FLAGS:
        pod[name.rsplit(".", 1)[1]] = flags[name]
    for key, values in (("host_path", host_path), ("host_ports", host_ports), ("capabilities_add", caps),
                        ("images", images), ("run_as_user", run_as)):
        if values:
            pod[key] = values
    if account is not None:
        pod["service_account"] = account
    kaudit["pod"] = pod


def _rbac_fields(kaudit: dict, bodies: list[dict]) -> None:
    lists: dict[str, list] = {}
    rbac: dict[str, Any] = {}
    for body in bodies:
        rules = body.get("rules")
        if isinstance(rules, list):
            for rule in rules:
                if not isinstance(rule, dict):
                    continue
                for src, dst in (("verbs", "verbs"), ("resources", "resources"), ("apiGroups", "api_groups"),
                                 ("resourceNames", "resource_names"), ("nonResourceURLs", "non_resource_urls")):
                    for v in rule.get(src) or ():
                        if isinstance(v, str):
                            _add(lists.setdefault(dst, []), v)
        role_ref = body.get("roleRef")
        if isinstance(role_ref, dict) and "role_ref" not in rbac:
            ref = {k: role_ref[k] for k in ("kind", "name") if isinstance(role_ref.get(k), str)}
            if ref:
                rbac["role_ref"] = ref
        subjects = body.get("subjects")
        if isinstance(subjects, list):
            for subj in subjects:
                if isinstance(subj, dict):
                    for k in ("kind", "name"):
                        if isinstance(subj.get(k), str):
                            _add(lists.setdefault("subjects." + k, []), subj[k])
    for key, values in lists.items():
        if values:
            if key.startswith("subjects."):
                rbac.setdefault("subjects", {})[key[9:]] = values
            else:
                rbac[key] = values
    if rbac:
        kaudit["rbac"] = rbac


def _service_fields(kaudit: dict, bodies: list[dict]) -> None:
    for body in bodies:
        svc_type = _get(body, ("spec", "type"))
        if isinstance(svc_type, str):
            kaudit["service"] = {"type": svc_type}
            return


# ---- bodies: managedFields, non-object bodies, truncation -----------------------------------
def _clean_body(body: Any) -> Any:
    if isinstance(body, dict):
        meta = body.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            meta = {k: v for k, v in meta.items() if k != "managedFields"}
            body = {**body, "metadata": meta}
        return body
    if isinstance(body, list):
        return {"json_patch": body}
    return {"value": body}


def _bodies(audit: dict, kaudit: dict, options: NormalizeOptions) -> None:
    truncated = False
    original = 0
    for key in ("requestObject", "responseObject"):
        if key not in audit or audit[key] is None:
            continue
        body = _clean_body(audit[key])
        size = len(orjson.dumps(body))
        original += size
        if size > options.max_value_bytes:
            body, cut = _cut_leaves(body, options.max_value_bytes)
            if cut:
                truncated = True
                size = len(orjson.dumps(body))
        if size > options.max_body_bytes:
            marker: dict[str, Any] = {fs.TRUNCATED_BODY_KEY: True, "original_bytes": size}
            for k in ("kind", "apiVersion"):
                if isinstance(body.get(k), str):
                    marker[k] = body[k]
            body = marker
            truncated = True
        audit[key] = body
    if truncated:
        kaudit["body"] = {"truncated": True, "original_bytes": original}


def _cut_leaves(value: Any, limit: int) -> tuple[Any, bool]:
    if isinstance(value, str):
        if len(value) * 4 <= limit:
            return value, False
        raw = value.encode()
        if len(raw) <= limit:
            return value, False
        return raw[:limit].decode("utf-8", "ignore") + fs.TRUNCATION_SUFFIX, True
    if isinstance(value, dict):
        out, cut = {}, False
        for k, v in value.items():
            out[k], c = _cut_leaves(v, limit)
            cut |= c
        return (out, True) if cut else (value, False)
    if isinstance(value, list):
        items, cut = [], False
        for v in value:
            nv, c = _cut_leaves(v, limit)
            items.append(nv)
            cut |= c
        return (items, True) if cut else (value, False)
    return value, False
