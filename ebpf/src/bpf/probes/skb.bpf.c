// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* The cgroup_skb programs Traffic and Dns share (np_config.types says which
 * run), on the root of the cgroup2 hierarchy through BPF links: they run
 * beside other tools' programs there, never replacing them, and always let
 * the packet pass. Attribution: the packet's socket's cgroup. */

#include "common.h"

static __always_inline void on_packet(struct __sk_buff *skb, __u32 dir)
{
	__u32 types = config_now().types;
	__u8 proto = 0;
	__u32 l4 = 0;
	if (!ip_l4(skb, &proto, &l4))
		proto = 0;
	/* A response is attributed by its query (the socket's pod then). */
	if (dir == NP_RX && (types & NP_TYPE_DNS) && proto)
		dns_ingress(skb, proto, l4);
	if (!(types & (NP_TYPE_TRAFFIC | NP_TYPE_DNS)))
		return;
	struct np_pod_info pod;
	if (!pod_of_skb_cgroup(skb, &pod))
		return;
	if (types & NP_TYPE_TRAFFIC)
		count_traffic(skb, &pod, dir, proto, l4);
	if (dir == NP_TX && (types & NP_TYPE_DNS) && proto)
		dns_egress(skb, &pod, proto, l4);
}

SEC("cgroup_skb/egress")
int np_skb_egress(struct __sk_buff *skb)
{
	on_packet(skb, NP_TX);
	return 1;
}

SEC("cgroup_skb/ingress")
int np_skb_ingress(struct __sk_buff *skb)
{
	on_packet(skb, NP_RX);
	return 1;
}
