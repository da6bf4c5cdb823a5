"""Behaviour baselines offline (`scan --history`): each identity judged against its own past."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import baseline_story as story  # noqa: E402

from kaudit_elk.detect.scan import ScanStats, scan  # noqa: E402
from kaudit_elk.rules.baselines import RULES, BaselineOptions, ProfileBuilder, judge, judged_rule_ids  # noqa: E402
from kaudit_elk.rules.incidents import build_incidents  # noqa: E402
from kaudit_elk.rules.loader import default_pack_dir, load_rules  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("story")
    return {"history": story.write(d / "history.log", story.history()),
            "attack": story.write(d / "attack.log", story.attack()),
            "short": story.write(d / "short.log", story.history(days=3))}


def _judge(events_history: list[dict], events_judged: list[dict], options: BaselineOptions | None = None) -> list[dict]:
    b = ProfileBuilder()
    for e in events_history:
        b.add(e, judged=False)
    for e in events_judged:
        b.add(e, judged=True)
    return judge(b.profiles, b.judged, b.days, options)


def test_the_stolen_account_raises_every_anomaly_and_nobody_else_does() -> None:
    alerts = _judge(story.history(), story.attack())
    kinds = Counter((a["user"]["name"], a["kaudit"]["alert"]["baseline"] and a["kaudit"]["alert"]["group"]["baseline"])
                    for a in alerts)
    assert kinds == Counter({(story.ALICE, k): 1 for k in RULES})
    by_kind = {a["kaudit"]["alert"]["group"]["baseline"]: a["kaudit"]["alert"]["baseline"] for a in alerts}
    assert by_kind["new_sources"]["new_sources"] == [f"198.51.100.{n}" for n in range(1, 5)]
    assert by_kind["secrets"]["distinct"] == 25 and by_kind["secrets"]["history_max"] == 1
    assert by_kind["lists"]["distinct"] == 15 and by_kind["logs"]["distinct"] == 20
    assert all(a["kaudit"]["alert"]["first_event_time"] == "2026-02-14T03:00:00.000000Z" for a in alerts)


def test_ordinary_days_raise_nothing() -> None:
    events = story.history(days=13)
    judged = [e for e in events if e["requestReceivedTimestamp"] >= "2026-02-12"]
    earlier = [e for e in events if e["requestReceivedTimestamp"] < "2026-02-12"]
    assert _judge(earlier, judged) == []


def test_no_alert_during_warm_up() -> None:
    short = story.history(days=3)
    assert _judge(short, story.attack()) == []  # 3 days of history in the last 14: still warming up
    options = BaselineOptions(warmup_days=2, min_active_days=2)
    assert _judge(short, story.attack(), options)  # with a shorter warm-up the same data is judged


def test_new_identities_are_not_judged() -> None:
    attack = [dict(e, user={"username": "mallory@example.com"}) for e in story.attack()]
    alerts = _judge(story.history(), attack)
    assert all(a["user"]["name"] != "mallory@example.com" for a in alerts)


def test_scan_history_judges_the_scanned_files_and_states_the_warm_up(files: dict[str, str]) -> None:
    pack = load_rules([default_pack_dir()])
    stats = ScanStats()
    alerts = list(scan([files["attack"]], pack, history=[files["history"]], baselines=BaselineOptions(), stats=stats))
    mine = [a for a in alerts if a["rule"]["id"] in judged_rule_ids()]
    assert {a["kaudit"]["alert"]["group"]["baseline"] for a in mine} == set(RULES)
    assert "warm-up of 7 days done" in stats.baseline_note
    # the baseline alerts (identity only) join the stolen account's incidents, one per source address
    incidents = build_incidents(alerts)
    alice = [i for i in incidents if i["kaudit"]["incident"]["actor"]["identity"] == story.ALICE]
    assert len(alice) == 4 and {i["kaudit"]["incident"]["actor"]["source_ip"] for i in alice} == \
        {f"198.51.100.{n}" for n in range(1, 5)}
    owners = {x for i in incidents for x in i["kaudit"]["incident"]["alert_ids"]
              if i["kaudit"]["incident"]["actor"]["identity"] == story.ALICE}
    assert {a["kaudit"]["alert"]["id"] for a in mine} <= owners
    done = subprocess.run([sys.executable, "-m", "kaudit_elk", "scan", files["attack"], "--history", files["short"],
                           "--format", "ndjson"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "baselines: warming up" in done.stderr and "no baseline alerts until" in done.stderr
    assert not any(rid in done.stdout for rid in judged_rule_ids())
