//! The install paths, checked by the real tools: `kubectl kustomize
//! config/default` holds what production needs; Helm's own engine renders
//! the chart's defaults as exactly the kustomize objects; Helm's lint passes
//! strictly; every object validates against Kubernetes 1.29–1.33's official
//! schemas (and custom resources against their CRDs); alerts pass promtool's
//! unit tests; the dashboard only uses metrics netprobe exports.

use std::collections::BTreeMap;
use std::path::PathBuf;

use netprobe_packaging_tests::{
    first_difference, helm_lint, helm_render, kustomize, parse_docs, python, root, validate, validate_text,
};
use serde_json::json;
use serde_yaml::Value;

/// The Python with Helm's engine and the schemas, or a loud skip (a failure
/// in CI).
fn tools(test: &str) -> Option<PathBuf> {
    let mut missing = Vec::new();
    let py = python();
    if py.is_none() {
        missing.push("the packaging tools' Python (.venv: run `make pyenv`, or set NETPROBE_PYTHON)");
    }
    if !netprobe_testutil::have("kubectl") {
        missing.push("kubectl");
    }
    netprobe_testutil::can_run(test, &missing).then_some(py).flatten()
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

/// Every optional value on (monitoring forced: no cluster to ask).
fn all_on() -> serde_json::Value {
    json!({
        "monitoring": {"assumeOperatorApi": true},
        "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
        "dashboard": {"enabled": true},
        "agent": {"serviceCIDRs": ["10.96.0.0/12", "fd00:10:96::/112"],
                  "programs": {"max": 0, "mapMemoryMiB": 32, "types": ["tp_btf", "cgroup_skb"]}},
        "metrics": {"readers": [{"name": "prometheus-k8s", "namespace": "monitoring"}],
                    "tls": {"secretName": "netprobe-metrics-tls"}},
    })
}

/// What Helm renders for `values`, as JSON.
fn render_json(py: &std::path::Path, values: &serde_json::Value, namespace: &str) -> Vec<serde_json::Value> {
    helm_render(py, values, namespace)
        .into_iter()
        .map(|d| serde_json::to_value(d).expect("YAML maps to JSON"))
        .collect()
}

/// The rendered object `kind`/`name`.
fn object<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

#[test]
fn metrics_are_served_over_https_to_reviewed_tokens_only() {
    let Some(py) = tools("helm render metrics auth") else {
        return;
    };
    let container = |docs: &[serde_json::Value], kind: &str, name: &str| {
        object(docs, kind, name)["spec"]["template"]["spec"]["containers"][0].clone()
    };
    let has_arg = |c: &serde_json::Value, arg: &str| c["args"].as_array().is_some_and(|a| a.contains(&json!(arg)));
    let workloads = [("DaemonSet", "netprobe-agent"), ("Deployment", "netprobe-operator")];
    // Defaults: token review, HTTPS probes, the reader role, review rights.
    let docs = render_json(&py, &json!({}), "netprobe-system");
    for (kind, name) in workloads {
        let c = container(&docs, kind, name);
        assert!(has_arg(&c, "--metrics-auth=kubernetes"), "{c}");
        assert_eq!(c["livenessProbe"]["httpGet"]["scheme"], "HTTPS", "{name}");
        // Ready once serving its work: the operator's cache, the agent's
        // first apply (a rollout waits for a node's probes to be attached).
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS", "{name}");
        let rules = object(&docs, "ClusterRole", name)["rules"].to_string();
        assert!(
            rules.contains("tokenreviews") && rules.contains("subjectaccessreviews"),
            "{name}: {rules}"
        );
    }
    assert_eq!(
        object(&docs, "ClusterRole", "netprobe-metrics-reader")["rules"],
        json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
    );
    // Every option: a certificate Secret mounted and verified, readers bound.
    let docs = render_json(&py, &all_on(), "obs");
    for (kind, name) in workloads {
        let c = container(&docs, kind, name);
        assert!(
            has_arg(&c, "--metrics-tls-cert=/etc/netprobe/metrics-tls/tls.crt"),
            "{c}"
        );
        let pod = &object(&docs, kind, name)["spec"]["template"]["spec"];
        assert!(pod["volumes"].to_string().contains("netprobe-metrics-tls"), "{pod}");
        let sm = &object(&docs, "ServiceMonitor", name)["spec"]["endpoints"][0];
        assert_eq!(sm["scheme"], "https");
        assert_eq!(sm["tlsConfig"]["serverName"], format!("{name}-metrics.obs.svc"));
        assert_eq!(sm["tlsConfig"]["ca"]["secret"]["name"], "netprobe-metrics-tls");
        assert!(sm["bearerTokenFile"].is_string(), "{sm}");
    }
    // Peer classes: the Service CIDRs reach the agent.
    let agent = container(&docs, "DaemonSet", "netprobe-agent");
    assert!(
        has_arg(&agent, "--service-cidrs=10.96.0.0/12,fd00:10:96::/112"),
        "{agent}"
    );
    // Program limits reach the agent, 0 included (it refuses every program).
    for arg in [
        "--max-programs=0",
        "--program-map-memory=32",
        "--program-types=tp_btf,cgroup_skb",
    ] {
        assert!(has_arg(&agent, arg), "{arg}: {agent}");
    }
    let binding = object(
        &docs,
        "ClusterRoleBinding",
        "netprobe-metrics-reader-monitoring-prometheus-k8s",
    );
    assert_eq!(binding["roleRef"]["name"], "netprobe-metrics-reader");
    // Opting out: plain HTTP, no token in the ServiceMonitors.
    let off = json!({"metrics": {"auth": "none"}, "monitoring": {"assumeOperatorApi": true}, "serviceMonitor": {"enabled": true}});
    let docs = render_json(&py, &off, "obs");
    for (kind, name) in workloads {
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(
                container(&docs, kind, name)[probe]["httpGet"]["scheme"],
                "HTTP",
                "{name} {probe}"
            );
        }
        let sm = &object(&docs, "ServiceMonitor", name)["spec"]["endpoints"][0];
        assert!(
            sm.get("scheme").is_none() && sm.get("bearerTokenFile").is_none(),
            "{sm}"
        );
    }
}

#[test]
fn kustomize_default_has_what_production_needs() {
    if !netprobe_testutil::can_run(
        "kustomize render",
        if netprobe_testutil::have("kubectl") {
            &[]
        } else {
            &["kubectl"]
        },
    ) {
        return;
    }
    let objs = by_key(&kustomize());
    let kinds: Vec<(&str, &str)> = objs.keys().map(|(k, n)| (k.as_str(), n.as_str())).collect();
    for want in [
        ("CustomResourceDefinition", "networkprobes.netprobe.dev"),
        ("CustomResourceDefinition", "clusternetworkprobes.netprobe.dev"),
        ("CustomResourceDefinition", "networkprobenodereports.netprobe.dev"),
        ("NetworkPolicy", "netprobe-agent"),
        ("NetworkPolicy", "netprobe-operator"),
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
    // The agent uses hostPath and capabilities: the namespace must admit it
    // under Pod Security admission.
    let ns = &objs[&("Namespace".into(), "netprobe-system".into())];
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
        "{ns:?}"
    );
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
    assert_eq!(
        caps,
        ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"],
        "what the kernel test measured, no more"
    );
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["limits"]["memory"].is_string());
    for m in c["volumeMounts"].as_sequence().unwrap() {
        assert_eq!(m["readOnly"], Value::Bool(true), "host mounts are read-only: {m:?}");
    }
    // The metrics ports admit only Prometheus: each policy selects its
    // component's pods and names the port the container serves metrics on.
    for (workload, name) in [("DaemonSet", "netprobe-agent"), ("Deployment", "netprobe-operator")] {
        let np = &objs[&("NetworkPolicy".into(), name.into())];
        let tpl = &objs[&(workload.into(), name.into())]["spec"]["template"];
        for (k, v) in np["spec"]["podSelector"]["matchLabels"].as_mapping().unwrap() {
            assert_eq!(&tpl["metadata"]["labels"][k.as_str().unwrap()], v, "{name}: selector");
        }
        assert_eq!(np["spec"]["policyTypes"][0], "Ingress");
        let rule = &np["spec"]["ingress"][0];
        assert_eq!(rule["ports"][0]["port"], "metrics");
        assert!(
            tpl["spec"]["containers"][0]["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "metrics"),
            "{name}: the container's port is named metrics"
        );
        assert_eq!(
            rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "prometheus",
            "{name}: {rule:?}"
        );
    }
    // The agent never reads the CRDs; it only writes its node's report.
    let agent_rules = &objs[&("ClusterRole".into(), "netprobe-agent".into())]["rules"];
    for r in agent_rules.as_sequence().unwrap() {
        for res in r["resources"].as_sequence().unwrap() {
            let res = res.as_str().unwrap();
            assert!(!res.ends_with("probes"), "agent may not touch probes: {res}");
        }
    }
}

#[test]
fn chart_defaults_render_the_kustomize_objects() {
    let Some(py) = tools("helm render vs kustomize") else {
        return;
    };
    let kust = kustomize();
    let chart = helm_render(&py, &json!({}), "netprobe-system");
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

#[test]
fn chart_lints_strictly_with_defaults_and_with_every_option() {
    let Some(py) = tools("helm lint") else { return };
    for values in [json!({}), all_on()] {
        let run = helm_lint(&py, &values);
        assert!(run.ok, "helm lint --strict with {values}:\n{}", run.report);
    }
}

#[test]
fn every_object_passes_the_kubernetes_schemas_of_1_29_to_1_33() {
    let Some(py) = tools("kubernetes-validate") else { return };
    let mut sets: Vec<(&str, Vec<Value>)> = vec![
        ("chart defaults", helm_render(&py, &json!({}), "netprobe-system")),
        ("chart with every option", helm_render(&py, &all_on(), "obs")),
        ("kubectl kustomize config/default", kustomize()),
    ];
    let mut samples = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root().join("config/samples"))
        .expect("samples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("sample");
        samples.extend(parse_docs(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    sets.push(("config/samples", samples));
    for (what, objects) in sets {
        assert!(!objects.is_empty(), "{what}: nothing rendered");
        let run = validate(&py, &objects);
        assert!(run.ok, "{what} fails validation:\n{}", run.report);
    }
}

/// The validator can fail: an integer field written as Helm writes large
/// numbers, an unknown field, and a ServiceMonitor field that does not exist.
#[test]
fn the_schema_check_rejects_floats_and_unknown_fields() {
    let Some(py) = tools("kubernetes-validate negative control") else {
        return;
    };
    let run = validate_text(
        &py,
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: p}\nvalue: 1e+06\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: q}\nvalue: 1000000.0\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {portz: []}\n---\n\
         apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: m}\n\
         spec: {selector: {}, endpoints: [{port: metrics, intervall: 30s}]}\n",
    );
    assert!(!run.ok, "validation passed bad objects:\n{}", run.report);
    for needle in ["PriorityClass/p", "PriorityClass/q", "Service/s", "ServiceMonitor/m"] {
        assert!(run.report.contains(needle), "{needle} not reported:\n{}", run.report);
    }
}

#[test]
fn monitoring_objects_render_only_where_the_operator_api_is() {
    let Some(py) = tools("helm render monitoring") else {
        return;
    };
    let kinds = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .filter_map(|d| d["kind"].as_str().map(str::to_string))
            .collect()
    };
    // Enabled, but the cluster (none, offline) has no monitoring.coreos.com/v1.
    let enabled = json!({"serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}});
    let docs = helm_render(&py, &enabled, "obs");
    assert!(
        !kinds(&docs)
            .iter()
            .any(|k| k == "ServiceMonitor" || k == "PrometheusRule"),
        "{:?}",
        kinds(&docs)
    );
    // Forced, with the labels kube-prometheus-stack selects by.
    let docs = helm_render(&py, &all_on(), "obs");
    let k = kinds(&docs);
    assert_eq!(k.iter().filter(|k| *k == "ServiceMonitor").count(), 2, "{k:?}");
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ServiceMonitor" || d["kind"] == "PrometheusRule")
    {
        assert_eq!(d["metadata"]["labels"]["release"], "kube-prometheus-stack", "{d:?}");
        assert_eq!(d["metadata"]["namespace"], "obs");
    }
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule");
    assert!(
        rule["spec"]["groups"][0]["rules"]
            .as_sequence()
            .is_some_and(|r| r.len() >= 4)
    );
    // Alert templates reach Prometheus untouched by Helm's templating.
    let summaries = serde_yaml::to_string(&rule["spec"]).expect("rule");
    assert!(summaries.contains("$labels"), "{summaries}");
    let cm = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "netprobe-dashboard")
        .expect("dashboard ConfigMap");
    let json: serde_json::Value =
        serde_json::from_str(cm["data"]["netprobe.json"].as_str().expect("dashboard data")).expect("dashboard JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 6));
    // Without the flags, none of it.
    let plain = helm_render(&py, &json!({"monitoring": {"assumeOperatorApi": true}}), "obs");
    assert!(
        !plain
            .iter()
            .any(|d| d["kind"] == "ServiceMonitor" || d["kind"] == "PrometheusRule" || d["kind"] == "ConfigMap")
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
        "promtool check rules / test rules",
        if netprobe_testutil::have("promtool") {
            &[]
        } else {
            &["promtool"]
        },
    ) {
        // Syntax, then the unit tests: overlapping probes, peer series,
        // workload and standalone targets, every alert firing and not.
        for args in [
            vec![
                "check".to_string(),
                "rules".into(),
                chart.join("files/alerts.yaml").display().to_string(),
            ],
            vec![
                "test".to_string(),
                "rules".into(),
                root()
                    .join("tests/packaging/testdata/alerts_test.yaml")
                    .display()
                    .to_string(),
            ],
        ] {
            let out = std::process::Command::new("promtool")
                .args(&args)
                .output()
                .expect("promtool");
            assert!(
                out.status.success(),
                "promtool {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tests = std::fs::read_to_string(root().join("tests/packaging/testdata/alerts_test.yaml")).expect("tests");
        let alerts = std::fs::read_to_string(chart.join("files/alerts.yaml")).expect("alerts");
        for name in alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
            assert!(
                tests.contains(&format!("alertname: {name}")),
                "alert {name} has no promtool unit test"
            );
        }
    }
    let exported = [
        "netprobe_tcp_retransmits_total",
        "netprobe_tcp_resets_total",
        "netprobe_tcp_connect_latency_seconds_bucket",
        "netprobe_tcp_connect_failures_total",
        "netprobe_tcp_rtt_seconds_bucket",
        "netprobe_packet_drops_total",
        "netprobe_traffic_bytes_total",
        "netprobe_dns_request_duration_seconds_bucket",
        "netprobe_dns_responses_total",
        "netprobe_dns_timeouts_total",
        "netprobe_dns_queries_total",
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
}
