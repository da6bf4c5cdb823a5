"""CLI: write the benign corpus (and, with --attacks, the labelled attack set mixed in) as NDJSON.

    python -m bench.corpus benign --days 3 --seed 1 -o /tmp/benign.log
    python -m bench.corpus benign --days 0.25 --seed 7 --nodes 6 -o - | head

Files are created 0600 (they hold audit data). Same arguments, byte-identical output.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from .generate import DEFAULT_START, benign_events


def _open(path: str):
    if path == "-":
        return sys.stdout.buffer
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("benign", help="benign events only")
    for p in (b,):
        p.add_argument("--days", type=float, default=3.0)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--nodes", type=int, default=12, help="worker nodes (3 control-plane nodes are added)")
        p.add_argument("--gpu-nodes", type=int, default=2)
        p.add_argument("--start", default=DEFAULT_START, help="RFC 3339 start (default: a Monday 00:00 UTC)")
        p.add_argument("-o", "--output", default="-")
    args = ap.parse_args(argv)
    out = _open(args.output)
    n = 0
    try:
        for ev in benign_events(args.days, args.seed, args.nodes, args.gpu_nodes, args.start):
            out.write(orjson.dumps(ev) + b"\n")
            n += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    print(f"{n} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
