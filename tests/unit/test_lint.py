"""ruff and mypy (scripts/lint, which scripts/test runs before pytest) pass on the tree: a unit run shows a
lint failure before CI does. The checks are the test extra's (pip install -e ".[test]")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' (scripts/test runs it before pytest)")
    return str(path)


def test_ruff_finds_nothing() -> None:
    out = subprocess.run([_tool("ruff"), "check", "--quiet", "kaudit_elk", "tests", "bench"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_mypy_finds_nothing() -> None:
    out = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
