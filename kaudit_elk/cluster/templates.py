"""Desired cluster objects for a flavor: lifecycle policy, ingest pipeline, templates.

Pure: renders ``index_templates/*.j2`` with the typed fields of :mod:`kaudit_elk.events.fieldspec`
and returns :class:`DesiredObject` values in install order. ``bootstrap`` compares them with
what the cluster has.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kaudit_elk import __version__
from kaudit_elk.events import fieldspec
from kaudit_elk.base.content import render
from kaudit_elk.cluster.engine import Capabilities
from kaudit_elk.cluster.integrity import MAPPING, integrity_index

MANAGED_BY = "kaudit-elk"
#: Fields set by ``kaudit-elk ingest``/``serve`` (not by the normalizer): when the event reached us.
CLIENT_FIELDS = {"event.ingested": "date", "tags": "keyword"}
DATASET = "kubernetes.audit_logs"


@dataclass(frozen=True)
class Names:
    """Every name kaudit-elk uses in a cluster for one namespace."""

    namespace: str

    @property
    def stream(self) -> str:
        return f"logs-{DATASET}-{self.namespace}"

    @property
    def alerts_index(self) -> str:
        return f"kaudit-alerts-{self.namespace}"

    @property
    def state_index(self) -> str:
        return f"kaudit-state-{self.namespace}"

    @property
    def incidents_index(self) -> str:
        return f"kaudit-incidents-{self.namespace}"

    @property
    def pipeline(self) -> str:
        return f"kaudit-audit-{self.namespace}"

    @property
    def write_once_pipeline(self) -> str:
        return f"kaudit-write-once-{self.namespace}"

    @property
    def integrity_index(self) -> str:
        return integrity_index(self.namespace)

    @property
    def integrity_template(self) -> str:
        return f"kaudit-integrity-{self.namespace}"

    @property
    def policy(self) -> str:
        return f"kaudit-audit-{self.namespace}"

    @property
    def audit_template(self) -> str:
        return f"kaudit-audit-{self.namespace}"

    @property
    def settings_component(self) -> str:
        return f"kaudit-audit-settings-{self.namespace}"

    @property
    def mappings_component(self) -> str:
        return f"kaudit-audit-mappings-{self.namespace}"

    @property
    def alerts_template(self) -> str:
        return f"kaudit-alerts-{self.namespace}"

    @property
    def state_template(self) -> str:
        return f"kaudit-state-{self.namespace}"

    @property
    def incidents_template(self) -> str:
        return f"kaudit-incidents-{self.namespace}"


@dataclass(frozen=True)
class DesiredObject:
    """One object to install: its kind, name, API path and body (with the ownership marker)."""

    kind: str  # ilm_policy | ism_policy | ingest_pipeline | component_template | index_template
    name: str
    path: str
    body: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class BootstrapOptions:
    namespace: str = "kaudit"
    cluster: str = "default"
    retention_days: int = 90
    rollover_age: str = "1d"
    rollover_size: str = "50gb"
    shards: int = 1
    pipeline: bool = True  # install the server-side pipeline as the stream's default pipeline
    write_once: bool = True  # OpenSearch: the write-once final pipeline on the stream and the integrity index


def digest_of(body: Any) -> str:
    """Stable short digest of a JSON body (key order independent)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def mapping_properties(typed: dict[str, str], flat_fields: tuple[str, ...], flat_type: str, *,
                       constants: dict[str, str] | None = None, constant_keyword: bool = False) -> dict[str, Any]:
    """Nest dotted ``name -> type`` pairs into an ES/OpenSearch ``properties`` tree.

    ``constant_keyword`` fields (fieldspec) become ``constant_keyword`` with their value from ``constants``
    when the engine has the type, else ``keyword``; ``exact_text`` fields become ``text`` analysed as
    one term, with a ``keyword`` multi-field."""
    root: dict[str, Any] = {}
    constants = constants or {}

    def leaf(field_type: str, dotted: str) -> dict[str, Any]:
        if field_type == "keyword":
            return {"type": "keyword", "ignore_above": 8191}
        if field_type == "constant_keyword":
            if not constant_keyword:
                return {"type": "keyword", "ignore_above": 8191}
            return {"type": "constant_keyword", "value": constants[dotted]} if dotted in constants \
                else {"type": "constant_keyword"}
        if field_type == "exact_text":
            return {"type": "text", "analyzer": "keyword", "norms": False, "index_options": "docs",
                    "fields": {fieldspec.EXACT_SUBFIELD: {"type": "keyword", "ignore_above": 8191}}}
        if field_type == "text":
            return {"type": "text"}
        if field_type in ("date", "ip", "long", "integer", "boolean"):
            return {"type": field_type}
        if field_type == "flat":
            spec: dict[str, Any] = {"type": flat_type}
            if flat_type == "flattened":
                spec.update({"ignore_above": 8191, "depth_limit": 30})
            return spec
        raise ValueError(f"unsupported field type {field_type!r}")

    items = sorted(typed.items()) + [(name, "flat") for name in flat_fields]
    for dotted, field_type in items:
        parts = dotted.split(".")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})
            if "properties" not in node:
                raise ValueError(f"{dotted}: parent {part} is already a leaf")
            node = node["properties"]
        spec = leaf(field_type, dotted)
        if dotted == "event.original":
            spec = {"type": "keyword", "index": False, "doc_values": False}
        node[parts[-1]] = spec
    return root


def stream_constants(namespace: str) -> dict[str, str]:
    """The ``data_stream.*`` values of every document in the stream of ``namespace``."""
    return {"data_stream.type": fieldspec.DATA_STREAM_TYPE, "data_stream.dataset": fieldspec.EVENT_DATASET,
            "data_stream.namespace": namespace}


def _object_nodes(properties: dict[str, Any], paths: Any, dynamic: bool) -> None:
    """Make each dotted path of ``paths`` an ``object`` node with the given ``dynamic`` setting."""
    for dotted in paths:
        node: dict[str, Any] = {"properties": properties}
        for part in dotted.split("."):
            node = node["properties"].setdefault(part, {"properties": {}})
        node["type"] = "object"
        node["dynamic"] = dynamic


def _keyword_objects(properties: dict[str, Any]) -> None:
    """Objects with open key sets (annotations, user.extra) take new keys dynamically, as keywords."""
    _object_nodes(properties, fieldspec.KEYWORD_OBJECTS, True)


def _closed_bodies(properties: dict[str, Any]) -> None:
    """The raw bodies are objects that index only Elastic's typed paths (the rest stays in ``_source``)."""
    _object_nodes(properties, fieldspec.ELASTIC_BODY_ROOTS, False)


def _meta(kind: str) -> dict[str, Any]:
    return {"managed_by": MANAGED_BY, "version": __version__, "kind": kind}


def _finish(kind: str, name: str, path: str, body: dict[str, Any], marker: str) -> DesiredObject:
    """Stamp the ownership marker and content digest into the body (where the engine keeps it)."""
    digest = digest_of(body)
    if marker == "_meta":
        body["_meta"] = dict(body.get("_meta") or {}, digest=digest)
    elif marker == "policy._meta":
        body["policy"]["_meta"] = dict(body["policy"].get("_meta") or {}, digest=digest)
    elif marker == "description":
        body["description"] = f"{body.get('description', '').strip()} [{MANAGED_BY} {__version__} {digest}]".strip()
    elif marker == "policy.description":
        body["policy"]["description"] = f"{body['policy']['description']} [{MANAGED_BY} {__version__} {digest}]"
    return DesiredObject(kind, name, path, body, digest)


#: ``_version`` of an index request inside an ingest pipeline when it is a *create* (``op_type=create``,
#: ``_create``): Versions.MATCH_DELETED. An index request that may overwrite has MATCH_ANY (-3), one with
#: ``version``/``version_type=external`` its version (checked on OpenSearch 2.19 and 3.x).
CREATE_VERSION = -4


WRITE_ONCE_MESSAGE = ("kaudit-elk: audit documents and integrity links are write-once; only create requests are "
                      "allowed (this request would overwrite a document)")


def write_once_pipeline() -> dict[str, Any]:
    """A final pipeline that refuses every write but a create (HTTP 400): the audit stream's and the
    integrity index's documents can be added, never overwritten (OpenSearch's security plugin has no
    create-only permission, so ``indices:data/write/index`` alone would let the writer overwrite through a
    backing index). Updates run the final pipeline too and are refused; deletes are refused by the role."""
    return {
        "description": "kaudit-elk write-once: only create requests may write audit documents and integrity links",
        "processors": [{"script": {
            "lang": "painless",
            "source": f"if (ctx._version != {CREATE_VERSION}L) {{ throw new IllegalArgumentException(params.message); }}",
            "params": {"message": WRITE_ONCE_MESSAGE},
        }}],
    }


def pipeline_processors(body: dict[str, Any]) -> set[str]:
    """Processor types used anywhere in a pipeline body (nested foreach/on_failure included)."""
    found: set[str] = set()

    def walk(procs: Any) -> None:
        for proc in procs or []:
            for ptype, conf in proc.items():
                found.add(ptype)
                if isinstance(conf, dict):
                    walk(conf.get("on_failure"))
                    if ptype == "foreach" and isinstance(conf.get("processor"), dict):
                        walk([conf["processor"]])

    walk(body.get("processors"))
    walk(body.get("on_failure"))
    return found


def desired_objects(flavor: str, caps: Capabilities, options: BootstrapOptions) -> tuple[list[DesiredObject], list[str]]:
    """Objects to install, in order, plus notes about what this engine cannot have."""
    names = Names(options.namespace)
    notes: list[str] = []
    objects: list[DesiredObject] = []
    common = dict(
        stream=names.stream, settings_component=names.settings_component,
        mappings_component=names.mappings_component, namespace=options.namespace, shards=options.shards, flat_type=caps.flat_type,
        retention_days=options.retention_days, rollover_age=options.rollover_age,
        rollover_size=options.rollover_size, policy_name=names.policy, lifecycle=caps.lifecycle,
        alerts_index=names.alerts_index, state_index=names.state_index,
        incidents_index=names.incidents_index,
    )

    if caps.lifecycle == "ilm":
        body = json.loads(render("index_templates", "ilm-policy.json.j2", meta=_meta("ilm_policy"), **common))
        objects.append(_finish("ilm_policy", names.policy, f"/_ilm/policy/{names.policy}", body, "policy._meta"))
    elif caps.lifecycle == "ism":
        body = json.loads(render("index_templates", "ism-policy.json.j2",
                                 description="kaudit-elk audit log retention", **common))
        objects.append(_finish("ism_policy", names.policy, f"/_plugins/_ism/policies/{names.policy}", body,
                               "policy.description"))
    else:
        notes.append(
            f"no lifecycle engine (ILM/ISM) on this cluster: retention of {options.retention_days} days "
            "is not enforced server-side; run `kaudit-elk retention` from cron"
        )

    default_pipeline = None
    if options.pipeline:
        from kaudit_elk.events.pipeline import build_pipeline

        pipe = build_pipeline(flavor, cluster=options.cluster, namespace=options.namespace)
        missing = sorted(pipeline_processors(pipe) - caps.ingest_processors)
        if missing or not caps.painless:
            why = f"missing processors {', '.join(missing)}" if missing else "no painless scripting"
            notes.append(f"server-side ingest pipeline not installed ({why}); use `kaudit-elk ingest`/`serve`, "
                         "which normalize client-side")
        else:
            objects.append(_finish("ingest_pipeline", names.pipeline, f"/_ingest/pipeline/{names.pipeline}", pipe,
                                   "description"))
            default_pipeline = names.pipeline

    final_pipeline = None
    if flavor == "opensearch" and options.write_once:
        if "script" in caps.ingest_processors and caps.painless:
            objects.append(_finish("ingest_pipeline", names.write_once_pipeline,
                                   f"/_ingest/pipeline/{names.write_once_pipeline}", write_once_pipeline(),
                                   "description"))
            final_pipeline = names.write_once_pipeline
        else:
            notes.append("write-once pipeline not installed (no script processor or painless): OpenSearch has no "
                         "create-only permission, so the writer could overwrite a stored document through its "
                         "backing index; `kaudit-elk verify` still detects it")

    body_typed = {f: t for f, t in fieldspec.ELASTIC_BODY_FIELDS.items() if t != "flat"}
    body_flat = tuple(f for f, t in fieldspec.ELASTIC_BODY_FIELDS.items() if t == "flat")
    properties = mapping_properties(
        {**fieldspec.TYPED_FIELDS, **CLIENT_FIELDS, **body_typed}, fieldspec.FLAT_FIELDS + body_flat, caps.flat_type,
        constants=stream_constants(options.namespace), constant_keyword=caps.constant_keyword)
    _keyword_objects(properties)
    _closed_bodies(properties)
    globs = [f"{p}.*" for p in fieldspec.KEYWORD_OBJECTS]
    for kind, template, name, extra in (
        ("component_template", "audit-settings.json.j2", names.settings_component, {}),
        ("component_template", "audit-mappings.json.j2", names.mappings_component,
         {"properties": properties, "keyword_object_globs": globs}),
    ):
        body = json.loads(render("index_templates", template, meta=_meta(kind), **common, **extra))
        objects.append(_finish(kind, name, f"/_component_template/{name}", body, "_meta"))

    for template, name in (
        ("audit-index.json.j2", names.audit_template),
        ("alerts-index.json.j2", names.alerts_template),
        ("state-index.json.j2", names.state_template),
        ("incidents-index.json.j2", names.incidents_template),
    ):
        body = json.loads(render("index_templates", template, meta=_meta("index_template"),
                                 default_pipeline=default_pipeline,
                                 final_pipeline=final_pipeline if template == "audit-index.json.j2" else None,
                                 **common))
        objects.append(_finish("index_template", name, f"/_index_template/{name}", body, "_meta"))
    objects.append(_finish("index_template", names.integrity_template, f"/_index_template/{names.integrity_template}",
                           integrity_template(names, final_pipeline), "_meta"))
    return objects, notes


def integrity_template(names: Names, final_pipeline: str | None) -> dict[str, Any]:
    """The integrity index's template: its mapping, and the write-once pipeline where one is installed
    (whoever creates the index — the first writer does — gets both)."""
    settings: dict[str, Any] = {"index": dict(MAPPING["settings"]["index"])}
    if final_pipeline:
        settings["index"]["final_pipeline"] = final_pipeline
    return {"index_patterns": [names.integrity_index], "priority": 250,
            "template": {"settings": settings, "mappings": MAPPING["mappings"]}, "_meta": _meta("index_template")}
