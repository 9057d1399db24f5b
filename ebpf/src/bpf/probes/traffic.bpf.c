// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Traffic: IP bytes and packets each pod's sockets send and receive, by
 * protocol. Counted by the cgroup_skb programs in skb.bpf.c (shared with
 * Dns): egress sees each packet a socket sends as IP hands it to the device
 * layer (before GSO segmentation), ingress each packet delivered to a
 * socket (after GRO), so a packet counts as netfilter counts it on the
 * pod's interface. */

#include "common.h"
#include "packet.h"
#include "peers.h"

/* The packet's peer: the other end's address from the IP header (the
 * destination of a packet sent, the source of one received) and the
 * server's port from the transport header. A full TCP socket's role is
 * read as for the other TCP probes (its accept backlog, peers.h; a
 * listener is the server); any other socket's (UDP, a request sock) by its
 * ports: the lower port is the server's. */
static __always_inline void count_traffic_peer(struct __sk_buff *skb, __u32 slot, __u32 dir, __u8 proto, __u32 l4,
					       __u32 i)
{
	struct np_peer_key k = {};
	if (skb->protocol == bpf_htons(0x0800 /* ETH_P_IP */)) {
		k.family = AF_INET;
		if (bpf_skb_load_bytes(skb, dir == NP_TX ? 16 : 12, k.addr, 4))
			k.family = 0;
	} else if (skb->protocol == bpf_htons(0x86DD /* ETH_P_IPV6 */)) {
		k.family = AF_INET6;
		if (bpf_skb_load_bytes(skb, dir == NP_TX ? 24 : 8, k.addr, 16))
			k.family = 0;
	}
	__u16 sport = 0, dport = 0;
	if (proto == 6 /* IPPROTO_TCP */ || proto == 17 /* IPPROTO_UDP */) {
		if (!l4_port(skb, l4, &sport) || !l4_port(skb, l4 + 2, &dport))
			sport = dport = 0;
	}
	__u16 local = dir == NP_TX ? sport : dport;
	__u16 remote = dir == NP_TX ? dport : sport;
	int server = local && local < remote;
	struct bpf_sock *sk = skb->sk;
	if (sk && proto == 6) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		if (tp)
			server = ((struct sock *)tp)->sk_max_ack_backlog > 0;
	}
	k.role = server ? NP_ROLE_SERVER : NP_ROLE_CLIENT;
	k.port = server ? local : remote;
	count_peer(&k, slot, NP_M_TRAFFIC_BYTES, i, skb->len);
	count_peer(&k, slot, NP_M_TRAFFIC_PACKETS, i, 1);
}

static __always_inline void count_traffic(struct __sk_buff *skb, const struct np_pod_info *pod, __u32 dir, __u8 proto,
					  __u32 l4)
{
	struct np_traffic *t = bpf_map_lookup_elem(&traffic, &pod->slot);
	if (!t)
		return;
	__u32 p = proto == 6 /* IPPROTO_TCP */ ? NP_PROTO_TCP : proto == 17 /* IPPROTO_UDP */ ? NP_PROTO_UDP : NP_PROTO_OTHER;
	__u32 i = dir * NP_TRAFFIC_DIR + p;
	if (i >= 2 * NP_TRAFFIC_DIR)
		return;
	NP_ADD(t->bytes[i], skb->len);
	NP_ADD(t->packets[i], 1);
	if (pod->flags & NP_POD_PEERS)
		count_traffic_peer(skb, pod->slot, dir, proto, l4, i);
}
