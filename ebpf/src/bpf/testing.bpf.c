// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Programs for the benchmarks and tests only, in an object of their own
 * (built with the crate feature `testing`): the agent's object never
 * carries them. */

#include <linux/bpf.h>
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "layout.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

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

/* Empty cgroup_skb programs: the floor of Traffic's per-packet cost (the
 * same packets, the same hook, attached beside it on the cgroup root). */
SEC("cgroup_skb/egress")
int np_calib_skb_egress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int np_calib_skb_ingress(struct __sk_buff *skb)
{
	return 1;
}
