"""policy check --from-cluster on real engines: the levels and stages stored, per rule."""

from __future__ import annotations

import uuid
from pathlib import Path

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.templates import BootstrapOptions
from kaudit_elk.ingest.bulk import IngestOptions, ingest
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.trail.needs import pack_needs
from kaudit_elk.trail.observed import compare, fetch

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"


def test_stored_levels_and_rules_below_their_level(engine: Engine, tmp_path: Path) -> None:
    namespace = f"obs{uuid.uuid4().hex[:8]}"
    options = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, options), options)
    files = sorted(p for p in INPUTS.iterdir() if p.suffix == ".json" or p.suffix == ".log")
    stats = ingest(engine, [str(p) for p in files], IngestOptions(namespace=namespace, refresh=True,
                                                                  dead_letter=str(tmp_path / "d.ndjson")))
    seen = fetch(engine, namespace, "2000-01-01T00:00:00Z")
    assert sum(seen.levels.values()) == stats.indexed
    rows = {r.title: r for r in compare(seen, pack_needs(load_rules([default_pack_dir()])))}
    priv = rows["Privileged Container Created"]
    assert priv.events > 0 and priv.needs == "Request"
    assert priv.below == sum(n for lv, n in priv.levels.items() if lv in ("Metadata", "None"))
    # cross-check: the pod creates (no subresource) stored, counted by the engine itself
    from kaudit_elk.cluster.templates import Names

    count = engine.request("POST", f"/{Names(namespace).stream}/_count", {"query": {"bool": {
        "filter": [{"term": {"kubernetes.audit.objectRef.resource": "pods"}}, {"term": {"kubernetes.audit.verb": "create"}}],
        "must_not": [{"exists": {"field": "kubernetes.audit.objectRef.subresource"}}]}}})["count"]
    assert priv.events == count
