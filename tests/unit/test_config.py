"""Settings precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaudit_elk.base.config import load_settings
from kaudit_elk.base.errors import ConfigError


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("url: https://file:9200\ncluster: from-file\ntimeout: 5\n")
    env = {"KAUDIT_URL": "https://env:9200", "KAUDIT_CLUSTER": "from-env"}
    s = load_settings({"url": "https://flag:9200"}, environ=env, config_file=cfg)
    assert (s.url, s.cluster, s.timeout) == ("https://flag:9200", "from-env", 5.0)


def test_tls_verification_on_by_default_and_env_can_turn_it_off() -> None:
    assert load_settings({}, environ={}).verify_certs is True
    assert load_settings({}, environ={"KAUDIT_VERIFY_CERTS": "false"}).verify_certs is False


def test_bad_values_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KAUDIT_VERIFY_CERTS"):
        load_settings({}, environ={"KAUDIT_VERIFY_CERTS": "maybe"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("urll: x\n")
    with pytest.raises(ConfigError, match=f"{cfg}: unknown keys urll"):
        load_settings({}, environ={}, config_file=cfg)
    cfg.write_text("url: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings({}, environ={}, config_file=cfg)


def test_secrets_are_redacted() -> None:
    s = load_settings({"username": "u", "password": "hunter2"}, environ={})
    assert "hunter2" not in repr(s) and s.redacted()["password"] == "***"
    with pytest.raises(ConfigError, match="either an API key"):
        load_settings({"api_key": "k", "username": "u"}, environ={})
