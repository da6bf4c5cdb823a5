"""Every dashboard panel's search, executed on the real engines over the normalized corpus.

Without a Kibana or OpenSearch Dashboards here, this is how the panels are proven: the exact
query + aggregations each panel runs (``dashboards.panel_queries``) must be accepted by
Elasticsearch and OpenSearch and must return data on the corpus.

Fixtures: ``engine`` (tests/engine/conftest.py) and ``ingested_corpus`` (the index or data stream
holding the whole normalized corpus). Alerts panels run on a temporary alerts index written here.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from kaudit_elk.views import dashboards
from kaudit_elk.views import report

pytestmark = pytest.mark.engine

SOURCE = dashboards.load_source()
QUERIES = dashboards.panel_queries(SOURCE)
AUDIT_PANELS = [q for q in QUERIES if SOURCE.index_patterns["audit"].title_for("*") == q["index"]]
ALERT_PANELS = [q for q in QUERIES if SOURCE.index_patterns["alerts"].title_for("*") == q["index"]]
INCIDENT_PANELS = [q for q in QUERIES if SOURCE.index_patterns["incidents"].title_for("*") == q["index"]]


def _ids(queries: list[dict]) -> list[str]:
    return [f"{q['dashboard'].removeprefix('kaudit-dashboard-')}:{q['panel']}" for q in queries]


def mapping_for(fields: dict[str, str]) -> dict[str, Any]:
    """Index mapping from dotted field names -> types (the declared alerts fields)."""
    props: dict[str, Any] = {}
    for dotted, ftype in fields.items():
        node = props
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = {"type": ftype}
    return {"properties": props}


def _alert(n: int, rule: str, severity: str, user: str) -> dict[str, Any]:
    ts = f"2024-03-0{n}T10:00:00Z"
    return {"@timestamp": ts, "rule": {"id": rule.lower().replace(" ", "-"), "name": rule},
            "kaudit": {"alert": {"id": f"a{n}", "severity": severity, "audit_ids": [f"x{n}"],
                                 "first_event_time": ts, "last_event_time": ts}},
            "user": {"name": user}, "source": {"ip": f"10.0.0.{n}"}, "tags": ["attack.execution"]}


@pytest.fixture
def alerts_index(engine: Any, unique_name: str) -> Iterator[str]:
    index = f"kaudit-alerts-{unique_name}"
    engine.request("PUT", f"/{index}", body={"mappings": mapping_for(dict(SOURCE.fields["alerts"]))})
    lines = []
    for n, (rule, sev, user) in enumerate([("Exec into pod", "high", "alice"), ("Exec into pod", "high", "bob"),
                                           ("Privileged pod", "medium", "alice")], start=1):
        lines += ['{"index": {}}', json.dumps(_alert(n, rule, sev, user))]
    engine.request("POST", f"/{index}/_bulk", body="\n".join(lines) + "\n", params={"refresh": "true"}, ndjson=True)
    yield index
    engine.request("DELETE", f"/{index}", ignore=(404,))


def assert_has_data(query: dict[str, Any], resp: dict[str, Any]) -> None:
    total = resp["hits"]["total"]
    total = total["value"] if isinstance(total, dict) else total
    assert total > 0, f"{query['panel']}: no documents match"
    body = query["body"]
    if query["kind"] == "search":
        assert resp["hits"]["hits"], f"{query['panel']}: no hits"
        return
    aggs = resp.get("aggregations") or {}
    assert set(aggs) == set(body["aggs"]), f"{query['panel']}: aggregations missing"
    for key, result in aggs.items():
        if "buckets" in result:
            assert result["buckets"], f"{query['panel']}: aggregation {key} has no buckets"
            inner = [k for k in body["aggs"][key].get("aggs", {}) if k in result["buckets"][0]]
            assert inner == list(body["aggs"][key].get("aggs", {})), f"{query['panel']}: nested aggregations missing"
        else:
            assert result.get("value") or result.get("values"), f"{query['panel']}: metric {key} is empty"


@pytest.mark.parametrize("query", AUDIT_PANELS, ids=_ids(AUDIT_PANELS))
def test_audit_panel_returns_data(engine: Any, ingested_corpus: str, query: dict[str, Any]) -> None:
    resp = engine.request("POST", f"/{ingested_corpus}/_search", body=query["body"])
    assert_has_data(query, resp)


@pytest.mark.parametrize("query", ALERT_PANELS, ids=_ids(ALERT_PANELS))
def test_alert_panel_returns_data(engine: Any, alerts_index: str, query: dict[str, Any]) -> None:
    resp = engine.request("POST", f"/{alerts_index}/_search", body=query["body"])
    assert_has_data(query, resp)


@pytest.fixture
def incidents_index(engine: Any, unique_name: str) -> Iterator[str]:
    """A namespace bootstrapped for real (the incidents index template) holding the sample log's incidents."""
    from kaudit_elk.cluster.bootstrap import apply, build_plan
    from kaudit_elk.cluster.templates import BootstrapOptions, Names
    from kaudit_elk.detect.scan import sample_path, scan
    from kaudit_elk.rules.incidents import build_incidents
    from kaudit_elk.rules.loader import default_pack_dir, load_rules

    namespace = unique_name.replace("kaudit-test-", "dash")
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    index = Names(namespace).incidents_index
    lines = []
    for doc in build_incidents(scan([str(sample_path())], load_rules([default_pack_dir()]), min_severity="low")):
        lines += [json.dumps({"index": {"_id": doc["kaudit"]["incident"]["id"]}}), json.dumps(doc)]
    engine.request("POST", f"/{index}/_bulk", body="\n".join(lines) + "\n", params={"refresh": "true"}, ndjson=True)
    yield index
    engine.request("DELETE", f"/{index}", ignore=(404,))


@pytest.mark.parametrize("query", INCIDENT_PANELS, ids=_ids(INCIDENT_PANELS))
def test_incident_panel_returns_data(engine: Any, incidents_index: str, query: dict[str, Any]) -> None:
    resp = engine.request("POST", f"/{incidents_index}/_search", body=query["body"])
    assert_has_data(query, resp)


def test_incident_fields_are_mapped_as_declared(engine: Any, incidents_index: str) -> None:
    used = sorted(dashboards.used_fields(SOURCE)["incidents"])
    caps = engine.request("GET", f"/{incidents_index}/_field_caps", params={"fields": ",".join(used)})["fields"]
    wrong = {n: sorted(caps.get(n, {})) for n in used if set(caps.get(n, {})) != {SOURCE.fields["incidents"][n]}}
    assert not wrong, f"declared vs mapped: {wrong}"


def test_every_panel_is_covered() -> None:
    assert len(AUDIT_PANELS) + len(ALERT_PANELS) + len(INCIDENT_PANELS) == len(QUERIES)
    assert ALERT_PANELS and AUDIT_PANELS and INCIDENT_PANELS


def test_declared_fields_exist_in_the_corpus_mapping(engine: Any, ingested_corpus: str) -> None:
    """Every field a panel uses on the audit index is mapped with the declared type (field caps)."""
    used = sorted(dashboards.used_fields(SOURCE)["audit"])
    resp = engine.request("GET", f"/{ingested_corpus}/_field_caps", params={"fields": ",".join(used)})
    caps = resp["fields"]
    problems = {}
    for name in used:
        types = set(caps.get(name, {})) - {"unmapped"}
        if types != {SOURCE.fields["audit"][name]}:
            problems[name] = (SOURCE.fields["audit"][name], sorted(types))
    assert not problems, f"declared vs mapped: {problems}"


def test_report_from_engine_matches_files(engine: Any, ingested_corpus: str) -> None:
    """The cluster-mode report reads the same documents: same numbers as computing on what it read."""
    docs = report.documents_from_engine(engine, ingested_corpus, None, None)
    totals = report.aggregate_overview(engine, ingested_corpus, None, None)
    assert len(docs) == totals["events"] > 0
    data = report.compute(docs)
    assert data.summary["events"] == totals["events"]
    assert data.summary["denied"] > 0 and data.exec_sessions
