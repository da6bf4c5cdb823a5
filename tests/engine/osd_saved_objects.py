"""OpenSearch Dashboards' saved-objects index, rebuilt in a real OpenSearch (no OSD can run here).

OSD stores saved objects as documents ``{"type": T, T: {attributes}, "references": [...], ...}`` with id
``T:<id>`` in an index whose mapping OSD builds itself: a root ``dynamic: strict`` with the core fields
(``src/core/server/saved_objects/migrations/core/build_active_mappings.ts``, ``defaultMapping``) merged with
each registered type's ``mappings``. A type's ``properties`` inherit ``strict`` unless the type says
otherwise (``index-pattern`` says ``dynamic: false``), so an attribute OSD does not map is refused by the
engine with ``strict_dynamic_mapping_exception`` — the same failure an import into OSD gives.

The type mappings below restate, field for field, the OSD 2.x sources of the four types kaudit-elk
exports (``src/plugins/data/server/saved_objects/index_patterns.ts``,
``src/plugins/visualizations/server/saved_objects/visualization.ts``,
``src/plugins/discover/server/saved_objects/search.ts``,
``src/plugins/dashboard/server/saved_objects/dashboard.ts``).
"""

from __future__ import annotations

from typing import Any

_NOT_INDEXED = {"index": False, "doc_values": False}

CORE_PROPERTIES: dict[str, Any] = {
    "migrationVersion": {"dynamic": "true", "type": "object"},
    "type": {"type": "keyword"},
    "namespace": {"type": "keyword"},
    "namespaces": {"type": "keyword"},
    "originId": {"type": "keyword"},
    "updated_at": {"type": "date"},
    "references": {"type": "nested", "properties": {
        "name": {"type": "keyword"}, "type": {"type": "keyword"}, "id": {"type": "keyword"}}},
}

_SEARCH_SOURCE = {"properties": {"searchSourceJSON": {"type": "text", "index": False}}}

TYPE_MAPPINGS: dict[str, Any] = {
    "index-pattern": {"dynamic": False, "properties": {
        "title": {"type": "text"}, "type": {"type": "keyword"}, "dataSource": {"type": "keyword"}}},
    "visualization": {"properties": {
        "description": {"type": "text"},
        "kibanaSavedObjectMeta": _SEARCH_SOURCE,
        "savedSearchRefName": {"type": "keyword", **_NOT_INDEXED},
        "title": {"type": "text"},
        "uiStateJSON": {"type": "text", "index": False},
        "version": {"type": "integer"},
        "visState": {"type": "text", "index": False}}},
    "search": {"properties": {
        "columns": {"type": "keyword", **_NOT_INDEXED},
        "description": {"type": "text"},
        "hits": {"type": "integer", **_NOT_INDEXED},
        "kibanaSavedObjectMeta": _SEARCH_SOURCE,
        "sort": {"type": "keyword", **_NOT_INDEXED},
        "columnWidths": {"type": "object", "enabled": False},
        "title": {"type": "text"},
        "version": {"type": "integer"}}},
    "dashboard": {"properties": {
        "description": {"type": "text"},
        "hits": {"type": "integer", **_NOT_INDEXED},
        "kibanaSavedObjectMeta": _SEARCH_SOURCE,
        "optionsJSON": {"type": "text", "index": False},
        "panelsJSON": {"type": "text", "index": False},
        "refreshInterval": {"properties": {
            "display": {"type": "keyword", **_NOT_INDEXED},
            "pause": {"type": "boolean", **_NOT_INDEXED},
            "section": {"type": "integer", **_NOT_INDEXED},
            "value": {"type": "integer", **_NOT_INDEXED}}},
        "timeFrom": {"type": "keyword", **_NOT_INDEXED},
        "timeRestore": {"type": "boolean", **_NOT_INDEXED},
        "timeTo": {"type": "keyword", **_NOT_INDEXED},
        "title": {"type": "text"},
        "version": {"type": "integer"}}},
}


def index_mapping() -> dict[str, Any]:
    """The saved-objects index mapping as OSD builds it for these four types."""
    return {"dynamic": "strict", "properties": {**CORE_PROPERTIES, **TYPE_MAPPINGS}}


def raw_document(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(document id, raw document) of an exported saved object, as OSD's serializer stores it."""
    kind = obj["type"]
    doc: dict[str, Any] = {"type": kind, kind: obj["attributes"], "references": obj.get("references", [])}
    if "migrationVersion" in obj:
        doc["migrationVersion"] = obj["migrationVersion"]
    doc["updated_at"] = obj.get("updated_at", "2024-01-01T00:00:00.000Z")
    return f"{kind}:{obj['id']}", doc
