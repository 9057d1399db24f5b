//! System scenarios ([README](../README.md)): Bad input and broken parts: refused and invalid specs, an API outage, an
//! exhausted series budget, a dead agent and a deleted node, forged plans.
//! The real operator and agents on this machine's kernel, a user's
//! `kubectl`, Prometheus as the reader, `nstat` as the oracle.

use std::time::{Duration, Instant};

use netprobe_e2e::scenario::*;
use netprobe_e2e::world::SYSTEM_NS;
use netprobe_e2e::{WorldOptions, wait_for};
use serde_json::Value;

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
    wait_sample_ready(&w);
    for (node, before) in w.nodes().iter().zip(programs) {
        let now = w.programs_of(node);
        assert_eq!(now, before, "{node}: programs changed or were duplicated by the outage");
        let names: Vec<String> = now.into_iter().flatten().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "{node}: a program is attached twice");
    }
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
