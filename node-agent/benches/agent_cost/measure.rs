//! How the bench turns runs into figures: medians and quartiles, A/B in
//! ABBA order, and the share of the machine's busy CPU spent inside the
//! programs (Method 3 in BENCHMARKS.md).

use netprobe_agent::agent::Agent;

/// The first and third quartile, to show the spread a median hides.
fn quartiles(v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return "-".into();
    }
    format!("{:.3e}–{:.3e}", v[v.len() / 4], v[(3 * v.len()) / 4])
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// `f` with `set(true)` against `set(false)`, ABBA, `per_arm` runs each.
pub fn ab_switch(name: &str, per_arm: usize, mut set: impl FnMut(bool), f: impl Fn() -> f64) {
    let (mut without, mut with) = (Vec::new(), Vec::new());
    // A B B A A B …: neither side always runs first after a switch.
    for i in 0..2 * per_arm {
        let attached = i % 4 == 1 || i % 4 == 2;
        set(attached);
        if attached {
            with.push(f());
        } else {
            without.push(f());
        }
    }
    set(false);
    // Medians: one disturbed run on a shared machine should not decide.
    let (w, wo) = (median(with.clone()), median(without.clone()));
    let runs = |v: &[f64]| v.iter().map(|x| format!("{x:.3e}")).collect::<Vec<_>>().join(" ");
    println!(
        "{name}: median without {wo:.3e} (quartiles {}), with {w:.3e} (quartiles {}) -> ratio {:.3}\n    runs without [{}]\n    runs with    [{}]",
        quartiles(&without),
        quartiles(&with),
        w / wo,
        runs(&without),
        runs(&with),
    );
}

/// The machine's busy CPU time so far, ns: user, nice, system, irq and
/// softirq of every CPU (not idle, iowait or steal), from /proc/stat.
fn cpu_busy_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|i| ticks.get(*i)).sum();
    // SAFETY: sysconf reads a constant of the running system.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    busy * 1_000_000_000 / hz
}

/// Share of the CPU a workload burns that runs inside the programs
/// `run_time` sums (their `bpf_stats` run time, ns): `windows` runs of `f`,
/// which returns how many units (connections, bytes) it did, with bpf_stats
/// on. Numerator and denominator come from the same windows, so the
/// machine's drift between windows, which moves an A/B rate ratio by ±10%
/// here, divides out. It leaves out each run's dispatch (the trampoline,
/// the cgroup program array), which the empty programs' rate ratio shows.
pub fn program_share(name: &str, unit: &str, windows: usize, run_time: impl Fn() -> u64, f: impl Fn() -> f64) {
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let (t0, c0) = (run_time(), cpu_busy_ns());
    let units: f64 = (0..windows).map(|_| f()).sum();
    let (t1, c1) = (run_time(), cpu_busy_ns());
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    let (prog, cpu) = (t1.saturating_sub(t0) as f64, c1.saturating_sub(c0) as f64);
    println!(
        "{name}: programs {:.0} ns per {unit} of {:.1} us CPU per {unit} -> {:.2}% of the CPU ({windows} windows)",
        prog / units.max(1.0),
        cpu / units.max(1.0) / 1000.0,
        100.0 * prog / cpu.max(1.0)
    );
}

/// Run time (ns, bpf_stats) of every program the agent attached, summed.
pub fn agent_run_time(agent: &Agent) -> u64 {
    agent.program_stats().iter().map(|s| s.run_time_ns).sum()
}
