"""Shared bench helpers: time a workload and its baseline in the same run, report the ratio.

Machines here are noisy, so benches never report absolute timings alone: each compares a
workload with a baseline measured moments apart in the same process (best of N runs).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass
class Result:
    name: str
    baseline: str
    units: int
    workload_s: float
    baseline_s: float
    target: float | None = None

    @property
    def ratio(self) -> float:
        """baseline time / workload time: 1.0 = as fast as the baseline."""
        return self.baseline_s / self.workload_s if self.workload_s else float("inf")

    def line(self) -> str:
        target = f"  target >= {self.target:.2f}x {'OK' if self.ratio >= self.target else 'MISSED'}" if self.target else ""
        return (f"{self.name:<38} {self.units / self.workload_s:>12,.0f}/s  baseline ({self.baseline}) "
                f"{self.units / self.baseline_s:>12,.0f}/s  ratio {self.ratio:.2f}x{target}")


def best_of(repeat: int, fn: Callable[[], object], setup: Callable[[], object] | None = None) -> float:
    """Fastest of ``repeat`` timed calls of ``fn`` (``setup`` runs untimed before each)."""
    best = float("inf")
    for _ in range(repeat):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def compare(name: str, baseline_name: str, units: int, workload: Callable[[], object],
            baseline: Callable[[], object], repeat: int = 3, target: float | None = None,
            setup: Callable[[], object] | None = None) -> Result:
    """Alternate baseline and workload runs so drift on the machine hits both alike."""
    w = b = float("inf")
    for _ in range(repeat):
        b = min(b, best_of(1, baseline, setup))
        w = min(w, best_of(1, workload, setup))
    return Result(name, baseline_name, units, w, b, target)


def report(results: list[Result], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps([asdict(r) | {"ratio": r.ratio} for r in results], indent=2))
    else:
        for r in results:
            print(r.line())
    sys.stdout.flush()
