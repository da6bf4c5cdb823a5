"""Server-side ingest pipeline for third-party shippers, derived from :mod:`kaudit_elk.events.fieldspec`.

Input contract (what Filebeat, Fluent Bit and Vector send):

* the raw Event JSON as a string in ``message`` (it is parsed into ``kubernetes.audit`` and
  ``message`` is removed), or
* the already-parsed Event under ``kubernetes.audit`` (e.g. Filebeat ``ndjson`` with
  ``target: kubernetes.audit``); ``message`` is then left alone.

Output: the same document as :func:`kaudit_elk.events.normalize.normalize` with default options for
native Events (proven with ``_ingest/pipeline/_simulate`` in tests/engine/test_pipeline_parity.py).

Not covered server-side (client-only, see ``fieldspec.CLIENT_ONLY_FIELDS``):

* envelopes (AKS/EKS/GKE wrappers, EventList): the pipeline expects one native Event per document;
  ``cloud.provider`` and ``kaudit.envelope.*`` are therefore never set;
* ``event.original`` is never added (a shipper may set it; it is kept);
* ``orchestrator.cluster.name`` is the shipper's value when present, else the ``cluster`` argument;
* ``data_stream.*`` is always the pipeline's own stream (a shipper's values are replaced: the mapping
  holds them constant);
* body truncation measures size with an estimate (string lengths in UTF-16 units plus JSON
  punctuation, escapes ignored) where the client uses the exact serialized byte count, so the two
  agree except for bodies or leaves within a few percent of the limits;
* a document whose ``stage`` is not kept by the default stage policy is dropped.

Every failure keeps the document: ``event.kind: pipeline_error`` and ``error.message`` are set.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from kaudit_elk.base.content import content_path
from kaudit_elk.base.vocab import ENGINE_FLAVORS
from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.normalize import DEFAULT

FLAVORS = ENGINE_FLAVORS
_TMP = "_kaudit_tmp"
#: The painless scripts (content files, shipped in the wheel): the normalizer walking the spec tables it
#: gets as ``params``, the pod-spec fields it calls (generated from the field spec by
#: ``python -m kaudit_elk.events.codegen``), and the join of the URL-decoded exec command parts.
NORMALIZE_SCRIPT = "audit-pipeline-normalize.painless"
POD_FIELDS_SCRIPT = "audit-pipeline-pod-fields.painless"
EXEC_JOIN_SCRIPT = "audit-pipeline-exec-join.painless"


@lru_cache(maxsize=None)
def painless(name: str) -> str:
    """The source of one of the pipeline's painless scripts (``index_templates/<name>``)."""
    return content_path("index_templates", name).read_text(encoding="utf-8").strip()


def _params(cluster: str, namespace: str) -> dict[str, Any]:
    type_names: dict[type, str] = {str: "str", dict: "dict", list: "list"}
    return {
        "tmp": _TMP,
        "cluster": cluster,
        "raw_types": {k: type_names[v[0]] for k, v in fs.RAW_TYPES.items()},
        "dedot": [list(p) for p in fs.DEDOTTED_OBJECTS],
        "dotted_keys": [list(p) for p in fs.DOTTED_KEY_OBJECTS],
        "ts_sources": [list(p) for p in fs.TIMESTAMP_SOURCES],
        "constants": {**fs.CONSTANTS, "data_stream.namespace": namespace},
        "copies": [[list(src), dst] for src, dst in fs.COPIES],
        "iam_resources": sorted(fs.IAM_RESOURCES),
        "exec_subresources": sorted(fs.EXEC_SUBRESOURCES),
        "verb_types": dict(fs.VERB_TYPES),
        "write_verbs": sorted(fs.WRITE_VERBS),
        "pod_spec_paths": [list(p) for p in fs.POD_SPEC_PATHS],
        "pod_spec_markers": list(fs.POD_SPEC_MARKERS),
        "rbac_rule_fields": [
            ["verbs", "verbs"], ["resources", "resources"], ["apiGroups", "api_groups"],
            ["resourceNames", "resource_names"], ["nonResourceURLs", "non_resource_urls"],
        ],
        "service_resources": sorted(fs.SERVICE_RESOURCES),
        "max_value": DEFAULT.max_value_bytes,
        "max_body": DEFAULT.max_body_bytes,
        "suffix": fs.TRUNCATION_SUFFIX,
        "marker_key": fs.TRUNCATED_BODY_KEY,
        "body_copies": {raw: field.rsplit(".", 1)[1] for raw, field in fs.BODY_COPIES},
        "body_shapes": {raw: {"prefix": prefix, "tree": tree} for raw, (prefix, tree) in fs.BODY_SHAPES.items()},
        "body_integer_low": fs.BODY_INTEGER_RANGE[0],
        "body_integer_high": fs.BODY_INTEGER_RANGE[1],
        "blank_key_chars": fs.BLANK_KEY_CHARS,
        "untyped_key": fs.UNTYPED_FIELD.rsplit(".", 1)[1],
    }


def _copy_failure(source: str, target: str, flavor: str) -> list[dict[str, Any]]:
    """Copy ingest failure metadata without mustache (OpenSearch: ``copy``; ES: ``set.copy_from``)."""
    if flavor == "opensearch":
        return [{"copy": {"source_field": source, "target_field": target, "ignore_missing": True, "override_target": True}}]
    return [{"set": {"field": target, "copy_from": source, "ignore_empty_value": True}}]


def build_pipeline(flavor: str, *, cluster: str = "default", namespace: str = fs.DEFAULT_NAMESPACE) -> dict[str, Any]:
    """Return the ingest pipeline body (for ``PUT _ingest/pipeline/<id>``) for ``flavor``: documents of the
    stream of ``namespace`` (``data_stream.*`` is set, overriding what a shipper sent)."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
    keep = " || ".join(f"ctx.kubernetes.audit.stage == '{s}'" for s in sorted(DEFAULT.stages))
    processors: list[dict[str, Any]] = [
        {
            "json": {
                "tag": "kaudit-parse-message",
                "field": "message",
                "target_field": "kubernetes.audit",
                "if": "ctx.message instanceof String && (ctx.kubernetes == null || ctx.kubernetes.audit == null)",
            }
        },
        {
            "remove": {
                "tag": "kaudit-remove-message",
                "field": "message",
                "ignore_missing": True,
                "if": "ctx.kubernetes?.audit instanceof Map && ctx.message instanceof String",
            }
        },
        {
            "fail": {
                "tag": "kaudit-require-event",
                "message": "no audit event: expected a JSON string in 'message' or an object in 'kubernetes.audit'",
                "if": "!(ctx.kubernetes?.audit instanceof Map)",
            }
        },
        {
            "drop": {
                "tag": "kaudit-stage-filter",
                "if": f"ctx.kubernetes.audit.stage != null && !({keep})",
            }
        },
        {
            "script": {
                "tag": "kaudit-normalize",
                "lang": "painless",
                "source": painless(POD_FIELDS_SCRIPT) + "\n" + painless(NORMALIZE_SCRIPT),
                "params": _params(cluster, namespace),
            }
        },
        {
            "foreach": {
                "tag": "kaudit-exec-command-decode",
                "field": f"{_TMP}.cmd",
                "ignore_missing": True,
                "processor": {"urldecode": {"field": "_ingest._value"}},
            }
        },
        {
            "urldecode": {
                "tag": "kaudit-exec-container-decode",
                "field": f"{_TMP}.container",
                "ignore_missing": True,
            }
        },
        {
            "script": {
                "tag": "kaudit-exec-join",
                "lang": "painless",
                "source": painless(EXEC_JOIN_SCRIPT),
                "params": {"tmp": _TMP},
            }
        },
    ]
    return {
        "description": f"kaudit-elk: Kubernetes audit Event -> document ({flavor}); generated from kaudit_elk.events.fieldspec",
        "processors": processors,
        "on_failure": [
            {"set": {"field": "event.kind", "value": "pipeline_error"}},
            *_copy_failure("_ingest.on_failure_message", "error.message", flavor),
            *_copy_failure("_ingest.on_failure_processor_tag", "error.type", flavor),
            {"remove": {"field": _TMP, "ignore_missing": True}},
        ],
    }
