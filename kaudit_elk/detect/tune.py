"""History for ``kaudit-elk tune``: the alerts of past files (the pack run on them) or of the alerts index."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from kaudit_elk.cluster.templates import Names
from kaudit_elk.rules.alerts import severity_rank
from kaudit_elk.rules.loader import RulePack

if TYPE_CHECKING:
    from kaudit_elk.cluster.engine import Engine

_PAGE = 1000


def alerts_from_files(paths: Sequence[str], pack: RulePack, min_severity: str = "low",
                      on_error: Any = None) -> list[dict[str, Any]]:
    """The alerts ``scan`` raises on ``paths`` (the history to tune on)."""
    from kaudit_elk.detect.scan import scan

    return list(scan(paths, pack, min_severity=min_severity, on_error=on_error))


def alerts_from_engine(engine: "Engine", namespace: str, start: datetime, end: datetime,
                       min_severity: str = "low") -> Iterator[dict[str, Any]]:
    """The alerts ``detect`` stored in ``kaudit-alerts-<namespace>`` with @timestamp in [start, end)."""
    index = Names(namespace).alerts_index
    query = {"bool": {"filter": [
        {"range": {"@timestamp": {"gte": start.isoformat(), "lt": end.isoformat()}}},
        {"range": {"kaudit.alert.severity_rank": {"gte": severity_rank(min_severity)}}}]}}
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {"size": _PAGE, "query": query, "track_total_hits": False,
                                "sort": [{"@timestamp": "asc"}, {"kaudit.alert.id": "asc"}]}
        if after is not None:
            body["search_after"] = after
        resp = engine.search(f"/{index}/_search", body, ignore=(404,))
        hits = ((resp or {}).get("hits") or {}).get("hits") or []
        for h in hits:
            yield h["_source"]
        if len(hits) < _PAGE:
            return
        after = hits[-1]["sort"]
