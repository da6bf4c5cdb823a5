"""Correlation windows, group-by, value_count, ordering, new-terms and per-request dedupe."""

from __future__ import annotations

from pathlib import Path

import yaml

from kaudit_elk.rules.loader import load_rules
from kaudit_elk.rules.runner import Runner

BASE = {
    "title": "secret get", "id": "6f1c0a38-1d7e-4f0b-9d51-000000000001", "name": "secret_get",
    "logsource": {"product": "kubernetes", "service": "audit"}, "level": "low", "tags": ["attack.t1552.007"],
    "detection": {"s": {"verb": "get", "objectRef.resource": "secrets"}, "condition": "s"},
}
BASE2 = {**BASE, "title": "pod create", "id": "6f1c0a38-1d7e-4f0b-9d51-000000000002", "name": "pod_create",
         "detection": {"s": {"verb": "create", "objectRef.resource": "pods"}, "condition": "s"}}


def pack_with(tmp_path: Path, *docs: dict):
    for i, d in enumerate(docs):
        (tmp_path / f"r{i}.yml").write_text(yaml.safe_dump(d))
    return load_rules([tmp_path])


def corr(ctype: str, condition: dict | None, group_by=("user.username",), timespan="5m", rules=("secret_get",), **kw):
    c = {"type": ctype, "rules": list(rules), "group-by": list(group_by), "timespan": timespan, **kw}
    if condition:
        c["condition"] = condition
    return {"title": f"corr {ctype}", "id": "6f1c0a38-1d7e-4f0b-9d51-0000000000ff", "level": "high", "correlation": c}


def ev(t: int, user="alice", name="s1", verb="get", resource="secrets", aid=None, stage="ResponseComplete"):
    m, s = divmod(t, 60)
    return {"auditID": aid or f"a-{t}-{user}-{name}-{verb}", "stage": stage, "verb": verb,
            "requestReceivedTimestamp": f"2026-01-15T10:{m:02d}:{s:02d}.000000Z",
            "user": {"username": user}, "objectRef": {"resource": resource, "name": name}}


def alerts_of(pack, events, rule_title):
    return [a for a in Runner(pack).run(events) if a["rule"]["name"] == rule_title]


def test_event_count_window_edges(tmp_path):
    pack = pack_with(tmp_path, BASE, corr("event_count", {"gte": 3}))
    inside = [ev(0), ev(150), ev(300)]  # exactly 5 minutes apart: inside the window
    assert len(alerts_of(pack, inside, "corr event_count")) == 1
    outside = [ev(0), ev(150), ev(301)]
    assert alerts_of(pack, outside, "corr event_count") == []


def test_event_count_one_alert_per_window_per_group(tmp_path):
    pack = pack_with(tmp_path, BASE, corr("event_count", {"gte": 3}))
    events = [ev(i) for i in range(0, 50, 10)] + [ev(i, user="bob") for i in range(0, 30, 10)]
    alerts = alerts_of(pack, events, "corr event_count")
    assert sorted(a["kaudit"]["alert"]["group"]["user.username"] for a in alerts) == ["alice", "bob"]
    alice = [a for a in alerts if a["kaudit"]["alert"]["group"]["user.username"] == "alice"][0]
    assert alice["kaudit"]["alert"]["count"] == 3 and len(alice["kaudit"]["alert"]["audit_ids"]) == 3
    assert alice["user"]["name"] == "alice"


def test_value_count_counts_distinct_values(tmp_path):
    pack = pack_with(tmp_path, BASE, corr("value_count", {"gte": 3, "field": "objectRef.name"}))
    same = [ev(i, name="s1") for i in range(0, 60, 10)]
    assert alerts_of(pack, same, "corr value_count") == []
    distinct = [ev(0, name="a"), ev(10, name="A"), ev(20, name="b"), ev(30, name="c")]
    alerts = alerts_of(pack, distinct, "corr value_count")
    assert len(alerts) == 1
    assert alerts[0]["kaudit"]["alert"]["correlation"]["measure"] == 3


def test_lt_condition_decided_when_window_closes(tmp_path):
    pack = pack_with(tmp_path, BASE, corr("event_count", {"lt": 3}))
    assert len(alerts_of(pack, [ev(0), ev(10)], "corr event_count")) == 1
    assert alerts_of(pack, [ev(0), ev(10), ev(20)], "corr event_count") == []


def test_temporal_any_order_and_temporal_ordered(tmp_path):
    pack = pack_with(tmp_path, BASE, BASE2, corr("temporal", None, rules=("secret_get", "pod_create")))
    both = [ev(0, verb="create", resource="pods"), ev(30)]
    assert len(alerts_of(pack, both, "corr temporal")) == 1
    assert alerts_of(pack, [ev(0), ev(30)], "corr temporal") == []
    sub = tmp_path / "ordered"
    sub.mkdir()
    ordered = pack_with(sub, BASE, BASE2, corr("temporal_ordered", None, rules=("secret_get", "pod_create")))
    assert len(alerts_of(ordered, [ev(0), ev(30, verb="create", resource="pods")], "corr temporal_ordered")) == 1
    assert alerts_of(ordered, [ev(0, verb="create", resource="pods"), ev(30)], "corr temporal_ordered") == []
    assert alerts_of(ordered, [ev(0), ev(400, verb="create", resource="pods")], "corr temporal_ordered") == []


def test_base_rules_of_correlation_do_not_alert_unless_generate(tmp_path):
    pack = pack_with(tmp_path, BASE, corr("event_count", {"gte": 2}))
    names = [a["rule"]["name"] for a in Runner(pack).run([ev(0), ev(10)])]
    assert names == ["corr event_count"]
    gen = tmp_path / "gen"
    gen.mkdir()
    pack2 = pack_with(gen, BASE, corr("event_count", {"gte": 2}, generate=True))
    names2 = [a["rule"]["name"] for a in Runner(pack2).run([ev(0), ev(10)])]
    assert names2.count("secret get") == 2 and names2.count("corr event_count") == 1


def test_alert_ids_are_deterministic(tmp_path):
    pack = pack_with(tmp_path, BASE, corr("event_count", {"gte": 2}, generate=True))
    run1 = [a["kaudit"]["alert"]["id"] for a in Runner(pack).run([ev(0), ev(10)])]
    run2 = [a["kaudit"]["alert"]["id"] for a in Runner(pack).run([ev(0), ev(10)])]
    assert run1 == run2 and len(set(run1)) == 3


def test_one_alert_per_request_prefers_response_complete(tmp_path):
    pack = pack_with(tmp_path, BASE)
    started = {**ev(0, aid="req-1", stage="ResponseStarted"), "responseStatus": {"code": 101}}
    complete = {**ev(0, aid="req-1"), "responseStatus": {"code": 200}}
    alerts = list(Runner(pack).run([started, complete]))
    assert len(alerts) == 1
    assert alerts[0]["kubernetes"]["audit"]["stage"] == "ResponseComplete"
    # the earlier stage is used when the final stage never matches
    other = {**ev(0, aid="req-2"), "verb": "list"}
    alerts2 = list(Runner(pack).run([{**ev(0, aid="req-2", stage="ResponseStarted")}, other]))
    assert [a["kubernetes"]["audit"]["stage"] for a in alerts2] == ["ResponseStarted"]
    # and a duplicate final stage (re-shipped line) is dropped
    assert len(list(Runner(pack).run([complete, complete]))) == 1


def test_new_terms_history_window(tmp_path):
    nt = {**BASE, "kaudit": {"new_terms": {"fields": ["user.username"], "history": "1h"}}}
    pack = pack_with(tmp_path, nt)
    events = [ev(0), ev(60, name="x"), ev(0, user="bob")]
    alerts = list(Runner(pack).run(events))
    assert [a["user"]["name"] for a in alerts] == ["alice", "bob"]
    late = {**ev(0, name="y"), "requestReceivedTimestamp": "2026-01-15T12:00:00.000000Z"}
    assert len(list(Runner(pack).run([ev(0), late]))) == 2  # seen more than 1h ago: new again
