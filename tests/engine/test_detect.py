"""`detect` on real engines: same alerts as `scan`, no duplicates on reruns, no gap after a kill,
catch-up after downtime."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.detect.scheduled import DetectOptions, read_positions, run_detect, write_positions
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.detect.scan import sample_path, scan
from kaudit_elk.cluster.templates import BootstrapOptions, Names

TIME_KEYS = ("requestReceivedTimestamp", "stageTimestamp")


def _shift(src: Path, dst: Path, end: datetime) -> None:
    """The sample audit log moved in time so that its last event happens at ``end``."""
    events = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    times = [datetime.fromisoformat(e[k].replace("Z", "+00:00")) for e in events for k in TIME_KEYS if e.get(k)]
    delta = end - max(times)
    with dst.open("w") as fh:
        for e in events:
            for k in TIME_KEYS:
                if e.get(k):
                    t = datetime.fromisoformat(e[k].replace("Z", "+00:00")) + delta
                    e[k] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            fh.write(json.dumps(e) + "\n")


class Collector:
    name = "collector"

    def __init__(self) -> None:
        self.alerts: list[dict] = []

    def send(self, alerts: list[dict]) -> None:
        self.alerts.extend(alerts)


@pytest.fixture(scope="module")
def pack():
    return load_rules([default_pack_dir()])


def _prepare(engine: Engine, pack, tmp_path: Path, end: datetime) -> dict[str, Any]:
    """The sample log shifted to end at ``end``, ingested into a fresh namespace; plus scan's alert ids."""
    namespace = f"det{uuid.uuid4().hex[:8]}"
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    path = tmp_path / "recent.log"
    _shift(sample_path(), path, end)
    stats = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    assert stats.dead_lettered == 0
    expected = {a["kaudit"]["alert"]["id"] for a in scan([str(path)], pack, min_severity="low")}
    assert len(expected) > 20
    return {"namespace": namespace, "path": path, "expected": expected, "end": end}


@pytest.fixture
def recent(engine: Engine, pack, tmp_path: Path) -> dict[str, Any]:
    """The sample log (about 5 minutes of events), ending 2 hours ago."""
    return _prepare(engine, pack, tmp_path, datetime.now(timezone.utc) - timedelta(hours=2))


def _options(namespace: str, **kw: Any) -> DetectOptions:
    base = dict(namespace=namespace, initial_lookback=timedelta(hours=4), max_step=timedelta(minutes=30),
                delay=timedelta(0), min_severity="low", notify_severity="low")
    return DetectOptions(**{**base, **kw})


def _stored_ids(engine: Engine, namespace: str) -> list[str]:
    index = Names(namespace).alerts_index
    engine.request("POST", f"/{index}/_refresh", ignore=(404,))
    body = engine.request("POST", f"/{index}/_search", {"size": 10000, "_source": ["kaudit.alert.id"]}, ignore=(404,))
    return [h["_source"]["kaudit"]["alert"]["id"] for h in (body or {}).get("hits", {}).get("hits", [])]


def test_detect_finds_what_scan_finds_and_reruns_add_nothing(engine: Engine, pack, recent: dict) -> None:
    ns = recent["namespace"]
    out = Collector()
    first = run_detect(engine, pack, _options(ns), [out])
    assert len(first.windows) >= 8  # 4 hours in 30-minute steps
    assert {a["kaudit"]["alert"]["id"] for a in out.alerts} == recent["expected"]
    assert sorted(_stored_ids(engine, ns)) == sorted(recent["expected"])
    again = Collector()
    second = run_detect(engine, pack, _options(ns, overlap=timedelta(hours=3)), [again])
    assert second.new_alerts == [] and again.alerts == [] and second.known_alerts > 0
    backfill = run_detect(engine, pack, _options(ns, since=datetime.now(timezone.utc) - timedelta(hours=6)), [again])
    assert backfill.new_alerts == [] and not backfill.positions_moved
    assert sorted(_stored_ids(engine, ns)) == sorted(recent["expected"])


def test_downtime_is_caught_up(engine: Engine, pack, recent: dict) -> None:
    ns = recent["namespace"]
    names = Names(ns)
    down_since = datetime.now(timezone.utc) - timedelta(hours=3)  # the last run was 3 hours ago
    write_positions(engine, names, [r.id for r in pack.rules], down_since)
    out = Collector()
    result = run_detect(engine, pack, _options(ns, overlap=timedelta(minutes=5)), [out])
    assert result.windows[0][0] == down_since - timedelta(minutes=5)
    assert len(result.windows) == 7  # 3h05m in 30-minute steps
    assert {a["kaudit"]["alert"]["id"] for a in out.alerts} == recent["expected"]
    positions = read_positions(engine, names)
    assert set(positions) == {r.id for r in pack.rules}
    assert set(positions.values()) == {result.windows[-1][1]}


class _Hook(http.server.BaseHTTPRequestHandler):
    """Webhook receiver: records payloads; can hang on its Nth request (the run is killed there)."""

    hang_on = 0
    calls = 0
    hung = threading.Event()
    received: list = []

    def do_POST(self) -> None:  # noqa: N802
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls.calls += 1
        if cls.calls == cls.hang_on:
            cls.hung.set()
            time.sleep(120)
            return
        cls.received.extend(body["alerts"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type]]:
    handler = type("H", (_Hook,), {"hang_on": 0, "calls": 0, "hung": threading.Event(), "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


def _detect_cmd(engine: Engine, namespace: str, hook_url: str) -> list[str]:
    return [sys.executable, "-m", "kaudit_elk", "detect", "--url", engine.settings.url, "--namespace", namespace,
            "--overlap", "0s", "--max-step", "1m", "--delay", "0s", "--min-severity", "low", "--store-severity", "low",
            "--webhook", hook_url, "--no-stdout", "--quiet"]


def test_killed_mid_run_then_rerun_has_no_gap_and_no_duplicate(engine: Engine, pack, tmp_path: Path, hook) -> None:
    url, handler = hook
    recent = _prepare(engine, pack, tmp_path, datetime.now(timezone.utc) - timedelta(seconds=30))
    ns = recent["namespace"]
    # the last run ended just before the sample's 5 minutes: this run walks them in 1-minute steps
    write_positions(engine, Names(ns), [r.id for r in pack.rules], recent["end"] - timedelta(minutes=6))
    handler.hang_on = 2  # the second step that has alerts hangs in the webhook: kill the run there
    proc = subprocess.Popen(_detect_cmd(engine, ns, url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not handler.hung.wait(timeout=180):
            proc.kill()
            pytest.fail(f"detect never reached its second notification: {proc.communicate()[1].decode()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored_after_kill = _stored_ids(engine, ns)
    assert 0 < len(stored_after_kill) <= len(recent["expected"])
    handler.hang_on = 0
    rerun = subprocess.run(_detect_cmd(engine, ns, url), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    stored = _stored_ids(engine, ns)
    assert sorted(stored) == sorted(recent["expected"])  # nothing missing, nothing twice
    delivered = [a["kaudit"]["alert"]["id"] for a in handler.received]
    assert set(delivered) == recent["expected"]  # every alert announced (the interrupted ones again)
    index = Names(ns).alerts_index
    pending = engine.request("POST", f"/{index}/_count", {"query": {"term": {"kaudit.alert.notified": False}}})
    assert pending["count"] == 0


# --------------------------------------------------------------------------- correlation state


def _secret_reads(start: datetime, n: int, step: timedelta) -> list[dict]:
    """One client reading ``n`` different secrets, one every ``step``: the evidence of the value_count
    correlation "One Client Reading Many Different Secrets" (5 names in 5 minutes)."""
    out = []
    for i in range(n):
        ts = (start + step * i).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "stage": "ResponseComplete",
                    "auditID": f"harvest-{uuid.uuid4().hex[:8]}-{i}", "verb": "get",
                    "requestURI": f"/api/v1/namespaces/payments/secrets/db-{i}",
                    "user": {"username": "system:serviceaccount:default:web", "groups": ["system:serviceaccounts"]},
                    "sourceIPs": ["203.0.113.50"], "userAgent": "curl/8.5.0",
                    "objectRef": {"resource": "secrets", "namespace": "payments", "name": f"db-{i}", "apiVersion": "v1"},
                    "responseStatus": {"code": 200}, "requestReceivedTimestamp": ts, "stageTimestamp": ts})
    return out


def _delete_events(engine: Engine, stream: str, audit_ids: list[str]) -> None:
    """Remove documents (one by one: the test engines have no _delete_by_query)."""
    body = engine.request("POST", f"/{stream}/_search", {"size": 100, "_source": False,
                                                         "query": {"terms": {"kubernetes.audit.auditID": audit_ids}}})
    hits = body["hits"]["hits"]
    assert len(hits) == len(audit_ids)
    for h in hits:
        engine.request("DELETE", f"/{h['_index']}/_doc/{h['_id']}", params={"refresh": "true"})


@pytest.fixture
def harvest_pack(tmp_path: Path) -> tuple[Any, Path]:
    """The correlation "One Client Reading Many Different Secrets" and its base rule alone."""
    import shutil

    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("secret-get-building-block.yml", "secret-get-many-names.yml"):
        shutil.copy(default_pack_dir() / "credentials" / name, rules)
    return load_rules([rules]), rules


def test_correlation_evidence_is_carried_between_runs_and_survives_a_kill(engine: Engine, harvest_pack,
                                                                           tmp_path: Path, hook) -> None:
    """A correlation whose evidence spans two runs: the first run's part lives only in the saved state
    (its documents are deleted before the second run), the second run is killed after storing the alert
    and before committing; the rerun continues from the same saved state (no replay), the alert is stored
    and announced exactly once, and it is the alert scan raises."""
    from kaudit_elk.detect.outputs import WebhookOutput
    from kaudit_elk.detect.scheduled import read_state

    pack, rules_dir = harvest_pack
    url, handler = hook
    namespace = f"det{uuid.uuid4().hex[:8]}"
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    names = Names(namespace)
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    events = _secret_reads(t0, 5, timedelta(seconds=50))
    path = tmp_path / "harvest.log"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True)).indexed == 5
    expected = {a["kaudit"]["alert"]["id"] for a in scan([str(path)], pack, min_severity="medium")}
    assert len(expected) == 1

    write_positions(engine, names, [r.id for r in pack.rules], t0 - timedelta(minutes=10))
    quiet = dict(overlap=timedelta(minutes=1), min_severity="medium", notify_severity="medium")
    first = run_detect(engine, pack, _options(namespace, **quiet), [], now=t0 + timedelta(seconds=120))
    assert first.new_alerts == [] and first.positions_moved
    # the next run starts at (position - overlap) = t0 + 60 s: the state saved is the state there
    saved = read_state(engine, names)
    assert saved is not None
    groups = saved["runner"]["correlations"]["82f7f595-d702-5e24-adf0-15d116a6cae2"]["groups"]
    assert [len(g["items"]) for g in groups] == [2]
    _delete_events(engine, names.stream, [e["auditID"] for e in events[:2]])

    handler.hang_on = 1  # the run stores the alert, then hangs announcing it: killed before it commits
    cmd = _detect_cmd(engine, namespace, url) + ["--no-default-rules", "--rules-dir", str(rules_dir)]
    for option, value in (("--overlap", "1m"), ("--min-severity", "medium"), ("--store-severity", "medium")):
        cmd[cmd.index(option) + 1] = value
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not handler.hung.wait(timeout=180):
            proc.kill()
            pytest.fail(f"detect never announced the alert: {proc.communicate()[1].decode()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sorted(_stored_ids(engine, namespace)) == sorted(expected)  # stored, not yet announced
    assert read_state(engine, names)["at"] < (t0 + timedelta(seconds=200)).timestamp()  # its step: not committed

    handler.hang_on = 0
    rerun = run_detect(engine, pack, _options(namespace, **quiet), [WebhookOutput(url)])
    assert rerun.replays == 0  # continued from the saved state: nothing replayed
    assert rerun.renotified == 1 and rerun.new_alerts == [] and rerun.known_alerts == 1
    assert sorted(_stored_ids(engine, namespace)) == sorted(expected)
    delivered = [a["kaudit"]["alert"] for a in handler.received]
    assert [d["id"] for d in delivered] == sorted(expected)
    assert sorted(delivered[0]["audit_ids"]) == sorted(e["auditID"] for e in events)  # evidence from both runs
    assert delivered[0]["correlation"]["measure"] == 5


def test_without_saved_state_the_replay_still_finds_a_straddling_correlation(engine: Engine, harvest_pack,
                                                                              tmp_path: Path) -> None:
    """The safety net: the saved state is gone (or unusable), so the run replays from a quiet point and
    raises the same alert."""
    pack, _ = harvest_pack
    namespace = f"det{uuid.uuid4().hex[:8]}"
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    names = Names(namespace)
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    events = _secret_reads(t0, 5, timedelta(seconds=50))
    path = tmp_path / "harvest.log"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    expected = {a["kaudit"]["alert"]["id"] for a in scan([str(path)], pack, min_severity="medium")}
    write_positions(engine, names, [r.id for r in pack.rules], t0 - timedelta(minutes=10))
    quiet = dict(overlap=timedelta(minutes=1), min_severity="medium", notify_severity="medium")
    run_detect(engine, pack, _options(namespace, **quiet), [], now=t0 + timedelta(seconds=120))
    engine.request("DELETE", f"/{names.state_index}/_doc/detect-state", params={"refresh": "true"})
    out = Collector()
    second = run_detect(engine, pack, _options(namespace, **quiet), [out])
    assert second.replays >= 1
    assert {a["kaudit"]["alert"]["id"] for a in out.alerts if a["rule"]["kind"] == "correlation"} == expected


def test_events_not_yet_searchable_are_never_passed_by_a_window(engine: Engine, pack, tmp_path: Path) -> None:
    """Issue 9, case 7: an event with no timestamp is stamped with the ingest time, and is searchable only
    after the stream's next refresh. The detector may not refresh a stream it only reads (its role lacks
    the privilege), so a scheduled window never ends within the stream's refresh interval: with
    ``--delay 0`` and no overlap the event is found by the run after its refresh, exactly once; a window
    reaching to "now" would pass it and, with no overlap, lose it."""
    from kaudit_elk.rules.alerts import event_time

    namespace = f"det{uuid.uuid4().hex[:8]}"
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    names = Names(namespace)
    seed = tmp_path / "seed.log"
    seed.write_text(json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "seed", "verb": "get",
                                "stage": "ResponseComplete", "user": {"username": "alice"},
                                "requestReceivedTimestamp": "2026-01-01T00:00:00.000000Z"}) + "\n")
    ingest(engine, [str(seed)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    engine.request("PUT", f"/{names.stream}/_settings", {"index": {"refresh_interval": "8s"}})
    event = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "stage": "ResponseComplete",
             "auditID": f"untimed-{uuid.uuid4().hex[:8]}", "requestURI": "/api/v1/namespaces", "verb": "get",
             "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
             "sourceIPs": ["203.0.113.10"], "userAgent": "curl/8.5.0",
             "objectRef": {"resource": "namespaces", "apiVersion": "v1"}, "responseStatus": {"code": 200},
             "annotations": {"authorization.k8s.io/decision": "allow"}}
    assert event_time(event) is None
    path = tmp_path / "untimed.log"
    path.write_text(json.dumps(event) + "\n")
    before = datetime.now(timezone.utc)
    assert ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None)).indexed == 1
    write_positions(engine, names, [r.id for r in pack.rules], before - timedelta(minutes=1))
    out = Collector()
    started = datetime.now(timezone.utc)
    first = run_detect(engine, pack, _options(namespace, overlap=timedelta(0), notify_severity="medium"), [out])
    assert first.windows and first.windows[-1][1] < started - timedelta(seconds=7)  # 8 s before its own "now"
    assert any("refreshes every 8s" in n for n in first.notes)
    time.sleep(9)  # the stream's next refresh
    run_detect(engine, pack, _options(namespace, overlap=timedelta(0), notify_severity="medium"), [out])
    assert [a["kaudit"]["alert"]["audit_ids"] for a in out.alerts] == [[event["auditID"]]]


def test_detect_on_a_namespace_never_bootstrapped_says_to_bootstrap(engine: Engine) -> None:
    """Exit 2 with what to do, not an engine error (exit 3) with a raw 404; nothing is created."""
    namespace = f"never{uuid.uuid4().hex[:8]}"
    run = subprocess.run([sys.executable, "-m", "kaudit_elk", "detect", "--url", engine.settings.url,
                          "--namespace", namespace], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert f"kaudit-elk bootstrap --namespace {namespace}" in run.stderr
    assert "404" not in run.stderr and "index_not_found" not in run.stderr
    names = Names(namespace)
    for index in (names.alerts_index, names.state_index, names.stream):
        assert engine.request("GET", f"/{index}", ignore=(404,)) is None


def _wide_rules(rules_dir: Path, n_rules: int, n_selections: int) -> None:
    """User rules that, with the shipped pack, make one search far beyond the engines' clause limit
    (OpenSearch: 1024 leaf queries): each watches ``n_selections`` (object name, namespace) pairs, among
    them objects the sample's attack steps touch (so one document matches rules in several clause
    groups)."""
    rules_dir.mkdir()
    for i in range(n_rules):
        detection: dict[str, Any] = {
            f"sel{k:04d}": {"objectRef.name": f"watched-{i}-{k}", "objectRef.namespace": f"ns-{k}"}
            for k in range(n_selections - 2)}
        detection["sel_tls"] = {"objectRef.name": "api-tls", "objectRef.namespace": "payments"}
        detection["sel_debug"] = {"objectRef.name|startswith": "node-debug", "objectRef.namespace": "default"}
        detection["condition"] = "1 of sel*"
        body = {"title": f"Watched Object Touched {i}", "id": str(uuid.UUID(int=0xC1A05E + i)), "status": "test",
                "description": "Test rule: many watched objects.", "author": "test", "date": "2026-01-01",
                "level": "medium", "logsource": {"product": "kubernetes", "service": "audit"}, "detection": detection}
        (rules_dir / f"watched-{i}.yml").write_text(json.dumps(body))


def test_a_pack_beyond_the_clause_limit_is_read_in_clause_groups(engine: Engine, pack, tmp_path: Path) -> None:
    """The shipped pack plus 2,400 leaf queries of user rules: every read is split into clause groups
    (one request each, hits united by document with all their rules), and both a backfill and a
    scheduled run store exactly the alerts scan raises with the same pack."""
    from kaudit_elk.detect.engine_search import CLAUSE_BUDGET, compile_pack, leaf_count, named_query
    from kaudit_elk.rules.compiler import QueryTarget

    rules = tmp_path / "wide"
    _wide_rules(rules, 4, 300)
    big = load_rules([default_pack_dir(), rules])
    compiled = compile_pack(big, QueryTarget.for_engine(engine))
    assert leaf_count(named_query(compiled, list(compiled))) > 1024 + CLAUSE_BUDGET
    recent = _prepare(engine, big, tmp_path, datetime.now(timezone.utc) - timedelta(hours=2))
    ns = recent["namespace"]
    watched = {a["kaudit"]["alert"]["id"] for a in scan([str(recent["path"])], big, min_severity="low")
               if a["rule"]["name"].startswith("Watched Object Touched")}
    assert watched  # the user rules match documents the shipped rules match too
    out = Collector()
    backfill = run_detect(engine, big, _options(ns, since=datetime.now(timezone.utc) - timedelta(hours=4)), [out])
    assert {a["kaudit"]["alert"]["id"] for a in out.alerts} == recent["expected"]
    assert not backfill.positions_moved
    scheduled = run_detect(engine, big, _options(ns), [out])
    assert scheduled.new_alerts == [] and scheduled.known_alerts == len(recent["expected"])
    assert sorted(_stored_ids(engine, ns)) == sorted(recent["expected"])
