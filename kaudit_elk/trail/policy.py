"""The audit ``Policy`` (audit.k8s.io/v1): loading, validation and evaluation, as the apiserver does it.

Mirrors k8s.io/apiserver ``pkg/audit/policy`` (reader.go, checker.go) and ``pkg/apis/audit/validation``
(v0.34): rules are tried in order and the first match wins (no match: level ``None``); a rule's
``omitStages`` is the union of its own and the policy's; ``omitManagedFields`` of a rule overrides the
policy's. Resource matching: ``resource``, ``resource/subresource``, ``*``, ``*/subresource``,
``resource/*`` (which also matches the resource itself), optional ``resourceNames``; a rule with
``namespaces`` or ``resources`` only matches resource requests (``""`` is cluster-scoped), a rule with
``nonResourceURLs`` only non-resource requests (``*`` or a trailing ``*`` prefix). Unknown fields are a
warning (the apiserver falls back to lenient decoding); everything its validation refuses is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from kaudit_elk.base.errors import ContentError
from kaudit_elk.base.vocab import AUDIT_LEVELS, STAGES

RANK = {level: i for i, level in enumerate(AUDIT_LEVELS)}
_RULE_KEYS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs",
              "omitStages", "omitManagedFields"}
_GR_KEYS = {"group", "resources", "resourceNames"}
_POLICY_KEYS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def level_rank(level: str) -> int:
    """0 (None) .. 3 (RequestResponse)."""
    return RANK[level]


@dataclass(frozen=True, slots=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyRule:
    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool | None = None
    line: int = 0  # 1-based line of the rule in its file (0: built in code)


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[PolicyRule, ...]
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False
    source: str = "policy"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attributes:
    """What the apiserver's policy checker sees of a request (authorizer.Attributes)."""

    user: UserInfo | None
    verb: str
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    level: str
    omit_stages: frozenset[str]
    omit_managed_fields: bool
    rule: int | None  # index of the matching policy rule; None: no rule matched (default None)


# --------------------------------------------------------------------------- evaluation (checker.go)


def evaluate(policy: Policy, attrs: Attributes) -> Decision:
    """The level and stages the apiserver records ``attrs`` at: the first matching rule wins."""
    for i, rule in enumerate(policy.rules):
        if rule_matches(rule, attrs):
            omf = policy.omit_managed_fields if rule.omit_managed_fields is None else rule.omit_managed_fields
            return Decision(rule.level, rule.omit_stages | policy.omit_stages, omf, i)
    return Decision("None", policy.omit_stages, policy.omit_managed_fields, None)


def rule_matches(rule: PolicyRule, attrs: Attributes) -> bool:
    """checker.go ``ruleMatches``: identity, verb, then resource or non-resource target."""
    return identity_matches(rule, attrs.user) and verb_matches(rule, attrs.verb) and target_matches(rule, attrs)


def identity_matches(rule: PolicyRule, user: UserInfo | None) -> bool:
    """The ``users`` and ``userGroups`` part of ``ruleMatches``."""
    if rule.users and (user is None or user.name not in rule.users):
        return False
    if rule.user_groups:
        if user is None or not any(g in rule.user_groups for g in user.groups):
            return False
    return True


def verb_matches(rule: PolicyRule, verb: str) -> bool:
    return not rule.verbs or verb in rule.verbs


def target_matches(rule: PolicyRule, attrs: Attributes) -> bool:
    """The rest of ``ruleMatches``: namespaces/resources, else nonResourceURLs, else everything."""
    if rule.namespaces or rule.resources:
        return _matches_resource(rule, attrs)
    if rule.non_resource_urls:
        return _matches_non_resource(rule, attrs)
    return True


def path_matches(path: str, spec: str) -> bool:
    """``*``, an exact path, or a trailing-``*`` prefix."""
    if spec == "*" or spec == path:
        return True
    return spec.endswith("*") and path.startswith(spec.rstrip("*"))


def _matches_non_resource(rule: PolicyRule, attrs: Attributes) -> bool:
    if attrs.resource_request:
        return False
    return any(path_matches(attrs.path, spec) for spec in rule.non_resource_urls)


def _matches_resource(rule: PolicyRule, attrs: Attributes) -> bool:
    if not attrs.resource_request:
        return False
    if rule.namespaces and attrs.namespace not in rule.namespaces:  # cluster-scoped: ""
        return False
    if not rule.resources:
        return True
    resource, sub = attrs.resource, attrs.subresource
    combined = f"{resource}/{sub}" if sub else resource
    for gr in rule.resources:
        if gr.group != attrs.api_group:
            continue
        if not gr.resources:
            return True
        for res in gr.resources:
            if gr.resource_names and attrs.name not in gr.resource_names:
                continue
            if res == combined or res == "*":
                return True
            if sub and res.startswith("*/") and sub == res[2:]:
                return True
            if res.endswith("/*") and resource == res[:-2]:
                return True
    return False


# --------------------------------------------------------------------------- loading (reader.go + validation)


def load_policy(text: str, source: str = "policy") -> Policy:
    """Parse and validate a Policy document; errors name the file and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ContentError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ContentError(f"{source}: an audit Policy must be a YAML mapping")
    errors: list[str] = []
    warnings: list[str] = []
    if data.get("apiVersion") != "audit.k8s.io/v1" or data.get("kind") != "Policy":
        raise ContentError(f"{source}: expected apiVersion audit.k8s.io/v1 and kind Policy, got "
                           f"{data.get('apiVersion')!r} / {data.get('kind')!r}")
    for key in sorted(set(data) - _POLICY_KEYS):
        warnings.append(f"{source}: unknown field {key!r} (the apiserver ignores it)")
    lines = _rule_lines(root)
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise ContentError(f"{source}: rules must be a list")
    omit = _stages(data.get("omitStages"), f"{source}: omitStages", errors)
    rules = []
    for i, raw in enumerate(raw_rules):
        line = lines[i] if i < len(lines) else 0
        where = f"{source}:{line}: rules[{i}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: a rule must be a mapping")
            continue
        rules.append(_rule(raw, where, line, errors, warnings))
    if not errors and not rules:
        errors.append(f"{source}: a policy with 0 rules is refused by the apiserver")
    if errors:
        raise ContentError("invalid audit policy:\n  " + "\n  ".join(errors))
    omf = data.get("omitManagedFields", False)
    if not isinstance(omf, bool):
        raise ContentError(f"{source}: omitManagedFields must be true or false")
    return Policy(tuple(rules), frozenset(omit), omf, source, tuple(warnings))


def _rule_lines(root: Any) -> list[int]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "rules" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _strings(value: Any, where: str, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"{where}: must be a list of strings")
        return ()
    return tuple(value)


def _stages(value: Any, where: str, errors: list[str]) -> list[str]:
    stages = list(_strings(value, where, errors))
    for i, s in enumerate(stages):
        if s not in STAGES:
            errors.append(f"{where}[{i}]: {s!r} is not a stage; allowed stages are {','.join(STAGES)}")
    return stages


def _rule(raw: dict[str, Any], where: str, line: int, errors: list[str], warnings: list[str]) -> PolicyRule:
    for key in sorted(set(raw) - _RULE_KEYS):
        warnings.append(f"{where}: unknown field {key!r} (the apiserver ignores it)")
    level = raw.get("level")
    if level in (None, ""):
        errors.append(f"{where}: level is required")
        level = "None"
    elif level not in AUDIT_LEVELS:
        errors.append(f"{where}: level {level!r} is not one of {', '.join(AUDIT_LEVELS)}")
        level = "None"
    urls = _strings(raw.get("nonResourceURLs"), f"{where}.nonResourceURLs", errors)
    for j, url in enumerate(urls):
        if url == "*":
            continue
        if not url.startswith("/"):
            errors.append(f"{where}.nonResourceURLs[{j}]: {url!r}: non-resource URL rules must begin with '/'")
        if url and "*" in url[:-1]:
            errors.append(f"{where}.nonResourceURLs[{j}]: {url!r}: a wildcard '*' must be the last character")
    groups = []
    raw_res = raw.get("resources") or []
    if not isinstance(raw_res, list):
        errors.append(f"{where}.resources: must be a list")
        raw_res = []
    for j, gr in enumerate(raw_res):
        gw = f"{where}.resources[{j}]"
        if not isinstance(gr, dict):
            errors.append(f"{gw}: must be a mapping")
            continue
        for key in sorted(set(gr) - _GR_KEYS):
            warnings.append(f"{gw}: unknown field {key!r} (the apiserver ignores it)")
        group = gr.get("group") or ""
        if not isinstance(group, str):
            errors.append(f"{gw}.group: must be a string")
            group = ""
        elif group and not _dns_subdomain(group):
            errors.append(f"{gw}.group: {group!r} is not a valid API group name (a DNS subdomain, no version)")
        res = _strings(gr.get("resources"), f"{gw}.resources", errors)
        names = _strings(gr.get("resourceNames"), f"{gw}.resourceNames", errors)
        if names and not res:
            errors.append(f"{gw}.resourceNames: using resourceNames requires at least one resource")
        groups.append(GroupResources(group, res, names))
    namespaces = _strings(raw.get("namespaces"), f"{where}.namespaces", errors)
    if urls and (groups or namespaces):
        errors.append(f"{where}: rules cannot apply to both regular resources and non-resource URLs")
    omf = raw.get("omitManagedFields")
    if omf is not None and not isinstance(omf, bool):
        errors.append(f"{where}.omitManagedFields: must be true or false")
        omf = None
    return PolicyRule(
        level=level, users=_strings(raw.get("users"), f"{where}.users", errors),
        user_groups=_strings(raw.get("userGroups"), f"{where}.userGroups", errors),
        verbs=_strings(raw.get("verbs"), f"{where}.verbs", errors), resources=tuple(groups),
        namespaces=namespaces, non_resource_urls=urls,
        omit_stages=frozenset(_stages(raw.get("omitStages"), f"{where}.omitStages", errors)),
        omit_managed_fields=omf, line=line)


def _dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and all(_DNS_LABEL.match(part) for part in name.split("."))


def describe(rule: PolicyRule, index: int) -> str:
    """A one-line description of a policy rule for messages: ``rules[3] (line 40, level None: ...)``."""
    parts = []
    if rule.users:
        parts.append("users " + ",".join(rule.users))
    if rule.user_groups:
        parts.append("groups " + ",".join(rule.user_groups))
    if rule.verbs:
        parts.append("verbs " + ",".join(rule.verbs))
    if rule.resources:
        parts.append("resources " + ",".join(
            f"{gr.group or 'core'}/{'|'.join(gr.resources) or '*'}"
            + (f"[{','.join(gr.resource_names)}]" if gr.resource_names else "") for gr in rule.resources))
    if rule.namespaces:
        parts.append("namespaces " + ",".join(n or '""' for n in rule.namespaces))
    if rule.non_resource_urls:
        parts.append("URLs " + ",".join(rule.non_resource_urls))
    where = f"line {rule.line}, " if rule.line else ""
    return f"rules[{index}] ({where}level {rule.level}{': ' + '; '.join(parts) if parts else ': everything'})"
