"""Where a replay must start (no engine): the latest quiet point from a histogram of base-rule matches,
so that every correlation's state there is provably empty and no more history than needed is read."""

from __future__ import annotations

from kaudit_elk.detect.engine_search import latest_quiet_point

START, SPAN, FLOOR = 100_000.0, 300.0, 10_000.0


def test_no_match_within_a_span_before_the_start_needs_no_replay() -> None:
    assert latest_quiet_point([], START, SPAN, FLOOR) == START
    assert latest_quiet_point([(90_000.0, 99_699.0)], START, SPAN, FLOOR) == START
    # the last match's millisecond may reach 1 ms into the span: not quiet
    assert latest_quiet_point([(90_000.0, 99_700.0)], START, SPAN, FLOOR) != START


def test_the_replay_starts_at_the_first_match_after_the_latest_gap_of_a_whole_span() -> None:
    buckets = [(50_000.0, 50_100.0), (60_000.0, 60_140.0), (60_150.0, 60_290.0), (60_300.0, 99_900.0)]
    # gaps: 50,100 -> 60,000 (a whole span), then matches closer than a span all the way to the start
    assert latest_quiet_point(buckets, START, SPAN, FLOOR) == 60_000.0
    # a match in the millisecond a whole span before may lie inside the span: not quiet there
    assert latest_quiet_point([(59_700.0, 59_700.0), (60_000.0, 99_900.0)], START, SPAN, FLOOR) == 59_700.0
    assert latest_quiet_point([(59_699.999, 59_699.999), (60_000.0, 99_900.0)], START, SPAN, FLOOR) == 60_000.0

def test_without_a_quiet_point_since_the_floor_the_replay_starts_at_the_floor() -> None:
    assert latest_quiet_point([(10_000.0, 99_900.0)], START, SPAN, FLOOR) == FLOOR
    # the first match in range is quiet only if a whole span before it was searched
    assert latest_quiet_point([(10_100.0, 10_200.0), (20_000.0, 99_900.0)], START, SPAN, FLOOR) == 20_000.0
    assert latest_quiet_point([(10_100.0, 99_900.0)], START, SPAN, FLOOR) == FLOOR
    assert latest_quiet_point([(10_400.0, 99_900.0)], START, SPAN, FLOOR) == 10_400.0
