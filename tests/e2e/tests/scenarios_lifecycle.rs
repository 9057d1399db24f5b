//! System scenarios ([README](../README.md)): A probe's life as its user drives it with `kubectl`: apply a sample and
//! see it ready, update it, delete it, select namespaces with a
//! ClusterNetworkProbe, uninstall.
//! The real operator and agents on this machine's kernel, a user's
//! `kubectl`, Prometheus as the reader, `nstat` as the oracle.

use netprobe_e2e::scenario::*;
use netprobe_e2e::world::{SYSTEM_NS, repo_root};
use netprobe_e2e::{WorldOptions, wait_for};

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
    wait_sample_ready(&w);
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
fn s7_a_cluster_probe_selects_only_matching_namespaces() {
    let Some(mut w) = world_observing_shop("s7") else {
        return;
    };
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
