// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* The cgroup_skb programs Traffic and Dns share (np_config.types says which
 * run), attached through BPF links to the kubelet's pods cgroup in a cluster
 * (the cgroup2 root in standalone mode, or where no single pods cgroup is
 * found: docs/probes.md): they run beside other tools' programs there, never
 * replacing them, and always let the packet pass. Attribution: the packet's
 * socket's cgroup. */

#include "common.h"

/* Runs for every packet of every socket under the attach point (every pod's,
 * or every socket's on the root), so the pod comes first: a packet of no
 * selected pod (unselected pods; the host's processes on the root) costs the
 * config and leaf-cache lookups and nothing else. A DNS response needs no pod of its own (it is attributed by
 * its query) but arrives at the socket that sent the query, whose cgroup is
 * that pod's. */
static __always_inline void on_packet(struct __sk_buff *skb, __u32 dir)
{
	__u32 types = config_now().types;
	if (!(types & (NP_TYPE_TRAFFIC | NP_TYPE_DNS)))
		return;
	struct np_pod_info pod;
	if (!pod_of_skb_cgroup(skb, &pod))
		return;
	__u8 proto = 0;
	__u32 l4 = 0;
	if (!ip_l4(skb, &proto, &l4))
		proto = 0;
	if (types & NP_TYPE_TRAFFIC)
		count_traffic(skb, &pod, dir, proto, l4);
	if (!(types & NP_TYPE_DNS) || !proto)
		return;
	if (dir == NP_TX)
		dns_egress(skb, &pod, proto, l4);
	else
		dns_ingress(skb, proto, l4);
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
