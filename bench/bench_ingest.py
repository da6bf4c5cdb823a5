"""End-to-end ``ingest`` throughput into a real engine, as a ratio to a plain ``_bulk``.

    python bench/bench_ingest.py [--url http://127.0.0.1:9200] [--events 50000] [--repeat 2]

Workload: ``kaudit_elk.ingest.bulk.ingest`` on a file (read, decode, normalize, bulk with 2 workers,
item classification). Baseline: the same documents, normalized beforehand, sent as plain
``_bulk`` requests of the same size by one client (what a hand-written loader does).
Each run writes into a fresh data stream with the same templates. Target: >= 0.8x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import compare, report  # noqa: E402

from kaudit_elk.cluster.bootstrap import apply, build_plan  # noqa: E402
from kaudit_elk.base.config import Settings  # noqa: E402
from kaudit_elk.cluster.engine import connect  # noqa: E402
from kaudit_elk.ingest.bulk import IngestOptions, ingest  # noqa: E402
from kaudit_elk.events.normalize import doc_id, normalize  # noqa: E402
from kaudit_elk.cluster.templates import BootstrapOptions, Names  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "golden" / "inputs"


def make_events(n: int) -> list[dict]:
    base = []
    for path in sorted(CORPUS.iterdir()):
        for line in path.read_bytes().splitlines():
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(ev, dict) and ev.get("kind") == "Event" and normalize(dict(ev)) is not None:
                base.append(ev)
    return [dict(base[i % len(base)], auditID=f"bench-{i:08d}") for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch-mb", type=float, default=4.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    engine = connect(Settings(url=args.url, timeout=120))
    events = make_events(args.events)
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "bench.log"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    batch_bytes = int(args.batch_mb * 1024 * 1024)

    state = {"ns": ""}

    def fresh() -> None:
        state["ns"] = f"bench{uuid.uuid4().hex[:8]}"
        opts = BootstrapOptions(namespace=state["ns"], pipeline=False)
        apply(engine, build_plan(engine, opts), opts)

    prebuilt: list[bytes] = []
    for ev in events:
        doc = normalize(dict(ev))
        prebuilt.append(orjson.dumps({"create": {"_id": doc_id("default", ev["auditID"], ev.get("stage", ""))}})
                        + b"\n" + orjson.dumps(doc) + b"\n")

    def plain_bulk() -> None:
        stream = Names(state["ns"]).stream
        chunk: list[bytes] = []
        size = 0
        for pair in prebuilt:
            chunk.append(pair)
            size += len(pair)
            if size >= batch_bytes:
                engine.request("POST", f"/{stream}/_bulk", body=b"".join(chunk), params={"pipeline": "_none"}, ndjson=True)
                chunk, size = [], 0
        if chunk:
            engine.request("POST", f"/{stream}/_bulk", body=b"".join(chunk), params={"pipeline": "_none"}, ndjson=True)

    def kaudit_ingest() -> None:
        stats = ingest(engine, [str(path)], IngestOptions(namespace=state["ns"], batch_bytes=batch_bytes, workers=args.workers,
                                                          dead_letter=None))
        assert stats.indexed == len(events), stats

    result = compare(f"ingest {args.events} events ({engine.info.label})", "plain _bulk of pre-built docs",
                     len(events), kaudit_ingest, plain_bulk, repeat=args.repeat, target=0.8, setup=fresh)
    report([result], as_json=args.json)


if __name__ == "__main__":
    main()
