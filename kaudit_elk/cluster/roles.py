"""Least-privilege roles for each kaudit-elk command: pure definitions per flavor, thin apply.

Four roles per data stream namespace, named ``kaudit-<role>-<namespace>``:

- ``writer``   ``ingest`` and ``serve``: append audit documents to the stream and links to the integrity chain
               (no update, no delete)
- ``detector`` ``detect``: read the audit stream; write alerts, incidents and the detection state
- ``reader``   ``report``, dashboards, ``verify``, ``doctor``: read audit events, alerts, state and the chain
- ``admin``    ``bootstrap`` and ``retention``: templates, pipeline, lifecycle policy, rollover/delete

Elasticsearch roles use its named privileges (``create_doc`` appends but never overwrites);
OpenSearch roles use action names (its data streams accept only ``create`` operations, so
``indices:data/write/index`` there cannot overwrite an audit document either).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kaudit_elk.base.errors import EngineError
from kaudit_elk.cluster.templates import Names

ROLES: tuple[str, ...] = ("writer", "detector", "reader", "admin")

PURPOSE: dict[str, str] = {
    "writer": "ingest, serve: append audit documents (no update, no delete)",
    "detector": "detect: read audit events; write alerts and detection state",
    "reader": "report, dashboards: read audit events, alerts and state",
    "admin": "bootstrap, retention: templates, pipeline, lifecycle, rollover and delete of kaudit indices",
}


@dataclass(frozen=True)
class RoleDefinition:
    """One role as the engine's security API takes it."""

    role: str  # writer | detector | reader | admin
    name: str  # kaudit-<role>-<namespace>
    flavor: str
    body: dict[str, Any]

    @property
    def path(self) -> str:
        if self.flavor == "elasticsearch":
            return f"/_security/role/{self.name}"
        return f"/_plugins/_security/api/roles/{self.name}"


def role_name(role: str, namespace: str) -> str:
    return f"kaudit-{role}-{namespace}"


def _patterns(names: Names) -> dict[str, list[str]]:
    stream = names.stream
    return {
        "audit": [stream, f".ds-{stream}-*"],
        "alerts": [names.alerts_index, names.incidents_index],  # incidents are detect's output like alerts
        "state": [names.state_index],
        "integrity": [f"kaudit-integrity-{names.namespace}"],
    }


def _es_body(role: str, names: Names) -> dict[str, Any]:
    p = _patterns(names)
    audit = p["audit"][:1]  # privileges on a data stream cover its backing indices
    meta = {"managed_by": "kaudit-elk", "purpose": PURPOSE[role]}
    if role == "writer":
        # read: ingest looks up ids only after a rollover, so a resend never duplicates an event;
        # maintenance: refresh at the end of `ingest --refresh`.
        # state: read only, to tell that bootstrap ran before writing anything
        indices = [{"names": audit, "privileges": ["create_doc", "auto_configure", "view_index_metadata", "read",
                                                   "maintenance"]},
                   {"names": p["state"], "privileges": ["read"]},
                   # the integrity chain: append links (never overwrite), create the index on first use,
                   # refresh it at the end of `ingest --refresh`
                   {"names": p["integrity"], "privileges": ["create_doc", "create_index", "maintenance"]}]
    elif role == "detector":
        indices = [{"names": audit, "privileges": ["read", "view_index_metadata"]},
                   {"names": p["integrity"], "privileges": ["read", "view_index_metadata"]},
                   {"names": p["alerts"] + p["state"], "privileges": ["read", "write", "create_index",
                                                                      "view_index_metadata"]}]
    elif role == "reader":
        indices = [{"names": audit + p["alerts"] + p["state"] + p["integrity"],
                    "privileges": ["read", "view_index_metadata"]}]
    elif role == "admin":
        return {"cluster": ["monitor", "manage_index_templates", "manage_pipeline", "manage_ilm", "create_snapshot"],
                "indices": [{"names": audit + p["alerts"] + p["state"] + p["integrity"], "privileges": ["all"]}],
                "metadata": meta}
    else:
        raise ValueError(f"unknown role {role!r}")
    return {"cluster": ["monitor"], "indices": indices, "metadata": meta}


_OS_CLUSTER_BASE = ["cluster:monitor/main", "cluster:monitor/nodes/info", "cluster:monitor/health"]
_OS_READ = ["indices:data/read/search*", "indices:data/read/get", "indices:data/read/mget*",
            "indices:data/read/point_in_time/create", "indices:data/read/field_caps*",
            "indices:admin/mappings/get", "indices:monitor/settings/get"]


def _os_body(role: str, names: Names) -> dict[str, Any]:
    p = _patterns(names)
    desc = f"kaudit-elk {role}: {PURPOSE[role]}"
    if role == "writer":
        cluster = _OS_CLUSTER_BASE + ["indices:data/write/bulk"]
        index = [{"index_patterns": p["audit"], "allowed_actions": [
            "indices:data/write/index", "indices:data/write/bulk*", "indices:admin/mapping/put",
            "indices:admin/create", "indices:admin/data_stream/create", "indices:monitor/settings/get",
            "indices:data/read/search", "indices:admin/refresh*", "indices:admin/mappings/get"]},
                 {"index_patterns": p["state"], "allowed_actions": ["indices:data/read/get"]},
                 {"index_patterns": p["integrity"], "allowed_actions": [  # the integrity chain's links
                     # PUT _create runs as a shard bulk (bulk[s]); the item action (index) is checked as well,
                     # so update and delete stay refused; refresh at the end of `ingest --refresh`
                     "indices:data/write/index", "indices:data/write/bulk*", "indices:admin/create",
                     "indices:admin/mapping/put", "indices:admin/refresh*"]}]
    elif role == "detector":
        cluster = _OS_CLUSTER_BASE + ["indices:data/write/bulk", "indices:data/read/point_in_time/delete",
                                      "indices:data/read/search"]
        index = [{"index_patterns": p["audit"], "allowed_actions": _OS_READ},
                 {"index_patterns": p["integrity"], "allowed_actions": _OS_READ},
                 {"index_patterns": p["alerts"] + p["state"], "allowed_actions": _OS_READ + [
                     "indices:data/write/index", "indices:data/write/update", "indices:data/write/bulk*",
                     "indices:admin/mapping/put", "indices:admin/create", "indices:admin/refresh*"]}]
    elif role == "reader":
        cluster = _OS_CLUSTER_BASE + ["indices:data/read/scroll*"]  # verify scrolls the stream and the chain
        index = [{"index_patterns": p["audit"] + p["alerts"] + p["state"] + p["integrity"], "allowed_actions": _OS_READ}]
    elif role == "admin":
        cluster = _OS_CLUSTER_BASE + ["cluster_monitor", "cluster_manage_index_templates", "cluster_manage_pipelines",
                                      "cluster:admin/opendistro/ism/*", "indices:data/write/bulk"]
        index = [{"index_patterns": p["audit"] + p["alerts"] + p["state"] + p["integrity"],
                  "allowed_actions": ["indices_all"]}]
    else:
        raise ValueError(f"unknown role {role!r}")
    return {"description": desc, "cluster_permissions": cluster, "index_permissions": index}


def role_definitions(flavor: str, namespace: str) -> list[RoleDefinition]:
    """The four roles for one namespace on one flavor (pure)."""
    names = Names(namespace)
    build = _es_body if flavor == "elasticsearch" else _os_body
    return [RoleDefinition(r, role_name(r, namespace), flavor, build(r, names)) for r in ROLES]


def api_key_request(definition: RoleDefinition, expiration: str | None = None) -> dict[str, Any]:
    """An Elasticsearch API key request limited to exactly one kaudit role."""
    if definition.flavor != "elasticsearch":
        raise EngineError("API keys limited to a role are an Elasticsearch feature; on OpenSearch map a user "
                          f"or backend role to {definition.name}")
    body = dict(definition.body)
    body.pop("metadata", None)
    req: dict[str, Any] = {"name": definition.name, "role_descriptors": {definition.name: body},
                           "metadata": {"managed_by": "kaudit-elk", "role": definition.role}}
    if expiration:
        req["expiration"] = expiration
    return req


_ES_DENIED = re.compile(r"action \[(?P<action>.+?)\] is unauthorized for (?:user|API key id) \[(?P<who>[^\]]+)\]")
_ES_INDICES = re.compile(r"on indices \[(?P<indices>[^\]]*)\]")
_ES_GRANT = re.compile(r"this action is granted by the (?P<kind>cluster|index) privileges \[(?P<privs>[^\]]+)\]")
_OS_DENIED = re.compile(r"no permissions for \[(?P<action>.+?)\] and User \[name=(?P<who>[^,\]]+)")


def missing_privilege(reason: str) -> str | None:
    """Name the missing privilege in an engine's 403 text, or None when it is not a privilege error."""
    text = reason or ""
    m = _ES_DENIED.search(text)
    if m:
        action = m.group("action").split("[")[0]
        on, by = _ES_INDICES.search(text), _ES_GRANT.search(text)
        where = f" on {on.group('indices')}" if on else ""
        grant = f"; granted by the {by.group('kind')} privileges {by.group('privs')}" if by else ""
        return f"missing privilege: {action}{where} for {m.group('who')}{grant}{_hint(action)}"
    m = _OS_DENIED.search(text)
    if m:
        return f"missing privilege: {m.group('action')} for {m.group('who')}{_hint(m.group('action'))}"
    return None


def _hint(action: str) -> str:
    """Which kaudit role grants an action (a hint for the operator)."""
    if action.startswith(("indices:admin/index_template", "indices:admin/template", "cluster:admin/component_template",
                          "cluster:admin/ingest/pipeline", "cluster:admin/ilm", "cluster:admin/opendistro/ism",
                          "indices:admin/rollover", "indices:admin/delete")):
        return " (the kaudit admin role grants it: bootstrap --create-roles)"
    if action.startswith("indices:data/write"):
        return " (the kaudit writer role grants it for the audit stream, the detector role for alerts and state)"
    if action.startswith(("indices:data/read", "indices:admin/mappings/get", "indices:monitor")):
        return " (every kaudit role grants reads on what it uses: bootstrap --create-roles)"
    if action.startswith("cluster:monitor"):
        return " (every kaudit role grants it: bootstrap --create-roles)"
    return ""


def _security_request(engine: Any, method: str, path: str, body: Any = None, ignore: tuple[int, ...] = ()) -> Any:
    """A security API request; an engine without that API (no OpenSearch Security plugin, Elasticsearch
    security off) is a ConfigError saying so, not the engine's bare 'no handler found' 400."""
    from kaudit_elk.base.errors import ConfigError
    from kaudit_elk.cluster.engine import EngineRequestError

    try:
        return engine.request(method, path, body, ignore=ignore)
    except EngineRequestError as exc:
        if exc.status in (400, 404, 405) and "no handler found" in str(exc.body):
            raise ConfigError(f"this cluster has no security API ({method} {path} is not served: the OpenSearch "
                              "Security plugin is not installed, or Elasticsearch security is not enabled), so there "
                              "are no roles or API keys to create; without it every client has every privilege") from None
        raise


def apply_roles(engine: Any, definitions: list[RoleDefinition]) -> list[tuple[str, str]]:
    """PUT each role (create or replace); returns (name, 'created' | 'updated')."""
    out: list[tuple[str, str]] = []
    for d in definitions:
        existing = _security_request(engine, "GET", d.path, ignore=(404,))
        _security_request(engine, "PUT", d.path, d.body)
        out.append((d.name, "updated" if existing else "created"))
    return out


def create_api_key(engine: Any, definition: RoleDefinition, expiration: str | None = None) -> str:
    """Create an Elasticsearch API key limited to one role; returns its encoded form (id:key, base64)."""
    body = _security_request(engine, "POST", "/_security/api_key", api_key_request(definition, expiration))
    return str(body["encoded"])
