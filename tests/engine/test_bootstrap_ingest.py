"""Bootstrap and ingest on real engines: idempotence, ownership, exactly-once, searchable fields."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from kaudit_elk.cluster.bootstrap import OwnershipError, apply, build_plan
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.events.normalize import doc_id
from kaudit_elk.events.sources import read_records
from kaudit_elk.cluster.templates import BootstrapOptions, Names


def _fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _count(engine: Engine, stream: str, query: dict[str, Any] | None = None) -> int:
    body = engine.request("POST", f"/{stream}/_count", {"query": query or {"match_all": {}}})
    return body["count"]


def test_bootstrap_from_empty_then_again_changes_nothing(engine: Engine) -> None:
    options = BootstrapOptions(namespace=_fresh_namespace())
    first = build_plan(engine, options)
    assert first.steps and all(s.action == "create" for s in first.steps)
    kinds = {s.desired.kind for s in first.steps}
    assert {"component_template", "index_template"} <= kinds
    assert ("ingest_pipeline" in kinds) == (engine.flavor == "opensearch")  # ES integ-test zip has no ingest-common
    apply(engine, first, options)
    second = build_plan(engine, options)
    assert [s.action for s in second.steps] == ["unchanged"] * len(first.steps)
    assert apply(engine, second, options) == []
    # the installed content version is recorded in the cluster
    state = engine.request("GET", f"/{Names(options.namespace).state_index}/_doc/bootstrap")["_source"]
    assert state["version"] and len(state["objects"]) == len(first.steps)


def test_bootstrap_refuses_to_clobber_foreign_objects(engine: Engine) -> None:
    options = BootstrapOptions(namespace=_fresh_namespace())
    names = Names(options.namespace)
    foreign = {"index_patterns": [f"someone-else-{options.namespace}"], "priority": 1, "template": {}}
    engine.request("PUT", f"/_index_template/{names.alerts_template}", foreign)
    the_plan = build_plan(engine, options)
    assert [s.desired.name for s in the_plan.conflicts] == [names.alerts_template]
    with pytest.raises(OwnershipError, match=names.alerts_template):
        apply(engine, the_plan, options)
    assert engine.request("GET", f"/_index_template/{names.alerts_template}")["index_templates"][0][
        "index_template"]["index_patterns"] == [f"someone-else-{options.namespace}"]
    forced = build_plan(engine, options, force=True)
    apply(engine, forced, options)
    assert all(s.action == "unchanged" for s in build_plan(engine, options).steps)


def _raw_events(files: list[str]) -> list[dict]:
    return [r.event for r in read_records(files) if r.event is not None]


def test_corpus_ingest_is_complete_and_exactly_once(
    engine: Engine, corpus_files: list[str], ingested_corpus: str, ingested_corpus_info: dict, tmp_path: Path
) -> None:
    stats = ingested_corpus_info["stats"]
    records = list(read_records(corpus_files))
    undecodable = [r for r in records if r.error]
    assert stats.read == len(records)
    # every record is accounted for, and only the undecodable ones are dead-lettered
    assert stats.indexed + stats.duplicates + stats.skipped + stats.dead_lettered == stats.read
    assert stats.dead_lettered == len(undecodable) and stats.indexed > 300
    # identity = (auditID, stage); events without an auditID are identified by their whole content
    keys = {(e.get("auditID") or json.dumps(e, sort_keys=True), e.get("stage")) for e in _raw_events(corpus_files)}
    assert _count(engine, ingested_corpus) == stats.indexed == len(keys)
    # the same files again: nothing new
    again = ingest(engine, corpus_files, IngestOptions(namespace=ingested_corpus_info["namespace"],
                                                        dead_letter=str(tmp_path / "dl.ndjson"), refresh=True))
    assert again.indexed == 0 and again.duplicates == stats.indexed + stats.duplicates
    assert _count(engine, ingested_corpus) == stats.indexed


def _get(event: dict, dotted: str) -> Any:
    cur: Any = event
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _specs(event: dict) -> list[dict]:
    """Pod specs in the request and the response body (a `get` shows the pod in its response)."""
    return [s for s in (_get(event, "requestObject.spec"), _get(event, "responseObject.spec")) if isinstance(s, dict)]


def _containers(event: dict) -> list[dict]:
    return [c for spec in _specs(event) for key in ("containers", "initContainers")
            for c in (spec.get(key) or []) if isinstance(c, dict)]


SEARCHES: list[tuple[str, dict[str, Any], Callable[[dict], bool]]] = [
    ("user", {"term": {"user.name": "minikube-user"}}, lambda e: _get(e, "user.username") == "minikube-user"),
    ("verb", {"term": {"event.action": "delete"}}, lambda e: e.get("verb") == "delete"),
    ("resource", {"term": {"kubernetes.audit.objectRef.resource": "clusterrolebindings"}},
     lambda e: _get(e, "objectRef.resource") == "clusterrolebindings"),
    ("namespace", {"term": {"orchestrator.namespace": "kube-system"}},
     lambda e: _get(e, "objectRef.namespace") == "kube-system"),
    ("denied", {"term": {"kubernetes.audit.annotations.authorization_k8s_io/decision": "forbid"}},
     lambda e: (e.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"),
    ("source ip", {"term": {"source.ip": "192.168.99.1"}},
     lambda e: (e.get("sourceIPs") or [None])[0] == "192.168.99.1"),
    ("exec", {"exists": {"field": "kaudit.exec.command"}},
     lambda e: _get(e, "objectRef.subresource") in ("exec", "attach") and "command=" in (e.get("requestURI") or "")),
    ("privileged", {"bool": {"filter": [{"term": {"kaudit.pod.privileged": True}},
                                        {"term": {"orchestrator.resource.type": "pods"}}]}},
     lambda e: _get(e, "objectRef.resource") == "pods"
     and any((c.get("securityContext") or {}).get("privileged") is True for c in _containers(e))),
    ("hostPath", {"bool": {"filter": [{"exists": {"field": "kaudit.pod.host_path"}},
                                      {"term": {"orchestrator.resource.type": "pods"}}]}},
     lambda e: _get(e, "objectRef.resource") == "pods"
     and any(isinstance(v, dict) and v.get("hostPath") for spec in _specs(e) for v in (spec.get("volumes") or []))),
]


@pytest.mark.parametrize("name, query, predicate", SEARCHES, ids=[s[0] for s in SEARCHES])
def test_searches_on_main_fields_return_the_right_events(
    engine: Engine, corpus_files: list[str], ingested_corpus: str, name: str, query: dict, predicate: Callable
) -> None:
    # One document per (auditID, stage): the first event read wins (test fixtures reuse auditIDs).
    first: dict[str, dict] = {}
    for e in _raw_events(corpus_files):
        first.setdefault(doc_id("default", e.get("auditID") or _content_key(e), e.get("stage", "")), e)
    expected = {i for i, e in first.items() if predicate(e)}
    assert expected, f"the corpus should contain {name} events"
    body = engine.request("POST", f"/{ingested_corpus}/_search", {"size": 1000, "query": query, "_source": False})
    assert {h["_id"] for h in body["hits"]["hits"]} == expected


def _content_key(event: dict) -> str:
    import hashlib

    import orjson

    return "sha:" + hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def test_exec_command_is_decoded_and_searchable(engine: Engine, ingested_corpus: str) -> None:
    body = engine.request("POST", f"/{ingested_corpus}/_search", {
        "size": 50, "query": {"exists": {"field": "kaudit.exec.command"}}, "_source": ["kaudit.exec", "url.original"]})
    hits = body["hits"]["hits"]
    assert hits
    for hit in hits:
        command = hit["_source"]["kaudit"]["exec"]["command"]
        assert "%20" not in command and "command=" not in command
        words = command.split()
        assert words and all(w in hit["_source"]["url"]["original"].replace("%2F", "/") or "%" in w for w in words[:1])


def test_bad_input_is_dead_lettered_with_reasons_and_good_lines_indexed(
    engine: Engine, corpus_dir: Path, tmp_path: Path
) -> None:
    namespace = _fresh_namespace()
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    good = [json.loads(line) for line in (corpus_dir / "audit2rbac" / "demo.log").read_text().splitlines()[:5]]
    huge = dict(good[0], auditID="huge-1", requestObject={"kind": "ConfigMap", "data": {
        f"k{i}": "x" * 5000 for i in range(100)}})
    wrong_type = dict(good[0], auditID="wrong-1", verb=42)
    deep: Any = "bottom"
    for _ in range(300):
        deep = [deep]
    too_deep = dict(good[0], auditID="deep-1", requestObject={"data": deep})  # past what orjson writes
    centuries = dict(good[0], auditID="old-1", requestReceivedTimestamp="1700-01-01T00:00:00.000000Z",
                     stageTimestamp="2200-01-01T00:00:00.000000Z")  # event.duration beyond 64 bits
    lines = [json.dumps(good[0]).encode(), b"{not json", b"\x00\xff\xfe binary \x89PNG",
             json.dumps(good[1]).encode()[:40], json.dumps(wrong_type).encode(), json.dumps(huge).encode(),
             json.dumps(too_deep).encode(), json.dumps(centuries).encode()]
    lines += [json.dumps(e).encode() for e in good[1:]]
    path = tmp_path / "mixed.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    dead = tmp_path / "dead.ndjson"
    stats = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=str(dead), refresh=True))
    assert (stats.indexed, stats.dead_lettered) == (6, 6)  # 5 good + the huge one, truncated
    entries = [json.loads(x) for x in dead.read_text().splitlines()]
    assert sorted(e["line"] for e in entries) == [2, 3, 4, 5, 7, 8]
    reasons = {e["line"]: e["reason"] for e in entries}
    assert "cannot be written as a document" in reasons[7] and "292 years" in reasons[8]
    assert all(e["source"] == str(path) and e["reason"] for e in entries)
    assert any("verb" in e["reason"] for e in entries)
    assert any("raw_base64" in e for e in entries)  # binary garbage kept byte-exact
    stream = Names(namespace).stream
    hit = engine.request("POST", f"/{stream}/_search", {"query": {"term": {"kubernetes.audit.auditID": "huge-1"}}})
    assert hit["hits"]["hits"][0]["_source"]["kaudit"]["body"]["truncated"] is True


def test_checkpoint_resumes_without_resending(engine: Engine, corpus_dir: Path, tmp_path: Path) -> None:
    namespace = _fresh_namespace()
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    src = (corpus_dir / "audit2rbac" / "demo.log").read_text().splitlines()
    path = tmp_path / "audit.log"
    path.write_text("\n".join(src[:10]) + "\n")
    cp = tmp_path / "cp.json"
    first = ingest(engine, [str(path)], IngestOptions(namespace=namespace, checkpoint=str(cp), dead_letter=None))
    assert first.indexed == 10
    with path.open("a") as fh:  # the log grows
        fh.write("\n".join(src[10:]) + "\n")
    second = ingest(engine, [str(path)], IngestOptions(namespace=namespace, checkpoint=str(cp), dead_letter=None,
                                                       refresh=True))
    assert second.read == len(src) - 10 and second.duplicates == 0
    assert _count(engine, Names(namespace).stream) == len(src)


def _sources(engine: Engine, stream: str) -> dict[str, dict]:
    body = engine.request("POST", f"/{stream}/_search", {"size": 10000, "query": {"match_all": {}}})
    out = {}
    for hit in body["hits"]["hits"]:
        doc = hit["_source"]
        doc["event"].pop("ingested")  # the time of each run
        assert stream == f"logs-kubernetes.audit_logs-{doc['data_stream'].pop('namespace')}"  # each run's own stream
        if "kaudit_timestamp_missing" in doc.get("tags", ()):
            doc.pop("@timestamp")  # stamped with the ingest time too
        out[hit["_id"]] = doc
    return out


def test_native_and_python_paths_store_the_same_documents(
    engine: Engine, corpus_files: list[str], ingested_corpus: str, ingested_corpus_info: dict,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kaudit_elk.events import fastpath

    stats = ingested_corpus_info["stats"]
    if fastpath.available():  # the corpus fixture ran the default path: native where it could
        assert stats.native >= 100  # the lines with an auditID and a timestamp (the rest lack one)
    monkeypatch.setenv("KAUDIT_NATIVE", "0")
    namespace = _fresh_namespace()
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    python_only = ingest(engine, corpus_files, IngestOptions(namespace=namespace, dead_letter=str(tmp_path / "dl"),
                                                             refresh=True))
    assert python_only.native == 0
    assert (python_only.indexed, python_only.skipped, python_only.dead_lettered) == \
        (stats.indexed, stats.skipped, stats.dead_lettered)
    assert _sources(engine, Names(namespace).stream) == _sources(engine, ingested_corpus)
