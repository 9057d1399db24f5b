//! The running agent: one probe manager behind a lock, the current desired
//! state, and the metrics it serves. Both modes (cluster and standalone)
//! drive it the same way: compute a `Desired`, call `set_desired`, serve
//! `render`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use netprobe_ebpf::btf::Btf;
use netprobe_ebpf::layout;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::kernel::manager::{ApplyReport, KernelFacts, ManagerError, ProbeManager};
use crate::kernel::prog_run::ProgRun;
use crate::pipeline::collector::{self, Baseline, Baselines, Budget, ReasonNames};
use crate::pipeline::desired::{Desired, KernelState};
use crate::pipeline::peers::PeerWorld;

struct Inner {
    manager: ProbeManager,
    desired: Desired,
    /// `desired.kernel()`, kept from the last apply instead of rebuilt per scrape.
    kernel: KernelState,
    budget: Budget,
    /// Where each (plan, target) pair started counting.
    baselines: Baselines,
    /// Series admitted at the last admission.
    admitted: usize,
    last_collect: Duration,
    /// Where peers are (Nodes, this node's pods, service CIDRs).
    world: Arc<PeerWorld>,
}

/// Hand freed heap back to the kernel after many series went away (probes
/// deleted): glibc's allocator keeps freed memory for reuse otherwise, and
/// an agent that once held a flood would stay that large.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many fewer series make freeing memory worth a malloc_trim.
const TRIM_AFTER_DROP: usize = 1024;

/// Every (plan key, target key) pair `desired` counts.
fn pairs(desired: &Desired) -> BTreeSet<(String, String)> {
    desired
        .plans
        .iter()
        .flat_map(|(p, pt)| pt.targets.iter().map(move |t| (p.clone(), t.clone())))
        .collect()
}

/// Per plan, the `packetDrops.reasons` this kernel's `enum skb_drop_reason`
/// does not name (reasons differ between kernels, so only the node can tell).
fn unknown_drop_reasons(desired: &Desired, known: &ReasonNames) -> BTreeMap<String, Vec<String>> {
    let known: BTreeSet<&str> = known.values().map(String::as_str).collect();
    desired
        .plans
        .iter()
        .filter_map(|(key, pt)| {
            let unknown: Vec<String> = pt
                .plan
                .probes
                .iter()
                .filter_map(|p| match p {
                    netprobe_api::PlannedProbe::PacketDrops(d) => Some(&d.reasons),
                    _ => None,
                })
                .flatten()
                .filter(|r| !known.contains(r.as_str()))
                .cloned()
                .collect();
            (!unknown.is_empty()).then(|| (key.clone(), unknown))
        })
        .collect()
}

/// The agent's kernel side and metrics, shareable across tasks.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Mutex<Inner>>,
    reasons: Arc<ReasonNames>,
    standalone: bool,
    /// Plans whose series budget is exhausted, as last admitted: status
    /// listens here instead of asking after a scrape.
    budget_tx: Arc<watch::Sender<BTreeSet<String>>>,
    /// Set by the first apply that succeeded: `/readyz` answers 200 from
    /// then on, so a DaemonSet rollout waits until a node's new agent has
    /// its probes in the kernel, and a test knows the metrics are current.
    applied: Arc<AtomicBool>,
}

impl Agent {
    pub fn new(standalone: bool) -> Result<Self, ManagerError> {
        // What we need from the kernel's BTF, then let the parsed BTF go.
        let (reasons, facts) = {
            let btf = Btf::from_kernel().map_err(|e| ManagerError::Btf(e.to_string()))?;
            (
                Arc::new(collector::drop_reason_names(&btf)),
                KernelFacts::from_btf(&btf),
            )
        };
        let manager = ProbeManager::new(facts)?;
        Ok(Agent {
            inner: Arc::new(Mutex::new(Inner {
                manager,
                desired: Desired::default(),
                kernel: KernelState::default(),
                budget: Budget::default(),
                baselines: Baselines::new(),
                admitted: 0,
                last_collect: Duration::ZERO,
                world: PeerWorld::standalone(Vec::new()),
            })),
            reasons,
            standalone,
            budget_tx: Arc::new(watch::Sender::new(BTreeSet::new())),
            applied: Arc::new(AtomicBool::new(false)),
        })
    }

    /// What the agent knows of where peers are; swapped whole when the
    /// cluster's Nodes or this node's pods change.
    pub fn set_peer_world(&self, world: Arc<PeerWorld>) {
        self.lock().world = world;
    }

    /// The host's cgroup2 root, where users' cgroup_skb programs attach
    /// (and Traffic's and Dns's, unless `set_skb_cgroup` narrowed them).
    pub fn set_cgroup_root(&self, root: std::path::PathBuf) {
        self.lock().manager.set_cgroup_root(root);
    }

    /// The cgroup every pod is below, where Traffic's and Dns's
    /// cgroup_skb programs attach instead of the root (before the first
    /// apply): the host's own packets then run none of them.
    pub fn set_skb_cgroup(&self, dir: std::path::PathBuf) {
        self.lock().manager.set_skb_cgroup(dir);
    }

    /// The DNS server ports Dns watches and its timeout (the agent's
    /// `--dns-ports` and `--dns-timeout`, the same for every tenant).
    pub fn set_dns(&self, ports: &[u16], timeout: Duration) -> Result<(), ManagerError> {
        self.lock().manager.set_dns(ports, timeout)
    }

    /// Count the DNS queries that timed out without a response (see
    /// `ProbeManager::sweep_dns`); the number swept.
    pub fn sweep_dns(&self) -> Result<usize, ManagerError> {
        self.lock().manager.sweep_dns()
    }

    /// Forget pending connects that lost their close, counting each as
    /// untracked for its pod (`np_connect_sweep`). Runs the program
    /// without holding the manager.
    pub fn sweep_connects(&self) -> std::io::Result<()> {
        let sweeper = self.lock().manager.connect_sweeper();
        match sweeper {
            Some(s) => s.run().map(|_| ()),
            None => Ok(()),
        }
    }

    /// How long a connect may pend before the sweep forgets it (default 10
    /// minutes; see `ProbeManager::set_connect_max_age`).
    pub fn set_connect_max_age(&self, age: Duration) -> Result<(), ManagerError> {
        self.lock().manager.set_connect_max_age(age)
    }

    /// How many pending connects one pod may hold (`--connect-pending-per-pod`).
    pub fn set_connect_share(&self, share: u32) -> Result<(), ManagerError> {
        self.lock().manager.set_connect_share(share)
    }

    /// What users' programs may be and take on this node (the agent's
    /// `--max-programs`, `--program-map-memory`, `--program-types`).
    pub fn set_program_limits(&self, limits: crate::kernel::programs::ProgramLimits) {
        self.lock().manager.set_program_limits(limits);
    }

    /// Bound the series this agent exports to `limit`, shared equally
    /// between tenants (`collector::Budget::with_node_limit`).
    pub fn set_series_limit(&self, limit: usize) {
        self.lock().budget = Budget::with_node_limit(limit);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Reconfigure the kernel for `desired` (by diff) and keep it for metrics.
    pub fn set_desired(&self, desired: Desired) -> Result<ApplyReport, ManagerError> {
        let mut g = self.lock();
        let kernel = desired.kernel();
        // A plan that starts counting a pod already counted (by another
        // plan) starts from that pod's counters now, not from their past. A
        // pod newly registered gets a zeroed slot: no baseline needed.
        let (old, new) = (pairs(&g.desired), pairs(&desired));
        let fresh: Vec<&(String, String)> = new.difference(&old).collect();
        let mut starts: Vec<((String, String), Option<u32>)> = fresh
            .iter()
            .map(|pair| ((*pair).clone(), g.manager.slots().get(&pair.1).copied()))
            .collect();
        if starts.iter().any(|(_, slot)| slot.is_some()) {
            match g.manager.snapshot() {
                Ok(snap) => {
                    for (pair, slot) in starts.drain(..) {
                        if let Some(slot) = slot {
                            g.baselines.insert(pair, Baseline::of_slot(&snap, slot));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading counters for new probes' baselines failed"),
            }
        }
        g.baselines.retain(|pair, _| new.contains(pair));
        let mut report = g.manager.apply(&kernel)?.clone();
        report.unknown_drop_reasons = unknown_drop_reasons(&desired, &self.reasons);
        for (plan, names) in &report.unknown_drop_reasons {
            tracing::warn!(%plan, ?names, "packetDrops.reasons names drop reasons this kernel does not have");
        }
        g.desired = desired;
        g.kernel = kernel;
        self.applied.store(true, Ordering::Relaxed);
        Ok(report)
    }

    /// The readiness flag of the metrics endpoint: true once a desired
    /// state (possibly empty) is in the kernel.
    pub fn applied_flag(&self) -> Arc<AtomicBool> {
        self.applied.clone()
    }

    /// Plans whose series budget overflowed at the last admission.
    pub fn budget_exhausted(&self) -> BTreeSet<String> {
        self.budget_tx.borrow().clone()
    }

    /// Changes of [`Agent::budget_exhausted`], for the status loop to wake on.
    pub fn budget_watch(&self) -> watch::Receiver<BTreeSet<String>> {
        self.budget_tx.subscribe()
    }

    fn publish_budget(&self, budget: &Budget) {
        self.budget_tx.send_if_modified(|cur| {
            if cur == budget.exhausted() {
                false
            } else {
                *cur = budget.exhausted().clone();
                true
            }
        });
    }

    /// Admit the current series under each plan's budget without rendering
    /// them (the agent's own schedule, scrape or not).
    pub fn admit(&self) {
        let mut g = self.lock();
        match g.manager.snapshot() {
            Ok(snap) => {
                self.admitted_series(&mut g, &snap);
            }
            Err(e) => tracing::warn!(error = %e, "reading kernel counters failed"),
        }
    }

    /// The plans' series from `snap`, admitted under their budgets; the
    /// exhausted plans published.
    fn admitted_series(
        &self,
        inner: &mut Inner,
        snap: &crate::kernel::manager::Snapshot,
    ) -> Vec<collector::PlanSeries> {
        let mut s = collector::series(
            &inner.desired,
            &inner.kernel,
            inner.manager.slots(),
            snap,
            &self.reasons,
            &inner.baselines,
            &inner.world,
        );
        collector::admit(&mut s, &mut inner.budget, self.standalone);
        self.publish_budget(&inner.budget);
        let admitted = inner.budget.admitted_by_tenant().values().sum();
        if inner.admitted >= admitted + TRIM_AFTER_DROP {
            release_freed_memory();
        }
        inner.admitted = admitted;
        s
    }

    /// Kernel run time and count of every attached program.
    pub fn program_stats(&self) -> Vec<crate::kernel::manager::ProgramStats> {
        self.lock().manager.program_stats()
    }

    pub fn rtt_sampler(&self) -> Option<Arc<ProgRun>> {
        self.lock().manager.rtt_sampler()
    }

    /// Every family: the plans' series and the agent's own.
    pub fn render(&self) -> Vec<MetricFamily> {
        let started = Instant::now();
        let mut g = self.lock();
        let inner = &mut *g;
        let mut fams = match inner.manager.snapshot() {
            Ok(snap) => {
                let series = self.admitted_series(inner, &snap);
                let mut fams = collector::families(series, self.standalone);
                let mut full = family(
                    "netprobe_agent_map_full_total",
                    "Events not counted because the kernel refused an eBPF map update: the map full, or (rarely) its bucket held on that CPU by the program a softirq interrupted.",
                    MetricType::COUNTER,
                );
                for (i, name) in layout::ERROR_NAMES.iter().enumerate() {
                    full.mut_metric().push(counter(
                        &[("map", name)],
                        snap.errors.get(i).copied().unwrap_or(0) as f64,
                    ));
                }
                fams.push(full);
                // A user program's map larger than one scrape reads: its
                // metric is partial, and says so.
                let mut truncated = family(
                    "netprobe_agent_program_map_truncated",
                    "1 for each user program metric whose map held more entries than the agent reads per scrape (65,536): its series are partial.",
                    MetricType::GAUGE,
                );
                for (plan, pc) in &snap.programs {
                    for metric in &pc.truncated {
                        truncated
                            .mut_metric()
                            .push(gauge(&[("probe", plan.as_str()), ("metric", metric.as_str())], 1.0));
                    }
                }
                fams.push(truncated);
                fams
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading kernel counters failed");
                Vec::new()
            }
        };
        let mut loaded = family(
            "netprobe_agent_programs_loaded",
            "eBPF programs attached.",
            MetricType::GAUGE,
        );
        loaded
            .mut_metric()
            .push(gauge(&[], inner.manager.programs_attached() as f64));
        fams.push(loaded);
        let report = inner.manager.report();
        for (name, help, types) in [
            (
                "netprobe_agent_probe_unsupported",
                "1 for each probe type this kernel cannot run.",
                &report.unsupported,
            ),
            (
                "netprobe_agent_probe_partial",
                "1 for each probe type that sees only part of what the kernel counts on this kernel (the node's status says what is missing).",
                &report.partial,
            ),
        ] {
            let mut f = family(name, help, MetricType::GAUGE);
            for t in types.keys() {
                f.mut_metric().push(gauge(&[("type", t.as_str())], 1.0));
            }
            fams.push(f);
        }
        let mut entries = family(
            "netprobe_agent_map_entries",
            "Entries in the agent's target maps.",
            MetricType::GAUGE,
        );
        for (map, n) in inner.manager.map_entries() {
            entries.mut_metric().push(gauge(&[("map", map)], n as f64));
        }
        fams.push(entries);
        let mut exhausted = family(
            "netprobe_agent_series_budget_exhausted",
            "1 for each probe whose series budget overflowed.",
            MetricType::GAUGE,
        );
        for p in inner.budget.exhausted() {
            exhausted.mut_metric().push(gauge(&[("probe", p)], 1.0));
        }
        fams.push(exhausted);
        let mut series = family(
            "netprobe_agent_series",
            "Series admitted, by tenant (a namespace, or the cluster's probes), under the node's limit.",
            MetricType::GAUGE,
        );
        for (tenant, n) in inner.budget.admitted_by_tenant() {
            series.mut_metric().push(gauge(&[("tenant", &tenant)], n as f64));
        }
        fams.push(series);
        if let Some(limit) = inner.budget.node_limit() {
            let mut f = family(
                "netprobe_agent_series_limit",
                "Most series this agent exports (--max-series), shared equally between tenants.",
                MetricType::GAUGE,
            );
            f.mut_metric().push(gauge(&[], limit as f64));
            fams.push(f);
        }
        let stats = inner.manager.program_stats();
        let mut run_time = family(
            "netprobe_agent_program_run_seconds_total",
            "Kernel time spent in each program (needs kernel.bpf_stats_enabled=1).",
            MetricType::COUNTER,
        );
        let mut runs = family(
            "netprobe_agent_program_runs_total",
            "Runs of each program (needs kernel.bpf_stats_enabled=1).",
            MetricType::COUNTER,
        );
        let mut misses = family(
            "netprobe_agent_program_recursion_misses_total",
            "Events a program missed because it was already running on that CPU (kernel recursion protection).",
            MetricType::COUNTER,
        );
        for s in &stats {
            misses.mut_metric().push(counter(
                &[("program", s.program.as_str()), ("type", s.probe.as_str())],
                s.recursion_misses as f64,
            ));
            run_time.mut_metric().push(counter(
                &[("program", s.program.as_str()), ("type", s.probe.as_str())],
                s.run_time_ns as f64 / 1e9,
            ));
            runs.mut_metric().push(counter(
                &[("program", s.program.as_str()), ("type", s.probe.as_str())],
                s.run_count as f64,
            ));
        }
        fams.push(run_time);
        fams.push(runs);
        fams.push(misses);
        let mut took = family(
            "netprobe_agent_collection_duration_seconds",
            "Time the previous scrape took to read and render kernel counters.",
            MetricType::GAUGE,
        );
        took.mut_metric().push(gauge(&[], inner.last_collect.as_secs_f64()));
        fams.push(took);
        inner.last_collect = started.elapsed();
        fams.retain(|f| !f.get_metric().is_empty());
        fams
    }

    /// The text exposition of [`Agent::render`].
    pub fn exposition(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.render(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(n, v)| {
            let mut l = LabelPair::default();
            l.set_name(n.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    let mut c = Counter::default();
    c.set_value(v);
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    let mut g = Gauge::default();
    g.set_value(v);
    m.set_gauge(g);
    m
}

/// Admit series under the budgets every `every`, so exhaustion reaches
/// status (and the gauge) whether or not anything scrapes the agent.
pub async fn admit_forever(agent: Agent, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let a = agent.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || a.admit()).await {
            tracing::warn!(error = %e, "series admission task failed");
        }
    }
}

/// Run `work` off the async threads every `every`, forever, logging what
/// fails (as `what`).
async fn blocking_every<E, T>(
    every: Duration,
    what: &'static str,
    work: impl Fn() -> Result<T, E> + Send + Sync + Clone + 'static,
) where
    E: std::fmt::Display + Send + 'static,
    T: Send + 'static,
{
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let w = work.clone();
        match tokio::task::spawn_blocking(w).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed"),
            Err(e) => tracing::warn!(error = %e, "{what} task failed"),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sweep timed-out DNS queries every `every` while Dns is attached.
pub async fn sweep_dns_forever(agent: Agent, every: Duration) {
    blocking_every(every, "DNS sweep", move || agent.sweep_dns()).await
}

/// Sweep pending connects that lost their close every `every` while
/// TcpConnectLatency is attached: a walk of the table's 65,536 buckets
/// (about 0.3 ms here) for entries 10 minutes old, so not often.
pub async fn sweep_connects_forever(agent: Agent, every: Duration) {
    blocking_every(every, "pending-connect sweep", move || agent.sweep_connects()).await
}

/// Run the RTT sampler every `every` while TcpRtt is attached.
pub async fn sample_rtt_forever(agent: Agent, every: Duration) {
    blocking_every(every, "RTT sampling", move || match agent.rtt_sampler() {
        Some(sampler) => sampler.run().map(|_| ()),
        None => Ok(()),
    })
    .await
}
