//! The user-facing resources. Doc comments here become the CRD's
//! descriptions, so they are written for `kubectl explain`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::probes::dns::DnsOptions;
use crate::probes::histogram::HistogramOptions;
use crate::probes::packet_drops::PacketDropsOptions;
use crate::probes::program::ProgramOptions;
use crate::probes::tcp_connect_latency::TcpConnectLatencyOptions;
use crate::probes::tcp_resets::TcpResetsOptions;
use crate::probes::tcp_retransmits::TcpRetransmitsOptions;
use crate::probes::traffic::TrafficOptions;
use crate::status::ProbeStatus;

/// NetworkProbeSpec declares which kernel network events to observe and for
/// which pods. A NetworkProbe only ever selects pods in its own namespace.
// clippy mistakes the repeated `printcolumn(type_ = ..)` keys for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "netprobe.dev",
    version = "v1alpha1",
    kind = "NetworkProbe",
    plural = "networkprobes",
    shortname = "nprobe",
    category = "netprobe",
    namespaced,
    status = "ProbeStatus",
    validation = Rule::new("self.spec.probes.all(p, p.type != 'Program')").message("Program probes are allowed only in a ClusterNetworkProbe: loading code into every node's kernel is a cluster-admin power").field_path(".spec.probes"),
    printcolumn(
        name = "Types",
        type_ = "string",
        json_path = ".status.probeTypes",
        description = "Probe types deployed"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "string",
        json_path = ".status.nodesReady",
        description = "Nodes running the probe / nodes that should"
    ),
    printcolumn(
        name = "Pods",
        type_ = "integer",
        json_path = ".status.podsMatched",
        description = "Pods matched across all nodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.probes.all(p, self.probes.exists_one(q, q.type == p.type))").message("each probe type may appear only once").field_path(".probes"))]
pub struct NetworkProbeSpec {
    /// Probes to run. Each entry names one probe type and, optionally, that
    /// type's options in the field named after it (for example
    /// `tcpConnectLatency.buckets`). Each type may appear once.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub probes: Vec<Probe>,

    /// Selects the pods to observe, by label. Empty or absent selects every
    /// pod in scope: the probe's own namespace for a NetworkProbe, the
    /// namespaces matched by namespaceSelector for a ClusterNetworkProbe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// Selects the nodes whose agents run this probe, by Node label. Absent
    /// selects every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Suspend removes the probe from every node while keeping the resource.
    /// Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// How series are labelled and how many a node may export for this probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
}

/// ClusterNetworkProbeSpec is a NetworkProbeSpec that may select pods in many
/// namespaces, chosen by namespaceSelector.
// clippy mistakes the repeated `printcolumn(type_ = ..)` keys for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "netprobe.dev",
    version = "v1alpha1",
    kind = "ClusterNetworkProbe",
    plural = "clusternetworkprobes",
    shortname = "cnprobe",
    category = "netprobe",
    status = "ProbeStatus",
    printcolumn(
        name = "Types",
        type_ = "string",
        json_path = ".status.probeTypes",
        description = "Probe types deployed"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "string",
        json_path = ".status.nodesReady",
        description = "Nodes running the probe / nodes that should"
    ),
    printcolumn(
        name = "Pods",
        type_ = "integer",
        json_path = ".status.podsMatched",
        description = "Pods matched across all nodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkProbeSpec {
    /// Selects the namespaces whose pods may be observed, by Namespace label.
    /// Absent or empty selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Everything else is the NetworkProbe spec.
    #[serde(flatten)]
    pub probe: NetworkProbeSpec,
}

/// A probe type. New types are added as new values; existing values never
/// change meaning, so stored objects stay valid as the catalog grows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
pub enum ProbeType {
    /// Retransmitted TCP segments (`netprobe_tcp_retransmits_total`).
    TcpRetransmits,
    /// TCP resets sent and received (`netprobe_tcp_resets_total`).
    TcpResets,
    /// Active-open latency, SYN sent to established, and failed connects.
    TcpConnectLatency,
    /// Smoothed round-trip time of TCP connections.
    TcpRtt,
    /// Packets dropped by the kernel, by drop reason.
    PacketDrops,
    /// IP bytes and packets the pod's sockets send and receive, by protocol
    /// (`netprobe_traffic_bytes_total`, `netprobe_traffic_packets_total`).
    Traffic,
    /// DNS queries the pod sends: response time (histogram), responses by
    /// response code, timeouts (`netprobe_dns_*`).
    Dns,
    /// A user's own eBPF object whose maps become metrics, with netprobe's
    /// pod filter (`program`). Only in a ClusterNetworkProbe.
    Program,
}

impl ProbeType {
    /// The types netprobe's own programs implement: every type but
    /// Program (which brings its program, and options it cannot default).
    pub const BUILT_IN: [ProbeType; 7] = [
        ProbeType::TcpRetransmits,
        ProbeType::TcpResets,
        ProbeType::TcpConnectLatency,
        ProbeType::TcpRtt,
        ProbeType::PacketDrops,
        ProbeType::Traffic,
        ProbeType::Dns,
    ];

    /// Every type, in a stable order (the order of the plan and of metrics).
    pub const ALL: [ProbeType; 8] = {
        let mut all = [ProbeType::Program; 8];
        let mut i = 0;
        while i < ProbeType::BUILT_IN.len() {
            all[i] = ProbeType::BUILT_IN[i];
            i += 1;
        }
        all
    };

    /// The name used in the spec, in status and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::TcpRetransmits => "TcpRetransmits",
            ProbeType::TcpResets => "TcpResets",
            ProbeType::TcpConnectLatency => "TcpConnectLatency",
            ProbeType::TcpRtt => "TcpRtt",
            ProbeType::PacketDrops => "PacketDrops",
            ProbeType::Traffic => "Traffic",
            ProbeType::Dns => "Dns",
            ProbeType::Program => "Program",
        }
    }

    /// The JSON field holding this type's options inside a probe entry.
    pub fn options_field(self) -> &'static str {
        match self {
            ProbeType::TcpRetransmits => "tcpRetransmits",
            ProbeType::TcpResets => "tcpResets",
            ProbeType::TcpConnectLatency => "tcpConnectLatency",
            ProbeType::TcpRtt => "tcpRtt",
            ProbeType::PacketDrops => "packetDrops",
            ProbeType::Traffic => "traffic",
            ProbeType::Dns => "dns",
            ProbeType::Program => "program",
        }
    }
}

impl std::fmt::Display for ProbeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe: a type and that type's options. Options live in a field named
/// after the type (a discriminated union), so new types add new fields without
/// changing existing ones.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tcpRetransmits) || self.type == 'TcpRetransmits'").message("tcpRetransmits options are only allowed when type is TcpRetransmits").field_path(".tcpRetransmits"))]
#[x_kube(validation = Rule::new("!has(self.tcpResets) || self.type == 'TcpResets'").message("tcpResets options are only allowed when type is TcpResets").field_path(".tcpResets"))]
#[x_kube(validation = Rule::new("!has(self.tcpConnectLatency) || self.type == 'TcpConnectLatency'").message("tcpConnectLatency options are only allowed when type is TcpConnectLatency").field_path(".tcpConnectLatency"))]
#[x_kube(validation = Rule::new("!has(self.tcpRtt) || self.type == 'TcpRtt'").message("tcpRtt options are only allowed when type is TcpRtt").field_path(".tcpRtt"))]
#[x_kube(validation = Rule::new("!has(self.packetDrops) || self.type == 'PacketDrops'").message("packetDrops options are only allowed when type is PacketDrops").field_path(".packetDrops"))]
#[x_kube(validation = Rule::new("!has(self.traffic) || self.type == 'Traffic'").message("traffic options are only allowed when type is Traffic").field_path(".traffic"))]
#[x_kube(validation = Rule::new("!has(self.dns) || self.type == 'Dns'").message("dns options are only allowed when type is Dns").field_path(".dns"))]
#[x_kube(validation = Rule::new("!has(self.program) || self.type == 'Program'").message("program options are only allowed when type is Program").field_path(".program"))]
#[x_kube(validation = Rule::new("self.type != 'Program' || has(self.program)").message("a Program probe needs its program options").field_path(".program"))]
pub struct Probe {
    /// The probe type: TcpRetransmits, TcpResets, TcpConnectLatency, TcpRtt,
    /// PacketDrops, Traffic, Dns or Program (ClusterNetworkProbe only).
    #[serde(rename = "type")]
    pub type_: ProbeType,

    /// Options of a TcpRetransmits probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_retransmits: Option<TcpRetransmitsOptions>,

    /// Options of a TcpResets probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_resets: Option<TcpResetsOptions>,

    /// Options of a TcpConnectLatency probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_connect_latency: Option<TcpConnectLatencyOptions>,

    /// Options of a TcpRtt probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_rtt: Option<HistogramOptions>,

    /// Options of a PacketDrops probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_drops: Option<PacketDropsOptions>,

    /// Options of a Traffic probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficOptions>,

    /// Options of a Dns probe: the response-time buckets and the query-type
    /// label. The server ports and the timeout are the agent's
    /// (`--dns-ports`, `--dns-timeout`), the same for every tenant on a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsOptions>,

    /// Options of a Program probe: the user's compiled eBPF object and how
    /// its maps become metrics. Only in a ClusterNetworkProbe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramOptions>,
}

impl Probe {
    /// A probe of `type_` with default options.
    pub fn new(type_: ProbeType) -> Self {
        Probe {
            type_,
            tcp_retransmits: None,
            tcp_resets: None,
            tcp_connect_latency: None,
            tcp_rtt: None,
            packet_drops: None,
            traffic: None,
            dns: None,
            program: None,
        }
    }
}

/// How series are labelled and bounded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Series granularity: `pod` (default) labels series with namespace and
    /// pod; `workload` with namespace and the owning Deployment, StatefulSet,
    /// DaemonSet or Job; `namespace` with the namespace only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<Granularity>,

    /// Hard budget of series this probe may export per node. Past it, events
    /// are counted in one overflow series per probe type and the node's status
    /// says so. Defaults to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_series_per_node: Option<u32>,
}

/// Series granularity.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Granularity {
    /// One series per pod (labels namespace, pod).
    #[default]
    Pod,
    /// One series per owning workload (labels namespace, workload).
    Workload,
    /// One series per namespace (label namespace).
    Namespace,
}
