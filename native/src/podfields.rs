// generated from kaudit_elk/events/fieldspec.py (FIELDS) - do not edit; run: python -m kaudit_elk.events.codegen
//! The typed `kaudit.pod.*` fields of the pod specs of a request (rules: fieldspec.FIELDS).

use std::borrow::Cow;

use crate::json::V;
use crate::normalize::{int_of, iter_list, Fallback, O, R};

/// `kaudit.pod` for the pod specs found in the bodies (request body first).
pub(crate) fn pod_fields<'v, 'a>(specs: &[&'v V<'a>]) -> R<O<'v, 'a>> {
    let mut f_privileged = false;
    let mut f_allow_privilege_escalation = false;
    let mut f_host_network = false;
    let mut f_host_pid = false;
    let mut f_host_ipc = false;
    let mut f_host_path: Vec<&'v str> = Vec::new();
    let mut f_host_ports: Vec<i128> = Vec::new();
    let mut f_capabilities_add: Vec<&'v str> = Vec::new();
    let mut f_images: Vec<&'v str> = Vec::new();
    let mut f_run_as_user: Vec<i128> = Vec::new();
    let mut f_service_account: Option<&'v str> = None;
    let mut f_seccomp_profile: Vec<&'v str> = Vec::new();
    let mut f_proc_mount: Vec<&'v str> = Vec::new();
    for &spec in specs {
        if matches!(spec.get("hostNetwork"), Some(V::Bool(true))) {
            f_host_network = true;
        }
        if matches!(spec.get("hostPID"), Some(V::Bool(true))) {
            f_host_pid = true;
        }
        if matches!(spec.get("hostIPC"), Some(V::Bool(true))) {
            f_host_ipc = true;
        }
        for spec_volumes_item in iter_list(spec.get("volumes"))? {
            if let Some(spec_volumes_item_host_path) = spec_volumes_item.get("hostPath") {
                match spec_volumes_item_host_path.get("path") {
                    None | Some(V::Null) => {}
                    Some(V::Str(s)) => {
                        let s: &'v str = s;
                        if !f_host_path.contains(&s) {
                            f_host_path.push(s);
                        }
                    }
                    Some(_) => return Err(Fallback),
                }
            }
        }
        if let Some(spec_security_context) = spec.get("securityContext") {
            if let Some(i) = int_of(spec_security_context.get("runAsUser"))? {
                if !f_run_as_user.contains(&i) {
                    f_run_as_user.push(i);
                }
            }
            if let Some(spec_security_context_seccomp_profile) = spec_security_context.get("seccompProfile") {
                if let Some(V::Str(s)) = spec_security_context_seccomp_profile.get("type") {
                    let s: &'v str = s;
                    if !f_seccomp_profile.contains(&s) {
                        f_seccomp_profile.push(s);
                    }
                }
            }
        }
        if let Some(V::Str(s)) = spec.get("serviceAccountName") {
            let s: &'v str = s;
            if f_service_account.is_none() && !s.is_empty() {
                f_service_account = Some(s);
            }
        }
        if let Some(V::Str(s)) = spec.get("serviceAccount") {
            let s: &'v str = s;
            if f_service_account.is_none() && !s.is_empty() {
                f_service_account = Some(s);
            }
        }
        for list_name in ["containers", "initContainers", "ephemeralContainers"] {
            for c in iter_list(spec.get(list_name))? {
                if !c.is_obj() {
                    continue;
                }
                if let Some(c_security_context) = c.get("securityContext") {
                    if matches!(c_security_context.get("privileged"), Some(V::Bool(true))) {
                        f_privileged = true;
                    }
                    if matches!(c_security_context.get("allowPrivilegeEscalation"), Some(V::Bool(true))) {
                        f_allow_privilege_escalation = true;
                    }
                    if let Some(c_security_context_capabilities) = c_security_context.get("capabilities") {
                        for c_security_context_capabilities_add_item in iter_list(c_security_context_capabilities.get("add"))? {
                            if let V::Str(s) = c_security_context_capabilities_add_item {
                                let s: &'v str = s;
                                if !f_capabilities_add.contains(&s) {
                                    f_capabilities_add.push(s);
                                }
                            }
                        }
                    }
                    if let Some(i) = int_of(c_security_context.get("runAsUser"))? {
                        if !f_run_as_user.contains(&i) {
                            f_run_as_user.push(i);
                        }
                    }
                    if let Some(c_security_context_seccomp_profile) = c_security_context.get("seccompProfile") {
                        if let Some(V::Str(s)) = c_security_context_seccomp_profile.get("type") {
                            let s: &'v str = s;
                            if !f_seccomp_profile.contains(&s) {
                                f_seccomp_profile.push(s);
                            }
                        }
                    }
                    if let Some(V::Str(s)) = c_security_context.get("procMount") {
                        let s: &'v str = s;
                        if !f_proc_mount.contains(&s) {
                            f_proc_mount.push(s);
                        }
                    }
                }
                for c_ports_item in iter_list(c.get("ports"))? {
                    if let Some(i) = int_of(c_ports_item.get("hostPort"))? {
                        if !f_host_ports.contains(&i) {
                            f_host_ports.push(i);
                        }
                    }
                }
                if let Some(V::Str(s)) = c.get("image") {
                    let s: &'v str = s;
                    if !f_images.contains(&s) {
                        f_images.push(s);
                    }
                }
            }
        }
    }
    let strs = |list: Vec<&'v str>| O::Arr(list.into_iter().map(|s| O::S(Cow::Borrowed(s))).collect());
    let ints = |list: Vec<i128>| -> R<O<'v, 'a>> {
        Ok(O::Arr(list.into_iter().map(|i| i64::try_from(i).map(O::I).map_err(|_| Fallback)).collect::<R<Vec<_>>>()?))
    };
    let mut pod: Vec<(Cow<'v, str>, O<'v, 'a>)> = Vec::with_capacity(13);
    pod.push((Cow::Borrowed("privileged"), O::B(f_privileged)));
    pod.push((Cow::Borrowed("allow_privilege_escalation"), O::B(f_allow_privilege_escalation)));
    pod.push((Cow::Borrowed("host_network"), O::B(f_host_network)));
    pod.push((Cow::Borrowed("host_pid"), O::B(f_host_pid)));
    pod.push((Cow::Borrowed("host_ipc"), O::B(f_host_ipc)));
    if !f_host_path.is_empty() {
        pod.push((Cow::Borrowed("host_path"), strs(f_host_path)));
    }
    if !f_host_ports.is_empty() {
        pod.push((Cow::Borrowed("host_ports"), ints(f_host_ports)?));
    }
    if !f_capabilities_add.is_empty() {
        pod.push((Cow::Borrowed("capabilities_add"), strs(f_capabilities_add)));
    }
    if !f_images.is_empty() {
        pod.push((Cow::Borrowed("images"), strs(f_images)));
    }
    if !f_run_as_user.is_empty() {
        pod.push((Cow::Borrowed("run_as_user"), ints(f_run_as_user)?));
    }
    if let Some(s) = f_service_account {
        pod.push((Cow::Borrowed("service_account"), O::S(Cow::Borrowed(s))));
    }
    if !f_seccomp_profile.is_empty() {
        pod.push((Cow::Borrowed("seccomp_profile"), strs(f_seccomp_profile)));
    }
    if !f_proc_mount.is_empty() {
        pod.push((Cow::Borrowed("proc_mount"), strs(f_proc_mount)));
    }
    Ok(O::Obj(pod))
}
