"""The wheel ships the content folders, and the package finds them when installed from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kaudit_elk.base.content import content_dir

REPO = Path(__file__).resolve().parents[2]


def test_checkout_finds_content_at_the_top_level() -> None:
    for name in ("index_templates", "dashboards", "detections"):
        assert content_dir(name) == REPO / name


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    [whl] = out.glob("kaudit_elk-*.whl")
    return whl


def test_wheel_contains_every_content_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("index_templates", "dashboards", "detections"):
        shipped = {p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()}
        assert shipped, folder
        missing = {s for s in shipped if f"kaudit_elk/_content/{s}" not in names}
        assert not missing, f"not in the wheel: {sorted(missing)[:5]}"


def test_installed_wheel_finds_its_content_and_renders_templates(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import kaudit_elk.base.content as c, json;"
        "from kaudit_elk.cluster.templates import BootstrapOptions, desired_objects;"
        "from kaudit_elk.cluster.engine import Capabilities;"
        "objs, _ = desired_objects('opensearch', Capabilities(flat_type='flat_object'), BootstrapOptions(pipeline=False));"
        "print(json.dumps([str(c.content_dir(n)) for n in c.FOLDERS] + [len(objs)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    *dirs, count = __import__("json").loads(out.stdout)
    assert all(d.startswith(str(site / "kaudit_elk" / "_content")) for d in dirs)
    assert count == 7  # 2 component templates + audit, alerts, state, incidents and integrity index templates
