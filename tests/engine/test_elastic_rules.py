"""Elastic's 45 prebuilt Kubernetes rules, run on documents kaudit-elk ingested, on both engines.

Rules: ``../shared/corpus/elastic-detection-rules-kubernetes/*.toml`` (Elastic's own files, unchanged).
Events: ``tests/elastic_rules/<rule>.yaml`` (our own): for each rule a positive raw audit Event, a
negative per exclusion (each must be excluded) and near misses (must not match either); each is
deep-merged onto :data:`BASE` (a ``null`` removes a key), negatives onto the positive.

* ``query`` / ``new_terms`` rules (KQL): translated to Query DSL as Kibana does
  (``elastic_query.kql_to_dsl``) and searched on the stream ``kaudit-elk ingest`` wrote; the positive
  must be the only match among the rule's events. ``new_terms`` fields must be aggregatable.
* ``eql`` rules: their conditions translated as EQL compares (``elastic_query.eql_to_dsl``) and
  searched the same way; the sequence rule's steps are searched apart and its join field and time
  window checked here (the test engines have no EQL).
* ``esql`` rules: not executable here (no ES|QL on the test engines): every field they read must be
  in the stream's mapping, typed as in Elastic's integration, and not ``flattened`` (ES|QL cannot
  read it) unless it is only queried inside ``KQL()``.
* Mixed cluster: an index with Elastic's integration mapping (built from the corpus copy of its
  ``fields.yml``/``ecs.yml``/``base-fields.yml``), holding a document as Elastic's pipeline writes it,
  beside our stream under ``logs-kubernetes.audit_logs-*``: ``_field_caps`` over both shows no
  conflicting type for any field of any rule, and only the documented conflicts elsewhere.
"""

from __future__ import annotations

import copy
import os
import tomllib
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from elastic_esql import evaluate as esql_evaluate
from elastic_esql import query_fields as esql_fields
from elastic_esql import scratch_rlike
from elastic_query import eql_fields, eql_to_dsl, kql_fields, kql_to_dsl
from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.templates import BootstrapOptions, Names
from kaudit_elk.events import fieldspec as fs
from kaudit_elk.ingest.bulk import IngestOptions, ingest

pytestmark = pytest.mark.engine

HERE = Path(__file__).resolve().parent
CORPUS = Path(os.environ.get("KAUDIT_CORPUS", HERE.parents[1].parent / "shared" / "corpus"))
if not CORPUS.is_dir() and os.environ.get("KAUDIT_REQUIRE_ENGINES") != "1":
    pytest.skip(f"corpus not found at {CORPUS} (set KAUDIT_CORPUS)", allow_module_level=True)
RULES = CORPUS / "elastic-detection-rules-kubernetes"
INTEGRATION = CORPUS / "elastic-integrations-kubernetes-audit_logs"
DATA = HERE.parent / "elastic_rules"
RULE_FILES = sorted(p.name for p in RULES.glob("*.toml"))
#: The one rule no backend can match (see its YAML file and the README).
NOT_MATCHABLE = {"persistence_service_account_bound_to_clusterrole.toml"}
#: Conflicts of the mixed-cluster check that no rule reads (tests/golden/ELASTIC_DIFF.md says why).
DOCUMENTED_CONFLICTS = {
    "kubernetes.audit.requestObject.rules",  # nested (Elastic) vs object: no rule reads the object itself
    "kubernetes.audit.responseObject.rules",
    "error.message",  # ECS match_only_text vs keyword (pipeline failure reasons)
}

T0 = datetime(2026, 11, 30, 9, 15, 0, 123456, tzinfo=timezone.utc)

#: What every event of these tests starts from: an allowed, completed request by a person.
BASE: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Request",
    "stage": "ResponseComplete",
    "verb": "get",
    "requestURI": "/api/v1/namespaces/default/pods",
    "user": {"username": "alice@example.com", "uid": "1f1d4b5e-2f0e-4a70-9d2d-6a6f2a0c7b31",
             "groups": ["developers", "system:authenticated"]},
    "sourceIPs": ["203.0.113.7"],
    "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
    "responseStatus": {"metadata": {}, "code": 200},
    "annotations": {"authorization.k8s.io/decision": "allow",
                    "authorization.k8s.io/reason": 'RBAC: allowed by ClusterRoleBinding "ops" of ClusterRole "admin"'},
}


def merge(base: Any, change: Any) -> Any:
    """``change`` deep-merged onto ``base``: dicts merge, anything else replaces, None removes the key."""
    if not isinstance(base, dict) or not isinstance(change, dict):
        return copy.deepcopy(change)
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def load_rule(name: str) -> dict[str, Any]:
    return tomllib.loads((RULES / name).read_text())["rule"]


def load_case(name: str) -> dict[str, Any]:
    path = DATA / (Path(name).stem + ".yaml")
    data = yaml.safe_load(path.read_text())
    assert data["rule"] == name, f"{path}: names rule {data['rule']}"
    return data


def case_events(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, raw event) of a rule's case file: positive, positive_next, negative/N, near_miss/N, also/N
    (``still_matching``: events the rule must report too)."""
    data = load_case(name)
    stem = Path(name).stem
    out: list[tuple[str, dict[str, Any]]] = []

    def event(label: str, change: dict[str, Any], base: dict[str, Any], at: datetime) -> dict[str, Any]:
        ev = merge(base, {k: v for k, v in change.items() if k != "seconds_later"})
        ev["auditID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"kaudit-elastic-rules/{stem}/{label}"))
        ev["requestReceivedTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ev["stageTimestamp"] = (at + timedelta(milliseconds=12)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append((label, ev))
        return ev

    positive = event("positive", data["positive"], BASE, T0)
    # ``group``: further events of an ES|QL rule's positive, 1 s apart, each merged onto the positive; a
    # negative's or near miss's ``change`` applies to all of them, its own ``group`` replaces theirs
    group = data.get("group") or ()

    def members(label: str, change: dict[str, Any], on: dict[str, Any], replace: Any = None) -> None:
        for k, member in enumerate(group if replace is None else replace, start=1):
            event(f"{label}/g{k}", member, merge(on, change), T0 + timedelta(seconds=k))

    members("positive", {}, positive)
    nxt = None
    if "positive_next" in data:
        later = T0 + timedelta(seconds=data["positive_next"].get("seconds_later", 60))
        nxt = event("positive_next", data["positive_next"], BASE, later)
    for i, neg in enumerate(data.get("negatives") or ()):
        on = nxt if neg.get("step") == 2 else positive
        when = T0 + timedelta(seconds=data["positive_next"].get("seconds_later", 60)) if neg.get("step") == 2 else T0
        event(f"negative/{i}", neg["change"], on, when)
        members(f"negative/{i}", neg["change"], positive, neg.get("group"))
    for i, miss in enumerate(data.get("near_misses") or ()):
        event(f"near_miss/{i}", miss.get("change") or {}, positive, T0)
        members(f"near_miss/{i}", miss.get("change") or {}, positive, miss.get("group"))
    for i, also in enumerate(data.get("still_matching") or ()):
        event(f"also/{i}", also["change"], positive, T0)
        members(f"also/{i}", also["change"], positive, also.get("group"))
    return out


# ---- the stream: every case event ingested with kaudit-elk ingest -----------------------------
_streams: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def stream(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    key = engine.settings.url  # one stream per engine: OpenSearch 2 and 3 share a flavor
    if key in _streams:
        return _streams[key]
    namespace = f"elastic{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    folder = tmp_path_factory.mktemp("elastic-rules")
    path = folder / "events.ndjson"
    ids: dict[tuple[str, str], str] = {}
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
        for name in RULE_FILES:
            for label, ev in case_events(name):
                ids[(name, label)] = ev["auditID"]
                out.write(orjson.dumps(ev) + b"\n")
    stats = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=str(folder / "dl.ndjson"),
                                                      refresh=True))
    assert len(set(ids.values())) == len(ids)  # one auditID per case event
    # a bulk the client timed out on and retried counts its items as duplicates: what matters is that
    # every event is in the stream once
    assert (stats.indexed + stats.duplicates, stats.dead_lettered) == (len(ids), 0), stats
    name = Names(namespace).stream
    assert engine.request("POST", f"/{name}/_count", {"query": {"match_all": {}}})["count"] == len(ids)
    elastic = _elastic_index(engine, namespace)
    caps = engine.request("GET", f"/{name},{elastic}/_field_caps", params={"fields": "*"})["fields"]
    ours = engine.request("GET", f"/{name}/_field_caps", params={"fields": "*"})["fields"]
    _streams[key] = {"name": name, "ids": ids, "caps": caps, "ours": ours, "elastic": elastic}
    return _streams[key]


def _matched(engine: Engine, stream: dict[str, Any], rule: str, query: dict[str, Any]) -> set[str]:
    """Labels of this rule's events that ``query`` matches in the stream."""
    by_id = {v: label for (r, label), v in stream["ids"].items() if r == rule}
    body = {"size": 100, "_source": ["kubernetes.audit.auditID"],
            "query": {"bool": {"filter": [query, {"terms": {"kubernetes.audit.auditID": sorted(by_id)}}]}}}
    hits = engine.request("POST", f"/{stream['name']}/_search", body)["hits"]["hits"]
    return {by_id[h["_source"]["kubernetes"]["audit"]["auditID"]] for h in hits}


def _exact(ours: dict[str, Any]):
    """The field EQL compares exactly: a text field's keyword multi-field when it has one."""
    def exact(field: str) -> str:
        types = set(ours.get(field, {}))
        sub = f"{field}.{fs.EXACT_SUBFIELD}"
        return sub if types == {"text"} and sub in ours else field
    return exact


def rule_fields(rule: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(fields read as columns/terms, fields only queried inside ES|QL's KQL())."""
    if rule["language"] == "kuery":
        fields = kql_fields(rule["query"])
        nt = rule.get("new_terms")
        if nt:
            fields |= set(nt["value"])
        return fields, set()
    if rule["language"] == "eql":
        return eql_fields(rule["query"]), set()
    return esql_fields(rule["query"])


def _under_flat(field: str) -> bool:
    """Inside a flattened/flat_object field: kaudit's body copies or Elastic's flattened body paths
    (``spec.volumes.hostPath``)."""
    flat = (*fs.FLAT_FIELDS, *(f for f, t in fs.ELASTIC_BODY_FIELDS.items() if t == "flat"))
    return any(field.startswith(root + ".") for root in flat)


@pytest.mark.parametrize("rule_file", RULE_FILES)
def test_elastic_rule_on_kaudit_documents(engine: Engine, stream: dict[str, Any], rule_file: str) -> None:
    rule = load_rule(rule_file)
    case = load_case(rule_file)
    labels = {label for (r, label) in stream["ids"] if r == rule_file}
    ours, mixed = stream["ours"], stream["caps"]

    # every field the rule reads: in our stream (or inside a flattened body) and one type beside Elastic's
    direct, in_kql = rule_fields(rule)
    for field in sorted(direct | in_kql):
        assert field in ours or _under_flat(field), f"{field} is not in kaudit's documents"
        types = set(mixed.get(field, {})) - {"unmapped"}
        assert len(types) <= 1, f"{field}: types {types} conflict beside Elastic's integration"
    if rule["language"] == "esql":
        for field in sorted(direct):
            assert field in ours and "flattened" not in ours[field], f"{field}: ES|QL cannot read it here"
    new_terms = (rule.get("new_terms") or {}).get("value", ())
    for field in new_terms:
        assert any(c.get("aggregatable") for c in ours[field].values()), f"new-terms field {field} not aggregatable"
    if new_terms:  # the positive has a value in each (a new-terms rule skips documents without one)
        audit_id = stream["ids"][(rule_file, "positive")]
        body = {"size": 1, "_source": False, "docvalue_fields": list(new_terms),
                "query": {"term": {"kubernetes.audit.auditID": audit_id}}}
        (hit,) = engine.request("POST", f"/{stream['name']}/_search", body)["hits"]["hits"]
        assert set(hit.get("fields", {})) == set(new_terms), hit.get("fields")

    if rule["language"] == "esql":
        _check_esql(engine, stream, rule_file, rule, case, labels)
        return
    if rule["language"] == "kuery":
        steps = [(kql_to_dsl(rule["query"]), "positive")]
    else:
        eql = eql_to_dsl(rule["query"], _exact(ours))
        steps = list(zip(eql.steps, ["positive", "positive_next"]))
    if rule_file in NOT_MATCHABLE:
        assert case["status"] == "not matchable upstream" and case["reason"]
        assert _matched(engine, stream, rule_file, steps[0][0]) == set()
        return
    # engine gaps: cases this engine is known to get wrong (asserted wrong, so a fix shows up here)
    gaps = {f"negative/{i}" for i, neg in enumerate(case.get("negatives") or ()) if engine.flavor in (neg.get("gap") or {})}
    positive_gap = engine.flavor in (case.get("positive_gap") or {})
    for i, (query, wanted) in enumerate(steps, start=1):
        got = _matched(engine, stream, rule_file, query)
        step_labels = {lab for lab in labels if (lab == wanted) or (lab.startswith("negative/")
                       and (case["negatives"][int(lab.split("/")[1])].get("step", 1) == i))}
        if positive_gap:
            assert wanted not in got, f"step {i}: the positive now matches on {engine.flavor}: drop positive_gap"
            return
        assert wanted in got, f"step {i}: the positive event is not matched"
        wrong = got & (step_labels - {wanted}) - gaps
        assert not wrong, f"step {i}: excluded events matched: {sorted(wrong)}"
        fixed = (gaps & step_labels) - got
        assert not fixed, f"step {i}: {sorted(fixed)} now excluded on {engine.flavor}: drop their gap"
        if len(steps) == 1:
            also = {lab for lab in labels if lab.startswith("also/")}
            allowed = {"positive"} | also | gaps
            assert also <= got <= allowed, f"matched {sorted(got)}, expected the positive and {sorted(also)}"
    if len(steps) == 2:  # a sequence: same join value, in order, within maxspan
        events = dict(case_events(rule_file))
        first, second = events["positive"], events["positive_next"]
        assert eql.join == "user.name" and first["user"]["username"] == second["user"]["username"]
        gap = (datetime.fromisoformat(second["requestReceivedTimestamp"])
               - datetime.fromisoformat(first["requestReceivedTimestamp"])).total_seconds()
        assert 0 < gap <= eql.maxspan_seconds


#: When the ES|QL rules run: a few minutes after the events (the azure-arc rule keeps groups first seen
#: in the last 9 minutes).
ESQL_NOW = T0 + timedelta(minutes=5)


def _check_esql(engine: Engine, stream: dict[str, Any], rule_file: str, rule: dict[str, Any],
                case: dict[str, Any], labels: set[str]) -> None:
    """Each scenario (the positive with its group, each negative, each near miss) evaluated on its own."""
    ours = stream["ours"]
    scenarios: dict[str, list[str]] = {}
    for label in labels:
        head = label.split("/g")[0] if "/g" in label else label
        scenarios.setdefault(head, []).append(stream["ids"][(rule_file, label)])
    rlike = scratch_rlike(engine.request, f"kaudit-esql-scratch-{stream['name'].rsplit('-', 1)[-1]}")

    def run(ids: list[str]) -> list[dict[str, Any]]:
        def search(query: dict[str, Any], fields: list[str]) -> list[dict[str, list[Any]]]:
            body = {"size": 1000, "_source": False, "fields": fields,
                    "query": {"bool": {"filter": [query, {"terms": {"kubernetes.audit.auditID": ids}}]}}}
            return [h.get("fields", {}) for h in engine.request("POST", f"/{stream['name']}/_search", body)["hits"]["hits"]]

        def types(name: str) -> str:
            (only,) = set(ours[name]) if name in ours else {"unmapped"}
            return only

        return esql_evaluate(rule["query"], search=search, rlike=rlike, exact=_exact(ours), types=types,
                             now=ESQL_NOW).rows

    assert case.get("status", "matches") == "matches", case.get("status")
    rows = run(scenarios["positive"])
    assert rows, f"the positive ({len(scenarios['positive'])} events) gives no row"
    gaps = {f"negative/{i}" for i, neg in enumerate(case.get("negatives") or ()) if engine.flavor in (neg.get("gap") or {})}
    for name in sorted(scenarios):
        if name == "positive" or name.startswith("also/"):
            continue
        got = run(scenarios[name])
        if name in gaps:
            assert got, f"{name} is now excluded on {engine.flavor}: drop its gap"
        else:
            assert not got, f"{name} gives rows: {got}"
    for name in sorted(n for n in scenarios if n.startswith("also/")):
        assert run(scenarios[name]), f"{name} gives no row"


def test_every_rule_has_a_case_file() -> None:
    assert len(RULE_FILES) == 45
    assert {p.stem for p in DATA.glob("*.yaml")} == {Path(r).stem for r in RULE_FILES}


# ---- the mixed cluster: Elastic's integration index beside our stream --------------------------
#: ECS types of the ``external: ecs`` fields the integration declares (ecs.yml, base-fields.yml).
ECS_TYPES = {
    "@timestamp": "date", "ecs.version": "keyword", "error.message": "match_only_text", "event.ingested": "date",
    "event.original": "keyword", "agent.name": "keyword", "agent.type": "keyword", "agent.id": "keyword",
    "agent.ephemeral_id": "keyword", "agent.version": "keyword", "message": "match_only_text",
    "user.id": "keyword", "user.name": "keyword", "user_agent.original": "keyword", "source.ip": "ip",
    "client.ip": "ip", "event.kind": "keyword", "event.action": "keyword", "event.outcome": "keyword",
    "orchestrator.api_version": "keyword", "orchestrator.cluster.id": "keyword",
    "orchestrator.cluster.name": "keyword", "orchestrator.namespace": "keyword",
    "orchestrator.resource.name": "keyword", "orchestrator.resource.type": "keyword",
    "orchestrator.type": "keyword", "related.ip": "ip", "related.user": "keyword", "tags": "keyword",
    "data_stream.type": "constant_keyword", "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword", "event.dataset": "keyword", "log.file.path": "keyword",
}


def elastic_mapping(engine: Engine, namespace: str) -> dict[str, Any]:
    """Elastic's integration mapping as Fleet installs it, from the corpus copy of its field files."""
    props: dict[str, Any] = {}
    dynamic: list[dict[str, Any]] = []

    def put(dotted: str, spec: dict[str, Any]) -> None:
        node = props
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = spec

    def leaf(ftype: str, dotted: str = "") -> dict[str, Any]:
        if ftype == "keyword":
            return {"type": "keyword", "ignore_above": 1024}
        if ftype == "flattened":
            return {"type": engine.caps.flat_type}
        if ftype == "constant_keyword":  # OpenSearch requires the value; Fleet's templates leave it to the data
            if not engine.caps.constant_keyword:
                return {"type": "keyword"}
            value = {"data_stream.type": "logs", "data_stream.dataset": fs.EVENT_DATASET}.get(dotted, namespace)
            return {"type": "constant_keyword", "value": value}
        if ftype == "match_only_text":  # in the test engines' builds only where the type exists
            return {"type": "match_only_text" if engine.flavor == "opensearch" else "text"}
        return {"type": ftype}

    def walk(fields: list[dict[str, Any]], prefix: str) -> None:
        for f in fields:
            name = f"{prefix}{f['name']}"
            if f.get("type") == "group":
                walk(f.get("fields") or [], name + ".")
            elif name.endswith(".*"):
                obj = name[:-2]
                put(obj, {"type": "object", "dynamic": True})
                dynamic.append({obj: {"path_match": f"{obj}.*", "match_mapping_type": "string",
                                      "mapping": {"type": f.get("object_type", "keyword")}}})
            elif f.get("type") == "nested":
                put(name, {"type": "nested", "dynamic": bool(f.get("dynamic"))})
            else:
                put(name, leaf(f["type"]))

    walk(yaml.safe_load((INTEGRATION / "fields.yml").read_text()), "")
    for f in yaml.safe_load((INTEGRATION / "ecs.yml").read_text()) + yaml.safe_load(
            (INTEGRATION / "base-fields.yml").read_text()):
        put(f["name"], leaf(ECS_TYPES[f["name"]] if f.get("external") == "ecs" else f["type"], f["name"]))
    return {"dynamic": False, "dynamic_templates": dynamic, "properties": props}


ELASTIC_NAMESPACE = "default"


def _elastic_index(engine: Engine, namespace: str) -> str:
    """An index as Elastic's integration would have it, with one document as its pipeline writes one."""
    name = f"logs-kubernetes.audit_logs-integration{namespace}"
    engine.request("PUT", f"/{name}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                       "mappings": elastic_mapping(engine, ELASTIC_NAMESPACE)})
    expected = orjson.loads((INTEGRATION / "test-audit.log-expected.json").read_bytes())["expected"][0]
    expected = merge(expected, {"kubernetes": {"audit": {"user": {"extra": {
        "authentication.kubernetes.io/pod-name": ["api-6f7d9c5b4-x2kqz"]}}}}})
    expected["data_stream"] = {"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "default"}
    engine.request("PUT", f"/{name}/_doc/1", expected, params={"refresh": "true"})
    return name


def test_mixed_cluster_field_caps_have_no_conflict_on_any_rule_field(engine: Engine, stream: dict[str, Any]) -> None:
    mixed, ours = stream["caps"], stream["ours"]
    conflicts = {f for f, types in mixed.items() if len(set(types) - {"unmapped"}) > 1}
    used: set[str] = set()
    for name in RULE_FILES:
        direct, in_kql = rule_fields(load_rule(name))
        used |= direct | in_kql
    assert len(used) >= 40
    assert not conflicts & used, sorted(conflicts & used)
    assert conflicts <= DOCUMENTED_CONFLICTS, sorted(conflicts - DOCUMENTED_CONFLICTS)
    want = "constant_keyword" if engine.caps.constant_keyword else "keyword"
    for field in fs.DATA_STREAM_FIELDS:
        assert set(ours[field]) == {want}, (field, ours[field])
    # both indices answered, and the fields whose type we took from Elastic's are the same type
    for field in ("kubernetes.audit.user.groups", "kubernetes.audit.impersonatedUser.groups",
                  "kubernetes.audit.sourceIPs", "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name",
                  "data_stream.dataset", "data_stream.namespace", "kubernetes.audit.responseStatus.code"):
        assert len(mixed[field]) == 1 and field in ours, (field, mixed.get(field))
        (caps,) = mixed[field].values()
        assert caps.get("indices") is None, f"{field} is not in both indices: {caps}"
