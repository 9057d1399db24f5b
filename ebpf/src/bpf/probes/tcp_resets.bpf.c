// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TcpResets: resets sent and received per pod. */

#include "common.h"

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(np_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct np_pod_info pod;
	if (!pod_of_skb(skb, sk, &pod))
		return 0;
	struct np_pod_counters *c = slot_counters(pod.slot);
	if (c)
		NP_ADD(c->rst_sent, 1);
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
		NP_ADD(c->rst_recv, 1);
	return 0;
}
