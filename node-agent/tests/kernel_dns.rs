//! Kernel tier, Dns: a DNS server in the pod's peer namespace answers a
//! scripted mix (response codes, a 150 ms delay, no answer, an answer after
//! the timeout); netprobe's responses by code, timeouts, queries and
//! response-time buckets equal what the pod's client saw, over IPv4 and
//! IPv6; an unselected pod's queries are not counted. Every kernel of the
//! matrix runs it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use netprobe_agent::agent::Agent;
use netprobe_agent::pipeline::desired::Desired;
use netprobe_api::ProbeType;
use support::dns::{SCRIPT, dns_client, dns_server};
use support::{Driver, Pod, counter, histogram, kernel_available, serial, series_pods};

const TIMEOUT: Duration = Duration::from_secs(1);

/// What the client saw: responses by code, their times, and timeouts (no
/// response, or one after TIMEOUT, as the agent counts it).
#[derive(Debug, Default)]
struct Seen {
    rcodes: BTreeMap<String, u64>,
    times: Vec<f64>,
    timeouts: u64,
}

fn tally(out: &str) -> Seen {
    let mut seen = Seen::default();
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["timeout"] => seen.timeouts += 1,
            ["rcode", code, secs] => {
                let secs: f64 = secs.parse().expect("seconds");
                if secs > TIMEOUT.as_secs_f64() {
                    seen.timeouts += 1;
                    continue;
                }
                let name = netprobe_agent::catalog::dns::rcode_name(code.parse().expect("code"));
                *seen.rcodes.entry(name.to_string()).or_default() += 1;
                seen.times.push(secs);
            }
            _ => {}
        }
    }
    seen
}

#[test]
fn dns_responses_timeouts_and_latency_equal_what_the_client_saw() {
    if !kernel_available("dns") {
        return;
    }
    let _s = serial();
    let agent = Agent::new(false).expect("agent loads");
    agent.set_dns(&[53], TIMEOUT).expect("dns settings");
    let mut selected = Pod::new(Driver::Systemd);
    let mut unselected = Pod::new(Driver::Cgroupfs);
    for p in [&mut selected, &mut unselected] {
        p.peer_spawn(&dns_server(53));
    }
    support::apply_one_type(&agent, ProbeType::Dns, &selected, &unselected);
    let client = |p: &Pod| dns_client(&p.peer_ip4, Some(&p.peer_ip6), 53);
    let (out, _) = (selected.run(&client(&selected)), unselected.run(&client(&unselected)));
    let seen = tally(&out);
    let sent: u64 = SCRIPT.iter().map(|(_, n)| *n as u64).sum::<u64>() * 2;
    println!("client saw: {seen:?} of {sent} queries");
    // The script did what it says: every query answered or not as planned.
    assert_eq!(seen.rcodes.values().sum::<u64>() + seen.timeouts, sent, "{out}");
    assert_eq!(seen.timeouts, 6, "two dropped and one late query per family: {out}");
    // Queries still pending are swept once they are older than the timeout.
    std::thread::sleep(TIMEOUT + Duration::from_millis(200));
    agent.sweep_dns().expect("sweep");
    let fams = agent.render();
    let pod = [("pod", "web-0")];
    let get = |name: &str, extra: &[(&str, &str)]| {
        let mut want = pod.to_vec();
        want.extend_from_slice(extra);
        counter(&fams, name, &want).unwrap_or(0.0) as u64
    };
    for (code, n) in &seen.rcodes {
        let got = get("netprobe_dns_responses_total", &[("rcode", code)]);
        println!("Dns rcode {code}: netprobe {got}, client {n}");
        assert_eq!(got, *n, "rcode {code}");
    }
    let timeouts = get("netprobe_dns_timeouts_total", &[]);
    println!("Dns timeouts: netprobe {timeouts}, client {}", seen.timeouts);
    assert_eq!(timeouts, seen.timeouts);
    assert_eq!(get("netprobe_dns_queries_total", &[]), sent);
    let (count, _sum, buckets) = histogram(&fams, "netprobe_dns_request_duration_seconds", &pod).expect("a histogram");
    println!("Dns latency: {count} observations, buckets {buckets:?}");
    assert_eq!(
        count,
        seen.times.len() as u64,
        "one observation per response within the timeout"
    );
    let cumulative = |le: f64| buckets.iter().find(|(b, _)| *b == le).map_or(0, |(_, c)| *c);
    for le in [0.025, 0.1, 0.25] {
        let want = seen.times.iter().filter(|t| **t <= le).count() as u64;
        // The client's clock starts before the kernel's and stops after: a
        // response it saw within a bound, the kernel saw within it too.
        assert!(
            cumulative(le) >= want,
            "le={le}: netprobe {}, client {want}",
            cumulative(le)
        );
    }
    assert_eq!(count - cumulative(0.1), 4, "the four 150 ms answers are above 0.1 s");
    assert_eq!(cumulative(0.25), count, "and below 0.25 s");
    let pods: Vec<String> = series_pods(&fams, "netprobe_dns_queries_total");
    assert_eq!(pods, vec!["web-0".to_string()], "the unselected pod has no series");
    agent.set_desired(Desired::default()).expect("apply");
}
