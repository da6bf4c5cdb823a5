"""The ``kaudit-elk`` command line: each command is a thin call into one library function."""

from __future__ import annotations

import platform
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from kaudit_elk import __version__
from kaudit_elk.base.errors import ConfigError
from kaudit_elk.cli.connection import NO_FLAGS, Connection, connection_options
from kaudit_elk.cli.console import Console, run

app = typer.Typer(
    name="kaudit-elk",
    help="Kubernetes audit logs in Elasticsearch and OpenSearch: bootstrap, ingest, serve, scan, detect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # plain Click help: Rich markup swallowed '[env KAUDIT_URL; ...]', flags showed <bool>
)


@app.callback()
def _root() -> None:
    """Kubernetes audit logs in Elasticsearch and OpenSearch."""


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format")]


@app.command()
@connection_options(namespace=False)
def version(
    conn: Connection = NO_FLAGS,
    output: OutputOpt = OutputFormat.text,
    quiet: QuietOpt = False,
) -> None:
    """Print the kaudit-elk version and, given --url (or KAUDIT_URL), the engine's flavor, version and capabilities."""
    console = Console(quiet)

    def body() -> None:
        from kaudit_elk.events import fastpath

        result: dict[str, Any] = {"kaudit_elk": __version__, "python": platform.python_version(),
                                  "native": fastpath.version()}
        settings = conn.settings  # flags, env and config are checked even when no engine is named
        if conn.explicit:
            with conn.engine() as engine:
                result["engine"] = {
                    "url": settings.url,
                    "flavor": engine.info.flavor,
                    "version": engine.info.version_text,
                    "cluster_name": engine.info.cluster_name,
                    "capabilities": engine.caps.as_dict(),
                }
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


@app.command()
@connection_options(cluster=True)
def bootstrap(
    conn: Connection = NO_FLAGS,
    retention_days: Annotated[int, typer.Option(help="Days audit events stay searchable (ILM/ISM delete phase)")] = 90,
    rollover_age: Annotated[str, typer.Option(help="Roll the write index over after this age")] = "1d",
    shards: Annotated[int, typer.Option(help="Primary shards per backing index")] = 1,
    pipeline: Annotated[bool, typer.Option("--pipeline/--no-pipeline", help="Install the server-side ingest pipeline as the stream's default pipeline (when the engine has the processors)")] = True,
    write_once: Annotated[bool, typer.Option("--write-once/--no-write-once", help="OpenSearch: refuse every write but a create to stored audit documents and integrity links with a final pipeline (its security has no create-only permission)")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a diff; change nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite objects of the same name that kaudit-elk does not own")] = False,
    kibana_url: Annotated[Optional[str], typer.Option("--kibana-url", envvar="KAUDIT_KIBANA_URL", help="Also import the dashboards into this Kibana")] = None,
    dashboards_url: Annotated[Optional[str], typer.Option("--dashboards-url", envvar="KAUDIT_DASHBOARDS_URL", help="Also import the dashboards into this OpenSearch Dashboards")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="Kibana space for the dashboards")] = None,
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="OpenSearch Security tenant for the dashboards")] = None,
    create_roles: Annotated[bool, typer.Option("--create-roles", help="Also create or update the least-privilege roles kaudit-{writer,detector,reader,admin}-<namespace> (needs a security admin)")] = False,
    create_api_key: Annotated[list[str], typer.Option("--create-api-key", metavar="ROLE", help="Elasticsearch: create an API key limited to this kaudit role and print it (id:key, base64) on stdout; repeatable")] = [],  # noqa: B006
    api_key_expiration: Annotated[Optional[str], typer.Option("--api-key-expiration", help="Expiry of keys made by --create-api-key (e.g. 30d; default none)")] = None,
    roles_only: Annotated[bool, typer.Option("--roles-only", help="With --create-roles/--create-api-key: do only that (a security admin's step); install nothing else")] = False,
    output: OutputOpt = OutputFormat.text,
    quiet: QuietOpt = False,
) -> None:
    """Install index templates, lifecycle policy and ingest pipeline (and dashboards) for the engine's flavor (idempotent).

    With --create-roles, also the roles each command needs (README "Least privilege").
    """
    console = Console(quiet)

    def body() -> None:
        from kaudit_elk.cluster.bootstrap import diff, install
        from kaudit_elk.cluster.roles import PURPOSE
        from kaudit_elk.cluster.templates import BootstrapOptions

        settings = conn.settings
        with conn.engine() as engine:
            options = BootstrapOptions(namespace=settings.namespace, cluster=settings.cluster,
                                       retention_days=retention_days, rollover_age=rollover_age, shards=shards,
                                       pipeline=pipeline, write_once=write_once)
            done = install(engine, options, force=force, dry_run=dry_run, create_roles=create_roles,
                           api_key_roles=create_api_key, api_key_expiration=api_key_expiration,
                           roles_only=roles_only)
            label = engine.info.label
        if create_roles and dry_run:
            for d in done.roles:
                console.data(f"role      {d.name:28} {PURPOSE[d.role]}")
        for name, action in done.roles_applied:
            console.info(f"role {name}: {action}")
        for name, key in done.api_keys:
            console.data(f"{name}\t{key}")
        if done.plan is None:  # --roles-only
            return
        the_plan = done.plan
        console.info(f"{label} at {settings.url}")
        for note in the_plan.notes:
            console.info(f"note: {note}")
        report = {"engine": label, "dry_run": dry_run, "notes": the_plan.notes,
                  "steps": [{"action": s.action, "kind": s.desired.kind, "name": s.desired.name}
                            for s in the_plan.steps]}
        if dry_run:
            if output is OutputFormat.json:
                console.json(report)
                return
            for step in the_plan.steps:
                console.data(step.describe())
                if step.action in ("update", "conflict"):
                    console.data(diff(step))
            return
        imports = []
        for flavor, target in (("kibana", kibana_url), ("opensearch", dashboards_url)):
            if target:
                from kaudit_elk.views import dashboards

                summary = dashboards.import_into(
                    target, flavor, namespace=settings.namespace, username=settings.username,  # type: ignore[arg-type]
                    password=settings.password, api_key=settings.api_key, ca_certs=settings.ca_certs,
                    verify_certs=settings.verify_certs, space=space, tenant=tenant)
                imports.append(summary)
                console.info(f"dashboards: {summary['imported']} saved objects imported into {flavor} at {summary['url']}")
        if output is OutputFormat.json:
            console.json({**report, "dashboards": imports})
        else:
            for step in the_plan.steps:
                console.data(step.describe())
        console.info("nothing to change: everything is up to date" if not the_plan.changes
                     else f"{len(the_plan.changes)} object(s) installed or updated")

    run(console, body)


@app.command()
@connection_options(cluster=True)
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Audit log files (.gz ok) or - for stdin")],
    conn: Connection = NO_FLAGS,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading a growing (and rotated) file")] = False,
    checkpoint: Annotated[Optional[str], typer.Option(help="Checkpoint file: resume an interrupted run where it stopped")] = None,
    dead_letter: Annotated[str, typer.Option(help="Where records that cannot be indexed go, with reasons (NDJSON)")] = "kaudit-dead-letters.ndjson",
    batch_mb: Annotated[float, typer.Option(help="Bulk request size in MiB")] = 4.0,
    workers: Annotated[int, typer.Option(help="Concurrent bulk requests")] = 2,
    retry_for: Annotated[float, typer.Option(help="Seconds to keep retrying an unavailable engine before giving up")] = 600.0,
    keep_original: Annotated[bool, typer.Option("--keep-original", help="Store the raw event in event.original")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Refresh the stream at the end so the events are searchable at once")] = False,
    integrity: Annotated[bool, typer.Option("--integrity/--no-integrity", help="Chain every batch in kaudit-integrity-<namespace> for `verify`")] = True,
    prometheus_textfile: Annotated[Optional[str], typer.Option("--prometheus-textfile", help="Write the run's figures as Prometheus textfile-collector metrics")] = None,
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

        if workers < 1:
            raise ConfigError(f"--workers must be 1 or more, got {workers}")
        if not 0 < batch_mb <= 100:  # 100 MiB: the engines' default http.max_content_length
            raise ConfigError(f"--batch-mb must be more than 0 and at most 100, got {batch_mb:g}")
        if retry_for < 0:
            raise ConfigError(f"--retry-for must be 0 or more seconds, got {retry_for:g}")
        settings = conn.settings
        engine = connect(settings)
        from kaudit_elk.cluster.namespace import require_bootstrapped

        require_bootstrapped(engine, settings.namespace)
        options = IngestOptions(namespace=settings.namespace, cluster=settings.cluster,
                                batch_bytes=int(batch_mb * 1024 * 1024), workers=workers, retry_for=retry_for,
                                dead_letter=dead_letter, checkpoint=checkpoint, keep_original=keep_original,
                                follow=follow, refresh=refresh, integrity=integrity)
        bar = console.progress("events")
        import time as _time

        started, stats = _time.time(), None
        try:
            stats = run_ingest(engine, paths, options, progress=bar.advance)
        finally:
            bar.close()
            if prometheus_textfile:
                from kaudit_elk.trail.metrics import write_run

                figures = {k: float(v) for k, v in stats.as_dict().items() if isinstance(v, int)} if stats else {}
                write_run(prometheus_textfile, "ingest", stats is not None, started, _time.time(), figures)
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
@connection_options(cluster=True)
def serve(
    conn: Connection = NO_FLAGS,
    listen: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:8443",
    tls_cert: Annotated[Optional[str], typer.Option(help="Server certificate chain (PEM); HTTPS is the default")] = None,
    tls_key: Annotated[Optional[str], typer.Option(help="Server private key (PEM)")] = None,
    client_ca: Annotated[Optional[str], typer.Option(help="CA bundle that signed the apiserver's client certificate (mTLS)")] = None,
    client_name: Annotated[Optional[list[str]], typer.Option(help="Allowed client certificate name (CN or DNS SAN); repeatable; default any the CA signed")] = None,
    token_file: Annotated[Optional[str], typer.Option(help="File of accepted bearer tokens, one per line [also env KAUDIT_SERVE_TOKEN]")] = None,
    plain_http: Annotated[bool, typer.Option("--plain-http", help="Serve plain HTTP (loopback only unless --insecure)")] = False,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow plain HTTP or no authentication on a non-loopback address")] = False,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept requests without client certificate or token")] = False,
    spool_dir: Annotated[str, typer.Option(help="Spool directory: acknowledged batches wait here until shipped")] = "kaudit-spool",
    spool_max_mb: Annotated[float, typer.Option(help="Unshipped MiB the spool holds before answering 503")] = 1024.0,
    spool_max_age: Annotated[float, typer.Option(help="Seconds the oldest unshipped batch may wait before the spool answers 503")] = 86400.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB (413 above; Content-Length checked first)")] = 32.0,
    max_inflight_mb: Annotated[float, typer.Option(help="Request MiB being received at once (more wait for a slot, see --queue-timeout)")] = 256.0,
    max_concurrent: Annotated[int, typer.Option(help="Requests received at once (more wait for a slot, see --queue-timeout)")] = 32,
    queue_timeout: Annotated[float, typer.Option(help="Seconds a request over --max-concurrent/--max-inflight-mb waits for a slot before its 429")] = 10.0,
    max_connections: Annotated[int, typer.Option(help="Open client connections (more are closed at once)")] = 1024,
    handshake_timeout: Annotated[float, typer.Option(help="Seconds for a TLS handshake")] = 10.0,
    read_timeout: Annotated[float, typer.Option(help="Longest pause, in seconds, within headers or body (408)")] = 30.0,
    request_timeout: Annotated[float, typer.Option(help="Seconds to receive one whole body (408)")] = 60.0,
    idle_timeout: Annotated[float, typer.Option(help="Seconds an idle keep-alive connection stays open")] = 120.0,
    dead_letter: Annotated[str, typer.Option(help="Where undecodable batches/events go, with reasons (NDJSON, 0600)")] = "kaudit-dead-letters.ndjson",
    batch_mb: Annotated[float, typer.Option(help="Spooled MiB per bulk request")] = 4.0,
    quiet: QuietOpt = False,
) -> None:
    """Receive the apiserver's audit webhook: acknowledge each EventList after a durable local spool, ship it to the engine in the background.

    Starts and acknowledges while the engine is unreachable (/readyz says shipping waits). Answers 503
    (the apiserver retries) only when the spool is full. SIGTERM drains in-flight requests and says what
    is left in the spool.
    """
    console = Console(quiet)

    def body() -> None:
        import logging

        from kaudit_elk.base.errors import ConfigError
        from kaudit_elk.cluster.engine import connect
        from kaudit_elk.ingest.bulk import IngestOptions
        from kaudit_elk.ingest.serve import ServeOptions, read_tokens, serve_forever
        from kaudit_elk.ingest.shipper import ShipOptions
        from kaudit_elk.ingest.spool import SpoolLimits

        logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                            format="%(asctime)s %(levelname)s %(message)s")
        for noisy in ("opensearch", "elastic_transport", "elasticsearch", "aiohttp"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        settings = conn.settings
        host, _, port = listen.rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--listen must be host:port with a port from 0 to 65535, got {listen!r}")
        mib = 1024 * 1024
        options = ServeOptions(
            host=host.strip("[]") or "127.0.0.1", port=int(port), tls_cert=tls_cert, tls_key=tls_key,
            client_ca=client_ca, client_names=tuple(client_name or ()), tokens=read_tokens(token_file),
            plain_http=plain_http, insecure=insecure, no_auth=no_auth, spool_dir=spool_dir,
            spool=SpoolLimits(max_bytes=int(spool_max_mb * mib), max_age=spool_max_age),
            max_body_bytes=int(max_body_mb * mib), max_inflight_bytes=int(max_inflight_mb * mib),
            max_concurrent=max_concurrent, queue_timeout=queue_timeout, max_connections=max_connections,
            handshake_timeout=handshake_timeout,
            header_timeout=read_timeout, read_timeout=read_timeout, request_timeout=request_timeout,
            idle_timeout=idle_timeout,
            ship=ShipOptions(batch_bytes=int(batch_mb * mib), ingest=IngestOptions(
                namespace=settings.namespace, cluster=settings.cluster, dead_letter=dead_letter)))

        def started(receiver) -> None:  # type: ignore[no-untyped-def]
            for warning in receiver.warnings:
                console.warn(warning)
            st = receiver.spool.stats()
            scheme = "http" if plain_http else "https"
            auth = " + ".join(a for a, on in (("mTLS", client_ca), ("bearer token", options.tokens)) if on) or "none"
            console.info(f"receiving audit webhooks on {scheme}://{options.host}:{receiver.port} (auth: {auth}); "
                         f"spool {spool_dir}: {st.records} batch(es), {st.bytes:,} bytes waiting; shipping to "
                         f"{settings.url} (stream logs-kubernetes.audit_logs-{settings.namespace})")

        report = serve_forever(options, lambda: connect(settings), on_started=started)
        console.info(f"stopped: acknowledged {report.spooled_batches} batch(es), {report.spooled_bytes:,} bytes; "
                     f"left in the spool {spool_dir}: {report.left_batches} batch(es), {report.left_bytes:,} bytes"
                     + (" (they ship at the next start)" if report.left_batches else ""))

    run(console, body)


@app.command()
@connection_options()
def retention(
    conn: Connection = NO_FLAGS,
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
        from kaudit_elk.base.timeparse import duration_seconds
        from kaudit_elk.cluster.retention import apply_retention

        duration_seconds(rollover_age, "--rollover-age")
        settings = conn.settings
        engine = connect(settings)
        if engine.caps.lifecycle:
            console.warn(f"this cluster has {engine.caps.lifecycle.upper()}; the policy installed by bootstrap "
                         "already manages retention")
        from kaudit_elk.cluster.namespace import require_known

        require_known(engine, settings.namespace, "retention")
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


# Command modules register themselves here; each owns one area of the CLI.
_COMMAND_MODULES: tuple[str, ...] = ("kaudit_elk.cli.rules", "kaudit_elk.cli.detect", "kaudit_elk.cli.views",
                                     "kaudit_elk.cli.trail", "kaudit_elk.cli.tune")


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


#: Metavars shown in --help instead of Typer's Python type names (``<str>``, ``<bool>``).
_METAVARS = {"<str>": "TEXT", "<int>": "INTEGER", "<float>": "NUMBER", "<Path>": "PATH", "<path>": "PATH",
             "<list[str]>": "TEXT", "<list[Path]>": "PATH"}


#: What a value is, where TEXT would say nothing: the placeholders the README uses (`--config FILE`, `--kibana-url URL`).
_OPTION_METAVARS = {
    **dict.fromkeys(("--url", "--kibana-url", "--dashboards-url", "--webhook", "--alertmanager"), "URL"),
    **dict.fromkeys(("--config", "--ca-certs", "--checkpoint", "--dead-letter", "--prometheus-textfile", "--out",
                     "--tls-cert", "--tls-key", "--client-ca", "--token-file", "--alerts", "--exceptions"), "FILE"),
    **dict.fromkeys(("--spool-dir", "--fs-location"), "DIR"),
    **dict.fromkeys(("--overlap", "--delay", "--max-step", "--max-lookback", "--initial-lookback", "--max-replay", "--interval",
                     "--incident-gap", "--incident-max-span", "--rollover-age", "--max-data-age", "--max-detect-age",
                     "--api-key-expiration"), "DURATION"),
    **dict.fromkeys(("--since", "--until", "--from", "--to", "--verify-since"), "TIME"),
    "--listen": "HOST:PORT", "--namespace": "NS", "--cluster": "NAME", "--severity-override": "ID=LEVEL",
    "--disable": "ID",
}


def _no_type(ctx: Any) -> None:
    return None


def tidy_help(command: Any) -> None:
    """Flags show no value placeholder in --help; other options a conventional one (TEXT, NUMBER); arguments
    their name only (``paths...``, not ``paths... <list[str]>``)."""
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument":
            try:  # an argument's metavar would replace its name, so its type label goes instead
                if param.display_type_rich(None) in _METAVARS:
                    param.display_type_rich = _no_type
            except Exception:  # noqa: BLE001 - a help nicety, never fatal
                pass
            continue
        if getattr(param, "param_type_name", "") != "option":
            continue
        if param.is_flag or param.secondary_opts:
            param.metavar = ""
        elif param.metavar is None:
            try:
                shown = param.display_type_rich(None)  # the context only matters for choices
            except Exception:  # noqa: BLE001 - a help nicety, never fatal
                continue
            if shown in _METAVARS:
                named = next((_OPTION_METAVARS[o] for o in param.opts if o in _OPTION_METAVARS), None)
                param.metavar = named or _METAVARS[shown]
    original = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)


def main() -> None:
    """Console-script entry point."""
    _register()
    command = typer.main.get_command(app)
    tidy_help(command)
    command(prog_name="kaudit-elk")
