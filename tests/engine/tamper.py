"""How the engine tests tamper with stored audit data: as an administrator would."""

from __future__ import annotations

from typing import Any

import pytest

from kaudit_elk.cluster.engine import Engine, EngineRequestError


def rewrite_actor(source: dict[str, Any], who: str = "someone-else") -> dict[str, Any]:
    """``source`` with who did it rewritten: the raw ``kubernetes.audit.user.username`` (the stream's server-side
    pipeline derives ``user.name`` from it, so changing only the ECS copy would be undone) and ``user.name``."""
    audit = dict(source["kubernetes"]["audit"], user=dict(source["kubernetes"]["audit"].get("user") or {}, username=who))
    return dict(source, kubernetes=dict(source["kubernetes"], audit=audit), user=dict(source.get("user") or {}, name=who))


def overwrite_as_admin(engine: Engine, index: str, doc_id: str, body: dict[str, Any], **params: Any) -> None:
    """An administrator overwriting a stored document or integrity link. Where bootstrap installed the
    write-once pipeline (OpenSearch) the overwrite is refused even for them, so they first remove the
    pipeline from the index's settings, as a real insider would; `verify` must still find the change."""
    path = f"/{index}/_doc/{doc_id}"
    params = {k: str(v) for k, v in params.items()}
    settings = engine.request("GET", f"/{index}/_settings")
    if next(iter(settings.values()))["settings"]["index"].get("final_pipeline"):
        with pytest.raises(EngineRequestError) as refused:
            engine.request("PUT", path, body, params=params)
        assert refused.value.status == 400 and "write-once" in str(refused.value)
        engine.request("PUT", f"/{index}/_settings", {"index": {"final_pipeline": None}})
    engine.request("PUT", path, body, params=params)
