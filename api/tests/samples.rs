//! Every file in config/samples must be a probe the API server would admit
//! (schema and CEL rules, evaluated client-side with kube's CEL engine) and
//! the operator would plan (meaning validation): samples are documentation
//! that must keep working.

use std::path::PathBuf;

use kube::core::cel::validate_cel;
use kube::{CustomResourceExt, Resource};
use netprobe_api::{ClusterNetworkProbe, NetworkProbe, ProbeType, validate_spec};

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

#[test]
fn every_sample_is_admitted_and_valid() {
    let mut kinds = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    let mut cluster_types = std::collections::BTreeSet::new();
    // The samples, and the Program samples beside their C sources.
    let mut entries: Vec<_> = std::fs::read_dir(samples_dir())
        .unwrap()
        .chain(std::fs::read_dir(samples_dir().join("programs")).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        let raw: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let kind = raw["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "NetworkProbe" => {
                let p: NetworkProbe = serde_json::from_value(raw).unwrap();
                validate_cel(&p).unwrap_or_else(|e| panic!("{}: CEL: {e:?}", path.display()));
                let errs = validate_spec(&p.spec, None);
                assert!(errs.is_empty(), "{}: {errs:?}", path.display());
                assert!(
                    p.meta().namespace.is_some(),
                    "{}: namespaced sample needs a namespace",
                    path.display()
                );
                types.extend(p.spec.probes.iter().map(|p| p.type_));
            }
            "ClusterNetworkProbe" => {
                let p: ClusterNetworkProbe = serde_json::from_value(raw).unwrap();
                validate_cel(&p).unwrap_or_else(|e| panic!("{}: CEL: {e:?}", path.display()));
                let errs = validate_spec(&p.spec.probe, p.spec.namespace_selector.as_ref());
                assert!(errs.is_empty(), "{}: {errs:?}", path.display());
                cluster_types.extend(p.spec.probe.probes.iter().map(|p| p.type_));
            }
            other => panic!("{}: unexpected kind {other}", path.display()),
        }
        kinds.push(kind);
    }
    assert!(
        kinds.iter().any(|k| k == "ClusterNetworkProbe"),
        "need a ClusterNetworkProbe sample"
    );
    // Program probes exist only in ClusterNetworkProbes.
    for t in ProbeType::BUILT_IN {
        assert!(types.contains(&t), "no NetworkProbe sample of type {t}");
    }
    assert!(cluster_types.contains(&ProbeType::Program), "no Program sample");
}

fn probe(spec: serde_json::Value) -> NetworkProbe {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "netprobe.dev/v1alpha1", "kind": "NetworkProbe",
        "metadata": {"name": "t", "namespace": "n"}, "spec": spec,
    }))
    .unwrap()
}

#[test]
fn cel_rules_reject_cross_field_mistakes() {
    let ok = probe(serde_json::json!({"probes": [{"type": "TcpRtt", "tcpRtt": {"buckets": [0.001, 0.01]}}]}));
    validate_cel(&ok).unwrap();
    let bad = [
        (
            serde_json::json!({"probes": [{"type": "TcpRtt"}, {"type": "TcpRtt"}]}),
            "only once",
        ),
        (
            serde_json::json!({"probes": [{"type": "TcpRtt", "tcpConnectLatency": {}}]}),
            "only allowed when type is TcpConnectLatency",
        ),
        (
            serde_json::json!({"probes": [{"type": "TcpRtt", "tcpRtt": {"buckets": [0.1, 0.01]}}]}),
            "strictly increasing",
        ),
        (
            serde_json::json!({"probes": [{"type": "TcpRtt", "tcpRtt": {"buckets": [0.1, 0.1]}}]}),
            "strictly increasing",
        ),
        (
            serde_json::json!({"probes": [{"type": "TcpRtt", "tcpRtt": {"buckets": [0.0, 0.1]}}]}),
            "positive",
        ),
        (
            serde_json::json!({"probes": [{"type": "TcpRtt", "tcpRtt": {"buckets": [0.001, 0.004]}}]}),
            "power of ten",
        ),
        (
            serde_json::json!({"probes": [{"type": "TcpConnectLatency", "tcpConnectLatency": {"buckets": [1e-12]}}]}),
            "power of ten",
        ),
        // Loading code is a cluster-admin power: never in a NetworkProbe.
        (
            serde_json::json!({"probes": [{"type": "Program", "program": {"object": {"path": "/x.o"}, "metrics": [
                {"name": "a_total", "map": "m", "labels": [{"name": "pod", "size": 4, "decoder": "pod"}]}]}}]}),
            "only in a ClusterNetworkProbe",
        ),
        (
            serde_json::json!({"probes": [{"type": "Program"}]}),
            "needs its program options",
        ),
    ];
    for (spec, want) in bad {
        let err = validate_cel(&probe(spec.clone())).expect_err(&spec.to_string());
        assert!(format!("{err:?}").contains(want), "{spec}: {err:?}");
    }
}

#[test]
fn crd_declares_list_maps_and_printer_columns() {
    let crd = serde_json::to_value(NetworkProbe::crd()).unwrap();
    let v = &crd["spec"]["versions"][0];
    let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    // Per-node detail lives in the nodes' reports: status holds counts and a
    // bounded list only.
    assert!(status["nodes"].is_null());
    assert!(status["nodeCounts"]["properties"]["notReporting"].is_object());
    assert_eq!(status["problemNodes"]["maxItems"], 10);
    assert_eq!(status["conditions"]["x-kubernetes-list-map-keys"][0], "type");
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Types", "Nodes", "Pods", "Ready", "Age"]);
    let ccrd = serde_json::to_value(ClusterNetworkProbe::crd()).unwrap();
    assert_eq!(ccrd["spec"]["scope"], "Cluster");
    assert!(ccrd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["namespaceSelector"].is_object());
    // One report per node: cluster-scoped, its heartbeat on the status
    // subresource (a heartbeat does not change the report's generation).
    let rcrd = serde_json::to_value(netprobe_api::NetworkProbeNodeReport::crd()).unwrap();
    assert_eq!(rcrd["spec"]["scope"], "Cluster");
    assert!(rcrd["spec"]["versions"][0]["subresources"]["status"].is_object());
}
