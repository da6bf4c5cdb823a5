"""Storage cost of kaudit's whole-body copy (``kaudit.body.request``/``response``), on a real engine.

The same events (default: one day of ``bench.corpus``'s generated cluster) are normalized once and
indexed into two fresh streams bootstrapped by kaudit-elk: one with the documents as written, one
with the body copies removed (what the store would hold if bodies were only under
``kubernetes.audit.requestObject``/``responseObject``, mapped as Elastic maps them). Both are force
merged to one segment; the figure is the ratio of their primary store sizes (same run, same engine).

    python -m bench.bench_body_copy --url http://127.0.0.1:9600 [--events day.ndjson | --days 1]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any, Iterator

import orjson

from kaudit_elk.cluster.bootstrap import apply, build_plan
from kaudit_elk.cluster.engine import EngineRequestError, connect
from kaudit_elk.cluster.templates import BootstrapOptions, Names
from kaudit_elk.base.config import Settings
from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.normalize import NormalizeOptions, doc_id, normalize

_COPY_KEYS = tuple(field.rsplit(".", 1)[1] for _, field in fs.BODY_COPIES)
_CHUNK = 4 << 20


def _events(path: str | None, days: float) -> Iterator[dict[str, Any]]:
    if path:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)
        return
    from bench.corpus import benign_events

    yield from benign_events(days, 1)


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    body = (doc.get("kaudit") or {}).get("body")
    if isinstance(body, dict):
        for key in _COPY_KEYS:
            body.pop(key, None)
        if not body:
            del doc["kaudit"]["body"]
            if not doc["kaudit"]:
                del doc["kaudit"]
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_body_copy", description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--events", help="NDJSON audit events (default: generate --days of bench.corpus)")
    ap.add_argument("--days", type=float, default=1.0)
    args = ap.parse_args(argv)
    engine = connect(Settings(url=args.url))
    tag = uuid.uuid4().hex[:6]
    streams: dict[str, str] = {}
    for variant in ("copy", "nocopy"):
        namespace = f"bodycost{variant}{tag}"
        options = BootstrapOptions(namespace=namespace)
        apply(engine, build_plan(engine, options), options)
        streams[variant] = Names(namespace).stream
    buffers: dict[str, list[bytes]] = {v: [] for v in streams}
    sizes = dict.fromkeys(streams, 0)
    events = with_body = 0

    def flush(variant: str) -> None:
        if buffers[variant]:
            result = engine.bulk(b"".join(buffers[variant]))
            bad = [i for i in result.get("items", ()) if (i.get("create") or {}).get("status", 201) >= 300]
            if bad:
                raise SystemExit(f"{variant}: {len(bad)} items refused, first: {bad[0]}")
            buffers[variant].clear()
            sizes[variant] = 0

    for event in _events(args.events, args.days):
        for variant, stream in streams.items():
            doc = normalize(event, NormalizeOptions(namespace=stream.rsplit("-", 1)[1]))
            if doc is None:
                break
            if variant == "copy" and (doc.get("kaudit") or {}).get("body"):
                with_body += 1
            if variant == "nocopy":
                doc = _strip(doc)
            audit = doc["kubernetes"]["audit"]
            action = {"create": {"_index": stream, "_id": doc_id("default", audit.get("auditID", ""), audit.get("stage", ""))}}
            line = orjson.dumps(action) + b"\n" + orjson.dumps(doc) + b"\n"
            buffers[variant].append(line)
            sizes[variant] += len(line)
            if sizes[variant] > _CHUNK:
                flush(variant)
        else:
            events += 1
    for variant in streams:
        flush(variant)
    out: dict[str, Any] = {"engine": engine.info.label,
                           "events": events, "events_with_body": with_body}
    for variant, stream in streams.items():
        engine.request("POST", f"/{stream}/_refresh")
        engine.request("POST", f"/{stream}/_forcemerge", params={"max_num_segments": "1"})
        stats = engine.request("GET", f"/{stream}/_stats/store,docs")["_all"]["primaries"]
        out[variant] = {"docs": stats["docs"]["count"], "store_bytes": stats["store"]["size_in_bytes"]}
    out["ratio_copy_over_nocopy"] = round(out["copy"]["store_bytes"] / out["nocopy"]["store_bytes"], 3)
    print(orjson.dumps(out).decode())
    for stream in streams.values():
        try:
            engine.request("DELETE", f"/_data_stream/{stream}", ignore=(404,))
        except EngineRequestError as exc:  # the integ-test Elasticsearch has no data-stream REST API
            print(f"{stream} left in place: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
