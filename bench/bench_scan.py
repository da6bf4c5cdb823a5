"""scan throughput with the whole rule pack, as a ratio to the normalizer alone, same run.

    /tmp/venv/bin/python bench/bench_scan.py [--events 100000] [--repeat 3]

Input: the shipped sample logs (busy-cluster background plus an attack story) and the native
corpus events under ../shared/corpus or $KAUDIT_CORPUS (when present), decoded once and repeated to ``--events``
events with unique auditIDs and increasing timestamps (so dedupe and correlation state behave as on
a real stream). Both pipelines start from decoded Event dicts, best of ``--repeat``:

* baseline: ``kaudit_elk.events.normalize.normalize(event)`` for every event
* scan:     ``Runner(pack).feed(event)`` for every event, then ``flush()`` (all rules, correlations,
            new-terms and per-request dedupe)

ratio = baseline time / scan time (1.0 = scanning costs as much as normalizing). Target: >= 0.3.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from kaudit_elk.events.normalize import normalize
from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.rules.runner import Runner
from kaudit_elk.events.sources import read_records

TARGET = 0.3
CORPUS = Path(os.environ.get("KAUDIT_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


def base_events() -> list[dict]:
    """Decoded events of the sample logs and the native corpus (envelopes unwrapped by sources)."""
    samples = default_pack_dir().parent / "samples"
    paths = [str(p) for p in sorted(samples.glob("*.log"))]
    if CORPUS.is_dir():
        paths += [str(p) for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.suffix in (".log", ".json", ".jsonl")
                  and "expected" not in p.name]
    out = []
    for rec in read_records(paths):
        if rec.event is not None and normalize(rec.event) is not None:
            out.append(rec.event)
    return out


def scaled(events: list[dict], n: int) -> list[dict]:
    """``n`` events cycling through ``events``, each with a unique auditID and a later timestamp."""
    t0 = datetime(2026, 1, 15, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        e = copy.copy(events[i % len(events)])
        e["auditID"] = f"bench-{i}"
        ts = (t0 + timedelta(milliseconds=20 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        e["requestReceivedTimestamp"] = ts
        e["stageTimestamp"] = ts
        out.append(e)
    return out


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    pack = load_rules([default_pack_dir()])
    events = scaled(base_events(), args.events)
    alerts: list[int] = []

    def run_normalize() -> None:
        for e in events:
            normalize(e)

    def run_scan() -> None:
        runner = Runner(pack)
        n = 0
        for e in events:
            n += len(runner.feed(e))
        n += len(runner.flush())
        alerts.append(n)

    t_base = best_of(args.repeat, run_normalize)
    t_scan = best_of(args.repeat, run_scan)
    ratio = t_base / t_scan
    print(f"events: {len(events):,}  rules: {len(pack.rules)}  alerts per pass: {alerts[-1]:,}")
    print(f"normalize (baseline): {len(events) / t_base:12,.0f} events/s")
    print(f"scan (whole pack):    {len(events) / t_scan:12,.0f} events/s")
    print(f"ratio scan/normalize: {ratio:.2f}x  (target >= {TARGET}) {'OK' if ratio >= TARGET else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
