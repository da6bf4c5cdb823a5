"""``detect`` as history grows, and backfills against a plain scroll.

    python bench/bench_detect.py [--url http://127.0.0.1:9200] [--rate 1000] [--history-rate 20]
                                 [--hours 1,6,24] [--repeat 3]

A busy cluster is synthesised from templates: one hour of ``bench.corpus``'s production cluster
(control plane, kubelets, operators, CI, people; about 13k events), normalised once and replayed
at the rate wanted with fresh auditIDs (the stages of one request keep one id), plus the attack
sample (``scan``'s sample log) in the window; documents are bulk-loaded pre-normalised.

1. **Growing history.** Two streams hold the same 10 dense minutes at ``--rate`` events/s (a
   scheduled run's 5-minute window and its 5-minute overlap). One of them then grows, stage by stage,
   a history of ``--hours`` before that at ``--history-rate`` events/s. At each stage a scheduled
   5-minute run (from the state the run before it saved, as every run after the first) is timed on
   both, alternating, best of ``--repeat``: ratio = time with no history / time with the history
   (1.0 = flat; target 0.8), and the same for its requests. For contrast, the same run without a
   saved state (the quiet-point replay, the pre-state behaviour) is timed too.
2. **Backfill.** ``detect --since/--until`` over the last hour of history plus the dense part, as
   events/s, against a plain scroll (``_doc`` order, pages of 5,000, whole documents) reading every
   event of the same range: ratio = backfill events/s / scroll events/s (target 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import Result, report  # noqa: E402

from bench.corpus import benign_events  # noqa: E402

from kaudit_elk.base.config import Settings  # noqa: E402
from kaudit_elk.cluster.bootstrap import apply, build_plan  # noqa: E402
from kaudit_elk.cluster.engine import connect  # noqa: E402
from kaudit_elk.cluster.templates import BootstrapOptions, Names  # noqa: E402
from kaudit_elk.detect.scan import sample_path  # noqa: E402
from kaudit_elk.detect.scheduled import DetectOptions, read_state, run_detect, write_positions  # noqa: E402
from kaudit_elk.events.normalize import doc_id, normalize  # noqa: E402
from kaudit_elk.rules.loader import default_pack_dir, load_rules  # noqa: E402

KEYS = ("requestReceivedTimestamp", "stageTimestamp")
WINDOW = timedelta(minutes=5)
OVERLAP = timedelta(minutes=5)
#: The template's refresh interval: a scheduled window never ends closer to "now" than this.
DELAY = timedelta(seconds=5)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _templates(events: Iterator[dict]) -> list[dict]:
    """Each template event normalised once (documents are then stamped, not normalised again)."""
    return [doc for doc in (normalize(e) for e in events) if doc is not None]


def _lines(path: Path) -> Iterator[dict]:
    return (json.loads(line) for line in path.read_text().splitlines() if line.strip())


def _stamp(doc: dict, aid: str, ts: str) -> dict:
    audit = dict(doc["kubernetes"]["audit"], auditID=aid)
    for k in KEYS:
        if k in audit:
            audit[k] = ts
    out = dict(doc, kubernetes=dict(doc["kubernetes"], audit=audit))
    out["@timestamp"] = ts
    if "event" in out:
        out["event"] = {k: (ts if k in ("start", "end", "created") else v) for k, v in out["event"].items()}
    return out


def synth(templates: list[dict], start: float, end: float, rate: float, tag: str) -> Iterator[bytes]:
    """Bulk lines for ``rate`` events/s over [start, end), cycling through the templates."""
    n = int((end - start) * rate)
    for i in range(n):
        cycle, k = divmod(i, len(templates))
        tpl = templates[k]
        doc = _stamp(tpl, f"{tag}-{cycle}-{tpl['kubernetes']['audit'].get('auditID', k)}", _iso(start + (i + 0.5) / rate))
        yield orjson.dumps({"create": {"_id": doc_id("default", doc["kubernetes"]["audit"]["auditID"],
                                                     doc["kubernetes"]["audit"].get("stage", ""))}})
        yield orjson.dumps(doc)


def load(engine: Any, stream: str, lines: Iterator[bytes], per_request: int = 5000, threads: int = 2) -> int:
    """Bulk the lines with ``threads`` concurrent requests of ``per_request`` documents; returns the count."""
    lock = threading.Lock()
    count = 0
    errors: list[str] = []

    def worker() -> None:
        nonlocal count
        while True:
            with lock:
                chunk = [x for _, x in zip(range(per_request * 2), lines)]
            if not chunk:
                return
            resp = engine.request("POST", f"/{stream}/_bulk", body=b"\n".join(chunk) + b"\n",
                                  params={"pipeline": "_none"}, ndjson=True)
            if resp.get("errors"):
                bad = [i for i in resp["items"] if i["create"].get("status") not in (200, 201, 409)]
                if bad:
                    errors.append(str(bad[0]))
            with lock:
                count += len(chunk) // 2

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise SystemExit(f"bulk failed: {errors[0]}")
    engine.request("POST", f"/{stream}/_refresh")
    return count


def bootstrap(engine: Any, namespace: str) -> None:
    opts = BootstrapOptions(namespace=namespace, pipeline=False)
    apply(engine, build_plan(engine, opts), opts)


def reset(engine: Any, namespace: str) -> None:
    """Forget positions, state and alerts (the test engines have no _delete_by_query)."""
    names = Names(namespace)
    for index in (names.state_index, names.alerts_index):
        engine.request("DELETE", f"/{index}", ignore=(404,))
    bootstrap(engine, namespace)


class Counted:
    """Counts the requests a run sends (every kind: searches, bulks, state)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.n = engine, 0
        self._orig = engine.request

    def __enter__(self) -> "Counted":
        def counting(*a: Any, **kw: Any) -> Any:
            self.n += 1
            return self._orig(*a, **kw)
        self.engine.request = counting
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.request = self._orig


def options(namespace: str, **kw: Any) -> DetectOptions:
    return DetectOptions(namespace=namespace, overlap=OVERLAP, delay=DELAY, max_step=timedelta(hours=1),
                         min_severity="informational", notify_severity="medium", **kw)


class Scheduled:
    """The measured scheduled run of one namespace: positions at w0 with the state the run before saved."""

    def __init__(self, engine: Any, pack: Any, namespace: str, w0: datetime) -> None:
        self.engine, self.pack, self.ns, self.w0 = engine, pack, namespace, w0
        self.saved: dict | None = None

    def prepare(self) -> None:
        """The run before (untimed, and the first one, so it replays): it leaves positions and a state."""
        reset(self.engine, self.ns)
        write_positions(self.engine, Names(self.ns), [r.id for r in self.pack.rules], self.w0 - WINDOW)
        run_detect(self.engine, self.pack, options(self.ns), [], now=self.w0 + DELAY)
        self.saved = read_state(self.engine, Names(self.ns))
        assert self.saved is not None

    def run(self, with_state: bool = True) -> tuple[float, int, int]:
        reset(self.engine, self.ns)
        write_positions(self.engine, Names(self.ns), [r.id for r in self.pack.rules], self.w0,
                        state=self.saved if with_state else None)
        with Counted(self.engine) as counted:
            t = time.perf_counter()
            result = run_detect(self.engine, self.pack, options(self.ns), [], now=self.w0 + WINDOW + DELAY)
            elapsed = time.perf_counter() - t
        assert (result.replays == 0) == with_state, result.as_dict()
        return elapsed, counted.n, len(result.new_alerts)


def best(fn: Callable[[], tuple[float, int, int]], repeat: int) -> tuple[float, int, int]:
    return min((fn() for _ in range(repeat)), key=lambda r: r[0])


def scroll_all(engine: Any, stream: str, start: float, end: float) -> int:
    """A plain scroll over every event in [start, end): the engine-speed baseline."""
    query = {"range": {"@timestamp": {"gte": int(start * 1000), "lt": int(end * 1000), "format": "epoch_millis"}}}
    resp = engine.request("POST", f"/{stream}/_search", {"size": 5000, "sort": ["_doc"], "query": query},
                          params={"scroll": "2m"})
    n = 0
    sid = resp.get("_scroll_id")
    while resp["hits"]["hits"]:
        n += len(resp["hits"]["hits"])
        resp = engine.request("POST", "/_search/scroll", {"scroll": "2m", "scroll_id": sid})
        sid = resp.get("_scroll_id", sid)
    engine.request("DELETE", "/_search/scroll", {"scroll_id": [sid]}, ignore=(404,))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--rate", type=float, default=1000, help="events/s in the dense 10 minutes (window + overlap)")
    ap.add_argument("--history-rate", type=float, default=20, help="events/s in the history before")
    ap.add_argument("--hours", default="1,6,24", help="history stages, hours before the dense part")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--events", type=int, help=argparse.SUPPRESS)  # accepted for bench/run.py; sizes come from the rates
    args = ap.parse_args()
    engine = connect(Settings(url=args.url, timeout=600))
    pack = load_rules([default_pack_dir()])
    templates = _templates(benign_events(days=1 / 24, seed=1))
    attack = _templates(_lines(sample_path()))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    w0 = now - timedelta(minutes=10)  # the measured window is [w0, w0 + 5m), read from w0 - overlap
    dense_start, dense_end = (w0 - OVERLAP).timestamp(), (w0 + WINDOW).timestamp()
    print(f"{engine.info.label}: rate {args.rate:,.0f}/s, history {args.history_rate:,.0f}/s", file=sys.stderr)

    ns = {"empty": f"bdet{uuid.uuid4().hex[:8]}", "grow": f"bdet{uuid.uuid4().hex[:8]}"}
    for label, namespace in ns.items():
        bootstrap(engine, namespace)
        stream = Names(namespace).stream
        t = time.perf_counter()
        n = load(engine, stream, synth(templates, dense_start, dense_end, args.rate, f"{label}-dense"))
        span = dense_end - (w0.timestamp())
        n += load(engine, stream, synth(attack, w0.timestamp(), dense_end, len(attack) / span, f"{label}-attack"))
        print(f"{label}: {n:,} events in the dense 10 minutes, loaded in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    runs = {label: Scheduled(engine, pack, namespace, w0) for label, namespace in ns.items()}
    runs["empty"].prepare()

    results: list[Result] = []
    lines: list[str] = []
    loaded = 0.0
    for hours in [float(h) for h in args.hours.split(",") if h.strip()]:
        lo, hi = dense_start - hours * 3600, dense_start - loaded * 3600
        t = time.perf_counter()
        n = load(engine, Names(ns["grow"]).stream, synth(templates, lo, hi, args.history_rate, f"hist{hours:g}"))
        print(f"history to {hours:g} h: +{n:,} events in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        loaded = hours
        runs["grow"].prepare()
        best_e, best_g = (float("inf"), 0, 0), (float("inf"), 0, 0)
        for _ in range(max(1, args.repeat)):
            e, g = runs["empty"].run(), runs["grow"].run()
            best_e, best_g = min(best_e, e), min(best_g, g)
        replay = runs["grow"].run(with_state=False)
        stored = engine.request("POST", f"/{Names(ns['grow']).stream}/_count")["count"]
        results.append(Result(f"scheduled 5-min run, {hours:g} h history ({stored:,} events stored)",
                              "same run, no history", 1, best_g[0], best_e[0], 0.8))
        lines.append(f"{hours:g} h: {best_g[0]:.2f}s vs {best_e[0]:.2f}s; requests {best_g[1]} vs {best_e[1]} "
                     f"(ratio {best_e[1] / best_g[1]:.2f}); alerts {best_g[2]} vs {best_e[2]}; "
                     f"without a saved state (replay): {replay[0]:.2f}s, {replay[1]} requests "
                     f"(ratio {best_e[0] / replay[0]:.2f}); load average {os.getloadavg()[0]:.1f}")
        print(lines[-1], file=sys.stderr)

    # backfill vs a plain scroll of the same range
    stream = Names(ns["grow"]).stream
    since = w0 - OVERLAP - timedelta(hours=min(1.0, loaded))
    until = w0 + WINDOW
    events = engine.request("POST", f"/{stream}/_count", {"query": {"range": {"@timestamp": {
        "gte": int(since.timestamp() * 1000), "lt": int(until.timestamp() * 1000), "format": "epoch_millis"}}}})["count"]
    bf, sc = float("inf"), float("inf")
    requests = 0
    for _ in range(max(1, args.repeat)):
        t = time.perf_counter()
        scroll_all(engine, stream, since.timestamp(), until.timestamp())
        sc = min(sc, time.perf_counter() - t)
        with Counted(engine) as counted:
            t = time.perf_counter()
            result = run_detect(engine, pack, options(ns["grow"], since=since, until=until), [])
            bf = min(bf, time.perf_counter() - t)
        requests = counted.n
    results.append(Result(f"backfill of {events:,} events", "plain scroll, whole documents", events, bf, sc, 0.5))
    lines.append(f"backfill: {events / bf:,.0f} events/s in {requests} requests ({result.matched:,} matched, "
                 f"{len(result.windows)} steps) vs scroll {events / sc:,.0f} events/s; "
                 f"load average {os.getloadavg()[0]:.1f}")
    print(lines[-1], file=sys.stderr)
    report(results)
    for namespace in ns.values():
        engine.request("DELETE", f"/_data_stream/{Names(namespace).stream}", ignore=(400, 404, 405))


if __name__ == "__main__":
    main()
