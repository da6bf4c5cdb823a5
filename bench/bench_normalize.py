"""Normalizer throughput as a ratio to ``orjson.loads`` alone on the same lines, same run.

    /tmp/venv/bin/python bench/bench_normalize.py [--events 100000] [--repeat 5]

Corpus events (tests/golden/inputs) are split into Metadata-level events (no bodies) and
Request/RequestResponse-level events (with requestObject/responseObject), each list is repeated
to ``--events`` lines, and the pipelines are timed on it (best of ``--repeat``, interleaved):

* baseline: ``orjson.loads(line)``
* python:   ``orjson.loads(line)`` + ``envelopes.decode`` + ``normalize`` (a dict)
* native:   the fast path ``kaudit_elk_native`` (line -> document *bytes*, serialization included),
            what ``ingest`` uses when it is installed (``pip install ./native``)

ratio = baseline time / pipeline time (1.0 = normalizing is free). Targets: >= 0.3 (Metadata),
>= 0.5 (RequestResponse), judged on the default path (native when installed).

The last line is the cost of the body shape check (``fieldspec.BODY_SHAPES``) on the Python path for bodies
that fit, measured in the same run: ``normalize`` with the check / ``normalize`` with the lean check replaced
by one that passes every body unlooked, on the RequestResponse lines (1.00 = free). The native path checks while it walks the body; its
cost shows in the native ratio against an earlier build.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import orjson

from kaudit_elk.events import fastpath
from kaudit_elk.events import normalize as normalize_module
from kaudit_elk.events.envelopes import decode
from kaudit_elk.events.fieldspec import ENVELOPE_KEY
from kaudit_elk.events.normalize import DEFAULT, normalize

INPUTS = Path(__file__).resolve().parents[1] / "tests" / "golden" / "inputs"
TARGETS = {"Metadata": 0.3, "RequestResponse": 0.5}


def corpus_lines() -> dict[str, list[bytes]]:
    """Native corpus events as JSON lines, grouped by whether they carry bodies."""
    from kaudit_elk.events.sources import read_records

    groups: dict[str, list[bytes]] = {"Metadata": [], "RequestResponse": []}
    for record in read_records(sorted(str(p) for p in INPUTS.iterdir())):
        ev = record.event
        if ev is None or ENVELOPE_KEY in ev or normalize(dict(ev)) is None:
            continue
        key = "RequestResponse" if ("requestObject" in ev or "responseObject" in ev) else "Metadata"
        groups[key].append(orjson.dumps(ev))
    return groups


def best_of(repeat: int, *fns: Callable[[], object]) -> list[float]:
    """Best time of each function, runs interleaved (a, b, a, b, ...) so that load changes on a
    shared machine hit the baseline and the measured pipeline alike instead of skewing the ratio."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    loads = orjson.loads
    native = fastpath.line_normalizer(DEFAULT)
    rows = []
    for level, base in corpus_lines().items():
        lines = (base * (args.events // len(base) + 1))[: args.events]
        mean_bytes = sum(map(len, lines)) / len(lines)

        def baseline() -> None:
            for line in lines:  # noqa: B023 - called within this iteration
                loads(line)

        def python() -> None:
            for line in lines:  # noqa: B023 - called within this iteration
                for ev in decode(loads(line)):
                    normalize(ev)

        def fast() -> None:
            for line in lines:  # noqa: B023 - called within this iteration
                native(line)  # type: ignore[misc]

        if native is not None:
            declined = sum(native(line) is None for line in base)
            assert declined == 0, f"the native path declined {declined} {level} lines"
            t_base, t_py, t_native = best_of(args.repeat, baseline, python, fast)
        else:
            (t_base, t_py), t_native = best_of(args.repeat, baseline, python), None
        for path, t in (("python", t_py), ("native", t_native)):
            if t is not None:
                rows.append((level, path, len(base), len(lines), mean_bytes, len(lines) / t_base, len(lines) / t, t_base / t))
        if level == "RequestResponse":
            check_cost = _check_cost(lines, args.repeat)
            native_cost = _native_check_cost(lines, args.repeat) if native is not None else None
    default = "native" if native is not None else "python"
    print(f"{'level':<16}{'path':<8}{'distinct':>9}{'events':>9}{'avg B':>8}{'loads ev/s':>13}{'path ev/s':>13}{'ratio':>7}{'target':>8}")
    for level, path, distinct, n, avg, base_rate, rate, ratio in rows:
        verdict = ("ok" if ratio >= TARGETS[level] else "MISS") if path == default else "-"
        print(f"{level:<16}{path:<8}{distinct:>9}{n:>9}{avg:>8.0f}{base_rate:>13,.0f}{rate:>13,.0f}{ratio:>7.2f}{TARGETS[level]:>6.1f} {verdict}")
    print(f"body shape check, python, RequestResponse: time with / without the check = {check_cost:.3f}")
    if native_cost is not None:
        print(f"body shape check, native, RequestResponse: time with / without the check = {native_cost:.3f}")


def _native_check_cost(lines: list[bytes], repeat: int) -> float:
    """Time of the native fast path with the body shapes / with shape trees that hold no path (the check
    switched off but for the body's top-level keys), interleaved."""
    spec = orjson.loads(fastpath.native_spec())
    spec["body_shapes"] = [{"kind": "object", "keys": {}} for _ in spec["body_shapes"]]
    options = dict(cluster=DEFAULT.cluster, namespace=DEFAULT.namespace, stages=sorted(DEFAULT.stages),
                   keep_original=DEFAULT.keep_original, max_body_bytes=DEFAULT.max_body_bytes,
                   max_value_bytes=DEFAULT.max_value_bytes)
    on = fastpath._native.Normalizer(fastpath.native_spec(), **options).line
    off = fastpath._native.Normalizer(orjson.dumps(spec).decode(), **options).line

    def run(line: Callable[..., object]) -> Callable[[], None]:
        def go() -> None:
            for text in lines:
                line(text)
        return go

    t_on, t_off = best_of(repeat, run(on), run(off))
    return t_on / t_off


#: The lean check replaced by one that passes every body without looking (the check switched off).
_ALWAYS_FITS = {raw: (lambda body: True) for raw in ("requestObject", "responseObject")}


def _check_cost(lines: list[bytes], repeat: int) -> float:
    """Time of normalize with the body shape check / without it (every body passed unlooked), interleaved."""
    loads, check = orjson.loads, normalize_module._FITS
    events = [loads(line) for line in lines]

    def run() -> None:
        for ev in events:
            normalize(ev)

    def without() -> None:
        normalize_module._FITS = _ALWAYS_FITS  # type: ignore[assignment]
        try:
            run()
        finally:
            normalize_module._FITS = check

    t_with, t_without = best_of(repeat, run, without)
    return t_with / t_without


if __name__ == "__main__":
    main()
