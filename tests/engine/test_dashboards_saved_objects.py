"""Every exported OpenSearch Dashboards object is stored in OSD's own saved-objects index mapping.

No OpenSearch Dashboards can run here, so its saved-objects index is rebuilt in the real OpenSearch
engines (``osd_saved_objects``: root ``dynamic: strict`` + the four types' mappings from OSD's source) and
every object of ``dashboards export --flavor opensearch`` is written into it as OSD stores it. An attribute
OSD does not map is refused here exactly as OSD's import would refuse it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import pytest

from kaudit_elk.cluster.engine import Engine, EngineRequestError
from kaudit_elk.views import dashboards

from osd_saved_objects import index_mapping, raw_document

pytestmark = pytest.mark.engine


@pytest.fixture
def saved_objects_index(pipeline_engine: Engine) -> Iterator[tuple[Engine, str]]:
    index = f".kaudit-test-osd-{uuid.uuid4().hex[:8]}"
    pipeline_engine.request("PUT", f"/{index}", {"settings": {"number_of_replicas": 0}, "mappings": index_mapping()})
    yield pipeline_engine, index
    pipeline_engine.request("DELETE", f"/{index}", ignore=(404,))


def _bulk(engine: Engine, index: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    lines = []
    for obj in objects:
        _id, doc = raw_document(obj)
        lines += [json.dumps({"create": {"_index": index, "_id": _id}}), json.dumps(doc)]
    return engine.bulk("\n".join(lines) + "\n", refresh=True)


def test_every_exported_object_fits_the_saved_objects_mapping(saved_objects_index: tuple[Engine, str]) -> None:
    engine, index = saved_objects_index
    objects = dashboards.render("opensearch")
    result = _bulk(engine, index, objects)
    refused = {i["create"]["_id"]: i["create"]["error"]["reason"] for i in result["items"] if "error" in i["create"]}
    assert not refused, refused
    stored = engine.request("POST", f"/{index}/_search", {"size": 0, "track_total_hits": True,
                                                          "aggs": {"t": {"terms": {"field": "type"}}}})
    kinds = {b["key"]: b["doc_count"] for b in stored["aggregations"]["t"]["buckets"]}
    expected: dict[str, int] = {}
    for obj in objects:
        expected[obj["type"]] = expected.get(obj["type"], 0) + 1
    assert kinds == expected
    # the references are stored nested, as OSD's relationship lookups search them
    ref = next(o for o in objects if o["type"] == "dashboard")["references"][0]
    hits = engine.request("POST", f"/{index}/_search", {"query": {"nested": {"path": "references", "query": {
        "term": {"references.id": ref["id"]}}}}})["hits"]["hits"]
    assert any(h["_id"].startswith("dashboard:") for h in hits)


def test_an_attribute_osd_does_not_map_is_refused(saved_objects_index: tuple[Engine, str]) -> None:
    engine, index = saved_objects_index
    vis = next(o for o in dashboards.render("opensearch") if o["type"] == "visualization")
    bad = dict(vis, attributes=dict(vis["attributes"], lensState="{}"))
    (item,) = _bulk(engine, index, [bad])["items"]
    assert item["create"]["error"]["type"] == "strict_dynamic_mapping_exception", item
    with pytest.raises(EngineRequestError):
        engine.request("PUT", f"/{index}/_doc/x", {"type": "dashboard", "dashboard": {"title": "t", "panels": []}})
