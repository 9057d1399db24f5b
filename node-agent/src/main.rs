use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use netprobe_agent::agent::{self, Agent};
use netprobe_agent::cluster::{self, ClusterConfig};
use netprobe_agent::kernel::programs::{ProgramLimits, SectionKind};
use netprobe_agent::{cgroups, standalone};
use netprobe_telemetry::{AuthMode, Endpoint, LogFormat, MetricsSecurity};
use tracing::{error, info, warn};

/// netprobe-agent: eBPF network probes on this node, per pod, as Prometheus metrics.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Run without Kubernetes: read NetworkProbe/ClusterNetworkProbe manifests
    /// from these files or directories; series are labelled by cgroup.
    #[arg(long, num_args = 1.., value_name = "FILE_OR_DIR")]
    standalone: Vec<PathBuf>,
    /// Cluster mode: this node's name (downward API spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Cluster mode: namespace holding the plan ConfigMaps (the agent's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = netprobe_api::keys::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Cluster mode: minimum seconds between two writes of this node's report.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    status_min_interval: Duration,
    /// Cluster mode: how often this node's report renews its heartbeat; the
    /// operator counts a node as not reporting after 45 s without one.
    #[arg(long, default_value = "15", value_parser = parse_secs)]
    heartbeat_interval: Duration,
    /// Address of /metrics and /healthz.
    #[arg(long, env = "NETPROBE_METRICS_ADDR", default_value = "0.0.0.0:9990")]
    metrics_addr: SocketAddr,
    #[command(flatten)]
    metrics_security: MetricsSecurity,
    /// cgroup2 mount (default: found in <proc-root>/self/mountinfo).
    #[arg(long, env = "NETPROBE_CGROUP_ROOT")]
    cgroup_root: Option<PathBuf>,
    /// procfs of the host (a host mount in a DaemonSet).
    #[arg(long, env = "NETPROBE_PROC_ROOT", default_value = "/proc")]
    proc_root: PathBuf,
    /// Standalone: cgroups down to this depth are attribution targets.
    #[arg(long, default_value_t = 2)]
    standalone_depth: usize,
    /// Standalone: how often to rescan cgroups and manifests.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    rescan_interval: Duration,
    /// How often series are admitted under the probes' budgets (and an
    /// exhausted budget reaches status), whether or not anything scrapes.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    admit_interval: Duration,
    /// Most series this agent exports, shared equally between tenants (each
    /// namespace's NetworkProbes; all ClusterNetworkProbes together): no
    /// namespace can starve another or grow the agent without bound.
    #[arg(long, env = "NETPROBE_MAX_SERIES", default_value_t = 20_000)]
    max_series: usize,
    /// DNS server ports whose queries and responses Dns follows
    /// (comma-separated, at most 8; the same for every probe on the node).
    #[arg(long, env = "NETPROBE_DNS_PORTS", value_delimiter = ',', default_value = "53")]
    dns_ports: Vec<u16>,
    /// How long a DNS query may wait for its response before Dns counts it
    /// as a timeout.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    dns_timeout: Duration,
    /// Pending connects (SYN sent, no answer yet) TcpConnectLatency follows
    /// per pod, of 65,536 on the node: one pod's SYN storm fills its share,
    /// not other tenants'. Opens beyond it are counted in
    /// netprobe_tcp_connect_untracked_total.
    #[arg(long, default_value_t = netprobe_ebpf::layout::CONNECTING_PER_POD,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(netprobe_ebpf::layout::CONNECTING)))]
    connect_pending_per_pod: u32,
    /// The cluster's Service CIDRs (comma-separated), so peer classes call a
    /// ClusterIP peer `service` (in standalone mode too).
    #[arg(long, env = "NETPROBE_SERVICE_CIDRS", value_delimiter = ',')]
    service_cidrs: Vec<ipnet::IpNet>,
    /// How often established connections' RTT is sampled (TcpRtt).
    #[arg(long, default_value = "15", value_parser = parse_secs)]
    rtt_interval: Duration,
    /// Most Program probes (users' own eBPF objects) this agent runs at once;
    /// 0 refuses every one.
    #[arg(long, env = "NETPROBE_MAX_PROGRAMS", default_value_t = 16)]
    max_programs: usize,
    /// Most memory (MiB) one Program probe's maps may take, estimated from
    /// their key and value sizes and entries.
    #[arg(long, env = "NETPROBE_PROGRAM_MAP_MEMORY", default_value_t = 64)]
    program_map_memory: u64,
    /// Program types a Program probe may contain (comma-separated: tp_btf,
    /// tracepoint, raw_tp, cgroup_skb).
    #[arg(
        long,
        env = "NETPROBE_PROGRAM_TYPES",
        value_delimiter = ',',
        default_value = "tp_btf,tracepoint,raw_tp,cgroup_skb"
    )]
    program_types: Vec<String>,
    #[arg(long, env = "NETPROBE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.trim_end_matches('s').parse().map_err(|e| format!("{s}: {e}"))?;
    if !(0.01..=86400.0).contains(&v) {
        return Err(format!("{s}: must be between 0.01 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    netprobe_telemetry::init_logging(cli.log_format);
    let cgroup_root = match &cli.cgroup_root {
        Some(p) => cgroups::cgroup2_under(p).context("--cgroup-root")?,
        None => cgroups::cgroup2_mount(&cli.proc_root.join("self/mountinfo"))?,
    };
    if !cli.standalone.is_empty() {
        standalone::check_paths(&cli.standalone).context("--standalone")?;
    }
    let standalone_mode = !cli.standalone.is_empty();
    let agent =
        Agent::new(standalone_mode).context("loading eBPF (needs root or CAP_BPF+CAP_PERFMON, and kernel BTF)")?;
    let client = match standalone_mode {
        true => None,
        false => Some(
            kube::Client::try_default()
                .await
                .context("no Kubernetes configuration found")?,
        ),
    };
    let default_auth = match standalone_mode {
        true => AuthMode::None,
        false => AuthMode::Kubernetes,
    };
    let access = cli
        .metrics_security
        .access(client.clone(), default_auth)
        .context("metrics endpoint")?;
    let endpoint = Endpoint {
        render: Arc::new({
            let agent = agent.clone();
            move || agent.exposition()
        }),
        ready: Some(agent.applied_flag()),
    };
    tokio::spawn({
        let addr = cli.metrics_addr;
        async move {
            if let Err(e) = netprobe_telemetry::serve(addr, endpoint, access).await {
                error!(error = format!("{e:#}"), "metrics server stopped");
                std::process::exit(1);
            }
        }
    });
    agent.set_series_limit(cli.max_series);
    agent.set_peer_world(netprobe_agent::pipeline::peers::PeerWorld::standalone(
        cli.service_cidrs.clone(),
    ));
    agent.set_cgroup_root(cgroup_root.clone());
    if client.is_some() {
        // Standalone targets may be any cgroup: there the root it is.
        match cgroups::pods_subtree(&cgroup_root) {
            Ok(dir) => {
                info!(cgroup = %dir.display(), "Traffic and Dns attach to the kubelet's pods cgroup");
                agent.set_skb_cgroup(dir);
            }
            Err(found) => warn!(
                found = ?found,
                "no single kubepods cgroup under the cgroup root: Traffic and Dns attach to the root, and every \
                 host packet runs their programs"
            ),
        }
    }
    if cli.dns_ports.is_empty() || cli.dns_ports.len() > 8 || cli.dns_ports.contains(&0) {
        anyhow::bail!("--dns-ports takes 1 to 8 ports, none of them 0");
    }
    agent.set_dns(&cli.dns_ports, cli.dns_timeout).context("--dns-ports")?;
    agent
        .set_connect_share(cli.connect_pending_per_pod)
        .context("--connect-pending-per-pod")?;
    let mut types = std::collections::BTreeSet::new();
    for t in &cli.program_types {
        let kind = SectionKind::parse(t.trim())
            .with_context(|| format!("--program-types: {t:?} is not tp_btf, tracepoint, raw_tp or cgroup_skb"))?;
        types.insert(kind);
    }
    agent.set_program_limits(ProgramLimits {
        max_programs: cli.max_programs,
        max_map_bytes: cli.program_map_memory.saturating_mul(1 << 20),
        types,
    });
    tokio::spawn(agent::sweep_dns_forever(agent.clone(), Duration::from_millis(500)));
    tokio::spawn(agent::sweep_connects_forever(agent.clone(), Duration::from_secs(30)));
    tokio::spawn(agent::sample_rtt_forever(agent.clone(), cli.rtt_interval));
    tokio::spawn(agent::admit_forever(agent.clone(), cli.admit_interval));
    if let Some(client) = client {
        let node = cli
            .node_name
            .clone()
            .context("cluster mode needs --node-name or NODE_NAME (or use --standalone)")?;
        let cfg = ClusterConfig {
            node,
            namespace: cli.namespace.clone(),
            cgroup_root,
            proc_root: cli.proc_root.clone(),
            status_min_interval: cli.status_min_interval,
            heartbeat: cli.heartbeat_interval,
            service_cidrs: cli.service_cidrs.clone(),
        };
        info!(metrics = %cli.metrics_addr, node = %cfg.node, "agent running");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let run = cluster::run(client, cfg, Arc::new(agent.clone()), stop_rx);
        tokio::pin!(run);
        tokio::select! {
            () = &mut run => return Ok(()),
            _ = shutdown_signal() => info!("stopping; the kernel detaches every program with the process"),
        }
        // Mark the report as stopping, within the 10 s a stop may take.
        let _ = stop_tx.send(true);
        if tokio::time::timeout(Duration::from_secs(5), run).await.is_err() {
            warn!("could not mark this node's report as stopping within 5 s");
        }
        return Ok(());
    }
    info!(metrics = %cli.metrics_addr, cgroup_root = %cgroup_root.display(), "standalone agent running");
    let cfg = standalone::run::Config {
        manifests: cli.standalone.clone(),
        cgroup_root,
        proc_root: cli.proc_root.clone(),
        depth: cli.standalone_depth,
        rescan_interval: cli.rescan_interval,
    };
    tokio::select! {
        () = standalone::run::run(cfg, agent) => {}
        _ = shutdown_signal() => info!("stopping; the kernel detaches every program with the process"),
    }
    Ok(())
}

/// SIGTERM (how a pod is stopped: PID 1 ignores signals it does not handle)
/// or SIGINT.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! { r = tokio::signal::ctrl_c() => r, _ = term.recv() => Ok(()) }
}
