"""Error paths of every command: exit codes, clear messages, and no secret in any output (issue 9)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def kaudit(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("KAUDIT_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "kaudit_elk", *args], capture_output=True, text=True,
                          timeout=timeout, env=full)


@pytest.mark.parametrize("namespace", ["Typo", "a-b", "has space", "x" * 101, "_x", "a*", ""])
def test_invalid_namespace_is_a_usage_error_before_any_request(namespace: str, tmp_path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("")
    for args in (["ingest", str(log)], ["bootstrap"], ["retention"], ["detect"]):
        out = kaudit(*args, "--url", "http://127.0.0.1:9", "--namespace", namespace)
        assert out.returncode == 2, (args, out.stderr)
        assert "namespace" in out.stderr and "invalid" in out.stderr


def test_invalid_namespace_from_environment_is_named(tmp_path) -> None:
    out = kaudit("bootstrap", "--url", "http://127.0.0.1:9", env={"KAUDIT_NAMESPACE": "Prod-1"})
    assert out.returncode == 2 and "'Prod-1'" in out.stderr


# ---- secrets never in output (issue 9, cases 8 and 9) ----------------------------------------
SECRET = "Hunter2-Sup3r"
DOWN = f"https://bob:{SECRET}@127.0.0.1:9"  # nothing listens on port 9: every command fails to connect


def _no_secret(out: subprocess.CompletedProcess) -> None:
    assert SECRET not in out.stdout + out.stderr, out.stderr
    assert "Hunter2" not in out.stdout + out.stderr


@pytest.mark.parametrize("args", [
    ["version"], ["bootstrap"], ["retention"], ["detect"], ["report", "--from", "now-1d"],
])
def test_credentials_in_the_url_are_used_and_never_shown(args: list[str], tmp_path) -> None:
    out = kaudit(*args, "--url", DOWN)
    assert out.returncode == 3, out.stderr
    assert "cannot connect" in out.stderr and "127.0.0.1:9" in out.stderr
    _no_secret(out)


def test_ingest_error_paths_never_show_the_password(tmp_path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("")
    out = kaudit("ingest", str(log), "--url", DOWN)
    assert out.returncode == 3
    _no_secret(out)
    out = kaudit("ingest", str(log), "--url", "http://127.0.0.1:9", "-u", "bob", "--password", SECRET)
    assert out.returncode == 3
    _no_secret(out)
    both = kaudit("ingest", str(log), "--url", DOWN, "-u", "alice")
    assert both.returncode == 2 and "either in the URL" in both.stderr
    _no_secret(both)


def test_dashboards_import_url_credentials_are_not_echoed(tmp_path) -> None:
    out = kaudit("dashboards", "import", "--kibana-url", DOWN)
    assert out.returncode == 3 and "cannot connect" in out.stderr
    _no_secret(out)
    bad = kaudit("dashboards", "import", "--kibana-url", f"bob:{SECRET}@kibana:5601")
    assert bad.returncode == 2
    _no_secret(bad)


def test_url_without_scheme_is_a_usage_error(tmp_path) -> None:
    for args in (["version"], ["bootstrap"], ["detect"]):
        out = kaudit(*args, "--url", "127.0.0.1:9200")
        assert out.returncode == 2, (args, out.stderr)
        assert "must start with http:// or https://" in out.stderr
    out = kaudit("version", "--url", "http://127.0.0.1:notaport")
    assert out.returncode == 2 and "invalid URL" in out.stderr


def test_yaml_error_in_the_config_file_never_quotes_the_password_line(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"url: http://127.0.0.1:9\nusername: bob\npassword: {SECRET}: [oops\n")
    config.chmod(0o600)
    out = kaudit("version", "--config", str(config))
    assert out.returncode == 2 and "not valid YAML" in out.stderr and "line 3" in out.stderr
    _no_secret(out)


def test_unknown_config_value_error_does_not_show_secrets(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"url: http://127.0.0.1:9\npassword: {SECRET}\nverify_certs: maybe\n")
    config.chmod(0o600)
    out = kaudit("version", "--config", str(config))
    assert out.returncode == 2 and "verify_certs" in out.stderr
    _no_secret(out)


def test_config_file_with_a_password_readable_by_others_warns(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"url: http://127.0.0.1:9\nusername: bob\npassword: {SECRET}\n")
    config.chmod(0o644)
    out = kaudit("version", "--config", str(config))
    assert out.returncode == 3
    assert "other users can read it" in out.stderr and f"chmod 600 {config}" in out.stderr
    _no_secret(out)
    config.chmod(0o600)
    assert "other users" not in kaudit("version", "--config", str(config)).stderr


def test_no_verify_certs_warns_once_on_stderr() -> None:
    out = kaudit("version", "--url", "https://127.0.0.1:9", "--no-verify-certs", "-q")
    assert out.returncode == 3
    assert out.stderr.count("TLS certificate verification is off") == 1
    assert "verification is off" not in kaudit("version", "--url", "https://127.0.0.1:9").stderr


def test_webhook_failure_message_redacts_userinfo_and_query_token() -> None:
    from kaudit_elk.detect.outputs import _post
    from kaudit_elk.detect.scheduled import OutputError

    with pytest.raises(OutputError) as caught:
        _post(f"http://hook:{SECRET}@127.0.0.1:9/alerts?token={SECRET}", {"a": 1}, {}, retries=0, timeout=2)
    text = str(caught.value)
    assert "127.0.0.1:9/alerts?token=***" in text and SECRET not in text


def test_redact_masks_every_form_a_secret_takes() -> None:
    import base64

    from kaudit_elk.base.redact import redact, register

    register("Zq9-registered-secret")
    basic = base64.b64encode(b"svc:Zq9-registered-secret").decode()
    text = redact(f"url https://u:p4ss@h/x?token=abc&sig=def password: p4ss2 \"api_key\": \"k3y\" "
                  f"Authorization: Bearer tok3n raw Zq9-registered-secret b64 {basic}")
    for leaked in ("p4ss@", "token=abc", "sig=def", "p4ss2", "k3y", "tok3n", "Zq9-registered-secret", basic):
        assert leaked not in text, leaked
    assert "https://u:***@h/x?token=***&sig=***" in text


# ---- exit codes (issue 9, case 10) -------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [("--workers", "0"), ("--batch-mb", "0"), ("--batch-mb", "-1"),
                                         ("--retry-for", "-5")])
def test_ingest_refuses_nonsense_sizes(flag: str, value: str, tmp_path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("")
    out = kaudit("ingest", str(log), "--url", "http://127.0.0.1:9", flag, value)
    assert out.returncode == 2 and flag in out.stderr, out.stderr


def test_serve_busy_or_invalid_port_is_a_clear_usage_error(tmp_path) -> None:
    import socket

    common = ("serve", "--plain-http", "--insecure", "--no-auth", "--url", "http://127.0.0.1:9",
              "--spool-dir", str(tmp_path / "spool"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = kaudit(*common, "--listen", f"127.0.0.1:{port}")
    assert out.returncode == 2 and "address already in use" in out.stderr and "unexpected" not in out.stderr
    out = kaudit(*common, "--listen", "127.0.0.1:99999")
    assert out.returncode == 2 and "port from 0 to 65535" in out.stderr


# ---- newcomer friction (issue 9, case 11) ------------------------------------------------------
@pytest.mark.parametrize("command", [[], ["ingest"], ["bootstrap"], ["detect"], ["scan"], ["report"],
                                     ["rules", "list"], ["dashboards", "import"]])
def test_help_shows_no_python_type_placeholders(command: list[str]) -> None:
    out = kaudit(*command, "--help", env={"COLUMNS": "200"})
    assert out.returncode == 0
    assert "<bool>" not in out.stdout and "<str>" not in out.stdout and "<float>" not in out.stdout
    assert "<list[" not in out.stdout and "<path>" not in out.stdout
    if command == ["ingest"]:
        assert "--follow" in out.stdout and "--batch-mb" in out.stdout and "NUMBER" in out.stdout


@pytest.mark.parametrize("args, option", [
    (["verify", "--since", "yesterday"], "--since"),
    (["verify", "--until", "tomorrow"], "--until"),
    (["doctor", "--verify-since", "1h"], "--verify-since"),
    (["policy", "check", "POLICY", "--from-cluster", "--since", "last-week"], "--since"),
])
def test_a_bad_time_is_a_usage_error_naming_the_option_before_any_request(args: list[str], option: str,
                                                                           tmp_path) -> None:
    """Not the engine's HTTP 400 (exit 3) after a request: nothing listens on port 9, so exit 2 proves no request."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n")
    out = kaudit(*[str(policy) if a == "POLICY" else a for a in args], "--url", "http://127.0.0.1:9")
    assert out.returncode == 2, out.stderr
    assert f"error: {option}: expected ISO8601" in out.stderr and "unexpected" not in out.stderr


@pytest.mark.parametrize("body, key", [("exceptions: 5\n", "exceptions"), ("disable: some-rule\n", "disable"),
                                       ("severity: [a, b]\n", "severity"), ("placeholders: x\n", "placeholders")])
def test_an_exceptions_file_of_the_wrong_shape_names_the_file_and_key(body: str, key: str, tmp_path) -> None:
    tuning = tmp_path / "tuning.yml"
    tuning.write_text(body)
    out = kaudit("scan", "--exceptions", str(tuning))
    assert out.returncode == 2, out.stderr
    assert f"{tuning}: '{key}' must be" in out.stderr and "unexpected" not in out.stderr


def test_archive_sub_commands_take_the_connection_options_after_them_too() -> None:
    for args in (["archive", "list", "--url", "http://127.0.0.1:9"],
                 ["archive", "verify", "--url", "http://127.0.0.1:9", "--repository", "r", "-o", "json"],
                 ["archive", "--url", "http://127.0.0.1:9", "list"]):
        out = kaudit(*args)
        assert out.returncode == 3 and "127.0.0.1:9: cannot connect" in out.stderr, (args, out.stderr)


def test_dry_run_diff_ignores_type_only_changes() -> None:
    from kaudit_elk.cluster.bootstrap import Observed, Step, diff
    from kaudit_elk.cluster.templates import DesiredObject

    desired = DesiredObject("index_template", "t", "/_index_template/t",
                            {"template": {"settings": {"index.number_of_shards": 32, "hidden": True}}, "priority": 250}, "d")
    same = Observed({"template": {"settings": {"index.number_of_shards": "32", "hidden": "true"}}, "priority": 250})
    assert diff(Step("update", desired, same)) == ""
    changed = Observed({"template": {"settings": {"index.number_of_shards": "16", "hidden": "true"}}, "priority": 250})
    text = diff(Step("update", desired, changed))
    assert '-      "index.number_of_shards": "16"' in text and '+      "index.number_of_shards": 32' in text
    assert "hidden" not in "".join(ln for ln in text.splitlines() if ln.startswith(("-", "+")) and not ln.startswith(("---", "+++")))


def test_rules_validate_reports_each_problem_once_with_its_line(tmp_path) -> None:
    (tmp_path / "bad.yml").write_text(
        "title: Broken rule\nid: 3c1f6a4e-0000-4000-8000-000000000001\nstatus: test\nlogsource:\n"
        "  product: kubernetes\n  service: audit\ndetection:\n  selection:\n    verb|badmod: create\n"
        "  condition: selection\nlevel: hgh\n")
    out = kaudit("rules", "validate", str(tmp_path))
    assert out.returncode == 2
    lines = out.stdout.splitlines()
    assert len(lines) == 2, lines
    assert any(line.startswith(f"{tmp_path / 'bad.yml'}:11:") and "'hgh'" in line for line in lines)
    assert any(line.startswith(f"{tmp_path / 'bad.yml'}:9:") and "badmod" in line for line in lines)


def test_rules_show_accepts_the_title_rules_list_shows() -> None:
    import json as _json

    rows = _json.loads(kaudit("rules", "list", "--format", "json").stdout)
    title = rows[0]["title"]
    out = kaudit("rules", "show", title.upper())
    assert out.returncode == 0 and f"id: {rows[0]['id']}" in out.stdout
    assert kaudit("rules", "show", "no such rule at all").returncode == 2


def test_scan_table_has_a_header_row() -> None:
    out = kaudit("scan", "-q")
    first = out.stdout.splitlines()[0]
    assert first.startswith("TIME (UTC)") and "SEVERITY" in first and "RULE" in first


def test_report_from_files_names_each_unreadable_line(tmp_path) -> None:
    """Like scan and ingest, the report names file and line of what it could not read (its notes only counted)."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "detections" / "samples" / "sample-audit.log"
    log = tmp_path / "audit.log"
    good = sample.read_text().splitlines()[:3]
    log.write_text("\n".join([good[0], '{"kind": "Event", "auditID": ', good[1], "garbage", good[2]]) + "\n")
    out = kaudit("report", str(log), "--format", "json", "--no-scan")
    assert out.returncode == 0, out.stderr
    assert f"{log}:2: invalid JSON" in out.stderr and f"{log}:4: invalid JSON" in out.stderr
    assert out.stderr.count("warning:") == 2
    import json

    assert json.loads(out.stdout)["summary"]["events"] == 3


def test_scan_table_shows_a_cut_name_as_cut() -> None:
    """Long rule names and identities are cut with "…" (a cut service-account name must not pass for a whole one)."""
    import json

    rows = kaudit("scan", "-q").stdout.splitlines()[1:]
    alerts = [json.loads(line) for line in kaudit("scan", "-q", "--format", "ndjson").stdout.splitlines()]
    assert len(rows) == len(alerts) > 10
    cut = 0
    for row, alert in zip(rows, alerts):
        for value, width in ((alert["rule"]["name"], 60), ((alert.get("user") or {}).get("name") or "", 48)):
            shown = value if len(value) <= width else value[: width - 1] + "…"
            cut += shown != value
            assert f"  {shown}" in row, (value, row)
    assert cut > 0  # the shipped sample has names longer than their columns


@pytest.mark.parametrize("option, url, says", [("--webhook", "ftp://hook.example/x", "must start with http"),
                                              ("--alertmanager", "http://am:99999", "invalid URL"),
                                              ("--webhook", "https://", "no host")])
def test_a_bad_output_url_is_a_usage_error_before_the_run(option: str, url: str, says: str) -> None:
    """Not an exit 1 once the first alert is to be sent: nothing listens on port 9, so exit 2 proves no request."""
    out = kaudit("detect", "--url", "http://127.0.0.1:9", option, url)
    assert out.returncode == 2, out.stderr
    assert f"error: {option}: " in out.stderr and says in out.stderr
