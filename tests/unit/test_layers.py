"""The package is layered and imports run one way (DESIGN.md):
cli -> detect / views / ingest -> rules / cluster -> events -> base.

A module may import its own layer and any layer below it; imports under ``if TYPE_CHECKING:`` are
annotations only and are not counted. A new module must live in a layer folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "kaudit_elk"
RANK = {"base": 0, "events": 1, "rules": 2, "cluster": 2, "ingest": 3, "detect": 3, "views": 3, "trail": 3,
        "cli": 4}
TOP_LEVEL_OK = {"__init__.py", "__main__.py"}


def _runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kaudit_elk"):
            mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            out.extend((node.lineno, m) for m in mods)
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.startswith("kaudit_elk"))
    return out


def _layer(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_module_lives_in_a_layer_folder() -> None:
    stray = [p.name for p in PKG.glob("*.py") if p.name not in TOP_LEVEL_OK]
    assert not stray, f"modules outside a layer folder: {stray}"
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders <= set(RANK), f"unknown layer folders: {folders - set(RANK)}"


def test_imports_run_one_way() -> None:
    problems: list[str] = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if len(rel.parts) < 2:
            continue
        own = rel.parts[0]
        for line, target in _runtime_imports(ast.parse(path.read_text(), str(path))):
            layer = _layer(target)
            if layer is None or layer == own:
                continue
            if RANK[layer] >= RANK[own]:
                problems.append(f"{rel}:{line}: {own} imports {target} ({layer} is not below {own})")
    assert not problems, "\n".join(problems)
