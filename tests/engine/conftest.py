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

from kaudit_elk.base.config import Settings
from kaudit_elk.cluster.engine import Engine, connect
from kaudit_elk.base.errors import EngineError

DEFAULT_ENGINES = "opensearch=http://127.0.0.1:9200,elasticsearch=http://127.0.0.1:9201"


def engine_urls() -> dict[str, str]:
    spec = os.environ.get("KAUDIT_TEST_ENGINES", DEFAULT_ENGINES)
    pairs = (item.split("=", 1) for item in spec.split(",") if item.strip())
    return {name.strip(): url.strip() for name, url in pairs}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        names = list(engine_urls())
        metafunc.parametrize("engine", names, indirect=True, scope="session")
    if "pipeline_engine" in metafunc.fixturenames:
        # The sandbox OpenSearch engines carry ingest-common + painless (scripts/engines);
        # Elasticsearch's integ-test zip cannot get them from Maven Central.
        names = [n for n in engine_urls() if n.startswith("opensearch")]
        metafunc.parametrize("pipeline_engine", names, indirect=True, scope="session")


_connected: dict[str, Engine] = {}


def connect_named(name: str) -> Engine:
    """Connect (once) to the engine under test called ``name``; fail or skip when it is down."""
    url = engine_urls()[name]
    if name not in _connected:
        try:
            _connected[name] = connect(Settings(url=url, timeout=60))
        except EngineError as exc:
            message = f"engine {name} at {url} is not available: {exc} (run scripts/engines up)"
            if os.environ.get("KAUDIT_REQUIRE_ENGINES") == "1":
                pytest.fail(message)
            pytest.skip(message)
    return _connected[name]


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A connected kaudit_elk Engine for each engine under test."""
    yield connect_named(request.param)


@pytest.fixture(scope="session")
def pipeline_engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine under test that must run the server-side pipeline (the OpenSearch sandboxes)."""
    return connect_named(request.param)


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name for indices/templates so tests never collide."""
    return f"kaudit-test-{uuid.uuid4().hex[:10]}"


_ingested: dict[str, dict] = {}


@pytest.fixture(scope="session")
def ingested_corpus(engine: Engine, corpus_files: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Bootstrap a fresh namespace and ingest the whole corpus; returns the data stream name."""
    from kaudit_elk.cluster.bootstrap import apply, build_plan
    from kaudit_elk.ingest.bulk import IngestOptions, ingest
    from kaudit_elk.cluster.templates import BootstrapOptions, Names

    key = engine.settings.url
    if key not in _ingested:
        namespace = f"corpus{uuid.uuid4().hex[:8]}"
        options = BootstrapOptions(namespace=namespace)
        apply(engine, build_plan(engine, options), options)
        dead = tmp_path_factory.mktemp("dead") / "dead.ndjson"
        stats = ingest(engine, corpus_files, IngestOptions(namespace=namespace, dead_letter=str(dead), refresh=True))
        _ingested[key] = {"stream": Names(namespace).stream, "namespace": namespace, "stats": stats}
    return _ingested[key]["stream"]


@pytest.fixture(scope="session")
def ingested_corpus_info(engine: Engine, ingested_corpus: str) -> dict:
    """Namespace and ingest stats of the ingested corpus (see ingested_corpus)."""
    return _ingested[engine.settings.url]


@pytest.fixture(scope="session")
def sandbox_opensearch() -> Engine:
    """The sandbox OpenSearch 2.19 (named "opensearch") that fault tests may stop and restart."""
    if "opensearch" not in engine_urls():
        pytest.skip("the sandbox OpenSearch 2.19 is not among KAUDIT_TEST_ENGINES")
    return connect_named("opensearch")
