"""Incidents: alerts of one actor close in time become one incident with a risk score."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kaudit_elk.detect.outputs import alertmanager_incident_payload
from kaudit_elk.detect.scan import sample_path, scan
from kaudit_elk.rules.incidents import (
    Assigner,
    IncidentOptions,
    alert_key,
    build_incidents,
    notify_signature,
    open_incident,
    risk_score,
    summarize,
    tactics_of,
)
from kaudit_elk.rules.loader import default_pack_dir, load_rules

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _alert(n: int, minutes: float, user: str | None = "mallory", ip: str | None = "203.0.113.9",
           level: str = "medium", tags: tuple[str, ...] = ("attack.discovery", "attack.t1613"),
           rule: str | None = None) -> dict[str, Any]:
    t = (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    a: dict[str, Any] = {"@timestamp": t, "rule": {"id": rule or f"rule-{n}", "name": f"Rule {n}", "level": level},
                         "kaudit": {"alert": {"id": f"alert-{n:03d}", "severity": level, "first_event_time": t,
                                              "last_event_time": t, "audit_ids": [f"a{n}"]}},
                         "tags": list(tags)}
    if user is not None:
        a["user"] = {"name": user}
    if ip is not None:
        a["source"] = {"ip": ip}
    return a


@pytest.fixture(scope="module")
def sample_alerts() -> list[dict]:
    return list(scan([str(sample_path())], load_rules([default_pack_dir()]), min_severity="low"))


def test_the_sample_attack_story_reaches_a_person_as_one_incident(sample_alerts: list[dict]) -> None:
    incidents = build_incidents(sample_alerts)
    assert len(incidents) < len(sample_alerts) / 4
    worst = max(incidents, key=lambda i: i["kaudit"]["incident"]["risk_score"])["kaudit"]["incident"]
    attacker = [a for a in sample_alerts if (a.get("user") or {}).get("name") == "system:serviceaccount:ci:deployer"]
    assert worst["actor"] == {"identity": "system:serviceaccount:ci:deployer", "source_ip": "198.51.100.23"}
    assert worst["alert_count"] == len(attacker) >= 30
    assert worst["severity"] == "critical" and worst["tactic_count"] >= 5
    assert [p["tactic"] for p in worst["progression"]] == worst["tactics"]
    times = [p["first_seen"] for p in worst["progression"]]
    assert times == sorted(times)
    # every alert is in exactly one incident
    ids = [x for i in incidents for x in i["kaudit"]["incident"]["alert_ids"]]
    assert sorted(ids) == sorted(a["kaudit"]["alert"]["id"] for a in sample_alerts)


def test_incidents_do_not_depend_on_alert_order(sample_alerts: list[dict]) -> None:
    shuffled = list(sample_alerts)
    random.Random(7).shuffle(shuffled)
    assert build_incidents(shuffled) == build_incidents(sample_alerts)


def test_quiet_gap_and_max_span_open_new_incidents() -> None:
    alerts = [_alert(1, 0), _alert(2, 60), _alert(3, 60 + 119), _alert(4, 60 + 119 + 121)]
    got = build_incidents(alerts, IncidentOptions(gap=2 * 3600, max_span=24 * 3600))
    assert [i["kaudit"]["incident"]["alert_count"] for i in got] == [3, 1]
    spans = build_incidents([_alert(n, n * 50) for n in range(10)], IncidentOptions(gap=3600, max_span=4 * 3600))
    assert [i["kaudit"]["incident"]["alert_count"] for i in spans] == [5, 5]


def test_actor_is_identity_and_source() -> None:
    alerts = [_alert(1, 0), _alert(2, 1, user="alice"),  # another identity from the same address: apart
              _alert(3, 2, ip="198.51.100.7"),  # the same identity from another address: apart
              _alert(4, 3, user="system:anonymous"),  # anonymous: joins the latest incident from its address
              _alert(5, 4, ip=None)]  # a correlation grouped by user only: joins the user's latest incident
    got = {tuple(sorted(i["kaudit"]["incident"]["alert_ids"])) for i in build_incidents(alerts)}
    assert got == {("alert-001",), ("alert-002", "alert-004"), ("alert-003", "alert-005")}


def test_anonymous_first_then_identified_is_one_incident() -> None:
    alerts = [_alert(1, 0, user="system:anonymous"), _alert(2, 5), _alert(3, 6)]
    (only,) = build_incidents(alerts)
    assert only["kaudit"]["incident"]["actor"] == {"identity": "mallory", "source_ip": "203.0.113.9"}


def test_more_tactics_mean_more_risk() -> None:
    one_tactic = [{"severity": "low", "count": 1}] * 4
    assert risk_score(one_tactic, ["discovery"]) < risk_score(one_tactic, ["discovery", "credential-access",
                                                                            "privilege-escalation", "persistence"])
    lows = [_alert(n, n, level="low", tags=(f"attack.{t}",)) for n, t in
            enumerate(("discovery", "credential-access", "privilege-escalation", "persistence"))]
    inc = build_incidents(lows)[0]["kaudit"]["incident"]
    assert inc["severity"] == "medium"  # four low alerts over four tactics: a person should look
    single = build_incidents([_alert(1, 0, level="low")])[0]["kaudit"]["incident"]
    assert single["severity"] == "low"


def test_repeats_of_one_rule_do_not_outweigh_a_second_tactic() -> None:
    noisy = [_alert(n, n, rule="same", level="low") for n in range(50)]
    two = [_alert(1, 0, level="low"), _alert(2, 1, level="low", tags=("attack.credential-access",))]
    assert build_incidents(noisy)[0]["kaudit"]["incident"]["risk_score"] < \
        build_incidents(two)[0]["kaudit"]["incident"]["risk_score"]


def test_tactics_from_sigma_tags() -> None:
    assert tactics_of(["attack.t1613", "attack.privilege_escalation", "attack.discovery", "cve.2021"]) == \
        ["privilege-escalation", "discovery"]


def test_window_by_window_with_stored_state_equals_one_pass(sample_alerts: list[dict]) -> None:
    """What detect does: per window, assign with the open incidents rebuilt from their documents."""
    options = IncidentOptions(gap=60, max_span=600)  # short, so that incidents close between windows
    ordered = sorted(sample_alerts, key=alert_key)
    stored: dict[str, list[dict]] = {}
    docs: dict[str, dict] = {}
    for w in range(0, len(ordered), 7):
        window = ordered[w:w + 7]
        assigner = Assigner(options, [open_incident(d) for d in docs.values()])
        for a in window:
            stored.setdefault(assigner.assign(a), []).append(a)
        docs = {iid: summarize(iid, group, options) for iid, group in stored.items()}
    assert sorted(docs.values(), key=lambda d: d["kaudit"]["incident"]["id"]) == \
        sorted(build_incidents(sample_alerts, options), key=lambda d: d["kaudit"]["incident"]["id"])


def test_escalation_changes_the_notification_signature() -> None:
    first = summarize("x", [_alert(1, 0)])
    more_of_the_same = summarize("x", [_alert(1, 0), _alert(2, 1, rule="rule-1")])
    new_tactic = summarize("x", [_alert(1, 0), _alert(3, 2, tags=("attack.credential-access",))])
    assert notify_signature(first) == notify_signature(more_of_the_same)
    assert notify_signature(first) != notify_signature(new_tactic)


def test_alertmanager_gets_one_alert_per_incident(sample_alerts: list[dict]) -> None:
    incidents = build_incidents(sample_alerts)
    payload = alertmanager_incident_payload(incidents)
    assert len(payload) == len(incidents)
    assert len({p["labels"]["incident_id"] for p in payload}) == len(incidents)
    worst = next(p for p in payload if p["labels"]["severity"] == "critical" and "deployer" in p["labels"].get("user", ""))
    assert worst["labels"]["source_ip"] == "198.51.100.23" and int(worst["annotations"]["risk_score"]) > 100


def test_the_report_shows_incidents_highest_risk_first(sample_alerts: list[dict]) -> None:
    from kaudit_elk.views import report

    data = report.compute([], sample_alerts)
    top = data.incidents[0]
    assert top["severity"] == "critical" and "system:serviceaccount:ci:deployer" in top["title"]
    assert [r["risk"] for r in data.incidents] == sorted((r["risk"] for r in data.incidents), reverse=True)
    assert sum(r["alerts"] for r in data.incidents) == len(sample_alerts)
    html = report.render(data, "html")
    assert 'id="incidents"' in html and top["title"].replace("→", "") .split(":")[0] in html
    assert "## Incidents" in report.render(data, "markdown")


def test_a_workload_credential_from_the_same_outside_address_joins_the_incident() -> None:
    """A stolen kubeconfig, then a pod's token used from the same outside host: one incident."""
    sa = "system:serviceaccount:payments:payments-api"
    alerts = [_alert(1, 0, "tom@corp.example", "198.51.100.23"), _alert(2, 3, sa, "198.51.100.23"),
              _alert(3, 5, "tom@corp.example", "198.51.100.23")]
    (inc,) = build_incidents(alerts)
    assert inc["kaudit"]["incident"]["alert_count"] == 3
    assert inc["kaudit"]["incident"]["identities"] == ["tom@corp.example", sa]


def test_people_sharing_an_address_or_a_workload_inside_are_not_joined() -> None:
    sa = "system:serviceaccount:ci:deployer"
    vpn = [_alert(1, 0, "alice@corp.example", "198.51.100.4"), _alert(2, 1, "bob@corp.example", "198.51.100.4")]
    assert len(build_incidents(vpn)) == 2  # two people behind one VPN egress stay two incidents
    inside = [_alert(1, 0, "alice@corp.example", "10.1.2.3"), _alert(2, 1, sa, "10.1.2.3")]
    assert len(build_incidents(inside)) == 2  # a pod token from an internal address is its own actor


def _with_node(alert: dict[str, Any], node: str) -> dict[str, Any]:
    alert["kaudit"]["alert"]["node"] = node
    return alert


def test_a_kubelet_joins_the_incident_of_a_pod_token_issued_on_its_node() -> None:
    """A stolen pod token escalates, then a static pod appears through that node's kubelet: one incident,
    also when the later alert meets the incident restored from the store (``detect`` window by window)."""
    node = "ip-10-0-2-27.eu-west-1.compute.internal"
    sa = "system:serviceaccount:gitlab-ci:deployer"
    token = [_with_node(_alert(1, 0, sa, "10.244.9.41"), node), _with_node(_alert(2, 2, sa, "10.244.9.41"), node)]
    kubelet = _alert(3, 4, f"system:node:{node}", "10.0.2.27")
    (inc,) = build_incidents([*token, kubelet])
    assert inc["kaudit"]["incident"]["alert_count"] == 3
    assert inc["kaudit"]["incident"]["actor"] == {"identity": sa, "source_ip": "10.244.9.41", "node": node}
    stored = summarize(inc["kaudit"]["incident"]["id"], token)
    assigner = Assigner(IncidentOptions(), [open_incident(stored)])
    assert assigner.assign(kubelet) == inc["kaudit"]["incident"]["id"]


def test_pod_tokens_sharing_a_node_or_another_nodes_kubelet_are_not_joined() -> None:
    node = "ip-10-0-2-27.eu-west-1.compute.internal"
    a = _with_node(_alert(1, 0, "system:serviceaccount:ci:deployer", "10.244.9.41"), node)
    b = _with_node(_alert(2, 1, "system:serviceaccount:web:frontend", "10.244.9.77"), node)
    assert len(build_incidents([a, b])) == 2  # co-scheduled workloads are unrelated
    other = _alert(3, 2, "system:node:ip-10-0-3-14.eu-west-1.compute.internal", "10.0.3.14")
    assert len(build_incidents([a, other])) == 2
