"""The CLI mirrors a documented Python API: every command has its entry in ``kaudit_elk`` (README "Python API")."""

from __future__ import annotations

import subprocess
import sys

import typer

import kaudit_elk

#: command path -> the API name that does its work (the CLI only parses and prints)
COMMAND_API = {
    "version": "connect",
    "bootstrap": "bootstrap",
    "ingest": "ingest",
    "serve": "serve",
    "retention": "retention",
    "scan": "scan",
    "detect": "detect",
    "report": "report",
    "tune": "tune",
    "rules list": "load_pack",
    "rules show": "load_pack",
    "rules validate": "validate_rules",
    "rules test": "run_pack_tests",
    "dashboards export": "dashboards",
    "dashboards import": "dashboards",
    "dashboards validate": "dashboards",
    "policy generate": "policy_generate",
    "policy check": "policy_check",
    "verify": "verify",
    "archive": "archive",
    "archive list": "list_snapshots",
    "archive verify": "archive_verify",
    "doctor": "doctor",
}


def _commands() -> list[str]:
    from kaudit_elk.cli import main

    main._register()
    root = typer.main.get_command(main.app)
    out: list[str] = []

    def walk(cmd: object, prefix: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            out.append(prefix)

    walk(root, "")
    return sorted(out)


def test_every_command_has_its_api_entry() -> None:
    missing = [c for c in _commands() if c not in COMMAND_API]
    assert not missing, f"commands without a Python API entry in COMMAND_API: {missing}"


def test_every_api_name_resolves_and_is_exported() -> None:
    for name in sorted(set(COMMAND_API.values()) | set(kaudit_elk.__all__)):
        assert name in kaudit_elk.__all__, name
        assert getattr(kaudit_elk, name) is not None, name


def test_import_is_cheap_and_side_effect_free() -> None:
    code = ("import sys, kaudit_elk; heavy = [m for m in ('elasticsearch', 'opensearchpy', 'sigma', 'aiohttp') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        kaudit_elk.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
