"""One full ``detect`` run over a busy index: seconds per run and memory, and whether the cost grows
with the events stored *outside* the searched window (it must not).

    python bench/bench_detect.py [--url http://127.0.0.1:9200] [--events 1000000] [--repeat 3]

Builds one data stream holding the sample audit log (519 events, shifted into the last hour)
plus ``--events`` background events from the days before. Baseline: a detect run on a stream that
holds only the sample. Workload: the same run on the big stream. ratio = baseline / workload
(1.0 = the stored history costs nothing). Also prints the run's peak Python memory (tracemalloc).
Each case runs ``--repeat`` times, interleaved, from a reset detect state (no positions, no alerts);
the best time counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Result, report  # noqa: E402

from kaudit_elk.cluster.bootstrap import apply, build_plan  # noqa: E402
from kaudit_elk.base.config import Settings  # noqa: E402
from kaudit_elk.detect.scheduled import DetectOptions, run_detect  # noqa: E402
from kaudit_elk.cluster.engine import connect  # noqa: E402
from kaudit_elk.ingest.bulk import IngestOptions, ingest  # noqa: E402
from kaudit_elk.events.normalize import doc_id, normalize  # noqa: E402
from kaudit_elk.rules.loader import default_pack_dir, load_rules  # noqa: E402
from kaudit_elk.detect.scan import sample_path  # noqa: E402
from kaudit_elk.cluster.templates import BootstrapOptions, Names  # noqa: E402

KEYS = ("requestReceivedTimestamp", "stageTimestamp")


def shifted_sample(end: datetime) -> list[dict]:
    events = [json.loads(x) for x in sample_path().read_text().splitlines() if x.strip()]
    last = max(datetime.fromisoformat(e[k].replace("Z", "+00:00")) for e in events for k in KEYS if e.get(k))
    for e in events:
        for k in KEYS:
            if e.get(k):
                t = datetime.fromisoformat(e[k].replace("Z", "+00:00")) + (end - last)
                e[k] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return events


def load_background(engine, stream: str, n: int, before: datetime, span_days: float = 7) -> None:
    """n background events spread over the ``span_days`` before ``before``, bulk-loaded pre-normalized."""
    base = shifted_sample(before)
    span = span_days * 86400
    chunk: list[bytes] = []
    for i in range(n):
        ev = dict(base[i % len(base)], auditID=f"bg-{i:09d}")
        t = before - timedelta(seconds=span * (i + 1) / n)
        ev["requestReceivedTimestamp"] = ev["stageTimestamp"] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        doc = normalize(ev)
        chunk.append(orjson.dumps({"create": {"_id": doc_id("default", ev["auditID"], ev.get("stage", ""))}}))
        chunk.append(orjson.dumps(doc))
        if len(chunk) >= 10000:
            engine.request("POST", f"/{stream}/_bulk", body=b"\n".join(chunk) + b"\n", params={"pipeline": "_none"}, ndjson=True)
            chunk = []
    if chunk:
        engine.request("POST", f"/{stream}/_bulk", body=b"\n".join(chunk) + b"\n", params={"pipeline": "_none"}, ndjson=True)
    engine.request("POST", f"/{stream}/_refresh")


def reset(engine, namespace: str) -> None:
    """Forget every position and alert of ``namespace`` (the state and alerts indices are deleted and
    bootstrapped again; the test engines have no _delete_by_query): the next run starts from scratch."""
    names = Names(namespace)
    for index in (names.state_index, names.alerts_index):
        engine.request("DELETE", f"/{index}", ignore=(404,))
    opts = BootstrapOptions(namespace=namespace, pipeline=False)
    apply(engine, build_plan(engine, opts), opts)


def one_run(engine, pack, namespace: str) -> tuple[float, int, int]:
    opts = DetectOptions(namespace=namespace, initial_lookback=timedelta(hours=1), max_step=timedelta(hours=1),
                         delay=timedelta(0), min_severity="low")
    tracemalloc.start()
    start = time.perf_counter()
    result = run_detect(engine, pack, opts, [])
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak, len(result.new_alerts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    engine = connect(Settings(url=args.url, timeout=300))
    pack = load_rules([default_pack_dir()])
    now = datetime.now(timezone.utc)
    sample = shifted_sample(now - timedelta(minutes=10))
    tmp = Path(tempfile.mkdtemp()) / "sample.log"
    tmp.write_text("\n".join(json.dumps(e) for e in sample) + "\n")
    # old: beyond every look-back (new-terms history is at most 10 days, correlation replay 1 day);
    # history: inside the new-terms history window, which detect must read to know what is new.
    cases = (("empty", 0, now, 0), ("old", args.events, now - timedelta(days=11), 30),
             ("history", args.events, now - timedelta(hours=2), 7))
    namespaces = {}
    for label, background, before, span_days in cases:
        ns = namespaces[label] = f"bdet{uuid.uuid4().hex[:8]}"
        opts = BootstrapOptions(namespace=ns, pipeline=False)
        apply(engine, build_plan(engine, opts), opts)
        ingest(engine, [str(tmp)], IngestOptions(namespace=ns, dead_letter=None, refresh=True))
        t0 = time.perf_counter()
        if background:
            load_background(engine, Names(ns).stream, background, before, span_days)
            print(f"{label}: loaded {background:,} background events in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    runs: dict[str, tuple[float, int, int]] = {}
    for _ in range(max(1, args.repeat)):
        for label, ns in namespaces.items():
            reset(engine, ns)
            run = one_run(engine, pack, ns)
            if label not in runs or run[0] < runs[label][0]:
                runs[label] = run
    bs, bmem, balerts = runs["empty"]
    results = []
    for label, what in (("old", "older than every look-back"), ("history", "inside the new-terms history (last 7 days)")):
        ws, wmem, walerts = runs[label]
        results.append(Result(f"detect, {args.events:,} stored {what}", "same run, nothing stored", 1, ws, bs,
                              0.8 if label == "old" else None))
        print(f"{label}: {ws:.2f}s vs {bs:.2f}s; peak Python memory {wmem / 1e6:.1f} MB vs {bmem / 1e6:.1f} MB; "
              f"{walerts} vs {balerts} alerts", file=sys.stderr)
    # Alert counts differ with history: a term seen in the days before is not new (new-terms rules).
    report(results)


if __name__ == "__main__":
    main()
