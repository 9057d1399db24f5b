//! The system scenarios: a user's `kubectl` against the API, the real
//! operator and agents on this machine's kernel, Prometheus as the reader.
//! Kernel counters (nstat in each pod's namespace) are the oracle.

use std::time::{Duration, Instant};

use netprobe_e2e::world::{NODES, SYSTEM_NS, repo_root};
use netprobe_e2e::{PodSpec, World, WorldOptions, wait_for};
use netprobe_pods::{RetransOracle, Serve, retransmit_misses, servers};
use serde_json::Value;

const SAMPLE: &str = "config/samples/tcp-retransmits.yaml";
const PROBE: &str = "redis-retransmits";
const PROBE_LABEL: &str = "NetworkProbe/shop/redis-retransmits";

/// shop/redis-a (node-a) and shop/redis-b (node-b) match the sample's
/// `app=redis`; shop/web-a does not; other/redis-x matches the labels but
/// lives in another namespace.
fn pods() -> Vec<PodSpec> {
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

fn world(test: &str, opts: WorldOptions) -> Option<World> {
    World::start(test, WorldOptions { pods: pods(), ..opts })
}

/// A world where redis-a's path to its peer is lossy and the sample probe
/// runs on both nodes.
fn world_with_sample(test: &str) -> Option<World> {
    let mut w = world(test, WorldOptions::default())?;
    make_lossy(&mut w, "shop", "redis-a");
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    Some(w)
}

/// A new generation of the sample (a different series budget); returns the
/// probe once both nodes run it.
fn update_sample(w: &World) -> Value {
    w.apply(
        &std::fs::read_to_string(sample(SAMPLE))
            .unwrap_or_else(|e| panic!("{e}"))
            .replace("maxSeriesPerNode: 500", "maxSeriesPerNode: 400"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_nodes(w, "networkprobe", Some("shop"), PROBE, "Running")
}

fn sample(path: &str) -> String {
    repo_root().join(path).display().to_string()
}

/// Every 10th segment towards the peer's port 5001 is dropped, so bulk
/// transfers from the pod retransmit.
fn make_lossy(w: &mut World, ns: &str, name: &str) {
    let pod = w.pod_mut(ns, name);
    pod.serve_peer(&servers(&[(5001, Serve::Sink)]));
    pod.nft_peer(
        "table inet nptest {\n chain input {\n type filter hook input priority 0;\n tcp dport 5001 numgen inc mod 10 == 0 counter drop\n }\n}",
    );
}

/// Run a bulk transfer from the pod; returns the pod's TcpRetransSegs delta.
fn retransmit(w: &World, ns: &str, name: &str) -> u64 {
    let pod = w.pod(ns, name);
    let before = pod.nstat("TcpRetransSegs");
    pod.run(&pod.bulk_client());
    pod.nstat("TcpRetransSegs") - before
}

/// Connections to a closed port of the peer: each is answered by a reset.
fn refused_connects(w: &World, ns: &str, name: &str, n: usize) {
    let pod = w.pod(ns, name);
    pod.run(&format!(
        "import socket\nfor _ in range({n}):\n    s = socket.socket(); s.settimeout(5)\n    \
         try:\n        s.connect(('{}', 5999))\n    except OSError:\n        pass\n    s.close()\n",
        pod.peer_ip4()
    ));
}

/// Who holds the operator's leader Lease ("" when nobody does).
fn lease_holder(w: &World) -> Result<String, String> {
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

fn probe_json(w: &World, kind: &str, ns: Option<&str>, name: &str) -> Result<Value, String> {
    match ns {
        Some(ns) => w.get_json(&[kind, name, "-n", ns]),
        None => w.get_json(&[kind, name]),
    }
}

/// Each node's report entry for a probe (`kind` as kubectl names it:
/// networkprobe or clusternetworkprobe), from the nodes' reports.
fn node_entries(w: &World, kind: &str, ns: Option<&str>, name: &str) -> Vec<(String, Value)> {
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
fn wait_nodes(w: &World, kind: &str, ns: Option<&str>, name: &str, phase: &str) -> Value {
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
fn wait_pods_matched(w: &World, kind: &str, ns: Option<&str>, name: &str, n: i64) -> Value {
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
fn prom_retransmits(w: &World, probe: &str, pod: &str) -> Option<f64> {
    w.prom.value(
        &format!("sum by (namespace, pod) (netprobe_tcp_retransmits_total{{probe=\"{probe}\"}})"),
        &[("pod", pod)],
    )
}

/// The kernel's count of a pod's retransmits since a starting point.
struct Retrans {
    ns: &'static str,
    pod: &'static str,
    oracle: RetransOracle,
}

impl Retrans {
    fn start(w: &World, ns: &'static str, pod: &'static str) -> Retrans {
        let oracle = RetransOracle::start(|c| w.pod(ns, pod).nstat(c));
        Retrans { ns, pod, oracle }
    }

    /// Whether netprobe's count `got` is the kernel's ([`RetransOracle`]).
    /// The oracle is re-read on each call: a FIN lost to the loss rule is
    /// retransmitted after the client has exited.
    fn check(&self, w: &World, got: Option<f64>) -> Result<u64, String> {
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
fn wait_retransmits(w: &World, probe: &str, since: &Retrans) -> u64 {
    wait_for(
        &format!("{probe}: {}'s retransmits in Prometheus", since.pod),
        30,
        || since.check(w, prom_retransmits(w, probe, since.pod)),
    )
}

fn pods_with_series(w: &World, metric: &str) -> Vec<String> {
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

#[test]
fn s1_apply_a_sample_and_see_it_ready_on_both_nodes() {
    let Some(w) = world("s1", WorldOptions::default()) else {
        return;
    };
    let out = w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    assert!(
        out.contains("networkprobe.netprobe.dev/redis-retransmits created"),
        "{out}"
    );
    let cm = format!("nprobe.shop.{PROBE}");
    wait_for("the plan ConfigMap", 30, || {
        w.kubectl(&["get", "configmap", &cm, "-n", SYSTEM_NS])
    });
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    w.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        &format!("networkprobe/{PROBE}"),
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    wait_pods_matched(&w, "networkprobe", Some("shop"), PROBE, 2);
    let table = w.kubectl_ok(&["get", "networkprobes", "-n", "shop"]);
    println!("{table}");
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPES", "NODES", "PODS", "READY", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    // Every node is expected to run it (2 here; all of a real cluster's).
    let nodes: Vec<&str> = row.get(2).unwrap_or(&"").split('/').collect();
    assert!(
        nodes.len() == 2 && nodes[0] == nodes[1] && nodes[0].parse::<usize>().is_ok_and(|n| n >= 2),
        "{table}"
    );
    assert_eq!(
        [row[0], row[1], row[3], row[4]],
        [PROBE, "TcpRetransmits", "2", "True"],
        "{table}"
    );
}

#[test]
fn s2_retransmits_in_prometheus_equal_the_kernel_and_stay_in_their_namespace() {
    let Some(mut w) = world("s2", WorldOptions::default()) else {
        return;
    };
    for (ns, pod) in [
        ("shop", "redis-a"),
        ("shop", "redis-b"),
        ("shop", "web-a"),
        ("other", "redis-x"),
    ] {
        make_lossy(&mut w, ns, pod);
    }
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    let query = "sum by (namespace, pod) (netprobe_tcp_retransmits_total)";
    let (since_a, since_b) = (
        Retrans::start(&w, "shop", "redis-a"),
        Retrans::start(&w, "shop", "redis-b"),
    );
    let oracle_a = retransmit(&w, "shop", "redis-a");
    let oracle_b = retransmit(&w, "shop", "redis-b");
    let web = retransmit(&w, "shop", "web-a");
    let other = retransmit(&w, "other", "redis-x");
    assert!(
        oracle_a > 0 && oracle_b > 0 && web > 0 && other > 0,
        "the loss rule must cause retransmits"
    );
    wait_for("Prometheus to equal the kernel for both selected pods", 30, || {
        let a = w.prom.value(query, &[("namespace", "shop"), ("pod", "redis-a")]);
        let b = w.prom.value(query, &[("namespace", "shop"), ("pod", "redis-b")]);
        since_a.check(&w, a)?;
        since_b.check(&w, b)
    });
    let with_series = pods_with_series(&w, "netprobe_tcp_retransmits_total");
    assert!(
        !with_series.contains(&"shop/web-a".to_string()),
        "unselected pod has a series: {with_series:?}"
    );
    assert!(
        !with_series.contains(&"other/redis-x".to_string()),
        "other namespace leaked: {with_series:?}"
    );

    // A match-all selector in shop still never reaches into "other".
    w.apply(
        "apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: everything, namespace: shop}\n\
         spec:\n  podSelector: {}\n  probes:\n  - type: TcpRetransmits\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_nodes(&w, "networkprobe", Some("shop"), "everything", "Running");
    let since = Retrans::start(&w, "shop", "web-a");
    let web = retransmit(&w, "shop", "web-a");
    let other = retransmit(&w, "other", "redis-x");
    assert!(web > 0 && other > 0);
    wait_retransmits(&w, "NetworkProbe/shop/everything", &since);
    let with_series = pods_with_series(&w, "netprobe_tcp_retransmits_total");
    assert!(
        with_series.iter().all(|p| p.starts_with("shop/")),
        "a namespaced probe yielded a series outside its namespace: {with_series:?}"
    );
}

#[test]
fn s3_updates_reach_both_agents_without_restart_or_counter_reset() {
    let Some(w) = world_with_sample("s3") else {
        return;
    };
    let since = Retrans::start(&w, "shop", "redis-a");
    assert!(retransmit(&w, "shop", "redis-a") > 0);
    wait_retransmits(&w, PROBE_LABEL, &since);
    let instances = w.agent_instances();

    let updated = std::fs::read_to_string(sample(SAMPLE))
        .unwrap_or_else(|e| panic!("{e}"))
        .replace(
            "    matchLabels:\n      app: redis\n",
            "    matchExpressions:\n      - {key: app, operator: In, values: [redis, web]}\n",
        )
        .replace("  metrics:\n", "    - type: TcpResets\n  metrics:\n");
    assert!(
        updated.contains("TcpResets") && updated.contains("operator: In"),
        "{updated}"
    );
    let out = w.apply(&updated).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("configured"), "{out}");
    let p = wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    assert_eq!(p["metadata"]["generation"], 2);
    assert_eq!(p["status"]["probeTypes"], "TcpRetransmits,TcpResets");
    // redis-a, redis-b and web-a
    wait_pods_matched(&w, "networkprobe", Some("shop"), PROBE, 3);
    assert_eq!(instances, w.agent_instances(), "an agent restarted");

    assert!(retransmit(&w, "shop", "redis-a") > 0);
    // The counter continues from where it was: still everything since the start.
    wait_retransmits(&w, PROBE_LABEL, &since);
    let resets = w.prom.query(&format!(
        "resets(netprobe_tcp_retransmits_total{{probe=\"{PROBE_LABEL}\"}}[5m])"
    ));
    assert!(
        !resets.is_empty() && resets.iter().all(|(_, v)| *v == 0.0),
        "counter resets: {resets:?}"
    );
    // The new selector and the new type are live: web-a's resets are counted.
    refused_connects(&w, "shop", "web-a", 3);
    wait_for("web-a's resets series", 30, || {
        match w
            .prom
            .value("sum by (pod) (netprobe_tcp_resets_total)", &[("pod", "web-a")])
        {
            Some(v) if v >= 3.0 => Ok(()),
            v => Err(format!("{v:?}")),
        }
    });
}

#[test]
fn s4_bad_input_is_refused_or_reported_and_breaks_only_itself() {
    let Some(mut w) = world("s4", WorldOptions::default()) else {
        return;
    };
    // Refused by the schema, naming the field.
    let err = w
        .apply(
            "apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: typo, namespace: shop}\n\
             spec:\n  probes:\n  - type: TcpRetransmit\n",
        )
        .expect_err("schema violation must be refused");
    assert!(
        err.contains("spec.probes[0].type") && err.contains("Unsupported value"),
        "{err}"
    );
    assert!(w.kubectl(&["get", "networkprobe", "typo", "-n", "shop"]).is_err());
    // Valid for the schema, invalid by meaning: InvalidSpec naming the field.
    w.apply(
        "apiVersion: netprobe.dev/v1alpha1\nkind: NetworkProbe\nmetadata: {name: no-values, namespace: shop}\n\
         spec:\n  podSelector:\n    matchExpressions:\n    - {key: app, operator: In, values: []}\n  probes:\n  - type: TcpResets\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    w.kubectl_ok(&[
        "wait",
        "--for=condition=InvalidSpec",
        "networkprobe/no-values",
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    let p = probe_json(&w, "networkprobe", Some("shop"), "no-values").unwrap_or_else(|e| panic!("{e}"));
    let msg = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "InvalidSpec")
        .map(|c| c["message"].to_string())
        .unwrap_or_default();
    assert!(msg.contains("spec.podSelector.matchExpressions[0].values"), "{msg}");
    assert!(
        w.kubectl(&["get", "configmap", "nprobe.shop.no-values", "-n", SYSTEM_NS])
            .is_err()
    );

    // A hand-corrupted plan fails on the nodes; the other plan keeps running.
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    w.kubectl_ok(&["apply", "-f", &sample("config/samples/tcp-resets.yaml")]);
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    wait_nodes(&w, "networkprobe", Some("shop"), "resets", "Running");
    // With the operator stopped, nothing repairs the edit behind our back.
    w.stop_operators();
    let cm = format!("nprobe.shop.{PROBE}");
    w.kubectl_ok(&[
        "patch",
        "configmap",
        &cm,
        "-n",
        SYSTEM_NS,
        "--type",
        "merge",
        "-p",
        r#"{"data":{"plan.json":"{\"formatVersion\": 1, \"broken"}}"#,
    ]);
    wait_for("the corrupted plan to be Failed on both nodes", 30, || {
        // The operator is down: the nodes' own reports say it.
        let entries = node_entries(&w, "networkprobe", Some("shop"), PROBE);
        let failed = entries.iter().filter(|(_, e)| e["phase"] == "Failed").count();
        if failed == 2 {
            Ok(())
        } else {
            Err(format!("{entries:?}"))
        }
    });
    wait_nodes(&w, "networkprobe", Some("shop"), "resets", "Running");
    for node in w.nodes() {
        assert_eq!(w.program_count(&node), 2, "{node}: the resets programs, and only those");
        if let Some(progs) = w.programs_of(&node) {
            assert!(progs.iter().all(|(n, _)| n.contains("reset")), "{node}: {progs:?}");
        }
    }
    // The operator, back, restores the plan it owns.
    w.restart_operators();
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
}

#[test]
fn s5_delete_removes_the_plan_detaches_and_drops_the_series() {
    let Some(w) = world_with_sample("s5") else {
        return;
    };
    let p = probe_json(&w, "networkprobe", Some("shop"), PROBE).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        p["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty),
        "no finalizer: a probe stays deletable without an operator: {p}"
    );
    for node in w.nodes() {
        assert!(w.program_count(&node) > 0, "{node} runs no program");
    }
    let since = Retrans::start(&w, "shop", "redis-a");
    assert!(retransmit(&w, "shop", "redis-a") > 0);
    wait_retransmits(&w, PROBE_LABEL, &since);

    let out = w.kubectl_ok(&["delete", "-f", &sample(SAMPLE), "--timeout=60s"]);
    assert!(out.contains("deleted"), "{out}");
    let gone = w
        .kubectl(&["get", "networkprobe", PROBE, "-n", "shop"])
        .expect_err("deleted");
    assert!(gone.contains("NotFound"), "{gone}");
    wait_for("the plan ConfigMap removed on the delete event", 10, || {
        match w.kubectl(&["get", "configmap", &format!("nprobe.shop.{PROBE}"), "-n", SYSTEM_NS]) {
            Err(e) if e.contains("NotFound") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait_for("both agents to detach every program", 30, || {
        let left: Vec<usize> = w.nodes().iter().map(|n| w.program_count(n)).collect();
        if left.iter().all(|n| *n == 0) {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    wait_for("the series to disappear from Prometheus", 30, || {
        let s = w.prom.query("netprobe_tcp_retransmits_total");
        if s.is_empty() { Ok(()) } else { Err(format!("{s:?}")) }
    });
}

#[test]
fn s6_an_api_outage_keeps_metrics_flowing_and_status_converges_after() {
    let Some(mut w) = world_with_sample("s6") else {
        return;
    };
    let programs: Vec<_> = w.nodes().iter().map(|n| w.programs_of(n)).collect();
    let since = Retrans::start(&w, "shop", "redis-a");
    assert!(retransmit(&w, "shop", "redis-a") > 0);
    let first = wait_retransmits(&w, PROBE_LABEL, &since);

    w.stop_api();
    let down = Instant::now();
    assert!(
        w.kubectl(&["get", "networkprobes", "-A", "--request-timeout=2s"])
            .is_err(),
        "API still answers"
    );
    let mut total = first;
    while down.elapsed() < Duration::from_secs(10) {
        assert!(retransmit(&w, "shop", "redis-a") > 0);
        total = wait_retransmits(&w, PROBE_LABEL, &since);
        println!("API down {:?}: Prometheus = kernel = {total}", down.elapsed());
    }
    assert!(total > first, "counters grew during the outage");
    w.resume_api();

    // A change made after the outage converges, with no duplicated program.
    let p = update_sample(&w);
    assert_eq!(p["metadata"]["generation"], 2);
    w.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        &format!("networkprobe/{PROBE}"),
        "-n",
        "shop",
        "--timeout=60s",
    ]);
    for (node, before) in w.nodes().iter().zip(programs) {
        let now = w.programs_of(node);
        assert_eq!(now, before, "{node}: programs changed or were duplicated by the outage");
        let names: Vec<String> = now.into_iter().flatten().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "{node}: a program is attached twice");
    }
}

#[test]
fn s7_a_cluster_probe_selects_only_matching_namespaces() {
    let opts = WorldOptions {
        namespaces: vec![("shop", &[("netprobe.dev/observe", "true")]), ("other", &[])],
        ..WorldOptions::default()
    };
    let Some(mut w) = world("s7", opts) else { return };
    make_lossy(&mut w, "shop", "redis-a");
    make_lossy(&mut w, "other", "redis-x");
    w.kubectl_ok(&["apply", "-f", &sample("config/samples/cluster-network-probe.yaml")]);
    wait_nodes(&w, "clusternetworkprobe", None, "observed-namespaces", "Running");
    // the three shop pods
    wait_pods_matched(&w, "clusternetworkprobe", None, "observed-namespaces", 3);
    let since = Retrans::start(&w, "shop", "redis-a");
    let shop = retransmit(&w, "shop", "redis-a");
    let other = retransmit(&w, "other", "redis-x");
    assert!(shop > 0 && other > 0);
    wait_retransmits(&w, "ClusterNetworkProbe/observed-namespaces", &since);
    let namespaces: Vec<String> = w
        .prom
        .query("count by (namespace) ({__name__=~\"netprobe_tcp_.*|netprobe_packet_.*\", probe=~\"ClusterNetworkProbe/.*\"})")
        .into_iter()
        .filter_map(|(l, _)| l.get("namespace").cloned())
        .collect();
    assert_eq!(
        namespaces,
        vec!["shop".to_string()],
        "series outside the selected namespaces"
    );
}

#[test]
fn s8_a_standby_operator_takes_over_within_the_lease() {
    let lease = 6;
    let Some(mut w) = world(
        "s8",
        WorldOptions {
            operators: 2,
            lease_secs: lease,
            ..WorldOptions::default()
        },
    ) else {
        return;
    };
    let leader = wait_for("a leader", 30, || {
        lease_holder(&w).and_then(|h| if h.is_empty() { Err("none".into()) } else { Ok(h) })
    });
    let leading = |id: &str| {
        w.prom.value(
            "netprobe_operator_leader",
            &[(
                "instance",
                &w.operators
                    .iter()
                    .find(|o| o.identity == id)
                    .map(|o| o.addr.to_string())
                    .unwrap_or_default(),
            )],
        )
    };
    let standby = w
        .operators
        .iter()
        .map(|o| o.identity.clone())
        .find(|i| *i != leader)
        .unwrap_or_default();
    wait_for("the leader gauges", 30, || {
        match (leading(&leader), leading(&standby)) {
            (Some(1.0), Some(0.0)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");

    let killed = Instant::now();
    w.kill_operator(&leader);
    let new = wait_for("the standby to take the lease", 3 * lease, || {
        lease_holder(&w).and_then(|h| if h != leader && !h.is_empty() { Ok(h) } else { Err(h) })
    });
    let took = killed.elapsed();
    println!("leader {leader} killed; {new} holds the lease after {took:?} (lease {lease} s)");
    assert_eq!(new, standby);
    // The lease must run out first; the standby checks every lease/5.
    assert!(
        took <= Duration::from_secs_f64(lease as f64 * 1.2 + 1.0),
        "handover took {took:?}"
    );
    let p = update_sample(&w);
    assert_eq!(p["status"]["observedGeneration"], 2, "the new leader reconciles");
}

/// Every query of the shipped dashboard returns data from the real
/// Prometheus once every probe type has seen events, and its per-pod panels
/// count an event once when two probes select the pod.
#[test]
fn s9_every_dashboard_query_returns_data() {
    let opts = WorldOptions {
        namespaces: vec![("shop", &[("netprobe.dev/observe", "true")]), ("other", &[])],
        ..WorldOptions::default()
    };
    let Some(mut w) = world("s9", opts) else { return };
    make_lossy(&mut w, "shop", "redis-a");
    // Every probe type (the cluster sample) and, over redis-a, a second
    // probe: the namespaced retransmits sample.
    w.kubectl_ok(&["apply", "-f", &sample("config/samples/cluster-network-probe.yaml")]);
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    wait_nodes(&w, "clusternetworkprobe", None, "observed-namespaces", "Running");
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    wait_pods_matched(&w, "clusternetworkprobe", None, "observed-namespaces", 3);
    let since = Retrans::start(&w, "shop", "redis-a");
    assert!(retransmit(&w, "shop", "redis-a") > 0);
    refused_connects(&w, "shop", "redis-a", 5);
    // Datagrams to a closed port of the pod's own loopback: dropped without
    // a socket in its namespace.
    w.pod("shop", "redis-a").run(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range(5):\n    s.sendto(b'x', ('127.0.0.1', 9))\n",
    );
    // DNS: a scripted server on redis-a's peer (answers, SERVFAIL, delays,
    // no answer) and the pod's queries to it.
    w.pod_mut("shop", "redis-a")
        .serve_peer(&netprobe_pods::dns::dns_server(53));
    let peer = w.pod("shop", "redis-a").peer_ip4().to_string();
    w.pod("shop", "redis-a")
        .run(&netprobe_pods::dns::dns_client(&peer, None, 53, false));
    wait_retransmits(&w, "ClusterNetworkProbe/observed-namespaces", &since);
    wait_retransmits(&w, PROBE_LABEL, &since);

    let text = std::fs::read_to_string(repo_root().join("charts/netprobe/files/dashboard.json"))
        .unwrap_or_else(|e| panic!("dashboard: {e}"));
    let dash: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("dashboard JSON: {e}"));
    let exprs: Vec<(String, String)> = dash["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| t["expr"].as_str().map(|e| (title.clone(), e.to_string())))
        })
        .collect();
    assert!(exprs.len() >= 17, "{exprs:?}");
    // Grafana's variables as a user's default view sets them.
    let as_grafana = |e: &str| {
        e.replace("$namespace", ".*")
            .replace("$zone", ".*")
            .replace("$__rate_interval", "2m")
    };
    for (title, expr) in &exprs {
        let q = as_grafana(expr);
        wait_for(&format!("dashboard panel {title:?}: {q}"), 60, || {
            let got = w.prom.query(&q);
            if got.is_empty() {
                Err("no data".to_string())
            } else {
                Ok(())
            }
        });
    }
    // The per-pod retransmit panel's aggregation over the raw counters,
    // before and after a second round: redis-a's events once, although both
    // probes count them (an exact difference, not increase()'s estimate).
    let (_, per_pod) = exprs
        .iter()
        .find(|(t, _)| t == "TCP retransmits per pod")
        .unwrap_or_else(|| panic!("no retransmits panel in {exprs:?}"));
    let q = as_grafana(per_pod).replace("rate(", "(").replace("[2m]", "");
    let panel = || {
        w.prom
            .value(&q, &[("namespace", "shop"), ("pod", "redis-a")])
            .unwrap_or_else(|| panic!("no redis-a series in {q}: {:?}", w.prom.query(&q)))
    };
    let probes = ["ClusterNetworkProbe/observed-namespaces", PROBE_LABEL];
    let before: Vec<f64> = probes
        .iter()
        .map(|p| prom_retransmits(&w, p, "redis-a").unwrap_or_default())
        .collect();
    let panel_before = panel();
    let kernel = retransmit(&w, "shop", "redis-a");
    assert!(kernel > 0);
    for (p, b) in probes.iter().zip(&before) {
        wait_for(&format!("{p}: the second round in Prometheus"), 30, || {
            let now = prom_retransmits(&w, p, "redis-a").unwrap_or_default();
            if now - b >= 0.9 * kernel as f64 {
                Ok(())
            } else {
                Err(format!("{now} - {b} of {kernel}"))
            }
        });
    }
    let shown = panel() - panel_before;
    println!("redis-a: kernel {kernel} retransmits, dashboard panel {shown:.1}");
    // One probe's count is the kernel's; two summed would be twice it.
    assert!(
        shown >= 0.9 * kernel as f64 && shown < 1.5 * kernel as f64,
        "panel shows {shown} for {kernel} kernel retransmits"
    );
}

/// A probe past its series budget says so in its status within 10 s of the
/// events that exhausted it: admission is decided by the agent on its own
/// schedule and reaches the status loop through a channel, not as a side
/// effect of whenever Prometheus scrapes.
#[test]
fn s10_an_exhausted_series_budget_reaches_status_within_10_s() {
    let Some(mut w) = world("s10", WorldOptions::default()) else {
        return;
    };
    make_lossy(&mut w, "shop", "redis-a");
    w.apply(
        r#"{"apiVersion": "netprobe.dev/v1alpha1", "kind": "NetworkProbe",
            "metadata": {"name": "budget", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "redis"}},
                     "probes": [{"type": "TcpRetransmits", "tcpRetransmits": {"peerLabels": true}},
                                {"type": "TcpResets"}],
                     "metrics": {"maxSeriesPerNode": 1}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_nodes(&w, "networkprobe", Some("shop"), "budget", "Running");
    // Let every pending status write go out: the agents' status loops are
    // idle when the budget runs out, so only the budget can wake them.
    std::thread::sleep(Duration::from_secs(8));
    // Two families with a series each on one node: one more than the budget.
    assert!(retransmit(&w, "shop", "redis-a") > 0);
    refused_connects(&w, "shop", "redis-a", 3);
    let exhausted_at = Instant::now();
    // Through the node's report to the probe's own conditions.
    let p = wait_for("budget: SeriesBudgetExhausted in status", 10, || {
        let p = probe_json(&w, "networkprobe", Some("shop"), "budget")?;
        let any = node_entries(&w, "networkprobe", Some("shop"), "budget")
            .iter()
            .any(|(_, e)| e["seriesBudgetExhausted"] == Value::Bool(true));
        let degraded = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Degraded" && c["reason"] == "SeriesBudgetExhausted");
        if any && degraded {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    });
    println!(
        "budget exhausted → status after {:?}: {}",
        exhausted_at.elapsed(),
        p["status"]["conditions"]
    );
}

/// SIGTERM, as a pod's stop sends it to PID 1: the leader releases its Lease
/// and exits within 10 s, and the standby takes over within 5 s, not after
/// the lease runs out.
#[test]
fn s11_sigterm_hands_the_lease_over_within_5_s() {
    let lease = 15;
    let Some(mut w) = world(
        "s11",
        WorldOptions {
            operators: 2,
            lease_secs: lease,
            ..WorldOptions::default()
        },
    ) else {
        return;
    };
    let leader = wait_for("a leader", 30, || {
        lease_holder(&w).and_then(|h| if h.is_empty() { Err("none".into()) } else { Ok(h) })
    });
    let stopped = Instant::now();
    let took = w.stop_operator(&leader);
    println!("leader {leader} exited {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let new = wait_for("the standby to take the lease", 5, || {
        lease_holder(&w).and_then(|h| if h != leader && !h.is_empty() { Ok(h) } else { Err(h) })
    });
    println!(
        "{new} holds the lease {:?} after SIGTERM (lease {lease} s)",
        stopped.elapsed()
    );
    assert!(stopped.elapsed() < Duration::from_secs(5 + 1));
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
}

/// The probe's Ready condition: (status, reason, message).
fn ready_of(p: &Value) -> (String, String, String) {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        })
        .unwrap_or_default()
}

/// Liveness through the nodes' reports: a SIGKILLed agent's node is shown
/// not reporting (Ready=False naming it) within 60 s and recovers when the
/// agent returns; a SIGTERMed agent's node at once (its report says
/// stopping); the report of a deleted Node is removed.
#[test]
fn s12_a_dead_agent_shows_within_60_s_and_a_deleted_node_leaves_no_report() {
    let Some(mut w) = world_with_sample("s12") else {
        return;
    };
    let ready = wait_pods_matched(&w, "networkprobe", Some("shop"), PROBE, 2);
    assert_eq!(ready_of(&ready).0, "True", "{}", ready["status"]);
    let b = w.node("node-b");
    if !w.kill_agent(&b) {
        println!("s12: agents cannot be killed on this backend; skipped");
        return;
    }
    let killed = Instant::now();
    let p = wait_for("node-b not reporting", 60, || {
        let p = probe_json(&w, "networkprobe", Some("shop"), PROBE)?;
        let (status, reason, message) = ready_of(&p);
        if status == "False" && reason == "NodesNotReporting" && message.contains(&b) {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    });
    println!("s12: SIGKILL → not reporting after {:?}", killed.elapsed());
    assert_eq!(p["status"]["nodesReady"], "1/2", "{}", p["status"]);
    assert_eq!(p["status"]["nodeCounts"]["notReporting"], 1);
    assert_eq!(p["status"]["problemNodes"][0]["name"], b.as_str());
    let table = w.kubectl_ok(&["get", "networkprobe", PROBE, "-n", "shop"]);
    assert!(table.contains("1/2") && table.contains("False"), "{table}");

    // Back: a new agent renews the report.
    w.start_agent(&b);
    wait_for("node-b reporting again", 30, || {
        let p = probe_json(&w, "networkprobe", Some("shop"), PROBE)?;
        if ready_of(&p).0 == "True" && p["status"]["nodesReady"] == "2/2" {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    });

    // SIGTERM: the agent marks its report stopping; no waiting for the timeout.
    let a = w.node("node-a");
    let stopped = Instant::now();
    assert!(w.stop_agent(&a));
    wait_for("node-a stopping shows at once", 10, || {
        let p = probe_json(&w, "networkprobe", Some("shop"), PROBE)?;
        let (_, reason, message) = ready_of(&p);
        if reason == "NodesNotReporting" && message.contains(&a) {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    });
    println!("s12: SIGTERM → not reporting after {:?}", stopped.elapsed());

    // The Node goes (its agent with it): its report goes too.
    w.kubectl_ok(&["get", "networkprobenodereport", &a]);
    w.kubectl_ok(&["delete", "node", &a]);
    wait_for("node-a's report removed", 30, || {
        match w.kubectl(&["get", "networkprobenodereport", &a]) {
            Err(e) if e.contains("NotFound") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let p = wait_for("only node-b expected", 30, || {
        let p = probe_json(&w, "networkprobe", Some("shop"), PROBE)?;
        if p["status"]["nodesReady"] == "1/1" {
            Ok(p)
        } else {
            Err(p["status"].to_string())
        }
    });
    assert_eq!(ready_of(&p).0, "True", "{}", p["status"]);
}

/// Uninstall with probes present (as `helm uninstall` leaves them: CRDs and
/// resources stay, operator and agents go), then delete the probes and the
/// CRDs: nothing waits for an operator that is gone.
#[test]
fn s13_after_uninstall_probes_and_crds_delete_without_hanging() {
    let Some(mut w) = world_with_sample("s13") else {
        return;
    };
    if !w.can_stop_api() {
        println!("s13: runs against the stand-in only (it uninstalls the components)");
        return;
    }
    w.stop_operators();
    for node in w.nodes() {
        assert!(w.stop_agent(&node));
    }
    let out = w.kubectl_ok(&["delete", "-f", &sample(SAMPLE), "--timeout=20s"]);
    assert!(out.contains("deleted"), "{out}");
    let gone = w
        .kubectl(&["get", "networkprobe", PROBE, "-n", "shop"])
        .expect_err("deleted");
    assert!(gone.contains("NotFound"), "{gone}");
    let crds = repo_root().join("crds").display().to_string();
    let out = w.kubectl_ok(&["delete", "-f", &crds, "--timeout=20s"]);
    assert!(out.contains("networkprobes.netprobe.dev\" deleted"), "{out}");
    let left = w.kubectl_ok(&["get", "crd", "-o", "name"]);
    assert!(!left.contains("netprobe.dev"), "{left}");
}

/// Every string `from` inside `v`, replaced by `to`.
fn replace_strings(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s == from => *s = to.to_string(),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}

/// Plans are checked, not trusted: with the operator down, the sample's plan
/// edited to select namespace `other`, and a second ConfigMap claiming the
/// same probe, are refused by both agents (no series of `other` under the
/// probe); the operator, back, deletes the copy and restores the plan.
#[test]
fn s14_forged_plans_are_refused_and_removed() {
    let Some(mut w) = world_with_sample("s14") else {
        return;
    };
    make_lossy(&mut w, "other", "redis-x");
    w.stop_operators();
    let cm_name = format!("nprobe.shop.{PROBE}");
    let cm = w
        .get_json(&["configmap", &cm_name, "-n", SYSTEM_NS])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut plan: Value =
        serde_json::from_str(cm["data"]["plan.json"].as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    replace_strings(&mut plan["scope"], "shop", "other");
    let forged = serde_json::to_string(&plan).unwrap_or_else(|e| panic!("{e}"));
    // The canonical plan, edited, and a copy under another name.
    let patch = serde_json::json!({"data": {"plan.json": forged}}).to_string();
    w.kubectl_ok(&[
        "patch",
        "configmap",
        &cm_name,
        "-n",
        SYSTEM_NS,
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
    let mut copy = cm.clone();
    copy["metadata"] = serde_json::json!({"name": format!("{cm_name}-copy"), "namespace": SYSTEM_NS,
        "labels": cm["metadata"]["labels"].clone(), "annotations": cm["metadata"]["annotations"].clone()});
    copy["data"]["plan.json"] = Value::String(forged);
    w.apply(&serde_json::to_string(&copy).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for("both agents refuse the edited plan", 30, || {
        let entries = node_entries(&w, "networkprobe", Some("shop"), PROBE);
        let refused = entries
            .iter()
            .filter(|(_, e)| e["reason"] == "InvalidPlan" && e["message"].as_str().unwrap_or("").contains("refused"))
            .count();
        if refused == 2 {
            Ok(())
        } else {
            Err(format!("{entries:?}"))
        }
    });
    assert!(retransmit(&w, "other", "redis-x") > 0);
    std::thread::sleep(Duration::from_secs(3));
    let leaked = w.prom.query(&format!(
        "netprobe_tcp_retransmits_total{{probe=\"{PROBE_LABEL}\", namespace!=\"shop\"}}"
    ));
    assert!(leaked.is_empty(), "series of another namespace: {leaked:?}");

    // The operator returns: the copy goes, the plan is restored.
    w.restart_operators();
    wait_for("the forged copy deleted", 30, || {
        match w.kubectl(&["get", "configmap", &format!("{cm_name}-copy"), "-n", SYSTEM_NS]) {
            Err(e) if e.contains("NotFound") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
}

/// Peer classes end to end: the operator publishes the nodes' zones and pod
/// CIDRs, the agents classify redis-a's peer (an address in node-a's pod
/// CIDR) as a pod on node-a in zone-a, Prometheus shows the sample's series
/// with those labels and the kernel's total; when an admin moves the
/// peer's address into node-b's pod CIDRs, new retransmits are labelled
/// node-b and zone-b without restarting anything.
#[test]
fn s15_peer_classes_name_the_peers_node_and_zone_and_follow_the_nodes() {
    let Some(mut w) = world("s15", WorldOptions::default()) else {
        return;
    };
    if !w.is_standin() {
        println!("s15: needs nodes whose pod CIDRs the test sets (the stand-in API); skipped on a real cluster");
        return;
    }
    make_lossy(&mut w, "shop", "redis-a");
    w.kubectl_ok(&["apply", "-f", &sample(SAMPLE)]);
    wait_nodes(&w, "networkprobe", Some("shop"), PROBE, "Running");
    let since = Retrans::start(&w, "shop", "redis-a");
    assert!(retransmit(&w, "shop", "redis-a") > 0);
    wait_retransmits(&w, PROBE_LABEL, &since);
    let by_peer = |node: &str, zone: &str| {
        w.prom.value(
            &format!(
                "sum by (pod, peer_kind, peer_node, peer_zone, role, port, zone) \
                 (netprobe_tcp_retransmits_total{{probe=\"{PROBE_LABEL}\", peer_node=\"{node}\"}})"
            ),
            &[
                ("pod", "redis-a"),
                ("peer_kind", "pod"),
                ("peer_zone", zone),
                ("role", "client"),
                ("port", "5001"),
                ("zone", "zone-a"),
            ],
        )
    };
    let on_a = wait_for("redis-a's retransmits towards a pod on node-a in zone-a", 30, || {
        by_peer("node-a", "zone-a").ok_or_else(|| format!("{:?}", w.prom.query("netprobe_tcp_retransmits_total")))
    });
    println!("towards node-a: {on_a}");
    // The peer's address moves into node-b's pod CIDRs (a /32 there is a
    // longer prefix than node-a's /24).
    let peer = w.pod("shop", "redis-a").peer_ip4().to_string();
    w.kubectl_ok(&[
        "patch",
        "node",
        "node-b",
        "--type=merge",
        "-p",
        &format!("{{\"spec\": {{\"podCIDRs\": [\"{peer}/32\"]}}}}"),
    ]);
    wait_for("the operator's peer index to hold node-b's new CIDR", 30, || {
        let out = w.kubectl(&[
            "get",
            "configmaps",
            "-n",
            SYSTEM_NS,
            "-l",
            "netprobe.dev/peer-index",
            "-o",
            "json",
        ])?;
        if out.contains(&format!("{peer}/32")) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    // Give the agents a moment to rebuild their peer world, then retransmit.
    std::thread::sleep(Duration::from_secs(1));
    wait_for("new retransmits labelled node-b and zone-b", 60, || {
        retransmit(&w, "shop", "redis-a");
        by_peer("node-b", "zone-b").ok_or_else(|| "no series towards node-b yet".to_string())
    });
    // The pod's total over all its peer series is the kernel's, since the start.
    let total = wait_retransmits(&w, PROBE_LABEL, &since);
    println!("redis-a: {total} retransmits in all, towards node-a then node-b");
}

/// The tcp-aborts sample as a user ships it: the object in a ConfigMap made
/// with `kubectl create configmap --from-file`, the manifest naming it with
/// its digest, over every namespace.
fn program_probe(digest: &str) -> String {
    let text =
        std::fs::read_to_string(sample("config/samples/programs/tcp-aborts.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let text = text.replace(
        "          path: /usr/share/netprobe/programs/tcp_aborts.bpf.o",
        &format!("          configMap: {{name: tcp-aborts, key: prog.bpf.o}}\n          sha256: \"{digest}\""),
    );
    // Every namespace (the world's namespaces carry no observe label).
    text.replace(
        "  namespaceSelector:\n    matchLabels:\n      netprobe.dev/observe: \"true\"\n",
        "",
    )
}

/// The ConfigMap `kubectl create configmap --from-file` builds for the
/// object at `path` (binaryData, as for any ELF file), to apply as GitOps
/// would (the stand-in speaks JSON, not the protobuf `kubectl create` sends).
fn configmap_yaml(w: &World, path: &str) -> String {
    w.kubectl_ok(&[
        "create",
        "configmap",
        "tcp-aborts",
        "-n",
        SYSTEM_NS,
        &format!("--from-file=prog.bpf.o={path}"),
        "--dry-run=client",
        "-o",
        "yaml",
    ])
}

fn object_path(name: &str) -> String {
    format!("{}/{name}", netprobe_ebpf::sample_programs::DIR)
}

fn sha256_of(path: &str) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn s16_a_users_program_ships_through_a_configmap_and_counts_like_the_kernel() {
    let Some(mut w) = world("s16", WorldOptions::default()) else {
        return;
    };
    // Loading code is a cluster-admin power: a NetworkProbe with a Program
    // is refused at admission.
    let denied = w
        .apply(&std::fs::read_to_string(sample(SAMPLE)).unwrap_or_else(|e| panic!("{e}")).replace(
            "  probes:\n",
            "  probes:\n    - type: Program\n      program:\n        object: {path: /x.o}\n        metrics:\n          - {name: a_total, map: m, labels: [{name: pod, size: 4, decoder: pod}]}\n",
        ))
        .expect_err("a NetworkProbe with a Program must be refused");
    assert!(denied.contains("only in a ClusterNetworkProbe"), "{denied}");
    let object = object_path("tcp_aborts.bpf.o");
    let digest = sha256_of(&object);
    let yaml = configmap_yaml(&w, &object);
    assert!(yaml.contains("binaryData:"), "{yaml}");
    w.apply(&yaml).unwrap_or_else(|e| panic!("{e}"));
    w.apply(&program_probe(&digest)).unwrap_or_else(|e| panic!("{e}"));
    wait_nodes(&w, "clusternetworkprobe", None, "tcp-aborts", "Running");
    for (node, e) in node_entries(&w, "clusternetworkprobe", None, "tcp-aborts") {
        assert!(e["programs"].to_string().contains("tcp_aborts"), "{node}: {e}");
    }
    w.pod_mut("shop", "redis-a")
        .serve_peer(&servers(&[(5001, Serve::Sink)]));
    let pod = w.pod("shop", "redis-a");
    let rst0 = pod.nstat("TcpOutRsts");
    pod.run(&format!(
        "import socket, struct\nfor _ in range(30):\n    s = socket.create_connection(('{}', 5001), timeout=30)\n    \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n    s.close()\n",
        pod.peer_ip4()
    ));
    let got = wait_for("redis-a's aborts in Prometheus equal its TcpOutRsts", 30, || {
        let want = w.pod("shop", "redis-a").nstat("TcpOutRsts") - rst0;
        let got = w.prom.value(
            "sum by (namespace, pod) (app_tcp_aborts_total{probe=\"ClusterNetworkProbe/tcp-aborts\"})",
            &[("namespace", "shop"), ("pod", "redis-a")],
        );
        match got {
            Some(v) if v as u64 == want && want >= 30 => Ok(want),
            other => Err(format!("prometheus {other:?}, kernel {want}")),
        }
    });
    println!("s16: {got} aborts, as the kernel counted");
    // The ConfigMap changes without a new digest: an agent that reads it
    // again (restarted here) refuses it and says why; the other node, which
    // loaded the right bytes, keeps running.
    let yaml = configmap_yaml(&w, &object_path("sock_states.bpf.o"));
    w.apply(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let node_a = w.node("node-a");
    assert!(w.kill_agent(&node_a));
    w.start_agent(&node_a);
    let why = wait_for("node-a refuses the changed object", 60, || {
        let entries = node_entries(&w, "clusternetworkprobe", None, "tcp-aborts");
        match entries.iter().find(|(n, _)| *n == node_a) {
            Some((_, e)) if e["phase"] == "Failed" && e["reason"] == "ProgramFailed" => {
                Ok(e["message"].as_str().unwrap_or_default().to_string())
            }
            other => Err(format!("{other:?}")),
        }
    });
    assert!(why.contains("SHA-256") && why.contains("not loaded"), "{why}");
    let p = wait_for("the probe is Degraded, naming node-a", 30, || {
        let p = probe_json(&w, "clusternetworkprobe", None, "tcp-aborts")?;
        let degraded = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Degraded" && c["status"] == "True");
        if degraded { Ok(p) } else { Err(p["status"].to_string()) }
    });
    println!("s16: {}", p["status"]["conditions"]);
}
