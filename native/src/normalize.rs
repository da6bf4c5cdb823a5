//! Native Event -> document, the same function as `kaudit_elk/normalize.py` for the events it
//! accepts. Every case the Python module treats specially (wrong types, envelopes, unusual
//! timestamps, bodies over the size limits, values whose Python semantics are odd) returns
//! `Err(Fallback)` so that the caller runs the Python normalizer instead. The parity test
//! (tests/unit/test_native.py) holds the two to byte-identical output.

use std::borrow::Cow;

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;

use crate::bodyshape::{body_fits, Rules, Shape};
use crate::fields::{exec_fields, pod_fields, rbac_fields};
use crate::json::{write_int, write_str, write_value, V};
use crate::timestamp::parse_ts;

/// Not handled here: run the Python path for this line.
#[derive(Debug)]
pub struct Fallback;

pub(crate) type R<T> = Result<T, Fallback>;

impl From<()> for Fallback {
    fn from(_: ()) -> Self {
        Fallback
    }
}

/// Tables and options, taken from `kaudit_elk.fieldspec` and `NormalizeOptions` at construction.
pub struct Config {
    pub cluster: String,
    /// `data_stream.namespace` (the stream the documents go to) and `data_stream.type`.
    pub namespace: String,
    pub stream_type: String,
    pub stages: Vec<String>,
    pub keep_original: bool,
    pub max_body_bytes: usize,
    pub max_value_bytes: usize,
    pub ecs_version: String,
    pub module: String,
    pub dataset: String,
    pub envelope_key: String,
    pub event_markers: Vec<String>,
    pub exec_subresources: Vec<String>,
    pub iam_resources: Vec<String>,
    pub write_verbs: Vec<String>,
    pub verb_types: Vec<(String, String)>,
    pub service_resources: Vec<String>,
    pub pod_markers: Vec<String>,
    /// `kaudit.body` keys of the request and response body copies.
    pub body_copies: Vec<String>,
    /// Shape trees of the request and response bodies' typed paths (`fieldspec.BODY_SHAPES`).
    pub body_shapes: Vec<Shape>,
    pub shape_rules: Rules,
}

pub enum Outcome {
    /// The stage is filtered out by policy.
    Skip,
    Doc { id: Option<String>, timestamp: Option<String>, source: Vec<u8> },
}

/// Output tree: keys and values borrow from the parsed event where they can.
#[derive(Clone)]
pub(crate) enum O<'v, 'a> {
    S(Cow<'v, str>),
    I(i64),
    B(bool),
    Ref(&'v V<'a>),
    Json(Vec<u8>), // already serialized (bodies, measured for size)
    Obj(Vec<(Cow<'v, str>, O<'v, 'a>)>),
    Arr(Vec<O<'v, 'a>>),
}

fn write(out: &mut Vec<u8>, o: &O<'_, '_>) {
    match o {
        O::S(s) => write_str(out, s),
        O::I(i) => write_int(out, *i),
        O::B(true) => out.extend_from_slice(b"true"),
        O::B(false) => out.extend_from_slice(b"false"),
        O::Ref(v) => write_value(out, v),
        O::Json(bytes) => out.extend_from_slice(bytes),
        O::Obj(pairs) => {
            out.push(b'{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write(out, v);
            }
            out.push(b'}');
        }
        O::Arr(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, v);
            }
            out.push(b']');
        }
    }
}

pub(crate) fn obj_mut<'x, 'v, 'a>(o: &'x mut O<'v, 'a>) -> &'x mut Vec<(Cow<'v, str>, O<'v, 'a>)> {
    match o {
        O::Obj(pairs) => pairs,
        _ => unreachable!("not an object"),
    }
}

pub(crate) fn contains(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

/// Python `value is None or isinstance(value, <type>)` for the raw top-level fields.
fn str_or_none<'v, 'a>(v: Option<&'v V<'a>>) -> R<Option<&'v str>> {
    match v {
        None => Ok(None),
        Some(V::Str(s)) => Ok(Some(s)),
        Some(_) => Err(Fallback),
    }
}

fn obj_or_none<'v, 'a>(v: Option<&'v V<'a>>) -> R<Option<&'v V<'a>>> {
    match v {
        None => Ok(None),
        Some(o @ V::Obj(_, _)) => Ok(Some(o)),
        Some(_) => Err(Fallback),
    }
}

/// Python `for x in value or ()` where only a list (or a falsy value) behaves sanely.
pub(crate) fn iter_list<'v, 'a>(v: Option<&'v V<'a>>) -> R<&'v [V<'a>]> {
    match v {
        Some(V::Arr(items, _)) => Ok(items),
        Some(other) if other.truthy() => Err(Fallback),
        _ => Ok(&[]),
    }
}

/// Python `isinstance(x, int)` (bools excluded: True == 1 in Python's dedupe).
pub(crate) fn int_of(v: Option<&V<'_>>) -> R<Option<i128>> {
    match v {
        Some(V::Int(i)) => Ok(Some(*i as i128)),
        Some(V::UInt(u)) => Ok(Some(*u as i128)),
        Some(V::Bool(_)) => Err(Fallback),
        _ => Ok(None),
    }
}

/// `key.replace(".", "_") == target` without allocating.
fn dedotted_eq(key: &str, target: &str) -> bool {
    key.len() == target.len() && key.bytes().zip(target.bytes()).all(|(a, b)| a == b || (a == b'.' && b == b'_'))
}

// ---- small helpers ports --------------------------------------------------------------------

fn is_ip(text: &str) -> R<bool> {
    if !text.is_ascii() {
        return Err(Fallback); // str.isdigit() accepts non-ASCII digits; leave those to Python
    }
    if text.is_empty() || text.len() > 45 {
        return Ok(false);
    }
    if text.contains(':') {
        return Ok(text.bytes().all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            && text.bytes().filter(|&c| c == b':').count() >= 2);
    }
    let parts: Vec<&str> = text.split('.').collect();
    Ok(parts.len() == 4
        && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().map(|n| n <= 255).unwrap_or(false)))
}

/// `user.*` fields of a `user` / `impersonatedUser` object (name, id, group.name), or None when it has
/// none of them; adds the non-empty string name and uid to `users` (related.user, no repeats).
fn identity<'v, 'a>(obj: &'v V<'a>, users: &mut Vec<&'v str>) -> Option<Vec<(Cow<'v, str>, O<'v, 'a>)>> {
    let (name, uid, groups) = (obj.get("username"), obj.get("uid"), obj.get("groups"));
    if name.is_none() && uid.is_none() && groups.is_none() {
        return None;
    }
    let mut out = Vec::new();
    for (key, value) in [("name", name), ("id", uid)] {
        if let Some(v) = value {
            out.push((Cow::Borrowed(key), O::Ref(v)));
            if let V::Str(s) = v {
                if !s.is_empty() && !users.contains(&s.as_ref()) {
                    users.push(s);
                }
            }
        }
    }
    if let Some(g) = groups {
        out.push((Cow::Borrowed("group"), O::Obj(vec![(Cow::Borrowed("name"), O::Ref(g))])));
    }
    Some(out)
}

/// `dict` with dotted keys rewritten ("." -> "_"), or None when no key has a dot.
fn dedot<'v, 'a>(obj: &'v V<'a>) -> R<Option<O<'v, 'a>>> {
    let pairs = match obj {
        V::Obj(pairs, _) => pairs,
        _ => return Ok(None),
    };
    if !pairs.iter().any(|(k, _)| k.contains('.')) {
        return Ok(None);
    }
    let mut out: Vec<(Cow<'v, str>, O<'v, 'a>)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let key: Cow<'v, str> = if k.contains('.') { Cow::Owned(k.replace('.', "_")) } else { Cow::Borrowed(k.as_ref()) };
        if out.iter().any(|(other, _)| *other == key) {
            return Err(Fallback); // two keys collide after dedotting
        }
        out.push((key, O::Ref(v)));
    }
    Ok(Some(O::Obj(out)))
}

/// Python `_placeable`: a dotted key the engine can index as a path (no empty step, and no other key of
/// the object is a path prefix of it).
fn placeable(key: &str, pairs: &[(Cow<'_, str>, V<'_>)]) -> bool {
    if key.split('.').any(|p| p.is_empty()) {
        return false;
    }
    !key.match_indices('.').any(|(i, _)| pairs.iter().any(|(k, _)| k.as_ref() == &key[..i]))
}

/// Python `_place_dots`: the object with unplaceable dotted keys dedotted, or None when it stays as sent.
fn place_dots<'v, 'a>(obj: &'v V<'a>) -> R<Option<O<'v, 'a>>> {
    let pairs = match obj {
        V::Obj(pairs, _) => pairs,
        _ => return Ok(None),
    };
    let bad = |k: &str| k.contains('.') && !placeable(k, pairs);
    if !pairs.iter().any(|(k, _)| bad(k)) {
        return Ok(None);
    }
    let mut out: Vec<(Cow<'v, str>, O<'v, 'a>)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let key: Cow<'v, str> = if bad(k) { Cow::Owned(k.replace('.', "_")) } else { Cow::Borrowed(k.as_ref()) };
        if out.iter().any(|(other, _)| *other == key) {
            return Err(Fallback); // a dedotted key meets another key: Python's dict keeps the last
        }
        out.push((key, O::Ref(v)));
    }
    Ok(Some(O::Obj(out)))
}

// ---- the document ---------------------------------------------------------------------------

/// Normalize one parsed Event. `ingested` (ingest time) is stamped as `event.ingested`.
///
/// `envelope`: the facts an AKS/EKS envelope attached (``envelopes.split_envelope``), in order:
/// `cluster` names the cluster, `provider` becomes `cloud.provider`, the rest `kaudit.envelope.*`.
pub fn normalize(
    cfg: &Config,
    event: &V<'_>,
    line_len: usize,
    ingested: Option<&str>,
    envelope: Option<&[(String, String)]>,
) -> R<Outcome> {
    let pairs = match event {
        V::Obj(pairs, _) => pairs,
        _ => return Err(Fallback),
    };
    // decode(): a native Event, as envelopes.decode would accept it unchanged
    match pairs.iter().find(|(k, _)| k == "kind") {
        Some((_, V::Str(k))) if k == "Event" => {}
        None if cfg.event_markers.iter().any(|m| event.has(m)) => {}
        _ => return Err(Fallback),
    }
    if let Some(api) = event.get("apiVersion") {
        match api {
            V::Str(s) if s.starts_with("audit.k8s.io/") => {}
            _ => return Err(Fallback),
        }
    }
    if event.has(&cfg.envelope_key) {
        return Err(Fallback);
    }
    // top-level JSON types (fieldspec.RAW_TYPES); a mismatch is the Python path's error to name
    for key in ["level", "auditID"] {
        str_or_none(event.get(key))?;
    }
    let stage = str_or_none(event.get("stage"))?;
    let uri = str_or_none(event.get("requestURI"))?;
    let verb = str_or_none(event.get("verb"))?;
    let user_agent = str_or_none(event.get("userAgent"))?;
    let user = obj_or_none(event.get("user"))?;
    let imp = obj_or_none(event.get("impersonatedUser"))?;
    let ips = match event.get("sourceIPs") {
        None => None,
        Some(V::Arr(items, _)) => Some(items),
        Some(_) => return Err(Fallback),
    };
    let oref = obj_or_none(event.get("objectRef"))?;
    let status = obj_or_none(event.get("responseStatus"))?;
    let annotations = obj_or_none(event.get("annotations"))?;
    let received = str_or_none(event.get("requestReceivedTimestamp"))?;
    let stage_ts = str_or_none(event.get("stageTimestamp"))?;
    let legacy_ts = str_or_none(event.get("timestamp"))?;
    let request = event.get("requestObject");
    let response = event.get("responseObject");
    if let Some(s) = stage {
        if !contains(&cfg.stages, s) {
            return Ok(Outcome::Skip);
        }
    }

    // kubernetes.audit: the event, with dedotted maps and edited bodies at their own positions
    let mut replaced: Vec<(&str, O)> = Vec::new();
    let mut annotations_out: Option<O> = None;
    if let Some(a) = annotations {
        if let Some(d) = dedot(a)? {
            annotations_out = Some(d);
        }
    }
    for (name, obj) in [("user", user), ("impersonatedUser", imp)] {
        let Some(o @ V::Obj(fields, _)) = obj else { continue };
        if let Some(extra @ V::Obj(_, _)) = o.get("extra") {
            if let Some(d) = place_dots(extra)? {
                let mut d = Some(d);
                let copy = fields
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_ref()), if k == "extra" { d.take().unwrap_or(O::Ref(v)) } else { O::Ref(v) }))
                    .collect::<Vec<_>>();
                replaced.push((name, O::Obj(copy)));
            }
        }
    }
    // the decision annotation, read under its dedotted name
    let decision: Option<&str> = match annotations {
        Some(V::Obj(pairs, _)) => pairs
            .iter()
            .find(|(k, _)| dedotted_eq(k, "authorization_k8s_io/decision"))
            .and_then(|(_, v)| v.as_str()),
        _ => None,
    };

    // @timestamp / event.start
    let (start, start_us): (Option<String>, i64) = if let Some(r) = received {
        let (s, us) = parse_ts(r)?;
        (Some(s), us)
    } else if let Some(s) = stage_ts {
        let (s, us) = parse_ts(s)?;
        (Some(s), us)
    } else if let Some(l) = legacy_ts {
        let (s, us) = parse_ts(l)?;
        (Some(s), us)
    } else {
        match event.get("metadata").and_then(|m| m.get("creationTimestamp")) {
            Some(V::Str(c)) => {
                let (s, us) = parse_ts(c)?;
                (Some(s), us)
            }
            Some(_) => return Err(Fallback),
            None => (None, 0),
        }
    };
    if start.is_none() && ingested.is_some() {
        return Err(Fallback); // ingest stamps the ingest time and a tag: the Python path does that
    }

    let mut doc: Vec<(Cow<str>, O)> = Vec::with_capacity(16);
    let mut ev: Vec<(Cow<str>, O)> = Vec::with_capacity(12);
    ev.push((Cow::Borrowed("kind"), O::S(Cow::Borrowed("event"))));
    ev.push((Cow::Borrowed("module"), O::S(Cow::Borrowed(&cfg.module))));
    ev.push((Cow::Borrowed("dataset"), O::S(Cow::Borrowed(&cfg.dataset))));
    if let Some(v) = verb {
        ev.push((Cow::Borrowed("action"), O::S(Cow::Borrowed(v))));
    }
    // "event" goes in at index 0/1 at the end; remember the slot
    let mut users: Vec<&str> = Vec::new();
    let user_out = user.and_then(|u| identity(u, &mut users));
    let mut user_pos: Option<usize> = None;
    // doc order so far: [@timestamp], event, ecs, then user...
    if let Some(s) = &start {
        doc.push((Cow::Borrowed("@timestamp"), O::S(Cow::Owned(s.clone()))));
    }
    let event_pos = doc.len();
    doc.push((Cow::Borrowed("event"), O::Obj(Vec::new()))); // filled in at the end
    doc.push((Cow::Borrowed("ecs"), O::Obj(vec![(Cow::Borrowed("version"), O::S(Cow::Borrowed(&cfg.ecs_version)))])));
    doc.push((
        Cow::Borrowed("data_stream"),
        O::Obj(vec![
            (Cow::Borrowed("type"), O::S(Cow::Borrowed(&cfg.stream_type))),
            (Cow::Borrowed("dataset"), O::S(Cow::Borrowed(&cfg.dataset))),
            (Cow::Borrowed("namespace"), O::S(Cow::Borrowed(&cfg.namespace))),
        ]),
    ));
    if let Some(out) = user_out {
        user_pos = Some(doc.len());
        doc.push((Cow::Borrowed("user"), O::Obj(out)));
    }
    if let Some(eff) = imp.and_then(|i| identity(i, &mut users)) {
        match user_pos {
            None => doc.push((Cow::Borrowed("user"), O::Obj(vec![(Cow::Borrowed("effective"), O::Obj(eff))]))),
            Some(p) => obj_mut(&mut doc[p].1).push((Cow::Borrowed("effective"), O::Obj(eff))),
        }
    }
    if let Some(ua) = user_agent {
        doc.push((Cow::Borrowed("user_agent"), O::Obj(vec![(Cow::Borrowed("original"), O::S(Cow::Borrowed(ua)))])));
    }
    let code = status.and_then(|s| s.get("code"));
    let code: Option<i64> = match code {
        None => None,
        Some(V::Int(c)) => Some(*c),
        Some(_) => return Err(Fallback), // wrong type: NormalizeError on the Python path
    };
    if let Some(c) = code {
        doc.push((
            Cow::Borrowed("http"),
            O::Obj(vec![(Cow::Borrowed("response"), O::Obj(vec![(Cow::Borrowed("status_code"), O::I(c))]))]),
        ));
    }
    let mut url_pos = None;
    if let Some(u) = uri {
        url_pos = Some(doc.len());
        doc.push((Cow::Borrowed("url"), O::Obj(vec![(Cow::Borrowed("original"), O::S(Cow::Borrowed(u)))])));
    }
    let mut orch_pos = None;
    let (mut resource, mut sub): (Option<&str>, Option<&str>) = (None, None);
    if let Some(r) = oref {
        resource = str_or_none(r.get("resource"))?; // a non-string would make Python's set lookups raise
        sub = str_or_none(r.get("subresource"))?;
        let namespace = r.get("namespace");
        let obj_name = r.get("name");
        if namespace.is_some() || resource.is_some() || obj_name.is_some() {
            let mut orch = Vec::new();
            if let Some(n) = namespace {
                orch.push((Cow::Borrowed("namespace"), O::Ref(n)));
            }
            if let Some(res) = resource {
                let mut rv = vec![(Cow::Borrowed("type"), O::S(Cow::Borrowed(res)))];
                if let Some(n) = obj_name {
                    rv.push((Cow::Borrowed("name"), O::Ref(n)));
                }
                orch.push((Cow::Borrowed("resource"), O::Obj(rv)));
            } else if let Some(n) = obj_name {
                orch.push((Cow::Borrowed("resource"), O::Obj(vec![(Cow::Borrowed("name"), O::Ref(n))])));
            }
            orch_pos = Some(doc.len());
            doc.push((Cow::Borrowed("orchestrator"), O::Obj(orch)));
        }
    }

    // event.start / end / duration
    if let Some(s) = &start {
        ev.push((Cow::Borrowed("start"), O::S(Cow::Owned(s.clone()))));
    }
    if let Some(st) = stage_ts {
        if received.is_some() {
            let (end, end_us) = parse_ts(st)?;
            ev.push((Cow::Borrowed("end"), O::S(Cow::Owned(end))));
            // over 292 years apart: NormalizeError on the Python path
            let duration = (end_us - start_us).checked_mul(1000).ok_or(Fallback)?;
            ev.push((Cow::Borrowed("duration"), O::I(duration)));
        } else if let Some(s) = &start {
            ev.push((Cow::Borrowed("end"), O::S(Cow::Owned(s.clone()))));
        }
    }

    // event.category / type / outcome
    let verb_type = |v: Option<&str>| -> &str {
        v.and_then(|v| cfg.verb_types.iter().find(|(k, _)| k == v)).map(|(_, t)| t.as_str()).unwrap_or("info")
    };
    let (category, mut types): (&str, Vec<&str>) = if sub.map(|s| contains(&cfg.exec_subresources, s)).unwrap_or(false) {
        ("process", vec!["start"])
    } else if resource.map(|r| contains(&cfg.iam_resources, r)).unwrap_or(false) {
        ("iam", vec![verb_type(verb)])
    } else if verb.map(|v| contains(&cfg.write_verbs, v)).unwrap_or(false) {
        ("configuration", vec![verb_type(verb)])
    } else {
        ("api", vec![verb_type(verb)])
    };
    let outcome: Option<&str> = if decision == Some("forbid") {
        types.push("denied");
        Some("failure")
    } else {
        if code == Some(401) || code == Some(403) {
            types.push("denied");
        } else if decision == Some("allow") {
            types.push("allowed");
        }
        match code {
            Some(c) => Some(if c >= 400 { "failure" } else { "success" }),
            None if decision == Some("allow") => Some("success"),
            None => None,
        }
    };
    ev.push((Cow::Borrowed("category"), O::Arr(vec![O::S(Cow::Borrowed(category))])));
    ev.push((Cow::Borrowed("type"), O::Arr(types.into_iter().map(|t| O::S(Cow::Borrowed(t))).collect())));
    if let Some(o) = outcome {
        ev.push((Cow::Borrowed("outcome"), O::S(Cow::Borrowed(o))));
    }

    // source.ip / related.ip / related.user
    let mut related_pos = None;
    if let Some(ips) = ips {
        let mut valid: Vec<&str> = Vec::new();
        for ip in ips.iter() {
            if let V::Str(s) = ip {
                if is_ip(s)? && !valid.contains(&s.as_ref()) {
                    valid.push(s);
                }
            }
        }
        if let Some(first) = valid.first() {
            doc.push((Cow::Borrowed("source"), O::Obj(vec![(Cow::Borrowed("ip"), O::S(Cow::Borrowed(first)))])));
            related_pos = Some(doc.len());
            let arr = O::Arr(valid.iter().map(|s| O::S(Cow::Borrowed(*s))).collect());
            doc.push((Cow::Borrowed("related"), O::Obj(vec![(Cow::Borrowed("ip"), arr)])));
        }
    }
    if !users.is_empty() {
        let arr = O::Arr(users.iter().map(|s| O::S(Cow::Borrowed(*s))).collect());
        match related_pos {
            None => doc.push((Cow::Borrowed("related"), O::Obj(vec![(Cow::Borrowed("user"), arr)]))),
            Some(p) => obj_mut(&mut doc[p].1).push((Cow::Borrowed("user"), arr)),
        }
    }

    // url.path / url.query
    if let (Some(u), Some(p)) = (uri, url_pos) {
        if !u.is_empty() {
            let (path, query) = u.split_once('?').unwrap_or((u, ""));
            let url = obj_mut(&mut doc[p].1);
            url.push((Cow::Borrowed("path"), O::S(Cow::Borrowed(path))));
            if !query.is_empty() {
                url.push((Cow::Borrowed("query"), O::S(Cow::Borrowed(query))));
            }
        }
    }

    // orchestrator.*
    let op = match orch_pos {
        Some(p) => p,
        None => {
            doc.push((Cow::Borrowed("orchestrator"), O::Obj(Vec::new())));
            doc.len() - 1
        }
    };
    {
        let orch = obj_mut(&mut doc[op].1);
        orch.push((Cow::Borrowed("type"), O::S(Cow::Borrowed("kubernetes"))));
        let cluster = envelope
            .and_then(|env| env.iter().find(|(k, v)| k == "cluster" && !v.is_empty()))
            .map(|(_, v)| v.as_str())
            .unwrap_or(&cfg.cluster);
        orch.push((Cow::Borrowed("cluster"), O::Obj(vec![(Cow::Borrowed("name"), O::S(Cow::Borrowed(cluster)))])));
        if let Some(r) = oref {
            let api = r.get("apiVersion");
            if api.map(V::truthy).unwrap_or(false) {
                let api = api.and_then(V::as_str).ok_or(Fallback)?;
                let value = match r.get("apiGroup") {
                    Some(g) if g.truthy() => format!("{}/{}", g.as_str().ok_or(Fallback)?, api),
                    _ => api.to_string(),
                };
                orch.push((Cow::Borrowed("api_version"), O::S(Cow::Owned(value))));
            }
        }
    }

    // kaudit.* and bodies
    let mut kaudit: Vec<(Cow<str>, O)> = Vec::new();
    if let Some(u) = uri {
        if !u.is_empty() && sub.map(|s| contains(&cfg.exec_subresources, s)).unwrap_or(false) {
            if let Some(e) = exec_fields(u)? {
                kaudit.push((Cow::Borrowed("exec"), e));
            }
        }
    }
    if request.is_some() || response.is_some() {
        let bodies: Vec<&V> = [request, response].into_iter().flatten().filter(|b| b.is_obj()).collect();
        if !bodies.is_empty() {
            if let Some(pod) = pod_fields(cfg, &bodies)? {
                kaudit.push((Cow::Borrowed("pod"), pod));
            }
            if let Some(rbac) = rbac_fields(&bodies)? {
                kaudit.push((Cow::Borrowed("rbac"), rbac));
            }
            if resource.map(|r| contains(&cfg.service_resources, r)).unwrap_or(false) {
                for body in &bodies {
                    if let Some(V::Str(t)) = body.get("spec").and_then(|s| s.get("type")) {
                        kaudit.push((
                            Cow::Borrowed("service"),
                            O::Obj(vec![(Cow::Borrowed("type"), O::S(Cow::Borrowed(t.as_ref())))]),
                        ));
                        break;
                    }
                }
            }
        }
        let limit = cfg.max_value_bytes.min(cfg.max_body_bytes);
        let mut copies: Vec<(Cow<str>, O)> = Vec::new();
        for ((key, raw), copy) in [("requestObject", request), ("responseObject", response)].into_iter().zip(cfg.body_copies.iter()) {
            let raw = match raw {
                Some(r) => r,
                None => continue,
            };
            // a typed path whose value its mapping cannot take: Python removes it and records it
            if let Some(tree) = cfg.body_shapes.get(if key == "requestObject" { 0 } else { 1 }) {
                if !body_fits(raw, tree, &cfg.shape_rules) {
                    return Err(Fallback);
                }
            }
            let body: Option<O> = match raw {
                V::Obj(fields, _) => match raw.get("metadata") {
                    Some(meta @ V::Obj(mf, _)) if meta.has("managedFields") => {
                        let meta_copy = O::Obj(mf.iter().filter(|(k, _)| k != "managedFields").map(|(k, v)| (Cow::Borrowed(k.as_ref()), O::Ref(v))).collect());
                        let mut copy: Vec<(Cow<str>, O)> = Vec::with_capacity(fields.len());
                        let mut meta_copy = Some(meta_copy);
                        for (k, v) in fields {
                            if k == "metadata" {
                                copy.push((Cow::Borrowed(k.as_ref()), meta_copy.take().unwrap()));
                            } else {
                                copy.push((Cow::Borrowed(k.as_ref()), O::Ref(v)));
                            }
                        }
                        Some(O::Obj(copy))
                    }
                    _ => None,
                },
                V::Arr(_, _) => Some(O::Obj(vec![(Cow::Borrowed("json_patch"), O::Ref(raw))])),
                _ => Some(O::Obj(vec![(Cow::Borrowed("value"), O::Ref(raw))])),
            };
            // A body's compact form is never longer than its text in the line (no floats here,
            // escapes only shrink), so short lines need no measuring.
            if line_len + 16 > limit {
                let mut buf = Vec::new();
                match &body {
                    Some(b) => write(&mut buf, b),
                    None => write_value(&mut buf, raw),
                }
                if buf.len() > limit {
                    return Err(Fallback); // truncation is the Python path's job
                }
                copies.push((Cow::Borrowed(copy.as_str()), O::Json(buf.clone())));
                replaced.push((key, O::Json(buf)));
            } else if let Some(b) = body {
                // kaudit.body.<copy>: the same body, flattened for kaudit's own searches
                copies.push((Cow::Borrowed(copy.as_str()), b.clone()));
                replaced.push((key, b));
            } else {
                copies.push((Cow::Borrowed(copy.as_str()), O::Ref(raw)));
            }
        }
        if !copies.is_empty() {
            kaudit.push((Cow::Borrowed("body"), O::Obj(copies)));
        }
    }
    if let Some(env) = envelope.filter(|e| !e.is_empty()) {
        if let Some((_, provider)) = env.iter().find(|(k, _)| k == "provider") {
            if !provider.is_empty() {
                doc.push((Cow::Borrowed("cloud"), O::Obj(vec![(Cow::Borrowed("provider"), O::S(Cow::Borrowed(provider)))])));
            }
        }
        let facts: Vec<(Cow<str>, O)> = env
            .iter()
            .filter(|(k, _)| k != "provider" && k != "cluster")
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), O::S(Cow::Borrowed(v.as_str()))))
            .collect();
        if !facts.is_empty() {
            kaudit.push((Cow::Borrowed("envelope"), O::Obj(facts)));
        }
    }
    if !kaudit.is_empty() {
        doc.push((Cow::Borrowed("kaudit"), O::Obj(kaudit)));
    }
    if cfg.keep_original {
        let mut buf = Vec::new();
        write_value(&mut buf, event);
        ev.push((Cow::Borrowed("original"), O::S(Cow::Owned(String::from_utf8(buf).map_err(|_| Fallback)?))));
    }
    if let Some(i) = ingested {
        ev.push((Cow::Borrowed("ingested"), O::S(Cow::Borrowed(i))));
    }
    doc[event_pos].1 = O::Obj(ev);

    let mut audit: Vec<(Cow<str>, O)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let key: &str = k;
        if key == "annotations" {
            if let Some(a) = annotations_out.take() {
                audit.push((Cow::Borrowed(key), a));
                continue;
            }
        }
        if let Some(pos) = replaced.iter().position(|(name, _)| *name == key) {
            let (_, o) = replaced.swap_remove(pos);
            audit.push((Cow::Borrowed(key), o));
            continue;
        }
        audit.push((Cow::Borrowed(key), O::Ref(v)));
    }
    doc.push((Cow::Borrowed("kubernetes"), O::Obj(vec![(Cow::Borrowed("audit"), O::Obj(audit))])));

    let mut source = Vec::with_capacity(line_len + 1024);
    write(&mut source, &O::Obj(doc));

    // The id needs a non-empty auditID and a string (or absent) stage; otherwise it is a digest
    // of the whole event, which the Python path computes.
    let id = match event.get("auditID") {
        Some(V::Str(a)) if !(a.is_empty() || (event.has("stage") && stage.is_none())) => {
            Some(doc_id(&cfg.cluster, a, stage.unwrap_or("")))
        }
        _ => None,
    };
    Ok(Outcome::Doc { id, timestamp: start, source })
}

/// blake2b-128 of `cluster \x1f auditID \x1f stage`, hex (the same as `normalize.doc_id`).
pub fn doc_id(cluster: &str, audit_id: &str, stage: &str) -> String {
    let mut h = Blake2bVar::new(16).expect("16 is a valid blake2b size");
    h.update(cluster.as_bytes());
    h.update(b"\x1f");
    h.update(audit_id.as_bytes());
    h.update(b"\x1f");
    h.update(stage.as_bytes());
    let mut out = [0u8; 16];
    h.finalize_variable(&mut out).expect("buffer has the digest size");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(32);
    for b in out {
        text.push(HEX[(b >> 4) as usize] as char);
        text.push(HEX[(b & 0xf) as usize] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake2b_matches_hashlib() {
        // hashlib.blake2b(b"c\x1fa\x1fResponseComplete", digest_size=16).hexdigest()
        assert_eq!(doc_id("c", "a", "ResponseComplete").len(), 32);
    }
}
