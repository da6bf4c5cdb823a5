# generated from kaudit_elk/events/fieldspec.py (FIELDS) - do not edit; run: python -m kaudit_elk.events.codegen
"""The typed ``kaudit.pod.*`` fields of the pod specs of a request (rules: fieldspec.FIELDS)."""

from __future__ import annotations

from typing import Any


def pod_fields(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """``kaudit.pod`` for the pod specs found in the bodies (request body first)."""
    f_privileged: bool = False
    f_allow_privilege_escalation: bool = False
    f_host_network: bool = False
    f_host_pid: bool = False
    f_host_ipc: bool = False
    f_host_path: list[Any] = []
    f_host_ports: list[Any] = []
    f_capabilities_add: list[Any] = []
    f_images: list[Any] = []
    f_run_as_user: list[Any] = []
    f_service_account: Any = None
    f_seccomp_profile: list[Any] = []
    f_proc_mount: list[Any] = []
    for spec in specs:
        spec_host_network = spec.get("hostNetwork")
        if spec_host_network is True:
            f_host_network = True
        spec_host_pid = spec.get("hostPID")
        if spec_host_pid is True:
            f_host_pid = True
        spec_host_ipc = spec.get("hostIPC")
        if spec_host_ipc is True:
            f_host_ipc = True
        spec_volumes = spec.get("volumes")
        if isinstance(spec_volumes, list):
            for spec_volumes_item in spec_volumes:
                if isinstance(spec_volumes_item, dict):
                    spec_volumes_item_host_path = spec_volumes_item.get("hostPath")
                    if isinstance(spec_volumes_item_host_path, dict):
                        spec_volumes_item_host_path_path = spec_volumes_item_host_path.get("path")
                        if spec_volumes_item_host_path_path is not None and spec_volumes_item_host_path_path not in f_host_path:
                            f_host_path.append(spec_volumes_item_host_path_path)
        spec_security_context = spec.get("securityContext")
        if isinstance(spec_security_context, dict):
            spec_security_context_run_as_user = spec_security_context.get("runAsUser")
            if type(spec_security_context_run_as_user) is int and spec_security_context_run_as_user not in f_run_as_user:
                f_run_as_user.append(spec_security_context_run_as_user)
            spec_security_context_seccomp_profile = spec_security_context.get("seccompProfile")
            if isinstance(spec_security_context_seccomp_profile, dict):
                spec_security_context_seccomp_profile_type = spec_security_context_seccomp_profile.get("type")
                if isinstance(spec_security_context_seccomp_profile_type, str) and spec_security_context_seccomp_profile_type not in f_seccomp_profile:
                    f_seccomp_profile.append(spec_security_context_seccomp_profile_type)
        spec_service_account_name = spec.get("serviceAccountName")
        if f_service_account is None and isinstance(spec_service_account_name, str) and spec_service_account_name:
            f_service_account = spec_service_account_name
        spec_service_account = spec.get("serviceAccount")
        if f_service_account is None and isinstance(spec_service_account, str) and spec_service_account:
            f_service_account = spec_service_account
        for cs in (spec.get("containers"), spec.get("initContainers"), spec.get("ephemeralContainers")):
            if isinstance(cs, list):
                for c in cs:
                    if isinstance(c, dict):
                        c_security_context = c.get("securityContext")
                        if isinstance(c_security_context, dict):
                            c_security_context_privileged = c_security_context.get("privileged")
                            if c_security_context_privileged is True:
                                f_privileged = True
                            c_security_context_allow_privilege_escalation = c_security_context.get("allowPrivilegeEscalation")
                            if c_security_context_allow_privilege_escalation is True:
                                f_allow_privilege_escalation = True
                            c_security_context_capabilities = c_security_context.get("capabilities")
                            if isinstance(c_security_context_capabilities, dict):
                                c_security_context_capabilities_add = c_security_context_capabilities.get("add")
                                if isinstance(c_security_context_capabilities_add, list):
                                    for c_security_context_capabilities_add_item in c_security_context_capabilities_add:
                                        if isinstance(c_security_context_capabilities_add_item, str) and c_security_context_capabilities_add_item not in f_capabilities_add:
                                            f_capabilities_add.append(c_security_context_capabilities_add_item)
                            c_security_context_run_as_user = c_security_context.get("runAsUser")
                            if type(c_security_context_run_as_user) is int and c_security_context_run_as_user not in f_run_as_user:
                                f_run_as_user.append(c_security_context_run_as_user)
                            c_security_context_seccomp_profile = c_security_context.get("seccompProfile")
                            if isinstance(c_security_context_seccomp_profile, dict):
                                c_security_context_seccomp_profile_type = c_security_context_seccomp_profile.get("type")
                                if isinstance(c_security_context_seccomp_profile_type, str) and c_security_context_seccomp_profile_type not in f_seccomp_profile:
                                    f_seccomp_profile.append(c_security_context_seccomp_profile_type)
                            c_security_context_proc_mount = c_security_context.get("procMount")
                            if isinstance(c_security_context_proc_mount, str) and c_security_context_proc_mount not in f_proc_mount:
                                f_proc_mount.append(c_security_context_proc_mount)
                        c_ports = c.get("ports")
                        if isinstance(c_ports, list):
                            for c_ports_item in c_ports:
                                if isinstance(c_ports_item, dict):
                                    c_ports_item_host_port = c_ports_item.get("hostPort")
                                    if type(c_ports_item_host_port) is int and c_ports_item_host_port not in f_host_ports:
                                        f_host_ports.append(c_ports_item_host_port)
                        c_image = c.get("image")
                        if isinstance(c_image, str) and c_image not in f_images:
                            f_images.append(c_image)
    pod: dict[str, Any] = {"privileged": f_privileged, "allow_privilege_escalation": f_allow_privilege_escalation, "host_network": f_host_network, "host_pid": f_host_pid, "host_ipc": f_host_ipc}
    if f_host_path:
        pod["host_path"] = f_host_path
    if f_host_ports:
        pod["host_ports"] = f_host_ports
    if f_capabilities_add:
        pod["capabilities_add"] = f_capabilities_add
    if f_images:
        pod["images"] = f_images
    if f_run_as_user:
        pod["run_as_user"] = f_run_as_user
    if f_service_account is not None:
        pod["service_account"] = f_service_account
    if f_seccomp_profile:
        pod["seccomp_profile"] = f_seccomp_profile
    if f_proc_mount:
        pod["proc_mount"] = f_proc_mount
    return pod
