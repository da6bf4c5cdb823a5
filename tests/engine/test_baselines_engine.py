"""Behaviour baselines in the engine: the aggregations rebuild the buckets `scan` builds, so `detect --baselines`
raises the same baseline alerts as `scan --history` on the same data; and nothing during warm-up."""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import baseline_story as story  # noqa: E402

from kaudit_elk.cluster.bootstrap import apply, build_plan  # noqa: E402
from kaudit_elk.cluster.engine import Engine  # noqa: E402
from kaudit_elk.cluster.templates import BootstrapOptions, Names  # noqa: E402
from kaudit_elk.detect.baselines_search import baseline_alerts, judged_hours, profiles  # noqa: E402
from kaudit_elk.detect.scan import scan  # noqa: E402
from kaudit_elk.detect.scheduled import DetectOptions, run_detect  # noqa: E402
from kaudit_elk.ingest.bulk import IngestOptions, ingest  # noqa: E402
from kaudit_elk.rules.baselines import BaselineOptions, ProfileBuilder, judged_rule_ids  # noqa: E402
from kaudit_elk.rules.loader import default_pack_dir, load_rules  # noqa: E402


def _namespace(engine: Engine, files: list[str]) -> str:
    namespace = f"base{uuid.uuid4().hex[:8]}"
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    stats = ingest(engine, files, IngestOptions(namespace=namespace, dead_letter=None, refresh=True))
    assert stats.dead_lettered == 0
    return namespace


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("story")
    return {"history": story.write(d / "history.log", story.history()),
            "attack": story.write(d / "attack.log", story.attack()),
            "short": story.write(d / "short.log", story.history(days=3))}


def test_judged_hours_are_the_hours_closing_in_the_window() -> None:
    h = 1_700_000_000 // 3600 * 3600
    assert judged_hours(h, h + 3600) == (h, h)
    assert judged_hours(h + 60, h + 3600 + 60) == (h, h)
    assert judged_hours(h + 60, h + 120) is None
    assert judged_hours(h, h + 3 * 3600) == (h, h + 2 * 3600)


def test_aggregations_rebuild_the_buckets_scan_builds(engine: Engine, files: dict[str, str]) -> None:
    ns = _namespace(engine, [files["history"], files["attack"]])
    built = ProfileBuilder()
    for e in story.history() + story.attack():
        built.add(e, judged=True)
    lo, hi = story.START.timestamp(), story.ATTACK.timestamp() + 3600
    assert profiles(engine, Names(ns).stream, sorted(built.profiles), lo, hi) == built.profiles


def test_detect_raises_the_baseline_alerts_scan_raises(engine: Engine, files: dict[str, str]) -> None:
    pack = load_rules([default_pack_dir()])
    ns = _namespace(engine, [files["history"], files["attack"]])
    expected = [a for a in scan([files["attack"]], pack, history=[files["history"]], baselines=BaselineOptions())
                if a["rule"]["id"] in judged_rule_ids()]
    assert len(expected) == 6
    notes: list[str] = []
    got = baseline_alerts(engine, Names(ns).stream, story.ATTACK, story.ATTACK + timedelta(hours=1), notes=notes)
    assert got == expected
    assert "warm-up of 7 days done" in notes[0]
    # through a detect run over the attack hour, in 10-minute steps: each hour judged once, when it closes
    options = DetectOptions(namespace=ns, since=story.ATTACK - timedelta(minutes=30),
                            until=story.ATTACK + timedelta(minutes=70), max_step=timedelta(minutes=10),
                            min_severity="low")

    class Out:
        name = "collect"
        alerts: list[dict[str, Any]] = []

        def send(self, alerts: list[dict[str, Any]]) -> None:
            self.alerts.extend(alerts)

    out = Out()
    run_detect(engine, pack, options, [out], baselines=BaselineOptions())
    mine = [a["kaudit"]["alert"]["id"] for a in out.alerts if a["rule"]["id"] in judged_rule_ids()]
    assert sorted(mine) == sorted(a["kaudit"]["alert"]["id"] for a in expected)  # each hour judged once


def test_no_baseline_alert_during_warm_up(engine: Engine, files: dict[str, str]) -> None:
    ns = _namespace(engine, [files["short"], files["attack"]])
    notes: list[str] = []
    assert baseline_alerts(engine, Names(ns).stream, story.ATTACK, story.ATTACK + timedelta(hours=1), notes=notes) == []
    assert notes and notes[0].startswith("baselines: warming up, 4 of 7 days")
