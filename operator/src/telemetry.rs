//! The operator's own metrics (served by `netprobe-telemetry`'s endpoint).

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Reconcile counters and timings, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    pub leader: IntGauge,
    pub orphans_removed: IntCounter,
    /// 1 when a probe's condition is True (for alerting on Degraded).
    conditions: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "netprobe_operator_reconciles_total",
                "Reconciles run, by kind of probe.",
            ),
            &["kind"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let errors = IntCounterVec::new(
            Opts::new(
                "netprobe_operator_reconcile_errors_total",
                "Reconciles that failed, by kind of probe.",
            ),
            &["kind"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "netprobe_operator_reconcile_duration_seconds",
                "Time spent in one reconcile.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["kind"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let leader = IntGauge::new(
            "netprobe_operator_leader",
            "1 while this replica holds the leader lease.",
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let orphans_removed = IntCounter::new(
            "netprobe_operator_orphan_plans_removed_total",
            "Plan ConfigMaps removed because their source was gone.",
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let conditions = IntGaugeVec::new(
            Opts::new(
                "netprobe_operator_probe_condition",
                "1 when the probe's condition is True, 0 when False.",
            ),
            &["kind", "namespace", "name", "condition"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(leader.clone()),
            Box::new(orphans_removed.clone()),
            Box::new(conditions.clone()),
        ] {
            registry
                .register(c)
                .unwrap_or_else(|e| unreachable!("distinct metric names: {e}"));
        }
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            leader,
            orphans_removed,
            conditions,
        }
    }

    pub fn observe(&self, kind: &str, took: Duration, ok: bool) {
        self.reconciles.with_label_values(&[kind]).inc();
        if !ok {
            self.errors.with_label_values(&[kind]).inc();
        }
        self.duration.with_label_values(&[kind]).observe(took.as_secs_f64());
    }

    /// Record a probe's conditions (True → 1).
    pub fn set_conditions(&self, kind: &str, namespace: &str, name: &str, conds: &[(String, bool)]) {
        for (c, v) in conds {
            self.conditions
                .with_label_values(&[kind, namespace, name, c.as_str()])
                .set(i64::from(*v));
        }
    }

    /// Forget a deleted probe's conditions.
    pub fn forget_probe(&self, kind: &str, namespace: &str, name: &str) {
        for c in ["Ready", "Degraded", "InvalidSpec"] {
            let _ = self.conditions.remove_label_values(&[kind, namespace, name, c]);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_passes_promtool() {
        let m = Metrics::new();
        m.observe("NetworkProbe", Duration::from_millis(3), true);
        m.observe("ClusterNetworkProbe", Duration::from_millis(30), false);
        m.leader.set(1);
        let text = m.render();
        assert!(
            text.contains("netprobe_operator_reconcile_errors_total{kind=\"ClusterNetworkProbe\"} 1"),
            "{text}"
        );
        netprobe_testutil::promtool_check("operator exposition", &text);
    }
}
