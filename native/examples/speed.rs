//! cargo run --release --example speed --no-default-features -- FILE.jsonl
use kaudit_elk_native::{bodyshape, json, normalize};
use std::time::Instant;

const SHAPE: &str = r#"{"kind":"object","keys":{"spec":{"kind":"object","keys":{"type":{"kind":"scalar"},"hostNetwork":{"kind":"boolean"},"containers":{"kind":"object","keys":{"image":{"kind":"scalar"},"securityContext":{"kind":"object","keys":{"privileged":{"kind":"boolean"},"runAsUser":{"kind":"integer"}}}}}}},"rules":{"kind":"object","keys":{"verbs":{"kind":"scalar"}}}}}"#;

fn s(v: &[&str]) -> Vec<String> { v.iter().map(|x| x.to_string()).collect() }

fn main() {
    let path = std::env::args().nth(1).expect("a JSON lines file");
    let text = std::fs::read(path).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let cfg = normalize::Config {
        cluster: "default".into(), namespace: "kaudit".into(), stream_type: "logs".into(), stages: s(&["Panic", "ResponseComplete", "ResponseStarted"]), keep_original: false,
        max_body_bytes: 65536, max_value_bytes: 8192, ecs_version: "8.11.0".into(), module: "kubernetes".into(),
        dataset: "kubernetes.audit_logs".into(), envelope_key: "_kaudit_envelope".into(),
        event_markers: s(&["auditID", "verb", "requestURI", "stage", "level", "objectRef", "requestReceivedTimestamp"]),
        exec_subresources: s(&["attach", "exec"]), iam_resources: s(&["clusterroles", "roles", "serviceaccounts"]),
        write_verbs: s(&["create", "delete", "patch", "update"]), verb_types: vec![("create".into(), "creation".into())],
        service_resources: s(&["services"]), pod_markers: s(&["containers", "initContainers", "ephemeralContainers", "volumes", "hostNetwork", "hostPID", "hostIPC"]),
        body_copies: s(&["request", "response"]),
        // a part of fieldspec.BODY_SHAPES (the package passes the whole trees from fastpath.native_spec)
        body_shapes: (0..2).map(|_| bodyshape::Shape::from_json(&json::parse(SHAPE.as_bytes()).unwrap()).unwrap()).collect(),
        shape_rules: bodyshape::Rules { low: -(1 << 31), high: (1 << 31) - 1, blanks: " \t\n\r".chars().collect() },
    };
    let n = 100_000;
    let (mut tp, mut tn) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..n { std::hint::black_box(json::parse(lines[i % lines.len()]).unwrap()); }
        tp = tp.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for i in 0..n {
            let l = lines[i % lines.len()];
            let v = json::parse(l).unwrap();
            std::hint::black_box(normalize::normalize(&cfg, &v, l.len(), Some("2026-01-01T00:00:00.000Z"), None).ok());
        }
        tn = tn.min(t.elapsed().as_secs_f64());
    }
    println!("parse {:.2}us  parse+normalize+write {:.2}us", tp / n as f64 * 1e6, tn / n as f64 * 1e6);
}
