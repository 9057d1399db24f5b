// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TCP aborts by pod: every RST a selected pod's socket sends (an abortive
 * close, a reset in answer to a bad segment), by the connection's state
 * when it was sent. Shipped through a netprobe Program probe
 * (tcp-aborts.yaml). Its oracle is the kernel's own TcpOutRsts of the
 * pod's network namespace. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netprobe.h"

/* The fields this program reads; CO-RE finds them in the node's layout. */
struct sock_common {
	volatile unsigned char skc_state;
} __attribute__((preserve_access_index));
struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct abort_key {
	__u32 pod;   /* decoder: pod */
	__u32 state; /* decoder: static_map (the TCP state names) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct abort_key);
	__type(value, __u64);
} aborts_by_pod SEC(".maps");

/* tcp_send_reset(sk, skb): sk is NULL for a reset that answers a segment
 * no socket wanted; this sample counts the pod's own sockets only. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_aborts, const struct sock *sk)
{
	int pod = np_sock_pod(sk);
	if (pod < 0)
		return 0;
	struct abort_key key = {
		.pod = pod,
		.state = BPF_CORE_READ(sk, __sk_common.skc_state),
	};
	np_counter_add(&aborts_by_pod, &key, 1);
	return 0;
}
