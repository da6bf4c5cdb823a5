# generated from kaudit_elk/events/fieldspec.py (FIELDS) - do not edit; run: python -m kaudit_elk.events.codegen
"""Lean checks: does every typed path of a body fit its shape (rules: fieldspec.BODY_SHAPES)?

True only when every typed path fits and no key of a mapped object is dotted, empty or blank; False
sends the body to the full walk of kaudit_elk.events.bodyshape, which decides and removes."""

from __future__ import annotations

from typing import Any

from kaudit_elk.events import fieldspec as fs

_LOW, _HIGH = fs.BODY_INTEGER_RANGE
_NOT = (None,)  # a value that is neither an object nor a list: its item fails the dict check
#: Keys seen plain (no dot, not empty, no blank or unprintable character): a plain key is plain wherever
#: it is, so one C-level superset test clears an object whose keys were all seen before.
_PLAIN: set[str] = set()
_known = _PLAIN.issuperset
_PLAIN_MAX = 8192


def _learn(obj: dict[str, Any]) -> bool:
    """Whether every key of ``obj`` is plain; plain keys are remembered (the set is bounded)."""
    joined = "".join(obj)
    if "." in joined or " " in joined or "" in obj or not joined.isprintable():
        return False
    if len(_PLAIN) > _PLAIN_MAX:
        _PLAIN.clear()
    _PLAIN.update(obj)
    return True


def _scalars(value: Any) -> bool:
    """A list of strings (anything else the full walk judges)."""
    if type(value) is not list:
        return False
    try:
        "".join(value)
    except TypeError:
        return False
    return True


def _objects(value: Any) -> bool:
    return type(value) is list and all(type(item) is dict for item in value)


def request_object_fits(b: dict[str, Any]) -> bool:
    """Every typed path of a requestObject fits (False: take the full walk)."""
    try:
        if not _known(b) and not _learn(b):
            return False
        b_spec = b.get("spec")
        if b_spec is not None:
            for b_spec_i in (b_spec,) if type(b_spec) is dict else b_spec if type(b_spec) is list else _NOT:
                if type(b_spec_i) is not dict:
                    return False
                if not _known(b_spec_i) and not _learn(b_spec_i):
                    return False
                b_spec_i_type = b_spec_i.get("type")
                if b_spec_i_type is not None and (type(b_spec_i_type) is not str and not _scalars(b_spec_i_type)):
                    return False
                b_spec_i_service_account_name = b_spec_i.get("serviceAccountName")
                if b_spec_i_service_account_name is not None and (type(b_spec_i_service_account_name) is not str and not _scalars(b_spec_i_service_account_name)):
                    return False
                b_spec_i_restart_policy = b_spec_i.get("restartPolicy")
                if b_spec_i_restart_policy is not None and (type(b_spec_i_restart_policy) is not str and not _scalars(b_spec_i_restart_policy)):
                    return False
                b_spec_i_host_network = b_spec_i.get("hostNetwork")
                if b_spec_i_host_network is not None and (b_spec_i_host_network is not True and b_spec_i_host_network is not False):
                    return False
                b_spec_i_host_ipc = b_spec_i.get("hostIPC")
                if b_spec_i_host_ipc is not None and (b_spec_i_host_ipc is not True and b_spec_i_host_ipc is not False):
                    return False
                b_spec_i_host_pid = b_spec_i.get("hostPID")
                if b_spec_i_host_pid is not None and (b_spec_i_host_pid is not True and b_spec_i_host_pid is not False):
                    return False
                b_spec_i_volumes = b_spec_i.get("volumes")
                if b_spec_i_volumes is not None:
                    for b_spec_i_volumes_i in (b_spec_i_volumes,) if type(b_spec_i_volumes) is dict else b_spec_i_volumes if type(b_spec_i_volumes) is list else _NOT:
                        if type(b_spec_i_volumes_i) is not dict:
                            return False
                        if not _known(b_spec_i_volumes_i) and not _learn(b_spec_i_volumes_i):
                            return False
                        b_spec_i_volumes_i_host_path = b_spec_i_volumes_i.get("hostPath")
                        if b_spec_i_volumes_i_host_path is not None and (type(b_spec_i_volumes_i_host_path) is not dict and not _objects(b_spec_i_volumes_i_host_path)):
                            return False
                b_spec_i_security_context = b_spec_i.get("securityContext")
                if b_spec_i_security_context is not None:
                    for b_spec_i_security_context_i in (b_spec_i_security_context,) if type(b_spec_i_security_context) is dict else b_spec_i_security_context if type(b_spec_i_security_context) is list else _NOT:
                        if type(b_spec_i_security_context_i) is not dict:
                            return False
                        if not _known(b_spec_i_security_context_i) and not _learn(b_spec_i_security_context_i):
                            return False
                        b_spec_i_security_context_i_run_as_user = b_spec_i_security_context_i.get("runAsUser")
                        if b_spec_i_security_context_i_run_as_user is not None and (type(b_spec_i_security_context_i_run_as_user) is not int or not _LOW <= b_spec_i_security_context_i_run_as_user <= _HIGH):
                            return False
                        b_spec_i_security_context_i_run_as_group = b_spec_i_security_context_i.get("runAsGroup")
                        if b_spec_i_security_context_i_run_as_group is not None and (type(b_spec_i_security_context_i_run_as_group) is not int or not _LOW <= b_spec_i_security_context_i_run_as_group <= _HIGH):
                            return False
                        b_spec_i_security_context_i_run_as_non_root = b_spec_i_security_context_i.get("runAsNonRoot")
                        if b_spec_i_security_context_i_run_as_non_root is not None and (b_spec_i_security_context_i_run_as_non_root is not True and b_spec_i_security_context_i_run_as_non_root is not False):
                            return False
                b_spec_i_containers = b_spec_i.get("containers")
                if b_spec_i_containers is not None:
                    for b_spec_i_containers_i in (b_spec_i_containers,) if type(b_spec_i_containers) is dict else b_spec_i_containers if type(b_spec_i_containers) is list else _NOT:
                        if type(b_spec_i_containers_i) is not dict:
                            return False
                        if not _known(b_spec_i_containers_i) and not _learn(b_spec_i_containers_i):
                            return False
                        b_spec_i_containers_i_image = b_spec_i_containers_i.get("image")
                        if b_spec_i_containers_i_image is not None and (type(b_spec_i_containers_i_image) is not str and not _scalars(b_spec_i_containers_i_image)):
                            return False
                        b_spec_i_containers_i_volume_mounts = b_spec_i_containers_i.get("volumeMounts")
                        if b_spec_i_containers_i_volume_mounts is not None and (type(b_spec_i_containers_i_volume_mounts) is not dict and not _objects(b_spec_i_containers_i_volume_mounts)):
                            return False
                        b_spec_i_containers_i_security_context = b_spec_i_containers_i.get("securityContext")
                        if b_spec_i_containers_i_security_context is not None:
                            for b_spec_i_containers_i_security_context_i in (b_spec_i_containers_i_security_context,) if type(b_spec_i_containers_i_security_context) is dict else b_spec_i_containers_i_security_context if type(b_spec_i_containers_i_security_context) is list else _NOT:
                                if type(b_spec_i_containers_i_security_context_i) is not dict:
                                    return False
                                if not _known(b_spec_i_containers_i_security_context_i) and not _learn(b_spec_i_containers_i_security_context_i):
                                    return False
                                b_spec_i_containers_i_security_context_i_privileged = b_spec_i_containers_i_security_context_i.get("privileged")
                                if b_spec_i_containers_i_security_context_i_privileged is not None and (b_spec_i_containers_i_security_context_i_privileged is not True and b_spec_i_containers_i_security_context_i_privileged is not False):
                                    return False
                                b_spec_i_containers_i_security_context_i_allow_privilege_escalation = b_spec_i_containers_i_security_context_i.get("allowPrivilegeEscalation")
                                if b_spec_i_containers_i_security_context_i_allow_privilege_escalation is not None and (b_spec_i_containers_i_security_context_i_allow_privilege_escalation is not True and b_spec_i_containers_i_security_context_i_allow_privilege_escalation is not False):
                                    return False
                                b_spec_i_containers_i_security_context_i_run_as_user = b_spec_i_containers_i_security_context_i.get("runAsUser")
                                if b_spec_i_containers_i_security_context_i_run_as_user is not None and (type(b_spec_i_containers_i_security_context_i_run_as_user) is not int or not _LOW <= b_spec_i_containers_i_security_context_i_run_as_user <= _HIGH):
                                    return False
                                b_spec_i_containers_i_security_context_i_run_as_group = b_spec_i_containers_i_security_context_i.get("runAsGroup")
                                if b_spec_i_containers_i_security_context_i_run_as_group is not None and (type(b_spec_i_containers_i_security_context_i_run_as_group) is not int or not _LOW <= b_spec_i_containers_i_security_context_i_run_as_group <= _HIGH):
                                    return False
                                b_spec_i_containers_i_security_context_i_run_as_non_root = b_spec_i_containers_i_security_context_i.get("runAsNonRoot")
                                if b_spec_i_containers_i_security_context_i_run_as_non_root is not None and (b_spec_i_containers_i_security_context_i_run_as_non_root is not True and b_spec_i_containers_i_security_context_i_run_as_non_root is not False):
                                    return False
                                b_spec_i_containers_i_security_context_i_proc_mount = b_spec_i_containers_i_security_context_i.get("procMount")
                                if b_spec_i_containers_i_security_context_i_proc_mount is not None and (type(b_spec_i_containers_i_security_context_i_proc_mount) is not str and not _scalars(b_spec_i_containers_i_security_context_i_proc_mount)):
                                    return False
                                b_spec_i_containers_i_security_context_i_capabilities = b_spec_i_containers_i_security_context_i.get("capabilities")
                                if b_spec_i_containers_i_security_context_i_capabilities is not None:
                                    for b_spec_i_containers_i_security_context_i_capabilities_i in (b_spec_i_containers_i_security_context_i_capabilities,) if type(b_spec_i_containers_i_security_context_i_capabilities) is dict else b_spec_i_containers_i_security_context_i_capabilities if type(b_spec_i_containers_i_security_context_i_capabilities) is list else _NOT:
                                        if type(b_spec_i_containers_i_security_context_i_capabilities_i) is not dict:
                                            return False
                                        if not _known(b_spec_i_containers_i_security_context_i_capabilities_i) and not _learn(b_spec_i_containers_i_security_context_i_capabilities_i):
                                            return False
                                        b_spec_i_containers_i_security_context_i_capabilities_i_add = b_spec_i_containers_i_security_context_i_capabilities_i.get("add")
                                        if b_spec_i_containers_i_security_context_i_capabilities_i_add is not None and (type(b_spec_i_containers_i_security_context_i_capabilities_i_add) is not str and not _scalars(b_spec_i_containers_i_security_context_i_capabilities_i_add)):
                                            return False
        b_rules = b.get("rules")
        if b_rules is not None:
            for b_rules_i in (b_rules,) if type(b_rules) is dict else b_rules if type(b_rules) is list else _NOT:
                if type(b_rules_i) is not dict:
                    return False
                if not _known(b_rules_i) and not _learn(b_rules_i):
                    return False
                b_rules_i_verbs = b_rules_i.get("verbs")
                if b_rules_i_verbs is not None and (type(b_rules_i_verbs) is not str and not _scalars(b_rules_i_verbs)):
                    return False
                b_rules_i_resources = b_rules_i.get("resources")
                if b_rules_i_resources is not None and (type(b_rules_i_resources) is not str and not _scalars(b_rules_i_resources)):
                    return False
        b_role_ref = b.get("roleRef")
        if b_role_ref is not None:
            for b_role_ref_i in (b_role_ref,) if type(b_role_ref) is dict else b_role_ref if type(b_role_ref) is list else _NOT:
                if type(b_role_ref_i) is not dict:
                    return False
                if not _known(b_role_ref_i) and not _learn(b_role_ref_i):
                    return False
                b_role_ref_i_name = b_role_ref_i.get("name")
                if b_role_ref_i_name is not None and (type(b_role_ref_i_name) is not str and not _scalars(b_role_ref_i_name)):
                    return False
    except TypeError:  # a key that is not a string (never from JSON)
        return False
    return True


def response_object_fits(b: dict[str, Any]) -> bool:
    """Every typed path of a responseObject fits (False: take the full walk)."""
    try:
        if not _known(b) and not _learn(b):
            return False
        b_spec = b.get("spec")
        if b_spec is not None:
            for b_spec_i in (b_spec,) if type(b_spec) is dict else b_spec if type(b_spec) is list else _NOT:
                if type(b_spec_i) is not dict:
                    return False
                if not _known(b_spec_i) and not _learn(b_spec_i):
                    return False
                b_spec_i_host_network = b_spec_i.get("hostNetwork")
                if b_spec_i_host_network is not None and (b_spec_i_host_network is not True and b_spec_i_host_network is not False):
                    return False
                b_spec_i_host_ipc = b_spec_i.get("hostIPC")
                if b_spec_i_host_ipc is not None and (b_spec_i_host_ipc is not True and b_spec_i_host_ipc is not False):
                    return False
                b_spec_i_host_pid = b_spec_i.get("hostPID")
                if b_spec_i_host_pid is not None and (b_spec_i_host_pid is not True and b_spec_i_host_pid is not False):
                    return False
                b_spec_i_volumes = b_spec_i.get("volumes")
                if b_spec_i_volumes is not None:
                    for b_spec_i_volumes_i in (b_spec_i_volumes,) if type(b_spec_i_volumes) is dict else b_spec_i_volumes if type(b_spec_i_volumes) is list else _NOT:
                        if type(b_spec_i_volumes_i) is not dict:
                            return False
                        if not _known(b_spec_i_volumes_i) and not _learn(b_spec_i_volumes_i):
                            return False
                        b_spec_i_volumes_i_host_path = b_spec_i_volumes_i.get("hostPath")
                        if b_spec_i_volumes_i_host_path is not None and (type(b_spec_i_volumes_i_host_path) is not dict and not _objects(b_spec_i_volumes_i_host_path)):
                            return False
                b_spec_i_restart_policy = b_spec_i.get("restartPolicy")
                if b_spec_i_restart_policy is not None and (type(b_spec_i_restart_policy) is not str and not _scalars(b_spec_i_restart_policy)):
                    return False
                b_spec_i_containers = b_spec_i.get("containers")
                if b_spec_i_containers is not None:
                    for b_spec_i_containers_i in (b_spec_i_containers,) if type(b_spec_i_containers) is dict else b_spec_i_containers if type(b_spec_i_containers) is list else _NOT:
                        if type(b_spec_i_containers_i) is not dict:
                            return False
                        if not _known(b_spec_i_containers_i) and not _learn(b_spec_i_containers_i):
                            return False
                        b_spec_i_containers_i_volume_mounts = b_spec_i_containers_i.get("volumeMounts")
                        if b_spec_i_containers_i_volume_mounts is not None and (type(b_spec_i_containers_i_volume_mounts) is not dict and not _objects(b_spec_i_containers_i_volume_mounts)):
                            return False
                        b_spec_i_containers_i_security_context = b_spec_i_containers_i.get("securityContext")
                        if b_spec_i_containers_i_security_context is not None:
                            for b_spec_i_containers_i_security_context_i in (b_spec_i_containers_i_security_context,) if type(b_spec_i_containers_i_security_context) is dict else b_spec_i_containers_i_security_context if type(b_spec_i_containers_i_security_context) is list else _NOT:
                                if type(b_spec_i_containers_i_security_context_i) is not dict:
                                    return False
                                if not _known(b_spec_i_containers_i_security_context_i) and not _learn(b_spec_i_containers_i_security_context_i):
                                    return False
                                b_spec_i_containers_i_security_context_i_privileged = b_spec_i_containers_i_security_context_i.get("privileged")
                                if b_spec_i_containers_i_security_context_i_privileged is not None and (b_spec_i_containers_i_security_context_i_privileged is not True and b_spec_i_containers_i_security_context_i_privileged is not False):
                                    return False
                                b_spec_i_containers_i_security_context_i_allow_privilege_escalation = b_spec_i_containers_i_security_context_i.get("allowPrivilegeEscalation")
                                if b_spec_i_containers_i_security_context_i_allow_privilege_escalation is not None and (b_spec_i_containers_i_security_context_i_allow_privilege_escalation is not True and b_spec_i_containers_i_security_context_i_allow_privilege_escalation is not False):
                                    return False
                                b_spec_i_containers_i_security_context_i_run_as_user = b_spec_i_containers_i_security_context_i.get("runAsUser")
                                if b_spec_i_containers_i_security_context_i_run_as_user is not None and (type(b_spec_i_containers_i_security_context_i_run_as_user) is not int or not _LOW <= b_spec_i_containers_i_security_context_i_run_as_user <= _HIGH):
                                    return False
        b_rules = b.get("rules")
        if b_rules is not None:
            for b_rules_i in (b_rules,) if type(b_rules) is dict else b_rules if type(b_rules) is list else _NOT:
                if type(b_rules_i) is not dict:
                    return False
                if not _known(b_rules_i) and not _learn(b_rules_i):
                    return False
                b_rules_i_verbs = b_rules_i.get("verbs")
                if b_rules_i_verbs is not None and (type(b_rules_i_verbs) is not str and not _scalars(b_rules_i_verbs)):
                    return False
                b_rules_i_resources = b_rules_i.get("resources")
                if b_rules_i_resources is not None and (type(b_rules_i_resources) is not str and not _scalars(b_rules_i_resources)):
                    return False
        b_role_ref = b.get("roleRef")
        if b_role_ref is not None:
            for b_role_ref_i in (b_role_ref,) if type(b_role_ref) is dict else b_role_ref if type(b_role_ref) is list else _NOT:
                if type(b_role_ref_i) is not dict:
                    return False
                if not _known(b_role_ref_i) and not _learn(b_role_ref_i):
                    return False
                b_role_ref_i_kind = b_role_ref_i.get("kind")
                if b_role_ref_i_kind is not None and (type(b_role_ref_i_kind) is not str and not _scalars(b_role_ref_i_kind)):
                    return False
    except TypeError:  # a key that is not a string (never from JSON)
        return False
    return True


#: raw body key -> its lean check.
FITS = {"requestObject": request_object_fits, "responseObject": response_object_fits}
