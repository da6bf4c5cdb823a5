"""``kaudit-elk archive``: closed periods (rolled-over backing indices) to a snapshot repository,
``archive verify`` (restore into scratch indices and run ``verify`` there), and retention profiles.

One snapshot per closed backing index, named ``kaudit-<namespace>-<index>``, holding that index and
the integrity index as it was, with the period in the snapshot's metadata. Only core snapshot APIs
are used, so any repository type works (``fs`` with ``path.repo``; S3/GCS/Azure are configuration of
the cluster). Snapshots are not WORM: keep the repository's storage write-once where the framework
requires it (e.g. S3 Object Lock on the bucket, outside the engine).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kaudit_elk.base.errors import ConfigError
from kaudit_elk.base.timeparse import parse_iso
from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.cluster.integrity import integrity_index
from kaudit_elk.cluster.templates import Names
from kaudit_elk.trail.verify import VerifyReport, verify

DEFAULT_REPOSITORY = "kaudit-archive"


@dataclass(frozen=True, slots=True)
class RetentionProfile:
    name: str
    framework: str
    searchable_days: int  # immediately available: the lifecycle (bootstrap --retention-days)
    retained_days: int  # kept in total: the archive
    requirement: str


PROFILES: dict[str, RetentionProfile] = {p.name: p for p in (
    RetentionProfile("pci-dss", "PCI DSS v4.0.1 requirement 10.5.1", 90, 365,
                     "Retain audit log history for at least 12 months, with at least the most recent three months "
                     "immediately available for analysis."),
    RetentionProfile("soc2", "SOC 2 (TSC 2017 CC7.2/CC7.3)", 90, 365,
                     "No prescribed retention: the evidence must cover the Type 2 observation period "
                     "(typically six to twelve months)."),
    RetentionProfile("iso27001", "ISO/IEC 27001:2022 Annex A 8.15", 90, 365,
                     "Logs produced, stored, protected and analysed; no fixed retention (one year is the usual "
                     "choice)."),
    RetentionProfile("omb-m-21-31", "US OMB M-21-31", 365, 548,
                     "At least 12 months online and 18 months total (reported superseded by M-26-14: check before "
                     "relying on it)."),
)}


def profile(name: str) -> RetentionProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown retention profile {name!r}: one of {', '.join(PROFILES)}") from None


@dataclass(slots=True)
class Snapshot:
    name: str
    state: str
    backing_index: str
    min_ts: str | None
    max_ts: str | None
    docs: int
    end_time: str | None


@dataclass(slots=True)
class ArchiveResult:
    created: list[Snapshot] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # closed indices archived before
    deleted: list[str] = field(default_factory=list)  # snapshots past the retained period
    open_index: str | None = None  # the write index (not closed yet)


def snapshot_name(namespace: str, index: str) -> str:
    return f"kaudit-{namespace}-{index.lstrip('.')}".lower()


def ensure_repository(engine: Engine, repository: str, fs_location: str | None = None) -> None:
    """Register an ``fs`` repository at ``fs_location`` (when given), else check that ``repository`` exists."""
    if fs_location:
        engine.request("PUT", f"/_snapshot/{repository}", {"type": "fs", "settings": {"location": fs_location}})
        return
    if engine.request("GET", f"/_snapshot/{repository}", ignore=(404,)) is None:
        raise ConfigError(f"snapshot repository {repository!r} does not exist: register it (S3, GCS, Azure, fs) or "
                          "pass --fs-location (a path under the engine's path.repo)")


def backing_indices(engine: Engine, namespace: str) -> list[str]:
    """The stream's backing indices, oldest first (the last one is the write index)."""
    body = engine.request("GET", f"/{Names(namespace).stream}/_settings/index.creation_date", ignore=(404,)) or {}
    return [name for name, _ in sorted(body.items(), key=lambda kv: int(kv[1]["settings"]["index"]["creation_date"]))]


def list_snapshots(engine: Engine, repository: str, namespace: str) -> list[Snapshot]:
    body = engine.request("GET", f"/_snapshot/{repository}/_all", ignore=(404,)) or {}
    out = []
    for s in body.get("snapshots", []):
        meta = (s.get("metadata") or {}).get("kaudit") or {}
        if meta.get("namespace") != namespace:
            continue
        out.append(Snapshot(s["snapshot"], s.get("state", ""), str(meta.get("backing_index", "")), meta.get("min_ts"),
                            meta.get("max_ts"), int(meta.get("docs", 0)), s.get("end_time")))
    return out


def _period(engine: Engine, index: str) -> tuple[str | None, str | None, int]:
    res = engine.request("POST", f"/{index}/_search", {"size": 0, "track_total_hits": True, "aggs": {
        "lo": {"min": {"field": "@timestamp"}}, "hi": {"max": {"field": "@timestamp"}}}})
    aggs = res["aggregations"]
    return aggs["lo"].get("value_as_string"), aggs["hi"].get("value_as_string"), int(res["hits"]["total"]["value"])


def archive(engine: Engine, namespace: str, repository: str = DEFAULT_REPOSITORY, keep_days: float | None = None,
            dry_run: bool = False, now: float | None = None) -> ArchiveResult:
    """Snapshot every closed backing index not archived yet; delete snapshots older than ``keep_days``."""
    result = ArchiveResult()
    indices = backing_indices(engine, namespace)
    if not indices:
        return result
    *closed, result.open_index = indices
    have = {s.backing_index: s for s in list_snapshots(engine, repository, namespace) if s.state == "SUCCESS"}
    chain = integrity_index(namespace)
    chain_exists = engine.request("GET", f"/{chain}/_settings", ignore=(404,)) is not None
    for index in closed:
        if index in have:
            result.already.append(index)
            continue
        lo, hi, docs = _period(engine, index)
        snap = Snapshot(snapshot_name(namespace, index), "PLANNED" if dry_run else "", index, lo, hi, docs, None)
        if not dry_run:
            body = engine.request("PUT", f"/_snapshot/{repository}/{snap.name}", {
                "indices": ",".join([index] + ([chain] if chain_exists else [])), "include_global_state": False,
                "metadata": {"kaudit": {"namespace": namespace, "backing_index": index, "integrity_index": chain,
                                        "min_ts": lo, "max_ts": hi, "docs": docs}}},
                params={"wait_for_completion": "true"})
            info = body.get("snapshot") or {}
            snap.state, snap.end_time = str(info.get("state", "")), info.get("end_time")
            if snap.state != "SUCCESS":
                raise ConfigError(f"snapshot {snap.name} ended {snap.state}: {info.get('failures')}")
        result.created.append(snap)
    if keep_days is not None:
        cutoff = (now or time.time()) - keep_days * 86400
        for s in list_snapshots(engine, repository, namespace):
            newest = _epoch(s.max_ts)
            if newest is not None and newest < cutoff:
                if not dry_run:
                    engine.request("DELETE", f"/_snapshot/{repository}/{s.name}")
                result.deleted.append(s.name)
    return result


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return parse_iso(text, "archive time").timestamp()


def archive_verify(engine: Engine, namespace: str, snapshot: str, repository: str = DEFAULT_REPOSITORY) -> VerifyReport:
    """Restore ``snapshot`` into scratch indices, run verify on the copy, delete the copy."""
    found = [s for s in list_snapshots(engine, repository, namespace) if s.name == snapshot]
    if not found:
        raise ConfigError(f"no kaudit snapshot {snapshot!r} for namespace {namespace!r} in repository {repository!r}")
    snap = found[0]
    prefix = f"kaudit-restore-{uuid.uuid4().hex[:8]}-"
    chain = integrity_index(namespace)
    restored_index, restored_chain = prefix + snap.backing_index.lstrip("."), prefix + chain
    try:
        engine.request("POST", f"/_snapshot/{repository}/{snapshot}/_restore", {
            "indices": f"{snap.backing_index},{chain}", "ignore_unavailable": True, "include_global_state": False,
            "rename_pattern": r"^\.?(.+)$", "rename_replacement": prefix + "$1",
            "include_aliases": False}, params={"wait_for_completion": "true"})
        report = verify(engine, namespace, snap.min_ts or "1970-01-01T00:00:00Z", snap.max_ts or "now",
                        stream=restored_index, chain_index=restored_chain, backing_index=snap.backing_index)
        if report.stored != snap.docs:
            report.notes.append(f"the snapshot's metadata says {snap.docs} documents, the restored copy holds "
                                f"{report.stored}")
        return report
    finally:
        for name in (restored_index, restored_chain):
            try:
                engine.request("DELETE", f"/{name}", ignore=(404,))
            except EngineRequestError:
                pass


def as_dict(s: Snapshot) -> dict[str, Any]:
    return {"snapshot": s.name, "state": s.state, "backing_index": s.backing_index, "min_ts": s.min_ts,
            "max_ts": s.max_ts, "docs": s.docs, "end_time": s.end_time}
