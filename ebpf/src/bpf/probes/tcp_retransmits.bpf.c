// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TcpRetransmits: retransmitted segments per pod, and per peer with peer labels. */

#include "common.h"

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
