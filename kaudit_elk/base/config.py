"""Settings from flags, ``KAUDIT_*`` environment variables and an optional YAML config file.

Precedence: flag > environment variable > config file > default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from kaudit_elk.base.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("~/.config/kaudit-elk/config.yaml")


@dataclass(frozen=True)
class Settings:
    """Connection and naming settings shared by every command."""

    url: str = "http://127.0.0.1:9200"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify_certs: bool = True
    timeout: float = 30.0
    cluster: str = "default"
    # Data stream namespace: logs-kubernetes.audit_logs-<namespace>. Not "default", so that
    # Elastic's own Kubernetes integration (namespace "default") keeps its stream and template.
    namespace: str = "kaudit"

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked (safe to print)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for secret in ("password", "api_key"):
            if out[secret]:
                out[secret] = "***"
        return out


#: A namespace ends up in index, template, pipeline and policy names (the data stream naming scheme:
#: lowercase, no hyphen, at most 100 bytes).
NAMESPACE_RE = re.compile(r"[a-z0-9][a-z0-9_.]{0,99}")


def validate_namespace(name: str, source: str = "namespace") -> str:
    """Return ``name`` if it is a valid namespace, else raise ConfigError (exit 2) saying why."""
    if not NAMESPACE_RE.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"{source} {name!r} is invalid: use 1-100 lowercase letters, digits, '_' or '.', starting with "
            "a letter or digit (no '-': it separates the parts of a data stream name)")
    return name


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if value is None:
        return None
    if "bool" in str(kind):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _BOOL_TRUE:
            return True
        if text in _BOOL_FALSE:
            return False
        raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
    if "float" in str(kind):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name} must be a number, got {value!r}") from None
    return str(value)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Merge defaults, config file, ``KAUDIT_*`` env vars and flags (None flags are ignored)."""
    env = os.environ if environ is None else environ
    path_text = config_file or env.get("KAUDIT_CONFIG")
    merged: dict[str, Any] = {}
    if path_text:
        merged.update(_from_file(Path(path_text).expanduser()))
    else:
        default = DEFAULT_CONFIG_PATH.expanduser()
        if default.is_file():
            merged.update(_from_file(default))
    for f in fields(Settings):
        key = f"KAUDIT_{f.name.upper()}"
        if key in env and env[key] != "":
            merged[f.name] = _coerce(f.name, env[key], f"environment variable {key}")
    for name, value in (flags or {}).items():
        if value is not None:
            merged[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    if "namespace" in merged:
        validate_namespace(merged["namespace"])
    if merged.get("api_key") and (merged.get("username") or merged.get("password")):
        raise ConfigError("give either an API key or a username/password, not both")
    return replace(Settings(), **merged)
