"""Run every bench and print its ratio lines.

    python bench/run.py [--url http://127.0.0.1:9200] [--quick]

Engine benches need a running engine (scripts/engines up opensearch). Each bench compares its
workload with a baseline timed in the same run; see each file's docstring for what is compared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run, not figures for the README)")
    args = ap.parse_args()
    small = args.quick
    benches = [
        ["bench_normalize.py", "--events", "20000" if small else "100000"],
        ["bench_scan.py", "--events", "20000" if small else "100000"],
        ["bench_ingest.py", "--url", args.url, "--events", "10000" if small else "50000"],
        ["bench_integrity.py", "--url", args.url, "--events", "10000" if small else "30000"],
        ["bench_detect.py", "--url", args.url, *(["--rate", "200", "--history-rate", "5", "--repeat", "1"] if small else [])],
        ["bench_serve.py", "--url", args.url, "--seconds", "3" if small else "8", "--ship-events",
         "10000" if small else "40000"],
    ]
    failed = 0
    for cmd in benches:
        if not (HERE / cmd[0]).exists():
            continue
        print(f"== {cmd[0]}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]])
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
