"""Loading and validating rule folders: SigmaHQ rules unchanged, all problems of all files, tuning."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaudit_elk.base.errors import ContentError
from kaudit_elk.rules.loader import load_rules, load_tuning, validate


GOOD = {
    "title": "pods exec", "id": "0a9b4b6e-5d0c-4e0c-8b7a-000000000001", "level": "medium",
    "logsource": {"product": "kubernetes", "service": "audit"}, "tags": ["attack.t1609"],
    "detection": {"s": {"objectRef.subresource": "exec"}, "condition": "s"},
}


def test_sigmahq_kubernetes_rules_load_unchanged_and_run(corpus_dir: Path):
    CORPUS_SIGMA = corpus_dir / "sigmahq-kubernetes-audit-rules"
    files = sorted(CORPUS_SIGMA.glob("*.yml"))
    assert validate([CORPUS_SIGMA]) == []
    pack = load_rules([CORPUS_SIGMA])
    assert len(pack.rules) == len(files) == 16
    exec_rule = next(r for r in pack.rules if "exec" in r.title.lower())
    assert exec_rule.matches({"verb": "create", "objectRef": {"resource": "pods", "subresource": "exec"}})
    # SigmaHQ's enumeration rule compares responseStatus.code to 'ALLOW': loads fine, can never match
    enum = next(r for r in pack.rules if "Enumeration" in r.title)
    assert not enum.matches({"responseStatus": {"code": 200}, "userAgent": "trufflehog", "requestURI": "/api/v1/secrets"})


def test_validate_reports_every_problem_with_file_names(tmp_path):
    (tmp_path / "ok.yml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "bad_yaml.yml").write_text("title: x\ndetection: [unclosed\n")
    (tmp_path / "no_condition.yml").write_text(yaml.safe_dump({**GOOD, "id": "0a9b4b6e-5d0c-4e0c-8b7a-000000000002",
                                                               "detection": {"s": {"verb": "get"}}}))
    (tmp_path / "zz_dupe.yml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "wrong_logsource.yml").write_text(yaml.safe_dump({**GOOD, "id": "0a9b4b6e-5d0c-4e0c-8b7a-000000000003",
                                                                  "logsource": {"product": "windows"}}))
    (tmp_path / "bad_kaudit.yml").write_text(yaml.safe_dump({**GOOD, "id": "0a9b4b6e-5d0c-4e0c-8b7a-000000000004",
                                                             "kaudit": {"audit_level": "Everything", "colour": 1}}))
    (tmp_path / "bad_regex.yml").write_text(yaml.safe_dump({**GOOD, "id": "0a9b4b6e-5d0c-4e0c-8b7a-000000000005",
                                                            "detection": {"s": {"verb|re": "(unclosed"}, "condition": "s"}}))
    (tmp_path / "bad_ref.yml").write_text(yaml.safe_dump({
        "title": "c", "id": "0a9b4b6e-5d0c-4e0c-8b7a-000000000006", "level": "high",
        "correlation": {"type": "event_count", "rules": ["does_not_exist"], "group-by": ["user.username"],
                        "timespan": "5m", "condition": {"gte": 2}}}))
    issues = validate([tmp_path])
    by_file = {Path(i.path).name for i in issues}
    assert {"bad_yaml.yml", "no_condition.yml", "zz_dupe.yml", "wrong_logsource.yml", "bad_kaudit.yml",
            "bad_regex.yml", "bad_ref.yml"} <= by_file
    assert "ok.yml" not in by_file
    assert any("duplicate rule id" in i.message for i in issues)
    assert any("Everything" in i.message for i in issues) and any("colour" in i.message for i in issues)
    with pytest.raises(ContentError) as err:
        load_rules([tmp_path])
    assert "bad_yaml.yml" in str(err.value) and "no_condition.yml" in str(err.value)


def test_strict_policy_requires_pack_metadata(tmp_path):
    (tmp_path / "r.yml").write_text(yaml.safe_dump({**GOOD, "tags": []}))
    messages = " ".join(i.message for i in validate([tmp_path], strict=True))
    for needle in ("ATT&CK", "audit_level", "catalogue", "tests"):
        assert needle in messages


def test_disable_severity_override_and_exceptions(tmp_path):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "r.yml").write_text(yaml.safe_dump(GOOD))
    (rules_dir / "r2.yml").write_text(yaml.safe_dump({**GOOD, "id": "0a9b4b6e-5d0c-4e0c-8b7a-000000000009", "title": "other"}))
    tuning = tmp_path / "tuning.yml"
    tuning.write_text(yaml.safe_dump({"exceptions": [
        {"rule": GOOD["id"], "match": {"user.username|startswith": "system:serviceaccount:ops:"}},
        {"rule": GOOD["id"], "detection": {"a": {"objectRef.namespace": "sandbox"}, "condition": "a"}},
    ]}))
    pack = load_rules([rules_dir], disabled=["0a9b4b6e-5d0c-4e0c-8b7a-000000000009"],
                      severity={GOOD["id"]: "critical"}, tuning=load_tuning(tuning))
    assert [r.title for r in pack.rules] == ["pods exec"]
    rule = pack.rules[0]
    assert rule.level == "critical"
    base = {"objectRef": {"subresource": "exec", "namespace": "default"}, "user": {"username": "alice"}}
    assert rule.matches(base)
    assert not rule.matches({**base, "user": {"username": "system:serviceaccount:ops:runner"}})
    assert not rule.matches({**base, "objectRef": {"subresource": "exec", "namespace": "sandbox"}})
    with pytest.raises(ContentError, match="unknown rule id"):
        load_rules([rules_dir], disabled=["no-such-rule"])
    with pytest.raises(ContentError, match="not one of"):
        load_rules([rules_dir], severity={GOOD["id"]: "urgent"})


def test_sigma_filter_files_apply_to_rules(tmp_path):
    (tmp_path / "r.yml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "f.yml").write_text(yaml.safe_dump({
        "title": "ignore ops namespace", "id": "0a9b4b6e-5d0c-4e0c-8b7a-0000000000f1",
        "logsource": {"product": "kubernetes", "service": "audit"},
        "filter": {"rules": [GOOD["id"]], "selection": {"objectRef.namespace": "ops"}, "condition": "not selection"}}))
    pack = load_rules([tmp_path])
    rule = pack.rules[0]
    assert rule.matches({"objectRef": {"subresource": "exec", "namespace": "default"}})
    assert not rule.matches({"objectRef": {"subresource": "exec", "namespace": "ops"}})
