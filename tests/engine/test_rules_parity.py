"""Rules in the engine agree with the local evaluator (design decision 5), on every engine under test.

(a) every single-event rule's compiled query hits exactly the corpus documents the local evaluator
    matches on the same raw events (rules that only compile to a prefilter: a superset, and exactly
    after the client-side check), and every rule's own ``match`` test events / none of its
    ``no_match`` events;
(b) ``engine_alerts`` over one window covering the corpus gives the alert ids ``scan`` gives;
(c) consecutive windows over the same range give the same alert ids, none twice.

Reference events for (b)/(c): the corpus events the index holds (``normalize`` accepts them; the
default policy drops RequestReceived), with a timestamp, in event-time order (``scan`` reads files in
their own order; a few corpus files are not time-ordered). Events without any timestamp are indexed at
ingest time (``kaudit_timestamp_missing``), outside the corpus windows, so both sides leave them out of
(b)/(c); a separate test runs a window over their ingest time.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from kaudit_elk.ingest.bulk import IngestOptions, event_key, ingest
from kaudit_elk.events.normalize import NormalizeError, doc_id, normalize
from kaudit_elk.rules.alerts import event_time
from kaudit_elk.rules.compiler import QueryTarget, compile_rule_query
from kaudit_elk.rules.evaluator import compile_rule
from kaudit_elk.detect.engine_search import (
    compile_pack,
    doc_event,
    engine_alerts,
    named_hits,
    named_query,
    pack_fields,
    redot_keys,
    search_hits,
)
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.rules.runner import Runner
from kaudit_elk.rules.selftest import complete_events
from kaudit_elk.events.sources import read_records

pytestmark = pytest.mark.engine
STAGES = {"ResponseComplete", "ResponseStarted", "Panic"}


@pytest.fixture(scope="module")
def pack():
    return load_rules([default_pack_dir()])


@pytest.fixture
def fresh_namespace(engine):
    """A bootstrapped namespace of its own; its data stream is deleted afterwards."""
    from kaudit_elk.cluster.bootstrap import apply, build_plan
    from kaudit_elk.cluster.templates import BootstrapOptions, Names

    namespace = f"rules{uuid.uuid4().hex[:10]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    yield namespace
    engine.request("DELETE", f"/_data_stream/{Names(namespace).stream}", ignore=(400, 404, 405))


@pytest.fixture(scope="module")
def indexed_events(corpus_files: list[str]) -> dict[str, dict]:
    """doc _id -> raw event, for the corpus events ingest indexes (first one wins, like ``create``)."""
    out: dict[str, dict] = {}
    for rec in read_records(corpus_files):
        if rec.event is None:
            continue
        try:
            doc = normalize(rec.event)
        except NormalizeError:
            continue
        if doc is None:
            continue
        key = doc_id("default", event_key(rec.event), str(doc["kubernetes"]["audit"].get("stage", "")))
        out.setdefault(key, rec.event)
    return out


def _hits_by_rule(engine, index: str, compiled, rule_ids, keys, pack) -> tuple[dict, dict]:
    """(ids hit per rule by the query, ids after the client-side check of prefilter-only rules)."""
    raw: dict[str, set[str]] = {r: set() for r in rule_ids}
    checked: dict[str, set[str]] = {r: set() for r in rule_ids}
    clauses = named_query(compiled, rule_ids)
    if not clauses:
        return raw, checked
    for hit in named_hits(engine, index, clauses, source=["kubernetes.audit"]):
        event = doc_event(hit["_source"], keys)
        for rid in hit.get("matched_queries") or []:
            raw[rid].add(hit["_id"])
            if compiled[rid].exact or pack.get(rid).matches(event):
                checked[rid].add(hit["_id"])
    return raw, checked


def test_compiled_queries_match_the_local_evaluator_on_the_corpus(engine, ingested_corpus, indexed_events, pack):
    compiled = compile_pack(pack, QueryTarget.for_engine(engine))
    rule_ids = [r.id for r in pack.single]
    raw, checked = _hits_by_rule(engine, ingested_corpus, compiled, rule_ids, redot_keys(pack_fields(pack)), pack)
    problems = []
    matched_rules = 0
    for r in pack.single:
        local = {i for i, ev in indexed_events.items() if r.matches(ev)}
        matched_rules += bool(local)
        if compiled[r.id].exact and raw[r.id] != local:
            problems.append(f"{r.title}: engine-only {sorted(raw[r.id] - local)[:3]}, local-only {sorted(local - raw[r.id])[:3]}")
        if not compiled[r.id].exact and (not raw[r.id] >= local or checked[r.id] != local):
            problems.append(f"{r.title} (prefilter): missed {sorted(local - raw[r.id])[:3]}, "
                            f"after check {sorted(checked[r.id] ^ local)[:3]}")
    assert not problems, "\n".join(problems)
    assert matched_rules >= 20  # the corpus exercises a good share of the pack


def _test_cases(pack) -> list[tuple[Any, str, int, list[dict], dict]]:
    """(rule, expectation, case number, events, placeholders) for every single-event rule's own cases."""
    out = []
    for r in pack.single:
        tests = r.tests or {}
        ph = {**pack.placeholders, **{k: [str(x) for x in v] for k, v in (tests.get("placeholders") or {}).items()}}
        for expect in ("match", "no_match"):
            if expect == "no_match" and r.kind == "new_terms":
                continue  # a new-terms no_match is decided by history, not by the query
            for n, case in enumerate(tests.get(expect) or []):
                events = complete_events(case, r.id, n)
                for i, e in enumerate(events):
                    e["auditID"] = f"{r.id}-{expect}-{n}-{i}"
                if r.kind == "new_terms":
                    events = events[-1:]
                out.append((r, expect, n, events, ph))
    return out


def test_compiled_queries_hit_each_rules_own_test_events(engine, pack, tmp_path, fresh_namespace):
    from kaudit_elk.cluster.templates import Names

    namespace = fresh_namespace
    cases = _test_cases(pack)
    path = tmp_path / "cases.ndjson"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for *_, events, _ in cases for e in events
                              if e.get("stage") in STAGES))
    stats = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=str(tmp_path / "dead"),
                                                     refresh=True))
    assert stats.dead_lettered == 0
    index = Names(namespace).stream
    target = QueryTarget.for_engine(engine)
    keys = redot_keys(pack_fields(pack))
    problems = []
    checked_cases = 0
    for rule, expect, n, events, ph in cases:
        compiled = compile_rule_query(rule, target, ph)
        ids = [e["auditID"] for e in events if e.get("stage") in STAGES]
        if not ids:
            continue
        checked_cases += 1
        query = {"bool": {"filter": [compiled.query, {"terms": {"kubernetes.audit.auditID": ids}}]}}
        hits = list(search_hits(engine, index, query, source=["kubernetes.audit"]))
        if not compiled.exact:  # prefilter: the client-side check decides (with the case's placeholders)
            local = compile_rule(rule.sigma, ph)
            hits = [h for h in hits if local(doc_event(h["_source"], keys))]
        if (expect == "match") != bool(hits):
            problems.append(f"{rule.title} {expect}[{n}]: {len(hits)} hit(s)")
    assert not problems, "\n".join(problems)
    assert checked_cases > 100


# --------------------------------------------------------------------------- alerts


@pytest.fixture(scope="module")
def reference(indexed_events, pack) -> tuple[list[dict], float, float]:
    """(timestamped indexed corpus events in read order, first and last event time)."""
    events = [e for e in indexed_events.values() if event_time(e) is not None]
    times = [event_time(e) for e in events]
    return events, min(times), max(times)  # type: ignore[type-var]


def _scan_ids(events, pack) -> set[str]:
    return {a["kaudit"]["alert"]["id"] for a in Runner(pack).run(events)}


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


def test_engine_alerts_equal_scan_alerts_over_one_window(engine, ingested_corpus, reference, pack):
    events, first, last = reference
    expected = _scan_ids(sorted(events, key=lambda e: event_time(e)), pack)
    alerts = engine_alerts(engine, ingested_corpus, pack, _dt(first), _dt(last + 86400))
    ids = [a["kaudit"]["alert"]["id"] for a in alerts]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert len(expected) > 50
    kinds = {a["rule"]["kind"] for a in alerts}
    assert {"single", "correlation", "new_terms"} <= kinds


@pytest.mark.parametrize("windows", [3, 17])
def test_consecutive_windows_neither_miss_nor_duplicate(engine, ingested_corpus, reference, pack, windows):
    events, first, last = reference
    whole = {a["kaudit"]["alert"]["id"] for a in engine_alerts(engine, ingested_corpus, pack, _dt(first),
                                                                _dt(last + 86400))}
    times = sorted(event_time(e) for e in events)  # type: ignore[type-var]
    # boundaries at event-time quantiles (so windows split bursts and correlations) plus the far end
    cuts = sorted({first} | {times[len(times) * k // windows] for k in range(1, windows)} | {last + 86400})
    ids: list[str] = []
    for a, b in zip(cuts, cuts[1:]):
        ids += [x["kaudit"]["alert"]["id"] for x in engine_alerts(engine, ingested_corpus, pack, _dt(a), _dt(b))]
    assert len(ids) == len(set(ids)), "an alert was raised by two windows"
    assert set(ids) == whole


def test_fixed_short_lookback_is_still_gap_free(engine, ingested_corpus, reference, pack):
    """With an explicit lookback the windows stay disjoint (no duplicate), whatever the replay length."""
    events, first, last = reference
    mid = sorted(event_time(e) for e in events)[len(events) // 2]  # type: ignore[type-var]
    ids = []
    for a, b in ((first, mid), (mid, last + 86400)):
        ids += [x["kaudit"]["alert"]["id"] for x in engine_alerts(engine, ingested_corpus, pack, _dt(a), _dt(b),
                                                                  lookback=timedelta(minutes=30))]
    assert len(ids) == len(set(ids))


def test_saved_search_queries_match_the_local_evaluator(engine, ingested_corpus, indexed_events, pack):
    """Each rule's Lucene saved search (query_string) hits exactly what the local evaluator matches."""
    from kaudit_elk.rules.compiler import compile_lucene

    problems, checked = [], 0
    for r in pack.single:
        lucene = compile_lucene(r, pack.placeholders)
        if lucene is None:
            continue
        checked += 1
        query = {"query_string": {"query": lucene, "default_operator": "AND"}}
        hits = {h["_id"] for h in search_hits(engine, ingested_corpus, query, source=False)}
        local = {i for i, ev in indexed_events.items() if r.matches(ev)}
        if hits != local:
            problems.append(f"{r.title}: engine-only {len(hits - local)}, local-only {len(local - hits)}")
    assert not problems, "\n".join(problems)
    assert checked >= 40


def test_user_rules_and_tuning_exceptions_keep_parity(engine, ingested_corpus, indexed_events, reference, corpus_dir):
    """SigmaHQ's Kubernetes rules loaded with the pack, plus a tuning exception on every rule."""
    tuning = {"exceptions": [{"rule": "*", "match": {"user.username|startswith": "system:serviceaccount:kube-system:"}}]}
    pack = load_rules([default_pack_dir(), corpus_dir / "sigmahq-kubernetes-audit-rules"], tuning=tuning)
    compiled = compile_pack(pack, QueryTarget.for_engine(engine))
    rule_ids = [r.id for r in pack.single]
    _, checked = _hits_by_rule(engine, ingested_corpus, compiled, rule_ids, redot_keys(pack_fields(pack)), pack)
    wrong = [r.title for r in pack.single if checked[r.id] != {i for i, ev in indexed_events.items() if r.matches(ev)}]
    assert not wrong
    events, first, last = reference
    expected = _scan_ids(sorted(events, key=lambda e: event_time(e)), pack)
    got = {a["kaudit"]["alert"]["id"] for a in engine_alerts(engine, ingested_corpus, pack, _dt(first), _dt(last + 86400))}
    assert got == expected
    assert len(pack.single) > 90


def test_windows_cut_inside_correlation_evidence(engine, ingested_corpus, reference, pack):
    """Cut every correlation alert's evidence in two: the lookback replay must still find each one once;
    without a lookback the correlations straddling a cut are lost (the test can tell)."""
    _, first, last = reference
    whole = engine_alerts(engine, ingested_corpus, pack, _dt(first), _dt(last + 86400))
    spans = []
    for a in whole:
        al = a["kaudit"]["alert"]
        if a["rule"]["kind"] == "correlation" and al["first_event_time"] != al["last_event_time"]:
            spans.append((event_time({"stageTimestamp": al["first_event_time"]}),
                          event_time({"stageTimestamp": al["last_event_time"]})))
    assert spans, "the corpus should hold multi-event correlation alerts"
    cuts = sorted({first, last + 86400} | {(a + b) / 2 for a, b in spans})

    def run(lookback=None):
        out = []
        for a, b in zip(cuts, cuts[1:]):
            out += [x["kaudit"]["alert"]["id"] for x in engine_alerts(engine, ingested_corpus, pack, _dt(a), _dt(b),
                                                                      lookback=lookback)]
        return out

    ids = run()
    assert len(ids) == len(set(ids))
    assert set(ids) == {a["kaudit"]["alert"]["id"] for a in whole}
    assert len(set(run(timedelta(0)))) < len(set(ids))


# --------------------------------------------------------------------------- construct matrix

_BASE = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "stage": "ResponseComplete",
         "requestReceivedTimestamp": "2026-01-15T10:00:00.000000Z", "stageTimestamp": "2026-01-15T10:00:00.100000Z"}
_EVENTS = [
    {"verb": "create", "user": {"username": "Alice@Example.com", "groups": ["dev", "system:authenticated"]},
     "sourceIPs": ["10.1.2.3", "203.0.113.7"], "userAgent": "kubectl/v1.29.0 (linux/amd64)",
     "requestURI": "/api/v1/namespaces/prod/pods/web/exec?command=%2Fbin%2Fsh&command=-c",
     "objectRef": {"resource": "pods", "namespace": "prod", "name": "web", "subresource": "exec"},
     "responseStatus": {"code": 201}, "annotations": {"authorization.k8s.io/decision": "Allow"},
     "requestObject": {"spec": {"hostNetwork": True, "replicas": 3, "clusterIP": "10.96.0.17",
                                "containers": [{"image": "docker.io/Busybox:1.36", "securityContext": {"privileged": True}},
                                               {"image": "nginx"}]},
                       "data": {"password": "hunter2"}, "metadata": {"labels": {"app": "web"}}}},
    {"verb": "GET", "user": {"username": "system:serviceaccount:kube-system:deployment-controller"},
     "sourceIPs": ["fd00::5"], "userAgent": "curl/8.5.0", "requestURI": "/api/v1/secrets?limit=500",
     "objectRef": {"resource": "secrets"}, "responseStatus": {"code": 403},
     "annotations": {"authorization.k8s.io/decision": "forbid"},
     "requestObject": {"spec": {"hostNetwork": "false", "replicas": "3.0", "clusterIP": "10.96.0.170"}}},
    {"verb": "patch", "user": {"username": "bob"}, "sourceIPs": ["198.51.100.4"], "requestURI": "/apis/apps/v1/deployments/x",
     "objectRef": {"resource": "deployments", "apiGroup": "apps"},
     "requestObject": [{"op": "replace", "path": "/spec/replicas", "value": 5}]},
    {"verb": "list", "user": {"username": "carol"}, "sourceIPs": ["not-an-ip"], "objectRef": {"resource": "configmaps"},
     "responseStatus": {"code": 200}, "requestObject": {"spec": {"tls": [{"hosts": ["a.example.com"]}]}}},
    {"verb": "get", "user": {"username": "system:serviceaccount:prod:web",
                             "extra": {"authentication.kubernetes.io/pod-name": ["web-7d9f"]}},
     "impersonatedUser": {"username": "admin"}, "sourceIPs": ["10.0.0.9"], "objectRef": {"resource": "secrets"},
     "userAgent": "python-requests/2.31", "requestURI": "/api/v1/namespaces/prod/secrets/YWRtaW4=",
     "requestObject": {"spec": {"hostNetwork": None}}},
]
_ITEMS = [
    {"user.username": "alice@example.com"}, {"user.username|cased": "Alice@Example.com"}, {"user.username|cased": "alice@example.com"},
    {"user.username|startswith": "system:serviceaccount:kube-system:"}, {"user.username|endswith": "@EXAMPLE.COM"},
    {"user.username|contains": ["ali", "caro"]}, {"user.username": "?ob"}, {"user.groups": "DEV"},
    {"verb": ["get", "list"]}, {"userAgent|re": "^kubectl/v1\\.[0-9]+"}, {"userAgent|re|i": "CURL"},
    {"requestURI|contains|all": ["exec", "command=%2Fbin%2Fsh"]}, {"requestURI|contains": "limit=500"},
    {"responseStatus.code": 403}, {"responseStatus.code": "201"}, {"responseStatus.code|gte": 400},
    {"responseStatus.code|lt": 300}, {"responseStatus.code": "ok"}, {"responseStatus.code|exists": False},
    {"annotations.authorization.k8s.io/decision": "allow"}, {"sourceIPs|cidr": "10.0.0.0/8"},
    {"sourceIPs|cidr": "fc00::/7"}, {"sourceIPs|cidr": ["198.51.100.0/24", "203.0.113.0/24"]},
    {"requestObject.spec.clusterIP|cidr": "10.96.0.16/28"}, {"requestObject.spec.clusterIP|cidr": "10.96.0.0/16"},
    {"requestObject.spec.hostNetwork": True}, {"requestObject.spec.hostNetwork": "false"},
    {"requestObject.spec.replicas": 3}, {"requestObject.spec.replicas": "3"}, {"requestObject.spec.replicas|gte": 2},
    {"requestObject.spec.containers.image|contains": "busybox"}, {"requestObject.spec.containers.image|startswith": "DOCKER.io/"},
    {"requestObject.spec.containers.image|re": "^[a-z0-9.-]+\\.[a-z]+/"}, {"requestObject.spec.containers.securityContext.privileged": "true"},
    {"requestObject.spec.hostNetwork|exists": True}, {"requestObject.spec.tls|exists": True}, {"requestObject.spec.tls|exists": False},
    {"requestObject.data|contains": "hunter"}, {"requestObject.metadata.labels": "web"}, {"requestObject": "hunter2"},
    {"requestObject.value": 5}, {"requestObject.op": "replace"}, {"objectRef.apiGroup": None}, {"userAgent": None},
    {"objectRef.subresource|exists": True}, {"user.username|expand": "%people%"}, {"impersonatedUser.username|exists": False},
    {"user.extra.authentication.kubernetes.io/pod-name|startswith": "WEB-"}, {"impersonatedUser.username": "ADMIN"},
    {"requestObject.spec.containers.image|endswith": ":1.36"}, {"requestObject.spec.hostNetwork": None},
    {"requestURI|base64|contains": "admin"}, {"user.username|fieldref": "impersonatedUser.username"},
    {"user.username|expand": "%nobody%"}, {"userAgent|windash|contains": "-requests"}, {"requestObject|contains": "EXAMPLE.com"},
]


def test_every_construct_matches_like_the_local_evaluator(engine, tmp_path, fresh_namespace):
    """Each Sigma construct on each field type: compiled query (+ client check when a prefilter) == local."""
    from sigma.rule import SigmaRule

    from kaudit_elk.rules.loader import PackRule
    from kaudit_elk.cluster.templates import Names

    namespace = fresh_namespace
    events = [{**_BASE, **e, "auditID": f"ev{i}"} for i, e in enumerate(_EVENTS)]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    stats = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=str(tmp_path / "dead"), refresh=True))
    assert stats.indexed == len(events)
    index, target = Names(namespace).stream, QueryTarget.for_engine(engine)
    placeholders = {"people": ["bob", "car*"], "nobody": []}
    problems = []
    for item in _ITEMS:
        sigma = SigmaRule.from_dict({"title": "c", "logsource": {"product": "kubernetes", "service": "audit"},
                                     "detection": {"sel": item, "condition": "sel"}})
        rule = PackRule(id="c", title="c", level="low", kind="single", sigma=sigma, path="-",
                        predicate=compile_rule(sigma, placeholders))
        compiled = compile_rule_query(rule, target, placeholders)
        local = {e["auditID"] for e in events if rule.matches(e)}
        hits = list(search_hits(engine, index, compiled.query, source=["kubernetes.audit"]))
        found = {h["_source"]["kubernetes"]["audit"]["auditID"] for h in hits
                 if compiled.exact or rule.matches(doc_event(h["_source"], redot_keys(set(item))))}
        raw = {h["_source"]["kubernetes"]["audit"]["auditID"] for h in hits}
        if found != local or not raw >= local:
            problems.append(f"{item}: engine {sorted(found)} (query {sorted(raw)}), local {sorted(local)}, {compiled.reasons}")
    assert not problems, "\n".join(problems)


def test_events_without_timestamps_alert_alike_at_ingest_time(engine, ingested_corpus, indexed_events, pack):
    """Events with no timestamp at all are indexed at ingest time (tag ``kaudit_timestamp_missing``); a window
    over that time gives the single-event alerts scan gives. (Correlation and new-terms ids carry event time
    or depend on order, which such events do not have: scan uses the last time it saw, the engine ingest time.)"""
    tagged = list(search_hits(engine, ingested_corpus, {"term": {"tags": "kaudit_timestamp_missing"}}, source=False))
    untimed = [e for e in indexed_events.values() if event_time(e) is None]
    assert len(tagged) == len(untimed) > 0
    times = [h["sort"][0] / 1000.0 for h in tagged]
    got = engine_alerts(engine, ingested_corpus, pack, _dt(min(times)), _dt(max(times) + 1))
    expected = list(Runner(pack).run(untimed))

    def singles(alerts):
        return {a["kaudit"]["alert"]["id"] for a in alerts if a["rule"]["kind"] == "single"}

    assert singles(got) == singles(expected) and len(singles(expected)) > 50


def test_new_terms_on_source_ips_are_primed_from_an_aggregation(engine, tmp_path, fresh_namespace):
    """A sourceIPs new-terms rule reads its history with a composite aggregation on ``source.ip`` (not
    every document) and agrees with scan: the client address is the first entry that is an IP, and its
    IPv6 spellings are one term."""
    import shutil

    from kaudit_elk.detect.engine_search import _terms_agg_ok
    from kaudit_elk.detect.scan import scan_events
    from kaudit_elk.cluster.templates import Names

    rule_dir = tmp_path / "rules"
    rule_dir.mkdir()
    shutil.copy(default_pack_dir() / "credentials" / "secret-read-new-client.yml", rule_dir)
    pack = load_rules([rule_dir])
    (rule,) = pack.single
    assert _terms_agg_ok(rule, compile_rule_query(rule, QueryTarget.for_engine(engine), pack.placeholders))
    window = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)

    def read(aid: str, ips: list[str], at: datetime) -> dict:
        ts = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": aid, "stage": "ResponseComplete",
                "verb": "get", "requestURI": "/api/v1/namespaces/p/secrets/s", "userAgent": "curl/8.5",
                "objectRef": {"resource": "secrets", "namespace": "p", "name": "s", "apiVersion": "v1"},
                "user": {"username": "alice"}, "sourceIPs": ips, "responseStatus": {"code": 200},
                "requestReceivedTimestamp": ts, "stageTimestamp": ts}

    events = [
        read("h1", ["not-an-ip", "2001:DB8:0:0::1"], window - timedelta(days=2)),  # history
        read("h2", ["::ffff:10.1.1.1"], window - timedelta(days=1)),
        read("w1", ["2001:db8::1"], window + timedelta(seconds=10)),  # known client, other spelling
        read("w2", ["10.1.1.1", "192.168.0.9"], window + timedelta(seconds=20)),  # known (IPv4-mapped before)
        read("w3", ["10.9.9.9"], window + timedelta(seconds=30)),  # new
    ]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    stats = ingest(engine, [str(path)], IngestOptions(namespace=fresh_namespace, dead_letter=None, refresh=True))
    assert stats.indexed == len(events)
    alerts = engine_alerts(engine, Names(fresh_namespace).stream, pack, window, window + timedelta(minutes=5))
    local = [a for a in scan_events(events, pack) if a["@timestamp"] >= window.strftime("%Y-%m-%dT%H:%M:%S")]
    assert sorted(a["kaudit"]["alert"]["id"] for a in alerts) == sorted(a["kaudit"]["alert"]["id"] for a in local)
    assert [a["kaudit"]["alert"]["audit_ids"] for a in alerts] == [["w3"]]
    assert alerts[0]["kaudit"]["alert"]["new_terms"]["sourceIPs"] == "10.9.9.9"


def test_a_broad_new_terms_rule_reads_only_new_tuples_and_alerts_like_scan(engine, tmp_path, fresh_namespace):
    """A new-terms rule whose selection is nearly every request (a user outside the allowed list, once per
    user per day) is judged from a composite aggregation: the window's known users cost no document, only
    the new user's and the returning one's (last seen more than the history before) are read — both
    stages of a long request — and the alerts are scan's."""
    import shutil

    from kaudit_elk.detect.engine_search import EngineDetector
    from kaudit_elk.detect.scan import scan_events
    from kaudit_elk.cluster.templates import Names

    rule_dir = tmp_path / "rules"
    rule_dir.mkdir()
    shutil.copy(default_pack_dir() / "authn_authz" / "disallowed-user.yml", rule_dir)
    pack = load_rules([rule_dir])
    window = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)

    def call(aid: str, user: str, at: datetime, stage: str = "ResponseComplete") -> dict:
        ts = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": aid, "stage": stage,
                "verb": "list", "requestURI": "/api/v1/pods", "userAgent": "kubectl/v1.30.2",
                "objectRef": {"resource": "pods", "apiVersion": "v1"}, "user": {"username": user},
                "sourceIPs": ["10.0.0.7"], "responseStatus": {"code": 200},
                "requestReceivedTimestamp": ts, "stageTimestamp": ts}

    events = [
        call("h1", "bob@example.com", window - timedelta(hours=2)),  # history: bob known
        call("h2", "Carol@example.com", window - timedelta(days=2)),  # carol: seen, but more than 1 d ago
        *[call(f"b{i}", "bob@example.com", window + timedelta(seconds=10 + i)) for i in range(5)],
        call("c1", "carol@example.com", window + timedelta(seconds=30)),
        call("d1", "dave@example.com", window + timedelta(seconds=40), "ResponseStarted"),
        call("d1", "dave@example.com", window + timedelta(seconds=41)),
        call("d2", "dave@example.com", window + timedelta(seconds=50)),
        call("s1", "system:kube-scheduler", window + timedelta(seconds=60)),  # not selected
    ]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    stats = ingest(engine, [str(path)], IngestOptions(namespace=fresh_namespace, dead_letter=None, refresh=True))
    assert stats.indexed == len(events)
    start, end = window.timestamp(), (window + timedelta(minutes=5)).timestamp()
    with EngineDetector(engine, Names(fresh_namespace).stream, pack) as det:
        assert det.term_rules == [pack.single[0].id]
        alerts = det.window(start, end, lookback=0.0).alerts
        fetched = det.stats.fetched
    local = [a for a in scan_events(events, pack) if a["@timestamp"] >= window.strftime("%Y-%m-%dT%H:%M:%S")]
    assert sorted(a["kaudit"]["alert"]["id"] for a in alerts) == sorted(a["kaudit"]["alert"]["id"] for a in local)
    assert sorted(a["kaudit"]["alert"]["audit_ids"][0] for a in alerts) == ["c1", "d1"]
    assert fetched == 4  # carol's one document and dave's three; none of bob's five
