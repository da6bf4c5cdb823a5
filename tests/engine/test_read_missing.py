"""Readers on a namespace that holds nothing: ``report`` and ``tune --from`` say so (exit 2) instead of
writing an empty report or "0 alerts", and tell that apart from a real zero (issue 9, case 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_tune import DAY0, _benign_day, _write  # noqa: E402

from kaudit_elk.cluster.engine import Engine  # noqa: E402
from kaudit_elk.cluster.templates import Names  # noqa: E402
from kaudit_elk.detect.scheduled import DetectOptions, run_detect  # noqa: E402
from kaudit_elk.ingest.bulk import IngestOptions, ingest  # noqa: E402
from kaudit_elk.rules.loader import default_pack_dir, load_rules  # noqa: E402


def kaudit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaudit_elk", *args], capture_output=True, text=True, timeout=300)


def bootstrap(engine: Engine, prefix: str) -> str:
    ns = f"{prefix}{uuid.uuid4().hex[:8]}"
    out = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, "-q")
    assert out.returncode == 0, out.stderr
    return ns


def test_report_refuses_a_namespace_never_bootstrapped(engine: Engine, tmp_path: Path) -> None:
    ns = f"typo{uuid.uuid4().hex[:8]}"
    target = tmp_path / "report.html"
    out = kaudit("report", "--url", engine.settings.url, "--namespace", ns, "--out", str(target))
    assert out.returncode == 2, out.stderr
    assert f"namespace {ns!r} was never bootstrapped" in out.stderr
    assert f"kaudit-elk bootstrap --namespace {ns}" in out.stderr
    assert not target.exists(), "no empty report may be written"


def test_report_on_a_bootstrapped_namespace_with_no_stream_says_nothing_was_stored(engine: Engine) -> None:
    ns = bootstrap(engine, "empty")
    out = kaudit("report", "--url", engine.settings.url, "--namespace", ns, "--format", "json")
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert f"{Names(ns).stream} does not exist" in out.stderr and "kaudit-elk ingest" in out.stderr


def test_report_of_a_quiet_period_is_a_real_zero_and_says_detect_never_ran(engine: Engine, tmp_path: Path) -> None:
    ns = bootstrap(engine, "quiet")
    history = _write(tmp_path / "history.log", _benign_day(0))
    assert ingest(engine, [history], IngestOptions(namespace=ns, dead_letter=None, refresh=True)).dead_lettered == 0
    out = kaudit("report", "--url", engine.settings.url, "--namespace", ns, "--format", "json",
                 "--from", "2025-01-01T00:00:00Z", "--to", "2025-01-02T00:00:00Z")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["summary"]["events"] == 0  # the stream exists; the period holds no event
    assert any("detect has never run" in n for n in data["notes"]), data["notes"]


def _with_alerts(engine: Engine, tmp_path: Path) -> str:
    ns = bootstrap(engine, "tunez")
    history = _write(tmp_path / "history.log", [e for d in range(3) for e in _benign_day(d)])
    assert ingest(engine, [history], IngestOptions(namespace=ns, dead_letter=None, refresh=True)).dead_lettered == 0
    run_detect(engine, load_rules([default_pack_dir()]),
               DetectOptions(namespace=ns, since=DAY0, until=DAY0 + timedelta(days=3), max_step=timedelta(days=1),
                             min_severity="low"), [])
    return ns


def test_tune_from_says_there_is_no_alerts_index_and_tells_a_real_zero_apart(engine: Engine, tmp_path: Path) -> None:
    never = f"typo{uuid.uuid4().hex[:8]}"
    out = kaudit("tune", "--from", "now-14d", "--url", engine.settings.url, "--namespace", never)
    assert out.returncode == 2, out.stderr
    assert f"no alerts index {Names(never).alerts_index}" in out.stderr and "never bootstrapped" in out.stderr
    assert out.stdout == ""

    undetected = bootstrap(engine, "nodet")  # bootstrapped, detect never ran: there is nothing to tune on
    out = kaudit("tune", "--from", "now-14d", "--url", engine.settings.url, "--namespace", undetected)
    assert out.returncode == 2, out.stderr
    assert f"no alerts index {Names(undetected).alerts_index}" in out.stderr and "detect has never run" in out.stderr

    ns = _with_alerts(engine, tmp_path)  # alerts exist, but none in the window asked for: a real zero
    out = kaudit("tune", "--from", "2025-01-01T00:00:00Z", "--to", "2025-01-02T00:00:00Z",
                 "--url", engine.settings.url, "--namespace", ns)
    assert out.returncode == 0, out.stderr
    assert "tune: 0 alert(s)" in out.stderr and f"{Names(ns).alerts_index} holds" in out.stderr
