"""Report data (pure computation), its numbers on the corpus, and the HTML/Markdown/JSON renderings."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kaudit_elk.views import report


def doc(ts: str | None, user: str = "alice", verb: str = "get", resource: str | None = "pods", *, code: int = 200,
        stage: str = "ResponseComplete", level: str = "Metadata", audit_id: str | None = None, ns: str | None = "default",
        name: str | None = None, sub: str | None = None, ip: str = "10.0.0.1", kaudit: dict | None = None,
        decision: str | None = None) -> dict[str, Any]:
    """A normalized document shaped like kaudit_elk.events.normalize output (only the fields the report reads)."""
    audit: dict[str, Any] = {"verb": verb, "stage": stage, "level": level, "user": {"username": user},
                             "responseStatus": {"code": code}}
    if audit_id:
        audit["auditID"] = audit_id
    ref = {k: v for k, v in {"resource": resource, "namespace": ns, "name": name, "subresource": sub}.items() if v}
    if ref:
        audit["objectRef"] = ref
    if decision:
        audit["annotations"] = {"authorization_k8s_io/decision": decision}
    out: dict[str, Any] = {
        "event": {"action": verb, "outcome": "success" if code < 400 else "failure"},
        "user": {"name": user}, "source": {"ip": ip}, "http": {"response": {"status_code": code}},
        "orchestrator": {k: v for k, v in {"namespace": ns, "resource": {k2: v2 for k2, v2 in
                                                                          {"type": resource, "name": name}.items() if v2}}.items() if v},
        "kubernetes": {"audit": audit},
    }
    if ts:
        out["@timestamp"] = ts
    if kaudit:
        out["kaudit"] = kaudit
    return out


def alert(rule_id: str, name: str, severity: str, ts: str, user: str = "alice", audit_level: str = "Metadata") -> dict:
    return {"@timestamp": ts, "rule": {"id": rule_id, "name": name, "level": severity, "audit_level": audit_level},
            "kaudit": {"alert": {"severity": severity, "audit_ids": ["x"]}}, "user": {"name": user}}


NOW = datetime(2026, 1, 10, tzinfo=timezone.utc)


def test_stages_of_one_request_count_once_and_final_stage_wins() -> None:
    docs = [doc("2026-01-01T10:00:00Z", stage="RequestReceived", code=0, audit_id="a"),
            doc("2026-01-01T10:00:00Z", stage="ResponseComplete", code=403, audit_id="a"),
            doc("2026-01-01T10:00:01Z", audit_id=None), doc("2026-01-01T10:00:02Z", audit_id=None)]
    data = report.compute(docs, now=NOW)
    assert data.summary["events"] == 4
    assert data.summary["requests"] == 3
    assert data.summary["denied"] == 1
    assert data.stages == {"RequestReceived": 1, "ResponseComplete": 3}


def test_summary_actors_denied_and_timeline() -> None:
    docs = [
        doc("2026-01-01T10:05:00Z", "alice", "list", "secrets", code=403, audit_id="1", ns="prod"),
        doc("2026-01-01T10:35:00Z", "alice", "get", "secrets", code=200, audit_id="2", ns="prod", decision="allow"),
        doc("2026-01-01T12:10:00Z", "bob", "create", "pods", code=201, audit_id="3", ip="10.0.0.2"),
        doc("2026-01-01T12:20:00Z", "system:anonymous", "get", None, code=401, audit_id="4", ns=None, ip="1.2.3.4"),
        doc("2026-01-01T12:30:00Z", "eve", "get", "nodes", code=200, audit_id="5", ns=None, decision="forbid"),
    ]
    data = report.compute(docs, now=NOW)
    s = data.summary
    assert (s["requests"], s["users"], s["source_ips"], s["namespaces"]) == (5, 4, 3, 2)
    assert (s["denied"], s["unauthenticated"], s["anonymous"], s["changes"]) == (2, 1, 1, 1)
    assert data.timeline_unit == "hour"
    assert [(r["start"][11:13], r["success"], r["failure"]) for r in data.timeline] == [("10", 1, 1), ("11", 0, 0), ("12", 2, 1)]
    assert data.top_users[0] == {"name": "alice", "requests": 2, "failures": 1, "denied": 1}
    assert {(r["user"], r["resource"]) for r in data.denied_by_actor} == {("alice", "secrets"), ("eve", "nodes")}
    assert data.denied_latest[0]["user"] == "eve"  # newest first


def test_time_range_limits_everything() -> None:
    docs = [doc("2026-01-01T00:00:00Z", audit_id="1"), doc("2026-01-02T00:00:00Z", audit_id="2"),
            doc("2026-01-03T00:00:00Z", audit_id="3"), doc(None, audit_id="4")]
    start, end = datetime(2026, 1, 2, tzinfo=timezone.utc), datetime(2026, 1, 3, tzinfo=timezone.utc)
    data = report.compute(docs, start=start, end=end, now=NOW)
    assert data.summary["requests"] == 1  # end is exclusive; undated documents are outside any explicit range
    assert (data.period_start, data.period_end) == ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")
    assert report.compute(docs, now=NOW).notes[0].startswith("1 events had no timestamp")


def test_alerts_by_rule_and_severity() -> None:
    alerts = [alert("r1", "Exec into pod", "high", "2026-01-01T01:00:00Z"),
              alert("r1", "Exec into pod", "high", "2026-01-01T02:00:00Z", user="bob"),
              alert("r2", "Secret listing", "low", "2026-01-01T03:00:00Z", audit_level="RequestResponse")]
    data = report.compute([doc("2026-01-01T00:00:00Z", level="Request")], alerts, now=NOW)
    assert data.alerts_by_severity == [{"severity": "high", "count": 2}, {"severity": "low", "count": 1}]
    assert data.alerts_by_rule[0] == {"rule_id": "r1", "rule": "Exec into pod", "severity": "high", "count": 2}
    assert data.alerts_latest[0]["rule"] == "Secret listing"
    # rules named by the alerts join the coverage table: Request level meets Metadata, not RequestResponse
    assert {r["rule_id"]: r["status"] for r in data.rule_coverage} == {"r1": "met", "r2": "not met"}


def test_changes_sessions_and_coverage() -> None:
    docs = [
        doc("2026-01-01T00:00:00Z", "bob", "create", "clusterrolebindings", code=201, name="pwn", ns=None,
            level="RequestResponse", audit_id="1", kaudit={"rbac": {"role_ref": {"name": "cluster-admin"}, "subjects": {"name": ["eve"]}}}),
        doc("2026-01-01T00:01:00Z", "bob", "create", "pods", code=201, name="p", level="Metadata", audit_id="2",
            kaudit={"pod": {"privileged": True, "host_path": ["/etc"]}}),
        doc("2026-01-01T00:02:00Z", "bob", "create", "pods", code=101, name="p", sub="exec", stage="ResponseStarted",
            audit_id="3", kaudit={"exec": {"command": "sh -c id", "container": "c"}}),
        doc("2026-01-01T00:03:00Z", "bob", "get", "secrets", level="RequestResponse", audit_id="4"),
    ]
    data = report.compute(docs, rules=[("x", "Needs bodies", "Request")], now=NOW)
    assert data.rbac_changes[0]["detail"] == "roleRef cluster-admin; subjects eve"
    assert data.workload_changes[0]["detail"] == "privileged, hostPath /etc"
    assert data.exec_sessions == [{**data.exec_sessions[0], "command": "sh -c id", "container": "c", "kind": "exec", "user": "bob"}]
    checks = {c["check"]: c["status"] for c in data.coverage_checks}
    assert checks["Pod specs (privileged, host namespaces, hostPath)"] == "not met"  # pod create logged at Metadata
    assert checks["RBAC contents (rules, roleRef, subjects)"] == "met"
    assert checks["Secret values kept out of the log"] == "not met"
    assert data.rule_coverage == [{"rule_id": "x", "rule": "Needs bodies", "needs": "Request", "status": "met"}]


# --------------------------------------------------------------------------- corpus


def _files_report(paths: list[Path]) -> report.ReportData:
    pytest.importorskip("kaudit_elk.events.normalize")
    docs, skipped, unreadable = report.documents_from_files([str(p) for p in paths])
    return report.compute(docs, skipped=skipped, unreadable=unreadable, now=NOW)


def _raw_events(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for p in paths for line in p.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def test_corpus_audit2rbac_denials(corpus_dir: Path) -> None:
    """demo.log: system:admin impersonating bob/alice/sa1; 37 events, 11 of them 403 (counted from the raw file)."""
    path = corpus_dir / "audit2rbac" / "demo.log"
    raw = _raw_events([path])
    expected_denied = sum(1 for e in raw if (e.get("responseStatus") or {}).get("code") == 403)
    assert (len(raw), expected_denied) == (37, 11)
    data = _files_report([path])
    assert data.summary["events"] == 37
    assert data.summary["requests"] == len({e["auditID"] for e in raw})
    assert data.summary["denied"] == 11
    assert {r["user"] for r in data.denied_by_actor} == {"system:admin"}  # the authenticated user; impersonation aside
    assert data.levels == {"Metadata": 37}


def test_corpus_falco_fixtures(corpus_dir: Path) -> None:
    folder = corpus_dir / "falco-trace-files-k8s_audit"
    paths = sorted(folder.glob("*.json"))
    raw = [e for e in _raw_events(paths) if e.get("kind") != 0]
    data = _files_report(paths)
    assert data.summary["events"] == len(raw) == 51
    assert data.summary["skipped_records"] == 1  # fal_01_003.json: {"kind": 0}
    assert data.summary["anonymous"] == 1
    sessions = sorted((r["kind"], r["name"]) for r in data.exec_sessions)
    expected = sorted((e["objectRef"]["subresource"], e["objectRef"]["name"]) for e in raw
                      if (e.get("objectRef") or {}).get("subresource") in ("exec", "attach"))
    assert sessions == expected and len(sessions) == 2
    rbac_writes = {e["auditID"] for e in raw if (e.get("objectRef") or {}).get("resource") in report.RBAC_RESOURCES
                   and e.get("verb") in report.WRITE_VERBS}
    assert data.summary["rbac_changes"] == len(rbac_writes)
    privileged = [r for r in data.workload_changes if "privileged" in r["detail"].split(", ")]
    expected_ids = {e["auditID"] for e in raw if (e.get("objectRef") or {}).get("resource") == "pods"
                    and any((c.get("securityContext") or {}).get("privileged")
                            for c in ((e.get("requestObject") or {}).get("spec") or {}).get("containers", []))}
    # three privileged fixtures, two of which share one auditID (one request)
    assert len(privileged) == len(expected_ids) == 2


def test_corpus_crowdsec_exec_command_is_decoded(corpus_dir: Path) -> None:
    data = _files_report([corpus_dir / "crowdsec-hub-k8s-audit-tests" / "k8s-audit-pod-exec-file.log"])
    [session] = data.exec_sessions
    assert (session["user"], session["namespace"], session["name"], session["command"], session["container"]) == (
        "minikube-user", "foo", "test-pod-1", "/bin/bash", "centos")


def test_corpus_whole_report_renders(corpus_dir: Path, tmp_path: Path) -> None:
    paths = [p for p in sorted(corpus_dir.glob("*/*"))
             if p.suffix in (".json", ".log", ".jsonl") and not p.name.endswith("expected.json")]
    data = _files_report(paths)
    assert data.summary["events"] > 300 and data.summary["denied"] > 11
    out = report.render(data, "html")
    assert_self_contained(out)
    assert json.loads(report.render(data, "json"))["summary"] == data.summary


# --------------------------------------------------------------------------- rendering


def assert_self_contained(page: str) -> None:
    assert not re.search(r"<script\b", page, re.I), "no scripts"
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I), "no external links"
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page, re.I), "no external CSS resources"
    assert not re.search(r"@import|<link\b|<img\b|<iframe\b|@font-face", page, re.I)


def _sample() -> report.ReportData:
    docs = [doc(f"2026-01-0{d}T0{h}:00:00Z", u, v, r, code=c, audit_id=f"{d}{h}{u}", sub=s,
                kaudit={"exec": {"command": "<b>id</b>"}} if s else None)
            for d in (1, 2, 3) for h in (1, 5) for (u, v, r, c, s) in
            (("alice", "get", "pods", 200, None), ("bob", "list", "secrets", 403, None), ("carol", "create", "pods", 101, "exec"))]
    return report.compute(docs, [alert("r1", "Exec <into> pod", "high", "2026-01-02T01:00:00Z")], now=NOW)


def test_html_is_self_contained_escaped_and_has_every_section() -> None:
    page = report.render(_sample(), "html")
    assert_self_contained(page)
    for section in ("summary", "timeline", "actors", "denied", "alerts", "changes", "exec", "coverage"):
        assert f'<section id="{section}">' in page
    assert page.count("<svg") >= 6
    assert "&lt;b&gt;id&lt;/b&gt;" in page and "<b>id</b>" not in page  # command text is escaped
    assert "Exec &lt;into&gt; pod" in page


def test_markdown_and_json() -> None:
    data = _sample()
    md = report.render(data, "markdown")
    for heading in ("## Summary", "## Events over time", "## Top actors", "## Denied requests", "## Alerts",
                    "## RBAC and workload changes", "## exec, attach and port-forward sessions", "## Audit coverage"):
        assert heading in md
    assert "| Denied (403 / forbid) | 6 |" in md
    parsed = json.loads(report.render(data, "json"))
    assert parsed["summary"]["denied"] == 6 and parsed["alerts_by_rule"][0]["count"] == 1
    with pytest.raises(ValueError):
        report.render(data, "pdf")  # type: ignore[arg-type]


def test_svg_helpers_handle_empty_input() -> None:
    assert "No events" in report.svg_timeline([], "day")
    assert "None in this period" in report.svg_bars([])


def test_cli_report_writes_html(corpus_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("kaudit_elk.events.normalize")
    from typer.testing import CliRunner

    out = tmp_path / "r.html"
    result = CliRunner().invoke(_app(), ["report", str(corpus_dir / "audit2rbac" / "demo.log"), "--out", str(out),
                                         "--from", "2017-09-11", "--to", "2017-09-12", "--no-scan"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert_self_contained(page)
    assert "2017-09-11T00:00:00Z" in page
    assert out.stat().st_mode & 0o777 == 0o600  # the report names users, addresses and secrets


def test_cli_report_bad_time_is_a_usage_error(corpus_dir: Path) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(_app(), ["report", str(corpus_dir / "audit2rbac" / "demo.log"), "--from", "yesterday"])
    assert result.exit_code == 2 and "--from: expected ISO8601" in result.output and "got 'yesterday'" in result.output


def _app() -> Any:
    import typer

    from kaudit_elk.cli import views as cli_dashboards

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    cli_dashboards.register(app)
    return app


def test_parse_when() -> None:
    from kaudit_elk.cli.views import parse_when

    now = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
    assert parse_when("now-7d", now) == datetime(2026, 1, 3, 12, tzinfo=timezone.utc)
    assert parse_when("2026-01-02", now) == datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert parse_when("2026-01-02T03:04:05.123456789Z", now) == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


def test_alerts_outside_the_range_are_left_out() -> None:
    alerts = [alert("r1", "A", "high", "2026-01-01T00:00:00Z"), alert("r1", "A", "high", "2026-01-05T00:00:00Z")]
    data = report.compute([], alerts, start=datetime(2026, 1, 4, tzinfo=timezone.utc), now=NOW)
    assert data.summary["alerts"] == 1 and data.alerts_latest[0]["time"] == "2026-01-05T00:00:00Z"


def test_rule_coverage_lists_uncovered_rules_first() -> None:
    rules = [("a", "Needs metadata", "Metadata"), ("b", "Needs bodies", "RequestResponse")]
    page = report.render(report.compute([doc("2026-01-01T00:00:00Z", level="Metadata")], rules=rules, now=NOW), "html")
    assert "1 of 2 rules get the audit level they need" in page
    uncovered = page[page.index("Rule not covered"):page.index("<details>")]
    assert "Needs bodies" in uncovered and "Needs metadata" not in uncovered


# ---- issue 9: a report says what it covers, its timeline is proportional, numbers are readable --
def test_timeline_stays_proportional_to_time_over_years() -> None:
    """Sparse events over eleven years: every column is the same span of time, gaps included."""
    stamps = ["2015-01-05T00:00:00Z", "2015-01-12T00:00:00Z", "2023-03-06T00:00:00Z", "2026-01-05T00:00:00Z"]
    data = report.compute([doc(ts, audit_id=f"p{i}") for i, ts in enumerate(stamps)], now=NOW)
    starts = [datetime.fromisoformat(r["start"].replace("Z", "+00:00")) for r in data.timeline]
    spans = {b - a for a, b in zip(starts, starts[1:])}
    assert len(spans) == 1, "columns of unequal time spans are not proportional to time"
    assert len(data.timeline) <= report.MAX_COLUMNS
    assert sum(r["success"] for r in data.timeline) == 4
    span = spans.pop()
    first = next(i for i, r in enumerate(data.timeline) if r["success"])
    last = max(i for i, r in enumerate(data.timeline) if r["success"])
    assert (last - first) * span >= datetime(2026, 1, 5, tzinfo=timezone.utc) - datetime(2015, 1, 12, tzinfo=timezone.utc)


def test_report_numbers_have_thousands_separators() -> None:
    docs = [doc("2026-01-05T10:00:00Z", audit_id=f"n{i}") for i in range(1234)]
    data = report.compute(docs, now=NOW)
    assert "| Audit events | 1,234 |" in report.render(data, "markdown")
    assert ">1,234<" in report.render(data, "html")
    assert json.loads(report.render(data, "json"))["summary"]["events"] == 1234  # data stays numbers


def test_coverage_note_states_what_a_sampled_report_covers() -> None:
    docs = [doc(f"2026-01-05T10:00:{s:02d}Z", audit_id=f"c{s}") for s in range(30, 40)]
    note = report.coverage_note(10, 123456, docs)
    assert note is not None and "newest 10 of the 123,456 events" in note and "2026-01-05T10:00:30Z" in note
    assert report.coverage_note(10, 10, docs) is None
    data = report.compute(docs, notes=[note], now=NOW)
    assert note in data.notes and note in report.render(data, "html")
