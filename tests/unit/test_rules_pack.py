"""Policies over every rule of the shipped pack (one test per policy, each rule a parameter)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from kaudit_elk.base.vocab import EVENT_AUDIT_LEVELS, SEVERITIES
from kaudit_elk.rules.loader import default_pack_dir, load_rules, rule_files, validate
from kaudit_elk.rules.selftest import CATALOGUE, run_rule_tests

PACK_DIR = default_pack_dir()
PACK = load_rules([PACK_DIR])
RULES = PACK.rules
IDS = [r.id for r in RULES]
README = (PACK_DIR.parent / "README.md").read_text(encoding="utf-8")


def test_pack_is_valid_under_strict_policy():
    assert validate([PACK_DIR], strict=True) == []


def test_one_rule_per_file_and_unique_ids():
    files = rule_files([PACK_DIR])
    assert len(files) == len(RULES)
    dupes = [i for i, n in Counter(IDS).items() if n > 1]
    assert dupes == []
    names = [r.name for r in RULES if r.name]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", RULES, ids=[Path(r.path).stem for r in RULES])
def test_rule_metadata(rule):
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", rule.id)
    assert rule.level in SEVERITIES
    assert rule.attack, "needs at least one ATT&CK technique tag"
    assert rule.audit_level in EVENT_AUDIT_LEVELS
    assert rule.catalogue and set(rule.catalogue) <= set(CATALOGUE)
    assert rule.description and rule.falsepositives
    doc = yaml.safe_load(Path(rule.path).read_text(encoding="utf-8"))
    if rule.kind != "correlation":
        assert doc["logsource"] == {"product": "kubernetes", "service": "audit"}


@pytest.mark.parametrize("rule", RULES, ids=[Path(r.path).stem for r in RULES])
def test_rule_test_events_behave_as_declared(rule):
    assert rule.tests.get("match") and rule.tests.get("no_match")
    result = run_rule_tests(PACK, rule)
    assert result.failures == []
    assert result.passed == len(rule.tests["match"]) + len(rule.tests["no_match"])


@pytest.mark.parametrize("rule", [r for r in RULES if r.kind != "correlation"], ids=lambda r: Path(r.path).stem)
def test_body_fields_need_request_level(rule):
    """A positive selection on a body field only works with Request (requestObject) or RequestResponse level."""
    detection = yaml.safe_load(Path(rule.path).read_text(encoding="utf-8"))["detection"]
    fields: set[str] = set()
    for name, sel in detection.items():
        if name == "condition" or name.startswith("filter"):
            continue  # filters may use body fields as optional fallbacks
        for item in sel if isinstance(sel, list) else [sel]:
            if isinstance(item, dict):
                fields |= set(item)
    if any(f.startswith("responseObject.") for f in fields):
        assert rule.audit_level == "RequestResponse"
    elif any(f.startswith("requestObject.") for f in fields):
        assert rule.audit_level in ("Request", "RequestResponse")


@pytest.mark.parametrize("rule", [r for r in RULES if r.kind != "correlation"], ids=lambda r: Path(r.path).stem)
def test_no_known_rule_set_mistakes(rule):
    detection = Path(rule.path).read_text(encoding="utf-8").split("\ndetection:", 1)[1].split("\nfalsepositives:", 1)[0]
    assert "'ALLOW'" not in detection and "responseStatus.code: allow" not in detection.lower()
    for pseudo in ("\n  hostPath:", "\n    capabilities:", "\n    apiGroup:", "spec.serviceAccountName|exists"):
        assert pseudo not in detection
    assert "allowPrivilegeEscalation" not in detection


def test_every_catalogue_idea_is_covered_and_listed_in_readme():
    covered = {c for r in RULES for c in r.catalogue}
    assert covered == set(CATALOGUE)
    for idea in CATALOGUE:
        assert re.search(rf"^\| {idea} \|", README, re.M), f"{idea} missing from detections/README.md table"


def test_correlations_reference_loaded_base_rules():
    for corr in PACK.correlations:
        refs = [getattr(r.rule, "id", None) for r in corr.sigma.rules]
        assert refs and all(str(x) in IDS for x in refs), corr.title


def test_benign_busy_cluster_is_quiet_at_medium_and_above():
    from kaudit_elk.detect.scan import scan

    benign = PACK_DIR.parent / "samples" / "benign-cluster.log"
    alerts = list(scan([str(benign)], PACK, min_severity="medium"))
    assert [a["rule"]["name"] for a in alerts] == []


def test_sample_log_raises_the_attack_story():
    from kaudit_elk.detect.scan import sample_path, scan

    names = {a["rule"]["name"] for a in scan([str(sample_path())], PACK, min_severity="high")}
    assert {"Privileged Container Created", "Binding Granting cluster-admin or Another Privileged Role",
            "One Client Reading Many Different Secrets", "Exec Command Downloading Over HTTPS"} <= names
