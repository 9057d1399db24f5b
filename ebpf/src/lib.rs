//! netprobe's eBPF side: the C programs (`src/bpf/`, CO-RE, compiled by clang
//! in `build.rs` and embedded here), the names the agent loads them by, and
//! the Rust mirror of their map layouts ([`layout`]).
//!
//! Kernel types: `src/bpf/kernel_types.h` declares only the fields the
//! programs read, marked `preserve_access_index`, instead of a generated
//! `vmlinux.h`. The build then needs no BTF of the build machine (container
//! and CI builds work anywhere), the header is small enough to review, and
//! CO-RE relocations still resolve every field against the node's kernel at
//! load time.

pub mod btf;
pub mod layout;
pub mod user_object;

/// The compiled object, aligned for the ELF parser.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe.bpf.o"));

/// Reference programs for the benchmarks (an empty program, a per-CPU array
/// and a per-CPU hash update) and the tests' self-re-entering program, in an
/// object the agent never loads.
#[cfg(feature = "testing")]
pub static TESTING_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/testing.bpf.o"));

/// The sample user programs of `config/samples/programs`, compiled by the
/// build against `include/netprobe.h` (the tests load them as a user's
/// `Program` probe would).
#[cfg(feature = "testing")]
pub mod sample_programs {
    /// Where the build wrote them (`<name>.bpf.o`).
    pub const DIR: &str = concat!(env!("OUT_DIR"), "/programs");
    pub static TCP_ABORTS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/programs/tcp_aborts.bpf.o"));
    pub static SOCK_STATES: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/programs/sock_states.bpf.o"));
}

/// Program names in the object (the C function names).
pub mod programs {
    pub const RETRANSMIT_SKB: &str = "np_retransmit_skb";
    pub const RETRANSMIT_SKB_V1: &str = "np_retransmit_skb_v1";
    pub const RETRANSMIT_SYNACK: &str = "np_retransmit_synack";
    pub const SEND_RESET: &str = "np_send_reset";
    pub const RECEIVE_RESET: &str = "np_receive_reset";
    /// Shared by TcpConnectLatency, TcpRtt and TcpRetransmits (its
    /// reconciliation at close); `np_config.types` selects.
    pub const SOCK_STATE: &str = "np_sock_state_change";
    /// Samples TcpRtt's marked connections; run by the agent.
    pub const RTT_SAMPLE: &str = "np_rtt_sample";
    /// Forgets pending connects that lost their close; run by the agent
    /// every 30 s while TcpConnectLatency is attached.
    pub const CONNECT_SWEEP: &str = "np_connect_sweep";
    pub const KFREE_SKB: &str = "np_kfree_skb";
    pub const KFREE_SKB_V1: &str = "np_kfree_skb_v1";
    /// Traffic and Dns (`np_config.types` selects): every packet a socket
    /// sends or receives, on the cgroup root.
    pub const SKB_EGRESS: &str = "np_skb_egress";
    pub const SKB_INGRESS: &str = "np_skb_ingress";
}

/// Map names in the object.
pub mod maps {
    pub const POD_BY_CGROUP: &str = "pod_by_cgroup";
    pub const POD_BY_NETNS: &str = "pod_by_netns";
    pub const LEAF_CACHE: &str = "leaf_cache";
    pub const CONFIG: &str = "config";
    pub const BOUNDS: &str = "bounds";
    /// Per-CPU array of `PodCounters`, indexed by slot.
    pub const POD_COUNTERS: &str = "pod_counters";
    /// Drops by (slot, reason).
    pub const COUNTERS: &str = "counters";
    pub const HISTS: &str = "hists";
    pub const HIST_ZERO: &str = "hist_zero";
    /// Per-peer counters of the pods whose probes ask for peers.
    pub const PEERS: &str = "peers";
    /// Per-peer connect latency histograms of the same pods.
    pub const PEER_HISTS: &str = "peer_hists";
    pub const ERRORS: &str = "errors";
    pub const RTT_SOCKS: &str = "rtt_socks";
    pub const CONNECTING: &str = "connecting";
    /// Entries of `connecting` per slot (signed), against the pod's share.
    pub const CONNECTING_SLOTS: &str = "connecting_slots";
    /// Per-CPU array of `Traffic`, indexed by slot.
    pub const TRAFFIC: &str = "traffic";
    /// DNS queries awaiting a response, by (socket cookie, ID).
    pub const DNS_PENDING: &str = "dns_pending";
    pub const DNS_CONFIG: &str = "dns_config";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_object_btf() {
        let btf = btf::Btf::from_object(OBJECT).expect("object has BTF");
        for (name, size, fields) in layout::mirrored() {
            assert_eq!(btf.struct_size(name), Some(size as u32), "size of struct {name}");
            let members = btf.struct_members(name).expect(name);
            for (field, offset) in fields {
                let m = members
                    .iter()
                    .find(|m| m.name == field)
                    .unwrap_or_else(|| panic!("{name}.{field} missing in C"));
                assert_eq!(m.offset as usize, offset, "offset of {name}.{field}");
            }
        }
    }

    #[test]
    fn every_named_program_and_map_is_in_the_object() {
        let obj = aya_obj_names(OBJECT);
        for p in [
            programs::RETRANSMIT_SKB,
            programs::RETRANSMIT_SKB_V1,
            programs::RETRANSMIT_SYNACK,
            programs::SEND_RESET,
            programs::RECEIVE_RESET,
            programs::SOCK_STATE,
            programs::RTT_SAMPLE,
            programs::CONNECT_SWEEP,
            programs::KFREE_SKB,
            programs::KFREE_SKB_V1,
            programs::SKB_EGRESS,
            programs::SKB_INGRESS,
            maps::TRAFFIC,
            maps::DNS_PENDING,
            maps::DNS_CONFIG,
            maps::POD_BY_CGROUP,
            maps::POD_BY_NETNS,
            maps::LEAF_CACHE,
            maps::CONFIG,
            maps::BOUNDS,
            maps::COUNTERS,
            maps::POD_COUNTERS,
            maps::HISTS,
            maps::HIST_ZERO,
            maps::PEERS,
            maps::PEER_HISTS,
            maps::ERRORS,
            maps::RTT_SOCKS,
            maps::CONNECTING,
            maps::CONNECTING_SLOTS,
        ] {
            assert!(obj.iter().any(|s| s == p), "{p} not in object symbols");
        }
    }

    #[test]
    fn the_agent_object_carries_no_test_or_benchmark_program() {
        let obj = aya_obj_names(OBJECT);
        let stray: Vec<&String> = obj
            .iter()
            .filter(|s| s.starts_with("np_calib") || s.starts_with("np_test"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    fn aya_obj_names(elf: &[u8]) -> Vec<String> {
        use object::{Object, ObjectSymbol};
        let f = object::File::parse(elf).unwrap();
        f.symbols().filter_map(|s| s.name().ok().map(str::to_string)).collect()
    }

    /// Constants of layout.h (`#define NAME value` and `NAME = value,`).
    fn c_constants() -> std::collections::HashMap<String, u64> {
        let text = include_str!("bpf/layout.h");
        let mut out = std::collections::HashMap::new();
        for line in text.lines().map(str::trim) {
            let (name, value) = if let Some(rest) = line.strip_prefix("#define ") {
                match rest.split_once(char::is_whitespace) {
                    Some((n, v)) => (n, v.trim()),
                    None => continue,
                }
            } else if let Some((n, v)) = line.trim_end_matches(',').split_once(" = ") {
                (n, v)
            } else {
                continue;
            };
            let v = value.trim_end_matches('u');
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            };
            if let Some(p) = parsed {
                out.insert(name.to_string(), p);
            }
        }
        out
    }

    #[test]
    fn constants_match_layout_h() {
        let c = c_constants();
        let want: &[(&str, u64)] = &[
            ("NP_SLOT_NONE", u64::from(layout::SLOT_NONE)),
            ("NP_MAX_PODS", u64::from(layout::MAX_PODS)),
            ("NP_LEAF_CACHE", u64::from(layout::LEAF_CACHE)),
            ("NP_COUNTERS", u64::from(layout::COUNTERS)),
            ("NP_PEERS", u64::from(layout::PEERS)),
            ("NP_MAX_BOUNDS", layout::MAX_BOUNDS as u64),
            ("NP_POD_PEERS", u64::from(layout::POD_PEERS)),
            ("NP_PEER_HISTS", u64::from(layout::PEER_HISTS)),
            ("NP_ROLE_CLIENT", 0),
            ("NP_ROLE_SERVER", 1),
            ("NP_TYPE_CONNECT", u64::from(layout::TYPE_CONNECT)),
            ("NP_TYPE_RTT", u64::from(layout::TYPE_RTT)),
            ("NP_TYPE_RETRANS", u64::from(layout::TYPE_RETRANS)),
            ("NP_M_RETRANS_SEGS", u64::from(layout::metric::RETRANS_SEGS)),
            ("NP_M_RST_SENT", u64::from(layout::metric::RST_SENT)),
            ("NP_M_RST_RECV", u64::from(layout::metric::RST_RECV)),
            ("NP_M_CONNECT_BUCKET", u64::from(layout::metric::CONNECT_BUCKET)),
            ("NP_M_CONNECT_SUM", u64::from(layout::metric::CONNECT_SUM)),
            ("NP_M_CONNECT_FAIL", u64::from(layout::metric::CONNECT_FAIL)),
            ("NP_M_RTT_BUCKET", u64::from(layout::metric::RTT_BUCKET)),
            ("NP_M_RTT_SUM", u64::from(layout::metric::RTT_SUM)),
            ("NP_M_DROPS", u64::from(layout::metric::DROPS)),
            ("NP_M_TRAFFIC_BYTES", u64::from(layout::metric::TRAFFIC_BYTES)),
            ("NP_M_TRAFFIC_PACKETS", u64::from(layout::metric::TRAFFIC_PACKETS)),
            ("NP_TYPE_TRAFFIC", u64::from(layout::TYPE_TRAFFIC)),
            ("NP_TYPE_DNS", u64::from(layout::TYPE_DNS)),
            ("NP_DNS_PENDING", u64::from(layout::DNS_PENDING)),
            ("NP_DNS_PORTS", u64::from(layout::DNS_PORTS)),
            ("NP_DNS_QTYPES", layout::DNS_QTYPES.len() as u64),
            ("NP_DNS_TCP_MSGS", u64::from(layout::DNS_TCP_MSGS)),
            ("NP_DNS_LABELS", u64::from(layout::DNS_LABELS)),
            ("NP_HIST_SUB_SHIFT", u64::from(layout::HIST_SUB_SHIFT)),
            ("NP_M_DNS_BUCKET", u64::from(layout::metric::DNS_BUCKET)),
            ("NP_M_DNS_SUM", u64::from(layout::metric::DNS_SUM)),
            ("NP_M_DNS_RCODE", u64::from(layout::metric::DNS_RCODE)),
            ("NP_M_DNS_QUERIES", u64::from(layout::metric::DNS_QUERIES)),
            ("NP_M_DNS_LATE", u64::from(layout::metric::DNS_LATE)),
            ("NP_M_DNS_UNANSWERED", u64::from(layout::metric::DNS_UNANSWERED)),
            ("NP_B_DNS", u64::from(layout::BOUNDS_DNS)),
            ("NP_TX", 0),
            ("NP_RX", 1),
            ("NP_PROTO_OTHER", layout::TRAFFIC_PROTOCOLS.len() as u64 - 1),
            ("NP_TRAFFIC_DIR", layout::TRAFFIC_PROTOCOLS.len() as u64),
            ("NP_FAIL_REFUSED", 0),
            ("NP_FAIL_OTHER", layout::CONNECT_FAIL_REASONS.len() as u64 - 1),
            ("NP_FAIL_MAX", layout::CONNECT_FAIL_REASONS.len() as u64),
            ("NP_CONNECTING", u64::from(layout::CONNECTING)),
            ("NP_CONNECTING_PER_POD", u64::from(layout::CONNECTING_PER_POD)),
            ("NP_CONNECT_MAX_AGE_S", u64::from(layout::CONNECT_MAX_AGE_S)),
            ("NP_M_CONNECT_UNTRACKED", u64::from(layout::metric::CONNECT_UNTRACKED)),
            ("NP_RTT_SOCKS", u64::from(layout::RTT_SOCKS)),
            ("NP_DROP_SUBSYSTEM", u64::from(layout::DROP_SUBSYSTEM)),
            ("NP_E_MAX", layout::ERROR_NAMES.len() as u64),
            ("NP_B_CONNECT", u64::from(layout::BOUNDS_CONNECT)),
            ("NP_B_RTT", u64::from(layout::BOUNDS_RTT)),
        ];
        for (name, value) in want {
            assert_eq!(c.get(*name), Some(value), "{name} in layout.h");
        }
    }

    #[test]
    fn btf_reader_rejects_garbage() {
        assert!(matches!(btf::Btf::parse(vec![1, 2, 3]), Err(btf::BtfError::BadMagic)));
        assert!(matches!(
            btf::Btf::parse(vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0]),
            Err(btf::BtfError::Malformed(_))
        ));
        let mut truncated = OBJECT.to_vec();
        truncated.truncate(10);
        assert!(btf::Btf::from_object(&truncated).is_err());
    }
}
