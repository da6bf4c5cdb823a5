//! kaudit_elk_native: the optional native fast path of `kaudit_elk.normalize`.
//!
//! `Normalizer(...).line(text, ingested)` turns one JSON line holding one audit Event into its
//! index document, byte for byte what `orjson.dumps(normalize(orjson.loads(text)))` gives (plus
//! `event.ingested` when given). It returns None for anything it does not reproduce exactly
//! (envelopes, wrong types, floats, oversized bodies, odd timestamps, ...): the caller then
//! takes the Python path, which stays the reference and the one place errors are worded.

pub mod bodyshape;
mod fields;
pub mod json;
pub mod normalize;
mod podfields;
mod timestamp;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

// Many small, short-lived allocations per line: mimalloc is markedly faster than glibc here.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pyo3::types::{PyBytes, PyTuple};

use normalize::{Config, Outcome};

#[pyclass(frozen, module = "kaudit_elk_native")]
struct Normalizer {
    cfg: Config,
}

#[pymethods]
impl Normalizer {
    /// `spec`: the field-spec tables as one JSON object (built by `kaudit_elk.events.fastpath` from
    /// `kaudit_elk.events.fieldspec`); the keyword arguments are the `NormalizeOptions`.
    #[new]
    #[pyo3(signature = (spec, *, cluster, namespace, stages, keep_original, max_body_bytes, max_value_bytes))]
    fn new(
        spec: &str,
        cluster: String,
        namespace: String,
        stages: Vec<String>,
        keep_original: bool,
        max_body_bytes: usize,
        max_value_bytes: usize,
    ) -> PyResult<Self> {
        let tables = json::parse(spec.as_bytes()).map_err(|_| PyValueError::new_err("spec is not a JSON object"))?;
        let text = |key: &str| -> PyResult<String> {
            tables.get(key).and_then(json::V::as_str).map(str::to_string)
                .ok_or_else(|| PyValueError::new_err(format!("spec: {key} must be a string")))
        };
        let list = |key: &str| -> PyResult<Vec<String>> {
            match tables.get(key) {
                Some(json::V::Arr(items, _)) => items.iter()
                    .map(|v| v.as_str().map(str::to_string)
                        .ok_or_else(|| PyValueError::new_err(format!("spec: {key} must hold strings"))))
                    .collect(),
                _ => Err(PyValueError::new_err(format!("spec: {key} must be a list"))),
            }
        };
        let verb_types = match tables.get("verb_types") {
            Some(json::V::Obj(pairs, _)) => pairs.iter()
                .map(|(k, v)| v.as_str().map(|t| (k.to_string(), t.to_string()))
                    .ok_or_else(|| PyValueError::new_err("spec: verb_types values must be strings")))
                .collect::<PyResult<Vec<_>>>()?,
            _ => return Err(PyValueError::new_err("spec: verb_types must be an object")),
        };
        let shapes = match tables.get("body_shapes") {
            Some(json::V::Arr(items, _)) => items.iter().map(bodyshape::Shape::from_json).collect::<Result<Vec<_>, String>>()
                .map_err(|e| PyValueError::new_err(format!("spec: body_shapes: {e}")))?,
            _ => return Err(PyValueError::new_err("spec: body_shapes must be a list")),
        };
        let int = |key: &str| -> PyResult<i64> {
            match tables.get(key) {
                Some(json::V::Int(i)) => Ok(*i),
                _ => Err(PyValueError::new_err(format!("spec: {key} must be an integer"))),
            }
        };
        let shape_rules = bodyshape::Rules {
            low: int("body_integer_low")?,
            high: int("body_integer_high")?,
            blanks: text("blank_key_chars")?.chars().collect(),
        };
        Ok(Normalizer {
            cfg: Config {
                cluster,
                namespace,
                stream_type: text("stream_type")?,
                stages,
                keep_original,
                max_body_bytes,
                max_value_bytes,
                ecs_version: text("ecs_version")?,
                module: text("module")?,
                dataset: text("dataset")?,
                envelope_key: text("envelope_key")?,
                event_markers: list("event_markers")?,
                exec_subresources: list("exec_subresources")?,
                iam_resources: list("iam_resources")?,
                write_verbs: list("write_verbs")?,
                verb_types,
                service_resources: list("service_resources")?,
                pod_markers: list("pod_markers")?,
                body_copies: list("body_copies")?,
                body_shapes: shapes,
                shape_rules,
            },
        })
    }

    /// None: use the Python path; (): the stage is filtered out; else (doc_id or None, @timestamp, doc bytes).
    /// `envelope`: (key, value) facts of an AKS/EKS envelope whose event `text` is.
    #[pyo3(signature = (text, ingested=None, envelope=None))]
    fn line(&self, py: Python<'_>, text: &[u8], ingested: Option<&str>, envelope: Option<Vec<(String, String)>>) -> PyObject {
        let cfg = &self.cfg;
        let result = py.allow_threads(|| {
            let event = json::parse(text).ok()?;
            normalize::normalize(cfg, &event, text.len(), ingested, envelope.as_deref()).ok()
        });
        match result {
            None => py.None(),
            Some(Outcome::Skip) => PyTuple::empty_bound(py).into_py(py),
            Some(Outcome::Doc { id, timestamp, source }) => {
                (id, timestamp, PyBytes::new_bound(py, &source)).into_py(py)
            }
        }
    }

    /// doc_id(cluster, audit_id, stage), as `kaudit_elk.normalize.doc_id` computes it.
    #[staticmethod]
    fn doc_id(cluster: &str, audit_id: &str, stage: &str) -> String {
        normalize::doc_id(cluster, audit_id, stage)
    }
}

#[pymodule]
fn kaudit_elk_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Normalizer>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
