// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TCP state transitions by pod and new state, and how long a pod's
 * connections take from SYN_SENT to ESTABLISHED (a log2 histogram in
 * microseconds). Shipped through a netprobe Program probe
 * (sock-states.yaml). Its oracle: a pod's transitions to SYN_SENT and to
 * ESTABLISHED from SYN_SENT equal its namespace's TcpActiveOpens when every
 * connect succeeds. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netprobe.h"

/* The fields this program reads; CO-RE finds them in the node's layout. */
struct sock {
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
/* log2 buckets up to 2^26 us (67 s); the sample's manifest says max: 26. */
#define CONNECT_MAX_BUCKET 26

struct state_key {
	__u32 pod;      /* decoder: pod */
	__u16 newstate; /* decoder: static_map */
	__u16 pad;      /* decoder: skip */
};

struct connect_key {
	__u32 pod;    /* decoder: pod */
	__u32 bucket; /* the histogram's bucket */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct state_key);
	__type(value, __u64);
} transitions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct connect_key);
	__type(value, __u64);
} connect_us SEC(".maps");

/* When each connecting socket entered SYN_SENT. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} syn_sent_at SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_states, const struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	int pod = np_sock_pod(sk);
	if (pod < 0)
		return 0;
	struct state_key key = {.pod = pod, .newstate = newstate};
	np_counter_add(&transitions, &key, 1);
	__u64 id = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		__u64 now = bpf_ktime_get_ns();
		bpf_map_update_elem(&syn_sent_at, &id, &now, BPF_ANY);
	} else if (oldstate == TCP_SYN_SENT) {
		__u64 *t = bpf_map_lookup_elem(&syn_sent_at, &id);
		if (t && newstate == TCP_ESTABLISHED) {
			struct connect_key ck = {.pod = pod};
			np_hist_observe_log2(&connect_us, &ck, bucket, (bpf_ktime_get_ns() - *t) / 1000,
					     CONNECT_MAX_BUCKET);
		}
		bpf_map_delete_elem(&syn_sent_at, &id);
	}
	return 0;
}
