// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* netprobe.h: what a program run by a netprobe `Program` probe needs to
 * count per pod. Include it after <linux/bpf.h> (or a vmlinux.h) and
 * libbpf's bpf_helpers.h, bpf_tracing.h and bpf_core_read.h: it declares
 * the few kernel types it reads itself.
 *
 * The agent fills two maps declared here, per probe, with the pods (or, in
 * standalone mode, cgroups) that probe selects: np_pod_cgroups (pod-level
 * cgroup id -> slot) and np_pod_netns (network namespace inode -> slot).
 * np_sock_pod(), np_current_pod() and np_skb_pod() give the slot (>= 0) of
 * the pod an event belongs to if this probe selects it, else -1. Key your
 * maps by that slot, declare the field with decoder `pod`, and the agent
 * turns it into the probe's namespace/pod (or workload, or cgroup) labels.
 * A pod's slot is reused for another pod only after its entries in your
 * maps were deleted by the agent.
 *
 * Cost: up to NP_MAX_CGROUP_DEPTH hash lookups per call (the socket's
 * cgroup and its ancestors, nearest first); call it once per event, after
 * your own cheap filters.
 *
 * docs/programs.md says how to build, ship and debug a program.
 */
#ifndef NETPROBE_H
#define NETPROBE_H

#ifndef __VMLINUX_H__
#include <linux/bpf.h>
#endif

/* The kernel types the helpers read, only the fields they need. The
 * `___netprobe` suffix is a CO-RE flavor: the loader matches each to the
 * kernel type named before it (struct sock, struct cgroup, ...) in the
 * node's own layout, and the names never clash with the program's own
 * declarations or a vmlinux.h. */
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct ns_common___netprobe {
	unsigned int inum;
};
struct net___netprobe {
	struct ns_common___netprobe ns;
};
struct kernfs_node___netprobe {
	__u64 id;
};
struct cgroup___netprobe {
	int level;
	struct kernfs_node___netprobe *kn;
	struct cgroup___netprobe *ancestors[];
};
struct sock_cgroup_data___netprobe {
	struct cgroup___netprobe *cgroup;
};
struct sock_common___netprobe {
	volatile unsigned char skc_state;
	struct {
		struct net___netprobe *net;
	} skc_net;
};
struct sock___netprobe {
	struct sock_common___netprobe __sk_common;
	struct sock_cgroup_data___netprobe sk_cgrp_data;
};
#pragma clang attribute pop

/* Pods (or cgroups) per probe and node. */
#define NP_MAX_TARGETS 4096
/* Cgroup levels walked from a socket's cgroup up to its pod's. */
#define NP_MAX_CGROUP_DEPTH 12

/* A selected pod's slot (the value of both maps). */
struct np_target {
	__u32 slot;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NP_MAX_TARGETS);
	__type(key, __u64);
	__type(value, struct np_target);
} np_pod_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, NP_MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct np_target);
} np_pod_netns SEC(".maps");

/* The slot of the pod whose cgroup is `cg` or an ancestor of it, or -1. */
static __always_inline int np_cgroup_pod(struct cgroup___netprobe *cg)
{
	if (!cg)
		return -1;
	int level = BPF_CORE_READ(cg, level);
	for (int i = 0; i < NP_MAX_CGROUP_DEPTH; i++) {
		int l = level - i;
		if (l < 0)
			break;
		struct cgroup___netprobe *anc = 0;
		bpf_probe_read_kernel(&anc, sizeof(anc), &cg->ancestors[l]);
		if (!anc)
			break;
		__u64 id = BPF_CORE_READ(anc, kn, id);
		struct np_target *t = bpf_map_lookup_elem(&np_pod_cgroups, &id);
		if (t)
			return t->slot;
	}
	return -1;
}

/* The slot of the pod that owns socket `sk` if this probe selects it, else
 * -1: a full socket by its cgroup, a timewait or request socket (which have
 * no cgroup) by its network namespace. For tracing programs (tp_btf,
 * raw_tp, tracepoint). */
static __always_inline int np_sock_pod(const void *sock)
{
	const struct sock___netprobe *sk = sock;
	if (!sk)
		return -1;
	unsigned char state = BPF_CORE_READ(sk, __sk_common.skc_state);
	/* TCP_TIME_WAIT (6) and TCP_NEW_SYN_RECV (12) are not full sockets. */
	if (state != 6 && state != 12)
		return np_cgroup_pod(BPF_CORE_READ(sk, sk_cgrp_data.cgroup));
	__u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	struct np_target *t = bpf_map_lookup_elem(&np_pod_netns, &inum);
	return t ? (int)t->slot : -1;
}

/* Set `slot` to the deepest selected cgroup's, walking the levels from the
 * root down to `leaf`, `ancestor` being the id at level `l` (0 past the
 * leaf): the helpers that give a cgroup's ancestors by level differ by
 * program type. */
#define NP_DEEPEST_SELECTED(leaf, ancestor, slot)                               \
	for (int l = 1; l <= NP_MAX_CGROUP_DEPTH + 4; l++) {                    \
		__u64 __np_id = (ancestor);                                     \
		if (!__np_id)                                                   \
			break;                                                  \
		struct np_target *__np_t = bpf_map_lookup_elem(&np_pod_cgroups, &__np_id); \
		if (__np_t)                                                     \
			(slot) = __np_t->slot;                                  \
		if (__np_id == (leaf))                                          \
			break;                                                  \
	}

/* The slot of the current task's pod if this probe selects it, else -1:
 * the deepest selected cgroup among the task's cgroup and its ancestors.
 * For tracing programs, in process context (in a softirq, "current" is
 * whichever task was interrupted: use np_sock_pod there). */
static __always_inline int np_current_pod(void)
{
	__u64 leaf = bpf_get_current_cgroup_id();
	int slot = -1;
	NP_DEEPEST_SELECTED(leaf, bpf_get_current_ancestor_cgroup_id(l), slot);
	return slot;
}

/* The slot of the pod whose socket sends or receives `skb` in a cgroup_skb
 * program, if this probe selects it, else -1. */
static __always_inline int np_skb_pod(struct __sk_buff *skb)
{
	__u64 leaf = bpf_skb_cgroup_id(skb);
	int slot = -1;
	if (!leaf)
		return -1;
	NP_DEEPEST_SELECTED(leaf, bpf_skb_ancestor_cgroup_id(skb, l), slot);
	return slot;
}

/* Add `n` to the u64 counter at `key` of a hash (or array) map, creating it
 * at zero first. Atomic, so nested runs on one CPU (a softirq interrupting
 * the program) lose nothing. Returns 0, or -1 when the map is full. */
static __always_inline int np_counter_add(void *map, const void *key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, key);
	if (!v) {
		__u64 zero = 0;
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, key);
		if (!v)
			return -1;
	}
	__sync_fetch_and_add(v, n);
	return 0;
}

/* floor(log2(v)) for v > 0, without loops. */
static __always_inline __u32 np_log2_floor(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

/* The log2 bucket of `v` (bucket i counts values <= 2^i and > 2^(i-1);
 * bucket 0 counts 0 and 1), clamped to max + 1, the +Inf bucket of a
 * `log2` histogram with that `max`. */
static __always_inline __u32 np_log2_bucket(__u64 v, __u32 max)
{
	__u32 b = v <= 1 ? 0 : np_log2_floor(v - 1) + 1;
	return b > max ? max + 1 : b;
}

/* Observe `value` in a histogram map whose key `*key` ends in the bucket
 * field `field`: one count in its log2 bucket, and `value` added to the
 * sum, kept under the bucket index with every bit set (NP_BUCKET_SUM). */
#define NP_BUCKET_SUM(field) ((__typeof__(field))~0ULL)
#define np_hist_observe_log2(map, key, field, value, max)               \
	do {                                                            \
		__u64 __np_v = (value);                                 \
		(key)->field = np_log2_bucket(__np_v, (max));           \
		np_counter_add((map), (key), 1);                        \
		(key)->field = NP_BUCKET_SUM((key)->field);             \
		np_counter_add((map), (key), __np_v);                   \
	} while (0)

#endif /* NETPROBE_H */
