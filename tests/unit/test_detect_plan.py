"""Detection windows and outputs (no engine)."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest

from kaudit_elk.detect.scheduled import DetectOptions, OutputError, plan_windows
from kaudit_elk.detect.outputs import AlertmanagerOutput, WebhookOutput, alertmanager_payload

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def test_first_run_starts_initial_lookback_ago_and_stops_delay_before_now() -> None:
    opts = DetectOptions(initial_lookback=timedelta(hours=1), delay=timedelta(seconds=30))
    assert plan_windows({}, ["r1"], NOW, opts) == [(NOW - timedelta(hours=1), NOW - timedelta(seconds=30))]


def test_next_run_overlaps_the_last_position() -> None:
    opts = DetectOptions(overlap=timedelta(minutes=5), delay=timedelta(0))
    pos = NOW - timedelta(minutes=3)
    assert plan_windows({"r1": pos}, ["r1"], NOW, opts) == [(pos - timedelta(minutes=5), NOW)]


def test_downtime_is_caught_up_in_bounded_contiguous_steps() -> None:
    opts = DetectOptions(overlap=timedelta(0), delay=timedelta(0), max_step=timedelta(hours=1))
    pos = NOW - timedelta(hours=5, minutes=30)
    windows = plan_windows({"r1": pos}, ["r1"], NOW, opts)
    assert len(windows) == 6 and windows[0][0] == pos and windows[-1][1] == NOW
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))  # no gap, no overlap between steps
    assert all(e - s <= timedelta(hours=1) for s, e in windows)


def test_lookback_is_capped_and_the_earliest_rule_wins() -> None:
    opts = DetectOptions(overlap=timedelta(0), delay=timedelta(0), max_step=timedelta(days=30),
                         max_lookback=timedelta(days=7))
    positions = {"old": NOW - timedelta(days=30), "new": NOW - timedelta(minutes=1)}
    assert plan_windows(positions, ["old", "new"], NOW, opts)[0][0] == NOW - timedelta(days=7)


def test_nothing_to_do_when_the_position_is_recent() -> None:
    opts = DetectOptions(overlap=timedelta(0), delay=timedelta(minutes=1))
    assert plan_windows({"r1": NOW - timedelta(seconds=10)}, ["r1"], NOW, opts) == []


def test_backfill_ignores_positions() -> None:
    opts = DetectOptions(since=NOW - timedelta(days=2), until=NOW - timedelta(days=1), max_step=timedelta(hours=12))
    assert plan_windows({"r1": NOW}, ["r1"], NOW, opts) == [
        (NOW - timedelta(days=2), NOW - timedelta(days=1, hours=12)), (NOW - timedelta(days=1, hours=12), NOW - timedelta(days=1))]


ALERT = {"@timestamp": "2026-01-01T11:00:00.000000Z", "rule": {"id": "r-1", "name": "Secret read", "title": "Secret read"},
         "kaudit": {"alert": {"id": "abc", "severity": "high", "audit_ids": ["x", "y"], "group": {"user": "bob"},
                              "first_event_time": "2026-01-01T10:59:00.000000Z"}},
         "user": {"name": "bob"}, "orchestrator": {"namespace": "prod"}}


def test_alertmanager_payload_labels_identify_the_alert() -> None:
    [payload] = alertmanager_payload([ALERT])
    assert payload["labels"] == {"alertname": "Secret read", "severity": "high", "rule_id": "r-1", "alert_id": "abc",
                                 "source": "kaudit-elk", "namespace": "prod", "user": "bob"}
    assert payload["annotations"]["audit_ids"] == "x,y" and payload["startsAt"] == "2026-01-01T10:59:00.000000Z"


class _Receiver(http.server.BaseHTTPRequestHandler):
    fail_first = 0
    received: list = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        cls.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type]]:
    handler = type("R", (_Receiver,), {"fail_first": 0, "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def test_webhook_retries_a_flaky_receiver(receiver) -> None:
    url, handler = receiver
    handler.fail_first = 2
    WebhookOutput(url + "/hook", retries=3).send([ALERT])
    assert handler.received == [("/hook", {"alerts": [ALERT], "source": "kaudit-elk"})]


def test_alertmanager_posts_to_the_v2_api(receiver) -> None:
    url, handler = receiver
    AlertmanagerOutput(url).send([ALERT])
    [(path, body)] = handler.received
    assert path == "/api/v2/alerts" and body[0]["labels"]["alert_id"] == "abc"


def test_unreachable_output_raises_with_the_url() -> None:
    with pytest.raises(OutputError, match="127.0.0.1:9/"):
        WebhookOutput("http://127.0.0.1:9/", retries=1).send([ALERT])
