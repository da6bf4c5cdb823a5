"""Engine identification and capability rules, on plain response bodies."""

from __future__ import annotations

import pytest

from kaudit_elk.cluster.engine import capabilities_from_nodes, parse_info
from kaudit_elk.base.errors import EngineError


def test_opensearch_identified_by_distribution() -> None:
    info = parse_info({"cluster_name": "c", "version": {"distribution": "opensearch", "number": "2.19.6"}})
    assert (info.flavor, info.version) == ("opensearch", (2, 19, 6))


def test_elasticsearch_snapshot_version_parsed() -> None:
    info = parse_info({"version": {"number": "9.2.0-SNAPSHOT", "build_flavor": "default"}})
    assert (info.flavor, info.version) == ("elasticsearch", (9, 2, 0))


@pytest.mark.parametrize(
    "body, words",
    [
        ({"version": {"number": "7.17.10"}}, "unsupported elasticsearch version 7.17.10"),
        ({"version": {"number": "1.3.2", "distribution": "opensearch"}}, "unsupported opensearch version 1.3.2"),
        ({"hello": "world"}, "does not look like Elasticsearch or OpenSearch"),
    ],
)
def test_unsupported_or_unknown_servers_are_refused(body: dict, words: str) -> None:
    with pytest.raises(EngineError, match=words):
        parse_info(body)


def test_ism_and_ilm_detected_from_plugins_and_modules() -> None:
    os_info = parse_info({"version": {"number": "2.19.6", "distribution": "opensearch"}})
    nodes = {"nodes": {"n": {"modules": [{"name": "lang-painless"}], "plugins": [{"name": "opensearch-index-management"}],
                             "ingest": {"processors": [{"type": "json"}]}}}}
    caps = capabilities_from_nodes(os_info, nodes)
    assert (caps.lifecycle, caps.flat_type, caps.painless) == ("ism", "flat_object", True)
    es_info = parse_info({"version": {"number": "8.19.7"}})
    caps = capabilities_from_nodes(es_info, {"nodes": {"n": {"modules": [{"name": "x-pack-ilm"}], "plugins": []}}})
    assert (caps.lifecycle, caps.flat_type, caps.painless) == ("ilm", "flattened", False)
