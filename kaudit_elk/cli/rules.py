"""CLI: ``scan`` (run the rule pack on files) and ``rules list|show|validate|test``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from kaudit_elk.cli.console import Console, run
from kaudit_elk.base.errors import EXIT_ALERTS, EXIT_USAGE, ConfigError, ContentError

if TYPE_CHECKING:
    from kaudit_elk.rules.incidents import IncidentOptions
    from kaudit_elk.rules.loader import RulePack


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


class TableOrNdjson(str, Enum):
    table = "table"
    ndjson = "ndjson"


class Severity(str, Enum):
    informational = "informational"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


RulesDirOpt = Annotated[list[Path], typer.Option("--rules-dir", metavar="DIR", help="Extra rule folder (repeatable), added to the shipped pack")]
DisableOpt = Annotated[list[str], typer.Option("--disable", help="Rule id or name to disable (repeatable)")]
SevOpt = Annotated[list[str], typer.Option("--severity-override", help="Give the rule ID (id or name) the severity LEVEL (repeatable)")]
ExcOpt = Annotated[Optional[Path], typer.Option("--exceptions", help="Tuning YAML: exceptions, placeholders, disable, severity")]
NoPackOpt = Annotated[bool, typer.Option("--no-default-rules", help="Use only --rules-dir folders, not the shipped pack")]
GapOpt = Annotated[str, typer.Option("--incident-gap", help="Quiet time after which an actor's next alert opens a new incident")]
SpanOpt = Annotated[str, typer.Option("--incident-max-span", help="Longest an incident stays open from its first alert")]


def incident_options(gap: str, max_span: str) -> IncidentOptions:
    """IncidentOptions from the --incident-gap/--incident-max-span durations."""
    from kaudit_elk.base.timeparse import parse_duration
    from kaudit_elk.rules.incidents import IncidentOptions

    return IncidentOptions(gap=parse_duration(gap, "--incident-gap").total_seconds(),
                           max_span=parse_duration(max_span, "--incident-max-span").total_seconds())


def _fit(text: str, width: int) -> str:
    """``text`` in a column of ``width``: padded, or cut with "…" so that a cut name is seen to be cut."""
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


def incident_row(doc: dict[str, Any]) -> str:
    """One incident as a table line: first alert, severity, risk, alerts, actor, tactic progression."""
    i = doc["kaudit"]["incident"]
    who = f"{i['actor'].get('identity') or (i['identities'] or ['?'])[0]} @ {i['actor'].get('source_ip') or '?'}"
    steps = " > ".join(i["tactics"]) or "-"
    return (f"{(i['first_alert_time'] or '')[:19]:19}  {i['severity']:13}  risk {i['risk_score']:<5}  "
            f"{i['alert_count']:>4} alerts  {len(i['rules']):>3} rules  {_fit(who, 60)}  {steps}")


def load_pack(rules_dir: list[Path] | None = None, disable: list[str] | None = None,
              severity_override: list[str] | None = None, exceptions: Path | None = None, no_default: bool = False) -> RulePack:
    """The shipped pack plus user folders and tuning, as one RulePack."""
    from kaudit_elk.rules.loader import default_pack_dir, load_rules, load_tuning

    dirs: list[Path] = [] if no_default else [default_pack_dir()]
    dirs += list(rules_dir or [])
    if not dirs:
        raise ConfigError("no rules: --no-default-rules needs at least one --rules-dir")
    overrides: dict[str, str] = {}
    for item in severity_override or []:
        rid, sep, level = item.partition("=")
        if not sep or not rid or not level:
            raise ConfigError(f"--severity-override {item!r}: expected ID=LEVEL")
        overrides[rid.strip()] = level.strip()
    return load_rules(dirs, disabled=disable or [], severity=overrides, tuning=load_tuning(exceptions),
                      tuning_source=str(exceptions) if exceptions else "exceptions")


def find_rule(pack: Any, key: str) -> Any:
    """A rule by id, name, or title (case-insensitive; a unique beginning of a title is enough)."""
    try:
        return pack.get(key)
    except ContentError:
        pass
    wanted = " ".join(key.split()).casefold()
    exact = [r for r in pack.rules if r.title.casefold() == wanted]
    found = exact or [r for r in pack.rules if r.title.casefold().startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ContentError(f"{key!r} matches {len(found)} rules: " + "; ".join(f"{r.id} {r.title}" for r in found[:10]))
    raise ContentError(f"no rule with id, name or title {key!r} (see `kaudit-elk rules list`)")


def unique_issues(issues: list[Any]) -> list[Any]:
    """Each problem once: the loader may report one both per file and per rule (keep the one naming the rule)."""
    best: dict[tuple[str, str], Any] = {}
    for issue in issues:
        key = (issue.path, issue.message)
        if key not in best or (issue.rule and not best[key].rule):
            best[key] = issue
    return list(best.values())


def issue_line(issue: Any) -> str:
    """``path:line: rule: message``, the line found from the message (its "line N", or a quoted value)."""
    import re

    line = None
    message = " ".join(str(issue.message).split())
    marks = list(re.finditer(r"line (\d+)", message))  # YAML: the context's mark, then the problem's
    m = marks[-1] if marks else None
    if m:
        line = int(m.group(1))
        message = re.sub(r'\s+in "<unicode string>", line \d+, column \d+:.*?\^', f" (column {m.group(0)})", message)
        message = re.sub(r'\(column line \d+\)', "", message).strip()
    else:
        for token in re.findall(r"'([^']+)'", message):
            try:
                lines = Path(issue.path).read_text(encoding="utf-8").splitlines()
            except OSError:
                break
            hit = next((i for i, text in enumerate(lines, 1) if token in text), None)
            if hit:
                line = hit
                break
    where = f"{issue.path}:{line}" if line else issue.path
    return f"{where}: {issue.rule + ': ' if issue.rule else ''}{message}"


ALERT_HEADER = f"{'TIME (UTC)':19}  {'SEVERITY':13}  {'RULE':60}  {'USER':48}  {'SOURCE IP':15}  TARGET"


def _alert_row(a: dict[str, Any]) -> str:
    k = a["kaudit"]["alert"]
    who = (a.get("user") or {}).get("name") or ""
    ip = (a.get("source") or {}).get("ip") or ""
    orch = a.get("orchestrator") or {}
    res = (orch.get("resource") or {})
    target = "/".join(x for x in (orch.get("namespace"), res.get("type"), res.get("name")) if x)
    if k.get("group") and not target:
        target = ", ".join(f"{gk}={gv}" for gk, gv in k["group"].items())
    return f"{(k['last_event_time'] or '')[:19]:19}  {k['severity']:13}  {_fit(a['rule']['name'], 60)}  {_fit(who, 48)}  {ip:15}  {target}"


def register(app: typer.Typer) -> None:
    """Add ``scan`` and the ``rules`` sub-app to ``app``."""
    rules_app = typer.Typer(help="List, show, validate and test the detection rules.", no_args_is_help=True)
    app.add_typer(rules_app, name="rules")

    @app.command()
    def scan(
        paths: Annotated[Optional[list[str]], typer.Argument(help="Audit log files ('-' for stdin); none: the shipped sample")] = None,
        sample: Annotated[bool, typer.Option("--sample", help="Scan the sample audit log shipped with the rules")] = False,
        rules_dir: RulesDirOpt = [],  # noqa: B006 - Typer needs a literal default
        disable: DisableOpt = [],  # noqa: B006
        severity_override: SevOpt = [],  # noqa: B006
        exceptions: ExcOpt = None,
        no_default_rules: NoPackOpt = False,
        history: Annotated[list[str], typer.Option("--history", metavar="FILE", help="History file (repeatable), read first to prime the new-terms rules and the baselines (no alerts)")] = [],  # noqa: B006
        min_severity: Annotated[Severity, typer.Option("--min-severity", help="Hide alerts below this severity")] = Severity.low,
        fmt: Annotated[TableOrNdjson, typer.Option("--format", help="table (people) or ndjson (one alert per line)")] = TableOrNdjson.table,
        fail_on: Annotated[Optional[Severity], typer.Option("--fail-on", help=f"Exit {EXIT_ALERTS} if any alert is at or above this severity")] = None,
        baselines: Annotated[Optional[bool], typer.Option("--baselines/--no-baselines", help="Judge each identity against its own history (hour of week, rate, new addresses, retrieval volume); default on with --history")] = None,
        incidents: Annotated[bool, typer.Option("--incidents", help="Print incidents (alerts of one actor grouped, with a risk score) instead of alerts")] = False,
        incident_gap: GapOpt = "2h",
        incident_max_span: SpanOpt = "24h",
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr")] = False,
    ) -> None:
        """Run the detection rules on audit log files, with no cluster (no PATH: the shipped sample)."""
        console = Console(quiet)

        def body() -> int:
            from kaudit_elk.rules.alerts import severity_rank
            from kaudit_elk.detect.scan import ScanStats, sample_path
            from kaudit_elk.detect.scan import scan as do_scan

            pack = load_pack(rules_dir, disable, severity_override, exceptions, no_default_rules)
            targets = list(paths or [])
            if sample or not targets:
                targets.append(str(sample_path()))
                console.info(f"scanning the shipped sample {targets[-1]}")
            stats = ScanStats()
            progress = console.progress("events")
            worst = -1
            grouping = incident_options(incident_gap, incident_max_span) if incidents else None
            collected: list[dict[str, Any]] = []
            header_done = False
            try:
                from kaudit_elk.rules.baselines import BaselineOptions

                judge = BaselineOptions() if (baselines if baselines is not None else bool(history)) else None
                for alert in do_scan(targets, pack, min_severity=min_severity.value, history=history, stats=stats,
                                     on_error=console.warn, on_event=progress.advance, baselines=judge):
                    worst = max(worst, severity_rank(alert["kaudit"]["alert"]["severity"]))
                    if grouping is not None:
                        collected.append(alert)
                    elif fmt is TableOrNdjson.ndjson:
                        console.json(alert)
                    else:
                        if progress.enabled or not header_done:
                            progress.close()  # the table owns the terminal from its first row:
                            progress.enabled = False  # no progress line drawn into it
                        if not header_done:
                            header_done = True
                            console.data(ALERT_HEADER)
                        console.data(_alert_row(alert))
            finally:
                progress.close()
            summary = ""
            if grouping is not None:
                from kaudit_elk.rules.incidents import build_incidents

                found = build_incidents(collected, grouping)
                for doc in found:
                    worst = max(worst, doc["kaudit"]["incident"]["severity_rank"])
                    console.json(doc) if fmt is TableOrNdjson.ndjson else console.data(incident_row(doc))
                summary = f" in {len(found)} incident(s)"
            if stats.baseline_note:
                console.info(stats.baseline_note)
            console.info(f"{stats.events} events, {stats.errors} unreadable records, {stats.alerts} alerts "
                         f"(>= {min_severity.value}){summary} from {len(pack.rules)} rules")
            if fail_on is not None and worst >= severity_rank(fail_on.value):
                return EXIT_ALERTS
            return 0

        code = run(console, body)
        if code:
            raise typer.Exit(code)

    @rules_app.command("list")
    def list_rules(
        rules_dir: RulesDirOpt = [],  # noqa: B006
        disable: DisableOpt = [],  # noqa: B006
        severity_override: SevOpt = [],  # noqa: B006
        exceptions: ExcOpt = None,
        no_default_rules: NoPackOpt = False,
        fmt: Annotated[TableOrJson, typer.Option("--format", help="table or json")] = TableOrJson.table,
    ) -> None:
        """List rules: id, title, level, ATT&CK techniques, required audit level."""
        console = Console()

        def body() -> None:
            pack = load_pack(rules_dir, disable, severity_override, exceptions, no_default_rules)
            rows: list[dict[str, Any]] = [{"id": r.id, "name": r.name, "title": r.title, "level": r.level, "kind": r.kind,
                     "attack": r.attack, "audit_level": r.audit_level, "catalogue": r.catalogue,
                     "alerts": r.generate, "path": r.path} for r in pack.rules]
            if fmt is TableOrJson.json:
                console.json(rows)
                return
            console.data(f"{'ID':36}  {'LEVEL':13}  {'KIND':11}  {'AUDIT LEVEL':15}  {'ATT&CK':24}  TITLE")
            for r in rows:
                console.data(f"{r['id']:36}  {r['level']:13}  {r['kind']:11}  {r['audit_level'] or '-':15}  "
                             f"{','.join(r['attack'])[:24]:24}  {r['title']}")

        run(console, body)

    @rules_app.command("show")
    def show(
        rule_id: Annotated[str, typer.Argument(help="Rule id, name or title (as `rules list` shows it)")],
        rules_dir: RulesDirOpt = [],  # noqa: B006
        no_default_rules: NoPackOpt = False,
    ) -> None:
        """Print one rule's Sigma YAML (with its kaudit metadata and test events)."""
        console = Console()

        def body() -> None:
            pack = load_pack(rules_dir, no_default=no_default_rules)
            rule = find_rule(pack, rule_id)
            console.data(Path(rule.path).read_text(encoding="utf-8"))
            from kaudit_elk.rules.response import notes_for, render_text

            note = notes_for(rule.id)
            if note is not None:
                console.data("# Response (detections/response.yml)\n" + "\n".join(
                    "# " + line for line in render_text(note).splitlines()))

        run(console, body)

    @rules_app.command("validate")
    def validate_cmd(
        dirs: Annotated[Optional[list[Path]], typer.Argument(help="Rule folders or files (default: the shipped pack, strict)")] = None,
        strict: Annotated[bool, typer.Option("--strict", help="Apply the shipped pack's policy (ids, tags, tests...)")] = False,
    ) -> None:
        """Report every problem of every rule file; exit 2 when there is any."""
        console = Console()

        def body() -> int:
            from kaudit_elk.rules.loader import default_pack_dir, rule_files, validate

            targets = list(dirs or [])
            is_pack = not targets
            if is_pack:
                targets = [default_pack_dir()]
            issues = unique_issues(validate(targets, strict=strict or is_pack))
            for issue in issues:
                console.data(issue_line(issue))
            n = len(rule_files(targets))
            if issues:
                console.error(f"{len(issues)} problem(s) in {len({i.path for i in issues})} of {n} file(s)")
                return EXIT_USAGE
            console.info(f"{n} file(s) OK")
            return 0

        code = run(console, body)
        if code:
            raise typer.Exit(code)

    @rules_app.command("test")
    def test_cmd(
        rules_dir: RulesDirOpt = [],  # noqa: B006
        no_default_rules: NoPackOpt = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every rule")] = False,
    ) -> None:
        """Run every rule's own test events; report passed/failed and catalogue coverage."""
        console = Console()

        def body() -> int:
            from kaudit_elk.rules.selftest import CATALOGUE, run_pack_tests

            pack = load_pack(rules_dir, no_default=no_default_rules)
            report = run_pack_tests(pack)
            for res in report.results:
                if verbose or not res.ok:
                    status = "ok  " if res.ok else "FAIL"
                    console.data(f"{status} {res.rule.id} {res.rule.title}  ({res.passed} case(s))"
                                 + ("" if res.ok else "  " + "; ".join(res.failures)))
            failed = len(report.failed)
            cases = sum(r.passed for r in report.results)
            console.data(f"{len(report.results)} rules: {len(report.results) - failed} passed, {failed} failed "
                         f"({cases} test cases passed); catalogue ideas covered: {len(report.covered)}/{len(CATALOGUE)}")
            return 1 if failed else 0

        code = run(console, body)
        if code:
            raise typer.Exit(code)

