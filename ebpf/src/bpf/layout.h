/* Map key and value layouts shared with userspace.
 *
 * Mirrored, field for field, by ebpf/src/layout.rs; a test compares every
 * struct here with the compiled object's BTF. Change both together.
 */
#ifndef NETPROBE_LAYOUT_H
#define NETPROBE_LAYOUT_H

#define NP_SLOT_NONE 0xffffffffu

/* Map sizes (entries). Pods per node are bounded by the kubelet (110 by
 * default, rarely above 500); 4096 leaves room for standalone cgroups. */
#define NP_MAX_PODS 4096
/* Leaf cgroups (containers and other cgroups that own sockets) whose pod
 * lookup is cached; LRU, so it never fills, it evicts. */
#define NP_LEAF_CACHE 16384
/* (pod, drop reason) counters. */
#define NP_COUNTERS 65536
/* (pod, histogram) entries: connect and RTT, and DNS by query type. */
#define NP_HISTS ((2 + NP_DNS_QTYPES) * NP_MAX_PODS)
/* np_hist_key.which: the bounds index in the low 16 bits, the histogram's
 * sub value (DNS query type) above. */
#define NP_HIST_SUB_SHIFT 16
/* (pod, peer, role, server port, metric) counters of the pods whose probes
 * ask for peers (NP_POD_PEERS). */
#define NP_PEERS 16384
/* (pod, peer) connect latency histograms of the same pods (np_peer_key with
 * metric NP_M_CONNECT_BUCKET): not preallocated, ~0.5 KiB per CPU each. */
#define NP_PEER_HISTS 4096
/* Histogram bounds per latency type. */
#define NP_MAX_BOUNDS 64

/* np_counter_key.sub of a drop whose reason belongs to a kernel subsystem
 * (upper 16 bits set: mac80211, openvswitch, ...): those reasons are not in
 * the core enum skb_drop_reason, so they are counted together. */
#define NP_DROP_SUBSYSTEM 0xffffu

/* Pod flags. */
/* Count this pod's retransmits, resets and failed connects per peer too. */
#define NP_POD_PEERS 1u

/* np_peer_key.role: which end of the connection the pod is. */
#define NP_ROLE_CLIENT 0
#define NP_ROLE_SERVER 1

/* Established connections TcpRtt samples at once, node-wide (allocated
 * per connection from the kernel's BPF memory caches; a connection that
 * finds the map full is not sampled and is counted in errors). */
#define NP_RTT_SOCKS 65536
/* Active opens in SYN_SENT at once, node-wide (allocated per connect; an
 * open that finds it full is not followed, and is counted: errors and the
 * pod's untracked counter). Not LRU: an LRU map drops the oldest pending
 * connect silently, so one pod's SYN storm would erase other tenants'
 * connects. */
#define NP_CONNECTING 65536
/* The default share of NP_CONNECTING one pod may hold (np_config
 * .connect_share, the agent's --connect-pending-per-pod): a pod's storm
 * fills its share, not the node's table. */
#define NP_CONNECTING_PER_POD 4096
/* The default np_config.connect_max_age_s: a pending connect older than
 * this is swept (and counted untracked). The kernel gives up on a SYN after
 * ~127 s by default, so an entry this old lost its close (a type turned
 * off and on while it pended). */
#define NP_CONNECT_MAX_AGE_S 600

/* np_config.types: socket-state probe types in use (one program on
 * inet_sock_set_state serves the three: one run per state change). */
#define NP_TYPE_CONNECT 1u
#define NP_TYPE_RTT 2u
#define NP_TYPE_RETRANS 16u
/* np_config.types: the cgroup_skb probe types in use (one program per
 * direction serves both). */
#define NP_TYPE_TRAFFIC 4u
#define NP_TYPE_DNS 8u

/* DNS queries awaiting their response, node-wide (preallocated; a query
 * that finds it full is counted in errors, not tracked). */
#define NP_DNS_PENDING 16384
/* DNS server ports the agent watches (its --dns-ports). */
#define NP_DNS_PORTS 8
/* DNS query types counted apart (np_dns_query.qtype, the sub value of the
 * DNS counters and histograms): other, A, AAAA, SRV, PTR. */
#define NP_DNS_QTYPES 5
/* DNS messages read from one TCP segment (a resolver may write A and AAAA
 * queries together). */
#define NP_DNS_TCP_MSGS 4
/* Labels read in a question's name to find its type (a longer name counts
 * as qtype other). */
#define NP_DNS_LABELS 32

/* np_counter_key.metric: only drops are keyed by (slot, metric, sub); the
 * fixed counters live in np_pod_counters and histograms in np_hist. The
 * other values name those for userspace (Snapshot), never as map keys. */
enum np_metric {
	NP_M_RETRANS_SEGS = 1,
	NP_M_RST_SENT = 2,
	NP_M_RST_RECV = 3,
	NP_M_CONNECT_BUCKET = 4,
	NP_M_CONNECT_SUM = 5,
	NP_M_CONNECT_FAIL = 6,
	NP_M_RTT_BUCKET = 7,
	NP_M_RTT_SUM = 8,
	NP_M_DROPS = 9,
	NP_M_TRAFFIC_BYTES = 10,
	NP_M_TRAFFIC_PACKETS = 11,
	NP_M_DNS_BUCKET = 12,
	NP_M_DNS_SUM = 13,
	/* The DNS counters' sub is the query type (np_dns_query.qtype), and
	 * for response codes the code (0-15) plus 16 times the query type. */
	NP_M_DNS_RCODE = 14,
	NP_M_DNS_QUERIES = 15,
	/* answered after the timeout (counted by the program); queries never
	 * answered are counted by the agent's sweep of dns_pending */
	NP_M_DNS_LATE = 16,
	NP_M_DNS_UNANSWERED = 17,
	/* Active opens of a pod TcpConnectLatency did not follow: the pod's
	 * share of pending connects, or the node's table, was full. */
	NP_M_CONNECT_UNTRACKED = 18,
};

/* Traffic counters of a pod, by direction and protocol: index
 * NP_TRAFFIC_DIR * direction + protocol (np_counter_key.sub in userspace). */
enum np_traffic_dir {
	NP_TX = 0,
	NP_RX = 1,
};

enum np_traffic_proto {
	NP_PROTO_TCP = 0,
	NP_PROTO_UDP = 1,
	NP_PROTO_OTHER = 2,
	NP_TRAFFIC_DIR = 3,
};

enum np_connect_fail {
	NP_FAIL_REFUSED = 0,
	NP_FAIL_TIMEOUT = 1,
	NP_FAIL_UNREACHABLE = 2,
	NP_FAIL_ABORTED = 3,
	NP_FAIL_OTHER = 4,
	NP_FAIL_MAX = 5,
};

enum np_error {
	NP_E_COUNTERS_FULL = 0,
	NP_E_PEERS_FULL = 1,
	NP_E_RTT_SOCKS = 2,
	NP_E_LEAF_CACHE = 3,
	NP_E_HISTS_FULL = 4,
	NP_E_DNS_PENDING = 5,
	NP_E_CONNECTING = 6,
	NP_E_MAX = 7,
};

enum np_bounds_index {
	NP_B_CONNECT = 0,
	NP_B_RTT = 1,
	NP_B_DNS = 2,
};

struct np_pod_info {
	__u32 slot;
	__u32 flags;
};

struct np_leaf {
	__u32 slot;
	__u32 generation;
	__u32 flags;
	__u32 _pad;
};

struct np_config {
	__u32 generation;
	__u32 types;
	/* Pending connects one pod slot may hold in `connecting`. */
	__u32 connect_share;
	/* Age (seconds) past which the sweep forgets a pending connect. */
	__u32 connect_max_age_s;
};

struct np_bounds {
	__u32 n;
	__u32 _pad;
	__u64 le_ns[NP_MAX_BOUNDS];
};

/* The fixed counters of one pod slot, a per-CPU array element: an event
 * costs one inlined array access instead of a hash lookup. The agent zeroes
 * a slot before it gives it to another pod. */
struct np_pod_counters {
	__u64 retrans_segs;
	__u64 rst_sent;
	__u64 rst_recv;
	__u64 connect_fail[NP_FAIL_MAX];
};

/* The traffic of one pod slot, a per-CPU array element apart from
 * np_pod_counters so the other types' per-event access stays one cache line
 * and the array exists once for the one type that writes it per packet. */
struct np_traffic {
	__u64 bytes[2 * NP_TRAFFIC_DIR];
	__u64 packets[2 * NP_TRAFFIC_DIR];
};

/* A DNS query in flight: the socket that sent it and its transaction ID. */
struct np_dns_key {
	__u64 cookie;
	__u16 id;
	__u16 _pad[3];
};

/* When it was sent (bpf_ktime_get_ns), and by which pod slot. */
struct np_dns_query {
	__u64 sent_ns;
	__u32 slot;
	__u32 qtype; /* 0 other, 1 A, 2 AAAA, 3 SRV, 4 PTR */
};

/* The agent's DNS settings (element 0 of dns_config). */
struct np_dns_config {
	__u64 timeout_ns;
	/* Watched server ports, host order; 0 ends the list. In the array
	 * element the programs read anyway: a per-packet port check is a few
	 * compares, not a hash lookup. */
	__u16 ports[NP_DNS_PORTS];
};

struct np_hist_key {
	__u32 slot;
	__u32 which; /* enum np_bounds_index */
};

/* One latency histogram of one pod: an observation is one lookup that
 * updates a bucket and the sum together. buckets[n] is +Inf. */
struct np_hist {
	__u64 sum_ns;
	__u64 buckets[NP_MAX_BOUNDS + 1];
};

struct np_counter_key {
	__u32 slot;
	__u16 metric;
	__u16 sub;
};

/* One peer of a pod: the remote address, the server's port (the remote
 * port when the pod is the client, its own when it is the server: never an
 * ephemeral port), which end the pod is, and what is counted (metric, and
 * for NP_M_CONNECT_FAIL the reason in sub). */
struct np_peer_key {
	__u32 slot;
	__u16 family;
	__u16 port;
	__u8 addr[16];
	__u16 metric;
	__u8 role;
	__u8 sub;
};

/* An established connection of a pod TcpRtt selects, keyed by socket
 * address: its pod slot, and its socket cookie, which tells the socket from
 * a later one at the same address (an entry whose close the program did not
 * see). */
struct np_rtt_sock {
	__u64 cookie;
	__u32 slot;
	__u32 _pad;
};

/* A pending active open, keyed by socket address while it is in SYN_SENT:
 * when the SYN went out and the pod resolved under `generation`. */
struct np_connect {
	__u64 syn_ns;
	__u32 slot;
	__u32 generation;
	__u32 flags; /* the pod's np_pod_info.flags */
	__u32 _pad;
};

#endif
