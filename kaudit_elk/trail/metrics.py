"""Prometheus textfile-collector output for cron runs of ``detect``, ``ingest`` and ``doctor``.

node_exporter's textfile collector reads ``*.prom`` files from one directory; each command writes its
own file with ``prometheus_client.write_to_textfile`` (a temporary file renamed over the old one, so a
scrape never sees half a file). Metric names: ``kaudit_<job>_<figure>``.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

_NAME = re.compile(r"[^a-zA-Z0-9_]")


def registry_for(job: str, gauges: Mapping[str, float],
                 labelled: Iterable[tuple[str, Mapping[str, str], float]] = ()) -> CollectorRegistry:
    """A registry with one gauge per figure (``labelled``: (figure, labels, value) rows)."""
    reg = CollectorRegistry()
    for key, value in gauges.items():
        Gauge(f"kaudit_{job}_{_NAME.sub('_', key)}", key.replace("_", " "), registry=reg).set(float(value))
    families: dict[str, Gauge] = {}
    for key, labels, value in labelled:
        name = f"kaudit_{job}_{_NAME.sub('_', key)}"
        names = sorted(labels)
        if name not in families:
            families[name] = Gauge(name, key.replace("_", " "), names, registry=reg)
        families[name].labels(**{k: labels[k] for k in names}).set(float(value))
    return reg


def write(path: str, job: str, gauges: Mapping[str, float],
          labelled: Iterable[tuple[str, Mapping[str, str], float]] = ()) -> None:
    """Write the figures of one run to ``path`` (atomically)."""
    write_to_textfile(path, registry_for(job, gauges, labelled))


def _previous(path: str, name: str) -> float | None:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def write_run(path: str, job: str, ok: bool, started: float, finished: float,
              figures: Mapping[str, float] | None = None) -> None:
    """One cron run: success flag, duration, and the last success time (kept from the previous file when
    this run failed, so an alert on its age fires)."""
    last_ok = finished if ok else _previous(path, f"kaudit_{job}_last_success_timestamp_seconds")
    gauges: dict[str, float] = {"last_run_timestamp_seconds": finished, "last_run_success": 1.0 if ok else 0.0,
                                "duration_seconds": finished - started}
    if last_ok is not None:
        gauges["last_success_timestamp_seconds"] = last_ok
    gauges.update(figures or {})
    write(path, job, gauges)
