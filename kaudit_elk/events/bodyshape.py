"""Typed body paths against the shapes their mapping can take (rules: ``fieldspec.BODY_SHAPES``).

:func:`fit_body` returns a body without the subtrees that the engine would refuse (or drop as malformed)
at a typed path of ``kubernetes.audit.requestObject``/``responseObject``, and adds the paths it removed
to a list. A body that fits comes back as itself, without copying: the common case is one generated
straight-line check (``bodyfits.py``, from the same shape trees) that costs a dict lookup per typed path
and, per mapped object, one join of its keys. Nothing is mutated; a
changed body shares every untouched subtree with the input. The native fast path declines a line whose
body does not fit (this module then runs), the ingest pipeline has the same walk in painless
(``fitObj`` in ``index_templates/audit-pipeline-normalize.painless``).
"""

from __future__ import annotations

from typing import Any

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.bodyfits import FITS as _FITS

_LOW, _HIGH = fs.BODY_INTEGER_RANGE
_BLANKS = fs.BLANK_KEY_CHARS
_REMOVE: Any = object()  # the value at a path does not fit: remove it
_SCALARS = (str, int, float, bool)


def fit_body(body: dict[str, Any], raw: str, removed: list[str]) -> dict[str, Any]:
    """``body`` (the raw body ``raw``: requestObject / responseObject) with every subtree that does not fit
    its shape tree removed (``body`` itself when all fit); the removed paths (``request.spec.type``) are
    appended to ``removed``."""
    if _FITS[raw](body):  # the common case: one straight-line check (bodyfits.py, generated), no paths, no copies
        return body
    prefix, tree = fs.BODY_SHAPES[raw]
    return _fit_object(body, tree["keys"], prefix, removed)


def _unplaceable(key: str) -> bool:
    """A key the engine refuses as a field name: empty, or with an empty or blank dot-separated step."""
    return any(not step.strip(_BLANKS) for step in key.split("."))


def _fit_object(obj: dict[str, Any], keys: dict[str, Any], path: str, removed: list[str]) -> dict[str, Any]:
    try:
        joined = "".join(obj)
    except TypeError:  # a non-string key (never from JSON): check key by key
        joined = "."
    if "." in joined or " " in joined or "" in obj or not joined.isprintable():
        return _fit_object_keys(obj, keys, path, removed)
    changed = None
    for step, node in keys.items():
        value = obj.get(step)
        if value is None:
            continue
        fitted = _fit(value, node, path, step, removed)
        if fitted is not value:
            if changed is None:
                changed = dict(obj)
            if fitted is _REMOVE:
                del changed[step]
            else:
                changed[step] = fitted
    return obj if changed is None else changed


def _fit_object_keys(obj: dict[str, Any], keys: dict[str, Any], path: str, removed: list[str]) -> dict[str, Any]:
    """The general walk, for objects with a dotted, empty or blank key: every key resolved to its path."""
    changed = None
    for key, value in obj.items():
        if not isinstance(key, str) or _unplaceable(key):
            fitted = _REMOVE
            removed.append(f"{path}.{key}")
        else:
            node = None
            if "." in key:
                level: dict[str, Any] | None = keys
                steps = key.split(".")
                for i, step in enumerate(steps):
                    node = level.get(step) if level is not None else None
                    if node is None:
                        break  # unmapped below here: the engine skips it
                    level = node.get("keys")
                    if level is None and i < len(steps) - 1:  # through a typed leaf: refused
                        node = _THROUGH_LEAF
                        break
            else:
                node = keys.get(key)
            if node is None or value is None:
                continue
            if node is _THROUGH_LEAF:
                fitted = _REMOVE
                removed.append(f"{path}.{key}")
            else:
                fitted = _fit(value, node, path, key, removed)
        if fitted is not value:
            if changed is None:
                changed = dict(obj)
            if fitted is _REMOVE:
                del changed[key]
            else:
                changed[key] = fitted
    return obj if changed is None else changed


_THROUGH_LEAF: dict[str, Any] = {"kind": "through-leaf"}


def _fit(value: Any, node: dict[str, Any], path: str, step: str, removed: list[str]) -> Any:
    """``value`` (not None) at ``path.step`` fitted to ``node``: itself, a fitted copy, or _REMOVE (recorded)."""
    kind = node["kind"]
    if kind == "object":
        if type(value) is dict:
            return _fit_object(value, node["keys"], f"{path}.{step}", removed)
        if type(value) is list:
            fitted = _fit_object_list(value, node["keys"], f"{path}.{step}", removed)
            if fitted is not _REMOVE:
                return fitted
    elif _leaf_fits(value, kind):
        return value
    removed.append(f"{path}.{step}")
    return _REMOVE


def _fit_object_list(items: list[Any], keys: dict[str, Any], path: str, removed: list[str]) -> Any:
    """A list at an object path: _REMOVE unless every item is an object (lists inside it included), else
    the list with each object fitted."""
    if not _all_objects(items):
        return _REMOVE
    out = None
    for i, item in enumerate(items):
        if item is None:
            continue
        if type(item) is dict:
            fitted = _fit_object(item, keys, path, removed)
        else:
            fitted = _fit_object_list(item, keys, path, removed)
        if fitted is not item:
            if out is None:
                out = list(items)
            out[i] = fitted
    return items if out is None else out


def _all_objects(items: list[Any]) -> bool:
    return all(item is None or type(item) is dict or (type(item) is list and _all_objects(item)) for item in items)


def _leaf_fits(value: Any, kind: str) -> bool:
    """Whether a value (not None) fits a leaf shape: scalar / boolean / integer / flat."""
    if type(value) is list:
        return all(item is None or _leaf_fits(item, kind) for item in value)
    if kind == "scalar":
        return isinstance(value, _SCALARS)
    if kind == "boolean":
        return value is True or value is False
    if kind == "integer":
        return type(value) is int and _LOW <= value <= _HIGH
    if kind == "flat":
        return isinstance(value, dict)
    raise ValueError(f"unknown body shape {kind!r}")
