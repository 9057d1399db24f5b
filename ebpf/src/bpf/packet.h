// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* Reading a packet's headers in the cgroup_skb programs (Traffic and Dns):
 * where the IP header says the transport header starts, and its ports. */
#ifndef NETPROBE_PACKET_H
#define NETPROBE_PACKET_H

/* The IP header's protocol (IPv6: the first next header) and where the
 * transport header starts; 0 when the packet is not IP. The IP header is
 * read in place (direct packet access: the stack puts it in the linear
 * part), with bpf_skb_load_bytes only when it is not there. */
static __always_inline int ip_l4(struct __sk_buff *skb, __u8 *proto, __u32 *l4)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	if (skb->protocol == bpf_htons(0x0800 /* ETH_P_IP */)) {
		if (data + 20 <= end) {
			*proto = data[9];
			*l4 = (data[0] & 0xf) * 4;
			return 1;
		}
		__u8 vihl = 0;
		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, proto, 1))
			return 0;
		*l4 = (vihl & 0xf) * 4;
		return 1;
	}
	if (skb->protocol == bpf_htons(0x86DD /* ETH_P_IPV6 */)) {
		if (data + 40 <= end) {
			*proto = data[6];
			*l4 = 40;
			return 1;
		}
		if (bpf_skb_load_bytes(skb, 6, proto, 1))
			return 0;
		*l4 = 40;
		return 1;
	}
	return 0;
}

/* The 16-bit port at `at` (network order in the packet, returned in host
 * order), in place when the linear part holds it. */
static __always_inline int l4_port(struct __sk_buff *skb, __u32 at, __u16 *port)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	at &= 0xff; /* an IP header ends within 60 bytes; a port within 64 */
	__u8 *p = data + at;
	if (p + 2 <= end) {
		*port = ((__u16)p[0] << 8) | p[1];
		return 1;
	}
	__u16 raw = 0;
	if (bpf_skb_load_bytes(skb, at, &raw, 2))
		return 0;
	*port = bpf_ntohs(raw);
	return 1;
}

#endif
