"""Secrets never reach output: the one redaction helper every message goes through.

``redact(text)`` masks, wherever they appear in a message:
- the password in a URL's userinfo (``https://user:***@host``) and every query-string value
  (``?token=***``): webhook, Alertmanager and engine URLs carry credentials there;
- values after secret-looking keys (``password: x``, ``"api_key": "x"``, ``token=x``,
  ``Authorization: Basic x``), as YAML, JSON, HTTP headers or flags write them;
- every secret registered with :func:`register` (passwords, API keys, tokens from flags, the
  environment, config files or URLs), wherever it appears, also percent- or base64-encoded
  (as in a Basic authorization header).

``Console`` (cli/console.py) applies it to every message and text line; library code that builds a
message around a URL uses :func:`redact_url` at the source as well.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

_URL = re.compile(r"\b(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>[^\s'\"<>]+)")
_KEYS = r"(?:password|passwd|pass|secret|token|api[_-]?key|apikey|bearer[_-]?token|client[_-]?secret|access[_-]?key)"
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?\b[\w.-]*" + _KEYS + r"[\"']?\s*[:=]\s*)(?P<quote>[\"']?)(?P<value>[^\s\"',}&]+)",
    re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?P<key>\b(?:Authorization|Proxy-Authorization)\s*[:=]\s*[\"']?(?:Basic|Bearer|ApiKey)\s+)"
                          r"(?P<value>[A-Za-z0-9+/=._~-]+)", re.IGNORECASE)


def register(*values: str | None) -> None:
    """Remember secret values so that :func:`redact` masks them in any message (short ones are ignored)."""
    with _lock:
        for value in values:
            if value and len(value) >= 4:
                _secrets.add(value)


def registered() -> frozenset[str]:
    with _lock:
        return frozenset(_secrets)


def redact_url(url: str) -> str:
    """``url`` with the userinfo password and all query-string values masked."""
    if "://" not in url and "@" in url.split("/", 1)[0]:  # scheme-less user:pass@host: all before @ goes
        url = f"{MASK}@{url.split('@')[-1]}"
        if "?" not in url:
            return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = [p.split("=", 1)[0] + (f"={MASK}" if "=" in p else "") for p in query.split("&")]
        query = "&".join(pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _variants(secret: str) -> set[str]:
    out = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    return {v for v in out if v}


def redact(text: str) -> str:
    """``text`` with URLs' credentials and query values, secret-looking values and registered secrets masked."""
    if not text:
        return text
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _AUTH_HEADER.sub(lambda m: m.group("key") + MASK, text)
    text = _KEY_VALUE.sub(lambda m: m.group("key") + m.group("quote") + MASK, text)
    secrets = registered()
    if secrets:
        for secret in sorted(secrets, key=len, reverse=True):
            for variant in _variants(secret):
                if variant in text:
                    text = text.replace(variant, MASK)
        for token in re.findall(r"[A-Za-z0-9+/]{8,}={0,2}", text):  # Basic credentials: base64(user:secret)
            try:
                decoded = base64.b64decode(token, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                continue
            if any(secret in decoded for secret in secrets):
                text = text.replace(token, MASK)
    return text
