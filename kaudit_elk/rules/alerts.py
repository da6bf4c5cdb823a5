"""Alert documents: deterministic ids, severities and the ECS-style fields written to NDJSON/indices."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import orjson

from kaudit_elk.base.timeparse import epoch
from kaudit_elk.base.vocab import SEVERITIES as SEVERITIES  # re-exported (alerts.SEVERITIES)
from kaudit_elk.events.normalize import client_ip
from kaudit_elk.rules.response import notes_for


if TYPE_CHECKING:
    from kaudit_elk.rules.loader import PackRule

_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_TIME_FIELDS = ("requestReceivedTimestamp", "stageTimestamp", "timestamp")

Alert = dict[str, Any]


def severity_rank(level: str) -> int:
    """Order of a severity name (informational=0 … critical=4); unknown names rank as medium."""
    return _RANK.get(level.lower(), 2)


def event_time(event: Mapping[str, Any]) -> float | None:
    """Event time in epoch seconds (requestReceivedTimestamp, else stageTimestamp, else legacy timestamp)."""
    for key in _TIME_FIELDS:
        t = epoch(event.get(key))
        if t is not None:
            return t
    return None


def iso(t: float | None) -> str | None:
    """Epoch seconds → ISO8601 UTC with microseconds and Z."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert_id(rule_id: str, audit_ids: Sequence[str], group: Mapping[str, Any] | None = None,
             window_start: float | None = None) -> str:
    """Deterministic id: hash of rule id + evidence auditIDs (+ group values and window start)."""
    parts: list[Any] = [rule_id, sorted(audit_ids)]
    if group is not None:
        parts.append(sorted((k, "" if v is None else str(v)) for k, v in group.items()))
    if window_start is not None:
        parts.append(iso(window_start))
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:32]


def _rule_fields(rule: "PackRule") -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": rule.id,
        "name": rule.title,
        "level": rule.level,
        "description": rule.description,
        "kind": rule.kind,
        "audit_level": rule.audit_level,
    }
    note = notes_for(rule.id)
    if note is not None:
        fields["response"] = note  # triage and response guidance (detections/response.yml)
    return fields


def _event_iso(event: Mapping[str, Any], t: float | None) -> str | None:
    """The event's own RFC3339 UTC timestamp when it has one (cheaper than reformatting), else iso(t)."""
    for key in _TIME_FIELDS:
        v = event.get(key)
        if isinstance(v, str) and v.endswith("Z") and "T" in v:
            return v
    return iso(t)


NODE_PREFIX = "system:node:"
#: The key of ``user.extra`` naming the node a pod-bound service-account token was issued for.
TOKEN_NODE_KEY = "authentication.kubernetes.io/node-name"


def credential_node(user: Mapping[str, Any]) -> str | None:
    """The node an identity's credential belongs to: a kubelet's own node (``system:node:NAME``), or the
    node of the pod a bound service-account token was issued for (``user.extra``'s node-name, set by the
    apiserver since Kubernetes 1.30); None for anything else."""
    name = str(user.get("username") or "")
    if name.startswith(NODE_PREFIX) and len(name) > len(NODE_PREFIX):
        return name[len(NODE_PREFIX):]
    extra = user.get("extra")
    if isinstance(extra, Mapping):
        value = extra.get(TOKEN_NODE_KEY)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
    return None


def single_alert(rule: "PackRule", event: Mapping[str, Any], t: float | None) -> Alert:
    """Alert for one matching request (one per auditID)."""
    aid = str(event.get("auditID") or "")
    ts = _event_iso(event, t)
    obj = event.get("objectRef") or {}
    alert: Alert = {
        "@timestamp": ts,
        "rule": _rule_fields(rule),
        "kaudit": {"alert": {
            "id": alert_id(rule.id, [aid] if aid else [orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()]),
            "severity": rule.level,
            "audit_ids": [aid] if aid else [],
            "first_event_time": ts,
            "last_event_time": ts,
            "group": {},
            "count": 1,
        }},
        "tags": list(rule.tags),
        "threat": {"technique": {"id": rule.attack}},
        "event": {"kind": "alert", "action": event.get("verb")},
    }
    user = event.get("user")
    if isinstance(user, dict) and user.get("username") is not None:
        alert["user"] = {"name": user["username"]}
        node = credential_node(user)
        if node is not None:
            alert["kaudit"]["alert"]["node"] = node
    ip = client_ip(event.get("sourceIPs"))  # as source.ip in the event's document: the first valid IP
    if ip is not None:
        alert["source"] = {"ip": ip}
    ua = event.get("userAgent")
    if ua:
        alert["user_agent"] = {"original": ua}
    if isinstance(obj, dict) and obj:
        orch: dict[str, Any] = {"type": "kubernetes"}
        if obj.get("namespace"):
            orch["namespace"] = obj["namespace"]
        res = obj.get("resource")
        if res:
            orch["resource"] = {"type": res + (f"/{obj['subresource']}" if obj.get("subresource") else "")}
            if obj.get("name"):
                orch["resource"]["name"] = obj["name"]
        alert["orchestrator"] = orch
    status = event.get("responseStatus") or {}
    alert["kubernetes"] = {"audit": {k: v for k, v in {
        "auditID": aid or None,
        "stage": event.get("stage"),
        "level": event.get("level"),
        "verb": event.get("verb"),
        "requestURI": event.get("requestURI"),
        "objectRef": obj or None,
        "responseStatus": {"code": status.get("code")} if isinstance(status, dict) and "code" in status else None,
    }.items() if v is not None}}
    return alert


def group_alert(rule: "PackRule", group: Mapping[str, Any], evidence: Sequence[tuple[float, str]],
                extra: Mapping[str, Any] | None = None) -> Alert:
    """Alert for a correlation window: evidence is [(event time, auditID)]."""
    times = [t for t, _ in evidence]
    ids = [a for _, a in evidence if a]
    start = min(times) if times else None
    alert: Alert = {
        "@timestamp": iso(max(times) if times else None),
        "rule": _rule_fields(rule),
        "kaudit": {"alert": {
            "id": alert_id(rule.id, ids, group, start),
            "severity": rule.level,
            "audit_ids": sorted(set(ids)),
            "first_event_time": iso(start),
            "last_event_time": iso(max(times) if times else None),
            "group": dict(group),
            "count": len(evidence),
            **dict(extra or {}),
        }},
        "tags": list(rule.tags),
        "threat": {"technique": {"id": rule.attack}},
        "event": {"kind": "alert"},
    }
    if group.get("user.username") is not None:
        alert["user"] = {"name": group["user.username"]}
    ip = client_ip([group.get("sourceIPs")])  # only a valid IP goes in the alert's source.ip
    if ip is not None:
        alert["source"] = {"ip": ip}
    if group.get("objectRef.namespace") is not None:
        alert["orchestrator"] = {"type": "kubernetes", "namespace": group["objectRef.namespace"]}
    return alert
