"""The real stack for end-to-end tests: secured engines, the control plane, Alertmanager.

scripts/test starts them and passes where they are:

- ``KAUDIT_E2E_ENGINES`` (``opensearch,elasticsearch``) and per flavor ``KAUDIT_E2E_<FLAVOR>_URL``,
  ``_CA``, ``_ADMIN_USER``, ``_ADMIN_PASSWORD_FILE`` (``scripts/engines env`` of the secured engines);
- ``KAUDIT_KUBE_*`` (``scripts/kube env``); ``KAUDIT_ALERTMANAGER_URL``.

Without them the tier is skipped, unless ``KAUDIT_REQUIRE_ENGINES=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.cluster import Kube


@dataclass(frozen=True)
class SecuredEngine:
    flavor: str
    url: str
    ca: str
    admin_user: str
    admin_password: str


def _missing(what: str) -> None:
    message = f"end-to-end stack not available: {what} (run scripts/test, or see tests/e2e/conftest.py)"
    if os.environ.get("KAUDIT_REQUIRE_ENGINES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def secured_engines() -> list[str]:
    return [f for f in os.environ.get("KAUDIT_E2E_ENGINES", "opensearch,elasticsearch").split(",") if f]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "flavor" in metafunc.fixturenames:
        metafunc.parametrize("flavor", secured_engines(), scope="module")


@pytest.fixture(scope="session")
def kube() -> Kube:
    k = Kube.from_env()
    if k is None:
        _missing("KAUDIT_KUBE_URL is not set (scripts/kube up; scripts/kube env)")
    return k  # type: ignore[return-value]


@pytest.fixture(scope="session")
def alertmanager_url() -> str:
    url = os.environ.get("KAUDIT_ALERTMANAGER_URL")
    if not url:
        _missing("KAUDIT_ALERTMANAGER_URL is not set")
    return url  # type: ignore[return-value]


def secured_engine(flavor: str) -> SecuredEngine:
    up = flavor.upper()
    url = os.environ.get(f"KAUDIT_E2E_{up}_URL")
    if not url or not url.startswith("https://"):
        _missing(f"KAUDIT_E2E_{up}_URL is not an https URL")
    password = Path(os.environ[f"KAUDIT_E2E_{up}_ADMIN_PASSWORD_FILE"]).read_text().strip()
    return SecuredEngine(flavor, url, os.environ[f"KAUDIT_E2E_{up}_CA"], os.environ[f"KAUDIT_E2E_{up}_ADMIN_USER"],
                         password)
