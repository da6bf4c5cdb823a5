"""Dashboards and saved searches from one source, for Kibana 8/9 and OpenSearch Dashboards 2/3.

The source is the YAML in ``dashboards/`` (see its README). From it this module renders:

* saved objects for either UI (``render``): ``index-pattern``, legacy ``visualization``
  (visState, no Lens), ``search`` and ``dashboard`` objects with references, in the
  7.10-era shape both UIs import and migrate;
* the exact ``_search`` body each panel runs (``panel_queries``), so the panels can be
  executed against a real engine without a UI;
* the list of fields the panels depend on (``used_fields``), to check against the index template.

``import_objects`` is the thin I/O shell: one multipart POST to ``/api/saved_objects/_import``.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import yaml

from kaudit_elk.base.errors import ContentError, EngineError
from kaudit_elk.base.vocab import DASHBOARD_FLAVORS

Flavor = Literal["kibana", "opensearch"]
FLAVORS: tuple[str, ...] = DASHBOARD_FLAVORS

VIS_TYPES = ("histogram", "line", "area", "horizontal_bar", "pie", "table", "metric")
METRIC_TYPES = ("count", "cardinality", "avg", "max", "min", "sum", "percentiles")
AGGREGATABLE_TYPES = frozenset(
    {"keyword", "constant_keyword", "date", "date_nanos", "long", "integer", "short", "byte",
     "double", "float", "half_float", "scaled_float", "ip", "boolean", "version"}
)
GRID_COLUMNS = 48
MISSING_KEY = "__missing__"  # the `missing` value Kibana/OSD send for a terms "missing bucket"

# Saved-object migration versions of the 7.10 lineage: OSD's own exports carry these, and
# Kibana 8/9 run every later migration on import, so one shape serves both.
MIGRATION_VERSIONS = {"index-pattern": "7.6.0", "visualization": "7.10.0", "search": "7.9.3", "dashboard": "7.9.3"}
PANEL_VERSION = {"kibana": "7.10.0", "opensearch": "7.10.2"}
# Kibana 8.0 regenerates ids of objects imported into a non-default space unless the object
# says its core (namespace) migrations are done; stable ids matter more than that conversion.
KIBANA_CORE_MIGRATION_VERSION = "8.0.0"
XSRF_HEADER = {"kibana": "kbn-xsrf", "opensearch": "osd-xsrf"}


# --------------------------------------------------------------------------- source model


@dataclass(frozen=True)
class IndexPattern:
    key: str
    id: str
    title: str  # may contain {namespace}
    time_field: str

    def title_for(self, namespace: str) -> str:
        return self.title.replace("{namespace}", namespace)


@dataclass(frozen=True)
class Filter:
    """A phrase (one value) or phrases (any of several values) filter, optionally negated."""

    field: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Metric:
    type: str
    field: str | None = None
    label: str | None = None
    percents: tuple[float, ...] = ()


@dataclass(frozen=True)
class Bucket:
    type: Literal["date_histogram", "terms"]
    field: str
    size: int = 10
    label: str | None = None
    missing: str | None = None  # label of the "missing" bucket (keyword fields only)
    order_by: int = 0  # index into the panel's metrics


@dataclass(frozen=True)
class Visualization:
    id: str
    title: str
    vis: str
    index: str
    query: str = ""
    filters: tuple[Filter, ...] = ()
    buckets: tuple[Bucket, ...] = ()
    metrics: tuple[Metric, ...] = (Metric("count"),)
    description: str = ""


@dataclass(frozen=True)
class SavedSearch:
    id: str
    title: str
    index: str
    query: str = ""
    columns: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class PanelRef:
    kind: Literal["visualization", "search"]
    id: str
    width: int
    height: int


@dataclass(frozen=True)
class Dashboard:
    id: str
    title: str
    description: str
    time_from: str
    time_to: str
    panels: tuple[PanelRef, ...]
    query: str = ""


@dataclass(frozen=True)
class Source:
    """The whole dashboards source, validated."""

    index_patterns: Mapping[str, IndexPattern]
    fields: Mapping[str, Mapping[str, str]]  # index key -> field -> type
    visualizations: Mapping[str, Visualization]
    searches: Mapping[str, SavedSearch]
    dashboards: tuple[Dashboard, ...]
    files: tuple[str, ...] = field(default=(), compare=False)


# --------------------------------------------------------------------------- loading


def load_source(directory: Path | str | None = None) -> Source:
    """Load and validate every ``*.yaml`` in the dashboards folder; ContentError names file and object."""
    if directory is None:
        from kaudit_elk.base.content import content_dir

        directory = content_dir("dashboards")
    folder = Path(directory)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ContentError(f"no dashboard source (*.yaml) in {folder}")
    patterns: dict[str, IndexPattern] = {}
    fields: dict[str, dict[str, str]] = {}
    visualizations: dict[str, Visualization] = {}
    searches: dict[str, SavedSearch] = {}
    dashboards: list[Dashboard] = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ContentError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise ContentError(f"{path}: expected a mapping at the top level")
        unknown = set(doc) - {"index_patterns", "fields", "searches", "dashboard"}
        if unknown:
            raise ContentError(f"{path}: unknown top-level keys {sorted(unknown)}")
        for key, spec in (doc.get("index_patterns") or {}).items():
            patterns[key] = IndexPattern(key, _req(spec, "id", path, key), _req(spec, "title", path, key),
                                         spec.get("time_field", "@timestamp"))
        for key, spec in (doc.get("fields") or {}).items():
            fields.setdefault(key, {}).update({str(k): str(v) for k, v in (spec or {}).items()})
        for spec in doc.get("searches") or []:
            search = _parse_search(spec, path)
            _add_unique(searches, search.id, search, path, visualizations)
        if "dashboard" in doc:
            dash, vis = _parse_dashboard(doc["dashboard"], path)
            for v in vis:
                _add_unique(visualizations, v.id, v, path, searches)
            dashboards.append(dash)
    source = Source(patterns, fields, visualizations, searches, tuple(dashboards), tuple(str(f) for f in files))
    validate(source)
    return source


def _req(spec: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(spec, dict) or key not in spec:
        raise ContentError(f"{path}: {where}: missing required key {key!r}")
    return spec[key]


def _add_unique(target: dict[str, Any], oid: str, obj: Any, path: Path, other: Mapping[str, Any]) -> None:
    if oid in target or oid in other:
        raise ContentError(f"{path}: duplicate saved-object id {oid!r}")
    target[oid] = obj


def _parse_filters(specs: Any, path: Path, where: str) -> tuple[Filter, ...]:
    out = []
    for spec in specs or []:
        fld = _req(spec, "field", path, where)
        if "value" in spec:
            values: tuple[str, ...] = (str(spec["value"]),)
        elif "values" in spec and spec["values"]:
            values = tuple(str(v) for v in spec["values"])
        else:
            raise ContentError(f"{path}: {where}: filter on {fld!r} needs 'value' or 'values'")
        out.append(Filter(fld, values, bool(spec.get("negate", False))))
    return tuple(out)


def _parse_metric(spec: Any, path: Path, where: str) -> Metric:
    if spec == "count":
        return Metric("count")
    if isinstance(spec, dict):
        kinds = [k for k in spec if k in METRIC_TYPES]
        if len(kinds) == 1:
            kind = kinds[0]
            if kind == "count":
                return Metric("count", label=spec.get("label"))
            percents = tuple(float(p) for p in spec.get("percents", [])) if kind == "percentiles" else ()
            if kind == "percentiles" and not percents:
                raise ContentError(f"{path}: {where}: percentiles metric needs 'percents'")
            return Metric(kind, str(spec[kind]), spec.get("label"), percents)
    raise ContentError(f"{path}: {where}: metric must be 'count' or one of {{{', '.join(METRIC_TYPES)}: field}}, got {spec!r}")


def _parse_bucket(spec: Any, path: Path, where: str) -> Bucket:
    if isinstance(spec, dict) and "date_histogram" in spec:
        return Bucket("date_histogram", str(spec["date_histogram"]), label=spec.get("label"))
    if isinstance(spec, dict) and "terms" in spec:
        return Bucket("terms", str(spec["terms"]), int(spec.get("size", 10)), spec.get("label"),
                      spec.get("missing"), int(spec.get("order_by", 0)))
    raise ContentError(f"{path}: {where}: bucket must be {{date_histogram: field}} or {{terms: field}}, got {spec!r}")


def _parse_search(spec: Any, path: Path) -> SavedSearch:
    sid = _req(spec, "id", path, "search")
    return SavedSearch(
        id=sid, title=_req(spec, "title", path, sid), index=_req(spec, "index", path, sid),
        query=spec.get("query") or "", columns=tuple(spec.get("columns") or ()),
        filters=_parse_filters(spec.get("filters"), path, sid), description=spec.get("description", ""),
    )


def _parse_dashboard(spec: Any, path: Path) -> tuple[Dashboard, list[Visualization]]:
    did = _req(spec, "id", path, "dashboard")
    default_index = spec.get("index", "audit")
    refs: list[PanelRef] = []
    vis: list[Visualization] = []
    for i, p in enumerate(spec.get("panels") or []):
        where = f"{did} panel {i + 1}"
        size = p.get("size", [24, 12]) if isinstance(p, dict) else None
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) for n in size)):
            raise ContentError(f"{path}: {where}: size must be [width, height]")
        if "search" in p:
            refs.append(PanelRef("search", str(p["search"]), size[0], size[1]))
            continue
        vid = _req(p, "id", path, where)
        where = f"{did} panel {vid}"
        metrics = tuple(_parse_metric(m, path, where) for m in (p.get("metrics") or ["count"]))
        vis.append(Visualization(
            id=vid, title=_req(p, "title", path, where), vis=_req(p, "vis", path, where),
            index=p.get("index", default_index), query=p.get("query") or "",
            filters=_parse_filters(p.get("filters"), path, where),
            buckets=tuple(_parse_bucket(b, path, where) for b in p.get("buckets") or []),
            metrics=metrics, description=p.get("description", ""),
        ))
        refs.append(PanelRef("visualization", vid, size[0], size[1]))
    time = spec.get("time") or {}
    dash = Dashboard(did, _req(spec, "title", path, did), spec.get("description", ""),
                     str(time.get("from", "now-24h")), str(time.get("to", "now")), tuple(refs), spec.get("query") or "")
    return dash, vis


def validate(source: Source) -> None:
    """Check ids, index keys, vis types, panel references and that every used field is declared."""
    for oid in [*source.visualizations, *source.searches, *(d.id for d in source.dashboards),
                *(p.id for p in source.index_patterns.values())]:
        if not re.fullmatch(r"kaudit-[a-z0-9-]+", oid):
            raise ContentError(f"dashboards: id {oid!r} must look like kaudit-<lowercase-words>")
    saved: list[Visualization | SavedSearch] = [*source.visualizations.values(), *source.searches.values()]
    for obj in saved:
        if obj.index not in source.index_patterns:
            raise ContentError(f"dashboards: {obj.id}: unknown index {obj.index!r}; known: {sorted(source.index_patterns)}")
    for vis in source.visualizations.values():
        _validate_vis(vis, source.fields.get(vis.index, {}))
    for dash in source.dashboards:
        for ref in dash.panels:
            pool = source.visualizations if ref.kind == "visualization" else source.searches
            if ref.id not in pool:
                raise ContentError(f"dashboards: {dash.id}: panel refers to unknown {ref.kind} {ref.id!r}")
            if not 1 <= ref.width <= GRID_COLUMNS or ref.height < 1:
                raise ContentError(f"dashboards: {dash.id}: panel {ref.id} size must be 1..{GRID_COLUMNS} wide")
    for index, names in used_fields(source).items():
        declared = source.fields.get(index, {})
        missing = sorted(n for n in names if n not in declared)
        if missing:
            raise ContentError(f"dashboards: fields used on index {index!r} but not declared in fields.yaml: {missing}")


def _validate_vis(vis: Visualization, declared: Mapping[str, str]) -> None:
    where = f"dashboards: visualization {vis.id}"
    if vis.vis not in VIS_TYPES:
        raise ContentError(f"{where}: vis must be one of {VIS_TYPES}, got {vis.vis!r}")
    if vis.vis == "metric" and vis.buckets:
        raise ContentError(f"{where}: a metric panel takes no buckets")
    if vis.vis == "pie" and (not vis.buckets or any(b.type != "terms" for b in vis.buckets)):
        raise ContentError(f"{where}: a pie needs terms buckets")
    if vis.vis in ("histogram", "line", "area", "horizontal_bar") and not 1 <= len(vis.buckets) <= 2:
        raise ContentError(f"{where}: a chart takes an x-axis bucket and at most one split")
    for b in vis.buckets:
        if b.type == "date_histogram" and b is not vis.buckets[0]:
            raise ContentError(f"{where}: date_histogram must be the first bucket")
        if not 0 <= b.order_by < len(vis.metrics):
            raise ContentError(f"{where}: order_by {b.order_by} is not a metric index")
        if b.missing is not None and declared.get(b.field) != "keyword":
            raise ContentError(f"{where}: a missing bucket needs a keyword field; {b.field} is {declared.get(b.field)}")
        if b.type == "terms" and vis.metrics[b.order_by].type == "percentiles":
            raise ContentError(f"{where}: terms cannot be ordered by a percentiles metric")


# --------------------------------------------------------------------------- fields

_QUERY_FIELD = re.compile(r"(?:^|[\s(])(?:_exists_:)?((?:[A-Za-z@_][\w@]*)(?:\.[\w@]+|\\/[\w@]+)*)\s*:")
_EXISTS_FIELD = re.compile(r"_exists_:((?:[A-Za-z@_][\w@]*)(?:\.[\w@]+|\\/[\w@]+)*)")


def query_fields(query: str) -> set[str]:
    """Field names a Lucene query string refers to (``a.b:x``, ``_exists_:a.b``; ``\\/`` unescaped)."""
    names = {m.group(1) for m in _QUERY_FIELD.finditer(query)} | {m.group(1) for m in _EXISTS_FIELD.finditer(query)}
    return {n.replace("\\/", "/") for n in names if n != "_exists_"}


def used_fields(source: Source) -> dict[str, set[str]]:
    """Every field each index pattern's panels and searches use (aggregations, filters, queries, columns)."""
    out: dict[str, set[str]] = {key: set() for key in source.index_patterns}
    for pat in source.index_patterns.values():
        out[pat.key].add(pat.time_field)
    for vis in source.visualizations.values():
        names = out.setdefault(vis.index, set())
        names |= query_fields(vis.query) | {f.field for f in vis.filters}
        names |= {b.field for b in vis.buckets} | {m.field for m in vis.metrics if m.field}
    for s in source.searches.values():
        out.setdefault(s.index, set()).update(query_fields(s.query), s.columns, (f.field for f in s.filters))
    for dash in source.dashboards:
        if dash.query:
            for key in {source.visualizations[r.id].index for r in dash.panels if r.kind == "visualization"}:
                out[key] |= query_fields(dash.query)
    return out


def aggregated_fields(source: Source) -> dict[str, set[str]]:
    """Fields used in aggregations (must be aggregatable: keyword, numeric, date, ip, boolean)."""
    out: dict[str, set[str]] = {}
    for vis in source.visualizations.values():
        out.setdefault(vis.index, set()).update({b.field for b in vis.buckets} | {m.field for m in vis.metrics if m.field})
    return out


# --------------------------------------------------------------------------- rule searches


def saved_searches_for_rules(rules: Iterable[tuple[str, str, str]], index: str = "audit") -> list[SavedSearch]:
    """One saved search per detection rule: ``(rule id, title, Lucene query string)`` -> SavedSearch.

    The rule compiler supplies the query; ids are ``kaudit-search-rule-<rule id>`` so re-imports overwrite.
    """
    out: list[SavedSearch] = []
    seen: set[str] = set()
    for rule_id, title, query in rules:
        slug = re.sub(r"[^a-z0-9]+", "-", str(rule_id).lower()).strip("-")
        if not slug:
            raise ContentError(f"rule {title!r}: id {rule_id!r} gives an empty saved-search id")
        sid = f"kaudit-search-rule-{slug}"
        if sid in seen:
            raise ContentError(f"rule {title!r}: saved-search id {sid} is not unique")
        seen.add(sid)
        out.append(SavedSearch(
            id=sid, title=f"Rule: {title}", index=index, query=query,
            columns=("user.name", "event.action", "orchestrator.resource.type", "orchestrator.namespace",
                     "orchestrator.resource.name", "event.outcome", "source.ip"),
            description=f"Events matching detection rule {rule_id}.",
        ))
    return out


def shipped_rule_searches() -> list[tuple[str, str, str]]:
    """``(rule id, title, Lucene query)`` for the shipped rule pack (empty when it cannot be loaded)."""
    from kaudit_elk.rules.compiler import rule_searches
    from kaudit_elk.rules.loader import default_pack_dir, load_rules

    try:
        pack = load_rules([default_pack_dir()])
    except ContentError:
        return []
    return rule_searches(pack)


# --------------------------------------------------------------------------- rendering


def render(
    flavor: Flavor,
    index_namespace: str = "kaudit",
    source: Source | None = None,
    rules: Iterable[tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Saved objects for ``flavor`` ("kibana" or "opensearch"): index patterns, searches, visualizations, dashboards.

    ``rules`` are ``(rule id, title, Lucene query)`` for one saved search each; None means every rule of
    the shipped pack that compiles to a query string (:func:`kaudit_elk.rules.compiler.rule_searches`).
    """
    if flavor not in FLAVORS:
        raise ContentError(f"unknown dashboards flavor {flavor!r}; expected kibana or opensearch")
    src = source or load_source()
    searches = list(src.searches.values())
    extra = saved_searches_for_rules(shipped_rule_searches() if rules is None else rules)
    clash = {s.id for s in extra} & set(src.searches)
    if clash:
        raise ContentError(f"rule saved searches clash with shipped ids: {sorted(clash)}")
    searches += extra
    objects: list[dict[str, Any]] = []
    objects += [_index_pattern_object(p, index_namespace) for p in src.index_patterns.values()]
    objects += [_search_object(s, src) for s in searches]
    objects += [_vis_object(v, src) for v in src.visualizations.values()]
    objects += [_dashboard_object(d, flavor) for d in src.dashboards]
    for obj in objects:
        obj["migrationVersion"] = {obj["type"]: MIGRATION_VERSIONS[obj["type"]]}
        if flavor == "kibana":
            obj["coreMigrationVersion"] = KIBANA_CORE_MIGRATION_VERSION
    return objects


def to_ndjson(objects: Iterable[Mapping[str, Any]]) -> str:
    """One JSON object per line, keys sorted (stable diffs), trailing newline."""
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n" for o in objects)


def _index_pattern_object(p: IndexPattern, namespace: str) -> dict[str, Any]:
    formats = {"event.duration": {"id": "duration", "params": {"inputFormat": "nanoseconds", "outputFormat": "humanizePrecise"}}}
    attrs = {"title": p.title_for(namespace), "timeFieldName": p.time_field, "fields": "[]"}
    if p.key == "audit":
        attrs["fieldFormatMap"] = json.dumps(formats, sort_keys=True)
    return {"id": p.id, "type": "index-pattern", "attributes": attrs, "references": []}


def _filter_json(f: Filter, ref_name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"alias": None, "negate": f.negate, "disabled": False, "key": f.field, "indexRefName": ref_name}
    if len(f.values) == 1:
        meta |= {"type": "phrase", "params": {"query": f.values[0]}}
        query: dict[str, Any] = {"match_phrase": {f.field: f.values[0]}}
    else:
        meta |= {"type": "phrases", "params": list(f.values), "value": ", ".join(f.values)}
        query = {"bool": {"should": [{"match_phrase": {f.field: v}} for v in f.values], "minimum_should_match": 1}}
    return {"meta": meta, "query": query, "$state": {"store": "appState"}}


def _search_source(query: str, filters: Sequence[Filter], pattern_id: str, extra: Mapping[str, Any] = {}) -> tuple[str, list[dict[str, Any]]]:
    refs = [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": pattern_id}]
    fjson = []
    for i, f in enumerate(filters):
        name = f"kibanaSavedObjectMeta.searchSourceJSON.filter[{i}].meta.index"
        fjson.append(_filter_json(f, name))
        refs.append({"name": name, "type": "index-pattern", "id": pattern_id})
    body = {**extra, "query": {"query": query, "language": "lucene"}, "filter": fjson,
            "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return json.dumps(body, sort_keys=True), refs


def _search_object(s: SavedSearch, src: Source) -> dict[str, Any]:
    pattern = src.index_patterns[s.index]
    ssj, refs = _search_source(s.query, s.filters, pattern.id, {"highlightAll": True, "version": True})
    attrs = {
        "title": s.title, "description": s.description, "hits": 0, "version": 1,
        "columns": list(s.columns) or ["_source"], "sort": [[pattern.time_field, "desc"]],
        "kibanaSavedObjectMeta": {"searchSourceJSON": ssj},
    }
    return {"id": s.id, "type": "search", "attributes": attrs, "references": refs}


def _agg_label(m: Metric) -> str:
    if m.label:
        return m.label
    return "Count" if m.type == "count" else f"{m.type.capitalize()} {m.field}"


def _vis_aggs(vis: Visualization, time_from: str = "now-24h", time_to: str = "now") -> list[dict[str, Any]]:
    aggs: list[dict[str, Any]] = []
    for i, m in enumerate(vis.metrics, start=1):
        params: dict[str, Any] = {}
        if m.field:
            params["field"] = m.field
        if m.percents:
            params["percents"] = list(m.percents)
        if m.label:
            params["customLabel"] = m.label
        aggs.append({"id": str(i), "enabled": True, "type": m.type, "schema": "metric", "params": params})
    for j, b in enumerate(vis.buckets):
        schema = _bucket_schema(vis, j)
        aid = str(len(vis.metrics) + j + 1)
        if b.type == "date_histogram":
            params = {"field": b.field, "timeRange": {"from": time_from, "to": time_to}, "useNormalizedEsInterval": True,
                      "scaleMetricValues": False, "interval": "auto", "drop_partials": False, "min_doc_count": 1,
                      "extended_bounds": {}}
        else:
            params = {"field": b.field, "orderBy": str(b.order_by + 1), "order": "desc", "size": b.size,
                      "otherBucket": False, "otherBucketLabel": "Other",
                      "missingBucket": b.missing is not None, "missingBucketLabel": b.missing or "Missing"}
        if b.label:
            params["customLabel"] = b.label
        aggs.append({"id": aid, "enabled": True, "type": b.type, "schema": schema, "params": params})
    return aggs


def _bucket_schema(vis: Visualization, position: int) -> str:
    if vis.vis == "table":
        return "bucket"
    if vis.vis == "pie":
        return "segment" if position == 0 else "group"
    return "segment" if position == 0 else "group"


def _xy_params(vis: Visualization) -> dict[str, Any]:
    horizontal = vis.vis == "horizontal_bar"
    series_type = {"line": "line", "area": "area"}.get(vis.vis, "histogram")
    mode = "normal" if vis.vis == "line" else "stacked"
    value_label = _agg_label(vis.metrics[0])
    return {
        "type": vis.vis,
        "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "left" if horizontal else "bottom",
                          "show": True, "style": {}, "scale": {"type": "linear"},
                          "labels": {"show": True, "filter": not horizontal, "truncate": 200 if horizontal else 100},
                          "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "BottomAxis-1" if horizontal else "LeftAxis-1", "type": "value",
                       "position": "bottom" if horizontal else "left", "show": True, "style": {},
                       "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": value_label}}],
        "seriesParams": [{"show": True, "type": series_type, "mode": mode,
                          "data": {"label": _agg_label(m), "id": str(i)}, "valueAxis": "ValueAxis-1",
                          "drawLinesBetweenPoints": True, "lineWidth": 2, "interpolate": "linear", "showCircles": True}
                         for i, m in enumerate(vis.metrics, start=1)],
        "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [], "addTimeMarker": False,
        "labels": {"show": False},
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
    }


def _vis_params(vis: Visualization) -> dict[str, Any]:
    if vis.vis == "pie":
        return {"type": "pie", "addTooltip": True, "addLegend": True, "legendPosition": "right", "isDonut": True,
                "labels": {"show": False, "values": True, "last_level": True, "truncate": 100}}
    if vis.vis == "table":
        return {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False,
                "sort": {"columnIndex": None, "direction": None}, "showTotal": False, "totalFunc": "sum",
                "percentageCol": ""}
    if vis.vis == "metric":
        return {"addTooltip": True, "addLegend": False, "type": "metric",
                "metric": {"percentageMode": False, "useRanges": False, "colorSchema": "Green to Red",
                           "metricColorMode": "None", "colorsRange": [{"from": 0, "to": 10000}],
                           "labels": {"show": True}, "invertColors": False,
                           "style": {"bgFill": "#000", "bgColor": False, "labelColor": False, "subText": "",
                                     "fontSize": 36}}}
    return _xy_params(vis)


def _vis_object(vis: Visualization, src: Source) -> dict[str, Any]:
    pattern = src.index_patterns[vis.index]
    state = {"title": vis.title, "type": vis.vis, "aggs": _vis_aggs(vis), "params": _vis_params(vis)}
    ssj, refs = _search_source(vis.query, vis.filters, pattern.id)
    attrs = {
        "title": vis.title, "description": vis.description, "version": 1, "uiStateJSON": "{}",
        "visState": json.dumps(state, sort_keys=True), "kibanaSavedObjectMeta": {"searchSourceJSON": ssj},
    }
    return {"id": vis.id, "type": "visualization", "attributes": attrs, "references": refs}


def layout(panels: Sequence[PanelRef]) -> list[tuple[int, int, int, int]]:
    """Flow panels left to right in a 48-column grid; a new row starts when the next panel does not fit."""
    out = []
    x = y = row_h = 0
    for p in panels:
        if x + p.width > GRID_COLUMNS:
            x, y, row_h = 0, y + row_h, 0
        out.append((x, y, p.width, p.height))
        x += p.width
        row_h = max(row_h, p.height)
    return out


def _dashboard_object(d: Dashboard, flavor: Flavor) -> dict[str, Any]:
    panels = []
    refs = []
    for n, (ref, (x, y, w, h)) in enumerate(zip(d.panels, layout(d.panels)), start=1):
        entry: dict[str, Any] = {"version": PANEL_VERSION[flavor], "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(n)},
                                 "panelIndex": str(n), "embeddableConfig": {}, "panelRefName": f"panel_{n - 1}"}
        if flavor == "kibana":
            entry["type"] = ref.kind
        panels.append(entry)
        refs.append({"name": f"panel_{n - 1}", "type": ref.kind, "id": ref.id})
    ssj = json.dumps({"query": {"query": d.query, "language": "lucene"}, "filter": []}, sort_keys=True)
    attrs = {
        "title": d.title, "description": d.description, "version": 1, "hits": 0,
        "panelsJSON": json.dumps(panels, sort_keys=True),
        "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}, sort_keys=True),
        "timeRestore": True, "timeFrom": d.time_from, "timeTo": d.time_to,
        "refreshInterval": {"pause": True, "value": 0},
        "kibanaSavedObjectMeta": {"searchSourceJSON": ssj},
    }
    return {"id": d.id, "type": "dashboard", "attributes": attrs, "references": refs}


# --------------------------------------------------------------------------- panel queries


def _query_dsl(query: str, filters: Sequence[Filter], extra_filters: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The query part Kibana/OSD build for a Lucene query string plus phrase(s) filters."""
    must = [{"query_string": {"query": query, "analyze_wildcard": True}}] if query.strip() else [{"match_all": {}}]
    flt: list[dict[str, Any]] = list(extra_filters)
    must_not: list[dict[str, Any]] = []
    for f in filters:
        clause = _filter_json(f, "")["query"]
        (must_not if f.negate else flt).append(clause)
    return {"bool": {"must": must, "filter": flt, "should": [], "must_not": must_not}}


def _metric_agg(m: Metric) -> dict[str, Any] | None:
    if m.type == "count":
        return None
    body: dict[str, Any] = {"field": m.field}
    if m.type == "percentiles":
        body["percents"] = list(m.percents)
    return {m.type: body}


def panel_aggs(vis: Visualization, interval: str = "1d") -> dict[str, Any]:
    """The aggregations a visualization runs, nested bucket by bucket with metrics innermost (agg ids as in visState)."""
    metric_aggs = {str(i): a for i, m in enumerate(vis.metrics, start=1) if (a := _metric_agg(m))}
    inner: dict[str, Any] = dict(metric_aggs)
    for j in range(len(vis.buckets) - 1, -1, -1):
        b = vis.buckets[j]
        aid = str(len(vis.metrics) + j + 1)
        if b.type == "date_histogram":
            agg: dict[str, Any] = {"date_histogram": {"field": b.field, "fixed_interval": interval,
                                                      "min_doc_count": 1, "time_zone": "UTC"}}
        else:
            order_metric = vis.metrics[b.order_by]
            order_key = "_count" if order_metric.type == "count" else str(b.order_by + 1)
            terms: dict[str, Any] = {"field": b.field, "size": b.size, "order": {order_key: "desc"}}
            if b.missing is not None:
                terms["missing"] = MISSING_KEY
            agg = {"terms": terms}
            if order_key != "_count":
                inner = {**inner, order_key: metric_aggs[order_key]}
        if inner:
            agg["aggs"] = inner
        inner = {aid: agg}
    return inner


def panel_queries(
    source: Source | None = None,
    index_namespace: str = "*",
    interval: str = "1d",
    time_range: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """For every dashboard panel: ``{dashboard, panel, kind, index, body}`` with the exact ``_search`` body.

    ``time_range`` (gte, lte) adds the time filter the UI adds; None searches all time.
    """
    src = source or load_source()
    out: list[dict[str, Any]] = []
    for dash in src.dashboards:
        for ref in dash.panels:
            obj = src.visualizations[ref.id] if ref.kind == "visualization" else src.searches[ref.id]
            pattern = src.index_patterns[obj.index]
            extra: list[dict[str, Any]] = []
            if time_range:
                extra.append({"range": {pattern.time_field: {"gte": time_range[0], "lte": time_range[1],
                                                             "format": "strict_date_optional_time"}}})
            if dash.query:
                extra.append({"query_string": {"query": dash.query, "analyze_wildcard": True}})
            body: dict[str, Any] = {"query": _query_dsl(obj.query, obj.filters, extra), "track_total_hits": True}
            if isinstance(obj, Visualization):
                body |= {"size": 0, "aggs": panel_aggs(obj, interval)}
            else:
                body |= {"size": 50, "sort": [{pattern.time_field: {"order": "desc", "unmapped_type": "boolean"}}]}
            out.append({"dashboard": dash.id, "panel": ref.id, "kind": ref.kind,
                        "index": pattern.title_for(index_namespace), "body": body})
    return out


# --------------------------------------------------------------------------- import (I/O shell)


class DashboardsImportError(EngineError):
    """The UI refused some saved objects; the message names each one."""


def import_summary(flavor: str, objects: Sequence[Mapping[str, Any]], response: Mapping[str, Any]) -> dict[str, Any]:
    """Check an ``_import`` response; raise DashboardsImportError naming every failed object."""
    errors = response.get("errors") or []
    if errors or not response.get("success", False):
        titles = {(o["type"], o["id"]): o.get("attributes", {}).get("title", "") for o in objects}
        lines = []
        for e in errors:
            err = e.get("error") or {}
            detail = err.get("type", "error")
            if err.get("references"):
                detail += " " + ", ".join(f"{r.get('type')}/{r.get('id')}" for r in err["references"])
            if err.get("message"):
                detail += f": {err['message']}"
            title = e.get("title") or titles.get((e.get("type"), e.get("id")), "")
            lines.append(f"{e.get('type')}/{e.get('id')} ({title}): {detail}")
        listing = "; ".join(lines) or "no error details in the response"
        raise DashboardsImportError(f"{flavor} import rejected {len(errors)} of {len(objects)} objects: {listing}")
    by_type: dict[str, int] = {}
    for o in objects:
        by_type[o["type"]] = by_type.get(o["type"], 0) + 1
    return {"flavor": flavor, "success": True, "imported": int(response.get("successCount", len(objects))),
            "objects": len(objects), "by_type": by_type}


def _multipart(ndjson: str) -> tuple[bytes, str]:
    boundary = f"kaudit-{uuid.uuid4().hex}"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"kaudit-elk.ndjson\"\r\n"
            "Content-Type: application/ndjson\r\n\r\n")
    body = head.encode() + ndjson.encode("utf-8") + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def import_objects(
    url: str,
    flavor: Flavor,
    objects: Sequence[Mapping[str, Any]],
    *,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    ca_certs: str | None = None,
    verify_certs: bool = True,
    timeout: float = 60.0,
    space: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """POST objects to ``<url>[/s/<space>]/api/saved_objects/_import?overwrite=true``; idempotent (stable ids).

    ``space`` is a Kibana space; ``tenant`` an OpenSearch Security tenant (``securitytenant`` header).
    """
    if flavor not in FLAVORS:
        raise ContentError(f"unknown dashboards flavor {flavor!r}; expected kibana or opensearch")
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise EngineError(f"dashboards URL must start with http:// or https://, got {url!r}")
    prefix = f"/s/{space}" if space and flavor == "kibana" else ""
    endpoint = f"{base}{prefix}/api/saved_objects/_import?overwrite=true"
    body, ctype = _multipart(to_ndjson(objects))
    headers = {"Content-Type": ctype, XSRF_HEADER[flavor]: "true", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif username is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
    if tenant and flavor == "opensearch":
        headers["securitytenant"] = tenant
    ctx = None
    if base.startswith("https://"):
        ctx = ssl.create_default_context(cafile=ca_certs) if ca_certs else ssl.create_default_context()
        if not verify_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        raise EngineError(f"{base}: saved objects import failed with HTTP {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise EngineError(f"{base}: cannot connect ({exc.reason})") from None
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise EngineError(f"{base}: cannot connect ({exc})") from None
    try:
        response = json.loads(raw)
    except ValueError:
        raise EngineError(f"{base}: the import endpoint did not return JSON; is this a {flavor} URL?") from None
    return import_summary(flavor, objects, response)


def import_into(
    url: str,
    flavor: Flavor,
    *,
    namespace: str = "kaudit",
    option: str | None = None,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    ca_certs: str | None = None,
    verify_certs: bool = True,
    space: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """Render the saved objects for ``namespace`` and import them into the UI at ``url``; the summary gets ``url``.

    Credentials in the URL (``https://user:pass@kibana:5601``) take the place of ``username``/``password``
    and are never shown; ``option`` names the flag or setting the URL came from in errors.
    """
    from kaudit_elk.base import redact
    from kaudit_elk.base.config import split_userinfo, validate_url

    option = option or ("--kibana-url" if flavor == "kibana" else "--dashboards-url")
    target, url_user, url_password = split_userinfo(url, option)
    validate_url(target, option)
    redact.register(url_password)
    if url_user or url_password:
        username, password = url_user, url_password
    objects = render(flavor, index_namespace=namespace)
    summary = import_objects(target, flavor, objects, username=username, password=password, api_key=api_key,
                             ca_certs=ca_certs, verify_certs=verify_certs, space=space, tenant=tenant)
    return {"url": target, **summary}
