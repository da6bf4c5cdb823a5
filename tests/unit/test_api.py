"""The CLI mirrors a documented Python API: every command has its entry in ``kaudit_elk`` (README "Python API")."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

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


def test_api_functions_stay_callable_whatever_was_imported_first() -> None:
    """``detect`` and ``ingest`` are also subpackages: importing one (``k.scan`` imports kaudit_elk.detect.scan)
    used to bind the subpackage over the function, and the README's ``k.detect(...)`` failed as not callable."""
    code = (
        "import inspect, kaudit_elk as k\n"
        "k.scan; k.serve\n"
        "import kaudit_elk.detect.scan, kaudit_elk.ingest.spool\n"
        "from kaudit_elk.detect.scheduled import run_detect\n"
        "from kaudit_elk.ingest.bulk import ingest\n"
        "assert callable(k.detect) and callable(k.ingest)\n"
        "assert inspect.signature(k.detect) == inspect.signature(run_detect)\n"
        "assert inspect.signature(k.ingest) == inspect.signature(ingest)\n"
        "try:\n"
        "    k.detect(None, None, None, [], no_such_argument=1)\n"
        "except TypeError as exc:\n"
        "    assert 'no_such_argument' in str(exc), exc\n"
        "import kaudit_elk.detect.scan as scan_module\n"  # the subpackages still import as before
        "assert scan_module.scan is k.scan\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def _readme_api_section() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]


def _calls(code: str) -> list[tuple[str, str]]:
    """(name, argument text) of every call in a piece of code, nested ones included: ``a(b(x=1), y)``."""
    import re

    out = []
    for m in re.finditer(r"(?<![\w.])([A-Za-z_][\w.]*)\(", code):
        depth, end = 1, m.end()
        while end < len(code) and depth:
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            end += 1
        out.append((m.group(1), code[m.end():end - 1]))
    return out


def _split_args(args: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in args:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [a for a in [*out, cur.strip()] if a]


def _lookup(name: str, modules: list[Any]) -> Any:
    """A README name: ``connect``, ``report``'s ``from_files`` (its row says "module `report`"),
    ``cluster.bootstrap.install``, ``dashboards.import_into``."""
    import importlib

    if "." in name:
        owner, attr = name.rsplit(".", 1)
        mod = getattr(kaudit_elk, owner) if owner in kaudit_elk.__all__ else importlib.import_module(f"kaudit_elk.{owner}")
        return getattr(mod, attr, None)
    return next((getattr(t, name) for t in [kaudit_elk, *modules] if hasattr(t, name)), None)


def test_the_readme_python_api_fits_the_code() -> None:
    """Every name of the README's Python API section exists, and every call it shows
    (``bootstrap(engine, BootstrapOptions(namespace=...), force=False, dry_run=False)``, the example's
    ``k.scan([...], k.load_pack(), min_severity="medium")``) fits the signature of what it calls."""
    import inspect
    import re

    section = _readme_api_section()
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    pieces: list[tuple[str, list[Any]]] = []
    for row in [line for line in section.splitlines() if line.startswith("| `")]:
        api = re.split(r"(?<!\\)\|", row)[2]
        modules = [getattr(kaudit_elk, m) for m in re.findall(r"module `(\w+)`", api)]
        pieces += [(span, modules) for span in re.findall(r"`([^`]+)`", api)]
    pieces.append((code.replace("k.", ""), []))
    checked, problems = set(), []
    for piece, modules in pieces:
        if re.fullmatch(r"\w+", piece):  # a bare name: `tune`, `alerts_from_files`, `render`
            if _lookup(piece, modules) is None:
                problems.append(f"{piece}: not in kaudit_elk")
            continue
        for name, args in _calls(piece):
            if name in {"print", "lambda"}:
                continue
            obj = _lookup(name, modules)
            if obj is None or not callable(obj):
                problems.append(f"{name}: not a callable of kaudit_elk")
                continue
            parts = [a for a in _split_args(args) if a != "..."]
            positional = [a for a in parts if not re.match(r"\w+=", a)]
            keywords = {a.split("=", 1)[0]: None for a in parts if re.match(r"\w+=", a)}
            try:
                inspect.signature(obj).bind_partial(*[None] * len(positional), **keywords)
            except TypeError as exc:
                problems.append(f"{name}({args}): {exc}")
            checked.add(name)
    assert {"connect", "Settings", "bootstrap", "ingest", "scan", "detect", "retention", "doctor", "from_files",
            "normalize", "cluster.bootstrap.install"} <= checked, checked
    assert not problems, "README Python API disagrees with the code:\n" + "\n".join(problems)
