// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Counting an event per peer (TcpRetransmits, TcpResets, TcpConnectLatency
 * with `peers`): the raw peer, bounded by the peers map, which userspace
 * turns into the probe's peer classes (node-agent pipeline/peers.rs). */
#ifndef NETPROBE_PEERS_H
#define NETPROBE_PEERS_H

#include "common.h"

/* Which end of its connection `sk` is. A socket accepted from a listener
 * is a copy of it (sk_clone_lock), so it carries the listener's accept
 * backlog, which a socket that connected never has: one load, no
 * per-connection state. A request sock is the server by definition; a
 * timewait sock keeps no such field, and the end with the lower port is
 * taken for the server (ephemeral ports are high). A listener with a
 * backlog of 0 makes its connections read as clients (docs/probes.md). */
static __always_inline __u8 role_of(const struct sock *sk)
{
	unsigned char state = sk->__sk_common.skc_state;
	if (state == TCP_NEW_SYN_RECV || state == TCP_LISTEN)
		return NP_ROLE_SERVER;
	if (state == TCP_TIME_WAIT)
		return sk->__sk_common.skc_num < bpf_ntohs(sk->__sk_common.skc_dport) ? NP_ROLE_SERVER
										   : NP_ROLE_CLIENT;
	return sk->sk_max_ack_backlog > 0 ? NP_ROLE_SERVER : NP_ROLE_CLIENT;
}

/* The remote end of a connection, and the server's port for `role`. */
static __always_inline void peer_of_common(const struct sock_common *c, __u8 role, struct np_peer_key *k)
{
	k->family = c->skc_family;
	k->role = role;
	k->port = role == NP_ROLE_SERVER ? c->skc_num : bpf_ntohs(c->skc_dport);
	__u32 *addr = (__u32 *)k->addr;
	if (k->family == AF_INET) {
		addr[0] = c->skc_daddr;
	} else {
		addr[0] = c->skc_v6_daddr.in6_u.u6_addr32[0];
		addr[1] = c->skc_v6_daddr.in6_u.u6_addr32[1];
		addr[2] = c->skc_v6_daddr.in6_u.u6_addr32[2];
		addr[3] = c->skc_v6_daddr.in6_u.u6_addr32[3];
	}
}

/* The peer of a socket (full, timewait or request: the address and ports
 * are in its sock_common). */
static __always_inline void peer_of_sock(const struct sock *sk, struct np_peer_key *k)
{
	peer_of_common(&sk->__sk_common, role_of(sk), k);
}

/* The peer of a segment that reached no socket (a reset answering it): its
 * sender, and the port it was sent to, which is this pod's, so the pod is
 * the server. 0 when the headers cannot be read. */
static __always_inline int peer_of_incoming(const struct sk_buff *skb, struct np_peer_key *k)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 th = skb->transport_header;
	__u8 ver = 0;
	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return 0;
	__u32 *addr = (__u32 *)k->addr;
	switch (ver >> 4) {
	case 4:
		k->family = AF_INET;
		if (bpf_probe_read_kernel(addr, 4, head + nh + 12))
			return 0;
		break;
	case 6:
		k->family = AF_INET6;
		if (bpf_probe_read_kernel(addr, 16, head + nh + 8))
			return 0;
		break;
	default:
		return 0;
	}
	__u16 dport = 0;
	if (bpf_probe_read_kernel(&dport, 2, head + th + 2))
		return 0;
	k->port = bpf_ntohs(dport);
	k->role = NP_ROLE_SERVER;
	return 1;
}

/* Adds `n` to the peer counter `k` of `slot` for `metric` (and `sub`). A
 * peer that finds the map full is counted in errors; the pod's own counter
 * stays exact and userspace shows the difference as peer_kind="unknown". */
static __always_inline void count_peer(struct np_peer_key *k, __u32 slot, __u16 metric, __u8 sub, __u64 n)
{
	k->slot = slot;
	k->metric = metric;
	k->sub = sub;
	__u64 zero = 0;
	__u64 *v = lookup_or_init(&peers, k, &zero, NP_E_PEERS_FULL);
	if (v)
		NP_ADD(*v, n);
}

static __always_inline void count_sock_peer(const struct sock *sk, __u32 slot, __u16 metric, __u8 sub, __u64 n)
{
	struct np_peer_key k = {};
	peer_of_sock(sk, &k);
	count_peer(&k, slot, metric, sub, n);
}

/* One connect latency observation for the peer `k` of `slot`. */
static __always_inline void observe_peer(struct np_peer_key *k, __u32 slot, __u64 v)
{
	k->slot = slot;
	k->metric = NP_M_CONNECT_BUCKET;
	k->sub = 0;
	hist_add(&peer_hists, k, NP_B_CONNECT, v, NP_E_PEERS_FULL);
}

#endif
