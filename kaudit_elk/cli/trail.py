"""CLI: the trail itself — ``policy generate|check``, ``verify``, ``archive``, ``doctor``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from kaudit_elk.base.errors import EXIT_FINDINGS, ConfigError
from kaudit_elk.cli.console import Console, run
from kaudit_elk.cli.main import (ApiKeyOpt, CaOpt, ClusterOpt, ConfigOpt, NamespaceOpt, OutputFormat, OutputOpt,
                                 PasswordOpt, QuietOpt, UrlOpt, UserOpt, VerifyOpt, settings_from)
from kaudit_elk.cli.rules import NoPackOpt, RulesDirOpt, load_pack


class Profile(str, Enum):
    minimal = "minimal"
    standard = "standard"
    full = "full"


class FailOn(str, Enum):
    blind = "blind"
    degraded = "degraded"
    never = "never"


_MARK = {"ok": "ok", "reduced": "reduced", "degraded": "DEGRADED", "blind": "BLIND", "withheld": "withheld"}


def _write_private(path: str, text: str) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


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
    def check_cmd(
        policy_file: Annotated[str, typer.Argument(help="The audit Policy YAML (as given to --audit-policy-file)")],
        fail_on: Annotated[FailOn, typer.Option("--fail-on", help=f"Exit {EXIT_FINDINGS} when a rule is blind (default) or also degraded; policy rules that write secret values always fail")] = FailOn.blind,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every rule, also those that are ok")] = False,
        from_cluster: Annotated[bool, typer.Option("--from-cluster", help="Also compare with the levels and stages stored in the cluster")] = False,
        since: Annotated[str, typer.Option("--since", help="--from-cluster: start of the range (ISO or now-24h)")] = "now-24h",
        rules_dir: RulesDirOpt = [],  # noqa: B006
        no_default_rules: NoPackOpt = False,
        url: UrlOpt = None, username: UserOpt = None, password: PasswordOpt = None, api_key: ApiKeyOpt = None,
        ca_certs: CaOpt = None, verify_certs: VerifyOpt = None, config: ConfigOpt = None,
        namespace: NamespaceOpt = None,
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
                from kaudit_elk.cluster.engine import connect
                from kaudit_elk.trail.observed import compare, fetch

                settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config,
                                         namespace=namespace)
                engine = connect(settings)
                try:
                    seen = fetch(engine, settings.namespace, since)
                finally:
                    engine.close()
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

        code = run(console, body)
        if code:
            raise typer.Exit(code)

    @app.command("verify")
    def verify_cmd(
        since: Annotated[str, typer.Option("--since", help="Start of the range (ISO time or now-24h, now-7d)")] = "now-24h",
        until: Annotated[str, typer.Option("--until", help="End of the range")] = "now",
        url: UrlOpt = None, username: UserOpt = None, password: PasswordOpt = None, api_key: ApiKeyOpt = None,
        ca_certs: CaOpt = None, verify_certs: VerifyOpt = None, config: ConfigOpt = None,
        namespace: NamespaceOpt = None,
        output: OutputOpt = OutputFormat.text,
        quiet: QuietOpt = False,
    ) -> None:
        """Recompute the integrity chain from the stored documents: modified, deleted and inserted documents per batch.

        Keyed chains (KAUDIT_INTEGRITY_KEY set when writing) need the same key to check link hashes.
        """
        console = Console(quiet)

        def body() -> int:
            from kaudit_elk.cluster.engine import connect
            from kaudit_elk.trail.verify import verify

            settings = settings_from(url, username, password, api_key, ca_certs, verify_certs, config,
                                     namespace=namespace)
            engine = connect(settings)
            try:
                report = verify(engine, settings.namespace, since, until)
            finally:
                engine.close()
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
                             + ("" if not report.ok else " — clean"))
            return 0 if report.ok and not report.notes else EXIT_FINDINGS

        code = run(console, body)
        if code:
            raise typer.Exit(code)
