"""Settings from flags, ``KAUDIT_*`` environment variables and an optional YAML config file.

Precedence: flag > environment variable > config file > default. Credentials may also be given in
the URL (``https://user:pass@host``): they are taken out of it (so the URL printed anywhere holds
none) and used as username/password. Every secret is registered with :mod:`kaudit_elk.base.redact`
so that no message can show it; YAML errors name the line and column, never quote it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
import urllib.parse
from typing import Any, Callable, Mapping

import yaml

from kaudit_elk.base import redact
from kaudit_elk.base.errors import ConfigError
from kaudit_elk.base.files import readable_by_others

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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without the snippet of the offending line (it may hold a password)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "cannot parse"
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"
    return f"{problem}{f' ({context})' if context else ''} at {where}"


def split_userinfo(url: str, source: str = "--url") -> tuple[str, str | None, str | None]:
    """``(url without userinfo, username, password)``; user and password are percent-decoded."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    if not host:
        raise ConfigError(f"{source}: no host after the credentials in {redact.redact_url(url)}")
    clean = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, urllib.parse.unquote(user) or None, urllib.parse.unquote(password) if sep else None


def validate_url(url: str, source: str = "--url") -> str:
    """A URL must be http(s)://host[:port]; anything else is a usage error (exit 2)."""
    shown = redact.redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: the URL must start with http:// or https://, got {shown!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid URL {shown!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"{source}: no host in {shown!r}")
    return url


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {k: _coerce(k, v, str(path)) for k, v in data.items()}
    redact.register(values.get("password"), values.get("api_key"))
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Merge defaults, config file, ``KAUDIT_*`` env vars and flags (None flags are ignored).

    ``warn`` receives what is allowed but unsafe: a config file with a secret that other users can read.
    """
    env = os.environ if environ is None else environ
    path_text = config_file or env.get("KAUDIT_CONFIG")
    merged: dict[str, Any] = {}
    config_path: Path | None = None
    if path_text:
        config_path = Path(path_text).expanduser()
    elif DEFAULT_CONFIG_PATH.expanduser().is_file():
        config_path = DEFAULT_CONFIG_PATH.expanduser()
    if config_path is not None:
        merged.update(_from_file(config_path))
        if warn and (merged.get("password") or merged.get("api_key") or "@" in str(merged.get("url", ""))) \
                and readable_by_others(config_path):
            warn(f"config file {config_path} holds credentials and other users can read it "
                 f"(mode {config_path.stat().st_mode & 0o777:04o}); run chmod 600 {config_path}")
    for f in fields(Settings):
        key = f"KAUDIT_{f.name.upper()}"
        if key in env and env[key] != "":
            merged[f.name] = _coerce(f.name, env[key], f"environment variable {key}")
    for name, value in (flags or {}).items():
        if value is not None:
            merged[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    redact.register(merged.get("password"), merged.get("api_key"))
    if "url" in merged:
        url, user, password = split_userinfo(merged["url"])
        redact.register(password)
        if user is not None or password is not None:
            if merged.get("username") or merged.get("password") or merged.get("api_key"):
                raise ConfigError("give credentials either in the URL or with --username/--password/--api-key, "
                                  "not both")
            merged["username"], merged["password"] = user, password
        merged["url"] = validate_url(url)
    if "namespace" in merged:
        validate_namespace(merged["namespace"])
    if merged.get("api_key") and (merged.get("username") or merged.get("password")):
        raise ConfigError("give either an API key or a username/password, not both")
    return replace(Settings(), **merged)
