//! System scenarios ([README](../README.md)): What Prometheus shows is what the kernel counted: retransmits per pod
//! and namespace, every dashboard query, peer classes, a user's program
//! shipped in a ConfigMap.
//! The real operator and agents on this machine's kernel, a user's
//! `kubectl`, Prometheus as the reader, `nstat` as the oracle.

use std::time::Duration;

use netprobe_e2e::scenario::*;
use netprobe_e2e::world::{SYSTEM_NS, repo_root};
use netprobe_e2e::{World, WorldOptions, wait_for};
use netprobe_pods::{Serve, servers};
use serde_json::Value;

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

/// Every query of the shipped dashboard returns data from the real
/// Prometheus once every probe type has seen events, and its per-pod panels
/// count an event once when two probes select the pod.
#[test]
fn s9_every_dashboard_query_returns_data() {
    let Some(mut w) = world_observing_shop("s9") else {
        return;
    };
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
