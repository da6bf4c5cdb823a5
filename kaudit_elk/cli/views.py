"""CLI: ``kaudit-elk dashboards export|import`` and ``kaudit-elk report``. Thin calls into dashboards/report."""

from dataclasses import replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from kaudit_elk.cli.connection import NO_FLAGS, Connection, connection_options
from kaudit_elk.cli.console import Console, run
from kaudit_elk.base.errors import ConfigError, InputError


class UiFlavor(str, Enum):
    kibana = "kibana"
    opensearch = "opensearch"


class ReportFormat(str, Enum):
    html = "html"
    markdown = "markdown"
    json = "json"


def parse_when(text: Optional[str], now: Optional[datetime] = None, option: str = "--from") -> Optional[datetime]:
    """``now``, ``now-7d`` or an ISO8601 date/time (UTC when no offset) -> aware datetime; None when not given
    (:func:`kaudit_elk.base.timeparse.parse_time`)."""
    if text is None or text == "":
        return None
    from kaudit_elk.base.timeparse import parse_time

    return parse_time(text, option, now or datetime.now(timezone.utc))


def _write(console: Console, text: str, out: Path | None) -> None:
    if out is None:
        console.out.write(text)
        return
    from kaudit_elk.base.files import write_private

    try:
        write_private(out, text.encode("utf-8"))  # reports and exports name users, addresses, secrets: 0600
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror}") from None
    console.info(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add the ``dashboards`` sub-app and the ``report`` command to ``app``."""
    from kaudit_elk.cli import main as base

    dash = typer.Typer(name="dashboards", help="Kibana / OpenSearch Dashboards saved objects (one source, two flavors).",
                       no_args_is_help=True)

    @dash.command("export")
    def export(
        flavor: Annotated[UiFlavor, typer.Option("--flavor", help="Which UI the NDJSON is for")],
        out: Annotated[Optional[Path], typer.Option("--out", help="Write to FILE instead of stdout")] = None,
        namespace: Annotated[str, typer.Option("--namespace", envvar="KAUDIT_NAMESPACE", help="Data stream namespace in index patterns ('*' = all)")] = "kaudit",
        quiet: base.QuietOpt = False,
    ) -> None:
        """Print the saved objects (index patterns, searches, visualizations, dashboards) as NDJSON."""
        console = Console(quiet)

        def body() -> None:
            from kaudit_elk.views import dashboards

            objects = dashboards.render(flavor.value, index_namespace=namespace)
            _write(console, dashboards.to_ndjson(objects), out)
            console.info(f"{len(objects)} saved objects for {flavor.value}")

        run(console, body)

    @dash.command("import")
    def import_(
        kibana_url: Annotated[Optional[str], typer.Option("--kibana-url", envvar="KAUDIT_KIBANA_URL", help="Kibana base URL")] = None,
        dashboards_url: Annotated[Optional[str], typer.Option("--dashboards-url", envvar="KAUDIT_DASHBOARDS_URL", help="OpenSearch Dashboards base URL")] = None,
        namespace: Annotated[str, typer.Option("--namespace", envvar="KAUDIT_NAMESPACE", help="Data stream namespace in index patterns ('*' = all)")] = "kaudit",
        space: Annotated[Optional[str], typer.Option("--space", help="Kibana space (default space when omitted)")] = None,
        tenant: Annotated[Optional[str], typer.Option("--tenant", help="OpenSearch Security tenant")] = None,
        username: Annotated[Optional[str], typer.Option("--username", "-u", envvar="KAUDIT_USERNAME", help="Basic auth user")] = None,
        password: Annotated[Optional[str], typer.Option("--password", envvar="KAUDIT_PASSWORD", help="Basic auth password")] = None,
        api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="KAUDIT_API_KEY", help="API key (base64 id:key)")] = None,
        ca_certs: Annotated[Optional[str], typer.Option("--ca-certs", envvar="KAUDIT_CA_CERTS", help="CA bundle for TLS")] = None,
        verify_certs: Annotated[bool, typer.Option("--verify-certs/--no-verify-certs", envvar="KAUDIT_VERIFY_CERTS", help="Verify TLS certificates")] = True,
        output: base.OutputOpt = base.OutputFormat.text,
        quiet: base.QuietOpt = False,
    ) -> None:
        """Import (overwrite) the saved objects into Kibana and/or OpenSearch Dashboards; safe to repeat."""
        console = Console(quiet)

        def body() -> None:
            from kaudit_elk.views import dashboards

            from kaudit_elk.base import redact
            from kaudit_elk.cli.console import warn_once

            targets = [(f, u, o) for f, u, o in (("kibana", kibana_url, "--kibana-url"),
                                                 ("opensearch", dashboards_url, "--dashboards-url")) if u]
            if not targets:
                raise ConfigError("give --kibana-url and/or --dashboards-url (or KAUDIT_KIBANA_URL / KAUDIT_DASHBOARDS_URL)")
            redact.register(password, api_key)
            if not verify_certs:
                warn_once("TLS certificate verification is off (--no-verify-certs): anyone on the path can "
                          "impersonate the server and read the credentials; use --ca-certs instead")
            results = []
            for flavor, given, option in targets:
                summary = dashboards.import_into(
                    given, flavor, namespace=namespace, option=option, username=username,  # type: ignore[arg-type]
                    password=password, api_key=api_key, ca_certs=ca_certs, verify_certs=verify_certs,
                    space=space, tenant=tenant)
                results.append(summary)
                console.info(f"{flavor} at {summary['url']}: imported {summary['imported']} of {summary['objects']} objects")
            if output is base.OutputFormat.json:
                console.json(results)
            else:
                for r in results:
                    kinds = ", ".join(f"{n} {t}" for t, n in sorted(r["by_type"].items()))
                    console.data(f"{r['flavor']}: {r['imported']} objects imported at {r['url']} ({kinds})")

        run(console, body)

    app.add_typer(dash, name="dashboards")

    @app.command("report")
    @connection_options(namespace=False)
    def report_cmd(
        paths: Annotated[Optional[list[str]], typer.Argument(help="Audit log files (omit to read from the cluster at --url)")] = None,
        fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Output format")] = ReportFormat.html,
        out: Annotated[Optional[Path], typer.Option("--out", help="Write to FILE instead of stdout")] = None,
        since: Annotated[Optional[str], typer.Option("--from", help="Start (ISO8601 or now-7d); cluster default now-7d")] = None,
        until: Annotated[Optional[str], typer.Option("--to", help="End, exclusive (ISO8601 or now)")] = None,
        alerts_file: Annotated[Optional[Path], typer.Option("--alerts", help="Alerts NDJSON (e.g. from scan) instead of scanning")] = None,
        scan_files: Annotated[bool, typer.Option("--scan/--no-scan", help="Run the rule pack on the files for the alerts section")] = True,
        title: Annotated[str, typer.Option("--title", help="Report title")] = "Kubernetes audit report",
        conn: Connection = NO_FLAGS,
        namespace: Annotated[Optional[str], typer.Option("--namespace", help="Data stream namespace, cluster mode [env KAUDIT_NAMESPACE; default kaudit]")] = None,
        max_events: Annotated[int, typer.Option("--max-events", help="Cluster mode: read at most this many events, the newest (the report says when it covers fewer than the period holds)")] = 100_000,
        quiet: base.QuietOpt = False,
    ) -> None:
        """A self-contained audit report (HTML, Markdown or JSON) for a time range, from files or the cluster."""
        console = Console(quiet)

        def body() -> None:
            from kaudit_elk.views import report

            start, end = parse_when(since, option="--from"), parse_when(until, option="--to")
            if max_events < 1:
                raise ConfigError(f"--max-events must be 1 or more, got {max_events}")
            alerts = report.alerts_from_file(alerts_file) if alerts_file else None
            if paths:
                from kaudit_elk.detect.scan import scan

                data = report.from_files(list(paths), start=start, end=end, alerts=alerts,
                                         scan=scan if scan_files else None, title=title, warn=console.warn)
            else:
                cluster = replace(conn, namespace=namespace or None)
                with cluster.engine(probe_capabilities=False) as engine:
                    data = report.from_engine(engine, cluster.settings.namespace, start=start or parse_when("now-7d"),
                                              end=end, alerts=alerts, max_events=max_events, title=title,
                                              warn=console.warn)
            _write(console, report.render(data, fmt.value), out)

        run(console, body)
