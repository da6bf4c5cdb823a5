"""Load and validate Sigma rule folders (pySigma) into a RulePack the evaluators run.

A rule file is plain Sigma; kaudit-specific metadata lives under one custom top-level key, ``kaudit``,
which pySigma keeps in ``custom_attributes`` (see detections/README.md). User tuning (disable,
severity override, exceptions, placeholder values) is applied here, so every evaluator and the
query compiler see the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.filters import SigmaFilter
from sigma.rule import SigmaRule

from kaudit_elk.base.errors import ContentError
from kaudit_elk.base.timeparse import parse_timespan
from kaudit_elk.base.vocab import EVENT_AUDIT_LEVELS, SEVERITIES
from kaudit_elk.rules.evaluator import Predicate, compile_rule

KINDS = ("single", "new_terms", "correlation")
RULE_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in one file (pySigma-style: validators return lists of these)."""

    path: str
    message: str
    rule: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.rule + ': ' if self.rule else ''}{self.message}"


@dataclass(frozen=True, slots=True)
class NewTerms:
    """kaudit extension: alert the first time ``fields`` take a value combination within ``history`` seconds."""

    fields: tuple[str, ...]
    history: int


@dataclass(slots=True)
class PackRule:
    """A loaded rule: the pySigma object plus kaudit metadata and the compiled predicate."""

    id: str
    title: str
    level: str
    kind: str
    sigma: SigmaRule | SigmaCorrelationRule
    path: str
    tags: list[str] = field(default_factory=list)
    description: str = ""
    falsepositives: list[str] = field(default_factory=list)
    audit_level: str | None = None
    catalogue: list[str] = field(default_factory=list)
    tests: dict[str, Any] = field(default_factory=dict)
    new_terms: NewTerms | None = None
    name: str | None = None
    generate: bool = True
    predicate: Predicate | None = None
    exceptions: list[Predicate] = field(default_factory=list)

    @property
    def attack(self) -> list[str]:
        """ATT&CK technique ids (T1234 / T1234.001) from the tags."""
        out = []
        for t in self.tags:
            if t.lower().startswith("attack.t"):
                out.append(t.split(".", 1)[1].upper())
        return out

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Single-event detection with exceptions applied (False for correlation rules)."""
        if self.predicate is None or not self.predicate(event):
            return False
        for exc in self.exceptions:
            if exc(event):
                return False
        return True


@dataclass(slots=True)
class RulePack:
    """All rules of the loaded folders, in file order, plus placeholder values."""

    rules: list[PackRule]
    placeholders: dict[str, list[str]] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)
    # compiled per-(resource, verb) rule batches, filled lazily by the runner and shared by its instances
    dispatch: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def get(self, rule_id: str) -> PackRule:
        for r in self.rules:
            if r.id == rule_id or r.name == rule_id:
                return r
        raise ContentError(f"no rule with id or name {rule_id!r}")

    @property
    def single(self) -> list[PackRule]:
        return [r for r in self.rules if r.kind != "correlation"]

    @property
    def correlations(self) -> list[PackRule]:
        return [r for r in self.rules if r.kind == "correlation"]


# --------------------------------------------------------------------------- files


def default_pack_dir() -> Path:
    """The shipped rule folder (checkout or installed wheel)."""
    from kaudit_elk.base.content import content_dir

    return content_dir("detections") / "rules"


def rule_files(dirs: Iterable[str | Path]) -> list[Path]:
    """Every *.yml/*.yaml under ``dirs`` (a file path is taken as is), sorted per folder."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix in RULE_SUFFIXES and f.is_file()))
        else:
            raise ContentError(f"{p}: no such rule file or folder")
    return out


def _parse_file(path: Path) -> tuple[list[Any], list[Issue]]:
    """Parse one file into pySigma objects; never raises, returns issues instead."""
    issues: list[Issue] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Issue(str(path), f"cannot read: {exc}")]
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [], [Issue(str(path), f"invalid YAML: {exc}".replace("\n", " "))]
    if not docs:
        return [], [Issue(str(path), "empty file")]
    for d in docs:
        if not isinstance(d, dict):
            return [], [Issue(str(path), "a YAML document is not a mapping")]
    try:
        coll = SigmaCollection.from_yaml(text, collect_errors=True, collect_filters=True, resolve_references=False)
    except SigmaError as exc:
        return [], [Issue(str(path), str(exc))]
    for err in coll.errors:
        issues.append(Issue(str(path), str(err)))
    objs: list[Any] = []
    for r in list(coll.rules) + list(coll.filters):
        for err in r.errors:
            issues.append(Issue(str(path), str(err), str(r.id) if r.id else r.title))
        if not r.errors:
            objs.append(r)
    return objs, issues


# --------------------------------------------------------------------------- kaudit metadata


def _kaudit_meta(obj: Any, path: str, strict: bool) -> tuple[dict[str, Any], list[Issue]]:
    rid = str(obj.id) if obj.id else obj.title
    meta = (obj.custom_attributes or {}).get("kaudit", {}) or {}
    issues: list[Issue] = []

    def bad(msg: str) -> None:
        issues.append(Issue(path, msg, rid))

    if not isinstance(meta, dict):
        bad("'kaudit' must be a mapping")
        return {}, issues
    known = {"audit_level", "catalogue", "tests", "new_terms"}
    for k in meta:
        if k not in known:
            bad(f"unknown kaudit key {k!r} (known: {', '.join(sorted(known))})")
    lvl = meta.get("audit_level")
    if lvl is not None and lvl not in EVENT_AUDIT_LEVELS:
        bad(f"kaudit.audit_level {lvl!r} is not one of {', '.join(EVENT_AUDIT_LEVELS)}")
    nt = meta.get("new_terms")
    if nt is not None:
        if isinstance(obj, SigmaCorrelationRule):
            bad("kaudit.new_terms is for single-event rules")
        elif not isinstance(nt, dict) or not nt.get("fields") or "history" not in nt:
            bad("kaudit.new_terms needs 'fields' (list) and 'history' (e.g. 7d)")
        else:
            try:
                parse_timespan(nt["history"])
            except ValueError as exc:
                bad(f"kaudit.new_terms.history: {exc}")
    tests = meta.get("tests")
    if tests is not None and (not isinstance(tests, dict) or set(tests) - {"match", "no_match", "placeholders"}):
        bad("kaudit.tests must be a mapping with 'match' and 'no_match' lists")
    if strict:
        if not obj.id:
            bad("missing id")
        if obj.level is None:
            bad("missing level")
        if not any(str(t).lower().startswith("attack.t") for t in obj.tags):
            bad("no ATT&CK technique tag (attack.tNNNN)")
        if lvl is None:
            bad("missing kaudit.audit_level")
        if not meta.get("catalogue"):
            bad("missing kaudit.catalogue (catalogue ids this rule covers)")
        if not isinstance(tests, dict) or not tests.get("match") or not tests.get("no_match"):
            bad("needs kaudit.tests.match and kaudit.tests.no_match (at least one each)")
    return meta, issues


# --------------------------------------------------------------------------- tuning


def _exception_predicates(
    spec: Mapping[str, Any], source: str, placeholders: Mapping[str, Sequence[str]]
) -> tuple[dict[str, list[Predicate]], list[Issue]]:
    """Compile the ``exceptions:`` list of a tuning file: {rule id or '*': [predicates]}."""
    out: dict[str, list[Predicate]] = {}
    issues: list[Issue] = []
    for i, item in enumerate(spec.get("exceptions") or []):
        where = f"exceptions[{i}]"
        if not isinstance(item, dict) or "rule" not in item or ("match" not in item and "detection" not in item):
            issues.append(Issue(source, f"{where}: needs 'rule' and 'match' (field: value map) or 'detection'"))
            continue
        detection = item.get("detection") or {"exception": item["match"], "condition": "exception"}
        doc = {"title": f"exception {i}", "logsource": {"product": "kubernetes", "service": "audit"},
               "detection": detection}
        try:
            rule = SigmaRule.from_dict(doc, collect_errors=True)
            if rule.errors:
                raise rule.errors[0]
            pred = compile_rule(rule, placeholders)
        except (SigmaError, ContentError) as exc:
            issues.append(Issue(source, f"{where}: {exc}"))
            continue
        try:
            pred.sigma = rule  # type: ignore[attr-defined] - lets the engine compiler add it to the query
        except AttributeError:
            pass
        rules = item["rule"] if isinstance(item["rule"], list) else [item["rule"]]
        for rid in rules:
            out.setdefault(str(rid), []).append(pred)
    return out, issues


def load_tuning(path: str | Path | None) -> dict[str, Any]:
    """Read a tuning YAML file (``exceptions``, ``placeholders``, ``disable``, ``severity``)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ContentError(f"{p}: cannot read exceptions file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ContentError(f"{p}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ContentError(f"{p}: expected a mapping with 'exceptions' and/or 'placeholders'")
    unknown = set(data) - {"exceptions", "placeholders", "disable", "severity"}
    if unknown:
        raise ContentError(f"{p}: unknown keys {sorted(unknown)} (known: exceptions, placeholders, disable, severity)")
    shapes = {"exceptions": (list, "a list of {rule, match} entries"), "disable": (list, "a list of rule ids"),
              "placeholders": (dict, "a mapping of placeholder name to values"),
              "severity": (dict, "a mapping of rule id to level")}
    for key, (kind, what) in shapes.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ContentError(f"{p}: '{key}' must be {what}, got {type(data[key]).__name__} {data[key]!r:.40}")
    return data


def _pack_placeholders(dirs: Sequence[Path]) -> dict[str, list[str]]:
    """Defaults from ``placeholders.yml`` in a rule folder, or next to a folder named ``rules`` (the pack)."""
    out: dict[str, list[str]] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        candidates = [d / "placeholders.yml"] + ([d.parent / "placeholders.yml"] if d.name == "rules" else [])
        for cand in candidates:
            if cand.is_file():
                data = yaml.safe_load(cand.read_text(encoding="utf-8")) or {}
                for k, v in (data.get("placeholders") or {}).items():
                    out.setdefault(k, [str(x) for x in (v or [])])
                break
    return out


# --------------------------------------------------------------------------- load / validate


def _collect(dirs: Sequence[str | Path], strict: bool) -> tuple[list[tuple[Any, str, dict[str, Any]]], list[Issue]]:
    issues: list[Issue] = []
    objs: list[tuple[Any, str, dict[str, Any]]] = []
    for f in rule_files(dirs):
        parsed, errs = _parse_file(f)
        issues.extend(errs)
        for obj in parsed:
            if isinstance(obj, SigmaFilter):
                objs.append((obj, str(f), {}))
                continue
            meta, errs = _kaudit_meta(obj, str(f), strict)
            issues.extend(errs)
            if isinstance(obj, SigmaRule):
                ls = obj.logsource
                if (ls.product or "").lower() != "kubernetes" or (ls.service or "").lower() != "audit":
                    issues.append(Issue(str(f), "logsource must be product: kubernetes, service: audit",
                                        str(obj.id or obj.title)))
                    continue
            objs.append((obj, str(f), meta))
    seen: dict[str, str] = {}
    unique: list[tuple[Any, str, dict[str, Any]]] = []
    for obj, path, meta in objs:
        if not isinstance(obj, SigmaFilter) and obj.id is not None:
            key = str(obj.id)
            if key in seen:
                issues.append(Issue(path, f"duplicate rule id (also in {seen[key]})", key))
                continue
            seen[key] = path
        unique.append((obj, path, meta))
    known = set(seen) | {o.name for o, _, _ in unique if not isinstance(o, SigmaFilter) and o.name}
    kept = []
    for obj, path, meta in unique:
        if isinstance(obj, SigmaCorrelationRule):
            missing = [r.reference for r in obj.rules if str(r.reference) not in known]
            if missing:
                issues.append(Issue(path, f"correlation references unknown rule(s): {', '.join(map(str, missing))}",
                                    str(obj.id or obj.title)))
                continue
        kept.append((obj, path, meta))
    return kept, issues


def _build(
    objs: list[tuple[Any, str, dict[str, Any]]],
    placeholders: Mapping[str, Sequence[str]],
) -> tuple[list[PackRule], list[Issue]]:
    issues: list[Issue] = []
    paths = {id(o): p for o, p, _ in objs}
    metas = {id(o): m for o, _, m in objs}
    try:
        coll = SigmaCollection([o for o, _, _ in objs])  # applies Sigma filters, resolves references
    except SigmaError as exc:
        return [], [Issue("(collection)", str(exc))]
    # pySigma may replace filtered rules by copies: map back by id/title order
    by_key = {(str(o.id), o.title): (p, metas[id(o)]) for o, p, _ in objs if not isinstance(o, SigmaFilter)}
    rules: list[PackRule] = []
    correlation_refs: dict[str, bool] = {}
    for obj in coll.rules:
        path, meta = by_key.get((str(obj.id), obj.title), (paths.get(id(obj), "?"), metas.get(id(obj), {})))
        rid = str(obj.id) if obj.id else obj.title
        level = obj.level.name.lower() if obj.level else "medium"
        pr = PackRule(
            id=rid, title=obj.title, level=level, kind="single", sigma=obj, path=path,
            tags=[str(t) for t in obj.tags], description=(obj.description or "").strip(),
            falsepositives=list(obj.falsepositives or []), audit_level=meta.get("audit_level"),
            catalogue=[str(c) for c in (meta.get("catalogue") or [])], tests=meta.get("tests") or {},
            name=obj.name,
        )
        if isinstance(obj, SigmaCorrelationRule):
            pr.kind = "correlation"
            try:
                refs = [r.rule for r in obj.rules]
            except AttributeError:
                refs = []
            for ref in refs:
                if isinstance(ref, SigmaCorrelationRule):
                    issues.append(Issue(path, "correlations of correlations are not supported", rid))
                elif isinstance(ref, SigmaRule):
                    k = str(ref.id)
                    correlation_refs[k] = correlation_refs.get(k, False) or bool(obj.generate)
                else:
                    issues.append(Issue(path, f"unresolved rule reference {ref!r}", rid))
        else:
            nt = meta.get("new_terms")
            if nt:
                pr.kind = "new_terms"
                pr.new_terms = NewTerms(tuple(nt["fields"]), parse_timespan(nt["history"]))
            try:
                pr.predicate = compile_rule(obj, placeholders)
            except (ContentError, SigmaError, ValueError) as exc:
                issues.append(Issue(path, f"cannot compile detection: {exc}", rid))
                continue
        rules.append(pr)
    for r in rules:
        if r.kind != "correlation" and r.id in correlation_refs:
            r.generate = correlation_refs[r.id]
    return rules, issues


def validate(dirs: Sequence[str | Path], strict: bool = False) -> list[Issue]:
    """All problems of all files in ``dirs`` (parse, schema, duplicate ids, references, compilation).

    ``strict`` adds the shipped pack's policy: id, level, ATT&CK tag, audit level, catalogue ids and tests.
    """
    paths = [Path(d) for d in dirs]
    objs, issues = _collect(paths, strict)
    _, build_issues = _build(objs, _pack_placeholders(paths))
    return issues + build_issues


def load_rules(
    dirs: Sequence[str | Path],
    *,
    disabled: Iterable[str] = (),
    severity: Mapping[str, str] | None = None,
    tuning: Mapping[str, Any] | None = None,
    tuning_source: str = "exceptions",
) -> RulePack:
    """Load every rule under ``dirs``; raise ContentError listing all problems if any file is invalid."""
    paths = [Path(d) for d in dirs]
    tuning = dict(tuning or {})
    placeholders = _pack_placeholders(paths)
    for k, v in (tuning.get("placeholders") or {}).items():
        placeholders[str(k)] = [str(x) for x in (v if isinstance(v, list) else [v])]
    objs, issues = _collect(paths, strict=False)
    rules, build_issues = _build(objs, placeholders)
    issues += build_issues
    exc_map, exc_issues = _exception_predicates(tuning, tuning_source, placeholders)
    issues += exc_issues
    if issues:
        raise ContentError(f"{len(issues)} problem(s) in rules:\n" + "\n".join(f"  {i}" for i in issues))
    known = {r.id for r in rules} | {r.name for r in rules if r.name}
    disabled_set = {str(d) for d in list(disabled) + list(tuning.get("disable") or [])}
    sev = {**{str(k): str(v) for k, v in (tuning.get("severity") or {}).items()}, **dict(severity or {})}
    for rid in list(disabled_set) + list(sev) + [k for k in exc_map if k != "*"]:
        if rid not in known:
            raise ContentError(f"unknown rule id {rid!r} (in --disable, --severity-override or exceptions)")
    for rid, lvl in sev.items():
        if lvl.lower() not in SEVERITIES:
            raise ContentError(f"severity override for {rid}: {lvl!r} is not one of {', '.join(SEVERITIES)}")
    kept = []
    for r in rules:
        if r.id in disabled_set or (r.name and r.name in disabled_set):
            continue
        lvl = sev.get(r.id) or (sev.get(r.name) if r.name else None)
        if lvl:
            r.level = lvl.lower()
        r.exceptions = exc_map.get(r.id, []) + (exc_map.get(r.name, []) if r.name else []) + exc_map.get("*", [])
        kept.append(r)
    return RulePack(rules=kept, placeholders=placeholders, disabled=sorted(disabled_set))



def load_pack(
    rules_dirs: Sequence[str | Path] = (),
    *,
    default: bool = True,
    disabled: Iterable[str] = (),
    severity: Mapping[str, str] | None = None,
    exceptions: str | Path | None = None,
) -> RulePack:
    """The shipped pack (unless ``default=False``) plus ``rules_dirs``, with tuning applied: what every command
    that runs rules loads. ``exceptions`` is a tuning/exceptions YAML file (as written by ``kaudit-elk tune``)."""
    dirs: list[str | Path] = ([default_pack_dir()] if default else []) + list(rules_dirs)
    if not dirs:
        raise ContentError("no rules: without the default pack at least one rules folder is needed")
    return load_rules(dirs, disabled=disabled, severity=severity, tuning=load_tuning(exceptions),
                      tuning_source=str(exceptions) if exceptions else "exceptions")
