"""The ``kaudit-elk`` command line: each command is a thin call into one library function."""

from __future__ import annotations

import platform
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from kaudit_elk import __version__
from kaudit_elk.base.config import Settings, load_settings
from kaudit_elk.cli.console import Console, run

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
        from kaudit_elk.events import fastpath

        result: dict[str, Any] = {"kaudit_elk": __version__, "python": platform.python_version(),
                                  "native": fastpath.version()}
        settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config)
        explicit = url is not None or _env_has_url() or config is not None
        if explicit:
            from kaudit_elk.cluster.engine import connect

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
            native = f"native fast path {result['native']}" if result["native"] else "no native fast path"
            console.data(f"kaudit-elk {result['kaudit_elk']} (python {result['python']}; {native})")
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


NamespaceOpt = Annotated[
    Optional[str], typer.Option("--namespace", help="Data stream namespace [env KAUDIT_NAMESPACE; default kaudit]")
]
ClusterOpt = Annotated[
    Optional[str], typer.Option("--cluster", help="Kubernetes cluster name for orchestrator.cluster.name [env KAUDIT_CLUSTER]")
]


@app.command()
def bootstrap(
    url: UrlOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaOpt = None,
    verify_certs: VerifyOpt = None,
    config: ConfigOpt = None,
    namespace: NamespaceOpt = None,
    cluster: ClusterOpt = None,
    retention_days: Annotated[int, typer.Option(help="Days audit events stay searchable (ILM/ISM delete phase)")] = 90,
    rollover_age: Annotated[str, typer.Option(help="Roll the write index over after this age")] = "1d",
    shards: Annotated[int, typer.Option(help="Primary shards per backing index")] = 1,
    pipeline: Annotated[bool, typer.Option("--pipeline/--no-pipeline", help="Install the server-side ingest pipeline as the stream's default pipeline (when the engine has the processors)")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a diff; change nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite objects of the same name that kaudit-elk does not own")] = False,
    kibana_url: Annotated[Optional[str], typer.Option("--kibana-url", envvar="KAUDIT_KIBANA_URL", help="Also import the dashboards into this Kibana")] = None,
    dashboards_url: Annotated[Optional[str], typer.Option("--dashboards-url", envvar="KAUDIT_DASHBOARDS_URL", help="Also import the dashboards into this OpenSearch Dashboards")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="Kibana space for the dashboards")] = None,
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="OpenSearch Security tenant for the dashboards")] = None,
    output: OutputOpt = OutputFormat.text,
    quiet: QuietOpt = False,
) -> None:
    """Install index templates, lifecycle policy and ingest pipeline (and dashboards) for the engine's flavor (idempotent)."""
    console = Console(quiet)

    def body() -> None:
        from kaudit_elk.cluster.bootstrap import apply, build_plan, diff
        from kaudit_elk.cluster.engine import connect
        from kaudit_elk.cluster.templates import BootstrapOptions

        settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config,
                                 namespace=namespace, cluster=cluster)
        engine = connect(settings)
        options = BootstrapOptions(namespace=settings.namespace, cluster=settings.cluster,
                                   retention_days=retention_days, rollover_age=rollover_age, shards=shards,
                                   pipeline=pipeline)
        the_plan = build_plan(engine, options, force=force)
        console.info(f"{engine.info.label} at {settings.url}")
        for note in the_plan.notes:
            console.info(f"note: {note}")
        if output is OutputFormat.json:
            report = {"engine": engine.info.label, "dry_run": dry_run, "notes": the_plan.notes,
                      "steps": [{"action": s.action, "kind": s.desired.kind, "name": s.desired.name}
                                for s in the_plan.steps]}
        if dry_run:
            for step in the_plan.steps:
                if output is OutputFormat.text:
                    console.data(step.describe())
                    if step.action in ("update", "conflict"):
                        console.data(diff(step))
            if output is OutputFormat.json:
                console.json(report)
            return
        changed = apply(engine, the_plan, options)
        imports = []
        for flavor, target in (("kibana", kibana_url), ("opensearch", dashboards_url)):
            if not target:
                continue
            from kaudit_elk.views import dashboards

            objects = dashboards.render(flavor, index_namespace=settings.namespace)  # type: ignore[arg-type]
            summary = dashboards.import_objects(
                target, flavor, objects, username=settings.username, password=settings.password,  # type: ignore[arg-type]
                api_key=settings.api_key, ca_certs=settings.ca_certs, verify_certs=settings.verify_certs,
                space=space, tenant=tenant)
            imports.append({"url": target, **summary})
            console.info(f"dashboards: {summary['imported']} saved objects imported into {flavor} at {target}")
        if output is OutputFormat.json:
            report["dashboards"] = imports
            console.json(report)
        else:
            for step in the_plan.steps:
                console.data(step.describe())
        console.info("nothing to change: everything is up to date" if not changed
                     else f"{len(changed)} object(s) installed or updated")

    run(console, body)


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Audit log files (.gz ok) or - for stdin")],
    url: UrlOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaOpt = None,
    verify_certs: VerifyOpt = None,
    config: ConfigOpt = None,
    namespace: NamespaceOpt = None,
    cluster: ClusterOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading a growing (and rotated) file")] = False,
    checkpoint: Annotated[Optional[str], typer.Option(help="Checkpoint file: resume an interrupted run where it stopped")] = None,
    dead_letter: Annotated[str, typer.Option(help="Where records that cannot be indexed go, with reasons (NDJSON)")] = "kaudit-dead-letters.ndjson",
    batch_mb: Annotated[float, typer.Option(help="Bulk request size in MiB")] = 4.0,
    workers: Annotated[int, typer.Option(help="Concurrent bulk requests")] = 2,
    retry_for: Annotated[float, typer.Option(help="Seconds to keep retrying an unavailable engine before giving up")] = 600.0,
    keep_original: Annotated[bool, typer.Option("--keep-original", help="Store the raw event in event.original")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Refresh the stream at the end so the events are searchable at once")] = False,
    output: OutputOpt = OutputFormat.text,
    quiet: QuietOpt = False,
) -> None:
    """Normalize audit events and index them (exactly once per auditID and stage); bad lines are dead-lettered.

    Uses the native fast path when it is installed (see `kaudit-elk version`; KAUDIT_NATIVE=0 turns it off).
    """
    console = Console(quiet)

    def body() -> None:
        from kaudit_elk.cluster.engine import connect
        from kaudit_elk.base.errors import EXIT_PARTIAL
        from kaudit_elk.ingest.bulk import IngestOptions
        from kaudit_elk.ingest.bulk import ingest as run_ingest

        settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config,
                                 namespace=namespace, cluster=cluster)
        engine = connect(settings)
        options = IngestOptions(namespace=settings.namespace, cluster=settings.cluster,
                                batch_bytes=int(batch_mb * 1024 * 1024), workers=workers, retry_for=retry_for,
                                dead_letter=dead_letter, checkpoint=checkpoint, keep_original=keep_original,
                                follow=follow, refresh=refresh)
        bar = console.progress("events")
        try:
            stats = run_ingest(engine, paths, options, progress=bar.advance)
        finally:
            bar.close()
        if output is OutputFormat.json:
            console.json(stats.as_dict())
        else:
            console.data(
                f"read {stats.read}, indexed {stats.indexed}, duplicates {stats.duplicates}, "
                f"skipped by stage policy {stats.skipped}, dead-lettered {stats.dead_lettered}"
            )
        if stats.dead_lettered:
            console.warn(f"{stats.dead_lettered} record(s) written to {dead_letter} with reasons: "
                         + ", ".join(f"{k} ({v})" for k, v in sorted(stats.reasons.items())))
            raise typer.Exit(EXIT_PARTIAL)

    run(console, body)


@app.command()
def serve(
    url: UrlOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaOpt = None,
    verify_certs: VerifyOpt = None,
    config: ConfigOpt = None,
    namespace: NamespaceOpt = None,
    cluster: ClusterOpt = None,
    listen: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:8443",
    tls_cert: Annotated[Optional[str], typer.Option(help="Server certificate (PEM) for HTTPS")] = None,
    tls_key: Annotated[Optional[str], typer.Option(help="Server private key (PEM)")] = None,
    client_ca: Annotated[Optional[str], typer.Option(help="CA that signed the apiserver's client certificate (mTLS)")] = None,
    dead_letter: Annotated[str, typer.Option(help="Where undecodable batches/events go (NDJSON)")] = "kaudit-dead-letters.ndjson",
    request_budget: Annotated[float, typer.Option(help="Seconds to retry the engine per batch before answering 503")] = 20.0,
    quiet: QuietOpt = False,
) -> None:
    """Receive the apiserver's audit webhook (EventList batches) and index them; 503 makes the apiserver retry."""
    console = Console(quiet)

    def body() -> None:
        from kaudit_elk.cluster.engine import connect
        from kaudit_elk.ingest.bulk import IngestOptions
        from kaudit_elk.ingest.serve import ServeOptions, make_server

        settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config,
                                 namespace=namespace, cluster=cluster)
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            from kaudit_elk.base.errors import ConfigError

            raise ConfigError(f"--listen must be host:port, got {listen!r}")
        engine = connect(settings)
        options = ServeOptions(host=host or "127.0.0.1", port=int(port), tls_cert=tls_cert, tls_key=tls_key,
                               client_ca=client_ca, request_budget=request_budget,
                               ingest=IngestOptions(namespace=settings.namespace, cluster=settings.cluster,
                                                    dead_letter=dead_letter))
        server = make_server(engine, options)
        scheme = "https" if tls_cert else "http"
        console.info(f"receiving audit webhooks on {scheme}://{listen} -> {engine.info.label} "
                     f"(stream logs-kubernetes.audit_logs-{settings.namespace})")
        try:
            server.serve_forever()
        finally:
            server.server_close()
            console.info(f"stopped: {server.receiver.stats()}")  # type: ignore[attr-defined]

    run(console, body)


@app.command()
def retention(
    url: UrlOpt = None,
    username: UserOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaOpt = None,
    verify_certs: VerifyOpt = None,
    config: ConfigOpt = None,
    namespace: NamespaceOpt = None,
    days: Annotated[float, typer.Option(help="Delete backing indices whose newest event is older than this")] = 90,
    rollover_age: Annotated[str, typer.Option(help="Roll the write index over when older than this (30m, 12h, 1d)")] = "1d",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be rolled over and deleted")] = False,
    output: OutputOpt = OutputFormat.text,
    quiet: QuietOpt = False,
) -> None:
    """Client-side lifecycle for clusters without ILM/ISM: roll over and delete expired backing indices (cron it daily)."""
    console = Console(quiet)

    def body() -> None:
        from kaudit_elk.cluster.engine import connect
        from kaudit_elk.cluster.retention import apply_retention, parse_age

        try:
            parse_age(rollover_age)
        except ValueError as exc:
            from kaudit_elk.base.errors import ConfigError

            raise ConfigError(str(exc)) from None
        settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config, namespace=namespace)
        engine = connect(settings)
        if engine.caps.lifecycle:
            console.warn(f"this cluster has {engine.caps.lifecycle.upper()}; the policy installed by bootstrap "
                         "already manages retention")
        plan = apply_retention(engine, settings.namespace, days, rollover_age, dry_run=dry_run)
        if output is OutputFormat.json:
            console.json({"dry_run": dry_run, "rollover": plan.rollover, "delete": plan.delete, "keep": plan.keep})
            return
        verb = "would" if dry_run else "did"
        console.data(f"rollover: {verb} {'roll over' if plan.rollover else 'not roll over'}")
        for name in plan.delete:
            console.data(f"delete: {name}")
        for name in plan.keep:
            console.data(f"keep:   {name}")

    run(console, body)


def _env_has_url() -> bool:
    import os

    return bool(os.environ.get("KAUDIT_URL"))


# Command modules register themselves here; each owns one area of the CLI.
_COMMAND_MODULES: tuple[str, ...] = ("kaudit_elk.cli.rules", "kaudit_elk.cli.detect", "kaudit_elk.cli.views",
                                     "kaudit_elk.cli.trail")


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
