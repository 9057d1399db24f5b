//! Drives the real packaging tools for the packaging tests: Helm v4's own
//! engine (helm-python-sdk), Helm's lint, Kubernetes' official schemas
//! (kubernetes-validate) and `kubectl kustomize`, through
//! `tools/pkgtool.py` in the project's Python environment (`make pyenv`).
//! Nothing here renders a template itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml::Value;

/// The Kubernetes versions every rendered object must validate against.
pub const KUBE_VERSIONS: [&str; 5] = ["1.29", "1.30", "1.31", "1.32", "1.33"];

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with the packaging tools: `$NETPROBE_PYTHON`, else the
/// `.venv` that `make pyenv` creates. `None` when neither exists.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETPROBE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = root().join(".venv/bin/python3");
    venv.exists().then_some(venv)
}

/// A tool run's outcome: success, and stdout and stderr together.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub report: String,
}

/// Run `pkgtool.py` with `args`, feeding `stdin`.
pub fn pkgtool(python: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(python)
        .arg(root().join("tests/packaging/tools/pkgtool.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes()).expect("write pkgtool stdin");
    }
    let out = child.wait_with_output().expect("pkgtool");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        ok: out.status.success(),
        report: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        stdout,
    }
}

/// Every object Helm renders for the chart with `values` (JSON), crds/ included.
pub fn helm_render(python: &Path, values: &serde_json::Value, namespace: &str) -> Vec<Value> {
    let chart = root().join("charts/netprobe");
    let run = pkgtool(
        python,
        &[
            "render",
            &chart.display().to_string(),
            "--values",
            &values.to_string(),
            "--namespace",
            namespace,
        ],
        "",
    );
    assert!(run.ok, "helm render failed:\n{}", run.report);
    let items: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).expect("render output is JSON");
    items
        .into_iter()
        .map(|i| serde_json::from_value(i["object"].clone()).expect("object"))
        .collect()
}

/// Helm's lint, strict, for `values`.
pub fn helm_lint(python: &Path, values: &serde_json::Value) -> Run {
    let chart = root().join("charts/netprobe");
    pkgtool(
        python,
        &["lint", &chart.display().to_string(), "--values", &values.to_string()],
        "",
    )
}

/// The CRD files custom resources are validated against: netprobe's own and
/// the pinned Prometheus Operator release's (tests/packaging/testdata/crds).
pub fn crd_files() -> Vec<PathBuf> {
    let mut files = vec![
        root().join("crds/networkprobes.netprobe.dev.yaml"),
        root().join("crds/clusternetworkprobes.netprobe.dev.yaml"),
    ];
    let mut pinned: Vec<PathBuf> = std::fs::read_dir(root().join("tests/packaging/testdata/crds"))
        .expect("testdata/crds")
        .flatten()
        .map(|e| e.path())
        .collect();
    pinned.sort();
    files.extend(pinned);
    files
}

/// Validate `objects` strictly against Kubernetes 1.29–1.33 and the CRDs.
pub fn validate(python: &Path, objects: &[Value]) -> Run {
    let mut stream = String::new();
    for o in objects {
        stream.push_str("---\n");
        stream.push_str(&serde_yaml::to_string(o).expect("serialize object"));
    }
    validate_text(python, &stream)
}

/// Validate a YAML stream as written (numbers keep their spelling).
pub fn validate_text(python: &Path, stream: &str) -> Run {
    let mut args: Vec<String> = vec!["validate".into()];
    for v in KUBE_VERSIONS {
        args.push("--kube-version".into());
        args.push(v.into());
    }
    for c in crd_files() {
        args.push("--crd".into());
        args.push(c.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pkgtool(python, &args, stream)
}

/// Non-empty documents of a multi-document YAML stream.
pub fn parse_docs(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// `kubectl kustomize config/default`, parsed.
pub fn kustomize() -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", &root().join("config/default").display().to_string()])
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_docs(&String::from_utf8_lossy(&out.stdout)).expect("kustomize output parses")
}

/// The path of the first difference between two documents, with both
/// values. Numbers compare as written: `1e+06` is not `1000000`.
pub fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            // Each key once: a key of both compared from x's side only
            // (visiting it from both sides doubled the work at every level,
            // 2^depth: this comparison took four minutes).
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = format!("{path}.{}", k.as_str().unwrap_or("?"));
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => {
                        if let Some(d) = first_difference(va, vb, p) {
                            return Some(d);
                        }
                    }
                    (va, vb) => return Some(format!("{p}: chart {va:?} vs kustomize {vb:?}")),
                }
            }
            None
        }
        (Value::Sequence(x), Value::Sequence(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(va, vb, format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => {
            let short = |v: &Value| format!("{v:?}").chars().take(120).collect::<String>();
            Some(format!("{path}: chart {} vs kustomize {}", short(a), short(b)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test document")
    }

    #[test]
    fn differences_are_found_on_either_side_and_deep() {
        let a = doc("spec: {template: {containers: [{name: a, args: [x]}]}}");
        assert_eq!(first_difference(&a, &a, String::new()), None);
        let deeper = doc("spec: {template: {containers: [{name: a, args: [y]}]}}");
        let d = first_difference(&a, &deeper, String::new()).unwrap_or_default();
        assert!(d.starts_with(".spec.template.containers[0].args[0]:"), "{d}");
        // A key only the second document has.
        let more = doc("spec: {template: {containers: [{name: a, args: [x], ports: []}]}}");
        let d = first_difference(&a, &more, String::new()).unwrap_or_default();
        assert!(d.starts_with(".spec.template.containers[0].ports: chart None"), "{d}");
        let d = first_difference(&more, &a, String::new()).unwrap_or_default();
        assert!(d.ends_with("vs kustomize None"), "{d}");
    }
}
