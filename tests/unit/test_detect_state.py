"""The detection state carried between ``detect`` runs (no engine): a run continued from a snapshot
raises exactly the alerts of one uninterrupted run, and backfill steps follow the match density."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from kaudit_elk.detect.scan import sample_path
from kaudit_elk.detect.scheduled import backfill_steps
from kaudit_elk.rules.alerts import event_time
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.rules.runner import Runner

BENIGN = default_pack_dir().parent / "samples" / "benign-cluster.log"


@pytest.fixture(scope="module")
def pack():
    return load_rules([default_pack_dir()])


@pytest.fixture(scope="module")
def events() -> list[dict]:
    """The attack sample and the busy benign cluster log, in event-time order."""
    out = []
    for path in (sample_path(), BENIGN):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted((e for e in out if event_time(e) is not None), key=event_time)


def _ids(alerts) -> set[str]:
    return {a["kaudit"]["alert"]["id"] for a in alerts}


def _continued(pack, events: list[dict], cuts: list[float]) -> set[str]:
    """Runs cut at ``cuts``: each feeds its events, saves the state at its end (through JSON, as stored),
    flushes what closed before that end, and the next one continues from the saved state."""
    out: set[str] = set()
    state = None
    bounds = [float("-inf")] + cuts + [float("inf")]
    for lo, hi in zip(bounds, bounds[1:]):
        runner = Runner(pack)
        if state is not None:
            runner.restore(state)
        alerts = []
        for e in events:
            if lo <= event_time(e) < hi:
                alerts += runner.feed(e)
        if hi != float("inf"):
            state = orjson.loads(orjson.dumps(runner.snapshot(hi)))
        alerts += runner.flush(closed_before=None if hi == float("inf") else hi)
        out |= _ids(alerts)
    return out


@pytest.mark.parametrize("parts", [2, 7, 40])
def test_runs_continued_from_saved_state_raise_what_one_run_raises(pack, events, parts) -> None:
    whole = _ids(Runner(pack).run(events))
    kinds = {a["rule"]["kind"] for a in Runner(pack).run(events)}
    assert {"single", "correlation", "new_terms"} <= kinds and len(whole) > 50
    times = [event_time(e) for e in events]
    cuts = sorted({times[len(times) * k // parts] for k in range(1, parts)})
    assert _continued(pack, events, cuts) == whole


def test_without_the_state_correlations_straddling_a_cut_are_lost(pack, events) -> None:
    """The test above can fail: starting each part from nothing loses alerts."""
    times = [event_time(e) for e in events]
    cuts = sorted({times[len(times) * k // 40] for k in range(1, 40)})
    bounds = [float("-inf")] + cuts + [float("inf")]
    fresh: set[str] = set()
    for lo, hi in zip(bounds, bounds[1:]):
        fresh |= _ids(Runner(pack).run([e for e in events if lo <= event_time(e) < hi]))
    assert fresh != _ids(Runner(pack).run(events))


def test_snapshot_keeps_only_what_later_events_can_use(pack, events) -> None:
    runner = Runner(pack)
    for e in events:
        runner.feed(e)
    last = event_time(events[-1])
    soon = runner.snapshot(last + 1)
    assert any(g["groups"] for g in soon["correlations"].values())
    assert any(t["seen"] for t in soon["new_terms"].values())
    later = runner.snapshot(last + 30 * 86400)  # beyond every timespan and new-terms history
    assert not any(g["groups"] for g in later["correlations"].values())
    assert not any(t["seen"] for t in later["new_terms"].values()) and later["emitted"] == []
    assert len(orjson.dumps(later)) < len(orjson.dumps(soon))


def test_restore_takes_only_the_rules_asked_for(pack, events) -> None:
    runner = Runner(pack)
    for e in events:
        runner.feed(e)
    state = runner.snapshot(event_time(events[-1]) + 1)
    stateful = runner.stateful_rules()
    again = Runner(pack)
    assert again.restore(state, rules=stateful[:1]) == set(stateful[:1])
    assert again.restore(state) == {r for r in stateful if r in state["correlations"] or r in state["new_terms"]}


T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _b(minute: int, count: int) -> tuple[datetime, datetime, int]:
    return T0 + timedelta(minutes=minute), T0 + timedelta(minutes=minute + 1), count


def test_backfill_steps_merge_empty_stretches_and_split_dense_ones() -> None:
    end = T0 + timedelta(hours=10)
    assert backfill_steps([], T0, end) == [(T0, end)]  # nothing matches: one step, no search
    steps = backfill_steps([_b(5, 30), _b(300, 30), _b(301, 90), _b(400, 10)], T0, end, step_hits=100)
    assert steps[0][0] == T0 and steps[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(steps, steps[1:]))  # contiguous, no gap
    assert len(steps) == 3
    # no step holds more than step_hits unless one bucket alone does
    assert steps[0] == (T0, T0 + timedelta(minutes=301))


def test_backfill_steps_are_never_longer_than_max_step() -> None:
    end = T0 + timedelta(hours=3)
    steps = backfill_steps([_b(5, 30)], T0, end, step_hits=100, max_step=timedelta(hours=1))
    assert steps == [(T0, T0 + timedelta(hours=1)), (T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
                     (T0 + timedelta(hours=2), end)]
