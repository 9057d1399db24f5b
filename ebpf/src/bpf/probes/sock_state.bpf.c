// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TcpConnectLatency and TcpRtt: one program on inet_sock_set_state serves
 * both (np_config.types says which run), so a socket state change costs one
 * program run; the RTT iterator walks the connections TcpRtt marked. */

#include "common.h"

static __always_inline int is_tcp(const struct sock *sk)
{
	return sk->sk_protocol == IPPROTO_TCP;
}

static __always_inline __u32 fail_reason(const struct sock *sk)
{
	int err = sk->sk_err;
	switch (err) {
	case ECONNREFUSED:
		return NP_FAIL_REFUSED;
	case ETIMEDOUT:
		return NP_FAIL_TIMEOUT;
	case EHOSTUNREACH:
	case ENETUNREACH:
		return NP_FAIL_UNREACHABLE;
	case 0:
		return NP_FAIL_ABORTED;
	default:
		return NP_FAIL_OTHER;
	}
}

/* ---- TcpRtt ----------------------------------------------------------- */

/* The pod slot of a socket with state: the one remembered, if resolved
 * under the current generation, else resolved again. */
static __always_inline int slot_of(const struct sock *sk, struct np_sock_state *st, __u32 gen, __u32 *slot)
{
	if (st && st->generation == gen && st->slot != NP_SLOT_NONE) {
		*slot = st->slot;
		return 1;
	}
	struct np_pod_info pod;
	if (!pod_of_sock(sk, &pod))
		return 0;
	*slot = pod.slot;
	if (st) {
		st->slot = pod.slot;
		st->generation = gen;
	}
	return 1;
}

static __always_inline void sample_rtt(struct sock *sk, struct np_sock_state *st, __u32 gen)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	__u64 srtt_us = tp->srtt_us >> 3;
	if (srtt_us == 0)
		return;
	__u32 slot;
	if (slot_of(sk, st, gen, &slot))
		observe(slot, NP_B_RTT, srtt_us * 1000);
}

static __always_inline struct np_sock_state *new_state(struct sock *sk, __u32 slot, __u32 gen)
{
	struct np_sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count_error(NP_E_SOCK_STORAGE);
		return 0;
	}
	st->slot = slot;
	st->generation = gen;
	return st;
}

/* A socket leaves SYN_SENT: its connect latency or its failure. */
static __always_inline void connect_done(struct sock *sk, const int newstate, __u32 gen)
{
	__u64 key = (__u64)sk;
	struct np_connect *c = bpf_map_lookup_elem(&connecting, &key);
	if (!c)
		return;
	struct np_connect pending = *c;
	bpf_map_delete_elem(&connecting, &key);
	__u32 slot = pending.slot;
	if (pending.generation != gen) {
		/* The pods changed since the SYN: resolve again. */
		struct np_pod_info pod;
		if (!pod_of_sock(sk, &pod))
			return;
		slot = pod.slot;
	}
	if (newstate == TCP_ESTABLISHED) {
		observe(slot, NP_B_CONNECT, bpf_ktime_get_ns() - pending.syn_ns);
	} else if (newstate == TCP_CLOSE) {
		struct np_pod_counters *pc = slot_counters(slot);
		__u32 r = fail_reason(sk);
		if (pc && r < NP_FAIL_MAX)
			pc->connect_fail[r] += 1;
	}
}

/* TcpConnectLatency and TcpRtt share this one program (np_config.types says
 * which are on), so a state change costs one program run, not two.
 * Connect: SYN_SENT records the time and pod by socket; leaving SYN_SENT
 * observes the latency (ESTABLISHED) or counts a failure (CLOSE). RTT:
 * ESTABLISHED marks the socket (socket storage) for the periodic sampler,
 * and leaving ESTABLISHED samples it once more. Nothing runs per ACK. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(np_sock_state_change, struct sock *sk, const int oldstate, const int newstate)
{
	if (newstate == TCP_SYN_SENT) {
		struct np_config cfg = config_now();
		if (!(cfg.types & NP_TYPE_CONNECT) || !is_tcp(sk))
			return 0;
		struct np_pod_info pod;
		if (!pod_of_sock(sk, &pod))
			return 0;
		__u64 key = (__u64)sk;
		struct np_connect c = { .syn_ns = bpf_ktime_get_ns(), .slot = pod.slot, .generation = cfg.generation };
		bpf_map_update_elem(&connecting, &key, &c, BPF_ANY);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_ESTABLISHED && newstate != TCP_ESTABLISHED)
		return 0;
	if (!is_tcp(sk))
		return 0;
	struct np_config cfg = config_now();
	if (oldstate == TCP_SYN_SENT && (cfg.types & NP_TYPE_CONNECT))
		connect_done(sk, newstate, cfg.generation);
	if (!(cfg.types & NP_TYPE_RTT))
		return 0;
	struct np_sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	__u32 slot;
	if (newstate == TCP_ESTABLISHED) {
		if (!st) {
			if (!slot_of(sk, 0, cfg.generation, &slot))
				return 0;
			st = new_state(sk, slot, cfg.generation);
			if (!st)
				return 0;
		}
		st->flags |= NP_SOCK_RTT;
		return 0;
	}
	if (oldstate == TCP_ESTABLISHED && st && (st->flags & NP_SOCK_RTT)) {
		st->flags &= ~NP_SOCK_RTT;
		sample_rtt(sk, st, cfg.generation);
	}
	return 0;
}

/* Run by the agent every sampling interval over the sockets marked above. */
SEC("iter/bpf_sk_storage_map")
int np_rtt_iter(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sock *sk = ctx->sk;
	struct np_sock_state *st = ctx->value;
	if (!sk || !st || !(st->flags & NP_SOCK_RTT))
		return 0;
	if (sk->__sk_common.skc_state != TCP_ESTABLISHED)
		return 0;
	sample_rtt(sk, st, config_gen());
	return 0;
}
