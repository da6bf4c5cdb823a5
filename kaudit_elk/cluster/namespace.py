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
        body: dict[str, Any] | None = engine.request("GET", f"/{stream}/_mapping", ignore=(404,))
        return body
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


def require_bootstrapped(engine: Engine, namespace: str, purpose: str = "write") -> None:
    """Raise :class:`NotBootstrapped` (exit 2) unless ``namespace`` is ready for ``ingest``/``serve``
    (``purpose`` "detect": for ``detect``, which reads the stream and writes alerts and state)."""
    names = Names(namespace)
    hint = f"run `kaudit-elk bootstrap --namespace {namespace}` first"
    found = squatter(engine, namespace)
    if found is not None:
        raise NotBootstrapped(f"cannot {'detect in' if purpose == 'detect' else 'write to'} namespace "
                              f"{namespace!r}: {found.explain(names)}; {hint} (it explains the repair)")
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
    if purpose == "detect":
        raise NotBootstrapped(
            f"namespace {namespace!r} was never bootstrapped on this cluster (no index template "
            f"{names.audit_template}, no {names.state_index}): there is nothing to detect in and nowhere to store "
            f"alerts; {hint} (and ingest into it), or pass the --namespace you ingest into")
    raise NotBootstrapped(
        f"namespace {namespace!r} was never bootstrapped on this cluster (no index template {names.audit_template}); "
        f"{hint}: writing now would create {names.stream} with dynamic mappings that lose events")


# ---- readers: report, tune --from ----------------------------------------------------------------
class NothingStored(KauditError):
    """A reader asked for what this cluster does not hold (no audit stream, no alerts index): exit 2."""

    exit_code = EXIT_USAGE


def _exists(engine: Engine, index: str) -> bool:
    """Whether ``index`` (a data stream, index or alias) exists; searches, so a reader may ask."""
    return engine.request("POST", f"/{index}/_search", {"size": 0, "track_total_hits": False},
                          ignore=(404,)) is not None


def bootstrapped(engine: Engine, namespace: str) -> bool | None:
    """True/False: kaudit-elk's template or bootstrap's state document is (not) there; None: may not look."""
    names = Names(namespace)
    template = _template_owned(engine, names)
    if template:
        return True
    state = _state_recorded(engine, names)
    if state:
        return True
    return None if template is None and state is None else False


def require_known(engine: Engine, namespace: str, command: str) -> None:
    """Raise :class:`NotBootstrapped` (exit 2) when ``namespace`` was certainly never bootstrapped (a mistyped
    ``--namespace``), so that ``retention``, ``archive`` and ``verify`` do not report nothing done as success.
    A user who may read neither templates nor the state index is let through (the command then says what it finds)."""
    if bootstrapped(engine, namespace) is False:
        raise NotBootstrapped(
            f"namespace {namespace!r} was never bootstrapped on this cluster (no index template "
            f"{Names(namespace).audit_template}, no bootstrap record), so {command} has nothing to work on; check "
            f"--namespace, or run `kaudit-elk bootstrap --namespace {namespace}` first")


def _others(engine: Engine, path: str, key: str, prefix: str) -> list[str]:
    """Namespaces that do hold something here (a hint for a mistyped --namespace); [] when not allowed."""
    try:
        body = engine.request("GET", path, ignore=(404,)) or {}
    except EngineRequestError:
        return []
    names = [item.get("name", "") for item in body.get(key, [])] if key else list(body)
    return sorted(n[len(prefix):] for n in names if n.startswith(prefix) and not n.startswith("."))


def _hint_others(found: list[str], what: str) -> str:
    if not found:
        return ""
    shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    return f" (namespaces with {what} on this cluster: {shown})"


def _never(engine: Engine, namespace: str, what: str) -> str:
    stream = Names(namespace).stream
    others = _others(engine, f"/_data_stream/{stream[: -len(namespace)]}*", "data_streams", stream[: -len(namespace)])
    return (f"namespace {namespace!r} was never bootstrapped on this cluster, so it holds no {what}"
            f"{_hint_others(others, 'audit streams')}; check --namespace, or run "
            f"`kaudit-elk bootstrap --namespace {namespace}` and send it events")


def require_stream(engine: Engine, namespace: str) -> None:
    """Raise :class:`NothingStored` (exit 2) unless the namespace's audit stream exists (``report``)."""
    stream = Names(namespace).stream
    if _exists(engine, stream):
        return
    state = bootstrapped(engine, namespace)
    if state is False:
        raise NothingStored(f"cannot report: {_never(engine, namespace, 'audit events')}")
    why = "was bootstrapped but" if state else "(bootstrapped or not: this user may not tell)"
    raise NothingStored(
        f"cannot report: {stream} does not exist: namespace {namespace!r} {why} no audit event was ever stored "
        f"in it; send events with `kaudit-elk ingest --namespace {namespace} FILE` or `kaudit-elk serve "
        f"--namespace {namespace}` (or check --namespace)")


def detect_has_run(engine: Engine, namespace: str) -> bool:
    """Whether ``detect`` ever completed a run for the namespace (it saves its positions in the state index)."""
    try:
        body = engine.request("POST", f"/{Names(namespace).state_index}/_search",
                              {"size": 0, "track_total_hits": 1, "query": {"term": {"kind": "rule"}}}, ignore=(404,))
    except EngineRequestError as exc:
        if exc.status in _DENIED:
            return False
        raise
    total = ((body or {}).get("hits") or {}).get("total") or 0
    return bool(total.get("value", 0) if isinstance(total, dict) else total)


def require_alerts_index(engine: Engine, namespace: str) -> bool:
    """For ``tune --from``: True when the alerts index exists; False when ``detect`` has run and never raised
    an alert (a real zero); :class:`NothingStored` (exit 2) when there is no alerts index to read."""
    names = Names(namespace)
    if _exists(engine, names.alerts_index):
        return True
    if detect_has_run(engine, namespace):
        return False
    if bootstrapped(engine, namespace) is False:
        raise NothingStored(f"no alerts index {names.alerts_index}: {_never(engine, namespace, 'alerts')}")
    others = _others(engine, "/kaudit-alerts-*/_alias", "", "kaudit-alerts-")
    raise NothingStored(
        f"no alerts index {names.alerts_index}: detect has never run for namespace {namespace!r}, so there is no "
        f"alert history to tune on{_hint_others(others, 'alerts')}; schedule `kaudit-elk detect --namespace "
        f"{namespace}` (or check --namespace), or tune on audit log files instead (`kaudit-elk tune FILE...`)")
