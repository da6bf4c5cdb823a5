"""Generate the three executions of the pod-spec field rules from the field spec.

    python -m kaudit_elk.events.codegen          # rewrite the generated files
    python -m kaudit_elk.events.codegen --check  # exit 1 naming the stale files (tests/unit/test_codegen.py)

The rows of :data:`kaudit_elk.events.fieldspec.POD_FIELDS` (sources, value kind, reducer) become one
straight-line function per execution, the paths unrolled into nested lookups that share prefixes (one
``securityContext`` lookup per container serves every row under it):

* ``kaudit_elk/events/podfields.py``: ``pod_fields(specs)`` for :mod:`kaudit_elk.events.normalize`;
* ``native/src/podfields.rs``: the same for the native fast path (``fields.rs`` finds the pod specs);
  values Python accepts but the native path does not reproduce (a bool where an int is expected, a
  non-string where a keyword is collected) decline the line, as the hand-written code did;
* ``index_templates/audit-pipeline-pod-fields.painless``: ``Map podFields(List specs)``, prepended to
  the server-side pipeline's normalize script;
* ``kaudit_elk/events/bodyfits.py``: from :data:`fieldspec.BODY_SHAPES`, one straight-line ``<raw>_fits(body)``
  per raw body, the lean check :mod:`kaudit_elk.events.bodyshape` runs first (True only when every typed
  path fits and no key of a mapped object is dotted, empty or blank; anything else takes the full walk).
  The native path and the pipeline read the shape trees as data.

The index template needs nothing generated: it maps :data:`fieldspec.TYPED_FIELDS`, which holds the rows'
types. Pure functions render the files; :func:`main` is the thin shell that writes or checks them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kaudit_elk.events import fieldspec as fs

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m kaudit_elk.events.codegen"
PYTHON_OUT = "kaudit_elk/events/podfields.py"
RUST_OUT = "native/src/podfields.rs"
PAINLESS_OUT = "index_templates/audit-pipeline-pod-fields.painless"
BODYFITS_OUT = "kaudit_elk/events/bodyfits.py"
_PREFIX = "kaudit.pod."
_SCOPES = ("pod", "container")


class SpecError(ValueError):
    """A pod-spec row whose rule cannot be generated (names the row and what is wrong)."""


@dataclass
class _Node:
    """A path step shared by the sources below it; ``rows`` read the value at this step."""

    step: str
    children: dict[str, _Node] = field(default_factory=dict)
    rows: list[fs.TypedField] = field(default_factory=list)


def check_rows(rows: tuple[fs.TypedField, ...]) -> None:
    """Raise SpecError for the first row whose rule the generators cannot express."""
    for row in rows:
        where = f"field spec row {row.name!r}"
        if not row.name.startswith(_PREFIX) or "." in row.name[len(_PREFIX):] or not row.name[len(_PREFIX):].isidentifier():
            raise SpecError(f"{where}: a generated field is named kaudit.pod.<identifier>")
        if row.reducer not in fs.REDUCERS:
            raise SpecError(f"{where}: reducer {row.reducer!r} is not one of {', '.join(fs.REDUCERS)}")
        if row.value not in fs.VALUE_KINDS:
            raise SpecError(f"{where}: value {row.value!r} is not one of {', '.join(fs.VALUE_KINDS)}")
        if (row.reducer == "any") != (row.value == "true") or (row.reducer == "any") != (row.type == "boolean"):
            raise SpecError(f"{where}: reducer 'any' goes with value 'true' and type boolean (and only they)")
        if row.value == "int" and row.type != "long":
            raise SpecError(f"{where}: value 'int' is mapped long, not {row.type!r}")
        if row.value in ("str", "nonempty_str", "nonnull") and row.type != "keyword":
            raise SpecError(f"{where}: value {row.value!r} is mapped keyword, not {row.type!r}")
        if row.value == "nonnull" and row.reducer != "unique":
            raise SpecError(f"{where}: value 'nonnull' goes with reducer 'unique'")
        for source in row.sources:
            scope, _, path = source.partition(":")
            steps = path.split(".")
            if scope not in _SCOPES or not path or not all(steps):
                raise SpecError(f"{where}: source {source!r} is not <pod|container>:<dotted path>")
            if any(s != "[]" and not s.replace("_", "").isalnum() for s in steps):
                raise SpecError(f"{where}: source {source!r} has a step that is neither a key nor []")


def _tries(rows: tuple[fs.TypedField, ...]) -> dict[str, _Node]:
    roots = {scope: _Node(scope) for scope in _SCOPES}
    for row in rows:
        for source in row.sources:
            scope, _, path = source.partition(":")
            node = roots[scope]
            for step in path.split("."):
                node = node.children.setdefault(step, _Node(step))
            node.rows.append(row)
    for root in roots.values():
        _check_shape(root)
    return roots


def _check_shape(node: _Node) -> None:
    if "[]" in node.children and len(node.children) > 1:
        raise SpecError(f"field spec: a value at step {node.step!r} is read both as a list and as an object")
    for child in node.children.values():
        _check_shape(child)


def _child(var: str, step: str) -> str:
    """The variable holding the value one step below ``var`` (named by its path, so that a new row adds
    lines to the generated code without renaming the others)."""
    if step == "[]":
        return f"{var}_item"
    return var + "_" + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", step).lower()


def _key(row: fs.TypedField) -> str:
    return row.name[len(_PREFIX):]


def _header(comment: str) -> str:
    return (f"{comment} generated from kaudit_elk/events/fieldspec.py (FIELDS) - do not edit; run: {COMMAND}\n")


def _q(text: str) -> str:
    """A double-quoted Python string literal."""
    return json.dumps(text)


# ---- Python ---------------------------------------------------------------------------------
_PY_COND = {
    "true": "{v} is True",
    "str": "isinstance({v}, str)",
    "nonempty_str": "isinstance({v}, str) and {v}",
    "int": "type({v}) is int",  # not a bool (the pipeline and the native path do not take one either)
    "nonnull": "{v} is not None",
}


def _py_leaf(row: fs.TypedField, v: str) -> str:
    acc, cond = f"f_{_key(row)}", _PY_COND[row.value].format(v=v)
    if row.reducer == "any":
        return f"if {cond}:\n    {acc} = True"
    if row.reducer == "unique":
        return f"if {cond} and {v} not in {acc}:\n    {acc}.append({v})"
    return f"if {acc} is None and {cond}:\n    {acc} = {v}"


def _py_node(node: _Node, v: str, known_dict: bool) -> list[str]:
    out: list[str] = []
    for row in node.rows:
        out += _py_leaf(row, v).split("\n")
    if "[]" in node.children:
        item = _child(v, "[]")
        body = _py_node(node.children["[]"], item, False)
        out += [f"if isinstance({v}, list):", f"    for {item} in {v}:", *("        " + x for x in body)]
    elif node.children:
        body = []
        for step, child in node.children.items():
            sub = _child(v, step)
            body += [f"{sub} = {v}.get({_q(step)})", *_py_node(child, sub, False)]
        out += body if known_dict else [f"if isinstance({v}, dict):", *("    " + x for x in body)]
    return out


def render_python(rows: tuple[fs.TypedField, ...]) -> str:
    """``kaudit_elk/events/podfields.py``."""
    roots = _tries(rows)
    lines = [_header("#").rstrip(), '"""The typed ``kaudit.pod.*`` fields of the pod specs of a request (rules: fieldspec.FIELDS)."""',
             "", "from __future__ import annotations", "", "from typing import Any", "", "",
             "def pod_fields(specs: list[dict[str, Any]]) -> dict[str, Any]:",
             '    """``kaudit.pod`` for the pod specs found in the bodies (request body first)."""']
    for row in rows:
        init = "False" if row.reducer == "any" else "[]" if row.reducer == "unique" else "None"
        kind = "bool" if row.reducer == "any" else "list[Any]" if row.reducer == "unique" else "Any"
        lines.append(f"    f_{_key(row)}: {kind} = {init}")
    lines.append("    for spec in specs:")
    lines += ["        " + x for x in _py_node(roots["pod"], "spec", True)]
    lists = ", ".join(f"spec.get({_q(n)})" for n in fs.CONTAINER_LISTS)
    lines += [f"        for cs in ({lists}):", "            if isinstance(cs, list):", "                for c in cs:",
              "                    if isinstance(c, dict):"]
    lines += ["                        " + x for x in _py_node(roots["container"], "c", True)]
    lead = [r for r in rows[:next((i for i, r in enumerate(rows) if r.reducer != "any"), len(rows))]]
    literal = ", ".join(f"{_q(_key(r))}: f_{_key(r)}" for r in lead)
    lines.append(f"    pod: dict[str, Any] = {{{literal}}}")
    for row in rows[len(lead):]:
        acc = f"f_{_key(row)}"
        test = acc if row.reducer != "first" else f"{acc} is not None"
        if row.reducer == "any":
            lines.append(f"    pod[{_q(_key(row))}] = {acc}")
        else:
            lines += [f"    if {test}:", f"        pod[{_q(_key(row))}] = {acc}"]
    lines.append("    return pod")
    return "\n".join(lines) + "\n"


# ---- Rust -----------------------------------------------------------------------------------
def _rs_leaf(row: fs.TypedField, e: str, opt: bool) -> list[str]:
    """Update the row's accumulator from ``e`` (an ``Option<&V>`` when ``opt``, else a ``&V``)."""
    acc = f"f_{_key(row)}"
    some = (lambda p: f"Some({p})") if opt else (lambda p: p)  # noqa: E731 - pattern wrapper
    if row.value == "true":
        return [f"if matches!({e}, {some('V::Bool(true)')}) {{", f"    {acc} = true;", "}"]
    if row.value == "int":
        arg = e if opt else f"Some({e})"
        return [f"if let Some(i) = int_of({arg})? {{", f"    if !{acc}.contains(&i) {{", f"        {acc}.push(i);",
                "    }", "}"]
    bind = "    let s: &'v str = s;"
    if row.reducer == "first":
        cond = f"{acc}.is_none() && !s.is_empty()" if row.value == "nonempty_str" else f"{acc}.is_none()"
        return [f"if let {some('V::Str(s)')} = {e} {{", bind, f"    if {cond} {{", f"        {acc} = Some(s);", "    }", "}"]
    push = [bind, f"    if !{acc}.contains(&s) {{", f"        {acc}.push(s);", "    }"]
    if row.value == "nonnull":  # only strings are reproduced natively: anything else declines the line
        null = "None | Some(V::Null)" if opt else "V::Null"
        return [f"match {e} {{", f"    {null} => {{}}", f"    {some('V::Str(s)')} => {{", *("    " + x for x in push), "    }",
                f"    {some('_')} => return Err(Fallback),", "}"]
    return [f"if let {some('V::Str(s)')} = {e} {{", *push, "}"]


def _rs_node(node: _Node, e: str, opt: bool, name: str) -> list[str]:
    """Code for the rows at and below ``node``, whose value is ``e`` (``Option<&V>`` when ``opt``), named
    ``name`` when bound to a variable."""
    out: list[str] = []
    if len(node.rows) + bool(node.children) > 1 and opt:  # used more than once: look it up once
        out.append(f"let {name} = {e};")
        e = name
    for row in node.rows:
        out += _rs_leaf(row, e, opt)
    if "[]" in node.children:
        item = _child(name, "[]")
        src = e if opt else f"Some({e})"
        out += [f"for {item} in iter_list({src})? {{", *("    " + x for x in _rs_node(node.children["[]"], item, False, item)), "}"]
    elif node.children:
        if opt:
            value = name
            inner: list[str] = []
            for step, child in node.children.items():
                inner += _rs_node(child, f"{value}.get({_rs_str(step)})", True, _child(value, step))
            out += [f"if let Some({value}) = {e} {{", *("    " + x for x in inner), "}"]
        else:
            for step, child in node.children.items():
                out += _rs_node(child, f"{e}.get({_rs_str(step)})", True, _child(name, step))
    return out


def _rs_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_rust(rows: tuple[fs.TypedField, ...]) -> str:
    """``native/src/podfields.rs``."""
    roots = _tries(rows)
    lines = [_header("//").rstrip(), "//! The typed `kaudit.pod.*` fields of the pod specs of a request (rules: fieldspec.FIELDS).", "",
             "use std::borrow::Cow;", "", "use crate::json::V;", "use crate::normalize::{int_of, iter_list, Fallback, O, R};", "",
             "/// `kaudit.pod` for the pod specs found in the bodies (request body first).",
             "pub(crate) fn pod_fields<'v, 'a>(specs: &[&'v V<'a>]) -> R<O<'v, 'a>> {"]
    for row in rows:
        if row.reducer == "any":
            lines.append(f"    let mut f_{_key(row)} = false;")
        elif row.reducer == "unique":
            kind = "i128" if row.value == "int" else "&'v str"
            lines.append(f"    let mut f_{_key(row)}: Vec<{kind}> = Vec::new();")
        else:
            lines.append(f"    let mut f_{_key(row)}: Option<&'v str> = None;")
    lines.append("    for &spec in specs {")
    lines += ["        " + x for x in _rs_node(roots["pod"], "spec", False, "spec")]
    lists = ", ".join(_rs_str(n) for n in fs.CONTAINER_LISTS)
    lines += [f"        for list_name in [{lists}] {{", "            for c in iter_list(spec.get(list_name))? {",
              "                if !c.is_obj() {", "                    continue;", "                }"]
    lines += ["                " + x for x in _rs_node(roots["container"], "c", False, "c")]
    lines += ["            }", "        }", "    }"]
    lines += ["    let strs = |list: Vec<&'v str>| O::Arr(list.into_iter().map(|s| O::S(Cow::Borrowed(s))).collect());",
              "    let ints = |list: Vec<i128>| -> R<O<'v, 'a>> {",
              "        Ok(O::Arr(list.into_iter().map(|i| i64::try_from(i).map(O::I).map_err(|_| Fallback)).collect::<R<Vec<_>>>()?))",
              "    };",
              f"    let mut pod: Vec<(Cow<'v, str>, O<'v, 'a>)> = Vec::with_capacity({len(rows)});"]
    for row in rows:
        key, acc = _rs_str(_key(row)), f"f_{_key(row)}"
        if row.reducer == "any":
            lines.append(f"    pod.push((Cow::Borrowed({key}), O::B({acc})));")
        elif row.reducer == "unique":
            value = f"ints({acc})?" if row.value == "int" else f"strs({acc})"
            lines += [f"    if !{acc}.is_empty() {{", f"        pod.push((Cow::Borrowed({key}), {value}));", "    }"]
        else:
            lines += [f"    if let Some(s) = {acc} {{", f"        pod.push((Cow::Borrowed({key}), O::S(Cow::Borrowed(s))));", "    }"]
    lines += ["    Ok(O::Obj(pod))", "}"]
    return "\n".join(lines) + "\n"


# ---- painless -------------------------------------------------------------------------------
_PL_COND = {
    "true": "Boolean.TRUE.equals({v})",
    "str": "{v} instanceof String",
    "nonempty_str": "{v} instanceof String && !((String) {v}).isEmpty()",
    "int": "({v} instanceof Integer || {v} instanceof Long)",
    "nonnull": "{v} != null",
}


def _pl_leaf(row: fs.TypedField, v: str) -> str:
    acc, cond = f"f_{_key(row)}", _PL_COND[row.value].format(v=v)
    if row.reducer == "any":
        return f"if ({cond}) {{ {acc} = true; }}"
    if row.reducer == "unique":
        return f"if ({cond} && !{acc}.contains({v})) {{ {acc}.add({v}); }}"
    return f"if ({acc} == null && {cond}) {{ {acc} = {v}; }}"


def _pl_node(node: _Node, v: str, known_map: bool) -> list[str]:
    out = [_pl_leaf(row, v) for row in node.rows]
    if "[]" in node.children:
        item = _child(v, "[]")
        body = _pl_node(node.children["[]"], item, False)
        out += [f"if ({v} instanceof List) {{", f"  for (def {item} : (List) {v}) {{", *("    " + x for x in body), "  }", "}"]
    elif node.children:
        body = []
        for step, child in node.children.items():
            sub = _child(v, step)
            body += [f"def {sub} = ((Map) {v}).get('{step}');", *_pl_node(child, sub, False)]
        out += body if known_map else [f"if ({v} instanceof Map) {{", *("  " + x for x in body), "}"]
    return out


def render_painless(rows: tuple[fs.TypedField, ...]) -> str:
    """``index_templates/audit-pipeline-pod-fields.painless``."""
    roots = _tries(rows)
    lines = [_header("//").rstrip(), "Map podFields(List specs) {"]
    for row in rows:
        init = "boolean {} = false" if row.reducer == "any" else "List {} = new ArrayList()" if row.reducer == "unique" else "def {} = null"
        lines.append("  " + init.format(f"f_{_key(row)}") + ";")
    lines.append("  for (def spec : specs) {")
    lines += ["    " + x for x in _pl_node(roots["pod"], "spec", True)]
    lists = ", ".join(f"spec.get('{n}')" for n in fs.CONTAINER_LISTS)
    lines += [f"    for (def cs : [{lists}]) {{", "      if (!(cs instanceof List)) { continue; }", "      for (def c : (List) cs) {",
              "        if (!(c instanceof Map)) { continue; }"]
    lines += ["        " + x for x in _pl_node(roots["container"], "c", True)]
    lines += ["      }", "    }", "  }", "  Map pod = new LinkedHashMap();"]
    for row in rows:
        key, acc = _key(row), f"f_{_key(row)}"
        if row.reducer == "any":
            lines.append(f"  pod.put('{key}', {acc});")
        elif row.reducer == "unique":
            lines.append(f"  if (!{acc}.isEmpty()) {{ pod.put('{key}', {acc}); }}")
        else:
            lines.append(f"  if ({acc} != null) {{ pod.put('{key}', {acc}); }}")
    lines += ["  return pod;", "}"]
    return "\n".join(lines) + "\n"


# ---- body shapes: the lean Python check -------------------------------------------------------
_FITS_LEAF = {
    "scalar": "type({v}) is not str and not _scalars({v})",
    "boolean": "{v} is not True and {v} is not False",
    "integer": "type({v}) is not int or not _LOW <= {v} <= _HIGH",
    "flat": "type({v}) is not dict and not _objects({v})",
}


def _fits_object(keys: dict[str, object], var: str) -> list[str]:
    """Lines checking the object ``var`` (a dict): its keys plain, each typed child fitting."""
    out = [f"if not _known({var}) and not _learn({var}):", "    return False"]
    for step, node in keys.items():
        sub = _child(var, step)
        out.append(f"{sub} = {var}.get({_q(step)})")
        kind = node["kind"]  # type: ignore[index]
        if kind == "object":
            item = f"{sub}_i"
            body = _fits_object(node["keys"], item)  # type: ignore[index]
            out += [f"if {sub} is not None:",
                    f"    for {item} in ({sub},) if type({sub}) is dict else {sub} if type({sub}) is list else _NOT:",
                    f"        if type({item}) is not dict:", "            return False",
                    *("        " + x for x in body)]
        elif kind in _FITS_LEAF:
            out += [f"if {sub} is not None and ({_FITS_LEAF[kind].format(v=sub)}):", "    return False"]
        else:
            raise SpecError(f"field spec BODY_SHAPES: unknown shape {kind!r} at {step!r}")
    return out


def _fits_name(raw: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", raw).lower() + "_fits"


def render_bodyfits(shapes: dict[str, tuple[str, dict[str, object]]] = fs.BODY_SHAPES) -> str:
    """``kaudit_elk/events/bodyfits.py``."""
    lines = [_header("#").rstrip(),
             '"""Lean checks: does every typed path of a body fit its shape (rules: fieldspec.BODY_SHAPES)?',
             "",
             "True only when every typed path fits and no key of a mapped object is dotted, empty or blank; False",
             'sends the body to the full walk of kaudit_elk.events.bodyshape, which decides and removes."""', "",
             "from __future__ import annotations", "", "from typing import Any", "",
             "from kaudit_elk.events import fieldspec as fs", "", "_LOW, _HIGH = fs.BODY_INTEGER_RANGE",
             "_NOT = (None,)  # a value that is neither an object nor a list: its item fails the dict check",
             "#: Keys seen plain (no dot, not empty, no blank or unprintable character): a plain key is plain wherever",
             "#: it is, so one C-level superset test clears an object whose keys were all seen before.",
             "_PLAIN: set[str] = set()", "_known = _PLAIN.issuperset", "_PLAIN_MAX = 8192", "", "",
             "def _learn(obj: dict[str, Any]) -> bool:",
             '    """Whether every key of ``obj`` is plain; plain keys are remembered (the set is bounded)."""',
             '    joined = "".join(obj)',
             '    if "." in joined or " " in joined or "" in obj or not joined.isprintable():',
             "        return False", "    if len(_PLAIN) > _PLAIN_MAX:", "        _PLAIN.clear()", "    _PLAIN.update(obj)",
             "    return True", "", "",
             "def _scalars(value: Any) -> bool:",
             '    """A list of strings (anything else the full walk judges)."""',
             "    if type(value) is not list:", "        return False", "    try:", '        "".join(value)',
             "    except TypeError:", "        return False", "    return True", "", "",
             "def _objects(value: Any) -> bool:",
             "    return type(value) is list and all(type(item) is dict for item in value)"]
    for raw, (_, tree) in shapes.items():
        lines += ["", "", f"def {_fits_name(raw)}(b: dict[str, Any]) -> bool:",
                  f'    """Every typed path of a {raw} fits (False: take the full walk)."""', "    try:"]
        lines += ["        " + x for x in _fits_object(tree["keys"], "b")]  # type: ignore[arg-type]
        lines += ["    except TypeError:  # a key that is not a string (never from JSON)", "        return False",
                  "    return True"]
    lines += ["", "", "#: raw body key -> its lean check.",
              "FITS = {" + ", ".join(f"{_q(raw)}: {_fits_name(raw)}" for raw in shapes) + "}"]
    return "\n".join(lines) + "\n"


def render_all(rows: tuple[fs.TypedField, ...] = fs.POD_FIELDS) -> dict[str, str]:
    """Repository-relative path -> the text the generator writes there."""
    check_rows(rows)
    return {PYTHON_OUT: render_python(rows), RUST_OUT: render_rust(rows), PAINLESS_OUT: render_painless(rows),
            BODYFITS_OUT: render_bodyfits()}


def stale(root: Path = ROOT) -> list[str]:
    """The generated files whose committed text differs from what the spec generates."""
    out = []
    for rel, text in render_all().items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the generated files (or, with --check, name the stale ones and exit 1)."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    try:
        files = render_all()
    except SpecError as exc:
        print(f"codegen: {exc}", file=sys.stderr)
        return 2
    if args.check:
        bad = stale()
        for rel in bad:
            print(f"codegen: {rel} differs from the field spec; run: {COMMAND}", file=sys.stderr)
        return 1 if bad else 0
    for rel, text in files.items():
        path = ROOT / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"codegen: wrote {rel}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
