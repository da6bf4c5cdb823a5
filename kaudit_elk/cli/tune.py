"""``kaudit-elk tune``: propose an exceptions file from alert history, for a person to review."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from kaudit_elk.base.errors import ConfigError
from kaudit_elk.cli.console import Console, run_exit
from kaudit_elk.cli.connection import NO_FLAGS, Connection, connection_options
from kaudit_elk.cli.main import QuietOpt
from kaudit_elk.cli.rules import DisableOpt, ExcOpt, NoPackOpt, RulesDirOpt, SevOpt, Severity, load_pack


def register(app: typer.Typer) -> None:
    @app.command()
    @connection_options()
    def tune(
        paths: Annotated[Optional[list[str]], typer.Argument(help="History: audit log files the pack is run on")] = None,
        from_: Annotated[Optional[str], typer.Option("--from", help="History from the cluster's alerts index since (ISO8601 or now-14d)")] = None,
        to: Annotated[Optional[str], typer.Option("--to", help="End of the cluster history (default now)")] = None,
        conn: Connection = NO_FLAGS,
        rules_dir: RulesDirOpt = [],  # noqa: B006
        disable: DisableOpt = [],  # noqa: B006
        severity_override: SevOpt = [],  # noqa: B006
        exceptions: ExcOpt = None,
        no_default_rules: NoPackOpt = False,
        min_severity: Annotated[Severity, typer.Option("--min-severity", help="Only tune alerts at or above")] = Severity.low,
        min_count: Annotated[int, typer.Option("--min-count", help="A pattern must have alerted at least this often")] = 3,
        min_days: Annotated[int, typer.Option("--min-days", help="... on at least this many distinct UTC days")] = 2,
        allow_high: Annotated[bool, typer.Option("--allow-high", help="Write proposals for high/critical rules active (they stay flagged); default: commented out")] = False,
        out: Annotated[Optional[Path], typer.Option("--out", help="Write the proposal here (mode 0600) instead of stdout")] = None,
        quiet: QuietOpt = False,
    ) -> None:
        """Propose exceptions (per rule: identity, namespace, user agent, resource) for alerts that recur in history."""
        console = Console(quiet)

        def body() -> int:
            from kaudit_elk.base.timeparse import parse_time
            from kaudit_elk.rules.exceptions import propose, render, silenced
            from kaudit_elk.rules.incidents import alert_time

            if bool(paths) == bool(from_):
                raise ConfigError("give history files, or --from for the cluster's alerts (not both)")
            if min_count < 1 or min_days < 1:
                raise ConfigError("--min-count and --min-days must be at least 1")
            pack = load_pack(rules_dir, disable, severity_override, exceptions, no_default_rules)
            zero = ""  # cluster history: why there is no alert to tune on (the index exists / detect found none)
            if paths:
                from kaudit_elk.detect.tune import alerts_from_files

                alerts = alerts_from_files(list(paths), pack, min_severity.value, on_error=console.warn)
                source = ", ".join(paths)
            else:
                from kaudit_elk.cluster.namespace import require_alerts_index
                from kaudit_elk.cluster.templates import Names
                from kaudit_elk.detect.tune import alerts_from_engine

                now = datetime.now(timezone.utc)
                start = parse_time(from_, "--from", now)
                end = parse_time(to, "--to", now) if to else now
                with conn.engine() as engine:
                    namespace = conn.settings.namespace
                    index = Names(namespace).alerts_index
                    if require_alerts_index(engine, namespace):  # none: exit 2 unless detect ran and found nothing
                        alerts = list(alerts_from_engine(engine, namespace, start, end, min_severity.value))
                        if not alerts:
                            held = engine.request("POST", f"/{index}/_count", {"query": {"match_all": {}}})["count"]
                            zero = (f"{index} holds {held:,} alert(s), none at or above {min_severity.value} from "
                                    f"{start.isoformat()} to {end.isoformat()}")
                    else:
                        alerts = []
                        zero = (f"detect has run for namespace {namespace} and never stored an alert "
                                f"({index} does not exist yet)")
                source = f"{index} {from_}..{to or 'now'}"
            proposals = propose(alerts, pack, min_count=min_count, min_days=min_days)
            times = [alert_time(a) for a in alerts]
            text = render(proposals, total_alerts=len(alerts), span=(min(times), max(times)) if times else None,
                          allow_high=allow_high, source=source)
            if out is not None:
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
            else:
                console.data(text.rstrip("\n"))
            for p in proposals:
                if p.warning:
                    console.warn(p.warning if allow_high else p.warning.replace(
                        "Left commented out; enable it only if you are sure.", "Written commented out."))
            quiet_ids = silenced(proposals, allow_high)
            summary = (f"tune: 0 alert(s): {zero}; nothing to tune" if zero and not alerts else
                       f"tune: {len(alerts)} alert(s) in history, {len(proposals)} proposal(s); applied, the active "
                       f"ones would have silenced {len(quiet_ids)} of them")
            console.info(summary + (f"; written to {out}" if out else ""))
            return 0

        run_exit(console, body)
