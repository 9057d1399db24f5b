use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use netprobe_operator::leader::LeaderElector;
use netprobe_operator::reconcile::Context;
use netprobe_operator::telemetry::Metrics;
use netprobe_operator::{controller, crdgen};
use netprobe_telemetry::{AuthMode, Endpoint, LogFormat, MetricsSecurity};
use tracing::{error, info, warn};

/// netprobe-operator: turns NetworkProbes into plans for the node agents.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Namespace holding plan ConfigMaps and the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = netprobe_api::keys::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "NETPROBE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    #[command(flatten)]
    metrics_security: MetricsSecurity,
    /// Run only while holding the Lease, so several replicas can run.
    #[arg(long, env = "NETPROBE_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Lease name for leader election.
    #[arg(long, default_value = "netprobe-operator")]
    lease_name: String,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Identity in the Lease (defaults to the pod name, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log format.
    #[arg(long, env = "NETPROBE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Write the CRD YAML generated from the API types.
    Crdgen {
        /// Directory to write into.
        #[arg(long, default_value = "crds")]
        out: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crdgen { out }) = &cli.command {
        return crdgen::write(out);
    }
    netprobe_telemetry::init_logging(cli.log_format);
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found")?;
    let identity = cli.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let access = cli
        .metrics_security
        .access(Some(client.clone()), AuthMode::Kubernetes)
        .context("metrics endpoint")?;
    let endpoint = Endpoint {
        render: Arc::new({
            let m = metrics.clone();
            move || m.render()
        }),
        ready: Some(ready.clone()),
    };
    tokio::spawn({
        let addr = cli.metrics_addr;
        async move {
            if let Err(e) = netprobe_telemetry::serve(addr, endpoint, access).await {
                error!(error = format!("{e:#}"), "metrics server stopped");
            }
        }
    });

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });

    let elector = cli.leader_elect.then(|| {
        LeaderElector::new(
            client.clone(),
            &cli.namespace,
            &cli.lease_name,
            &identity,
            Duration::from_secs(cli.lease_duration),
        )
    });
    if let Some(el) = &elector {
        // A standby is healthy and ready: it serves metrics and waits.
        ready.store(true, Ordering::Relaxed);
        info!(%identity, lease = %cli.lease_name, "waiting for leadership");
        loop {
            if *shutdown_rx.borrow() {
                return Ok(());
            }
            match el.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "lease check failed"),
            }
            tokio::time::sleep(el.duration / 5).await;
        }
        info!(%identity, "became leader");
    }
    metrics.leader.set(1);

    let (nodes, node_writer) = reflector::store();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "netprobe-operator".into(),
            instance: Some(identity.clone()),
        },
    );
    let ctx = Arc::new(Context::new(
        client,
        &cli.namespace,
        nodes,
        Some(recorder),
        metrics.clone(),
    ));
    ready.store(true, Ordering::Relaxed);

    let renew = async {
        let Some(el) = &elector else {
            return std::future::pending::<anyhow::Result<()>>().await;
        };
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(el.duration / 3).await;
            match el.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => anyhow::bail!("lost the leader lease to another replica"),
                Err(e) if last_ok.elapsed() < el.duration => warn!(error = %e, "lease renewal failed; retrying"),
                Err(e) => anyhow::bail!("could not renew the leader lease within its duration: {e}"),
            }
        }
    };
    let result = tokio::select! {
        () = controller::run(ctx, node_writer, shutdown_rx.clone()) => Ok(()),
        r = renew => r,
    };
    metrics.leader.set(0);
    if let Some(el) = &elector
        && let Err(e) = el.release().await
    {
        warn!(error = %e, "could not release the lease");
    }
    // Losing the lease ends the process; the Deployment restarts it as a standby.
    result
}

/// SIGTERM (how a pod is stopped: PID 1 ignores signals it does not handle)
/// or SIGINT.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! { r = tokio::signal::ctrl_c() => r, _ = term.recv() => Ok(()) }
}
