"""Incidents reach a real Alertmanager (Debian's prometheus-alertmanager) as one alert per incident."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from kaudit_elk.detect.outputs import AlertmanagerOutput
from kaudit_elk.detect.scan import sample_path, scan
from kaudit_elk.rules.incidents import build_incidents
from kaudit_elk.rules.loader import default_pack_dir, load_rules

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: 'null', group_by: ['incident_id']}\nreceivers: [{name: 'null'}]\n")
    port = _free_port()
    proc = subprocess.Popen([BINARY, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"alertmanager exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=10) as resp:
        return json.loads(resp.read())


def test_one_alertmanager_alert_per_incident_and_repeats_update_it(alertmanager: str) -> None:
    alerts = list(scan([str(sample_path())], load_rules([default_pack_dir()]), min_severity="low"))
    incidents = build_incidents(alerts)
    out = AlertmanagerOutput(alertmanager)
    out.send_incidents(incidents)
    out.send_incidents(incidents)  # announced again (an escalation): the same alerts, not new ones
    got = _alerts(alertmanager)
    assert sorted(a["labels"]["incident_id"] for a in got) == sorted(i["kaudit"]["incident"]["id"] for i in incidents)
    story = next(a for a in got if a["labels"].get("user") == "system:serviceaccount:ci:deployer")
    assert story["labels"]["alertname"] == "KauditIncident" and story["labels"]["severity"] == "critical"
    assert story["labels"]["source_ip"] == "198.51.100.23" and int(story["annotations"]["risk_score"]) > 100
    assert len(alerts) > 4 * len(got)  # what reaches a person: incidents, not alerts
