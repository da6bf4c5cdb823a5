"""Prometheus textfile output of cron runs: parseable, and a failed run keeps the last success time."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from kaudit_elk.trail.metrics import write, write_run


def _samples(path: Path) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(path.read_text()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_failed_run_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "kaudit-detect.prom"
    write_run(str(path), "detect", True, 100.0, 103.5, {"new_alerts": 2})
    s = _samples(path)
    assert s[("kaudit_detect_last_success_timestamp_seconds", ())] == 103.5
    assert s[("kaudit_detect_duration_seconds", ())] == 3.5 and s[("kaudit_detect_new_alerts", ())] == 2
    write_run(str(path), "detect", False, 200.0, 201.0)
    s = _samples(path)
    assert s[("kaudit_detect_last_run_success", ())] == 0
    assert s[("kaudit_detect_last_success_timestamp_seconds", ())] == 103.5
    assert s[("kaudit_detect_last_run_timestamp_seconds", ())] == 201.0


def test_labelled_figures(tmp_path: Path) -> None:
    path = tmp_path / "kaudit-doctor.prom"
    write(str(path), "doctor", {"checks_failed": 1}, [("check_ok", {"check": "data fresh"}, 0),
                                                     ("check_ok", {"check": "mapping"}, 1)])
    s = _samples(path)
    assert s[("kaudit_doctor_check_ok", (("check", "data fresh"),))] == 0
    assert s[("kaudit_doctor_check_ok", (("check", "mapping"),))] == 1


def test_example_alerting_rules_use_the_metrics_written() -> None:
    rules = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "prometheus-alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    for name in ("kaudit_detect_last_success_timestamp_seconds", "kaudit_ingest_last_run_success",
                 "kaudit_doctor_check_ok", "kaudit_doctor_cluster_last_event_age_seconds"):
        assert name in exprs
