//! The typed `kaudit.*` fields taken from a request: the decoded exec command, pod security
//! settings and RBAC rules (ports of the same functions in `kaudit_elk/events/normalize.py`).

use std::borrow::Cow;

use crate::json::V;
use crate::normalize::{contains, obj_mut, Config, Fallback, O, R};
use crate::podfields;

fn unquote_plus(text: &str) -> R<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'+' {
            out.push(b' ');
        } else if c == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            let hex = |d: u8| (d as char).to_digit(16).unwrap() as u8;
            out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
            i += 3;
            continue;
        } else {
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Fallback) // Python would insert U+FFFD; not reproduced
}

pub(crate) fn exec_fields<'v>(uri: &str) -> R<Option<O<'v, 'static>>> {
    let query = match uri.split_once('?') {
        Some((_, q)) if !q.is_empty() => q,
        _ => return Ok(None),
    };
    let mut command: Vec<String> = Vec::new();
    let mut container: Option<String> = None;
    for field in query.split('&') {
        if field.is_empty() {
            continue;
        }
        let (name, value) = field.split_once('=').unwrap_or((field, ""));
        let name = unquote_plus(name)?;
        if name == "command" {
            command.push(unquote_plus(value)?);
        } else if name == "container" && container.is_none() {
            container = Some(unquote_plus(value)?);
        }
    }
    let mut out = Vec::new();
    if !command.is_empty() {
        out.push((Cow::Borrowed("command"), O::S(Cow::Owned(command.join(" ")))));
    }
    if let Some(c) = container {
        out.push((Cow::Borrowed("container"), O::S(Cow::Owned(c))));
    }
    Ok(if out.is_empty() { None } else { Some(O::Obj(out)) })
}

fn is_pod_spec(cfg: &Config, spec: Option<&V<'_>>) -> bool {
    let pairs = match spec {
        Some(V::Obj(pairs, _)) => pairs,
        _ => return false,
    };
    if !pairs.iter().any(|(k, _)| contains(&cfg.pod_markers, k)) {
        return false;
    }
    let s = spec.unwrap();
    cfg.pod_markers.iter().any(|k| s.get(k).is_some())
}

fn pod_spec<'v, 'a>(cfg: &Config, body: &'v V<'a>) -> Option<&'v V<'a>> {
    if let Some(spec @ V::Obj(_, _)) = body.get("spec") {
        if is_pod_spec(cfg, Some(spec)) {
            return Some(spec);
        }
        if let Some(template @ V::Obj(_, _)) = spec.get("template") {
            let inner = template.get("spec");
            if is_pod_spec(cfg, inner) {
                return inner;
            }
        }
        if let Some(job @ V::Obj(_, _)) = spec.get("jobTemplate") {
            let inner = job.get("spec").and_then(|s| s.get("template")).and_then(|t| t.get("spec"));
            if is_pod_spec(cfg, inner) {
                return inner;
            }
        }
    }
    if let Some(template @ V::Obj(_, _)) = body.get("template") {
        let inner = template.get("spec");
        if is_pod_spec(cfg, inner) {
            return inner;
        }
    }
    None
}

fn push_unique_str<'v>(list: &mut Vec<&'v str>, s: &'v str) {
    if !list.contains(&s) {
        list.push(s);
    }
}

/// `kaudit.pod` of the pod specs in the bodies (request body first), or None without a pod spec; the
/// fields themselves are generated from the field spec (`podfields.rs`).
pub(crate) fn pod_fields<'v, 'a>(cfg: &Config, bodies: &[&'v V<'a>]) -> R<Option<O<'v, 'a>>> {
    let specs: Vec<&V> = bodies.iter().filter_map(|b| pod_spec(cfg, b)).collect();
    if specs.is_empty() {
        return Ok(None);
    }
    podfields::pod_fields(&specs).map(Some)
}

const RULE_LISTS: [(&str, &str); 5] = [
    ("verbs", "verbs"),
    ("resources", "resources"),
    ("apiGroups", "api_groups"),
    ("resourceNames", "resource_names"),
    ("nonResourceURLs", "non_resource_urls"),
];

pub(crate) fn rbac_fields<'v, 'a>(bodies: &[&'v V<'a>]) -> R<Option<O<'v, 'a>>> {
    let mut lists: Vec<(&'static str, Vec<&'v str>)> = Vec::new();
    let mut role_ref: Option<O<'v, 'a>> = None;
    fn list_for<'l, 'v>(lists: &'l mut Vec<(&'static str, Vec<&'v str>)>, key: &'static str) -> &'l mut Vec<&'v str> {
        let pos = match lists.iter().position(|(k, _)| *k == key) {
            Some(p) => p,
            None => {
                lists.push((key, Vec::new()));
                lists.len() - 1
            }
        };
        &mut lists[pos].1
    }
    for body in bodies {
        let (rules, rref, subjects) = (body.get("rules"), body.get("roleRef"), body.get("subjects"));
        if rules.is_none() && rref.is_none() && subjects.is_none() {
            continue;
        }
        if let Some(V::Arr(rules, _)) = rules {
            for rule in rules {
                if !rule.is_obj() {
                    continue;
                }
                for (src, dst) in RULE_LISTS {
                    // only a list lists anything (a string or an object here is ignored, as in Python and the pipeline)
                    if let Some(V::Arr(items, _)) = rule.get(src) {
                        for v in items {
                            if let V::Str(s) = v {
                                push_unique_str(list_for(&mut lists, dst), s);
                            }
                        }
                    }
                }
            }
        }
        if let Some(r @ V::Obj(_, _)) = rref {
            if role_ref.is_none() {
                let mut out = Vec::new();
                for k in ["kind", "name"] {
                    if let Some(V::Str(s)) = r.get(k) {
                        out.push((Cow::Borrowed(k), O::S(Cow::Borrowed(s.as_ref()))));
                    }
                }
                if !out.is_empty() {
                    role_ref = Some(O::Obj(out));
                }
            }
        }
        if let Some(V::Arr(subjects, _)) = subjects {
            for subj in subjects {
                if !subj.is_obj() {
                    continue;
                }
                for (k, key) in [("kind", "subjects.kind"), ("name", "subjects.name")] {
                    if let Some(V::Str(s)) = subj.get(k) {
                        push_unique_str(list_for(&mut lists, key), s);
                    }
                }
            }
        }
    }
    let mut rbac: Vec<(Cow<'v, str>, O<'v, 'a>)> = Vec::new();
    if let Some(r) = role_ref {
        rbac.push((Cow::Borrowed("role_ref"), r));
    }
    for (key, values) in lists {
        if values.is_empty() {
            continue;
        }
        let arr = O::Arr(values.into_iter().map(|s| O::S(Cow::Borrowed(s))).collect());
        if let Some(sub) = key.strip_prefix("subjects.") {
            let pos = match rbac.iter().position(|(k, _)| k == "subjects") {
                Some(p) => p,
                None => {
                    rbac.push((Cow::Borrowed("subjects"), O::Obj(Vec::new())));
                    rbac.len() - 1
                }
            };
            obj_mut(&mut rbac[pos].1).push((Cow::Borrowed(sub), arr));
        } else {
            rbac.push((Cow::Borrowed(key), arr));
        }
    }
    Ok(if rbac.is_empty() { None } else { Some(O::Obj(rbac)) })
}
