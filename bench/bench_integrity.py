"""The integrity chain's cost on ``ingest``, as a ratio to the same ingest without it.

    python bench/bench_integrity.py [--url http://127.0.0.1:9200] [--events 30000] [--repeat 3]

Workload: ``ingest`` of a file with the chain (a digest per document, one link per batch written to
``kaudit-integrity-<namespace>``). Baseline: the same ingest with ``integrity=False``. Runs alternate,
best of N, each into a fresh data stream. Target: >= 0.95x (the chain costs at most 5%).

On OpenSearch also the write-once final pipeline's cost: ``ingest`` (with the chain, whose digests are
then over sorted keys) into a stream bootstrapped with the pipeline, against one bootstrapped with
``--no-write-once``. Target: >= 0.8x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import make_events  # noqa: E402
from harness import Result, best_of, compare, report  # noqa: E402

from kaudit_elk.base.config import Settings  # noqa: E402
from kaudit_elk.cluster.bootstrap import apply, build_plan  # noqa: E402
from kaudit_elk.cluster.engine import connect  # noqa: E402
from kaudit_elk.cluster.templates import BootstrapOptions  # noqa: E402
from kaudit_elk.ingest.bulk import IngestOptions, ingest  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--events", type=int, default=30000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    engine = connect(Settings(url=args.url, timeout=120))
    events = make_events(args.events)
    path = Path(tempfile.mkdtemp()) / "bench.log"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    state = {"ns": ""}

    def fresh(write_once: bool = True) -> None:
        state["ns"] = f"bench{uuid.uuid4().hex[:8]}"
        opts = BootstrapOptions(namespace=state["ns"], pipeline=False, write_once=write_once)
        apply(engine, build_plan(engine, opts), opts)

    def run(chained: bool) -> None:
        stats = ingest(engine, [str(path)], IngestOptions(namespace=state["ns"], dead_letter=None, integrity=chained))
        assert stats.indexed == len(events), stats

    result = compare(f"ingest + integrity chain ({engine.info.label})", "ingest without the chain", len(events),
                     lambda: run(True), lambda: run(False), repeat=args.repeat, target=0.95, setup=fresh)
    results = [result]
    if engine.flavor == "opensearch":
        w = b = float("inf")
        for _ in range(args.repeat):  # alternating, each into a fresh stream bootstrapped outside the timing
            b = min(b, best_of(1, lambda: run(True), lambda: fresh(False)))
            w = min(w, best_of(1, lambda: run(True), lambda: fresh(True)))
        results.append(Result(f"ingest into a write-once stream ({engine.info.label})",
                              "the same without the write-once pipeline", len(events), w, b, 0.8))
    report(results, as_json=args.json)


if __name__ == "__main__":
    main()
