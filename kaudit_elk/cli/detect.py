"""``kaudit-elk detect``: scheduled detections in the cluster (cron, CronJob, or --loop)."""

from __future__ import annotations

import time
from enum import Enum
from datetime import datetime, timezone
from typing import Annotated, Any, Optional

import typer

from kaudit_elk.cli.connection import NO_FLAGS, Connection, connection_options
from kaudit_elk.cli.main import QuietOpt
from kaudit_elk.cli.rules import (
    DisableOpt, ExcOpt, GapOpt, NoPackOpt, RulesDirOpt, SevOpt, Severity, SpanOpt, incident_options, load_pack,
)
from kaudit_elk.cli.console import Console, run
from kaudit_elk.base.errors import EXIT_ALERTS, ConfigError
from kaudit_elk.base.timeparse import parse_duration, parse_time

class Notify(str, Enum):
    alerts = "alerts"
    incidents = "incidents"
    both = "both"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class StepPrinter:
    """Progress of a detect run on stderr: step, events read, matches, alerts, ETA. On a terminal one
    line redrawn; otherwise (cron, logs) a line at most every 10 seconds, none for a one-step run."""

    def __init__(self, console: Console, every: float = 10.0) -> None:
        self.console, self.every = console, every
        self.tty = getattr(console.err, "isatty", lambda: False)()
        self._last = 0.0

    def __call__(self, p: Any) -> None:
        if self.console.quiet or (p.steps <= 1 and not self.tty):
            return
        now = time.monotonic()
        final = p.step == p.steps
        if not self.tty and not final and now - self._last < self.every:
            return
        self._last = now
        rate = p.events / p.elapsed if p.elapsed > 0 else 0.0
        eta = "" if final or p.eta is None else f", about {_duration(p.eta)} left"
        line = (f"detect: step {p.step}/{p.steps} up to {p.window[1]:%Y-%m-%d %H:%M:%S}: {p.events:,} events "
                f"({rate:,.0f}/s), {p.matched:,} candidates checked, {p.new_alerts} new alert(s){eta}")
        if self.tty:
            self.console.err.write("\r" + line + ("\n" if final else "\x1b[K"))
            self.console.err.flush()
        else:
            self.console.info(line)


def register(app: typer.Typer) -> None:
    @app.command()
    @connection_options()
    def detect(
        conn: Connection = NO_FLAGS,
        rules_dir: RulesDirOpt = [],  # noqa: B006
        disable: DisableOpt = [],  # noqa: B006
        severity_override: SevOpt = [],  # noqa: B006
        exceptions: ExcOpt = None,
        no_default_rules: NoPackOpt = False,
        overlap: Annotated[str, typer.Option(help="Re-search this much before the last position (late events)")] = "5m",
        delay: Annotated[str, typer.Option(help="Leave the newest events for the next run (ingest lag)")] = "30s",
        max_step: Annotated[str, typer.Option(help="Largest time step per search when catching up")] = "1h",
        max_lookback: Annotated[str, typer.Option(help="Never search further back than this")] = "7d",
        initial_lookback: Annotated[str, typer.Option(help="Where a rule without state starts")] = "1h",
        max_replay: Annotated[str, typer.Option(help="How far before a window correlations are replayed without a saved state (auto: 1d scheduled; a backfill 4x the longest correlation timespan, at least 1h)")] = "auto",
        since: Annotated[Optional[str], typer.Option(help="Backfill from (ISO8601 or now-7d); positions are not moved")] = None,
        until: Annotated[Optional[str], typer.Option(help="Backfill until (default: now - delay)")] = None,
        min_severity: Annotated[Severity, typer.Option("--min-severity", help="Alerts below are stored but not sent to the outputs")] = Severity.medium,
        store_severity: Annotated[Severity, typer.Option("--store-severity", help="Alerts below are not even stored (nor sent)")] = Severity.low,
        webhook: Annotated[list[str], typer.Option("--webhook", help="POST new alerts as JSON to this URL (repeatable)")] = [],  # noqa: B006
        alertmanager: Annotated[list[str], typer.Option("--alertmanager", help="Alertmanager base URL (repeatable)")] = [],  # noqa: B006
        stdout: Annotated[bool, typer.Option("--stdout/--no-stdout", help="Print new alerts as NDJSON on stdout")] = True,
        notify: Annotated[Notify, typer.Option("--notify", help="Announce alerts, incidents (one per actor, again only when it escalates) or both")] = Notify.alerts,
        incidents: Annotated[bool, typer.Option("--incidents/--no-incidents", help="Group stored alerts into incidents in kaudit-incidents-<namespace>")] = True,
        incident_gap: GapOpt = "2h",
        incident_max_span: SpanOpt = "24h",
        baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Judge each identity's closed hours against its own history (aggregations; 7 days warm-up)")] = False,
        incident_min_severity: Annotated[Severity, typer.Option("--incident-min-severity", help="Announce incidents at or above this severity")] = Severity.medium,
        fail_on: Annotated[Optional[Severity], typer.Option("--fail-on", help=f"Exit {EXIT_ALERTS} when a new alert is at or above this severity")] = None,
        prometheus_textfile: Annotated[Optional[str], typer.Option("--prometheus-textfile", help="Write each run's figures (last success, duration, alerts, search lag) as Prometheus textfile-collector metrics")] = None,
        loop: Annotated[bool, typer.Option("--loop", help="Keep running, one run every --interval")] = False,
        interval: Annotated[str, typer.Option(help="Time between runs with --loop")] = "1m",
        quiet: QuietOpt = False,
    ) -> None:
        """Run the rule pack in the cluster on the events since the last run: no gaps, no duplicate alerts."""
        console = Console(quiet)

        def body() -> int:
            from kaudit_elk.detect.scheduled import DetectOptions, run_detect
            from kaudit_elk.cluster.engine import connect
            from kaudit_elk.detect.incident_store import IncidentRun
            from kaudit_elk.rules.baselines import BaselineOptions
            from kaudit_elk.detect.outputs import AlertmanagerOutput, StdoutOutput, WebhookOutput
            from kaudit_elk.rules.alerts import severity_rank

            now = datetime.now(timezone.utc)
            settings = conn.settings
            options = DetectOptions(
                namespace=settings.namespace, overlap=parse_duration(overlap, "--overlap"),
                delay=parse_duration(delay, "--delay"), max_step=parse_duration(max_step, "--max-step"),
                max_lookback=parse_duration(max_lookback, "--max-lookback"),
                initial_lookback=parse_duration(initial_lookback, "--initial-lookback"),
                max_replay=None if max_replay == "auto" else parse_duration(max_replay, "--max-replay"),
                since=parse_time(since, "--since", now) if since else None,
                until=parse_time(until, "--until", now) if until else None,
                min_severity=min(store_severity.value, min_severity.value, key=severity_rank),
                notify_severity=min_severity.value,
            )
            if until and not since:
                raise ConfigError("--until needs --since")
            pause = parse_duration(interval, "--interval").total_seconds()
            from kaudit_elk.base.config import validate_url

            for option, urls in (("--webhook", webhook), ("--alertmanager", alertmanager)):
                for u in urls:  # before the run: a bad output URL would only fail once alerts are to be sent
                    validate_url(u, option)
            pack = load_pack(rules_dir, disable, severity_override, exceptions, no_default_rules)
            engine = connect(settings)
            targets: list[Any] = []
            if stdout:
                targets.append(StdoutOutput(console.data))
            targets += [WebhookOutput(u, verify=settings.verify_certs) for u in webhook]
            targets += [AlertmanagerOutput(u, verify=settings.verify_certs) for u in alertmanager]
            outputs = targets if notify is not Notify.incidents else []
            if notify is not Notify.alerts and not incidents:
                raise ConfigError("--notify incidents needs incidents (drop --no-incidents)")
            grouping = IncidentRun(incident_options(incident_gap, incident_max_span),
                                   incident_min_severity.value,
                                   targets if notify is not Notify.alerts else []) if incidents else None
            worst = -1
            while True:
                started = time.time()
                try:
                    result = run_detect(engine, pack, options, outputs, progress=StepPrinter(console), incidents=grouping,
                                        baselines=BaselineOptions() if baselines else None)
                except BaseException:
                    if prometheus_textfile:
                        from kaudit_elk.trail.metrics import write_run

                        write_run(prometheus_textfile, "detect", False, started, time.time())
                    raise
                if prometheus_textfile:
                    from kaudit_elk.trail.metrics import write_run

                    lag = (datetime.now(timezone.utc) - result.windows[-1][1]).total_seconds() if result.windows else None
                    write_run(prometheus_textfile, "detect", True, started, time.time(), {
                        "new_alerts": len(result.new_alerts), "known_alerts": result.known_alerts,
                        "renotified_alerts": result.renotified, "rules": len(pack.rules),
                        **({"search_lag_seconds": lag} if lag is not None else {})})
                for note in dict.fromkeys(result.notes):
                    console.info(note)
                for a in result.new_alerts:
                    worst = max(worst, severity_rank(a["kaudit"]["alert"]["severity"]))
                span = (f"{result.windows[0][0]:%Y-%m-%d %H:%M:%S} .. {result.windows[-1][1]:%Y-%m-%d %H:%M:%S} UTC "
                        f"in {len(result.windows)} step(s)") if result.windows else "nothing new to search"
                console.info(f"detect: {len(pack.rules)} rules, {span}: {result.events:,} events, {result.matched:,} "
                             f"candidates checked, {len(result.new_alerts)} new alert(s) ({result.notified} sent), "
                             f"{result.known_alerts} already known, {result.renotified} re-sent, "
                             f"{len(result.incidents)} incident(s) new or escalated")
                if not loop:
                    break
                time.sleep(pause)
            if fail_on is not None and worst >= severity_rank(fail_on.value):
                return EXIT_ALERTS
            return 0

        code = run(console, body)
        if code:
            raise typer.Exit(code)
