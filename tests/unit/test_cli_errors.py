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
