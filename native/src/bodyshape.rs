//! Does a body fit the shapes of its typed paths (`fieldspec.BODY_SHAPES`)? The same walk as
//! `kaudit_elk/events/bodyshape.py`, answering only yes or no: a body that does not fit declines the
//! line (`Fallback`), and the Python path removes what does not fit and records it.

use crate::json::V;

/// What a typed body path can hold (fieldspec's comment on BODY_SHAPES says why).
#[derive(Debug)]
pub enum Shape {
    Object(Vec<(String, Shape)>),
    Flat,
    Scalar,
    Boolean,
    Integer,
}

/// Parameters of the check, from the field spec.
pub struct Rules {
    pub low: i64,
    pub high: i64,
    pub blanks: Vec<char>,
}

impl Shape {
    /// Build a shape tree from its JSON form (`{"kind": "object", "keys": {...}}`, leaves `{"kind": ...}`).
    pub fn from_json(v: &V<'_>) -> Result<Shape, String> {
        let kind = v.get("kind").and_then(V::as_str).ok_or("body shape without a kind")?;
        Ok(match kind {
            "object" => match v.get("keys") {
                Some(V::Obj(pairs, _)) => {
                    Shape::Object(pairs.iter().map(|(k, n)| Ok((k.to_string(), Shape::from_json(n)?))).collect::<Result<_, String>>()?)
                }
                _ => return Err("object shape without keys".into()),
            },
            "flat" => Shape::Flat,
            "scalar" => Shape::Scalar,
            "boolean" => Shape::Boolean,
            "integer" => Shape::Integer,
            other => return Err(format!("unknown body shape {other}")),
        })
    }
}

/// True when every typed path of `body` (an object) fits `tree` (an object shape).
pub fn body_fits(body: &V<'_>, tree: &Shape, rules: &Rules) -> bool {
    match (body, tree) {
        (V::Obj(pairs, _), Shape::Object(keys)) => object_fits(pairs, keys, rules),
        _ => true,
    }
}

fn unplaceable(key: &str, rules: &Rules) -> bool {
    key.split('.').any(|step| step.chars().all(|c| rules.blanks.contains(&c)))
}

fn find<'s>(keys: &'s [(String, Shape)], step: &str) -> Option<&'s Shape> {
    keys.iter().find(|(k, _)| k == step).map(|(_, s)| s)
}

fn object_fits(pairs: &[(std::borrow::Cow<'_, str>, V<'_>)], keys: &[(String, Shape)], rules: &Rules) -> bool {
    for (key, value) in pairs {
        // plain ASCII keys (the rule) are one byte scan; a dot, space, control or non-ASCII byte takes the
        // precise check
        let odd = key.is_empty() || key.bytes().any(|b| b == b'.' || b <= b' ' || b >= 0x80);
        let node = if !odd {
            find(keys, key)
        } else {
            if unplaceable(key, rules) {
                return false;
            }
            let mut level = Some(keys);
            let mut node = None;
            let steps: Vec<&str> = key.split('.').collect();
            for (i, step) in steps.iter().enumerate() {
                node = level.and_then(|l| find(l, step));
                match node {
                    None => break,
                    Some(Shape::Object(inner)) => level = Some(inner),
                    Some(_) if i < steps.len() - 1 => return false, // through a typed leaf
                    Some(_) => level = None,
                }
            }
            node
        };
        if let Some(shape) = node {
            if !value_fits(value, shape, rules) {
                return false;
            }
        }
    }
    true
}

fn value_fits(value: &V<'_>, shape: &Shape, rules: &Rules) -> bool {
    if let V::Null = value {
        return true;
    }
    if let V::Arr(items, _) = value {
        return items.iter().all(|item| value_fits(item, shape, rules));
    }
    match shape {
        Shape::Object(keys) => match value {
            V::Obj(pairs, _) => object_fits(pairs, keys, rules),
            _ => false,
        },
        Shape::Flat => value.is_obj(),
        Shape::Scalar => !value.is_obj(),
        Shape::Boolean => matches!(value, V::Bool(_)),
        Shape::Integer => match value {
            V::Int(i) => rules.low <= *i && *i <= rules.high,
            _ => false,
        },
    }
}
