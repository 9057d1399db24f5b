//! The standalone loop: rescan manifests and cgroups, and apply what changed.

use std::path::PathBuf;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::agent::Agent;
use crate::standalone;

/// What the standalone loop reads, and how often.
pub struct Config {
    pub manifests: Vec<PathBuf>,
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    /// Cgroups down to this depth are attribution targets.
    pub depth: usize,
    pub rescan_interval: Duration,
}

/// Apply the manifests to the cgroups every `rescan_interval`, when either
/// changed. Runs until cancelled.
pub async fn run(cfg: Config, agent: Agent) {
    let mut last: Option<(Vec<String>, Vec<String>)> = None;
    let mut tick = tokio::time::interval(cfg.rescan_interval);
    loop {
        tick.tick().await;
        let (plans, rejected) = match standalone::load_plans(&cfg.manifests) {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "cannot read manifests; keeping the current probes");
                continue;
            }
        };
        let mut targets = standalone::cgroup_targets(&cfg.cgroup_root, cfg.depth);
        standalone::assign_netns(&mut targets, &cfg.proc_root);
        let fingerprint = (
            plans.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
            targets
                .values()
                .map(|t| format!("{}={}/{:?}", t.key, t.cgroup_id, t.netns))
                .collect::<Vec<_>>(),
        );
        if last.as_ref() == Some(&fingerprint) {
            continue;
        }
        for r in &rejected {
            warn!(manifest = %r.origin, reason = %r.reason, "probe rejected");
        }
        let desired = standalone::desired(&plans, targets);
        match agent.set_desired(desired) {
            Ok(report) => {
                for (t, why) in &report.unsupported {
                    warn!(probe = %t, reason = %why, "unsupported on this kernel");
                }
                for (t, why) in &report.partial {
                    warn!(probe = %t, reason = %why, "partial on this kernel");
                }
                info!(plans = plans.len(), programs = ?report.attached, "probes applied");
            }
            Err(e) => {
                // Retried at the next rescan: the agent stays unready
                // (`/readyz`) until an apply succeeds.
                error!(error = %e, "applying probes failed; retrying at the next rescan");
                continue;
            }
        }
        last = Some(fingerprint);
    }
}
