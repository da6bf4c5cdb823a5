"""The vocabulary is defined once (kaudit_elk/base/vocab.py): no module spells a set of its own, and the
places that must list the names literally (the CLI's choices) list the same ones."""

from __future__ import annotations

import re
from pathlib import Path

from kaudit_elk.base import vocab
from kaudit_elk.cli.rules import Severity
from kaudit_elk.rules.alerts import severity_rank

PACKAGE = Path(vocab.__file__).resolve().parents[1]
#: A literal holding three or more names of one vocabulary, e.g. ("Metadata", "Request", ...).
_SETS = {name: [v for v in getattr(vocab, name) if isinstance(v, str)] for name in
         ("SEVERITIES", "AUDIT_LEVELS", "STAGES")}


def _literals(text: str, words: list[str]) -> list[str]:
    pattern = re.compile(r"[(\[{]\s*(?:\"(?:%s)\"\s*,\s*){2,}" % "|".join(map(re.escape, words)))
    return pattern.findall(text)


def test_no_module_defines_its_own_vocabulary() -> None:
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "vocab.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name, words in _SETS.items():
            if _literals(text, words):
                found.append(f"{path.relative_to(PACKAGE.parent)}: a literal of {name} (import it from kaudit_elk.base.vocab)")
    assert not found, "\n".join(found)


def test_the_cli_severity_choices_are_the_severities_in_rank_order() -> None:
    assert tuple(s.value for s in Severity) == vocab.SEVERITIES
    assert [severity_rank(s) for s in vocab.SEVERITIES] == list(range(len(vocab.SEVERITIES)))


def test_levels_and_stages_are_ordered_subsets() -> None:
    assert vocab.EVENT_AUDIT_LEVELS == vocab.AUDIT_LEVELS[1:] and vocab.AUDIT_LEVELS[0] == "None"
    assert set(vocab.KEPT_STAGES) <= set(vocab.STAGES) and vocab.FINAL_STAGES <= set(vocab.KEPT_STAGES)
    assert "RequestReceived" not in vocab.KEPT_STAGES
