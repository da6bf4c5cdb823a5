"""Locate and render shipped content (index templates, dashboards, detections).

Content lives at the top level of a checkout (``index_templates/``, ``dashboards/``,
``detections/``) and inside an installed wheel under ``kaudit_elk/_content/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from kaudit_elk.base.errors import ContentError

FOLDERS = ("index_templates", "dashboards", "detections")
_PKG = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=None)
def content_dir(name: str) -> Path:
    """Return the directory holding content folder ``name`` (wheel first, then checkout)."""
    if name not in FOLDERS:
        raise ContentError(f"unknown content folder {name!r}; expected one of {', '.join(FOLDERS)}")
    for candidate in (_PKG / "_content" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise ContentError(
        f"content folder {name!r} not found (looked in {_PKG / '_content'} and {_PKG.parent}); "
        "is the package installed from a complete wheel or checkout?"
    )


def content_path(name: str, *parts: str) -> Path:
    """Path of a file inside a content folder; raises ContentError when it does not exist."""
    path = content_dir(name).joinpath(*parts)
    if not path.exists():
        raise ContentError(f"missing content file {path}")
    return path


@lru_cache(maxsize=None)
def _env(name: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(content_dir(name))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, template: str, **variables: Any) -> str:
    """Render ``template`` from content folder ``name`` with Jinja2 (strict undefined)."""
    try:
        return _env(name).get_template(template).render(**variables)
    except jinja2.TemplateNotFound as exc:
        raise ContentError(f"missing template {content_dir(name) / template}") from exc
    except jinja2.TemplateError as exc:
        raise ContentError(f"cannot render {content_dir(name) / template}: {exc}") from exc
