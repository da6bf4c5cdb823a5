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
    for spec in specs:
        n1 = spec.get("hostNetwork")
        if n1 is True:
            f_host_network = True
        n2 = spec.get("hostPID")
        if n2 is True:
            f_host_pid = True
        n3 = spec.get("hostIPC")
        if n3 is True:
            f_host_ipc = True
        n4 = spec.get("volumes")
        if isinstance(n4, list):
            for n5 in n4:
                if isinstance(n5, dict):
                    n6 = n5.get("hostPath")
                    if isinstance(n6, dict):
                        n7 = n6.get("path")
                        if n7 is not None and n7 not in f_host_path:
                            f_host_path.append(n7)
        n8 = spec.get("securityContext")
        if isinstance(n8, dict):
            n9 = n8.get("runAsUser")
            if isinstance(n9, int) and n9 not in f_run_as_user:
                f_run_as_user.append(n9)
        n10 = spec.get("serviceAccountName")
        if f_service_account is None and isinstance(n10, str) and n10:
            f_service_account = n10
        n11 = spec.get("serviceAccount")
        if f_service_account is None and isinstance(n11, str) and n11:
            f_service_account = n11
        for cs in (spec.get("containers"), spec.get("initContainers"), spec.get("ephemeralContainers")):
            if isinstance(cs, list):
                for c in cs:
                    if isinstance(c, dict):
                        n12 = c.get("securityContext")
                        if isinstance(n12, dict):
                            n13 = n12.get("privileged")
                            if n13 is True:
                                f_privileged = True
                            n14 = n12.get("allowPrivilegeEscalation")
                            if n14 is True:
                                f_allow_privilege_escalation = True
                            n15 = n12.get("capabilities")
                            if isinstance(n15, dict):
                                n16 = n15.get("add")
                                if isinstance(n16, list):
                                    for n17 in n16:
                                        if isinstance(n17, str) and n17 not in f_capabilities_add:
                                            f_capabilities_add.append(n17)
                            n18 = n12.get("runAsUser")
                            if isinstance(n18, int) and n18 not in f_run_as_user:
                                f_run_as_user.append(n18)
                        n19 = c.get("ports")
                        if isinstance(n19, list):
                            for n20 in n19:
                                if isinstance(n20, dict):
                                    n21 = n20.get("hostPort")
                                    if isinstance(n21, int) and n21 not in f_host_ports:
                                        f_host_ports.append(n21)
                        n22 = c.get("image")
                        if isinstance(n22, str) and n22 not in f_images:
                            f_images.append(n22)
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
    return pod
