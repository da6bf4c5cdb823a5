"""Incidents in the cluster: `detect` stores the same incidents `scan` builds, exactly once, and announces
each incident once (again only when it escalates)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.templates import BootstrapOptions, Names
from kaudit_elk.detect.incident_store import IncidentRun
from kaudit_elk.detect.scan import sample_path, scan
from kaudit_elk.detect.scheduled import DetectOptions, OutputError, run_detect
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.rules.incidents import IncidentOptions, build_incidents
from kaudit_elk.rules.loader import default_pack_dir, load_rules

TIME_KEYS = ("requestReceivedTimestamp", "stageTimestamp")
COMPARED = ("id", "severity", "risk_score", "tactics", "progression", "rules", "alert_count", "alert_ids",
            "first_alert_time", "last_alert_time", "actor", "identities", "source_ips", "namespaces", "title")


def _shift(src: Path, dst: Path, end: datetime) -> None:
    events = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    times = [datetime.fromisoformat(e[k].replace("Z", "+00:00")) for e in events for k in TIME_KEYS if e.get(k)]
    delta = end - max(times)
    with dst.open("w") as fh:
        for e in events:
            for k in TIME_KEYS:
                if e.get(k):
                    e[k] = (datetime.fromisoformat(e[k].replace("Z", "+00:00")) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            fh.write(json.dumps(e) + "\n")


class Collector:
    name = "collector"

    def __init__(self, fail: int = 0) -> None:
        self.incidents: list[dict] = []
        self.fail = fail

    def send(self, alerts: list[dict]) -> None:
        pass

    def send_incidents(self, incidents: list[dict]) -> None:
        if self.fail:
            self.fail -= 1
            raise OutputError("receiver down")
        self.incidents.extend(incidents)


@pytest.fixture(scope="module")
def pack():
    return load_rules([default_pack_dir()])


@pytest.fixture
def recent(engine: Engine, pack, tmp_path: Path) -> dict[str, Any]:
    namespace = f"inc{uuid.uuid4().hex[:8]}"
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    path = tmp_path / "recent.log"
    end = datetime.now(timezone.utc) - timedelta(hours=2)
    _shift(sample_path(), path, end)
    stats = ingest(engine, [str(path)], IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    assert stats.dead_lettered == 0
    alerts = list(scan([str(path)], pack, min_severity="low"))
    return {"namespace": namespace, "path": path, "alerts": alerts, "end": end}


def _options(namespace: str, **kw: Any) -> DetectOptions:
    base = dict(namespace=namespace, initial_lookback=timedelta(hours=4), max_step=timedelta(minutes=30),
                delay=timedelta(0), min_severity="low")
    return DetectOptions(**{**base, **kw})


def _stored(engine: Engine, namespace: str) -> dict[str, dict]:
    index = Names(namespace).incidents_index
    engine.request("POST", f"/{index}/_refresh", ignore=(404,))
    body = engine.request("POST", f"/{index}/_search", {"size": 1000}, ignore=(404,))
    return {h["_id"]: h["_source"] for h in (body or {}).get("hits", {}).get("hits", [])}


def _view(doc: dict) -> dict:
    return {k: doc["kaudit"]["incident"][k] for k in COMPARED}


@pytest.mark.parametrize("grouping", [IncidentOptions(), IncidentOptions(gap=30, max_span=120)],
                         ids=["default", "short-gap"])
def test_detect_stores_the_incidents_scan_builds_once(engine: Engine, pack, recent: dict,
                                                      grouping: IncidentOptions) -> None:
    ns = recent["namespace"]
    expected = {d["kaudit"]["incident"]["id"]: d for d in build_incidents(recent["alerts"], grouping)}
    assert len(expected) < len(recent["alerts"])
    out = Collector()
    run = IncidentRun(grouping, "medium", [out])
    # 1-minute steps over the sample's 5 minutes: the attack crosses step boundaries
    end = recent["end"]
    run_detect(engine, pack, _options(ns, since=end - timedelta(minutes=6), until=end + timedelta(seconds=1),
                                      max_step=timedelta(minutes=1)), [], incidents=run)
    stored = _stored(engine, ns)
    assert {k: _view(v) for k, v in stored.items()} == {k: _view(v) for k, v in expected.items()}
    announced = [i["kaudit"]["incident"]["id"] for i in out.incidents]
    worth = {k for k, v in expected.items() if v["kaudit"]["incident"]["severity_rank"] >= 2}
    assert worth and set(announced) == worth
    # a rerun over everything (overlap) and a backfill: nothing announced again, nothing changed
    again = Collector()
    run_detect(engine, pack, _options(ns, overlap=timedelta(hours=3)), [], incidents=IncidentRun(grouping, "medium", [again]))
    run_detect(engine, pack, _options(ns, since=datetime.now(timezone.utc) - timedelta(hours=6)), [],
               incidents=IncidentRun(grouping, "medium", [again]))
    assert again.incidents == []
    assert {k: _view(v) for k, v in _stored(engine, ns).items()} == {k: _view(v) for k, v in expected.items()}
    # every stored alert points at its incident
    index = Names(ns).alerts_index
    body = engine.request("POST", f"/{index}/_search", {"size": 1000, "_source": ["kaudit.alert"]})
    by_alert = {x: k for k, v in expected.items() for x in v["kaudit"]["incident"]["alert_ids"]}
    assert {h["_id"]: h["_source"]["kaudit"]["alert"]["incident_id"] for h in body["hits"]["hits"]} == by_alert


def test_incidents_not_announced_during_an_outage_are_sent_on_the_next_run(engine: Engine, pack, recent: dict) -> None:
    ns = recent["namespace"]
    down = Collector(fail=100)
    with pytest.raises(OutputError):
        run_detect(engine, pack, _options(ns), [], incidents=IncidentRun(outputs=[down]))
    assert down.incidents == []
    back = Collector()
    run_detect(engine, pack, _options(ns), [], incidents=IncidentRun(outputs=[back]))
    expected = {d["kaudit"]["incident"]["id"] for d in build_incidents(recent["alerts"])
                if d["kaudit"]["incident"]["severity_rank"] >= 2}
    assert {i["kaudit"]["incident"]["id"] for i in back.incidents} == expected
    assert all("notify_pending" not in i["kaudit"]["incident"] for i in back.incidents)
    index = Names(ns).incidents_index
    pending = engine.request("POST", f"/{index}/_count", {"query": {"term": {"kaudit.incident.notify_pending": True}}})
    assert pending["count"] == 0


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:  # noqa: N802
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type]]:
    handler = type("H", (_Hook,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


def test_the_attack_story_reaches_the_webhook_as_one_incident(engine: Engine, recent: dict, hook) -> None:
    url, handler = hook
    cmd = [sys.executable, "-m", "kaudit_elk", "detect", "--url", engine.settings.url, "--namespace",
           recent["namespace"], "--initial-lookback", "4h", "--max-step", "30m", "--delay", "0s",
           "--min-severity", "low", "--notify", "incidents", "--webhook", url, "--no-stdout", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    bodies = handler.received
    assert bodies and all(set(b) == {"incidents", "source"} for b in bodies)  # no per-alert payloads
    incidents = [i for b in bodies for i in b["incidents"]]
    story = [i for i in incidents if i["kaudit"]["incident"]["actor"]["identity"] == "system:serviceaccount:ci:deployer"]
    attacker_alerts = [a for a in recent["alerts"] if (a.get("user") or {}).get("name") == "system:serviceaccount:ci:deployer"]
    assert len(story) == 1 and story[0]["kaudit"]["incident"]["alert_count"] == len(attacker_alerts) >= 30
    assert len(incidents) < len(recent["alerts"]) / 5
