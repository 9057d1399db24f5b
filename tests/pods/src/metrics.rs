//! Reading the oracles and the agent's answers: the kernel's counters
//! (`nstat`) and netprobe's metric families, as the kernel and system
//! tests compare them.

use std::collections::BTreeMap;

use std::time::Duration;

use netprobe_agent::agent::Agent;
use prometheus::proto::MetricFamily;

/// What netprobe's retransmit count of a network namespace must be since a
/// starting point: `TcpRetransSegs`, less at most `TCPRetransFail` (since
/// Linux 6.16 the kernel counts a retransmission before a local send
/// failure; netprobe counts sent segments: docs/probes.md).
pub struct RetransOracle {
    segs0: u64,
    fail0: u64,
}

impl RetransOracle {
    /// Start from the current counters; `nstat` reads one counter.
    pub fn start(nstat: impl Fn(&str) -> u64) -> Self {
        Self {
            segs0: nstat("TcpRetransSegs"),
            fail0: nstat("TcpExtTCPRetransFail"),
        }
    }

    /// Check netprobe's count `got` against the counters now: Ok with the
    /// TcpRetransSegs delta, or Err describing every figure. `missed` is the
    /// retransmit program's recursion misses (runs the kernel skipped while
    /// the program was already running on that CPU, which the agent
    /// exports): each may be one segment netprobe did not see.
    pub fn check(&self, nstat: impl Fn(&str) -> u64, got: Option<f64>, missed: u64) -> Result<u64, String> {
        let segs = nstat("TcpRetransSegs") - self.segs0;
        let fail = nstat("TcpExtTCPRetransFail") - self.fail0;
        let floor = segs.saturating_sub(fail).saturating_sub(missed);
        let ok = got.is_some_and(|v| v <= segs as f64 && v >= floor as f64);
        let seen = format!("netprobe {got:?}, TcpRetransSegs {segs}, TCPRetransFail {fail}, recursion misses {missed}");
        println!("{seen}");
        if ok { Ok(segs) } else { Err(seen) }
    }
}

/// Recursion misses of the TcpRetransmits programs, from an agent's
/// metrics in the text exposition (see [`RetransOracle::check`]).
pub fn retransmit_misses(exposition: &str) -> u64 {
    exposition
        .lines()
        .filter(|l| {
            l.starts_with("netprobe_agent_program_recursion_misses_total{") && l.contains("type=\"TcpRetransmits\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The value of `counter` in `nstat -asz` output.
pub fn parse_nstat(text: &str, counter: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(counter))
                .then(|| it.next().and_then(|v| v.parse().ok()))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no {counter} in nstat output: {text}"))
}

/// Value of a counter series whose labels include all of `want`.
pub fn counter(fams: &[MetricFamily], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for f in fams.iter().filter(|f| f.name() == name) {
        for m in f.get_metric() {
            let labels: BTreeMap<&str, &str> = m.get_label().iter().map(|l| (l.name(), l.value())).collect();
            if want.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                *found.get_or_insert(0.0) += m.get_counter().get_value();
            }
        }
    }
    found
}

/// (count, sum, cumulative (upper bound, count) buckets) of a histogram.
pub type Hist = (u64, f64, Vec<(f64, u64)>);

/// The histogram series matching `want`, summed when several do (the
/// series of one plan share their bounds).
pub fn histogram(fams: &[MetricFamily], name: &str, want: &[(&str, &str)]) -> Option<Hist> {
    let mut found: Option<Hist> = None;
    for f in fams.iter().filter(|f| f.name() == name) {
        for m in f.get_metric() {
            let labels: BTreeMap<&str, &str> = m.get_label().iter().map(|l| (l.name(), l.value())).collect();
            if want.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                let h = m.get_histogram();
                let (count, sum, buckets) = found.get_or_insert_with(|| {
                    let bounds = h.get_bucket().iter().map(|b| (b.upper_bound(), 0)).collect();
                    (0, 0.0, bounds)
                });
                *count += h.get_sample_count();
                *sum += h.get_sample_sum();
                for (acc, b) in buckets.iter_mut().zip(h.get_bucket()) {
                    acc.1 += b.cumulative_count();
                }
            }
        }
    }
    found
}

/// Every label value set of a family (to check who has series at all).
pub fn series_pods(fams: &[MetricFamily], name: &str) -> Vec<String> {
    fams.iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter_map(|m| {
            m.get_label()
                .iter()
                .find(|l| l.name() == "pod")
                .map(|l| l.value().to_string())
        })
        .collect()
}

/// Every counter series of a family: its labels and value.
pub fn counter_series(fams: &[MetricFamily], name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    fams.iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            (labels, m.get_counter().get_value())
        })
        .collect()
}

/// Render until `check` accepts what the agent shows (late retransmits, of a
/// lost FIN say, arrive after the client exits), at most ~3 s; panics with
/// the last difference.
pub fn settle(agent: &Agent, check: impl Fn(&[MetricFamily]) -> Result<u64, String>) -> (u64, Vec<MetricFamily>) {
    let mut last = String::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let fams = agent.render();
        match check(&fams) {
            Ok(v) => return (v, fams),
            Err(e) => last = e,
        }
    }
    panic!("netprobe does not match the kernel: {last}");
}
