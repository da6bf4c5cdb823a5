"""CLI: the trail itself — ``policy generate|check``, ``verify``, ``archive``, ``doctor``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from kaudit_elk.base.errors import EXIT_FINDINGS, ConfigError
from kaudit_elk.cli.connection import NO_FLAGS, Connection, connection_options
from kaudit_elk.cli.console import Console, run, run_exit
from kaudit_elk.cli.main import OutputFormat, OutputOpt, QuietOpt
from kaudit_elk.cli.rules import NoPackOpt, RulesDirOpt, load_pack


class Profile(str, Enum):
    minimal = "minimal"
    standard = "standard"
    full = "full"


class FailOn(str, Enum):
    blind = "blind"
    degraded = "degraded"
    never = "never"


RepoOpt = Annotated[str, typer.Option("--repository", help="Snapshot repository (registered in the cluster, or created with --fs-location)")]
#: ``archive list|verify`` take the group's options after the sub-command too (None: as given before it)
SubRepoOpt = Annotated[Optional[str], typer.Option("--repository", help="Snapshot repository (default: as given before the sub-command, else kaudit-archive)")]  # noqa: UP045
SubOutputOpt = Annotated[Optional[OutputFormat], typer.Option("--output", "-o", help="Output format")]  # noqa: UP045
_MARK = {"ok": "ok", "reduced": "reduced", "degraded": "DEGRADED", "blind": "BLIND", "withheld": "withheld"}


def _write_private(path: str, text: str) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _archive_options(group: dict[str, Any], repository: str | None, conn: Connection, output: OutputFormat | None,
                     quiet: bool) -> dict[str, Any]:
    """``archive``'s options (given before the sub-command) with those given after it on top."""
    from dataclasses import fields, replace

    given = {f.name: getattr(conn, f.name) for f in fields(conn) if getattr(conn, f.name) is not None}
    return {"repository": repository or group["repository"], "conn": replace(group["conn"], **given),
            "output": output or group["output"], "quiet": quiet or group["quiet"]}


def _require_known(engine: Any, namespace: str, command: str) -> None:
    from kaudit_elk.cluster.namespace import require_known

    require_known(engine, namespace, command)


def _check_times(values: dict[str, str]) -> None:
    """Refuse a bad time before any request (exit 2 naming the option), not as the engine's HTTP 400."""
    from datetime import datetime, timezone

    from kaudit_elk.base.timeparse import parse_time

    now = datetime.now(timezone.utc)
    for option, value in values.items():
        parse_time(value, option, now)


def register(app: typer.Typer) -> None:
    """Add the ``policy`` sub-app (and the other trail commands) to ``app``."""
    policy_app = typer.Typer(help="Audit policy: generate one from the rule pack, check one against it.",
                             no_args_is_help=True)
    app.add_typer(policy_app, name="policy")

    @policy_app.command("generate")
    def generate_cmd(
        profile: Annotated[Profile, typer.Option("--profile", help="minimal (fewer bodies, more noise dropped), standard, full (every write with bodies)")] = Profile.standard,
        out: Annotated[Optional[str], typer.Option("--out", help="Write to this file instead of stdout")] = None,
        managed_fields: Annotated[bool, typer.Option("--omit-managed-fields/--keep-managed-fields", help="Set omitManagedFields")] = True,
        rules_dir: RulesDirOpt = [],  # noqa: B006
        no_default_rules: NoPackOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Print an audit.k8s.io/v1 Policy derived from what the rule pack needs (for --audit-policy-file)."""
        console = Console(quiet)

        def body() -> None:
            from kaudit_elk import __version__
            from kaudit_elk.trail.generate import generate
            from kaudit_elk.trail.needs import pack_needs

            pack = load_pack(rules_dir, no_default=no_default_rules)
            text = generate(pack_needs(pack), profile.value, __version__, managed_fields)
            if out:
                Path(out).write_text(text, encoding="utf-8")
                console.info(f"wrote {out} (profile {profile.value}, {len(pack.rules)} rules)")
            else:
                console.data(text.rstrip("\n"))

        run(console, body)

    @policy_app.command("check")
    @connection_options()
    def check_cmd(
        policy_file: Annotated[str, typer.Argument(help="The audit Policy YAML (as given to --audit-policy-file)")],
        fail_on: Annotated[FailOn, typer.Option("--fail-on", help=f"Exit {EXIT_FINDINGS} on: blind (a blind rule; the default), degraded (a blind or degraded rule), never (no rule status); a policy rule that writes secret values always fails")] = FailOn.blind,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every rule, also those that are ok")] = False,
        from_cluster: Annotated[bool, typer.Option("--from-cluster", help="Also compare with the levels and stages stored in the cluster")] = False,
        since: Annotated[str, typer.Option("--since", help="--from-cluster: start of the range (ISO or now-24h)")] = "now-24h",
        rules_dir: RulesDirOpt = [],  # noqa: B006
        no_default_rules: NoPackOpt = False,
        conn: Connection = NO_FLAGS,
        output: OutputOpt = OutputFormat.text,
        quiet: QuietOpt = False,
    ) -> None:
        """Which rules a policy leaves blind or degraded (apiserver semantics), and which policy rules write secrets."""
        console = Console(quiet)

        def body() -> int:
            from kaudit_elk.trail.coverage import as_json, check
            from kaudit_elk.trail.needs import pack_needs
            from kaudit_elk.trail.policy import describe, load_policy

            try:
                text = Path(policy_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{policy_file}: cannot read: {exc.strerror}") from None
            pol = load_policy(text, policy_file)
            for w in pol.warnings:
                console.warn(w)
            needs = pack_needs(load_pack(rules_dir, no_default=no_default_rules))
            result = check(pol, needs)
            observed = None
            if from_cluster:
                from kaudit_elk.trail.observed import compare, fetch

                _check_times({"--since": since})
                with conn.engine() as engine:
                    seen = fetch(engine, conn.settings.namespace, since)
                observed = (seen, compare(seen, needs))
            if output is OutputFormat.json:
                doc = as_json(result)
                if observed:
                    seen, rows = observed
                    doc["observed"] = {"levels": seen.levels, "stages": seen.stages, "since": since,
                                       "rules": [{"id": r.rule_id, "title": r.title, "needs": r.needs,
                                                  "events": r.events, "below": r.below, "levels": r.levels,
                                                  "status": r.status} for r in rows]}
                console.json(doc)
            else:
                for cov in result.rules:
                    if cov.status in ("ok", "reduced") and not verbose:
                        continue
                    console.data(f"{_MARK[cov.status]:9} needs {cov.needs:15} gets {cov.lowest}..{cov.highest:15} "
                                 f"{cov.title}")
                    reason = cov.reason(pol)
                    if reason:
                        console.data(f"          {reason}")
                    if cov.status == "withheld":
                        console.data("          (its bodies hold secret values: a safe policy keeps them at Metadata)")
                for leak in result.leaks:
                    console.data(f"SECRETS   {describe(pol.rules[leak.policy_rule], leak.policy_rule)} records "
                                 f"{leak.what} at {leak.level}")
                if observed:
                    seen, rows = observed
                    console.data(f"stored since {since}: levels "
                                 + (", ".join(f"{k} {v}" for k, v in sorted(seen.levels.items())) or "none")
                                 + "; stages " + (", ".join(f"{k} {v}" for k, v in sorted(seen.stages.items())) or "none"))
                    for r in rows:
                        if r.status == "below" or (verbose and r.status != "any-request"):
                            console.data(f"{'STORED' if r.status == 'below' else r.status:9} needs {r.needs:15} "
                                         f"{r.below} of {r.events} events below it "
                                         f"({', '.join(f'{k} {v}' for k, v in sorted(r.levels.items()))}) {r.title}")
                counts = ", ".join(f"{len(result.by_status(s))} {s}" for s in ("ok", "reduced", "degraded", "blind", "withheld"))
                console.info(f"{len(result.rules)} rules: {counts}; {len(result.leaks)} policy rule(s) writing secret values")
            bad = bool(result.leaks)
            if fail_on is not FailOn.never:
                bad = bad or bool(result.by_status("blind"))
            if fail_on is FailOn.degraded:
                bad = bad or bool(result.by_status("degraded"))
            return EXIT_FINDINGS if bad else 0

        run_exit(console, body)

    @app.command("verify")
    @connection_options()
    def verify_cmd(
        since: Annotated[str, typer.Option("--since", help="Start of the range of event times, @timestamp (ISO time or now-24h, now-7d)")] = "now-24h",
        until: Annotated[str, typer.Option("--until", help="End of the range")] = "now",
        conn: Connection = NO_FLAGS,
        output: OutputOpt = OutputFormat.text,
        quiet: QuietOpt = False,
    ) -> None:
        """Recompute the integrity chain from the stored documents: modified, deleted and inserted documents per batch.

        Keyed chains (KAUDIT_INTEGRITY_KEY set when writing) need the same key to check link hashes.
        """
        console = Console(quiet)

        def body() -> int:
            from kaudit_elk.trail.verify import verify

            _check_times({"--since": since, "--until": until})
            with conn.engine() as engine:
                _require_known(engine, conn.settings.namespace, "verify")
                report = verify(engine, conn.settings.namespace, since, until)
            if output is OutputFormat.json:
                console.json(report.as_dict())
            else:
                for rep in report.bad_links:
                    console.data(f"link {rep.chain}:{rep.seq} (written {rep.created or '?'}, {rep.count} documents)")
                    for p in rep.problems:
                        console.data(f"  {p}")
                    for i in rep.modified:
                        console.data(f"  modified  {i}")
                    for i in rep.deleted:
                        console.data(f"  deleted   {i}")
                for doc in report.inserted:
                    console.data(f"inserted outside the chain  {doc['id']}  {doc['index']}  {doc.get('timestamp')}"
                                 + (f"  ({doc['note']})" if doc.get("note") else ""))
                for note in report.notes:
                    console.warn(note)
                if report.unverified_hashes:
                    console.warn(f"{report.unverified_hashes} keyed link(s): their hashes were not checked "
                                 "(set KAUDIT_INTEGRITY_KEY)")
                console.info(f"{report.chains} chain(s), {report.links} link(s), {report.documents} chained documents, "
                             f"{report.stored} stored in range: {report.modified} modified, {report.deleted} deleted, "
                             f"{len(report.inserted)} inserted outside the chain, "
                             f"{sum(1 for r in report.bad_links if r.problems)} bad link(s)"
                             + (" — clean" if report.ok and not report.notes else ""))
            return 0 if report.ok and not report.notes else EXIT_FINDINGS

        run_exit(console, body)

    archive_app = typer.Typer(help="Snapshots of closed periods: archive, list, verify.", invoke_without_command=True)
    app.add_typer(archive_app, name="archive")

    @archive_app.callback()
    @connection_options()
    def archive_cmd(
        ctx: typer.Context,
        repository: RepoOpt = "kaudit-archive",
        fs_location: Annotated[Optional[str], typer.Option("--fs-location", help="Register REPOSITORY as an fs repository at this path (under the engine's path.repo)")] = None,
        profile: Annotated[Optional[str], typer.Option("--profile", help="Retention profile: pci-dss, soc2, iso27001, omb-m-21-31 (sets --keep-days and checks the lifecycle)")] = None,
        keep_days: Annotated[Optional[float], typer.Option("--keep-days", help="Delete snapshots whose newest event is older than this")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be snapshotted and deleted")] = False,
        conn: Connection = NO_FLAGS,
        output: OutputOpt = OutputFormat.text,
        quiet: QuietOpt = False,
    ) -> None:
        """Snapshot every closed period (rolled-over backing index) not archived yet (cron it daily)."""
        ctx.obj = {"repository": repository, "conn": conn, "output": output, "quiet": quiet}
        if ctx.invoked_subcommand:
            return
        console = Console(quiet)

        def body() -> None:
            from kaudit_elk.trail import archive as arch

            prof = arch.profile(profile) if profile else None
            keep = keep_days if keep_days is not None else (prof.retained_days if prof else None)
            with conn.engine() as engine:
                _require_known(engine, conn.settings.namespace, "archive")
                arch.ensure_repository(engine, repository, fs_location)
                result = arch.archive(engine, conn.settings.namespace, repository, keep, dry_run)
            if prof:
                console.info(f"profile {prof.name} ({prof.framework}): {prof.requirement} -> lifecycle keeps "
                             f"{prof.searchable_days} days searchable (bootstrap --retention-days {prof.searchable_days}), "
                             f"archives kept {prof.retained_days} days")
            if output is OutputFormat.json:
                console.json({"dry_run": dry_run, "created": [arch.as_dict(s) for s in result.created],
                              "already": result.already, "deleted": result.deleted, "open_index": result.open_index})
                return
            for s in result.created:
                console.data(f"{'would snapshot' if dry_run else 'snapshot'} {s.name}: {s.backing_index}, {s.docs} "
                             f"documents, {s.min_ts} .. {s.max_ts}")
            for name in result.deleted:
                console.data(f"{'would delete' if dry_run else 'deleted'} {name} (past {keep:g} days)")
            console.info(f"{len(result.created)} period(s) {'to archive' if dry_run else 'archived'}, {len(result.already)} archived before, "
                         f"open: {result.open_index or 'none'}")

        run(console, body)

    @archive_app.command("list")
    @connection_options()
    def archive_list(
        ctx: typer.Context,
        repository: SubRepoOpt = None,
        conn: Connection = NO_FLAGS,
        output: SubOutputOpt = None,
        quiet: QuietOpt = False,
    ) -> None:
        """The snapshots of this namespace with their periods."""
        o = _archive_options(ctx.obj, repository, conn, output, quiet)
        console = Console(o["quiet"])

        def body() -> None:
            from kaudit_elk.trail import archive as arch

            with o["conn"].engine() as engine:
                snaps = arch.list_snapshots(engine, o["repository"], o["conn"].settings.namespace)
            if o["output"] is OutputFormat.json:
                console.json([arch.as_dict(s) for s in snaps])
                return
            for s in snaps:
                console.data(f"{s.name:60} {s.state:8} {s.docs:>9} docs  {s.min_ts} .. {s.max_ts}")
            if not snaps:
                console.info(f"no snapshots of namespace {o['conn'].settings.namespace} in repository {o['repository']}")

        run(console, body)

    @archive_app.command("verify")
    @connection_options()
    def archive_verify_cmd(
        ctx: typer.Context,
        snapshots: Annotated[Optional[list[str]], typer.Argument(help="Snapshot names (default: every snapshot of the namespace)")] = None,
        repository: SubRepoOpt = None,
        conn: Connection = NO_FLAGS,
        output: SubOutputOpt = None,
        quiet: QuietOpt = False,
    ) -> None:
        """Restore snapshots into scratch indices, run verify on each copy, delete the copies."""
        o = _archive_options(ctx.obj, repository, conn, output, quiet)
        console = Console(o["quiet"])

        def body() -> int:
            from kaudit_elk.trail import archive as arch

            namespace = o["conn"].settings.namespace
            with o["conn"].engine() as engine:
                if not snapshots:  # a named snapshot may outlive its namespace; every snapshot of a typo is none
                    _require_known(engine, namespace, "archive verify")
                names = list(snapshots or [s.name for s in arch.list_snapshots(engine, o["repository"], namespace)])
                results = [(name, arch.archive_verify(engine, namespace, name, o["repository"])) for name in names]
            if o["output"] is OutputFormat.json:
                console.json([{"snapshot": n, **r.as_dict()} for n, r in results])
            else:
                for n, r in results:
                    console.data(f"{'ok  ' if r.ok and not r.notes else 'FAIL'} {n}: {r.stored} documents, {r.links} links, "
                                 f"{r.modified} modified, {r.deleted} deleted, {len(r.inserted)} outside the chain"
                                 + "".join(f"; {x}" for x in r.notes))
            if not results:
                console.warn("no snapshots to verify")
            return 0 if results and all(r.ok and not r.notes for _, r in results) else EXIT_FINDINGS

        run_exit(console, body)

    @app.command("doctor")
    @connection_options()
    def doctor_cmd(
        max_data_age: Annotated[str, typer.Option("--max-data-age", help="Fail when a cluster sent nothing for this long (15m, 1h)")] = "15m",
        max_detect_age: Annotated[str, typer.Option("--max-detect-age", help="Fail when detect last completed longer ago")] = "30m",
        verify_since: Annotated[str, typer.Option("--verify-since", help="Range of the integrity check")] = "now-1h",
        repository: Annotated[Optional[str], typer.Option("--repository", help="Snapshot repository of the archive ('' to skip)")] = "kaudit-archive",
        dead_letter: Annotated[Optional[str], typer.Option("--dead-letter", help="Local dead-letter file to look at")] = "kaudit-dead-letters.ndjson",
        prometheus_textfile: Annotated[Optional[str], typer.Option("--prometheus-textfile", help="Also write the results as Prometheus textfile-collector metrics")] = None,
        conn: Connection = NO_FLAGS,
        output: OutputOpt = OutputFormat.text,
        quiet: QuietOpt = False,
    ) -> None:
        """Check a live deployment end to end; a table of checks with fixes; exit 5 when one fails."""
        console = Console(quiet)

        def body() -> int:
            import time as _time

            from kaudit_elk.base.timeparse import duration_seconds
            from kaudit_elk.trail.doctor import DoctorOptions, doctor
            from kaudit_elk.trail import metrics

            _check_times({"--verify-since": verify_since})
            data_age = duration_seconds(max_data_age, "--max-data-age")
            detect_age = duration_seconds(max_detect_age, "--max-detect-age")
            started = _time.time()
            with conn.engine() as engine:
                report = doctor(engine, DoctorOptions(conn.settings.namespace, data_age, detect_age, verify_since,
                                                      repository or None, dead_letter=dead_letter or None))
            if prometheus_textfile:
                labelled = [("check_ok", {"check": c.name}, 1.0 if c.status != "fail" else 0.0) for c in report.checks]
                labelled += [("cluster_last_event_age_seconds", {"cluster": k}, v) for k, v in report.cluster_ages.items()]
                metrics.write(prometheus_textfile, "doctor", {
                    "last_run_timestamp_seconds": started, "duration_seconds": _time.time() - started,
                    **report.figures}, labelled)
            if output is OutputFormat.json:
                console.json({"ok": not report.failed, "checks": [
                    {"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in report.checks]})
            else:
                width = max(len(c.name) for c in report.checks)
                for c in report.checks:
                    console.data(f"{c.status.upper():4}  {c.name:{width}}  {c.detail}")
                    if c.fix:
                        console.data(f"{'':4}  {'':{width}}  fix: {c.fix}")
                console.info(f"{len(report.failed)} check(s) failed" if report.failed else "all checks passed")
            return EXIT_FINDINGS if report.failed else 0

        run_exit(console, body)
