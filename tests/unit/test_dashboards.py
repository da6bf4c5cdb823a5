"""Structural tests of the dashboards source and of the Kibana / OpenSearch Dashboards NDJSON."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from kaudit_elk.views import dashboards as d
from kaudit_elk.base.errors import ContentError

FLAVORS = ("kibana", "opensearch")


@pytest.fixture(scope="module")
def source() -> d.Source:
    return d.load_source()


@pytest.fixture(scope="module", params=FLAVORS)
def exported(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(flavor, objects parsed back from the NDJSON text)."""
    text = d.to_ndjson(d.render(request.param))
    return request.param, [json.loads(line) for line in text.splitlines()]


def test_ndjson_parses_and_has_every_kind(exported: tuple[str, list[dict]]) -> None:
    flavor, objects = exported
    kinds = Counter(o["type"] for o in objects)
    assert kinds["index-pattern"] == 3  # audit, alerts, incidents
    assert kinds["dashboard"] == 4
    assert kinds["visualization"] >= 30
    assert kinds["search"] >= 9
    for o in objects:
        assert set(o) >= {"id", "type", "attributes", "references", "migrationVersion"}
        assert o["migrationVersion"] == {o["type"]: d.MIGRATION_VERSIONS[o["type"]]}
        assert ("coreMigrationVersion" in o) == (flavor == "kibana")
        assert o["type"] in {"index-pattern", "visualization", "search", "dashboard"}  # no Lens, no by-value


def test_ids_unique_readable_and_stable(exported: tuple[str, list[dict]]) -> None:
    flavor, objects = exported
    ids = [o["id"] for o in objects]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("kaudit-") for i in ids)
    again = [json.loads(line) for line in d.to_ndjson(d.render(flavor)).splitlines()]
    assert again == objects


def test_every_reference_resolves(exported: tuple[str, list[dict]]) -> None:
    _, objects = exported
    by_key = {(o["type"], o["id"]) for o in objects}
    for o in objects:
        names = [r["name"] for r in o["references"]]
        assert len(names) == len(set(names)), o["id"]
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in by_key, f"{o['id']} -> {ref}"
        attrs = o["attributes"]
        if o["type"] in ("visualization", "search"):
            ssj = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
            assert ssj["indexRefName"] in names
            for f in ssj["filter"]:
                assert f["meta"]["indexRefName"] in names
        if o["type"] == "dashboard":
            panels = json.loads(attrs["panelsJSON"])
            assert [p["panelRefName"] for p in panels] == names
            assert len({p["panelIndex"] for p in panels}) == len(panels)


def test_dashboard_panels_do_not_overlap(exported: tuple[str, list[dict]]) -> None:
    _, objects = exported
    for o in (o for o in objects if o["type"] == "dashboard"):
        cells: set[tuple[int, int]] = set()
        for p in json.loads(o["attributes"]["panelsJSON"]):
            g = p["gridData"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= d.GRID_COLUMNS
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not area & cells, f"{o['id']} panel {p['panelIndex']} overlaps"
            cells |= area


def test_flavors_differ_only_where_the_uis_differ() -> None:
    kib, osd = d.render("kibana"), d.render("opensearch")
    assert [o["id"] for o in kib] == [o["id"] for o in osd]
    for a, b in zip(kib, osd):
        if a["type"] != "dashboard":
            assert {k: v for k, v in a.items() if k != "coreMigrationVersion"} == b
    dash_k = json.loads(next(o for o in kib if o["type"] == "dashboard")["attributes"]["panelsJSON"])
    dash_o = json.loads(next(o for o in osd if o["type"] == "dashboard")["attributes"]["panelsJSON"])
    assert dash_k[0]["version"] == "7.10.0" and dash_o[0]["version"] == "7.10.2"
    assert "type" in dash_k[0] and "type" not in dash_o[0]


def test_index_namespace_changes_titles_only() -> None:
    objs = d.render("opensearch", index_namespace="*")
    titles = {o["id"]: o["attributes"]["title"] for o in objs if o["type"] == "index-pattern"}
    assert titles == {"kaudit-index-pattern-audit": "logs-kubernetes.audit_logs-*",
                      "kaudit-index-pattern-alerts": "kaudit-alerts-*",
                      "kaudit-index-pattern-incidents": "kaudit-incidents-*"}
    default = {o["id"]: o["attributes"]["title"] for o in d.render("opensearch") if o["type"] == "index-pattern"}
    assert default["kaudit-index-pattern-audit"] == "logs-kubernetes.audit_logs-kaudit"


def test_visstate_aggs_use_declared_fields(exported: tuple[str, list[dict]], source: d.Source) -> None:
    _, objects = exported
    pattern_key = {p.id: p.key for p in source.index_patterns.values()}
    for o in (o for o in objects if o["type"] == "visualization"):
        state = json.loads(o["attributes"]["visState"])
        assert state["type"] in d.VIS_TYPES
        ids = [a["id"] for a in state["aggs"]]
        assert len(ids) == len(set(ids))
        key = pattern_key[o["references"][0]["id"]]
        for agg in state["aggs"]:
            fld = agg["params"].get("field")
            if fld:
                ftype = source.fields[key][fld]
                assert ftype in d.AGGREGATABLE_TYPES, f"{o['id']}: {fld} ({ftype}) is not aggregatable"
            if agg["type"] == "terms" and agg["params"]["missingBucket"]:
                assert source.fields[key][fld] == "keyword"


def test_every_used_field_is_declared_and_aggregatable(source: d.Source) -> None:
    for index, names in d.used_fields(source).items():
        assert names <= set(source.fields[index]), sorted(names - set(source.fields[index]))
    for index, names in d.aggregated_fields(source).items():
        for n in names:
            assert source.fields[index][n] in d.AGGREGATABLE_TYPES, n


def test_audit_fields_match_the_index_template(source: d.Source) -> None:
    """Every declared audit-index field has the type the index template gives it (from
    kaudit_elk.events.fieldspec.TYPED_FIELDS; ``exact_text`` renders as ``text``, as in Elastic's mapping)."""
    fieldspec = pytest.importorskip("kaudit_elk.events.fieldspec")
    rendered = {n: "text" if t == "exact_text" else t for n, t in fieldspec.TYPED_FIELDS.items()}
    declared = source.fields["audit"]
    wrong = {n: (t, rendered.get(n)) for n, t in declared.items() if rendered.get(n) != t}
    assert not wrong, f"declared vs template type: {wrong}"


def test_alert_fields_are_declared_as_alerts_carry_them(source: d.Source) -> None:
    """The alerts index has no template module yet: check against the fields alert documents carry."""
    alerts = pytest.importorskip("kaudit_elk.rules.alerts")
    from types import SimpleNamespace

    rule = SimpleNamespace(id="r1", title="Rule one", level="high", description="", kind="single",
                           audit_level="Metadata", tags=["attack.t1609"], attack=["T1609"])
    event = {"auditID": "a1", "verb": "create", "user": {"username": "alice"}, "sourceIPs": ["10.0.0.1"],
             "requestReceivedTimestamp": "2024-01-01T00:00:00Z"}
    alert = alerts.single_alert(rule, event, 1704067200.0)
    from kaudit_elk.views.report import get

    for name in d.used_fields(source)["alerts"]:
        assert get(alert, name) is not None, f"alert documents have no {name}"


def test_panel_queries_match_visualizations(source: d.Source) -> None:
    queries = d.panel_queries(source)
    panel_count = sum(len(x.panels) for x in source.dashboards)
    assert len(queries) == panel_count
    for q in queries:
        body = q["body"]
        obj = source.visualizations.get(q["panel"]) or source.searches[q["panel"]]
        must = body["query"]["bool"]["must"][0]
        if obj.query:
            assert must == {"query_string": {"query": obj.query, "analyze_wildcard": True}}
        else:
            assert must == {"match_all": {}}
        assert len(body["query"]["bool"]["filter"]) == sum(not f.negate for f in obj.filters)
        if q["kind"] == "visualization":
            state = json.loads(d._vis_object(obj, source)["attributes"]["visState"])
            bucket_ids = [a["id"] for a in state["aggs"] if a["schema"] != "metric"]
            # the outermost bucket agg carries the visState id of the first bucket
            if bucket_ids:
                assert list(body["aggs"]) == [bucket_ids[0]]
            assert body["size"] == 0
        else:
            assert body["size"] > 0 and "sort" in body


def test_panel_aggs_nest_and_order_by_metric() -> None:
    vis = d.Visualization(
        id="kaudit-vis-x", title="x", vis="table", index="audit",
        buckets=(d.Bucket("terms", "user.name", 5, missing="(none)"), d.Bucket("terms", "event.action", 3, order_by=1)),
        metrics=(d.Metric("count"), d.Metric("max", "event.duration")),
    )
    aggs = d.panel_aggs(vis)
    outer = aggs["3"]
    assert outer["terms"] == {"field": "user.name", "size": 5, "order": {"_count": "desc"}, "missing": d.MISSING_KEY}
    inner = outer["aggs"]["4"]
    assert inner["terms"]["order"] == {"2": "desc"}
    assert inner["aggs"] == {"2": {"max": {"field": "event.duration"}}}


def test_phrase_filters_render_for_ui_and_dsl(source: d.Source) -> None:
    vis = source.visualizations["kaudit-vis-changes-failed"]
    obj = d._vis_object(vis, source)
    ssj = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert ssj["filter"][0]["meta"]["type"] == "phrase"
    assert ssj["filter"][0]["query"] == {"match_phrase": {"event.outcome": "failure"}}
    q = next(x for x in d.panel_queries(source) if x["panel"] == vis.id)
    assert {"match_phrase": {"event.outcome": "failure"}} in q["body"]["query"]["bool"]["filter"]


def test_query_fields_reads_lucene() -> None:
    q = r'kubernetes.audit.annotations.authorization_k8s_io\/decision:forbid OR (a.b:x AND _exists_:c.d) AND NOT e:"y:z"'
    assert d.query_fields(q) == {"kubernetes.audit.annotations.authorization_k8s_io/decision", "a.b", "c.d", "e"}


def test_rule_saved_searches_hook() -> None:
    searches = d.saved_searches_for_rules([("0d933542-1f1f", "Unauthorized access", "http.response.status_code:403")])
    assert searches[0].id == "kaudit-search-rule-0d933542-1f1f"
    objs = d.render("opensearch", rules=[("r-1", "Rule one", "event.action:create")])
    rule_obj = next(o for o in objs if o["id"] == "kaudit-search-rule-r-1")
    ssj = json.loads(rule_obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert ssj["query"] == {"query": "event.action:create", "language": "lucene"}
    assert rule_obj["references"][0]["id"] == "kaudit-index-pattern-audit"
    with pytest.raises(ContentError, match="not unique"):
        d.saved_searches_for_rules([("a", "A", "x:1"), ("A", "B", "x:2")])


def _copy_source(tmp_path: Path) -> Path:
    target = tmp_path / "dashboards"
    shutil.copytree(d.load_source().files[0].rsplit("/", 1)[0], target)
    return target


def test_undeclared_field_is_rejected_with_its_name(tmp_path: Path) -> None:
    folder = _copy_source(tmp_path)
    path = folder / "overview.yaml"
    path.write_text(path.read_text().replace("terms: event.action,", "terms: event.nonexistent,", 1))
    with pytest.raises(ContentError, match="event.nonexistent"):
        d.load_source(folder)


def test_duplicate_id_and_unknown_panel_are_rejected(tmp_path: Path) -> None:
    folder = _copy_source(tmp_path)
    path = folder / "security.yaml"
    path.write_text(path.read_text().replace("kaudit-vis-security-denied-top", "kaudit-vis-overview-totals"))
    with pytest.raises(ContentError, match="duplicate saved-object id 'kaudit-vis-overview-totals'"):
        d.load_source(folder)
    folder2 = _copy_source(tmp_path / "b")
    path = folder2 / "detections.yaml"
    path.write_text(path.read_text().replace("search: kaudit-search-latest-alerts", "search: kaudit-search-nope"))
    with pytest.raises(ContentError, match="kaudit-search-nope"):
        d.load_source(folder2)


# --------------------------------------------------------------------------- import over HTTP


class _Recorder(BaseHTTPRequestHandler):
    responses: list[dict] = []
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers["Content-Length"])
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)})
        payload = json.dumps(self.responses.pop(0)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_ui() -> Any:
    """A local HTTP endpoint that records the request and answers with queued _import responses.

    It checks what kaudit-elk sends (path, headers, multipart body); it is not a model of Kibana.
    """
    _Recorder.responses, _Recorder.seen = [], []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Recorder
    server.shutdown()


@pytest.mark.parametrize("flavor,header", [("kibana", "kbn-xsrf"), ("opensearch", "osd-xsrf")])
def test_import_posts_multipart_with_the_flavors_xsrf_header(fake_ui: Any, flavor: str, header: str) -> None:
    server, rec = fake_ui
    objects = d.render(flavor)  # type: ignore[arg-type]
    rec.responses.append({"success": True, "successCount": len(objects), "errors": []})
    url = f"http://127.0.0.1:{server.server_port}"
    summary = d.import_objects(url, flavor, objects, username="u", password="p", space="sec")  # type: ignore[arg-type]
    req = rec.seen[0]
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers[header] == "true"
    other = "osd-xsrf" if header == "kbn-xsrf" else "kbn-xsrf"
    assert other not in headers
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert headers["authorization"].startswith("Basic ")
    expected_path = "/s/sec/api/saved_objects/_import?overwrite=true" if flavor == "kibana" else "/api/saved_objects/_import?overwrite=true"
    assert req["path"] == expected_path
    body = req["body"].decode()
    assert 'name="file"; filename="kaudit-elk.ndjson"' in body
    assert d.to_ndjson(objects) in body
    assert summary["imported"] == len(objects) and summary["by_type"]["dashboard"] == 4


def test_import_failure_names_each_object(fake_ui: Any) -> None:
    server, rec = fake_ui
    objects = d.render("opensearch")
    rec.responses.append({"success": False, "successCount": len(objects) - 1, "errors": [
        {"id": "kaudit-vis-overview-totals", "type": "visualization",
         "error": {"type": "missing_references", "references": [{"type": "index-pattern", "id": "gone"}]}}]})
    with pytest.raises(d.DashboardsImportError) as exc:
        d.import_objects(f"http://127.0.0.1:{server.server_port}", "opensearch", objects)
    msg = str(exc.value)
    assert "visualization/kaudit-vis-overview-totals (Totals)" in msg
    assert "missing_references index-pattern/gone" in msg


def test_import_unreachable_is_an_engine_error() -> None:
    from kaudit_elk.base.errors import EngineError

    with pytest.raises(EngineError, match="cannot connect"):
        d.import_objects("http://127.0.0.1:9", "kibana", d.render("kibana"), timeout=2)


# --------------------------------------------------------------------------- CLI


def _app() -> Any:
    import typer

    from kaudit_elk.cli import views as cli_dashboards

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    cli_dashboards.register(app)
    return app


@pytest.mark.parametrize("flavor", FLAVORS)
def test_cli_export_prints_ndjson(flavor: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(_app(), ["dashboards", "export", "--flavor", flavor, "--namespace", "*"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines == d.render(flavor, index_namespace="*")  # type: ignore[arg-type]


def test_cli_import_without_url_is_a_usage_error() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(_app(), ["dashboards", "import"], env={"KAUDIT_KIBANA_URL": "", "KAUDIT_DASHBOARDS_URL": ""})
    assert result.exit_code == 2
    assert "--kibana-url" in result.output
