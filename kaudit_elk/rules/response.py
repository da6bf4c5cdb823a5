"""Triage and response notes for the rules (``detections/response.yml``, keyed by rule id).

Each note: ``triage`` (what to check first), ``search`` (the saved search to open, from
``dashboards/searches.yaml``) and ``contain`` (how to contain). Shown by ``rules show``, carried in every
alert as ``rule.response``, listed in the report.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from kaudit_elk.base.errors import ContentError


def default_notes_path() -> Path:
    from kaudit_elk.base.content import content_dir

    return content_dir("detections") / "response.yml"


def load_notes(path: str | Path) -> dict[str, dict[str, Any]]:
    """Notes by rule id; a malformed entry is a ContentError naming the file and the rule id."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ContentError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ContentError(f"{p}: expected a mapping of rule id -> notes")
    out: dict[str, dict[str, Any]] = {}
    for rid, note in data.items():
        if not isinstance(note, dict):
            raise ContentError(f"{p}: {rid}: notes must be a mapping with triage, search, contain")
        triage, contain, search = note.get("triage"), note.get("contain"), note.get("search")
        if not (isinstance(triage, list) and triage and all(isinstance(x, str) for x in triage)):
            raise ContentError(f"{p}: {rid}: triage must be a non-empty list of strings")
        if not (isinstance(contain, list) and contain and all(isinstance(x, str) for x in contain)):
            raise ContentError(f"{p}: {rid}: contain must be a non-empty list of strings")
        if not isinstance(search, str) or not search:
            raise ContentError(f"{p}: {rid}: search must name a saved search")
        out[str(rid)] = {"triage": list(triage), "search": search, "contain": list(contain)}
    return out


@lru_cache(maxsize=1)
def shipped_notes() -> dict[str, dict[str, Any]]:
    """The shipped notes ({} when the file is not there, e.g. a trimmed install)."""
    path = default_notes_path()
    return load_notes(path) if path.exists() else {}


def notes_for(rule_id: str) -> dict[str, Any] | None:
    return shipped_notes().get(rule_id)


def render_text(note: dict[str, Any]) -> str:
    """The notes as plain text for people (``rules show``)."""
    lines = ["Triage:"] + [f"  - {x}" for x in note["triage"]]
    lines += [f"Saved search: {note['search']}", "Contain:"] + [f"  - {x}" for x in note["contain"]]
    return "\n".join(lines)
