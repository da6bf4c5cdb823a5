"""The ``kaudit-elk`` command line: each command is a thin call into one library function."""

from __future__ import annotations

import platform
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from kaudit_elk import __version__
from kaudit_elk.config import Settings, load_settings
from kaudit_elk.console import Console, run

app = typer.Typer(
    name="kaudit-elk",
    help="Kubernetes audit logs in Elasticsearch and OpenSearch: bootstrap, ingest, serve, scan, detect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Kubernetes audit logs in Elasticsearch and OpenSearch."""


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


# Connection options shared by every command that talks to a cluster.
UrlOpt = Annotated[Optional[str], typer.Option("--url", help="Engine URL [env KAUDIT_URL; default http://127.0.0.1:9200]")]
UserOpt = Annotated[Optional[str], typer.Option("--username", "-u", help="Basic auth user [env KAUDIT_USERNAME]")]
PasswordOpt = Annotated[Optional[str], typer.Option("--password", help="Basic auth password [env KAUDIT_PASSWORD]")]
ApiKeyOpt = Annotated[Optional[str], typer.Option("--api-key", help="API key (base64 id:key) [env KAUDIT_API_KEY]")]
CaOpt = Annotated[Optional[str], typer.Option("--ca-certs", help="CA bundle for TLS [env KAUDIT_CA_CERTS]")]
VerifyOpt = Annotated[
    Optional[bool], typer.Option("--verify-certs/--no-verify-certs", help="Verify TLS certificates (default on)")
]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", help="YAML config file [env KAUDIT_CONFIG]")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format")]


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
    """Build Settings from CLI flags (None means: not given on the command line)."""
    flags = dict(url=url, username=username, password=password, api_key=api_key, ca_certs=ca_certs,
                 verify_certs=verify_certs, **extra)
    return load_settings(flags, config_file=config)


@app.command()
def version(
    url: UrlOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaOpt = None,
    verify_certs: VerifyOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.text,
    quiet: QuietOpt = False,
) -> None:
    """Print the kaudit-elk version and, given --url (or KAUDIT_URL), the engine's flavor, version and capabilities."""
    console = Console(quiet)

    def body() -> None:
        result: dict[str, Any] = {"kaudit_elk": __version__, "python": platform.python_version()}
        settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config)
        explicit = url is not None or _env_has_url() or config is not None
        if explicit:
            from kaudit_elk.engine import connect

            engine = connect(settings)
            try:
                result["engine"] = {
                    "url": settings.url,
                    "flavor": engine.info.flavor,
                    "version": engine.info.version_text,
                    "cluster_name": engine.info.cluster_name,
                    "capabilities": engine.caps.as_dict(),
                }
            finally:
                engine.close()
        if output is OutputFormat.json:
            console.json(result)
        else:
            console.data(f"kaudit-elk {result['kaudit_elk']} (python {result['python']})")
            if "engine" in result:
                e = result["engine"]
                caps = e["capabilities"]
                console.data(f"engine: {e['flavor']} {e['version']} at {e['url']} (cluster {e['cluster_name']})")
                console.data(
                    f"  flat type: {caps['flat_type']}; lifecycle: {caps['lifecycle'] or 'client-side'}; "
                    f"painless: {'yes' if caps['painless'] else 'no'}; "
                    f"ingest processors: {len(caps['ingest_processors'])}"
                )

    run(console, body)


def _env_has_url() -> bool:
    import os

    return bool(os.environ.get("KAUDIT_URL"))


# Command modules register themselves here; each owns one area of the CLI.
_COMMAND_MODULES: tuple[str, ...] = ()


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
