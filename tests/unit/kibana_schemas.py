"""Kibana 8.8+'s attribute schemas for the saved-object types kaudit-elk exports, as plain data.

Kibana validates a saved object's attributes on create and import against the schema its type registers
(``@kbn/config-schema``: an object refuses unknown keys unless it says otherwise, a value without
``maybe``/default is required). Restated from Kibana's sources:
``src/plugins/dashboard/server/dashboard_saved_object/schema/v1/v1.ts`` (dashboard, ``unknowns: 'forbid'``)
and ``src/plugins/saved_search/server/saved_objects/schema.ts`` (``SCHEMA_SEARCH_V8_8_0``). ``visualization``
and ``index-pattern`` register no attribute schema; Kibana still needs their ``title`` and parses their
JSON-string fields, which :data:`JSON_FIELDS` lists for every type.
"""

from __future__ import annotations

from typing import Any

STR, BOOL, NUM = ("string",), ("boolean",), ("number",)


def maybe(node: tuple) -> tuple:
    return ("maybe", node)


def obj(props: dict[str, tuple], unknowns: str = "forbid") -> tuple:
    return ("object", props, unknowns)


def array(node: tuple, max_size: int | None = None) -> tuple:
    return ("array", node, max_size)


DASHBOARD = obj({
    "title": STR, "description": maybe(STR),
    "kibanaSavedObjectMeta": obj({"searchSourceJSON": maybe(STR)}),
    "timeRestore": maybe(BOOL), "timeFrom": maybe(STR), "timeTo": maybe(STR),
    "refreshInterval": maybe(obj({"pause": BOOL, "value": NUM, "display": maybe(STR), "section": maybe(NUM)})),
    "controlGroupInput": maybe(obj({"panelsJSON": maybe(STR), "controlStyle": maybe(STR),
                                    "chainingSystem": maybe(STR), "ignoreParentSettingsJSON": maybe(STR)},
                                   unknowns="ignore")),
    "panelsJSON": maybe(STR), "optionsJSON": maybe(STR),
    "hits": maybe(NUM), "version": maybe(NUM),
})

SEARCH = obj({
    "title": STR, "description": maybe(STR),
    "columns": maybe(array(STR)),
    "sort": maybe(("oneOf", [array(array(STR, 2)), array(STR, 2)])),
    "grid": maybe(obj({"columns": maybe(("record", obj({"width": maybe(NUM)})))})),
    "rowHeight": maybe(NUM), "rowsPerPage": maybe(NUM),
    "hideChart": maybe(BOOL), "breakdownField": maybe(STR),
    "kibanaSavedObjectMeta": obj({"searchSourceJSON": STR}),
    "isTextBasedQuery": maybe(BOOL), "usesAdHocDataView": maybe(BOOL),
    "timeRestore": maybe(BOOL), "timeRange": maybe(obj({"from": STR, "to": STR})),
    "refreshInterval": maybe(obj({"pause": BOOL, "value": NUM})),
    "viewMode": maybe(("oneOf", [("literal", "documents"), ("literal", "aggregated")])),
    "hideAggregatedPreview": maybe(BOOL),
    "hits": maybe(NUM), "version": maybe(NUM),
})

SCHEMAS: dict[str, tuple] = {"dashboard": DASHBOARD, "search": SEARCH}

JSON_FIELDS: dict[str, tuple[str, ...]] = {
    "dashboard": ("panelsJSON", "optionsJSON", "kibanaSavedObjectMeta.searchSourceJSON"),
    "search": ("kibanaSavedObjectMeta.searchSourceJSON",),
    "visualization": ("visState", "uiStateJSON", "kibanaSavedObjectMeta.searchSourceJSON"),
    "index-pattern": ("fields", "fieldFormatMap"),
}


def validate(node: tuple, value: Any, path: str = "attributes") -> list[str]:
    """Problems of ``value`` against ``node`` (empty when Kibana would accept it)."""
    kind = node[0]
    if kind == "maybe":
        return validate(node[1], value, path)
    if kind == "string":
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {type(value).__name__}"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number"]
    if kind == "literal":
        return [] if value == node[1] else [f"{path}: expected {node[1]!r}"]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        out = [] if node[2] is None or len(value) <= node[2] else [f"{path}: more than {node[2]} items"]
        for i, item in enumerate(value):
            out += validate(node[1], item, f"{path}[{i}]")
        return out
    if kind == "oneOf":
        return [] if any(not validate(n, value, path) for n in node[1]) else [f"{path}: matches no allowed shape"]
    if kind == "record":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [p for k, v in value.items() for p in validate(node[1], v, f"{path}.{k}")]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        props, unknowns = node[1], node[2]
        out = []
        for key, sub in props.items():
            if key in value:
                out += validate(sub, value[key], f"{path}.{key}")
            elif sub[0] != "maybe":
                out.append(f"{path}.{key}: required")
        if unknowns == "forbid":
            out += [f"{path}.{k}: definition for this key is missing" for k in value if k not in props]
        return out
    raise ValueError(f"unknown schema node {kind!r}")
