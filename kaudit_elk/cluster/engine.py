"""The only module that knows Elasticsearch from OpenSearch.

``connect(settings)`` reads ``GET /`` with a neutral HTTP request, picks the right client
(elasticsearch-py 8.x for Elasticsearch 8/9, opensearch-py for OpenSearch 2/3), and probes
capabilities. Everything else talks to the engine through :class:`Engine`.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from kaudit_elk.base.config import Settings
from kaudit_elk.base.errors import EngineError

Flavor = Literal["elasticsearch", "opensearch"]

# Oldest major versions we support per flavor.
MIN_MAJOR: dict[str, int] = {"elasticsearch": 8, "opensearch": 2}
MAX_MAJOR: dict[str, int] = {"elasticsearch": 9, "opensearch": 3}


#: Statuses by which an engine says "not now" to a read: 429 (search queue full, circuit breaker) and
#: the gateway/unavailable family a restarting node or a proxy answers with.
BUSY_STATUSES = frozenset({429, 502, 503, 504})
#: How long a read waits out a busy engine before it fails (seconds).
BUSY_RETRY_FOR = 60.0


class EngineRequestError(EngineError):
    """An HTTP request to the engine failed with a status code."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.method, self.path, self.status, self.body = method, path, status, body
        reason = _error_reason(body)
        if status == 403:
            from kaudit_elk.cluster.roles import missing_privilege

            reason = missing_privilege(reason) or reason
        super().__init__(f"{method} {path} failed with HTTP {status}: {reason}")


def _error_reason(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            root = (err.get("root_cause") or [err])[0]
            reason = f"{root.get('type', err.get('type'))}: {root.get('reason', err.get('reason'))}"
            cause = err.get("caused_by")  # a script's own exception ("runtime error" says nothing)
            if isinstance(cause, dict) and cause.get("reason") and str(cause["reason"]) not in reason:
                reason += f" (caused by {cause.get('type')}: {cause['reason']})"
            return reason
        if err:
            return str(err)
    text = body if isinstance(body, str) else json.dumps(body)[:500]
    return text[:500]


@dataclass(frozen=True)
class EngineInfo:
    """What ``GET /`` says about the server."""

    flavor: Flavor
    version: tuple[int, int, int]
    version_text: str
    cluster_name: str
    build_flavor: str | None = None

    @property
    def label(self) -> str:
        return f"{self.flavor} {self.version_text}"


@dataclass(frozen=True)
class Capabilities:
    """Features present on the connected cluster, as probed from node info."""

    modules: frozenset[str] = frozenset()
    plugins: frozenset[str] = frozenset()
    ingest_processors: frozenset[str] = frozenset()
    flat_type: str = "flattened"  # "flattened" (ES) or "flat_object" (OpenSearch)
    data_streams: bool = True
    lifecycle: str | None = None  # "ilm", "ism" or None (client-side retention only)
    painless: bool = False
    constant_keyword: bool = False  # the constant_keyword field type (data_stream.* is keyword without it)

    def has_processors(self, names: Iterable[str]) -> bool:
        return set(names) <= self.ingest_processors

    def as_dict(self) -> dict[str, Any]:
        return {
            "flat_type": self.flat_type,
            "data_streams": self.data_streams,
            "lifecycle": self.lifecycle,
            "painless": self.painless,
            "constant_keyword": self.constant_keyword,
            "ingest_processors": sorted(self.ingest_processors),
            "modules": sorted(self.modules),
            "plugins": sorted(self.plugins),
        }


def parse_info(body: dict[str, Any]) -> EngineInfo:
    """Turn a ``GET /`` body into EngineInfo; raise EngineError for unknown or unsupported servers."""
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, dict) or "number" not in version:
        raise EngineError("the server at this URL does not look like Elasticsearch or OpenSearch (no version in GET /)")
    text = str(version["number"])
    flavor: Flavor = "opensearch" if version.get("distribution") == "opensearch" else "elasticsearch"
    try:
        core = text.split("-")[0]
        parts = tuple(int(p) for p in core.split("."))
        padded = parts + (0, 0, 0)
        triple = (padded[0], padded[1], padded[2])
    except ValueError:
        raise EngineError(f"cannot parse engine version {text!r}") from None
    if flavor == "elasticsearch" and triple[0] == 7 and body.get("tagline", "").startswith("The OpenSearch"):
        flavor = "opensearch"
    major = triple[0]
    if major < MIN_MAJOR[flavor] or major > MAX_MAJOR[flavor]:
        raise EngineError(
            f"unsupported {flavor} version {text}: kaudit-elk supports {flavor} "
            f"{MIN_MAJOR[flavor]}.x to {MAX_MAJOR[flavor]}.x"
        )
    return EngineInfo(flavor, triple, text, str(body.get("cluster_name", "")), version.get("build_flavor"))


def capabilities_from_nodes(info: EngineInfo, nodes_body: dict[str, Any]) -> Capabilities:
    """Derive capabilities from ``GET _nodes/_local/plugins,ingest``."""
    modules: set[str] = set()
    plugins: set[str] = set()
    processors: set[str] = set()
    for node in (nodes_body.get("nodes") or {}).values():
        modules |= {m["name"] for m in node.get("modules", [])}
        plugins |= {p["name"] for p in node.get("plugins", [])}
        processors |= {p["type"] for p in (node.get("ingest") or {}).get("processors", [])}
    if info.flavor == "opensearch":
        lifecycle = "ism" if "opensearch-index-management" in plugins else None
        return Capabilities(
            frozenset(modules), frozenset(plugins), frozenset(processors),
            flat_type="flat_object", data_streams=True, lifecycle=lifecycle,
            painless="lang-painless" in modules,
            constant_keyword=info.version >= (2, 14, 0),  # a core mapper type since OpenSearch 2.14
        )
    lifecycle = "ilm" if "x-pack-ilm" in modules else None
    return Capabilities(
        frozenset(modules), frozenset(plugins), frozenset(processors),
        flat_type="flattened",
        # Data stream creation is in the server; its REST APIs live in the data-streams module.
        data_streams=True,
        lifecycle=lifecycle,
        painless="lang-painless" in modules,
        constant_keyword="constant-keyword" in modules,  # x-pack module (absent from the integ-test zip)
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=settings.ca_certs) if settings.ca_certs else ssl.create_default_context()
    if not settings.verify_certs:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _auth_headers(settings: Settings) -> dict[str, str]:
    if settings.api_key:
        return {"Authorization": f"ApiKey {settings.api_key}"}
    if settings.username is not None:
        token = base64.b64encode(f"{settings.username}:{settings.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def _http_get(settings: Settings, path: str) -> tuple[int, dict[str, str], bytes]:
    """Plain GET used before a client exists; maps connection problems to precise EngineErrors."""
    url = settings.url.rstrip("/") + path
    req = urllib.request.Request(url, headers={"Accept": "application/json", **_auth_headers(settings)})
    ctx = _ssl_context(settings) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(req, timeout=settings.timeout, context=ctx) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise EngineError(
                f"{settings.url}: authentication failed (HTTP 401); check --username/--password or --api-key"
            ) from None
        if exc.code == 403:
            from kaudit_elk.cluster.roles import missing_privilege

            detail = missing_privilege(exc.read().decode("utf-8", "replace")) or "permission denied"
            raise EngineError(f"{settings.url}: GET {path}: {detail} (HTTP 403)") from None
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = str(reason)
        if isinstance(reason, ssl.SSLError):
            hint = (
                "the server does not speak TLS; use http://"
                if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text
                else "give --ca-certs with the cluster's CA, or --no-verify-certs for a throwaway sandbox"
            )
            raise EngineError(f"{settings.url}: TLS failure ({reason}); {hint}") from None
        raise EngineError(f"{settings.url}: cannot connect ({reason})") from None
    except (ConnectionError, TimeoutError, OSError, http.client.HTTPException) as exc:
        if isinstance(exc, (http.client.BadStatusLine, http.client.RemoteDisconnected)):
            raise EngineError(f"{settings.url}: the server closed the connection; if it speaks TLS, use https://") from None
        raise EngineError(f"{settings.url}: cannot connect ({exc})") from None


def _json(settings: Settings, path: str, raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise EngineError(
            f"{settings.url}: GET {path} did not return JSON; is this an Elasticsearch/OpenSearch URL?"
        ) from None


def probe(settings: Settings) -> EngineInfo:
    """Identify the engine with plain HTTP: works for both flavors and gives precise connection errors.

    ``GET /`` is tried first. Elasticsearch builds without the ``rest-root`` module (e.g. the
    integ-test zip since 8.12) do not serve it, so ``GET /_nodes/_local`` is the fallback; there
    the ``X-Elastic-Product`` header tells Elasticsearch from OpenSearch.
    """
    if not settings.url.startswith(("http://", "https://")):
        raise EngineError(f"engine URL must start with http:// or https://, got {settings.url!r}")
    status, headers, raw = _http_get(settings, "/")
    if status == 200:
        return parse_info(_json(settings, "/", raw))
    if status not in (404, 405):
        raise EngineError(f"{settings.url}: GET / failed with HTTP {status}")
    path = "/_nodes/_local?filter_path=cluster_name,nodes.*.version,nodes.*.build_flavor"
    status, headers, raw = _http_get(settings, path)
    if status != 200:
        raise EngineError(f"{settings.url}: neither GET / nor GET /_nodes/_local answered (HTTP {status})")
    body = _json(settings, path, raw)
    node: dict[str, Any] = next(iter((body.get("nodes") or {}).values()), {})
    version: dict[str, Any] = {"number": node.get("version", "")}
    if headers.get("x-elastic-product") != "Elasticsearch":
        version["distribution"] = "opensearch"
    version["build_flavor"] = node.get("build_flavor")
    return parse_info({"version": version, "cluster_name": body.get("cluster_name", "")})


@dataclass
class Engine:
    """A connected engine: info, capabilities and one request surface for both flavors."""

    settings: Settings
    info: EngineInfo
    client: Any
    caps: Capabilities = field(default_factory=Capabilities)
    busy_retries: int = 0  # reads retried because the engine was busy (see search)

    @property
    def flavor(self) -> Flavor:
        return self.info.flavor

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        ignore: Iterable[int] = (),
        ndjson: bool = False,
    ) -> Any:
        """Send one request; return the parsed body, or None for a status listed in ``ignore``."""
        ignore = tuple(ignore)
        try:
            if self.flavor == "elasticsearch":
                return self._es_request(method, path, body, params, ndjson)
            return self._os_request(method, path, body, params, ndjson)
        except EngineRequestError as exc:
            if exc.status in ignore:
                return None
            raise

    def _es_request(self, method: str, path: str, body: Any, params: Any, ndjson: bool) -> Any:
        import elastic_transport
        import elasticsearch

        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/x-ndjson" if ndjson else "application/json"
        try:
            resp = self.client.perform_request(method, path, params=params, headers=headers, body=body)
        except elasticsearch.ApiError as exc:
            raise EngineRequestError(method, path, exc.meta.status, exc.body) from None
        except elastic_transport.TlsError as exc:
            raise EngineError(f"{method} {path}: TLS failure: {exc}") from None
        except elastic_transport.TransportError as exc:
            raise EngineError(f"{method} {path}: {exc}") from None
        return resp.body

    def _os_request(self, method: str, path: str, body: Any, params: Any, ndjson: bool) -> Any:
        import opensearchpy

        headers = {"content-type": "application/x-ndjson"} if ndjson else None
        if params and "timeout" in params:
            # opensearch-py takes a "timeout" param as its own socket timeout: send them in the URL
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
            params = None
        try:
            with warnings.catch_warnings():
                # OpenSearch deprecation headers (e.g. sorting on _id as a PIT tiebreaker, which
                # 2.19 needs because it refuses _shard_doc) are for operators, not CLI users.
                warnings.simplefilter("ignore", opensearchpy.exceptions.OpenSearchWarning)
                return self.client.transport.perform_request(method, path, params=params, body=body, headers=headers)
        except opensearchpy.SSLError as exc:
            raise EngineError(f"{method} {path}: TLS failure: {exc}") from None
        except opensearchpy.ConnectionError as exc:
            raise EngineError(f"{method} {path}: cannot connect: {exc}") from None
        except opensearchpy.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            raise EngineRequestError(method, path, status, exc.info) from None

    def search(self, path: str, body: Any, ignore: Iterable[int] = (), retry_for: float | None = None) -> Any:
        """A read (``POST path`` with a search body) that waits out a busy engine: a refusal the engine
        means as "later" (429 — a full search queue, a tripped circuit breaker — or 502/503/504) is retried
        with exponential backoff for up to ``retry_for`` seconds (default :data:`BUSY_RETRY_FOR`), then
        raised. Reads are idempotent, so a retry can neither lose nor duplicate anything."""
        budget = BUSY_RETRY_FOR if retry_for is None else retry_for
        deadline, delay = time.monotonic() + budget, 0.5
        while True:
            try:
                return self.request("POST", path, body=body, ignore=ignore)
            except EngineRequestError as exc:
                if exc.status not in BUSY_STATUSES or time.monotonic() + delay > deadline:
                    raise
                self.busy_retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    def bulk(self, payload: bytes | str, refresh: bool = False) -> dict[str, Any]:
        """POST an NDJSON ``_bulk`` body; returns the parsed response."""
        params = {"refresh": "true"} if refresh else None
        return dict(self.request("POST", "/_bulk", body=payload, params=params, ndjson=True))

    def refresh(self, index: str) -> None:
        self.request("POST", f"/{index}/_refresh", ignore=(404,))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _make_client(settings: Settings, flavor: Flavor) -> Any:
    common: dict[str, Any] = {"request_timeout" if flavor == "elasticsearch" else "timeout": settings.timeout}
    if flavor == "elasticsearch":
        import elasticsearch

        kwargs: dict[str, Any] = dict(common, verify_certs=settings.verify_certs, ca_certs=settings.ca_certs)
        if not settings.verify_certs:
            kwargs["ssl_show_warn"] = False
        if settings.api_key:
            kwargs["api_key"] = settings.api_key
        elif settings.username is not None:
            kwargs["basic_auth"] = (settings.username, settings.password or "")
        return elasticsearch.Elasticsearch(settings.url, **kwargs)

    import opensearchpy

    kwargs = dict(common, verify_certs=settings.verify_certs, ca_certs=settings.ca_certs, ssl_show_warn=False)
    if settings.api_key:
        kwargs["headers"] = {"Authorization": f"ApiKey {settings.api_key}"}
    elif settings.username is not None:
        kwargs["http_auth"] = (settings.username, settings.password or "")
    return opensearchpy.OpenSearch([settings.url], **kwargs)


def connect(settings: Settings, probe_capabilities: bool = True) -> Engine:
    """Connect, detect flavor/version and (optionally) capabilities."""
    info = probe(settings)
    engine = Engine(settings, info, _make_client(settings, info.flavor))
    if probe_capabilities:
        nodes = engine.request("GET", "/_nodes/_local/plugins,ingest")
        engine.caps = capabilities_from_nodes(info, nodes or {})
    return engine
