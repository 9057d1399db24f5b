// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TcpResets: resets sent and received per pod. */

#include "common.h"
#include "peers.h"

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(np_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct np_pod_info pod;
	if (!pod_of_skb(skb, sk, &pod))
		return 0;
	struct np_pod_counters *c = slot_counters(pod.slot);
	if (c)
		NP_ADD(c->rst_sent, 1);
	if (pod.flags & NP_POD_PEERS) {
		/* With a socket, its peer; without one, the sender of the
		 * segment the reset answers. */
		struct np_peer_key k = {};
		if (sk)
			peer_of_sock(sk, &k);
		else if (!skb || !peer_of_incoming(skb, &k))
			k.family = 0; /* unreadable: userspace shows it as unknown */
		count_peer(&k, pod.slot, NP_M_RST_SENT, 0, 1);
	}
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
	if (pod.flags & NP_POD_PEERS)
		count_sock_peer(sk, pod.slot, NP_M_RST_RECV, 0, 1);
	return 0;
}
