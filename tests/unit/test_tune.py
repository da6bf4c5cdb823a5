"""`kaudit-elk tune`: history -> proposed exceptions -> a rerun with fewer false alerts and the same recall."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from kaudit_elk.detect.scan import sample_path, scan
from kaudit_elk.rules.exceptions import propose, render, ua_product
from kaudit_elk.rules.loader import default_pack_dir, load_rules

DAY0 = datetime(2026, 1, 12, 8, 0, tzinfo=timezone.utc)
ATTACKER = "system:serviceaccount:ci:deployer"


def _event(t: datetime, user: str, ua: str, verb: str, resource: str, namespace: str | None,
           name: str | None = None, subresource: str | None = None, uri: str = "", ip: str = "10.0.4.7") -> dict:
    ts = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    obj = {"resource": resource, "apiVersion": "v1"}
    if namespace:
        obj["namespace"] = namespace
    if name:
        obj["name"] = name
    if subresource:
        obj["subresource"] = subresource
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": str(uuid.uuid4()),
            "stage": "ResponseComplete", "requestURI": uri or f"/api/v1/{resource}", "verb": verb,
            "user": {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]},
            "sourceIPs": [ip], "userAgent": ua, "objectRef": obj, "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": ts, "stageTimestamp": ts,
            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}}


def _benign_day(day: int) -> list[dict]:
    """An in-house checker exec-ing into its pods, and an in-house backup tool listing every secret, every day
(tools of our own: no shipped rule exempts them)."""
    out = []
    base = DAY0 + timedelta(days=day)
    for n in range(4):
        pod = f"checker-{day}-{n}"
        out.append(_event(base + timedelta(hours=n), "system:serviceaccount:ops:nightly-checker",
                          "nightly-checker/v2.4.1 (linux/amd64) kubernetes/$Format", "create", "pods", "ops",
                          pod, "exec", f"/api/v1/namespaces/ops/pods/{pod}/exec?command=sh&container=build"
                          "&stdin=true&stdout=true"))
    out.append(_event(base + timedelta(hours=5), "system:serviceaccount:backup:acme-backup",
                      "acme-backup/v1.13.0 (linux/amd64) kubernetes/$Format", "list", "secrets", None,
                      uri="/api/v1/secrets?limit=500"))
    return out


def _write(path: Path, events: list[dict]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


@pytest.fixture(scope="module")
def pack():
    return load_rules([default_pack_dir()])


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> str:
    events = [e for d in range(3) for e in _benign_day(d)]
    return _write(tmp_path_factory.mktemp("tune") / "history.log", events)


def test_product_prefix_of_user_agents() -> None:
    assert ua_product("kubectl/v1.30.2 (linux/amd64) kubernetes/3968350") == "kubectl/"
    assert ua_product("Go-http-client/2.0") == "Go-http-client/"
    assert ua_product("curl") is None and ua_product(None) is None


def test_recurring_patterns_are_proposed_with_counts_and_times(pack, history: str) -> None:
    alerts = list(scan([history], pack, min_severity="low"))
    proposals = propose(alerts, pack, min_count=3, min_days=2)
    by_rule = {p.title: p for p in proposals}
    execs = by_rule["Exec or Attach Into a Pod"]
    assert execs.match == {"user.username": "system:serviceaccount:ops:nightly-checker",
                           "objectRef.namespace": "ops", "userAgent|startswith": "nightly-checker/",
                           "objectRef.resource": "pods", "objectRef.subresource": "exec"}
    assert execs.count == 12 and len(execs.days) == 3 and not execs.high
    listing = by_rule["Secrets Listed Across All Namespaces or in kube-system"]
    assert listing.high and "SILENCES A HIGH RULE" in listing.warning
    assert propose(alerts, pack, min_count=3, min_days=4) == []  # seen on 3 days only


def test_round_trip_fewer_false_alerts_same_recall(pack, history: str, tmp_path: Path) -> None:
    alerts = list(scan([history], pack, min_severity="low"))
    text = render(propose(alerts, pack), total_alerts=len(alerts), span=None)
    tuning = yaml.safe_load(text)
    # a later day of the same benign work, with the shipped attack story in it
    attack = [json.loads(line) for line in sample_path().read_text().splitlines() if line.strip()]
    later = _write(tmp_path / "later.log", _benign_day(5) + attack)
    before = list(scan([later], pack, min_severity="low"))
    tuned = load_rules([default_pack_dir()], tuning=tuning)
    after = list(scan([later], tuned, min_severity="low"))
    benign = lambda xs: [a for a in xs if (a.get("user") or {}).get("name", "").startswith(  # noqa: E731
        ("system:serviceaccount:ops:", "system:serviceaccount:backup:"))]
    attacks = lambda xs: {a["kaudit"]["alert"]["id"] for a in xs  # noqa: E731
                          if (a.get("user") or {}).get("name") == ATTACKER}
    assert len(benign(after)) < len(benign(before))
    assert [a["rule"]["name"] for a in benign(after)] == ["Secrets Listed Across All Namespaces or in kube-system"]
    assert attacks(after) == attacks(before) and len(attacks(before)) >= 30  # the same recall


def test_cli_writes_a_private_file_and_says_so_plainly(history: str, tmp_path: Path) -> None:
    out = tmp_path / "proposed.yml"
    done = subprocess.run([sys.executable, "-m", "kaudit_elk", "tune", history, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600
    text = out.read_text()
    assert "# WARNING: SILENCES A HIGH RULE" in text and "SILENCES A HIGH RULE" in done.stderr
    active = yaml.safe_load(text)["exceptions"]
    assert [e["review"]["rule_title"] for e in active] == ["Exec or Attach Into a Pod"]
    assert active[0]["review"]["alerts"] == 12 and active[0]["review"]["first_seen"].startswith("2026-01-12")
    loud = subprocess.run([sys.executable, "-m", "kaudit_elk", "tune", history, "--allow-high"],
                          capture_output=True, text=True, timeout=300)
    assert len(yaml.safe_load(loud.stdout)["exceptions"]) == 2 and "SILENCES A HIGH RULE" in loud.stderr
    bad = subprocess.run([sys.executable, "-m", "kaudit_elk", "tune"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "history files" in bad.stderr
