//! System scenarios ([README](../README.md)): The operator's leader Lease: a standby takes over after a SIGKILL, and a
//! SIGTERM hands the Lease over at once.
//! The real operator and agents on this machine's kernel, a user's
//! `kubectl`, Prometheus as the reader, `nstat` as the oracle.

use std::time::{Duration, Instant};

use netprobe_e2e::scenario::*;
use netprobe_e2e::{World, WorldOptions, wait_for};

/// A world with two operators electing a leader over a Lease of `lease`
/// seconds, and the first leader.
fn two_operators(test: &str, lease: u64) -> Option<(World, String)> {
    let w = world(
        test,
        WorldOptions {
            operators: 2,
            lease_secs: lease,
            ..WorldOptions::default()
        },
    )?;
    let leader = wait_for("a leader", 30, || {
        lease_holder(&w).and_then(|h| if h.is_empty() { Err("none".into()) } else { Ok(h) })
    });
    Some((w, leader))
}

#[test]
fn s8_a_standby_operator_takes_over_within_the_lease() {
    let lease = 6;
    let Some((mut w, leader)) = two_operators("s8", lease) else {
        return;
    };
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

/// SIGTERM, as a pod's stop sends it to PID 1: the leader releases its Lease
/// and exits within 10 s, and the standby takes over within 5 s, not after
/// the lease runs out.
#[test]
fn s11_sigterm_hands_the_lease_over_within_5_s() {
    let lease = 15;
    let Some((mut w, leader)) = two_operators("s11", lease) else {
        return;
    };
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
