"""Is a namespace ready to be written to? The check ``ingest`` and ``serve`` make before writing.

Writing to a namespace that was never bootstrapped creates ``logs-kubernetes.audit_logs-<ns>``
from whatever template matches (or none): dynamic mappings, conflicts that reject events, and a
stream that a later ``bootstrap`` cannot repair. So writers refuse unless kaudit-elk's index
template (or the state document ``bootstrap`` writes, for users who may not read templates) is
there, and the stream, if it exists, was made from it. :func:`squatter` explains what occupies the
stream's name otherwise; ``bootstrap`` uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaudit_elk.base.errors import EXIT_USAGE, KauditError
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.cluster.templates import MANAGED_BY, Names

_DENIED = (401, 403)


class NotBootstrapped(KauditError):
    """The namespace has no kaudit-elk template, or its stream's name is taken by something else."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Squatter:
    """What holds the stream's name without being kaudit-elk's data stream."""

    kind: str  # "index" (a plain index or alias) | "data_stream" (made from another template)
    indices: tuple[str, ...]

    def explain(self, names: Names) -> str:
        stream = names.stream
        if self.kind == "index":
            return (f"{stream} is a plain index ({', '.join(self.indices)}), not kaudit-elk's data stream: it was "
                    "created by writing before bootstrap, with dynamic mappings that reject or mis-type events. "
                    "A data stream cannot take its name while it exists. To repair: copy what it holds "
                    f"(POST _reindex {{\"source\": {{\"index\": \"{stream}\"}}, \"dest\": {{\"index\": "
                    f"\"{stream}-old\"}}}}), delete it (DELETE /{stream}), run bootstrap again, then re-ingest "
                    "the source files (document ids are deterministic, nothing is duplicated)")
        return (f"{stream} is a data stream created from another template (write index {self.indices[-1]}), "
                "so its events do not get kaudit-elk's mappings")


def _mappings(engine: Engine, stream: str) -> dict[str, Any] | None:
    try:
        return engine.request("GET", f"/{stream}/_mapping", ignore=(404,))
    except EngineRequestError as exc:
        if exc.status in _DENIED:
            return None
        raise


def _ours(mapping: dict[str, Any]) -> bool:
    props = mapping.get("properties") or {}
    return str(mapping.get("dynamic")).lower() == "false" and "kaudit" in props and "kubernetes" in props


def squatter(engine: Engine, namespace: str) -> Squatter | None:
    """What occupies the namespace's stream name, if it is not kaudit-elk's data stream (None: free or ours)."""
    stream = Names(namespace).stream
    body = _mappings(engine, stream)
    if not body:
        return None
    backing = sorted(k for k in body if k.startswith(f".ds-{stream}-"))
    if len(backing) != len(body):
        return Squatter("index", tuple(sorted(body)))
    backing.sort(key=lambda name: name.rsplit("-", 1)[-1])  # .ds-<stream>-<date>-<generation>
    write = backing[-1]
    if not _ours((body[write] or {}).get("mappings") or {}):
        return Squatter("data_stream", tuple(backing))
    return None


def _template_owned(engine: Engine, names: Names) -> bool | None:
    """True/False: kaudit-elk's index template is (not) installed; None: this user may not look."""
    try:
        body = engine.request("GET", f"/_index_template/{names.audit_template}", ignore=(404,))
    except EngineRequestError as exc:
        if exc.status in _DENIED:
            return None
        raise
    for item in (body or {}).get("index_templates", []):
        if ((item.get("index_template") or {}).get("_meta") or {}).get("managed_by") == MANAGED_BY:
            return True
    return False


def _state_recorded(engine: Engine, names: Names) -> bool | None:
    try:
        body = engine.request("GET", f"/{names.state_index}/_doc/bootstrap", ignore=(404,))
    except EngineRequestError as exc:
        if exc.status in _DENIED:
            return None
        raise
    return bool(body and body.get("found"))


def require_bootstrapped(engine: Engine, namespace: str) -> None:
    """Raise :class:`NotBootstrapped` (exit 2) unless ``namespace`` is ready for ``ingest``/``serve``."""
    names = Names(namespace)
    hint = f"run `kaudit-elk bootstrap --namespace {namespace}` first"
    found = squatter(engine, namespace)
    if found is not None:
        raise NotBootstrapped(f"cannot write to namespace {namespace!r}: {found.explain(names)}; {hint} "
                              "(it explains the repair)")
    template = _template_owned(engine, names)
    if template:
        return
    state = _state_recorded(engine, names)
    if state:
        return
    if template is None and state is None:
        raise NotBootstrapped(
            f"cannot tell whether namespace {namespace!r} was bootstrapped: this user may read neither index "
            f"templates nor {names.state_index}; grant the cluster privilege monitor or read on "
            f"{names.state_index}, or {hint}")
    raise NotBootstrapped(
        f"namespace {namespace!r} was never bootstrapped on this cluster (no index template {names.audit_template}); "
        f"{hint}: writing now would create {names.stream} with dynamic mappings that lose events")
