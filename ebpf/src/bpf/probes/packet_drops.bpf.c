// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* PacketDrops: kernel drops by reason, per pod. */

#include "common.h"

static __always_inline void dropped(const struct sk_buff *skb, __u32 reason, const struct sock *rx_sk)
{
	struct np_pod_info pod;
	if (pod_of_skb(skb, rx_sk, &pod))
		count_drop(pod.slot, reason >> 16 ? NP_DROP_SUBSYSTEM : (__u16)reason);
}

/* Linux >= 6.12 passes the receiving socket when known. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(np_kfree_skb, struct sk_buff *skb, void *location, int reason, struct sock *rx_sk)
{
	dropped(skb, reason, rx_sk);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(np_kfree_skb_v1, struct sk_buff *skb, void *location, int reason)
{
	dropped(skb, reason, 0);
	return 0;
}
