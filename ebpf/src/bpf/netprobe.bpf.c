// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* netprobe's kernel side: every probe type, attributed to pods.
 *
 * Attribution (DESIGN.md): a full socket is attributed by its cgroup v2,
 * walked up to the pod-level cgroup the agent registered in pod_by_cgroup;
 * anything without a full socket (timewait and request socks, packets before
 * socket lookup) by network namespace inode in pod_by_netns. The walk result
 * per leaf cgroup is cached in leaf_cache and stamped with the agent's
 * configuration generation, so in steady state an event costs one cache
 * lookup before the counter update, selected pod or not.
 */
#include <linux/bpf.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "layout.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define MAX_CGROUP_DEPTH 12

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NP_MAX_PODS);
	__type(key, __u64);
	__type(value, struct np_pod_info);
} pod_by_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NP_MAX_PODS);
	__type(key, __u32);
	__type(value, struct np_pod_info);
} pod_by_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NP_LEAF_CACHE);
	__type(key, __u64);
	__type(value, struct np_leaf);
} leaf_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct np_bounds);
} bounds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NP_MAX_PODS);
	__type(key, __u32);
	__type(value, struct np_pod_counters);
} pod_counters SEC(".maps");

/* Drops by (slot, reason): reasons are many and sparse per pod. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, NP_COUNTERS);
	__type(key, struct np_counter_key);
	__type(value, __u64);
} counters SEC(".maps");

/* Not preallocated: an entry is ~0.5 KiB per CPU, made on a pod's first
 * observation of that latency type. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NP_HISTS);
	__type(key, struct np_hist_key);
	__type(value, struct np_hist);
} hists SEC(".maps");

/* The initial (zero) value of a new hists entry: too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_hist);
} hist_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, NP_PEERS);
	__type(key, struct np_peer_key);
	__type(value, __u64);
} retrans_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NP_E_MAX);
	__type(key, __u32);
	__type(value, __u64);
} errors SEC(".maps");

/* Pending active opens. Not socket storage: creating and freeing socket
 * storage costs far more per connection than a preallocated hash entry
 * (BENCHMARKS.md), and a connection needs its entry only until it leaves
 * SYN_SENT. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NP_CONNECTING);
	__type(key, __u64);
	__type(value, struct np_connect);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct np_sock_state);
} sock_state SEC(".maps");

static __always_inline void count_error(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&errors, &which);
	if (v)
		*v += 1;
}

static __always_inline struct np_config config_now(void)
{
	__u32 zero = 0;
	struct np_config *c = bpf_map_lookup_elem(&config, &zero);
	struct np_config out = { .generation = 0, .types = 0 };
	if (c)
		out = *c;
	return out;
}

static __always_inline __u32 config_gen(void)
{
	return config_now().generation;
}

/* The pod of a cgroup: the nearest ancestor (or itself) registered by the
 * agent, cached per leaf. */
static __always_inline struct np_pod_info *pod_of_cgroup(struct cgroup *cg, struct np_pod_info *out)
{
	if (!cg)
		return 0;
	__u64 leaf = cg->kn->id;
	__u32 gen = config_gen();
	struct np_leaf *cached = bpf_map_lookup_elem(&leaf_cache, &leaf);
	struct np_pod_info *found = 0;
	if (!cached || cached->generation != gen) {
		int level = BPF_CORE_READ(cg, level);
		struct np_leaf fresh = { .slot = NP_SLOT_NONE, .generation = gen, .flags = 0 };
		for (int i = 0; i < MAX_CGROUP_DEPTH; i++) {
			int l = level - i;
			if (l < 0)
				break;
			struct cgroup *anc = 0;
			bpf_probe_read_kernel(&anc, sizeof(anc), &cg->ancestors[l]);
			if (!anc)
				break;
			__u64 id = BPF_CORE_READ(anc, kn, id);
			found = bpf_map_lookup_elem(&pod_by_cgroup, &id);
			if (found) {
				fresh.slot = found->slot;
				fresh.flags = found->flags;
				break;
			}
		}
		if (bpf_map_update_elem(&leaf_cache, &leaf, &fresh, BPF_ANY))
			count_error(NP_E_LEAF_CACHE);
		if (!found)
			return 0;
		*out = *found;
		return out;
	}
	if (cached->slot == NP_SLOT_NONE)
		return 0;
	out->slot = cached->slot;
	out->flags = cached->flags;
	return out;
}

static __always_inline struct np_pod_info *pod_of_netns(struct net *net, struct np_pod_info *out)
{
	if (!net)
		return 0;
	__u32 inum = net->ns.inum;
	struct np_pod_info *p = bpf_map_lookup_elem(&pod_by_netns, &inum);
	if (!p)
		return 0;
	*out = *p;
	return out;
}

static __always_inline int is_fullsock(const struct sock *sk)
{
	unsigned char state = sk->__sk_common.skc_state;
	return state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV;
}

/* Socket attribution: cgroup of a full socket, else its network namespace. */
static __always_inline struct np_pod_info *pod_of_sock(const struct sock *sk, struct np_pod_info *out)
{
	if (!sk)
		return 0;
	if (is_fullsock(sk))
		return pod_of_cgroup(sk->sk_cgrp_data.cgroup, out);
	return pod_of_netns(sk->__sk_common.skc_net.net, out);
}

/* Packet attribution: its socket if any, else the device's namespace. */
static __always_inline struct np_pod_info *pod_of_skb(const struct sk_buff *skb, const struct sock *sk,
						      struct np_pod_info *out)
{
	if (!sk && skb)
		sk = skb->sk;
	if (sk)
		return pod_of_sock(sk, out);
	if (!skb || !skb->dev)
		return 0;
	return pod_of_netns(skb->dev->nd_net.net, out);
}

/* The fixed counters of a slot (an inlined per-CPU array access). */
static __always_inline struct np_pod_counters *slot_counters(__u32 slot)
{
	return bpf_map_lookup_elem(&pod_counters, &slot);
}

/* The value of `key` in the per-CPU hash `map`, created from `init` on
 * the key's first event (another CPU may create it first: then its entry is
 * used). NULL when the map is full, counted as `error`. */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *init, __u32 error)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	long err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST */) {
		count_error(error);
		return 0;
	}
	return bpf_map_lookup_elem(map, key);
}

static __always_inline void count_drop(__u32 slot, __u16 reason)
{
	struct np_counter_key key = { .slot = slot, .metric = NP_M_DROPS, .sub = reason };
	__u64 zero = 0;
	__u64 *v = lookup_or_init(&counters, &key, &zero, NP_E_COUNTERS_FULL);
	if (v)
		*v += 1;
}

/* Index of the first bound >= v (Prometheus `le`), or n for +Inf. */
static __always_inline __u16 bucket_of(__u32 which, __u64 v)
{
	struct np_bounds *b = bpf_map_lookup_elem(&bounds, &which);
	if (!b)
		return 0;
	__u32 n = b->n;
	if (n > NP_MAX_BOUNDS)
		n = NP_MAX_BOUNDS;
	__u32 lo = 0, hi = n;
	for (int i = 0; i < 7; i++) {
		if (lo >= hi)
			break;
		__u32 mid = (lo + hi) / 2;
		if (mid >= NP_MAX_BOUNDS)
			break;
		if (v <= b->le_ns[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* One observation: one lookup, bucket and sum updated together. */
static __always_inline void observe(__u32 slot, __u32 which, __u64 v)
{
	struct np_hist_key key = { .slot = slot, .which = which };
	__u32 zero = 0;
	struct np_hist *z = bpf_map_lookup_elem(&hist_zero, &zero);
	if (!z)
		return;
	struct np_hist *h = lookup_or_init(&hists, &key, z, NP_E_HISTS_FULL);
	if (!h)
		return;
	__u32 b = bucket_of(which, v);
	if (b > NP_MAX_BOUNDS)
		b = NP_MAX_BOUNDS;
	h->buckets[b] += 1;
	h->sum_ns += v;
}

/* ---- TcpRetransmits --------------------------------------------------- */

static __always_inline void count_peer(const struct sock *sk, __u32 slot, __u64 segs)
{
	struct np_peer_key key = { .slot = slot };
	key.family = sk->__sk_common.skc_family;
	key.port = bpf_ntohs(sk->__sk_common.skc_dport);
	__u32 *addr = (__u32 *)key.addr;
	if (key.family == AF_INET) {
		addr[0] = sk->__sk_common.skc_daddr;
	} else {
		addr[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
		addr[1] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[1];
		addr[2] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
		addr[3] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
	}
	__u64 zero = 0;
	__u64 *v = lookup_or_init(&retrans_peers, &key, &zero, NP_E_PEERS_FULL);
	if (v)
		*v += segs;
}

static __always_inline void retransmitted(const struct sock *sk, const struct sk_buff *skb)
{
	struct np_pod_info pod;
	if (!pod_of_sock(sk, &pod))
		return;
	/* TcpRetransSegs counts segments: a GSO skb carries tcp_gso_segs in
	 * its control block (a char array: a direct load at the relocated
	 * offset, no helper call). */
	__u64 segs = *(const __u16 *)(skb->cb + bpf_core_field_offset(struct tcp_skb_cb, tcp_gso_segs));
	if (segs == 0)
		segs = 1;
	struct np_pod_counters *c = slot_counters(pod.slot);
	if (c)
		c->retrans_segs += segs;
	if (pod.flags & NP_POD_PEER_LABELS)
		count_peer(sk, pod.slot, segs);
}

/* Linux >= 6.16: the tracepoint fires for every attempt with its error.
 * TcpRetransSegs counts an attempt once the segment is ready to go, before
 * handing it to the IP layer, so a retransmission the local stack then fails
 * to send (a full device backlog in a connection storm, a netfilter drop:
 * NET_XMIT_DROP, -ENOBUFS, -EPERM; TcpExtTCPRetransFail) counts too. The
 * attempts abandoned before the count end with -EBUSY (the previous copy is
 * still queued in this host), -EAGAIN (no send window), -ENOMEM, -EINVAL or
 * -EHOSTUNREACH (the route could not be rebuilt). A routing failure after the
 * count (-EHOSTUNREACH from the IP layer, right after the route was rebuilt)
 * is the one attempt the kernel counts and this cannot tell apart. */
static __always_inline int counted_before_err(int err)
{
	return err != -EBUSY && err != -EAGAIN && err != -ENOMEM && err != -EINVAL && err != -EHOSTUNREACH;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(np_retransmit_skb, const struct sock *sk, const struct sk_buff *skb, int err)
{
	if (counted_before_err(err))
		retransmitted(sk, skb);
	return 0;
}

/* Older kernels: fires only for retransmits the stack sent; the ones it
 * failed to send are counted by the kernel but invisible here (the agent
 * reports TcpRetransmits Partial on these kernels). */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(np_retransmit_skb_v1, const struct sock *sk, const struct sk_buff *skb)
{
	retransmitted(sk, skb);
	return 0;
}

/* SYN-ACK retransmits of a listener count in TcpRetransSegs too. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(np_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	struct np_pod_info pod;
	if (!pod_of_sock(sk, &pod))
		return 0;
	struct np_pod_counters *c = slot_counters(pod.slot);
	if (c)
		c->retrans_segs += 1;
	return 0;
}

/* ---- TcpResets -------------------------------------------------------- */

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(np_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct np_pod_info pod;
	if (!pod_of_skb(skb, sk, &pod))
		return 0;
	struct np_pod_counters *c = slot_counters(pod.slot);
	if (c)
		c->rst_sent += 1;
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(np_receive_reset, struct sock *sk)
{
	struct np_pod_info pod;
	if (!pod_of_sock(sk, &pod))
		return 0;
	struct np_pod_counters *c = slot_counters(pod.slot);
	if (c)
		c->rst_recv += 1;
	return 0;
}

/* ---- TcpConnectLatency ------------------------------------------------ */

static __always_inline int is_tcp(const struct sock *sk)
{
	return sk->sk_protocol == IPPROTO_TCP;
}

static __always_inline __u32 fail_reason(const struct sock *sk)
{
	int err = sk->sk_err;
	switch (err) {
	case ECONNREFUSED:
		return NP_FAIL_REFUSED;
	case ETIMEDOUT:
		return NP_FAIL_TIMEOUT;
	case EHOSTUNREACH:
	case ENETUNREACH:
		return NP_FAIL_UNREACHABLE;
	case 0:
		return NP_FAIL_ABORTED;
	default:
		return NP_FAIL_OTHER;
	}
}

/* ---- TcpRtt ----------------------------------------------------------- */

/* The pod slot of a socket with state: the one remembered, if resolved
 * under the current generation, else resolved again. */
static __always_inline int slot_of(const struct sock *sk, struct np_sock_state *st, __u32 gen, __u32 *slot)
{
	if (st && st->generation == gen && st->slot != NP_SLOT_NONE) {
		*slot = st->slot;
		return 1;
	}
	struct np_pod_info pod;
	if (!pod_of_sock(sk, &pod))
		return 0;
	*slot = pod.slot;
	if (st) {
		st->slot = pod.slot;
		st->generation = gen;
	}
	return 1;
}

static __always_inline void sample_rtt(struct sock *sk, struct np_sock_state *st, __u32 gen)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	__u64 srtt_us = tp->srtt_us >> 3;
	if (srtt_us == 0)
		return;
	__u32 slot;
	if (slot_of(sk, st, gen, &slot))
		observe(slot, NP_B_RTT, srtt_us * 1000);
}

static __always_inline struct np_sock_state *new_state(struct sock *sk, __u32 slot, __u32 gen)
{
	struct np_sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count_error(NP_E_SOCK_STORAGE);
		return 0;
	}
	st->slot = slot;
	st->generation = gen;
	return st;
}

/* A socket leaves SYN_SENT: its connect latency or its failure. */
static __always_inline void connect_done(struct sock *sk, const int newstate, __u32 gen)
{
	__u64 key = (__u64)sk;
	struct np_connect *c = bpf_map_lookup_elem(&connecting, &key);
	if (!c)
		return;
	struct np_connect pending = *c;
	bpf_map_delete_elem(&connecting, &key);
	__u32 slot = pending.slot;
	if (pending.generation != gen) {
		/* The pods changed since the SYN: resolve again. */
		struct np_pod_info pod;
		if (!pod_of_sock(sk, &pod))
			return;
		slot = pod.slot;
	}
	if (newstate == TCP_ESTABLISHED) {
		observe(slot, NP_B_CONNECT, bpf_ktime_get_ns() - pending.syn_ns);
	} else if (newstate == TCP_CLOSE) {
		struct np_pod_counters *pc = slot_counters(slot);
		__u32 r = fail_reason(sk);
		if (pc && r < NP_FAIL_MAX)
			pc->connect_fail[r] += 1;
	}
}

/* TcpConnectLatency and TcpRtt share this one program (np_config.types says
 * which are on), so a state change costs one program run, not two.
 * Connect: SYN_SENT records the time and pod by socket; leaving SYN_SENT
 * observes the latency (ESTABLISHED) or counts a failure (CLOSE). RTT:
 * ESTABLISHED marks the socket (socket storage) for the periodic sampler,
 * and leaving ESTABLISHED samples it once more. Nothing runs per ACK. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(np_sock_state_change, struct sock *sk, const int oldstate, const int newstate)
{
	if (newstate == TCP_SYN_SENT) {
		struct np_config cfg = config_now();
		if (!(cfg.types & NP_TYPE_CONNECT) || !is_tcp(sk))
			return 0;
		struct np_pod_info pod;
		if (!pod_of_sock(sk, &pod))
			return 0;
		__u64 key = (__u64)sk;
		struct np_connect c = { .syn_ns = bpf_ktime_get_ns(), .slot = pod.slot, .generation = cfg.generation };
		bpf_map_update_elem(&connecting, &key, &c, BPF_ANY);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_ESTABLISHED && newstate != TCP_ESTABLISHED)
		return 0;
	if (!is_tcp(sk))
		return 0;
	struct np_config cfg = config_now();
	if (oldstate == TCP_SYN_SENT && (cfg.types & NP_TYPE_CONNECT))
		connect_done(sk, newstate, cfg.generation);
	if (!(cfg.types & NP_TYPE_RTT))
		return 0;
	struct np_sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	__u32 slot;
	if (newstate == TCP_ESTABLISHED) {
		if (!st) {
			if (!slot_of(sk, 0, cfg.generation, &slot))
				return 0;
			st = new_state(sk, slot, cfg.generation);
			if (!st)
				return 0;
		}
		st->flags |= NP_SOCK_RTT;
		return 0;
	}
	if (oldstate == TCP_ESTABLISHED && st && (st->flags & NP_SOCK_RTT)) {
		st->flags &= ~NP_SOCK_RTT;
		sample_rtt(sk, st, cfg.generation);
	}
	return 0;
}

/* Run by the agent every sampling interval over the sockets marked above. */
SEC("iter/bpf_sk_storage_map")
int np_rtt_iter(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sock *sk = ctx->sk;
	struct np_sock_state *st = ctx->value;
	if (!sk || !st || !(st->flags & NP_SOCK_RTT))
		return 0;
	if (sk->__sk_common.skc_state != TCP_ESTABLISHED)
		return 0;
	sample_rtt(sk, st, config_gen());
	return 0;
}

/* ---- PacketDrops ------------------------------------------------------ */

static __always_inline void dropped(const struct sk_buff *skb, __u32 reason, const struct sock *rx_sk)
{
	struct np_pod_info pod;
	if (pod_of_skb(skb, rx_sk, &pod))
		count_drop(pod.slot, reason >> 16 ? NP_DROP_SUBSYSTEM : (__u16)reason);
}

/* Linux >= 6.12 passes the receiving socket when known. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(np_kfree_skb, struct sk_buff *skb, void *location, int reason, struct sock *rx_sk)
{
	dropped(skb, reason, rx_sk);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(np_kfree_skb_v1, struct sk_buff *skb, void *location, int reason)
{
	dropped(skb, reason, 0);
	return 0;
}

/* ---- Calibration (benchmarks only; never loaded by the agent) ---------- */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} calib SEC(".maps");

/* An empty program: the floor of a tp_btf program's cost here. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(np_calib_empty)
{
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, struct np_counter_key);
	__type(value, __u64);
} calib_hash SEC(".maps");

/* A program that updates a per-CPU hash counter (what a keyed counter costs). */
SEC("tp_btf/kfree_skb")
int BPF_PROG(np_calib_hash)
{
	struct np_counter_key key = { .slot = 1, .metric = NP_M_DROPS, .sub = 1 };
	__u64 *v = bpf_map_lookup_elem(&calib_hash, &key);
	if (v) {
		*v += 1;
		return 0;
	}
	__u64 one = 1;
	bpf_map_update_elem(&calib_hash, &key, &one, BPF_NOEXIST);
	return 0;
}

/* A program that updates a simple map: the usual reference point. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(np_calib_map)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&calib, &zero);
	if (v)
		*v += 1;
	return 0;
}

/* ---- Tests only (never loaded by the agent) ---------------------------- */

/* Attached to the tracepoint bpf_printk fires, it re-enters itself: the
 * kernel skips the nested run and counts a recursion miss, the loss the
 * agent exports per program. */
SEC("tp_btf/bpf_trace_printk")
int BPF_PROG(np_test_reenter)
{
	bpf_printk("netprobe: recursion test");
	return 0;
}
