"""The connection options, declared once: ``--url``, credentials, TLS, ``--config``, ``--namespace``, ``--cluster``.

A command that talks to a cluster takes them as one parameter, ``conn: Connection = NO_FLAGS``, and
:func:`connection_options` expands that parameter, in its place, into the Typer options below (so
``--help`` lists them where the parameter stands). The command then uses ``conn.settings`` or
``with conn.engine() as engine:``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from kaudit_elk.base.config import Settings, load_settings

if TYPE_CHECKING:
    from kaudit_elk.cluster.engine import Engine

# Optional[...]: Typer reads these annotations at run time, on every Python the package supports.
UrlOpt = Annotated[Optional[str], typer.Option("--url", help="Engine URL [env KAUDIT_URL; default http://127.0.0.1:9200]")]  # noqa: UP045
UserOpt = Annotated[Optional[str], typer.Option("--username", "-u", help="Basic auth user [env KAUDIT_USERNAME]")]  # noqa: UP045
PasswordOpt = Annotated[Optional[str], typer.Option("--password", help="Basic auth password [env KAUDIT_PASSWORD]")]  # noqa: UP045
ApiKeyOpt = Annotated[Optional[str], typer.Option("--api-key", help="API key (base64 id:key) [env KAUDIT_API_KEY]")]  # noqa: UP045
CaOpt = Annotated[Optional[str], typer.Option("--ca-certs", help="CA bundle for TLS [env KAUDIT_CA_CERTS]")]  # noqa: UP045
VerifyOpt = Annotated[
    Optional[bool], typer.Option("--verify-certs/--no-verify-certs", help="Verify TLS certificates (default on)")  # noqa: UP045
]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", help="YAML config file [env KAUDIT_CONFIG]")]  # noqa: UP045
NamespaceOpt = Annotated[
    Optional[str], typer.Option("--namespace", help="Data stream namespace [env KAUDIT_NAMESPACE; default kaudit]")  # noqa: UP045
]
ClusterOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--cluster", help="Kubernetes cluster name for orchestrator.cluster.name [env KAUDIT_CLUSTER]"),
]

#: The options in the order --help shows them; ``namespace`` and ``cluster`` only where a command asks.
OPTIONS: dict[str, Any] = {
    "url": UrlOpt, "username": UserOpt, "password": PasswordOpt, "api_key": ApiKeyOpt, "ca_certs": CaOpt,
    "verify_certs": VerifyOpt, "config": ConfigOpt, "namespace": NamespaceOpt, "cluster": ClusterOpt,
}

_F = TypeVar("_F", bound=Callable[..., Any])


def settings_from(
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    ca_certs: str | None = None,
    verify_certs: bool | None = None,
    config: str | None = None,
    **extra: Any,
) -> Settings:
    """Build Settings from CLI flags (None means: not given on the command line); unsafe choices warn once."""
    from kaudit_elk.cli.console import warn_once

    flags = dict(url=url, username=username, password=password, api_key=api_key, ca_certs=ca_certs,
                 verify_certs=verify_certs, **extra)
    settings = load_settings(flags, config_file=config, warn=warn_once)
    if not settings.verify_certs:
        warn_once("TLS certificate verification is off (--no-verify-certs / verify_certs: false): anyone on the "
                  "path can impersonate the engine and read the credentials; use --ca-certs instead")
    return settings


@dataclass(frozen=True)
class Connection:
    """What the command line said about the cluster; None means not given (env, config file or default decide)."""

    url: str | None = None
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool | None = None
    config: str | None = None
    namespace: str | None = None
    cluster: str | None = None

    @cached_property
    def settings(self) -> Settings:
        """Flags merged over ``KAUDIT_*`` env, the config file and defaults (read once, on first use)."""
        return settings_from(self.url, self.username, self.password, self.api_key, self.ca_certs,
                             self.verify_certs, self.config, namespace=self.namespace, cluster=self.cluster)

    @property
    def explicit(self) -> bool:
        """An engine was named: --url, KAUDIT_URL or --config (``version`` only talks to one then)."""
        import os

        return self.url is not None or bool(os.environ.get("KAUDIT_URL")) or self.config is not None

    @contextmanager
    def engine(self, probe_capabilities: bool = True) -> Iterator[Engine]:
        """A connected engine for the ``with`` block, closed after it."""
        from kaudit_elk.cluster.engine import connect

        engine = connect(self.settings, probe_capabilities=probe_capabilities)
        try:
            yield engine
        finally:
            engine.close()


#: No connection flags given: the default of a command's ``conn`` parameter (the decorator always passes one).
NO_FLAGS = Connection()


def connection_options(*, namespace: bool = True, cluster: bool = False) -> Callable[[_F], _F]:
    """Expand a command's ``conn: Connection`` parameter into the shared options, at its place in the signature.

    ``namespace``/``cluster``: whether the command has ``--namespace`` / ``--cluster``. Put it between
    ``@app.command()`` and the function.
    """
    names = [n for n in OPTIONS if (n != "namespace" or namespace) and (n != "cluster" or cluster)]

    def decorate(fn: _F) -> _F:
        sig = inspect.signature(fn, eval_str=True)
        params = list(sig.parameters.values())
        slots = [i for i, p in enumerate(params) if p.annotation is Connection]
        if len(slots) != 1:
            raise TypeError(f"{fn.__qualname__}: @connection_options needs exactly one parameter annotated Connection")
        slot = slots[0]
        key = params[slot].name
        keyword = inspect.Parameter.KEYWORD_ONLY  # Typer calls commands with keywords only
        expanded = [inspect.Parameter(n, keyword, default=None, annotation=OPTIONS[n]) for n in names]
        new = [p.replace(kind=keyword) for p in params[:slot]] + expanded + \
              [p.replace(kind=keyword) for p in params[slot + 1:]]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in names}
            return fn(**kwargs, **{key: Connection(**given)})

        command.__signature__ = sig.replace(parameters=new)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in new} | {"return": sig.return_annotation}
        return command  # type: ignore[return-value]

    return decorate
