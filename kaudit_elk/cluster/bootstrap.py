"""Install kaudit-elk's objects into a cluster: pure ``plan``, thin ``observe``/``apply``.

A second run changes nothing: each object carries a content digest in its ``_meta`` (or
``description`` for pipelines and ISM policies), and an object whose digest matches is left alone.
Objects that exist without kaudit-elk's marker belong to someone else and are not overwritten
unless ``force`` is given.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Sequence

from kaudit_elk import __version__
from kaudit_elk.base.errors import ConfigError, KauditError
from kaudit_elk.cluster import roles
from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.roles import RoleDefinition
from kaudit_elk.cluster.templates import MANAGED_BY, BootstrapOptions, DesiredObject, Names, desired_objects

Action = Literal["create", "update", "unchanged", "conflict"]


class OwnershipError(KauditError):
    """Objects exist that kaudit-elk does not own; refusing to overwrite them."""

    exit_code = 2


@dataclass(frozen=True)
class Observed:
    """What the cluster holds under an object's name: body (None = absent), owner marker, digest."""

    body: dict[str, Any] | None
    owned: bool = False
    digest: str | None = None
    version: dict[str, Any] = field(default_factory=dict)  # e.g. ISM seq_no/primary_term


@dataclass(frozen=True)
class Step:
    action: Action
    desired: DesiredObject
    observed: Observed

    def describe(self) -> str:
        return f"{self.action:9} {self.desired.kind:18} {self.desired.name}"


@dataclass
class Plan:
    steps: list[Step]
    notes: list[str]

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action in ("create", "update")]

    @property
    def conflicts(self) -> list[Step]:
        return [s for s in self.steps if s.action == "conflict"]


def plan(desired: list[DesiredObject], observed: dict[str, Observed], force: bool = False,
         notes: list[str] | None = None) -> Plan:
    """Decide per object: create, update (ours and changed, or forced), unchanged, or conflict."""
    steps: list[Step] = []
    for obj in desired:
        seen = observed.get(f"{obj.kind}/{obj.name}", Observed(None))
        if seen.body is None:
            action: Action = "create"
        elif not seen.owned and not force:
            action = "conflict"
        elif seen.digest == obj.digest:
            action = "unchanged"
        else:
            action = "update"
        steps.append(Step(action, obj, seen))
    return Plan(steps, list(notes or []))


def _marker_from_description(text: str | None) -> tuple[bool, str | None]:
    if not text or f"[{MANAGED_BY} " not in text:
        return False, None
    tail = text.rsplit(f"[{MANAGED_BY} ", 1)[1].rstrip("]").split()
    return True, tail[-1] if tail else None


def observe_one(engine: Engine, obj: DesiredObject) -> Observed:
    """Read the object currently installed under ``obj``'s name."""
    body = engine.request("GET", obj.path, ignore=(404,))
    if not body:
        return Observed(None)
    if obj.kind == "component_template":
        item = body["component_templates"][0]["component_template"]
        meta = item.get("_meta") or {}
        return Observed(item, meta.get("managed_by") == MANAGED_BY, meta.get("digest"))
    if obj.kind == "index_template":
        item = body["index_templates"][0]["index_template"]
        meta = item.get("_meta") or {}
        return Observed(item, meta.get("managed_by") == MANAGED_BY, meta.get("digest"))
    if obj.kind == "ingest_pipeline":
        item = body.get(obj.name) or {}
        owned, digest = _marker_from_description(item.get("description"))
        return Observed(item, owned, digest)
    if obj.kind == "ilm_policy":
        item = (body.get(obj.name) or {}).get("policy") or {}
        meta = item.get("_meta") or {}
        return Observed({"policy": item}, meta.get("managed_by") == MANAGED_BY, meta.get("digest"))
    if obj.kind == "ism_policy":
        item = body.get("policy") or {}
        owned, digest = _marker_from_description(item.get("description"))
        return Observed({"policy": item}, owned, digest,
                        {"if_seq_no": body.get("_seq_no"), "if_primary_term": body.get("_primary_term")})
    raise ValueError(f"unknown object kind {obj.kind}")


def build_plan(engine: Engine, options: BootstrapOptions, force: bool = False) -> Plan:
    """Desired objects for this engine, compared with what it holds."""
    desired, notes = desired_objects(engine.flavor, engine.caps, options)
    observed = {f"{o.kind}/{o.name}": observe_one(engine, o) for o in desired}
    return plan(desired, observed, force, notes)


def _align(observed: Any, desired: Any) -> Any:
    """``observed`` with the engines' stringified scalars ("32", "true") given the desired value's type,
    so that a diff shows real changes only, not ``"32"`` -> ``32``."""
    if isinstance(observed, dict) and isinstance(desired, dict):
        return {k: _align(v, desired.get(k)) if k in desired else v for k, v in observed.items()}
    if isinstance(observed, list) and isinstance(desired, list) and len(observed) == len(desired):
        return [_align(o, d) for o, d in zip(observed, desired)]
    if isinstance(observed, str) and isinstance(desired, (bool, int, float)) and not isinstance(desired, str):
        shown = str(desired).lower() if isinstance(desired, bool) else str(desired)
        if observed.strip().lower() == shown.lower():
            return desired
    return observed


def diff(step: Step) -> str:
    """A unified diff between the installed and the desired body of one step."""
    def dump(body: Any) -> list[str]:
        return json.dumps(body, indent=2, sort_keys=True).splitlines(keepends=True) if body is not None else []

    name = f"{step.desired.kind}/{step.desired.name}"
    observed = _align(step.observed.body, step.desired.body)
    return "".join(difflib.unified_diff(dump(observed), dump(step.desired.body),
                                        fromfile=f"cluster:{name}", tofile=f"kaudit-elk:{name}"))


def apply(engine: Engine, the_plan: Plan, options: BootstrapOptions) -> list[Step]:
    """Install the plan's changes in order and record the content version; returns the changed steps."""
    if the_plan.conflicts:
        names = ", ".join(f"{s.desired.kind} {s.desired.name}" for s in the_plan.conflicts)
        raise OwnershipError(f"refusing to overwrite objects kaudit-elk does not own: {names} (use --force)")
    for step in the_plan.changes:
        params = None
        if step.desired.kind == "ism_policy" and step.action == "update":
            params = {k: v for k, v in step.observed.version.items() if v is not None}
        engine.request("PUT", step.desired.path, step.desired.body, params=params)
    record_version(engine, the_plan, options)
    return the_plan.changes


def record_version(engine: Engine, the_plan: Plan, options: BootstrapOptions) -> None:
    """Write (or refresh) the installed content version into the state index."""
    names = Names(options.namespace)
    doc = {
        "kind": "bootstrap",
        "version": __version__,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "objects": {f"{s.desired.kind}/{s.desired.name}": s.desired.digest for s in the_plan.steps},
        "notes": the_plan.notes,
    }
    current = engine.request("GET", f"/{names.state_index}/_doc/bootstrap", ignore=(404,))
    source = (current or {}).get("_source") or {}
    if source.get("version") == doc["version"] and source.get("objects") == doc["objects"]:
        return
    engine.request("PUT", f"/{names.state_index}/_doc/bootstrap", doc, params={"refresh": "true"})


def installed_version(engine: Engine, namespace: str) -> dict[str, Any] | None:
    """The content version recorded by the last bootstrap, or None."""
    body = engine.request("GET", f"/{Names(namespace).state_index}/_doc/bootstrap", ignore=(404,))
    return (body or {}).get("_source")


def bootstrap(engine: Engine, options: BootstrapOptions, *, force: bool = False, dry_run: bool = False) -> Plan:
    """Install (or with ``dry_run`` only plan) kaudit-elk's content for one namespace; the library form of
    ``kaudit-elk bootstrap`` without roles and dashboards (:func:`install` adds the roles). A plain index
    squatting on the stream's name is refused with the repair steps
    (:class:`kaudit_elk.cluster.namespace.NotBootstrapped`); a data stream made from another template is
    rolled over onto kaudit-elk's template. After a real run ``plan.changes`` are the objects installed."""
    from kaudit_elk.cluster.namespace import NotBootstrapped, squatter

    names = Names(options.namespace)
    squatting = squatter(engine, options.namespace)
    if squatting is not None and squatting.kind == "index":
        raise NotBootstrapped(squatting.explain(names))
    the_plan = build_plan(engine, options, force=force)
    if squatting is not None:
        the_plan.notes.append(f"{squatting.explain(names)}; "
                              + ("bootstrap would roll it over onto kaudit-elk's template" if dry_run
                                 else "rolled over onto kaudit-elk's template (older backing indices keep "
                                      "their mappings)"))
    if not dry_run:
        apply(engine, the_plan, options)
        if squatting is not None:
            engine.request("POST", f"/{names.stream}/_rollover")
    return the_plan


@dataclass
class Installation:
    """What :func:`install` did or, with ``dry_run``, would do."""

    dry_run: bool
    plan: Plan | None  # None with roles_only
    roles: list[RoleDefinition]  # this namespace's kaudit roles on this flavor
    roles_applied: list[tuple[str, str]] = field(default_factory=list)  # (role name, created | updated)
    api_keys: list[tuple[str, str]] = field(default_factory=list)  # (role name, encoded id:key)


def install(
    engine: Engine,
    options: BootstrapOptions,
    *,
    force: bool = False,
    dry_run: bool = False,
    create_roles: bool = False,
    api_key_roles: Sequence[str] = (),
    api_key_expiration: str | None = None,
    roles_only: bool = False,
) -> Installation:
    """``kaudit-elk bootstrap`` as a call: the least-privilege roles (``create_roles``), the content
    (:func:`bootstrap`) and API keys limited to one kaudit role each (``api_key_roles``, Elasticsearch),
    in that order. ``roles_only`` does only the roles and keys (a security admin's step). Dashboards are
    :func:`kaudit_elk.views.dashboards.import_into`."""
    unknown = [r for r in api_key_roles if r not in roles.ROLES]
    if unknown:
        raise ConfigError(f"--create-api-key: unknown role {unknown[0]!r}; one of {', '.join(roles.ROLES)}")
    if roles_only and not (create_roles or api_key_roles):
        raise ConfigError("--roles-only needs --create-roles or --create-api-key")
    definitions = roles.role_definitions(engine.flavor, options.namespace)
    result = Installation(dry_run=dry_run, plan=None, roles=definitions)
    if create_roles and not dry_run:
        result.roles_applied = roles.apply_roles(engine, definitions)
    if not roles_only:
        result.plan = bootstrap(engine, options, force=force, dry_run=dry_run)
    if not dry_run:
        by_role = {d.role: d for d in definitions}
        result.api_keys = [(by_role[r].name, roles.create_api_key(engine, by_role[r], api_key_expiration))
                           for r in api_key_roles]
    return result
