// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Traffic: IP bytes and packets each pod's sockets send and receive, by
 * protocol. cgroup_skb programs on the cgroup root, attached with
 * BPF_F_ALLOW_MULTI (beside any other tool's programs, never replacing
 * them): egress sees each packet a socket sends as IP hands it to the
 * device layer (before GSO segmentation), ingress each packet delivered to a
 * socket (after GRO), so a packet counts as netfilter counts it on the
 * pod's interface. They always let the packet pass. */

#include "common.h"

/* IPPROTO_* of the packet's IP header (IPv6: the first next header). */
static __always_inline __u32 traffic_proto(struct __sk_buff *skb)
{
	__u8 proto = 0;
	if (skb->protocol == bpf_htons(0x0800 /* ETH_P_IP */))
		bpf_skb_load_bytes(skb, 9, &proto, 1);
	else if (skb->protocol == bpf_htons(0x86DD /* ETH_P_IPV6 */))
		bpf_skb_load_bytes(skb, 6, &proto, 1);
	if (proto == 6 /* IPPROTO_TCP */)
		return NP_PROTO_TCP;
	if (proto == 17 /* IPPROTO_UDP */)
		return NP_PROTO_UDP;
	return NP_PROTO_OTHER;
}

static __always_inline void count_traffic(struct __sk_buff *skb, __u32 dir)
{
	struct np_pod_info pod;
	if (!pod_of_skb_cgroup(skb, &pod))
		return;
	struct np_traffic *t = bpf_map_lookup_elem(&traffic, &pod.slot);
	if (!t)
		return;
	__u32 i = dir * NP_TRAFFIC_DIR + traffic_proto(skb);
	if (i >= 2 * NP_TRAFFIC_DIR)
		return;
	t->bytes[i] += skb->len;
	t->packets[i] += 1;
}

SEC("cgroup_skb/egress")
int np_traffic_egress(struct __sk_buff *skb)
{
	count_traffic(skb, NP_TX);
	return 1;
}

SEC("cgroup_skb/ingress")
int np_traffic_ingress(struct __sk_buff *skb)
{
	count_traffic(skb, NP_RX);
	return 1;
}
