//! The install paths: `kubectl kustomize config/default` renders with the
//! real kubectl and holds what production needs; the Helm chart's defaults
//! render the same objects; alerts pass promtool; the dashboard only uses
//! metrics netprobe exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use netprobe_packaging_tests::{parse_docs, render_chart};
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kustomize() -> Option<Vec<Value>> {
    if !netprobe_testutil::can_run(
        "kustomize render",
        if netprobe_testutil::have("kubectl") {
            &[]
        } else {
            &["kubectl"]
        },
    ) {
        return None;
    }
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", &root().join("config/default").display().to_string()])
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(parse_docs(&String::from_utf8_lossy(&out.stdout)).expect("kustomize output parses"))
}

fn by_key(docs: &[Value]) -> BTreeMap<(String, String), Value> {
    docs.iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap_or_default().to_string();
            let name = d["metadata"]["name"].as_str().unwrap_or_default().to_string();
            ((kind, name), d.clone())
        })
        .collect()
}

fn values(overrides: &[(&str, bool)]) -> Value {
    let text = std::fs::read_to_string(root().join("charts/netprobe/values.yaml")).expect("values.yaml");
    let mut v: Value = serde_yaml::from_str(&text).expect("values parse");
    for (path, b) in overrides {
        let mut cur = &mut v;
        for seg in path.split('.') {
            cur = &mut cur[seg];
        }
        *cur = Value::Bool(*b);
    }
    v
}

#[test]
fn kustomize_default_has_what_production_needs() {
    let Some(docs) = kustomize() else { return };
    let objs = by_key(&docs);
    let kinds: Vec<(&str, &str)> = objs.keys().map(|(k, n)| (k.as_str(), n.as_str())).collect();
    for want in [
        ("CustomResourceDefinition", "networkprobes.netprobe.dev"),
        ("CustomResourceDefinition", "clusternetworkprobes.netprobe.dev"),
        ("Namespace", "netprobe-system"),
        ("Deployment", "netprobe-operator"),
        ("DaemonSet", "netprobe-agent"),
        ("PodDisruptionBudget", "netprobe-operator"),
        ("PriorityClass", "netprobe-agent"),
        ("ClusterRole", "netprobe-operator"),
        ("ClusterRole", "netprobe-agent"),
        ("Role", "netprobe-operator"),
        ("Role", "netprobe-agent"),
        ("Service", "netprobe-operator-metrics"),
        ("Service", "netprobe-agent-metrics"),
    ] {
        assert!(kinds.contains(&want), "missing {want:?} in {kinds:?}");
    }
    let op = &objs[&("Deployment".into(), "netprobe-operator".into())];
    assert_eq!(op["spec"]["replicas"], Value::from(2));
    let c = &op["spec"]["template"]["spec"]["containers"][0];
    assert!(c["image"].as_str().unwrap().contains("netprobe-operator"));
    assert!(c["args"].as_sequence().unwrap().iter().any(|a| a == "--leader-elect"));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        op["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        Value::Bool(true)
    );

    let ds = &objs[&("DaemonSet".into(), "netprobe-agent".into())];
    let pod = &ds["spec"]["template"]["spec"];
    assert!(pod.get("hostPID").is_none(), "the design does not need hostPID");
    assert_eq!(
        pod["tolerations"][0]["operator"], "Exists",
        "runs on every node, control plane included"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], Value::Bool(false));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], Value::Bool(true));
    let caps: Vec<&str> = c["securityContext"]["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(caps, ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"]);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["limits"]["memory"].is_string());
    for m in c["volumeMounts"].as_sequence().unwrap() {
        assert_eq!(m["readOnly"], Value::Bool(true), "host mounts are read-only: {m:?}");
    }
    // The agent never reads the CRDs; it only patches status.
    let agent_rules = &objs[&("ClusterRole".into(), "netprobe-agent".into())]["rules"];
    for r in agent_rules.as_sequence().unwrap() {
        for res in r["resources"].as_sequence().unwrap() {
            let res = res.as_str().unwrap();
            assert!(!res.ends_with("probes"), "agent may only touch probe status, not {res}");
        }
    }
}

#[test]
fn chart_defaults_render_the_kustomize_objects() {
    let Some(kust) = kustomize() else { return };
    let chart = render_chart(&root().join("charts/netprobe"), &values(&[]), "netprobe-system").expect("chart renders");
    let (k, c) = (by_key(&kust), by_key(&chart));
    let k_keys: Vec<_> = k.keys().filter(|(kind, _)| kind != "Namespace").collect();
    let c_keys: Vec<_> = c.keys().collect();
    assert_eq!(c_keys, k_keys, "same objects (Helm creates the namespace itself)");
    for (key, obj) in &c {
        if let Some(d) = first_difference(obj, &k[key], String::new()) {
            panic!("{key:?} differs between chart and kustomize at {d}");
        }
    }
}

/// The path of the first difference between two documents, with both values.
fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            for k in x.keys().chain(y.keys()) {
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
        // 100000.0 and 100000 are one number to the API server.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => {
            let short = |v: &Value| format!("{v:?}").chars().take(120).collect::<String>();
            Some(format!("{path}: chart {} vs kustomize {}", short(a), short(b)))
        }
    }
}

#[test]
fn chart_optional_monitoring_renders() {
    let v = values(&[
        ("serviceMonitor.enabled", true),
        ("prometheusRule.enabled", true),
        ("dashboard.enabled", true),
    ]);
    let docs = render_chart(&root().join("charts/netprobe"), &v, "obs").expect("chart renders");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "ServiceMonitor").count(), 2);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "obs");
    assert!(
        rule["spec"]["groups"][0]["rules"]
            .as_sequence()
            .is_some_and(|r| r.len() >= 4)
    );
    let cm = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "netprobe-dashboard")
        .expect("dashboard ConfigMap");
    let json: serde_json::Value =
        serde_json::from_str(cm["data"]["netprobe.json"].as_str().unwrap()).expect("dashboard JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 6));
    // Without the flags, none of it.
    let plain = render_chart(&root().join("charts/netprobe"), &values(&[]), "obs").unwrap();
    assert!(
        !plain
            .iter()
            .any(|d| d["kind"] == "ServiceMonitor" || d["kind"] == "PrometheusRule")
    );
}

#[test]
fn every_value_is_documented() {
    let text = std::fs::read_to_string(root().join("charts/netprobe/values.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key =
        |l: &str| !l.trim().is_empty() && !l.trim().starts_with('#') && !l.trim().starts_with('-') && l.contains(':');
    // A key is documented when the comment block right above it holds `# --`.
    let documented = |i: usize| {
        lines[..i]
            .iter()
            .rev()
            .take_while(|p| p.trim().starts_with('#'))
            .any(|p| p.trim().starts_with("# --"))
    };
    let parent = |i: usize| {
        (0..i)
            .rev()
            .find(|j| is_key(lines[*j]) && indent(lines[*j]) < indent(lines[i]))
    };
    for (i, l) in lines.iter().enumerate() {
        let leaf = is_key(l) && !l.trim_end().ends_with(':');
        if leaf && !documented(i) && !parent(i).is_some_and(documented) {
            panic!("values.yaml line {}: `{}` has no `# --` doc comment", i + 1, l.trim());
        }
    }
}

#[test]
fn alerts_pass_promtool_and_dashboard_uses_real_metrics() {
    let chart = root().join("charts/netprobe");
    if netprobe_testutil::can_run(
        "promtool check rules",
        if netprobe_testutil::have("promtool") {
            &[]
        } else {
            &["promtool"]
        },
    ) {
        let out = std::process::Command::new("promtool")
            .args(["check", "rules", &chart.join("files/alerts.yaml").display().to_string()])
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let exported = [
        "netprobe_tcp_retransmits_total",
        "netprobe_tcp_resets_total",
        "netprobe_tcp_connect_latency_seconds_bucket",
        "netprobe_tcp_connect_failures_total",
        "netprobe_tcp_rtt_seconds_bucket",
        "netprobe_packet_drops_total",
        "netprobe_agent_program_run_seconds_total",
        "netprobe_agent_program_runs_total",
        "netprobe_agent_program_recursion_misses_total",
        "netprobe_agent_programs_loaded",
        "netprobe_agent_map_full_total",
        "netprobe_agent_collection_duration_seconds",
        "netprobe_agent_series_budget_exhausted",
        "netprobe_operator_probe_condition",
    ];
    for file in ["files/dashboard.json", "files/alerts.yaml"] {
        let text = std::fs::read_to_string(chart.join(file)).unwrap();
        for word in text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("netprobe_"))
        {
            assert!(
                exported.contains(&word),
                "{file} uses {word}, which netprobe does not export"
            );
        }
    }
    let _ = Path::new("");
}
