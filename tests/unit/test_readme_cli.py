"""README ⇔ ``--help``: every command, sub-command and long option of the CLI is documented where that
command is described, and ``--help`` itself shows what each option's help text says.

The rule (deterministic, no prose parsing beyond Markdown structure):

- every command path has a row in the table of the README's ``## Commands`` section (first cell
  `` `rules list|show|validate|test` `` names the group and its sub-commands) and a usage example
  ``kaudit-elk <path>`` somewhere in the README;
- every long option (``--x`` and, for a flag pair, ``--no-x`` too) of a command appears as a whole
  token in that command's documentation: its table row (plus the row of a command it refers to with
  ``as `scan` ``), the prose of ``## Commands`` above the table (the shared connection options), or
  any README section whose heading names the command (``## serve: ...``, ``### Running `detect` on a
  schedule``), subsections included.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


@cache
def _app() -> typer.Typer:
    from kaudit_elk.cli import main

    if not main.app.registered_groups:  # another test module may have registered them already
        main._register()
    return main.app


def _root() -> Any:
    return typer.main.get_command(_app())


def _commands(cmd: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, click command) of every command, e.g. (("policy", "check"), <Command>); a group only
    when it has options of its own (``kaudit-elk archive --dry-run`` besides ``archive list``)."""
    cmd = _root() if cmd is None else cmd
    subs = getattr(cmd, "commands", None)
    if subs is None or (path and _long_options(cmd)):
        yield path, cmd
    if subs is None:
        return
    for name, sub in sorted(subs.items()):
        if not getattr(sub, "hidden", False):
            yield from _commands(sub, path + (name,))


def _long_options(cmd: Any) -> list[str]:
    out: list[str] = []
    for p in cmd.params:
        if getattr(p, "param_type_name", "") != "option" or getattr(p, "hidden", False):
            continue
        out += [o for o in [*p.opts, *p.secondary_opts] if o.startswith("--") and o != "--help"]
    return out


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body incl. subsections) for every Markdown heading outside code fences."""
    lines = text.splitlines()
    heads: list[tuple[int, int, str]] = []
    fence = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"(#+) (.*)", line)
        if m:
            heads.append((i, len(m.group(1)), m.group(2)))
    out = []
    for n, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[n + 1:] if lv <= level), len(lines))
        out.append((title, "\n".join(lines[i + 1:end])))
    return out


def _commands_section() -> tuple[str, dict[str, list[str]]]:
    """The ``## Commands`` prose above its table, and the table rows by top-level command name."""
    body = next(b for t, b in _sections(README) if t.strip() == "Commands")
    prose, rows = [], {}
    for line in body.splitlines():
        if line.startswith("#"):
            break
        if line.startswith("| `"):
            first = re.split(r"(?<!\\)\|", line)[1].strip().strip("`")
            words = first.split()
            subs = words[1].replace("\\|", "|").strip("[]").split("|") if len(words) > 1 else []  # `archive [list\|verify]`
            rows[words[0]] = [line, *subs]
        elif not line.startswith("|"):
            prose.append(line)
    return "\n".join(prose), rows


def _docs_for(top: str, seen: frozenset[str] = frozenset()) -> str:
    prose, rows = _commands_section()
    parts = [prose]
    row = rows.get(top, [""])[0]
    parts.append(row)
    for ref in re.findall(r"\bas `(\w[\w-]*)`", row):  # "rule options as `scan`"
        if ref != top and ref not in seen:
            parts.append(_docs_for(ref, seen | {top}))
    word = re.compile(rf"(?<![\w-]){re.escape(top)}(?![\w-])", re.I)
    parts += [body for title, body in _sections(README) if word.search(title)]
    return "\n".join(parts)


def _has_token(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_the_cli_has_the_commands_the_readme_is_about() -> None:
    paths = {" ".join(p) for p, _ in _commands()}
    # guards the walk itself: a broken walk would make the tests below pass vacuously
    assert {"scan", "ingest", "serve", "detect", "rules list", "policy check", "dashboards export"} <= paths
    assert sum(len(_long_options(c)) for _, c in _commands()) > 100


def test_every_command_has_a_row_in_the_commands_table_and_an_example() -> None:
    _, rows = _commands_section()
    missing = []
    for path, _ in _commands():
        row = rows.get(path[0])
        if row is None or (len(path) > 1 and path[1] not in row[1:]):
            missing.append(f"`{' '.join(path)}`: no row in the README's Commands table")
        if f"kaudit-elk {' '.join(path)}" not in README:
            missing.append(f"`{' '.join(path)}`: no example `kaudit-elk {' '.join(path)} ...` in the README")
    assert not missing, "README.md is missing:\n" + "\n".join(missing)


def test_every_long_option_is_documented_where_its_command_is() -> None:
    missing = []
    for path, cmd in _commands():
        docs = _docs_for(path[0])
        absent = [o for o in _long_options(cmd) if not _has_token(docs, o)]
        if absent:
            missing.append(f"kaudit-elk {' '.join(path)}: {', '.join(absent)}")
    assert not missing, (
        "options not in their command's Commands-table row or README section "
        "(a heading naming the command):\n" + "\n".join(missing)
    )


@cache
def _shipped_root() -> Any:
    """The command tree as ``kaudit-elk`` runs it: with main()'s help tidying (metavars, no type names)."""
    from kaudit_elk.cli.main import tidy_help

    root = _root()
    tidy_help(root)
    return root


def _help(path: tuple[str, ...]) -> str:
    import io
    import os
    from contextlib import redirect_stdout
    from unittest import mock

    out = io.StringIO()
    with redirect_stdout(out), mock.patch.dict(os.environ, {"COLUMNS": "200", "NO_COLOR": "1"}):
        code = _shipped_root().main([*path, "--help"], prog_name="kaudit-elk", standalone_mode=False)
    assert code in (0, None), out.getvalue()
    return out.getvalue()


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=lambda p: " ".join(p))
def test_help_shows_each_options_full_help_and_no_python_type_placeholder(path: tuple[str, ...]) -> None:
    text = _help(path)
    problems = []
    if "<bool>" in text:
        problems.append("a flag shows a <bool> placeholder")
    for placeholder in sorted(set(re.findall(r"<(?:str|int|float|path|Path|list\[\w+\])>", text))):
        problems.append(f"a Python type name {placeholder} stands for a value (give TEXT, PATH, DIR ...)")
    flat = "".join(text.split())  # wrapping may break anywhere there is a space or hyphen
    cmd = dict(_commands())[path]
    for p in cmd.params:
        if getattr(p, "param_type_name", "") != "option" or not p.help:
            continue
        # bracketed parts ("[env KAUDIT_URL; default ...]") are what a markup renderer swallows
        for part in re.findall(r"\[[^\]]+\]", p.help):
            if "".join(part.split()) not in flat:
                problems.append(f"{p.opts[0]}'s help loses {part}")
    assert not problems, f"kaudit-elk {' '.join(path)} --help:\n" + "\n".join(problems)


def _shown(value: Any) -> str:
    """A default as the README writes it: ``4.0`` -> ``4``, an Enum by its value."""
    value = getattr(value, "value", value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _given_values(row: str, option: str) -> list[str]:
    """The values a Commands-table row writes after ``option`` in one code span: `--overlap 5m`,
    `list --format table\\|json` -> ["5m"], ["table|json"]."""
    spans = re.findall(r"`([^`]+)`", row.replace("\\|", "|"))
    return [m.group(1) for span in spans
            for m in re.finditer(rf"(?<![\w-]){re.escape(option)} ([^\s`\[]+)", span)]


def test_the_commands_table_gives_each_options_default_and_choices() -> None:
    """A value the table writes after an option (`--min-severity medium`, `--batch-mb 4`) is its default, and a
    list of values (`--notify alerts|incidents|both`) is exactly its choices; placeholders (`FILE`, `SEV`) and
    examples of options without a default (`--from now-14d`) are not compared."""
    _, rows = _commands_section()
    wrong, compared = [], 0
    for path, cmd in _commands():
        row = rows.get(path[0], [""])[0]
        for p in cmd.params:
            if getattr(p, "param_type_name", "") != "option" or getattr(p, "hidden", False):
                continue
            kind = getattr(p, "type_descriptor", None) or getattr(p, "type", None)  # Typer 0.29 / older (click)
            choices = [_shown(c) for c in getattr(kind, "choices", None) or []]
            for option in [o for o in p.opts if o.startswith("--") and o != "--output"]:  # `--output json`: the mode
                for value in _given_values(row, option):
                    if "|" in value:
                        if choices and sorted(value.split("|")) != sorted(choices):
                            wrong.append(f"kaudit-elk {' '.join(path)} {option}: README lists {value}, "
                                         f"the CLI takes {'|'.join(choices)}")
                        compared += 1
                    elif re.fullmatch(r"[A-Z][A-Z_=]*", value) or p.default in (None, False, (), []):
                        continue  # a placeholder, or an example value of an option without a default
                    elif value != _shown(p.default):
                        wrong.append(f"kaudit-elk {' '.join(path)} {option}: README says {value}, "
                                     f"the default is {_shown(p.default)}")
                    else:
                        compared += 1
    assert compared > 40, compared  # guards the parsing: the table gives dozens of defaults
    assert not wrong, "README Commands table disagrees with the CLI:\n" + "\n".join(wrong)
