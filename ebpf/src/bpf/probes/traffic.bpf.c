// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Traffic: IP bytes and packets each pod's sockets send and receive, by
 * protocol. Counted by the cgroup_skb programs in skb.bpf.c (shared with
 * Dns): egress sees each packet a socket sends as IP hands it to the device
 * layer (before GSO segmentation), ingress each packet delivered to a
 * socket (after GRO), so a packet counts as netfilter counts it on the
 * pod's interface. */

#include "common.h"
#include "packet.h"

static __always_inline void count_traffic(struct __sk_buff *skb, const struct np_pod_info *pod, __u32 dir, __u8 proto)
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
}
