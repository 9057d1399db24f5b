// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Dns: each query a pod's socket sends to a watched server port, over UDP
 * or TCP, is remembered by (socket cookie, transaction ID) with its send
 * time and query type; the response delivered to that socket gives the
 * latency (histogram) and the response code. A response after the agent's
 * timeout counts as late, and the agent sweeps queries never answered.
 * Called by the cgroup_skb programs in skb.bpf.c.
 *
 * UDP carries one message at the payload's start. TCP prefixes each message
 * with its 2-byte length and a segment may carry several (a resolver writes
 * its A and AAAA queries together): up to NP_DNS_TCP_MSGS whose header lies
 * in the segment are read. There is no stream reassembly: a segment that
 * continues a long message is read as if it began one, which finds no
 * pending query to match (responses) or is dropped by the length and flag
 * checks below (queries are short and fit in their first segment). */

#include "common.h"
#include "packet.h"

#define NP_DNS_QR 0x8000

/* Where the first DNS message of a UDP or TCP packet to (`port_at` 2) or
 * from (0) a watched port begins: its length prefix on TCP, its header on
 * UDP. 0 when the packet is not DNS. */
static __always_inline int dns_payload(struct __sk_buff *skb, __u8 proto, __u32 l4, __u32 port_at, __u32 *at,
				       int *tcp)
{
	if (proto != 17 /* IPPROTO_UDP */ && proto != 6 /* IPPROTO_TCP */)
		return 0;
	__u32 zero = 0;
	struct np_dns_config *cfg = bpf_map_lookup_elem(&dns_config, &zero);
	if (!cfg)
		return 0;
	__u16 port = 0;
	if (!l4_port(skb, l4 + port_at, &port))
		return 0;
	int watched = 0;
	for (int i = 0; i < NP_DNS_PORTS; i++) {
		if (!cfg->ports[i])
			break;
		if (cfg->ports[i] == port) {
			watched = 1;
			break;
		}
	}
	if (!watched)
		return 0;
	if (proto == 17) {
		*at = l4 + 8;
		*tcp = 0;
		return 1;
	}
	__u8 doff = 0;
	if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
		return 0;
	*at = l4 + (doff >> 4) * 4;
	*tcp = 1;
	return 1;
}

/* The ID and flags of the DNS header at `at`. */
static __always_inline int dns_header(struct __sk_buff *skb, __u32 at, __u16 *id, __u16 *flags)
{
	__u16 hdr[2] = {};
	if (bpf_skb_load_bytes(skb, at, hdr, 4))
		return 0;
	*id = bpf_ntohs(hdr[0]);
	*flags = bpf_ntohs(hdr[1]);
	return 1;
}

/* The query type class of the question after the header at `at`: its name
 * is walked label by label to the type that follows it. */
static __always_inline __u32 dns_qtype(struct __sk_buff *skb, __u32 at)
{
	__u32 off = at + 12;
	for (int i = 0; i < NP_DNS_LABELS; i++) {
		__u8 len = 0;
		if (bpf_skb_load_bytes(skb, off, &len, 1))
			return 0;
		if (len == 0) {
			__u16 t = 0;
			if (bpf_skb_load_bytes(skb, off + 1, &t, 2))
				return 0;
			switch (bpf_ntohs(t)) {
			case 1:
				return 1; /* A */
			case 28:
				return 2; /* AAAA */
			case 33:
				return 3; /* SRV */
			case 12:
				return 4; /* PTR */
			default:
				return 0;
			}
		}
		if (len > 63) /* a compression pointer: not in a query's question */
			return 0;
		off += 1 + len;
	}
	return 0;
}

static __always_inline void dns_query(struct __sk_buff *skb, const struct np_pod_info *pod, __u32 at, __u16 id)
{
	struct np_dns_key key = { .cookie = bpf_get_socket_cookie(skb), .id = id };
	struct np_dns_query q = { .sent_ns = bpf_ktime_get_ns(), .slot = pod->slot, .qtype = dns_qtype(skb, at) };
	/* A resent query (same socket, same ID; a TCP retransmission) keeps
	 * its first send time. */
	long err = bpf_map_update_elem(&dns_pending, &key, &q, BPF_NOEXIST);
	if (err == -17 /* EEXIST */)
		return;
	if (err) {
		count_error(NP_E_DNS_PENDING);
		return;
	}
	count_keyed(pod->slot, NP_M_DNS_QUERIES, q.qtype);
}

static __always_inline void dns_response(struct __sk_buff *skb, __u16 id, __u16 flags)
{
	struct np_dns_key key = { .cookie = bpf_get_socket_cookie(skb), .id = id };
	struct np_dns_query *q = bpf_map_lookup_elem(&dns_pending, &key);
	if (!q)
		return;
	__u64 latency = bpf_ktime_get_ns() - q->sent_ns;
	__u32 slot = q->slot;
	__u32 qtype = q->qtype;
	if (qtype >= NP_DNS_QTYPES)
		qtype = 0;
	/* Whoever deletes the entry counts it: this response, or the agent's
	 * sweep of unanswered queries, never both. */
	if (bpf_map_delete_elem(&dns_pending, &key))
		return;
	__u32 zero = 0;
	struct np_dns_config *cfg = bpf_map_lookup_elem(&dns_config, &zero);
	if (cfg && cfg->timeout_ns && latency > cfg->timeout_ns) {
		count_keyed(slot, NP_M_DNS_LATE, qtype);
		return;
	}
	observe_sub(slot, NP_B_DNS, qtype, latency);
	count_keyed(slot, NP_M_DNS_RCODE, (flags & 0xf) | (qtype << 4));
}

/* Each DNS message of a packet: `query` for egress (messages without the
 * QR bit), else responses. */
static __always_inline void dns_messages(struct __sk_buff *skb, const struct np_pod_info *pod, __u8 proto, __u32 l4,
					 int query)
{
	__u32 at;
	int tcp;
	__u16 id, flags;
	if (!dns_payload(skb, proto, l4, query ? 2 : 0, &at, &tcp))
		return;
	if (!tcp) {
		if (!dns_header(skb, at, &id, &flags))
			return;
		if (query && !(flags & NP_DNS_QR))
			dns_query(skb, pod, at, id);
		else if (!query && (flags & NP_DNS_QR))
			dns_response(skb, id, flags);
		return;
	}
	for (int i = 0; i < NP_DNS_TCP_MSGS; i++) {
		__u16 len = 0;
		if (bpf_skb_load_bytes(skb, at, &len, 2))
			return;
		len = bpf_ntohs(len);
		if (len < 12 /* a header */ || !dns_header(skb, at + 2, &id, &flags))
			return;
		if (query && !(flags & NP_DNS_QR))
			dns_query(skb, pod, at + 2, id);
		else if (!query && (flags & NP_DNS_QR))
			dns_response(skb, id, flags);
		at += 2 + len;
	}
}

static __always_inline void dns_egress(struct __sk_buff *skb, const struct np_pod_info *pod, __u8 proto, __u32 l4)
{
	dns_messages(skb, pod, proto, l4, 1);
}

static __always_inline void dns_ingress(struct __sk_buff *skb, __u8 proto, __u32 l4)
{
	dns_messages(skb, 0, proto, l4, 0);
}
