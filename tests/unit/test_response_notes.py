"""Every rule carries triage and response notes; they reach rules show and alerts."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from kaudit_elk.base.content import content_dir
from kaudit_elk.cli.main import _register, app
from kaudit_elk.detect.scan import sample_path
from kaudit_elk.detect.scan import scan
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.rules.response import load_notes, shipped_notes

PACK = load_rules([default_pack_dir()])


def test_every_rule_has_notes_and_every_note_a_rule() -> None:
    notes = shipped_notes()
    ids = {r.id for r in PACK.rules}
    assert ids - set(notes) == set(), "rules without response notes"
    assert set(notes) - ids == set(), "notes for rules that do not exist"


def test_every_note_opens_a_saved_search_that_exists() -> None:
    searches = {s["id"] for s in yaml.safe_load((content_dir("dashboards") / "searches.yaml").read_text())["searches"]}
    for rid, note in shipped_notes().items():
        assert note["search"] in searches, (rid, note["search"])


def test_malformed_notes_name_the_file_and_rule(tmp_path) -> None:
    bad = tmp_path / "response.yml"
    bad.write_text("abc:\n  triage: []\n  search: x\n  contain: [y]\n")
    import pytest

    from kaudit_elk.base.errors import ContentError

    with pytest.raises(ContentError, match=r"response.yml: abc: triage"):
        load_notes(bad)


def test_alerts_carry_the_notes_and_rules_show_prints_them() -> None:
    alerts = list(scan([str(sample_path())], PACK, min_severity="informational"))
    assert alerts
    for a in alerts:
        assert a["rule"]["response"] == shipped_notes()[a["rule"]["id"]]
    _register()
    out = CliRunner().invoke(app, ["rules", "show", "555c54ef-df7a-559a-b4e2-524c177f8726"]).stdout
    assert "# Saved search: kaudit-search-exec-sessions" in out and "# Contain:" in out


def test_the_report_lists_the_response_of_each_alerting_rule(tmp_path) -> None:
    _register()
    out = tmp_path / "r.md"
    res = CliRunner().invoke(app, ["report", str(sample_path()), "--format", "markdown", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    section = text.split("### Response", 1)[1]
    note = shipped_notes()["942dcfc6-ef18-5b6a-9701-15ee872ff33a"]  # Binding Granting cluster-admin ...
    assert note["contain"][0] in section and note["search"] in section
