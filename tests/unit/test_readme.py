"""The README's rule table is the rule pack (regenerate: python -m kaudit_elk.rules.table)."""

from __future__ import annotations

from pathlib import Path

from kaudit_elk.rules.loader import default_pack_dir, load_rules
from kaudit_elk.rules.table import BEGIN, END, markdown_table

REPO = Path(__file__).resolve().parents[2]


def test_readme_rule_table_is_current() -> None:
    text = (REPO / "README.md").read_text()
    current = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == markdown_table(load_rules([default_pack_dir()]), REPO), \
        "README rule table is stale: run python -m kaudit_elk.rules.table"


def test_readme_gives_the_ci_test_command() -> None:
    text = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/test" in text and "exec scripts/test" in ci


def test_readme_example_rule_validates_and_its_tests_pass(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    text = (REPO / "README.md").read_text()
    rule = re.search(r"```yaml\n(title: .*?)```", text, re.S).group(1)
    (tmp_path / "example.yml").write_text(rule)
    for args in (["rules", "validate", str(tmp_path)],
                 ["rules", "test", "--rules-dir", str(tmp_path), "--no-default-rules"]):
        out = subprocess.run([sys.executable, "-m", "kaudit_elk", *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr


def test_readme_links_and_anchors_resolve() -> None:
    """Every relative link names a file of the repository and every #anchor a heading (GitHub's slugs)."""
    import re

    text = (REPO / "README.md").read_text()
    heads, fence = [], False
    for line in text.splitlines():
        fence = fence != line.startswith("```")
        m = None if fence or line.startswith("```") else re.match(r"#+ (.*)", line)
        if m:
            heads.append(m.group(1))
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    anchors = [link[1:] for link in links if link.startswith("#")]
    files = [link.split("#")[0] for link in links if not link.startswith(("#", "http://", "https://"))]
    assert len(anchors) >= 5 and len(files) >= 5, (anchors, files)
    assert not [a for a in anchors if a not in slugs], [a for a in anchors if a not in slugs]
    assert not [f for f in files if not (REPO / f).exists()], [f for f in files if not (REPO / f).exists()]
