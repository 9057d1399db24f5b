//! What the system scenarios (`tests/scenarios_*.rs`) share: the four
//! pods of every world, the sample probe on a lossy pod, readers of the
//! probes' status and of Prometheus, and the kernel's count as the oracle.

use netprobe_pods::{RetransOracle, Serve, retransmit_misses, servers};
use serde_json::Value;

use crate::world::{NODES, SYSTEM_NS, repo_root};
use crate::{PodSpec, World, WorldOptions, wait_for};

pub const SAMPLE: &str = "config/samples/tcp-retransmits.yaml";
pub const PROBE: &str = "redis-retransmits";
pub const PROBE_LABEL: &str = "NetworkProbe/shop/redis-retransmits";

/// shop/redis-a (node-a) and shop/redis-b (node-b) match the sample's
/// `app=redis`; shop/web-a does not; other/redis-x matches the labels but
/// lives in another namespace.
pub fn pods() -> Vec<PodSpec> {
    vec![
        PodSpec {
            namespace: "shop",
            name: "redis-a",
            node: "node-a",
            labels: &[("app", "redis")],
        },
        PodSpec {
            namespace: "shop",
            name: "redis-b",
            node: "node-b",
            labels: &[("app", "redis")],
        },
        PodSpec {
            namespace: "shop",
            name: "web-a",
            node: "node-a",
            labels: &[("app", "web")],
        },
        PodSpec {
            namespace: "other",
            name: "redis-x",
            node: "node-a",
            labels: &[("app", "redis")],
        },
    ]
}

pub fn world(test: &str, opts: WorldOptions) -> Option<World> {
    World::start(test, WorldOptions { pods: pods(), ..opts })
}

/// A world whose `shop` namespace carries the label the cluster sample's
/// namespaceSelector matches, and `other` does not.
pub fn world_observing_shop(test: &str) -> Option<World> {
    world(
        test,
        WorldOptions {
            namespaces: vec![("shop", &[("netprobe.dev/observe", "true")]), ("other", &[])],
            ..WorldOptions::default()
        },
    )
}

/// A world where redis-a's path to its peer is lossy and the sample probe
/// runs on both nodes.
pub fn world_with_sample(test: &str) -> Option<World> {
    let mut w = world(test, WorldOptions::default())?;
    make_lossy(&mut w, "shop", "redis-a");
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    Some(w)
}

/// A new generation of the sample (a different series budget); returns the
/// probe once both nodes run it.
pub fn update_sample(w: &World) -> Value {
    w.apply(
        &std::fs::read_to_string(sample(SAMPLE))
            .unwrap_or_else(|e| panic!("{e}"))
            .replace("maxSeriesPerNode: 500", "maxSeriesPerNode: 400"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_nodes(w, "networkprobe", Some("shop"), PROBE, "Running")
}

pub fn sample(path: &str) -> String {
    repo_root().join(path).display().to_string()
}

/// Every 10th segment towards the peer's port 5001 is dropped, so bulk
/// transfers from the pod retransmit.
pub fn make_lossy(w: &mut World, ns: &str, name: &str) {
    let pod = w.pod_mut(ns, name);
    pod.serve_peer(&servers(&[(5001, Serve::Sink)]));
    pod.nft_peer(
        "table inet nptest {\n chain input {\n type filter hook input priority 0;\n tcp dport 5001 numgen inc mod 10 == 0 counter drop\n }\n}",
    );
}

/// Run a bulk transfer from the pod; returns the pod's TcpRetransSegs delta.
pub fn retransmit(w: &World, ns: &str, name: &str) -> u64 {
    let pod = w.pod(ns, name);
    let before = pod.nstat("TcpRetransSegs");
    pod.run(&pod.bulk_client());
    pod.nstat("TcpRetransSegs") - before
}

/// Connections to a closed port of the peer: each is answered by a reset.
pub fn refused_connects(w: &World, ns: &str, name: &str, n: usize) {
    let pod = w.pod(ns, name);
    pod.run(&format!(
        "import socket\nfor _ in range({n}):\n    s = socket.socket(); s.settimeout(5)\n    \
         try:\n        s.connect(('{}', 5999))\n    except OSError:\n        pass\n    s.close()\n",
        pod.peer_ip4()
    ));
}

/// Who holds the operator's leader Lease ("" when nobody does).
pub fn lease_holder(w: &World) -> Result<String, String> {
    w.kubectl(&[
        "get",
        "lease",
        "netprobe-operator",
        "-n",
        SYSTEM_NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

pub fn probe_json(w: &World, kind: &str, ns: Option<&str>, name: &str) -> Result<Value, String> {
    match ns {
        Some(ns) => w.get_json(&[kind, name, "-n", ns]),
        None => w.get_json(&[kind, name]),
    }
}

/// Each node's report entry for a probe (`kind` as kubectl names it:
/// networkprobe or clusternetworkprobe), from the nodes' reports.
pub fn node_entries(w: &World, kind: &str, ns: Option<&str>, name: &str) -> Vec<(String, Value)> {
    let kind = if kind == "networkprobe" {
        "NetworkProbe"
    } else {
        "ClusterNetworkProbe"
    };
    w.nodes()
        .into_iter()
        .filter_map(|node| {
            let r = w.get_json(&["networkprobenodereport", &node]).ok()?;
            let e = r["spec"]["probes"]
                .as_array()?
                .iter()
                .find(|e| e["kind"] == kind && e["name"] == name && e["namespace"].as_str() == ns)?
                .clone();
            Some((node, e))
        })
        .collect()
}

/// Wait until every node reports `phase` for the probe at its current
/// generation and the operator has observed that generation.
pub fn wait_nodes(w: &World, kind: &str, ns: Option<&str>, name: &str, phase: &str) -> Value {
    let want = w.nodes();
    wait_for(
        &format!("{name}: both nodes {phase} at the current generation"),
        60,
        || {
            let p = probe_json(w, kind, ns, name)?;
            let generation = p["metadata"]["generation"].as_i64();
            let entries = node_entries(w, kind, ns, name);
            let ok = p["status"]["observedGeneration"].as_i64() == generation
                && want.iter().all(|n| {
                    entries.iter().any(|(node, e)| {
                        node == n && e["phase"] == phase && e["appliedGeneration"].as_i64() == generation
                    })
                });
            if ok {
                Ok(p)
            } else {
                Err(format!("{} {entries:?}", p["status"]))
            }
        },
    )
}

/// Wait until the probe's status counts `n` matched pods. A node may report
/// Running before its view of pods and namespace labels has caught up; its
/// next report corrects the count, so the count is awaited, not sampled.
pub fn wait_pods_matched(w: &World, kind: &str, ns: Option<&str>, name: &str, n: i64) -> Value {
    wait_for(&format!("{name}: podsMatched {n}"), 30, || {
        let p = probe_json(w, kind, ns, name)?;
        if p["status"]["podsMatched"].as_i64() == Some(n) {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    })
}

/// Sum of the probe's retransmit series per (namespace, pod), from Prometheus.
pub fn prom_retransmits(w: &World, probe: &str, pod: &str) -> Option<f64> {
    w.prom.value(
        &format!("sum by (namespace, pod) (netprobe_tcp_retransmits_total{{probe=\"{probe}\"}})"),
        &[("pod", pod)],
    )
}

/// The kernel's count of a pod's retransmits since a starting point.
pub struct Retrans {
    ns: &'static str,
    pod: &'static str,
    oracle: RetransOracle,
}

impl Retrans {
    pub fn start(w: &World, ns: &'static str, pod: &'static str) -> Retrans {
        let oracle = RetransOracle::start(|c| w.pod(ns, pod).nstat(c));
        Retrans { ns, pod, oracle }
    }

    /// Whether netprobe's count `got` is the kernel's ([`RetransOracle`]).
    /// The oracle is re-read on each call: a FIN lost to the loss rule is
    /// retransmitted after the client has exited.
    pub fn check(&self, w: &World, got: Option<f64>) -> Result<u64, String> {
        let pod = w.pod(self.ns, self.pod);
        // Either node's agent may hold the pod: a bound, not an exact figure.
        let missed = NODES.iter().map(|n| retransmit_misses(&w.agent_metrics(n))).sum();
        self.oracle
            .check(|c| pod.nstat(c), got, missed)
            .map_err(|e| format!("{}: {e}", self.pod))
    }
}

/// Wait until Prometheus shows for the probe's series of the pod what the
/// kernel counted since `since` started.
pub fn wait_retransmits(w: &World, probe: &str, since: &Retrans) -> u64 {
    wait_for(
        &format!("{probe}: {}'s retransmits in Prometheus", since.pod),
        30,
        || since.check(w, prom_retransmits(w, probe, since.pod)),
    )
}

pub fn pods_with_series(w: &World, metric: &str) -> Vec<String> {
    w.prom
        .query(&format!("count by (namespace, pod) ({metric})"))
        .into_iter()
        .map(|(l, _)| {
            format!(
                "{}/{}",
                l.get("namespace").cloned().unwrap_or_default(),
                l.get("pod").cloned().unwrap_or_default()
            )
        })
        .collect()
}

/// `kubectl wait --for=condition=Ready` on the sample probe, as a user (or a
/// GitOps health check) waits for it.
pub fn wait_sample_ready(w: &World) {
    w.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        &format!("networkprobe/{PROBE}"),
        "-n",
        "shop",
        "--timeout=60s",
    ]);
}
