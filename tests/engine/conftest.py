"""Real engines for tests: OpenSearch and Elasticsearch started by scripts/engines.

The engines under test come from ``KAUDIT_TEST_ENGINES`` (``name=url,...``; default
``opensearch=http://127.0.0.1:9200,elasticsearch=http://127.0.0.1:9201``). With
``KAUDIT_REQUIRE_ENGINES=1`` (set by scripts/test and CI) an engine that does not answer fails
the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from kaudit_elk.config import Settings
from kaudit_elk.engine import Engine, connect
from kaudit_elk.errors import EngineError

DEFAULT_ENGINES = "opensearch=http://127.0.0.1:9200,elasticsearch=http://127.0.0.1:9201"


def engine_urls() -> dict[str, str]:
    spec = os.environ.get("KAUDIT_TEST_ENGINES", DEFAULT_ENGINES)
    pairs = (item.split("=", 1) for item in spec.split(",") if item.strip())
    return {name.strip(): url.strip() for name, url in pairs}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        names = list(engine_urls())
        metafunc.parametrize("engine", names, indirect=True, scope="session")


_connected: dict[str, Engine] = {}


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A connected kaudit_elk Engine for each engine under test."""
    name = request.param
    url = engine_urls()[name]
    if name not in _connected:
        try:
            _connected[name] = connect(Settings(url=url, timeout=60))
        except EngineError as exc:
            message = f"engine {name} at {url} is not available: {exc} (run scripts/engines up)"
            if os.environ.get("KAUDIT_REQUIRE_ENGINES") == "1":
                pytest.fail(message)
            pytest.skip(message)
    yield _connected[name]


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name for indices/templates so tests never collide."""
    return f"kaudit-test-{uuid.uuid4().hex[:10]}"
