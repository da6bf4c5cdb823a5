"""Prometheus textfile-collector output for cron runs of ``detect``, ``ingest`` and ``doctor``.

node_exporter's textfile collector reads ``*.prom`` files from one directory; each command writes its own
file atomically (a temporary file renamed over it), so a scrape never sees half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Iterable, Mapping

_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(job: str, gauges: Mapping[str, float], labelled: Iterable[tuple[str, Mapping[str, str], float]] = (),
           help_text: Mapping[str, str] | None = None) -> str:
    """Text exposition format: ``kaudit_<job>_<name>`` gauges, plain and with labels."""
    help_text = help_text or {}
    lines: list[str] = []
    seen: set[str] = set()

    def head(metric: str, key: str) -> None:
        if metric not in seen:
            seen.add(metric)
            lines.append(f"# HELP {metric} {help_text.get(key, key.replace('_', ' '))}")
            lines.append(f"# TYPE {metric} gauge")

    for key, value in gauges.items():
        metric = f"kaudit_{job}_{_NAME.sub('_', key)}"
        head(metric, key)
        lines.append(f"{metric} {float(value):g}")
    for key, labels, value in labelled:
        metric = f"kaudit_{job}_{_NAME.sub('_', key)}"
        head(metric, key)
        text = ",".join(f'{_NAME.sub("_", k)}="{_label(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{metric}{{{text}}} {float(value):g}")
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Write atomically (same directory, then rename), world-readable for the collector."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".kaudit-", suffix=".prom.tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
