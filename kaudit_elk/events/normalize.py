"""Raw audit Event -> index document (pure, no I/O; the client-side hot path).

The mapping is declared in :mod:`kaudit_elk.events.fieldspec`; this module executes it. The same spec
drives the server-side ingest pipeline (:mod:`kaudit_elk.events.pipeline`), and an engine test proves
both produce the same documents.

Speed (``bench/bench_normalize.py``): ``normalize`` is one straight-line function over the
fieldspec tables as they are today (checked by tests/unit/test_normalize_spec.py; a change there
must be mirrored here), with no per-field helper calls, one C-level fetch of every known
top-level field and inline JSON type checks, a string-slicing fast path for
``YYYY-MM-DD[T ]HH:MM:SS[.f+][Z]`` timestamps (with a per-minute cache; any other form goes
through ``datetime.fromisoformat`` as before), and bodies that are copied only when managedFields
removal or truncation changes them. Output is byte-for-byte what the plain table walk produced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import methodcaller
from typing import Any
from urllib.parse import parse_qsl

import orjson

from kaudit_elk.base.vocab import KEPT_STAGES
from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.bodyfits import FITS as _FITS
from kaudit_elk.events.bodyshape import fit_body
from kaudit_elk.events.podfields import pod_fields


@dataclass(frozen=True)
class NormalizeOptions:
    """How documents are built; the defaults suit most clusters."""

    cluster: str = "default"
    namespace: str = fs.DEFAULT_NAMESPACE  # data_stream.namespace: the stream the documents go to
    keep_original: bool = False
    max_body_bytes: int = 64 * 1024  # per body, after managedFields removal
    max_value_bytes: int = 8 * 1024  # any single string leaf in a body
    stages: frozenset = field(default=frozenset(KEPT_STAGES))


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
    if type(event) is not dict and not isinstance(event, dict):
        raise NormalizeError(f"event must be a JSON object, got {type(event).__name__}")
    # Every known top-level field in one C-level pass, then their JSON types (RAW_TYPES) checked
    # inline; the loop in _check_types only runs to name the offending field (or to accept subclasses).
    (kind, api, level, audit_id, stage, uri, verb, user_agent, user, imp, ips, ref, status,
     annotations, received, stage_ts, legacy_ts, request, response) = map(event.get, _KEYS)
    if not ((type(kind) is str or kind is None) and (type(api) is str or api is None)
            and (type(level) is str or level is None) and (type(audit_id) is str or audit_id is None)
            and (type(stage) is str or stage is None) and (type(uri) is str or uri is None)
            and (type(verb) is str or verb is None) and (type(user_agent) is str or user_agent is None)
            and (type(user) is dict or user is None) and (type(imp) is dict or imp is None)
            and (type(ips) is list or ips is None) and (type(ref) is dict or ref is None)
            and (type(status) is dict or status is None) and (type(annotations) is dict or annotations is None)
            and (type(received) is str or received is None) and (type(stage_ts) is str or stage_ts is None)
            and (type(legacy_ts) is str or legacy_ts is None)):
        _check_types(event)
    if stage is not None and stage not in options.stages:
        return None

    audit = dict(event)
    envelope = audit.pop(_ENVELOPE_KEY, None)
    # dedot (DEDOTTED_OBJECTS): never mutate the input
    if annotations is not None:
        dedotted = _dedot(annotations)
        if dedotted is not annotations:
            audit["annotations"] = annotations = dedotted
    # dotted keys kept where the engine can place them (DOTTED_KEY_OBJECTS)
    if user is not None:
        extra = user.get("extra")
        if extra is not None and isinstance(extra, dict):
            placed = _place_dots(extra)
            if placed is not extra:
                audit["user"] = {**user, "extra": placed}
    if imp is not None:
        extra = imp.get("extra")
        if extra is not None and isinstance(extra, dict):
            placed = _place_dots(extra)
            if placed is not extra:
                audit["impersonatedUser"] = {**imp, "extra": placed}

    # @timestamp / event.start (TIMESTAMP_SOURCES, first present wins)
    if received is not None:
        start, start_us = _parse_ts(received, "requestReceivedTimestamp")
    elif stage_ts is not None:
        start, start_us = _parse_ts(stage_ts, "stageTimestamp")
    elif legacy_ts is not None:
        start, start_us = _parse_ts(legacy_ts, "timestamp")
    else:
        meta = event.get("metadata")
        created = meta.get("creationTimestamp") if isinstance(meta, dict) else None
        if created is not None:
            start, start_us = _parse_ts(created, "metadata.creationTimestamp")
        else:
            start = None
    ev: dict[str, Any] = {"kind": "event", "module": _MODULE, "dataset": _DATASET}
    stream = {"type": _STREAM_TYPE, "dataset": _DATASET, "namespace": options.namespace}
    if start is not None:
        doc: dict[str, Any] = {"@timestamp": start, "event": ev, "ecs": {"version": _ECS_VERSION},
                               "data_stream": stream}
    else:
        doc = {"event": ev, "ecs": {"version": _ECS_VERSION}, "data_stream": stream}

    # plain copies (fieldspec.COPIES, in its order)
    if verb is not None:
        ev["action"] = verb
    users: list[str] = []
    out_user: dict[str, Any] | None = None
    if user is not None:
        name = user.get("username")
        uid = user.get("uid")
        groups = user.get("groups")
        if name is not None or uid is not None or groups is not None:
            out_user = doc["user"] = {}
            if name is not None:
                out_user["name"] = name
                if name and isinstance(name, str):
                    users.append(name)
            if uid is not None:
                out_user["id"] = uid
                if uid and isinstance(uid, str) and uid not in users:
                    users.append(uid)
            if groups is not None:
                out_user["group"] = {"name": groups}
    if imp is not None:
        name = imp.get("username")
        uid = imp.get("uid")
        groups = imp.get("groups")
        if name is not None or uid is not None or groups is not None:
            effective: dict[str, Any] = {}
            if name is not None:
                effective["name"] = name
                if name and isinstance(name, str) and name not in users:
                    users.append(name)
            if uid is not None:
                effective["id"] = uid
                if uid and isinstance(uid, str) and uid not in users:
                    users.append(uid)
            if groups is not None:
                effective["group"] = {"name": groups}
            if out_user is None:
                doc["user"] = {"effective": effective}
            else:
                out_user["effective"] = effective
    if user_agent is not None:
        doc["user_agent"] = {"original": user_agent}
    code = None
    if status is not None:
        code = status.get("code")
        if code is not None:
            doc["http"] = {"response": {"status_code": code}}
    if uri is not None:
        url = doc["url"] = {"original": uri}
    orch: dict[str, Any] | None = None
    if ref is not None:
        resource = ref.get("resource")
        sub = ref.get("subresource")
        namespace = ref.get("namespace")
        obj_name = ref.get("name")
        if namespace is not None or resource is not None or obj_name is not None:
            orch = doc["orchestrator"] = {}
            if namespace is not None:
                orch["namespace"] = namespace
            if resource is not None:
                orch["resource"] = {"type": resource} if obj_name is None else {"type": resource, "name": obj_name}
            elif obj_name is not None:
                orch["resource"] = {"name": obj_name}
    else:
        ref = _EMPTY
        resource = sub = None

    # event.start / end / duration
    if start is not None:
        ev["start"] = start
    if stage_ts is not None:
        if received is not None:
            end, end_us = _parse_ts(stage_ts, "stageTimestamp")
            ev["end"] = end
            duration = (end_us - start_us) * 1000
            if not -_I64 <= duration < _I64:
                raise NormalizeError("fields 'requestReceivedTimestamp' and 'stageTimestamp' are over 292 years "
                                     "apart (event.duration must fit in 64 bits)")
            ev["duration"] = duration
        else:  # start came from stageTimestamp
            ev["end"] = start

    # event.category / type / outcome
    decision = annotations.get("authorization_k8s_io/decision") if annotations else None
    if code is not None and code.__class__ is not int and (not isinstance(code, int) or isinstance(code, bool)):
        raise NormalizeError(f"field 'responseStatus.code' must be int, got {type(code).__name__}: {_short(code)}")
    if sub in _EXEC_SUBRESOURCES:
        category, types = ["process"], ["start"]
    elif resource in _IAM_RESOURCES:
        category, types = ["iam"], [_VERB_TYPES.get(verb, "info")]
    elif verb in _WRITE_VERBS:
        category, types = ["configuration"], [_VERB_TYPES[verb]]
    else:
        category, types = ["api"], [_VERB_TYPES.get(verb, "info")]
    if decision == "forbid":
        types.append("denied")
        ev["category"] = category
        ev["type"] = types
        ev["outcome"] = "failure"
    else:
        if code == 401 or code == 403:
            types.append("denied")
        elif decision == "allow":
            types.append("allowed")
        ev["category"] = category
        ev["type"] = types
        if code is not None:
            ev["outcome"] = "failure" if code >= 400 else "success"
        elif decision == "allow":
            ev["outcome"] = "success"

    # source.ip / related.ip / related.user
    related = None
    if ips and len(ips) == 1 and type(ips[0]) is str:  # the usual case
        ip = ips[0]
        good = _IP_CACHE.get(ip)
        if good is None:
            good = _learn_ip(ip)
        if good:
            doc["source"] = {"ip": ip}
            related = doc["related"] = {"ip": [ip]}
    elif ips:
        valid: list[str] = []
        for ip in ips:
            if isinstance(ip, str):
                good = _IP_CACHE.get(ip)
                if good is None:
                    good = _learn_ip(ip)
                if good and ip not in valid:
                    valid.append(ip)
        if valid:
            doc["source"] = {"ip": valid[0]}
            related = doc["related"] = {"ip": valid}
    if users:
        if related is None:
            doc["related"] = {"user": users}
        else:
            related["user"] = users

    # url.path / url.query
    if uri:
        path, _, query = uri.partition("?")
        url["path"] = path
        if query:
            url["query"] = query

    # orchestrator.*
    if orch is None:
        orch = doc["orchestrator"] = {}
    orch["type"] = "kubernetes"
    cluster = options.cluster
    if envelope:
        cluster = envelope.get("cluster") or cluster
    orch["cluster"] = {"name": cluster}
    api_version = ref.get("apiVersion")
    if api_version:
        group = ref.get("apiGroup")
        orch["api_version"] = f"{group}/{api_version}" if group else api_version

    # kaudit.* (typed copies taken before any truncation), bodies
    kaudit: dict[str, Any] = {}
    if uri and sub in _EXEC_SUBRESOURCES:
        _exec(kaudit, uri)
    if request is not None or response is not None:
        bodies = [b for b in (request, response) if isinstance(b, dict)]
        if bodies:
            specs = [s for s in map(_pod_spec, bodies) if s is not None]
            if specs:
                kaudit["pod"] = pod_fields(specs)  # generated from the field spec (events/podfields.py)
            _rbac_fields(kaudit, bodies)
            if resource in _SERVICE_RESOURCES:
                _service_fields(kaudit, bodies)
        _bodies(audit, kaudit, options, request, response)
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
        ev["original"] = orjson.dumps({k: v for k, v in event.items() if k != _ENVELOPE_KEY}).decode()
    doc["kubernetes"] = {"audit": audit}
    return doc


# ---- tables -----------------------------------------------------------------------------------
#: Top-level fields read in one pass, in the order ``normalize`` unpacks them. normalize executes
#: the fieldspec tables inline for speed; tests/unit/test_normalize_spec.py checks, table by table,
#: that its behaviour still follows kaudit_elk.events.fieldspec.
_KEYS = ("kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "userAgent", "user",
         "impersonatedUser", "sourceIPs", "objectRef", "responseStatus", "annotations",
         "requestReceivedTimestamp", "stageTimestamp", "timestamp", "requestObject", "responseObject")
_RAW_TYPES = fs.RAW_TYPES
_CACHE_MAX = 4096

_ENVELOPE_KEY = fs.ENVELOPE_KEY
_MODULE = fs.EVENT_MODULE
_DATASET = fs.EVENT_DATASET
_STREAM_TYPE = fs.DATA_STREAM_TYPE
_ECS_VERSION = fs.ECS_VERSION
_EXEC_SUBRESOURCES = fs.EXEC_SUBRESOURCES
_IAM_RESOURCES = fs.IAM_RESOURCES
_WRITE_VERBS = fs.WRITE_VERBS
_VERB_TYPES = fs.VERB_TYPES
_SERVICE_RESOURCES = fs.SERVICE_RESOURCES
_POD_MARKERS = frozenset(fs.POD_SPEC_MARKERS)
#: kaudit.body keys of the body copies (requestObject, responseObject order)
_BODY_COPY_KEYS = tuple(field.rsplit(".", 1)[1] for _, field in fs.BODY_COPIES)
_UNTYPED_KEY = fs.UNTYPED_FIELD.rsplit(".", 1)[1]
_EMPTY: dict = {}
_I64 = 1 << 63
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


def _check_types(event: dict) -> None:
    """Name the first field (in event order) whose JSON type is wrong."""
    for key, value in event.items():
        types = _RAW_TYPES.get(key)
        if types is not None and value is not None and not isinstance(value, types):
            raise NormalizeError(f"field {key!r} must be {types[0].__name__}, got {type(value).__name__}: {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(obj: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


_dedot_key = methodcaller("replace", ".", "_")


def _dedot(obj: dict) -> dict:
    """``obj`` itself when no key has a dot, else a copy with dotted keys rewritten ("." -> "_")."""
    try:
        if "." not in "".join(obj):
            return obj
    except TypeError:  # a non-string key: same checks (and errors) as the plain loop
        if not any("." in k for k in obj):
            return obj
        return {k.replace(".", "_"): v for k, v in obj.items()}
    return dict(zip(map(_dedot_key, obj), obj.values()))


def _placeable(key: Any, keys: Any) -> bool:
    """A dotted key the engine can index as a path: no empty step, no other key of the object on its path."""
    parts = key.split(".")
    if "" in parts:
        return False
    prefix = parts[0]
    for part in parts[1:]:
        if prefix in keys:
            return False
        prefix = f"{prefix}.{part}"
    return True


def _place_dots(obj: dict) -> dict:
    """``obj`` itself when every dotted key can stay as sent, else a copy with the others dedotted."""
    try:
        if "." not in "".join(obj):
            return obj
    except TypeError:  # a non-string key (not from JSON): only string keys can hold dots
        if not any(isinstance(k, str) and "." in k for k in obj):
            return obj
    bad = [k for k in obj if isinstance(k, str) and "." in k and not _placeable(k, obj)]
    if not bad:
        return obj
    return {(k.replace(".", "_") if k in bad else k): v for k, v in obj.items()}


# ---- timestamps -----------------------------------------------------------------------------
#: "YYYY-MM-DD[T ]HH:MM" -> ("YYYY-MM-DDTHH:MM", UTC epoch seconds), or None when not that form.
_MINUTES: dict[str, tuple[str, int] | None] = {}
_SECONDS = {f"{i:02d}": i for i in range(60)}
_MISSING = object()


def _learn_minute(prefix: str) -> tuple[str, int] | None:
    minute = None
    if (prefix[4] == "-" and prefix[7] == "-" and prefix[13] == ":" and prefix[10] in ("T", " ")
            and prefix[0] != "0" and prefix.isascii()):
        y, mo, d, h, mi = prefix[0:4], prefix[5:7], prefix[8:10], prefix[11:13], prefix[14:16]
        if y.isdigit() and mo.isdigit() and d.isdigit() and h.isdigit() and mi.isdigit():
            try:
                dt = datetime(int(y), int(mo), int(d), int(h), int(mi), tzinfo=_UTC)
            except ValueError:
                pass
            else:
                delta = dt - _EPOCH
                minute = (f"{prefix[:10]}T{prefix[11:]}", delta.days * 86400 + delta.seconds)
    if len(_MINUTES) >= _CACHE_MAX:
        _MINUTES.clear()
    _MINUTES[prefix] = minute
    return minute


def _parse_ts(value: Any, name: str) -> tuple[str, int]:
    """RFC3339/ISO-8601-ish timestamp -> (canonical ``...ffffffZ`` string, UTC epoch microseconds).

    ``YYYY-MM-DD[T ]HH:MM:SS``, optionally ``.`` and 1+ digits, optionally ``Z`` (what apiservers
    and most shippers write) is read by slicing; anything else by ``datetime.fromisoformat``.
    """
    if type(value) is str and len(value) >= 19 and value[16] == ":" and value.isascii():
        minute = _MINUTES.get(value[:16], _MISSING)
        if minute is _MISSING:
            minute = _learn_minute(value[:16])
        second = _SECONDS.get(value[17:19])
        if minute is not None and second is not None:
            size = len(value)
            if size == 27:
                if value[26] == "Z" and value[19] == ".":  # the apiserver's own form
                    frac = value[20:26]
                    if frac.isdigit():
                        return (value if value[10] == "T" else minute[0] + value[16:]), \
                            (minute[1] + second) * 1_000_000 + int(frac)
                    return _parse_ts_slow(value, name)
            if size == 19 or (size == 20 and value[19] == "Z"):
                return f"{minute[0]}{value[16:19]}.000000Z", (minute[1] + second) * 1_000_000
            if value[19] == ".":
                frac = value[20:-1] if value[-1] == "Z" else value[20:]
                if frac.isdigit():
                    frac = frac[:6] if len(frac) >= 6 else frac.ljust(6, "0")
                    return f"{minute[0]}{value[16:19]}.{frac}Z", (minute[1] + second) * 1_000_000 + int(frac)
    return _parse_ts_slow(value, name)


def _parse_ts_slow(value: Any, name: str) -> tuple[str, int]:
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
    delta = dt - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if len(value) == 27 and value[26] == "Z" and value[19] == ".":
        return value.replace(" ", "T"), micros
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), micros


# ---- source / exec --------------------------------------------------------------------------
_IP_CACHE: dict[str, bool] = {}


def _learn_ip(text: str) -> bool:
    good = _is_ip(text)
    if len(_IP_CACHE) >= _CACHE_MAX:
        _IP_CACHE.clear()
    _IP_CACHE[text] = good
    return good


def client_ip(ips: Any) -> str | None:
    """The ``source.ip`` of an event with these ``sourceIPs``: the first entry that is an IP."""
    if isinstance(ips, list):
        for ip in ips:
            if _is_ip(ip):
                return ip
    return None


def _is_ip(text: Any) -> bool:
    """Cheap check that ES/OpenSearch will accept ``text`` as an ``ip`` (same rule in painless)."""
    if not isinstance(text, str) or not text or len(text) > 45:
        return False
    if ":" in text:
        return all(c in "0123456789abcdefABCDEF:." for c in text) and text.count(":") >= 2
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def _exec(kaudit: dict, uri: str) -> None:
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
def _is_pod_spec(spec: Any) -> bool:
    if not isinstance(spec, dict) or spec.keys().isdisjoint(_POD_MARKERS):
        return False
    return (spec.get("containers") is not None or spec.get("initContainers") is not None
            or spec.get("ephemeralContainers") is not None or spec.get("volumes") is not None
            or spec.get("hostNetwork") is not None or spec.get("hostPID") is not None
            or spec.get("hostIPC") is not None)


def _pod_spec(body: dict) -> dict | None:
    """The pod spec of a body (POD_SPEC_PATHS, first match wins), or None."""
    spec = body.get("spec")
    if isinstance(spec, dict):
        if _is_pod_spec(spec):
            return spec
        template = spec.get("template")
        if isinstance(template, dict):
            inner = template.get("spec")
            if _is_pod_spec(inner):
                return inner  # type: ignore[return-value]
        job = spec.get("jobTemplate")
        if isinstance(job, dict):
            inner = _get(job, ("spec", "template", "spec"))
            if _is_pod_spec(inner):
                return inner  # type: ignore[return-value]
    template = body.get("template")
    if isinstance(template, dict):
        inner = template.get("spec")
        if _is_pod_spec(inner):
            return inner  # type: ignore[return-value]
    return None


_RULE_LISTS = (("verbs", "verbs"), ("resources", "resources"), ("apiGroups", "api_groups"),
               ("resourceNames", "resource_names"), ("nonResourceURLs", "non_resource_urls"))


def _rbac_fields(kaudit: dict, bodies: list[dict]) -> None:
    lists: dict[str, list] = {}
    rbac: dict[str, Any] = {}
    for body in bodies:
        rules = body.get("rules")
        role_ref = body.get("roleRef")
        subjects = body.get("subjects")
        if rules is None and role_ref is None and subjects is None:
            continue
        if isinstance(rules, list):
            for rule in rules:
                if not isinstance(rule, dict):
                    continue
                for src, dst in _RULE_LISTS:
                    items = rule.get(src)
                    if items and type(items) is list:  # as the pipeline: a string or object here lists nothing
                        values = lists.get(dst)
                        for v in items:
                            if isinstance(v, str):
                                if values is None:
                                    values = lists[dst] = [v]
                                elif v not in values:
                                    values.append(v)
        if isinstance(role_ref, dict) and "role_ref" not in rbac:
            ref = {k: role_ref[k] for k in ("kind", "name") if isinstance(role_ref.get(k), str)}
            if ref:
                rbac["role_ref"] = ref
        if isinstance(subjects, list):
            for subj in subjects:
                if isinstance(subj, dict):
                    for k in ("kind", "name"):
                        if isinstance(subj.get(k), str):
                            values = lists.setdefault("subjects." + k, [])
                            if subj[k] not in values:
                                values.append(subj[k])
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
def _bodies(audit: dict, kaudit: dict, options: NormalizeOptions, request: Any, response: Any) -> None:
    truncated = False
    original = 0
    max_value = options.max_value_bytes
    max_body = options.max_body_bytes
    dumps = orjson.dumps
    copies: dict[str, Any] = {}
    untyped: list[str] = []
    for (key, raw), copy in zip((("requestObject", request), ("responseObject", response)), _BODY_COPY_KEYS):
        if raw is None:
            continue
        if isinstance(raw, dict):
            body = raw
            meta = raw.get("metadata")
            if meta is not None and isinstance(meta, dict) and "managedFields" in meta:
                body = {**raw, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        elif isinstance(raw, list):
            body = {"json_patch": raw}
        else:
            body = {"value": raw}
        size = len(dumps(body))
        original += size
        if size > max_value:
            body, cut = _cut_leaves(body, max_value)
            if cut:
                truncated = True
                size = len(dumps(body))
        if size > max_body:
            marker: dict[str, Any] = {fs.TRUNCATED_BODY_KEY: True, "original_bytes": size}
            for k in ("kind", "apiVersion"):
                if isinstance(body.get(k), str):
                    marker[k] = body[k]
            body = marker
            truncated = True
        # the typed body without what its mapping cannot take (fieldspec.BODY_SHAPES); the copy keeps it all
        typed = body if _FITS[key](body) else fit_body(body, key, untyped)  # lean check first (bodyfits.py)
        if typed is not raw:
            audit[key] = typed
        copies[copy] = body  # the same (cleaned, possibly truncated) body, flattened for kaudit's searches
    if truncated:
        copies.update(truncated=True, original_bytes=original)
    if untyped:
        copies[_UNTYPED_KEY] = sorted(set(untyped))
    if copies:
        kaudit["body"] = copies


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
