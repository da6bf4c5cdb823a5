"""`tune --from` reads the alerts `detect` stored and proposes what `tune FILE` proposes on the same events."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_tune import DAY0, _benign_day, _write  # noqa: E402

from kaudit_elk.cluster.bootstrap import apply, build_plan  # noqa: E402
from kaudit_elk.cluster.engine import Engine  # noqa: E402
from kaudit_elk.cluster.templates import BootstrapOptions  # noqa: E402
from kaudit_elk.detect.scheduled import DetectOptions, run_detect  # noqa: E402
from kaudit_elk.ingest.bulk import IngestOptions, ingest  # noqa: E402
from kaudit_elk.rules.loader import default_pack_dir, load_rules  # noqa: E402


def _entries(text: str) -> list[tuple]:
    data = yaml.safe_load(text)["exceptions"] or []
    return sorted((e["rule"], sorted(e["match"].items()), e["review"]["alerts"], e["review"]["first_seen"],
                   e["review"]["last_seen"]) for e in data)


def test_tune_from_the_cluster_equals_tune_on_files(engine: Engine, tmp_path: Path) -> None:
    history = _write(tmp_path / "history.log", [e for d in range(3) for e in _benign_day(d)])
    namespace = f"tune{uuid.uuid4().hex[:8]}"
    opts = BootstrapOptions(namespace=namespace)
    apply(engine, build_plan(engine, opts), opts)
    assert ingest(engine, [history], IngestOptions(namespace=namespace, dead_letter=None, refresh=True)).dead_lettered == 0
    run_detect(engine, load_rules([default_pack_dir()]),
               DetectOptions(namespace=namespace, since=DAY0, until=DAY0 + timedelta(days=3), max_step=timedelta(days=1),
                             min_severity="low"), [])
    common = ["--allow-high", "--quiet"]
    files = subprocess.run([sys.executable, "-m", "kaudit_elk", "tune", history, *common],
                           capture_output=True, text=True, timeout=300)
    cluster = subprocess.run([sys.executable, "-m", "kaudit_elk", "tune", "--from", "2026-01-11T00:00:00Z",
                              "--to", "2026-01-16T00:00:00Z", "--url", engine.settings.url, "--namespace", namespace,
                              *common], capture_output=True, text=True, timeout=300)
    assert files.returncode == 0 and cluster.returncode == 0, files.stderr + cluster.stderr
    assert _entries(cluster.stdout) == _entries(files.stdout) and len(_entries(files.stdout)) == 2
