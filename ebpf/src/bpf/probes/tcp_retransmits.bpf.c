// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TcpRetransmits: retransmitted segments per pod, and per peer with peer labels. */

#include "common.h"
#include "peers.h"

/* The kernel's own count of a socket's retransmitted segments,
 * tp->total_retrans, grows exactly where TcpRetransSegs does: once an attempt
 * is counted, whatever happens to it afterwards. Its value at a socket's last
 * event is kept here (by socket cookie: unique for the socket's life, unlike
 * its address), and the next event counts the difference, so every attempt
 * the kernel counted is counted, whatever error the attempt ended with
 * (a full device backlog in a connection storm, a netfilter drop, a routing
 * failure). A socket's first event, or one evicted from this LRU, counts the
 * event itself when `counted` says the kernel counted it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} retrans_seen SEC(".maps");

static __always_inline __u64 counted_segs(const struct sock *sk, const struct sk_buff *skb, int counted)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	if (!tp)
		return 0;
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	__u32 total = tp->total_retrans;
	__u32 *seen = bpf_map_lookup_elem(&retrans_seen, &cookie);
	if (seen && total >= *seen) {
		__u64 segs = total - *seen;
		*seen = total;
		return segs;
	}
	bpf_map_update_elem(&retrans_seen, &cookie, &total, BPF_ANY);
	if (!counted)
		return 0;
	/* TcpRetransSegs counts segments: a GSO skb carries tcp_gso_segs in
	 * its control block (a char array: a direct load at the relocated
	 * offset, no helper call). */
	__u64 segs = *(const __u16 *)(skb->cb + bpf_core_field_offset(struct tcp_skb_cb, tcp_gso_segs));
	return segs ? segs : 1;
}

/* `segs` retransmitted segments of `sk`, for its pod (and its peer). */
static __always_inline void count_retrans(const struct sock *sk, const struct np_pod_info *pod, __u64 segs)
{
	if (!segs)
		return;
	struct np_pod_counters *c = slot_counters(pod->slot);
	if (c)
		NP_ADD(c->retrans_segs, segs);
	if (pod->flags & NP_POD_PEERS)
		count_sock_peer(sk, pod->slot, NP_M_RETRANS_SEGS, 0, segs);
}

static __always_inline void retransmitted(const struct sock *sk, const struct sk_buff *skb, int counted)
{
	struct np_pod_info pod;
	if (!pod_of_sock(sk, &pod))
		return;
	count_retrans(sk, &pod, counted_segs(sk, skb, counted));
}

/* Linux >= 6.16: the tracepoint fires for every attempt, with its error.
 * The attempts abandoned before the kernel counted them end with -EBUSY
 * (the previous copy is still queued in this host), -EAGAIN (no send
 * window), -ENOMEM, -EINVAL or -EHOSTUNREACH (the route could not be
 * rebuilt); after the count, the error is whatever sending returned, which
 * can be any of these too: the socket's total_retrans tells them apart. */
static __always_inline int counted_before_err(int err)
{
	return err != -EBUSY && err != -EAGAIN && err != -ENOMEM && err != -EINVAL && err != -EHOSTUNREACH;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(np_retransmit_skb, const struct sock *sk, const struct sk_buff *skb, int err)
{
	retransmitted(sk, skb, counted_before_err(err));
	return 0;
}

/* Older kernels: fires only for retransmits the stack sent. One it failed
 * to send is still counted at the socket's next event (total_retrans grew),
 * but the failures of a socket's last attempts are never seen: the agent
 * reports TcpRetransmits Partial on these kernels. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(np_retransmit_skb_v1, const struct sock *sk, const struct sk_buff *skb)
{
	retransmitted(sk, skb, 1);
	return 0;
}

/* When a socket closes, whatever its total_retrans grew by since its last
 * retransmit event is counted: a socket's last attempts are never lost, even
 * if their event was (a failed attempt before Linux 6.16, or an event this
 * program did not see). Sockets that never retransmitted have no entry; the
 * cookie is read, not generated, so closing them costs one load. Called by
 * the state-change program (sock_state.bpf.c), which TcpConnectLatency and
 * TcpRtt share: one program run per state change, not one per type. */
static __always_inline void retrans_closed(struct sock *sk)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		return;
	/* Nothing to reconcile for a socket that never retransmitted (its
	 * entry, if a failed attempt made one, is left to the LRU). */
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !tp->total_retrans)
		return;
	__u32 *seen = bpf_map_lookup_elem(&retrans_seen, &cookie);
	if (!seen)
		return;
	__u32 last = *seen;
	bpf_map_delete_elem(&retrans_seen, &cookie);
	if (tp->total_retrans <= last)
		return;
	struct np_pod_info pod;
	if (pod_of_sock(sk, &pod))
		count_retrans(sk, &pod, tp->total_retrans - last);
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
		NP_ADD(c->retrans_segs, 1);
	if (pod.flags & NP_POD_PEERS) {
		/* The listener is the server; the request holds the client. */
		struct np_peer_key k = {};
		peer_of_common(&req->__req_common, NP_ROLE_SERVER, &k);
		count_peer(&k, pod.slot, NP_M_RETRANS_SEGS, 0, 1);
	}
	return 0;
}
