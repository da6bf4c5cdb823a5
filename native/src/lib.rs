//! kaudit_elk_native: the optional native fast path of `kaudit_elk.normalize`.
//!
//! `Normalizer(...).line(text, ingested)` turns one JSON line holding one audit Event into its
//! index document, byte for byte what `orjson.dumps(normalize(orjson.loads(text)))` gives (plus
//! `event.ingested` when given). It returns None for anything it does not reproduce exactly
//! (envelopes, wrong types, floats, oversized bodies, odd timestamps, ...): the caller then
//! takes the Python path, which stays the reference and the one place errors are worded.

mod fields;
pub mod json;
pub mod normalize;
mod timestamp;

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
    #[new]
    #[pyo3(signature = (*, cluster, namespace, stream_type, stages, keep_original, max_body_bytes, max_value_bytes, ecs_version, module,
                        dataset, envelope_key, event_markers, exec_subresources, iam_resources, write_verbs,
                        verb_types, service_resources, pod_markers))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cluster: String,
        namespace: String,
        stream_type: String,
        stages: Vec<String>,
        keep_original: bool,
        max_body_bytes: usize,
        max_value_bytes: usize,
        ecs_version: String,
        module: String,
        dataset: String,
        envelope_key: String,
        event_markers: Vec<String>,
        exec_subresources: Vec<String>,
        iam_resources: Vec<String>,
        write_verbs: Vec<String>,
        verb_types: Vec<(String, String)>,
        service_resources: Vec<String>,
        pod_markers: Vec<String>,
    ) -> Self {
        Normalizer {
            cfg: Config {
                cluster,
                namespace,
                stream_type,
                stages,
                keep_original,
                max_body_bytes,
                max_value_bytes,
                ecs_version,
                module,
                dataset,
                envelope_key,
                event_markers,
                exec_subresources,
                iam_resources,
                write_verbs,
                verb_types,
                service_resources,
                pod_markers,
            },
        }
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
