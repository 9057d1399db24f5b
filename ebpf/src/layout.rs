//! The Rust mirror of every map key and value in `bpf/layout.h` — the one
//! place userspace learns the kernel side's memory layout. A test compares
//! each struct with the compiled object's BTF, so a change on one side only
//! fails the build's tests instead of corrupting counters.

/// Slot value meaning "no pod".
pub const SLOT_NONE: u32 = u32::MAX;
pub const MAX_PODS: u32 = 4096;
pub const LEAF_CACHE: u32 = 16384;
pub const COUNTERS: u32 = 65536;
pub const HISTS: u32 = (2 + DNS_QTYPES.len() as u32) * MAX_PODS;
/// `np_hist_key.which`: the bounds index below this bit, the histogram's
/// sub value (DNS: the query type) from it up.
pub const HIST_SUB_SHIFT: u32 = 16;
pub const CONNECTING: u32 = 65536;
/// The default `np_config.connect_share`: pending connects one pod may hold.
pub const CONNECTING_PER_POD: u32 = 4096;
/// The default `np_config.connect_max_age_s`.
pub const CONNECT_MAX_AGE_S: u32 = 600;
pub const RTT_SOCKS: u32 = 65536;
pub const PEERS: u32 = 16384;
pub const PEER_HISTS: u32 = 4096;
pub const MAX_BOUNDS: usize = 64;

/// `np_counter_key.sub` of drops whose reason belongs to a kernel subsystem
/// (not in the core `skb_drop_reason` enum); exported as `SUBSYSTEM`.
pub const DROP_SUBSYSTEM: u16 = 0xffff;

/// `np_pod_info.flags`: count this pod's retransmits, resets and connects
/// per peer too (some probe selecting it asks for peers).
pub const POD_PEERS: u32 = 1;

/// `np_peer_key.role`, in value order, as `role` label values.
pub const ROLES: [&str; 2] = ["client", "server"];

/// `np_config.types`: which socket-state probe types the shared program runs.
pub const TYPE_CONNECT: u32 = 1;
pub const TYPE_RTT: u32 = 2;
pub const TYPE_TRAFFIC: u32 = 4;
pub const TYPE_DNS: u32 = 8;
pub const TYPE_RETRANS: u32 = 16;

/// DNS queries awaiting a response, node-wide.
pub const DNS_PENDING: u32 = 16384;
/// DNS server ports an agent watches, at most.
pub const DNS_PORTS: u32 = 8;
/// `np_dns_query.qtype`, in index order, as `qtype` label values.
pub const DNS_QTYPES: [&str; 5] = ["other", "A", "AAAA", "SRV", "PTR"];
/// DNS messages read from one TCP segment, and labels of a question's name.
pub const DNS_TCP_MSGS: u32 = 4;
pub const DNS_LABELS: u32 = 32;

/// `np_counter_key.metric` values. In the kernel only DROPS keys the
/// `counters` map; the others name the fields of [`PodCounters`] and
/// [`Hist`] when the manager flattens them into a `Snapshot`.
pub mod metric {
    pub const RETRANS_SEGS: u16 = 1;
    pub const RST_SENT: u16 = 2;
    pub const RST_RECV: u16 = 3;
    pub const CONNECT_BUCKET: u16 = 4;
    pub const CONNECT_SUM: u16 = 5;
    pub const CONNECT_FAIL: u16 = 6;
    pub const RTT_BUCKET: u16 = 7;
    pub const RTT_SUM: u16 = 8;
    pub const DROPS: u16 = 9;
    /// `sub` = direction × 3 + protocol (see [`super::TRAFFIC_DIRECTIONS`]).
    pub const TRAFFIC_BYTES: u16 = 10;
    pub const TRAFFIC_PACKETS: u16 = 11;
    pub const DNS_BUCKET: u16 = 12;
    pub const DNS_SUM: u16 = 13;
    /// `sub` = the response code (0–15) + 16 × the query type; the other
    /// DNS counters' `sub` is the query type (see [`super::DNS_QTYPES`]),
    /// and DNS_BUCKET's the query type × 256 + the bucket index.
    pub const DNS_RCODE: u16 = 14;
    pub const DNS_QUERIES: u16 = 15;
    /// Answered after the agent's timeout (the program counts these).
    pub const DNS_LATE: u16 = 16;
    /// Never answered (the agent's sweep counts these).
    pub const DNS_UNANSWERED: u16 = 17;
    /// Active opens TcpConnectLatency did not follow (the pod's share or
    /// the node's table of pending connects full, or swept unclosed).
    pub const CONNECT_UNTRACKED: u16 = 18;
}

/// The `rcode` label by response code (RFC 1035); every other code is `other`.
pub const DNS_RCODES: [&str; 6] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "other", "REFUSED"];

/// `np_traffic_dir`, in index order.
pub const TRAFFIC_DIRECTIONS: [&str; 2] = ["tx", "rx"];
/// `np_traffic_proto`, in index order.
pub const TRAFFIC_PROTOCOLS: [&str; 3] = ["tcp", "udp", "other"];
const TRAFFIC_SLOTS: usize = TRAFFIC_DIRECTIONS.len() * TRAFFIC_PROTOCOLS.len();

/// `np_counter_key.sub` of CONNECT_FAIL, in order, as metric label values.
pub const CONNECT_FAIL_REASONS: [&str; 5] = ["refused", "timeout", "unreachable", "aborted", "other"];

/// Indices of the `errors` per-CPU array, as metric label values.
pub const ERROR_NAMES: [&str; 7] = [
    "counters",
    "peers",
    "rtt_socks",
    "leaf_cache",
    "hists",
    "dns_pending",
    "connecting",
];

/// Indices of the `bounds` array.
pub const BOUNDS_CONNECT: u32 = 0;
pub const BOUNDS_RTT: u32 = 1;
pub const BOUNDS_DNS: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub slot: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leaf {
    pub slot: u32,
    pub generation: u32,
    pub flags: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub generation: u32,
    pub types: u32,
    pub connect_share: u32,
    pub connect_max_age_s: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub n: u32,
    pub _pad: u32,
    pub le_ns: [u64; MAX_BOUNDS],
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            n: 0,
            _pad: 0,
            le_ns: [0; MAX_BOUNDS],
        }
    }
}

/// The fixed counters of one pod slot (a per-CPU array element).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCounters {
    pub retrans_segs: u64,
    pub rst_sent: u64,
    pub rst_recv: u64,
    pub connect_fail: [u64; CONNECT_FAIL_REASONS.len()],
}

/// `struct np_traffic`: bytes and packets by direction × 3 + protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes: [u64; TRAFFIC_SLOTS],
    pub packets: [u64; TRAFFIC_SLOTS],
}

/// `struct np_dns_key`: a query in flight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsKey {
    pub cookie: u64,
    pub id: u16,
    pub _pad: [u16; 3],
}

/// `struct np_dns_query`: when it was sent (CLOCK_MONOTONIC ns), by whom.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsQuery {
    pub sent_ns: u64,
    pub slot: u32,
    pub qtype: u32,
}

/// `struct np_dns_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub timeout_ns: u64,
    /// Watched server ports; 0 ends the list.
    pub ports: [u16; DNS_PORTS as usize],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistKey {
    pub slot: u32,
    /// `BOUNDS_CONNECT` or `BOUNDS_RTT`.
    pub which: u32,
}

/// One latency histogram of one pod; `buckets[n]` (n = number of bounds) is +Inf.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hist {
    pub sum_ns: u64,
    pub buckets: [u64; MAX_BOUNDS + 1],
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            sum_ns: 0,
            buckets: [0; MAX_BOUNDS + 1],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub slot: u32,
    pub metric: u16,
    pub sub: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    pub slot: u32,
    /// AF_INET or AF_INET6; 0 when the kernel could not read the peer.
    pub family: u16,
    /// The server's port (never an ephemeral one), host order.
    pub port: u16,
    pub addr: [u8; 16],
    /// What is counted: a [`metric`] id (CONNECT_FAIL with the reason in `sub`).
    pub metric: u16,
    /// Index into [`ROLES`].
    pub role: u8,
    pub sub: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttSock {
    pub cookie: u64,
    pub slot: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connect {
    pub syn_ns: u64,
    pub slot: u32,
    pub generation: u32,
    pub flags: u32,
    pub _pad: u32,
}

// SAFETY: plain-old-data: repr(C), no padding beyond explicit fields, every
// bit pattern valid.
unsafe impl aya::Pod for PodInfo {}
unsafe impl aya::Pod for Leaf {}
unsafe impl aya::Pod for Config {}
unsafe impl aya::Pod for Bounds {}
unsafe impl aya::Pod for CounterKey {}
unsafe impl aya::Pod for PodCounters {}
unsafe impl aya::Pod for Traffic {}
unsafe impl aya::Pod for DnsKey {}
unsafe impl aya::Pod for DnsQuery {}
unsafe impl aya::Pod for DnsConfig {}
unsafe impl aya::Pod for HistKey {}
unsafe impl aya::Pod for Hist {}
unsafe impl aya::Pod for PeerKey {}
unsafe impl aya::Pod for RttSock {}
unsafe impl aya::Pod for Connect {}

/// A mirrored struct: C name, size, and (field, offset) pairs.
pub type Mirrored = (&'static str, usize, Vec<(&'static str, usize)>);

/// Every mirrored struct, for the layout test.
pub fn mirrored() -> Vec<Mirrored> {
    use std::mem::{offset_of, size_of};
    vec![
        (
            "np_pod_info",
            size_of::<PodInfo>(),
            vec![
                ("slot", offset_of!(PodInfo, slot)),
                ("flags", offset_of!(PodInfo, flags)),
            ],
        ),
        (
            "np_leaf",
            size_of::<Leaf>(),
            vec![
                ("slot", offset_of!(Leaf, slot)),
                ("generation", offset_of!(Leaf, generation)),
                ("flags", offset_of!(Leaf, flags)),
            ],
        ),
        (
            "np_config",
            size_of::<Config>(),
            vec![
                ("generation", offset_of!(Config, generation)),
                ("types", offset_of!(Config, types)),
                ("connect_share", offset_of!(Config, connect_share)),
                ("connect_max_age_s", offset_of!(Config, connect_max_age_s)),
            ],
        ),
        (
            "np_bounds",
            size_of::<Bounds>(),
            vec![("n", offset_of!(Bounds, n)), ("le_ns", offset_of!(Bounds, le_ns))],
        ),
        (
            "np_dns_key",
            size_of::<DnsKey>(),
            vec![("cookie", offset_of!(DnsKey, cookie)), ("id", offset_of!(DnsKey, id))],
        ),
        (
            "np_dns_query",
            size_of::<DnsQuery>(),
            vec![
                ("sent_ns", offset_of!(DnsQuery, sent_ns)),
                ("slot", offset_of!(DnsQuery, slot)),
                ("qtype", offset_of!(DnsQuery, qtype)),
            ],
        ),
        (
            "np_dns_config",
            size_of::<DnsConfig>(),
            vec![
                ("timeout_ns", offset_of!(DnsConfig, timeout_ns)),
                ("ports", offset_of!(DnsConfig, ports)),
            ],
        ),
        (
            "np_traffic",
            size_of::<Traffic>(),
            vec![
                ("bytes", offset_of!(Traffic, bytes)),
                ("packets", offset_of!(Traffic, packets)),
            ],
        ),
        (
            "np_pod_counters",
            size_of::<PodCounters>(),
            vec![
                ("retrans_segs", offset_of!(PodCounters, retrans_segs)),
                ("rst_sent", offset_of!(PodCounters, rst_sent)),
                ("rst_recv", offset_of!(PodCounters, rst_recv)),
                ("connect_fail", offset_of!(PodCounters, connect_fail)),
            ],
        ),
        (
            "np_hist_key",
            size_of::<HistKey>(),
            vec![
                ("slot", offset_of!(HistKey, slot)),
                ("which", offset_of!(HistKey, which)),
            ],
        ),
        (
            "np_hist",
            size_of::<Hist>(),
            vec![
                ("sum_ns", offset_of!(Hist, sum_ns)),
                ("buckets", offset_of!(Hist, buckets)),
            ],
        ),
        (
            "np_counter_key",
            size_of::<CounterKey>(),
            vec![
                ("slot", offset_of!(CounterKey, slot)),
                ("metric", offset_of!(CounterKey, metric)),
                ("sub", offset_of!(CounterKey, sub)),
            ],
        ),
        (
            "np_peer_key",
            size_of::<PeerKey>(),
            vec![
                ("slot", offset_of!(PeerKey, slot)),
                ("family", offset_of!(PeerKey, family)),
                ("port", offset_of!(PeerKey, port)),
                ("addr", offset_of!(PeerKey, addr)),
                ("metric", offset_of!(PeerKey, metric)),
                ("role", offset_of!(PeerKey, role)),
                ("sub", offset_of!(PeerKey, sub)),
            ],
        ),
        (
            "np_rtt_sock",
            size_of::<RttSock>(),
            vec![
                ("cookie", offset_of!(RttSock, cookie)),
                ("slot", offset_of!(RttSock, slot)),
            ],
        ),
        (
            "np_connect",
            size_of::<Connect>(),
            vec![
                ("syn_ns", offset_of!(Connect, syn_ns)),
                ("slot", offset_of!(Connect, slot)),
                ("generation", offset_of!(Connect, generation)),
                ("flags", offset_of!(Connect, flags)),
            ],
        ),
    ]
}
