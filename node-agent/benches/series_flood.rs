//! The series flood a tenant could aim at the node (issue: 16 probes with
//! peer labels over one pod that connects to 5,000 distinct peers), against
//! the agent in this process (release build): resident memory idle, after the
//! flood and a scrape, and after the probes are deleted; the scrape's time
//! and size. Prints figures; asserts nothing about speed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use netprobe_agent::agent::Agent;
use netprobe_agent::pipeline::desired::Desired;
use prometheus::{Encoder, TextEncoder};
use support::{Driver, Pod, kernel_available};

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn scrape(agent: &Agent) -> (Duration, usize, usize) {
    let started = Instant::now();
    let fams = agent.render();
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&fams, &mut buf);
    let series = fams.iter().map(|f| f.get_metric().len()).sum();
    (started.elapsed(), buf.len(), series)
}

fn main() {
    if !kernel_available("series flood bench") {
        return;
    }
    let limit = 20_000;
    let agent = Agent::new(false).expect("agent loads");
    agent.set_series_limit(limit);
    let pod = Pod::new(Driver::Systemd);
    let target = pod.target("shop", "f");
    let d = support::flood_desired(&target, 16);
    agent.set_desired(d).expect("apply");
    let _ = scrape(&agent);
    let idle = rss_mib();
    support::connect_to_distinct_dropped_peers(&pod, 5000);
    let mut scrapes = Vec::new();
    for _ in 0..5 {
        scrapes.push(scrape(&agent));
    }
    let flooded = rss_mib();
    scrapes.sort();
    let (took, bytes, series) = scrapes[scrapes.len() / 2];
    agent.set_desired(Desired::default()).expect("apply");
    // The agent's own admission schedule (every 5 s) sees the drop.
    agent.admit();
    let after = rss_mib();
    std::thread::sleep(Duration::from_secs(5));
    agent.admit();
    let (_, bytes_after, series_after) = scrape(&agent);
    println!("series flood (16 probes with peer labels, 5,000 peers, --max-series {limit}):");
    println!(
        "  scrape: {series} series, {:.1} MB, median of 5 {:.0} ms (target < 500 ms)",
        bytes as f64 / 1e6,
        took.as_secs_f64() * 1000.0
    );
    println!(
        "  resident: idle {idle:.1} MiB, flooded {flooded:.1} MiB (target < 64 MiB), after deleting the probes {after:.1} MiB \
         ({series_after} series left, {bytes_after} bytes scraped)"
    );
}
