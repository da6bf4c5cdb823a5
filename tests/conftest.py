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
