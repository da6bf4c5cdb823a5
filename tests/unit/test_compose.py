"""docker-compose.yml stays valid and on the engine versions the tests verify."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_profiles_bind_to_localhost_and_match_tested_versions() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {s["profiles"][0] for s in services.values()} == {"elastic", "opensearch"}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    test_script = (REPO / "scripts" / "test").read_text()
    tested = set(re.findall(r'"(?:opensearch|elasticsearch) (\d+\.\d+\.\d+)', test_script))
    for name in ("elasticsearch", "kibana", "opensearch", "opensearch-dashboards"):
        version = services[name]["image"].rsplit(":", 1)[1]
        assert version in tested, f"{name} {version} is not a version scripts/test verifies ({sorted(tested)})"
