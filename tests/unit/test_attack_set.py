"""The labelled attack set (bench/corpus/attacks.py): size, labels naming real rules, each step caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.corpus.attacks import CAMPAIGNS, attack_events
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.rules.runner import Runner


@pytest.fixture(scope="module")
def attack_set():
    return attack_events()


@pytest.fixture(scope="module")
def pack():
    return load_rules([default_pack_dir()])


def test_at_least_30_steps_in_several_multi_step_campaigns(attack_set):
    events, steps = attack_set
    assert len(steps) >= 30
    per = {c.name: sum(s.campaign == c.name for s in steps) for c in CAMPAIGNS}
    assert len([n for n in per.values() if n >= 2]) >= 5
    assert all(s.audit_ids and s.rules for s in steps)
    ids = [e["auditID"] for e in events if e["stage"] == "ResponseComplete"]
    assert len(ids) == len(set(ids))
    kinds = {b for s in steps for b in s.baselines}
    assert {"off-hours", "rate-spike", "new-address", "unusual-retrieval"} <= kinds


def test_every_label_names_a_rule_of_the_pack(attack_set, pack):
    slugs = {Path(r.path).stem for r in pack.rules}
    missing = {lab for s in attack_set[1] for lab in s.rules if lab not in slugs}
    assert not missing


def test_each_step_raises_its_labelled_rules_on_the_attack_events_alone(attack_set, pack):
    events, steps = attack_set
    by_slug = {Path(r.path).stem: r.id for r in pack.rules}
    hits: dict[str, set[str]] = {}
    for a in Runner(pack).run(events):
        hits.setdefault(a["rule"]["id"], set()).update(a["kaudit"]["alert"]["audit_ids"])
    missed = [(s.campaign, s.name, lab) for s in steps for lab in s.rules
              if not hits.get(by_slug[lab], set()) & set(s.audit_ids)]
    assert not missed


def test_each_multi_step_campaign_forms_one_incident(attack_set, pack):
    """A SOC gets one incident per campaign: every alert holding a campaign's requests lands in one incident."""
    from kaudit_elk.rules.incidents import Assigner, IncidentOptions, alert_key

    events, steps = attack_set
    alerts = sorted(Runner(pack).run(events), key=alert_key)
    assigner = Assigner(IncidentOptions())
    incident_of = {a["kaudit"]["alert"]["id"]: assigner.assign(a) for a in alerts}
    split = {}
    for c in CAMPAIGNS:
        ids = {i for s in steps if s.campaign == c.name for i in s.audit_ids}
        if sum(s.campaign == c.name for s in steps) < 2:
            continue
        found = {incident_of[a["kaudit"]["alert"]["id"]] for a in alerts if set(a["kaudit"]["alert"]["audit_ids"]) & ids}
        if len(found) != 1:
            split[c.name] = len(found)
    # the static pod of ci-token-escalation is created by the node's own credential (its kubelet mirrors the
    # manifest the attacker dropped): it joins the incident of the pod token issued for a pod on that node
    assert split == {}, f"campaigns split over several incidents: {split}"
