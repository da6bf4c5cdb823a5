"""Shared fixtures: where the reference corpus lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real audit events (env KAUDIT_CORPUS, default ../shared/corpus)."""
    path = Path(os.environ.get("KAUDIT_CORPUS", REPO.parent / "shared" / "corpus"))
    if not path.is_dir():
        if os.environ.get("KAUDIT_REQUIRE_ENGINES") == "1":
            pytest.fail(f"corpus not found at {path} (set KAUDIT_CORPUS)")
        pytest.skip(f"corpus not found at {path} (set KAUDIT_CORPUS)")
    return path


def corpus_event_files(corpus: Path) -> list[str]:
    """Every file of the corpus that holds audit events (not rules, field docs or expected outputs)."""
    files = []
    for path in sorted(corpus.rglob("*")):
        if not path.is_file() or path.suffix in (".yml", ".yaml", ".md", ".tsv", ".toml"):
            continue
        if path.name.endswith("-expected.json"):
            continue
        files.append(str(path))
    return files


@pytest.fixture(scope="session")
def corpus_files(corpus_dir: Path) -> list[str]:
    return corpus_event_files(corpus_dir)
