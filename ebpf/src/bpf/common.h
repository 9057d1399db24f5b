// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* What every probe type shares: the kernel types, the maps of the layout
 * (layout.h; mirrored in Rust by layout.rs), attribution of an event to a
 * pod, and the counter helpers.
 *
 * Attribution (DESIGN.md): a full socket is attributed by its cgroup v2,
 * walked up to the pod-level cgroup the agent registered in pod_by_cgroup;
 * anything without a full socket (timewait and request socks, packets before
 * socket lookup) by network namespace inode in pod_by_netns. The walk result
 * per leaf cgroup is cached in leaf_cache and stamped with the agent's
 * configuration generation, so in steady state an event costs one cache
 * lookup before the counter update, selected pod or not.
 */
#pragma once

#include <linux/bpf.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "layout.h"


#define MAX_CGROUP_DEPTH 12

/* The agent replaces entries of these while programs read them: without
 * preallocation a replaced element is freed after an RCU grace period, so a
 * program still holding it never reads another pod's entry in its place
 * (preallocated elements go back to the free list at once). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NP_MAX_PODS);
	__type(key, __u64);
	__type(value, struct np_pod_info);
} pod_by_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
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
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NP_DNS_PENDING);
	__type(key, struct np_dns_key);
	__type(value, struct np_dns_query);
} dns_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct np_dns_config);
} dns_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
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
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NP_MAX_PODS);
	__type(key, __u32);
	__type(value, struct np_traffic);
} traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, NP_PEERS);
	__type(key, struct np_peer_key);
	__type(value, __u64);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NP_PEER_HISTS);
	__type(key, struct np_peer_key);
	__type(value, struct np_hist);
} peer_hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NP_E_MAX);
	__type(key, __u32);
	__type(value, __u64);
} errors SEC(".maps");

/* Pending active opens. Not socket storage: creating and freeing socket
 * storage costs far more per connection than a hash entry (BENCHMARKS.md),
 * and a connection needs its entry only until it leaves SYN_SENT. Not LRU
 * either (layout.h, NP_CONNECTING): a full table refuses, and is counted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NP_CONNECTING);
	__type(key, __u64);
	__type(value, struct np_connect);
} connecting SEC(".maps");

/* Entries of `connecting` each pod slot holds (signed: a slot's count may
 * dip below zero for a moment after the agent resets it), so one pod's
 * storm meets its share (np_config.connect_share), not the node's table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NP_MAX_PODS);
	__type(key, __u32);
	__type(value, __s64);
} connecting_slots SEC(".maps");

/* Established connections TcpRtt samples. Not socket storage: creating
 * and freeing it per connection cost TcpRtt 16-24% of the short-connection
 * rate (BENCHMARKS.md); an entry here is a hash insert and a delete. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NP_RTT_SOCKS);
	__type(key, __u64);
	__type(value, struct np_rtt_sock);
} rtt_socks SEC(".maps");

/* Every counter update is an atomic add, per-CPU values included: two
 * programs (or one cgroup_skb program, which has no recursion guard) run
 * nested on one CPU when a softirq interrupts one running in process
 * context, and a plain += would then lose the interrupted update. */
#define NP_ADD(lvalue, v) __sync_fetch_and_add(&(lvalue), (v))

static __always_inline void count_error(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&errors, &which);
	if (v)
		NP_ADD(*v, 1);
}

static __always_inline struct np_config config_now(void)
{
	__u32 zero = 0;
	struct np_config *c = bpf_map_lookup_elem(&config, &zero);
	struct np_config out = { .generation = 0, .types = 0, .connect_share = 0 };
	if (c)
		out = *c;
	return out;
}

static __always_inline __u32 config_gen(void)
{
	return config_now().generation;
}

/* Remember the pod (or none) a leaf cgroup walked to under `gen`. A stale
 * entry is refreshed in place: replacing it would hand the old element of
 * this LRU map to the next insert at once, while another CPU may still be
 * reading it for this leaf. */
static __always_inline struct np_pod_info *leaf_remember(struct np_leaf *cached, __u64 leaf, __u32 gen,
							 struct np_pod_info *found, struct np_pod_info *out)
{
	struct np_leaf fresh = { .slot = NP_SLOT_NONE, .generation = gen, .flags = 0 };
	if (found) {
		fresh.slot = found->slot;
		fresh.flags = found->flags;
	}
	if (cached) {
		cached->slot = fresh.slot;
		cached->flags = fresh.flags;
		cached->generation = gen;
	} else {
		long err = bpf_map_update_elem(&leaf_cache, &leaf, &fresh, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST: another CPU was first */)
			count_error(NP_E_LEAF_CACHE);
	}
	if (!found)
		return 0;
	*out = *found;
	return out;
}

/* A leaf's cached pod under the current generation: 1 with *out set, 0
 * cached as no pod, -1 when the walk must be done (absent or stale; *cached
 * and *gen are what leaf_remember refreshes). */
static __always_inline int leaf_cached(__u64 leaf, struct np_leaf **cached, __u32 *gen, struct np_pod_info *out)
{
	*gen = config_gen();
	struct np_leaf *c = bpf_map_lookup_elem(&leaf_cache, &leaf);
	*cached = c;
	if (!c || c->generation != *gen)
		return -1;
	if (c->slot == NP_SLOT_NONE)
		return 0;
	out->slot = c->slot;
	out->flags = c->flags;
	return 1;
}

/* The pod of a cgroup: the nearest ancestor (or itself) registered by the
 * agent, cached per leaf. */
static __always_inline struct np_pod_info *pod_of_cgroup(struct cgroup *cg, struct np_pod_info *out)
{
	if (!cg)
		return 0;
	struct np_leaf *cached;
	__u32 gen;
	__u64 leaf = cg->kn->id;
	int hit = leaf_cached(leaf, &cached, &gen, out);
	if (hit >= 0)
		return hit ? out : 0;
	struct np_pod_info *found = 0;
	int level = BPF_CORE_READ(cg, level);
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
		if (found)
			break;
	}
	return leaf_remember(cached, leaf, gen, found, out);
}

/* The pod of a packet's socket in a cgroup_skb program (no BTF pointers
 * there): the socket's cgroup by id, walked down from the root by the
 * helpers to the leaf, keeping the deepest registered cgroup, so it agrees
 * with pod_of_cgroup where targets nest (standalone cgroups), and cached
 * per leaf in the same cache. */
static __always_inline struct np_pod_info *pod_of_skb_cgroup(struct __sk_buff *skb, struct np_pod_info *out)
{
	__u64 leaf = bpf_skb_cgroup_id(skb);
	if (!leaf)
		return 0;
	struct np_leaf *cached;
	__u32 gen;
	int hit = leaf_cached(leaf, &cached, &gen, out);
	if (hit >= 0)
		return hit ? out : 0;
	struct np_pod_info *found = 0;
	for (int l = 1; l <= MAX_CGROUP_DEPTH + 4; l++) {
		__u64 id = bpf_skb_ancestor_cgroup_id(skb, l);
		if (!id)
			break;
		struct np_pod_info *p = bpf_map_lookup_elem(&pod_by_cgroup, &id);
		if (p)
			found = p;
		if (id == leaf)
			break;
	}
	return leaf_remember(cached, leaf, gen, found, out);
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

/* One event of kernel metric `metric` (`sub`) for a slot, in the
 * (slot, metric, sub) hash: for counters keyed by a value (drop reasons,
 * DNS response codes). */
static __always_inline void count_keyed(__u32 slot, __u16 metric, __u16 sub)
{
	struct np_counter_key key = { .slot = slot, .metric = metric, .sub = sub };
	__u64 zero = 0;
	__u64 *v = lookup_or_init(&counters, &key, &zero, NP_E_COUNTERS_FULL);
	if (v)
		NP_ADD(*v, 1);
}

static __always_inline void count_drop(__u32 slot, __u16 reason)
{
	count_keyed(slot, NP_M_DROPS, reason);
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

/* One observation `v` (ns) in the histogram `key` of the per-CPU hash
 * `map` (bounds `which`), created zeroed on its first observation; a full
 * map is counted as `error`. One lookup: bucket and sum updated together. */
static __always_inline void hist_add(void *map, const void *key, __u32 which, __u64 v, __u32 error)
{
	__u32 zero = 0;
	struct np_hist *z = bpf_map_lookup_elem(&hist_zero, &zero);
	if (!z)
		return;
	struct np_hist *h = lookup_or_init(map, key, z, error);
	if (!h)
		return;
	__u32 b = bucket_of(which, v);
	if (b > NP_MAX_BOUNDS)
		b = NP_MAX_BOUNDS;
	NP_ADD(h->buckets[b], 1);
	NP_ADD(h->sum_ns, v);
}

/* One observation `v` of latency type `which` for a slot, in the histogram
 * of that type's `sub` value (DNS: the query type; else 0). */
static __always_inline void observe_sub(__u32 slot, __u32 which, __u32 sub, __u64 v)
{
	struct np_hist_key key = { .slot = slot, .which = which | (sub << NP_HIST_SUB_SHIFT) };
	hist_add(&hists, &key, which, v, NP_E_HISTS_FULL);
}

static __always_inline void observe(__u32 slot, __u32 which, __u64 v)
{
	observe_sub(slot, which, 0, v);
}
