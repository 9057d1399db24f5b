// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Dns: each query a pod's UDP socket sends to a watched server port is
 * remembered by (socket cookie, transaction ID) with its send time; the
 * response delivered to that socket gives the latency (histogram) and the
 * response code. A response after the agent's timeout counts as late, and
 * the agent sweeps queries never answered. Called by the cgroup_skb
 * programs in skb.bpf.c. */

#include "common.h"

/* The watched port and the DNS header's ID and flags of a UDP packet whose
 * `port_at` (0: source, 2: destination) port is watched; 0 otherwise. */
static __always_inline int dns_header(struct __sk_buff *skb, __u8 proto, __u32 l4, __u32 port_at, __u16 *id,
				      __u16 *flags)
{
	if (proto != 17 /* IPPROTO_UDP */)
		return 0;
	__u16 port = 0;
	if (bpf_skb_load_bytes(skb, l4 + port_at, &port, 2))
		return 0;
	port = bpf_ntohs(port);
	if (!bpf_map_lookup_elem(&dns_ports, &port))
		return 0;
	__u16 hdr[2] = {};
	if (bpf_skb_load_bytes(skb, l4 + 8, hdr, 4))
		return 0;
	*id = bpf_ntohs(hdr[0]);
	*flags = bpf_ntohs(hdr[1]);
	return 1;
}

static __always_inline void dns_egress(struct __sk_buff *skb, const struct np_pod_info *pod, __u8 proto, __u32 l4)
{
	__u16 id, flags;
	if (!dns_header(skb, proto, l4, 2, &id, &flags) || (flags & 0x8000) /* QR: a response */)
		return;
	struct np_dns_key key = { .cookie = bpf_get_socket_cookie(skb), .id = id };
	struct np_dns_query q = { .sent_ns = bpf_ktime_get_ns(), .slot = pod->slot };
	/* A resent query (same socket, same ID) keeps its first send time. */
	long err = bpf_map_update_elem(&dns_pending, &key, &q, BPF_NOEXIST);
	if (err == -17 /* EEXIST */)
		return;
	if (err) {
		count_error(NP_E_DNS_PENDING);
		return;
	}
	count_keyed(pod->slot, NP_M_DNS_QUERIES, 0);
}

static __always_inline void dns_ingress(struct __sk_buff *skb, __u8 proto, __u32 l4)
{
	__u16 id, flags;
	if (!dns_header(skb, proto, l4, 0, &id, &flags) || !(flags & 0x8000))
		return;
	struct np_dns_key key = { .cookie = bpf_get_socket_cookie(skb), .id = id };
	struct np_dns_query *q = bpf_map_lookup_elem(&dns_pending, &key);
	if (!q)
		return;
	__u64 latency = bpf_ktime_get_ns() - q->sent_ns;
	__u32 slot = q->slot;
	/* Whoever deletes the entry counts it: this response, or the agent's
	 * sweep of unanswered queries, never both. */
	if (bpf_map_delete_elem(&dns_pending, &key))
		return;
	__u32 zero = 0;
	struct np_dns_config *cfg = bpf_map_lookup_elem(&dns_config, &zero);
	if (cfg && cfg->timeout_ns && latency > cfg->timeout_ns) {
		count_keyed(slot, NP_M_DNS_LATE, 0);
		return;
	}
	observe(slot, NP_B_DNS, latency);
	count_keyed(slot, NP_M_DNS_RCODE, flags & 0xf);
}
