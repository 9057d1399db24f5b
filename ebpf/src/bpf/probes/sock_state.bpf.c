// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* TcpConnectLatency and TcpRtt: one program on inet_sock_set_state serves
 * both (np_config.types says which run), so a socket state change costs one
 * program run; the RTT sampler walks the connections TcpRtt marked. */

#include "common.h"
#include "peers.h"

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

/* One RTT observation from a tcp_sock's srtt_us (8 times the smoothed RTT
 * in microseconds; 0 before the first measurement). */
static __always_inline void observe_srtt(__u32 slot, __u32 srtt_us8)
{
	__u64 srtt_us = srtt_us8 >> 3;
	if (srtt_us)
		observe(slot, NP_B_RTT, srtt_us * 1000);
}

/* A selected pod's connection reaches ESTABLISHED: remember it for the
 * sampler (replacing a stale entry at the same address). `known` is its pod
 * when the caller resolved it already (an active open TcpConnectLatency
 * followed), else NULL. */
static __always_inline void rtt_mark(struct sock *sk, const struct np_pod_info *known)
{
	struct np_pod_info pod;
	if (known)
		pod = *known;
	else if (!pod_of_sock(sk, &pod))
		return;
	__u64 key = (__u64)sk;
	struct np_rtt_sock v = { .cookie = bpf_get_socket_cookie(sk), .slot = pod.slot };
	if (bpf_map_update_elem(&rtt_socks, &key, &v, BPF_ANY))
		count_error(NP_E_RTT_SOCKS);
}

/* A marked connection leaves ESTABLISHED: its last sample, and it is
 * forgotten. */
static __always_inline void rtt_unmark(struct sock *sk)
{
	/* A marked socket has a cookie (rtt_mark made it): most sockets that
	 * were never marked have none, and skip the lookup. */
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		return;
	__u64 key = (__u64)sk;
	struct np_rtt_sock *v = bpf_map_lookup_elem(&rtt_socks, &key);
	if (!v)
		return;
	struct np_rtt_sock m = *v;
	bpf_map_delete_elem(&rtt_socks, &key);
	if (m.cookie != cookie)
		return;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (tp)
		observe_srtt(m.slot, tp->srtt_us);
}

/* An entry of `connecting` left it (whoever deleted it: this program or the
 * sweep): its slot holds one fewer. */
static __always_inline void connecting_release(__u32 slot)
{
	__s64 *n = bpf_map_lookup_elem(&connecting_slots, &slot);
	if (n)
		NP_ADD(*n, -1);
}

/* A selected pod's socket enters SYN_SENT: remember when, within the pod's
 * share of the table. An open not followed is counted for the pod, so its
 * connect series say they are partial instead of undercounting. */
static __always_inline void connect_start(struct sock *sk, const struct np_pod_info *pod, const struct np_config *cfg)
{
	__u32 slot = pod->slot;
	__s64 *n = bpf_map_lookup_elem(&connecting_slots, &slot);
	if (!n)
		return;
	/* Checked, then added: CPUs racing past the check hold at most one
	 * entry each above the share. */
	if (*n >= (__s64)cfg->connect_share) {
		count_keyed(slot, NP_M_CONNECT_UNTRACKED, 0);
		return;
	}
	NP_ADD(*n, 1);
	__u64 key = (__u64)sk;
	struct np_connect c = {
		.syn_ns = bpf_ktime_get_ns(), .slot = slot, .generation = cfg->generation, .flags = pod->flags
	};
	long err = bpf_map_update_elem(&connecting, &key, &c, BPF_NOEXIST);
	if (err == -17 /* EEXIST */) {
		/* A socket at this address never showed its close (the type was
		 * off then): its entry is stale, and its slot's count too. */
		struct np_connect *old = bpf_map_lookup_elem(&connecting, &key);
		if (old) {
			__u32 old_slot = old->slot;
			if (!bpf_map_delete_elem(&connecting, &key))
				connecting_release(old_slot);
		}
		err = bpf_map_update_elem(&connecting, &key, &c, BPF_NOEXIST);
	}
	if (err) {
		NP_ADD(*n, -1);
		count_error(NP_E_CONNECTING);
		count_keyed(slot, NP_M_CONNECT_UNTRACKED, 0);
	}
}

/* A socket leaves SYN_SENT: its connect latency or its failure. Returns
 * the socket's pod in *pod when it was a selected pod's pending connect. */
static __always_inline int connect_done(struct sock *sk, const int newstate, __u32 gen, struct np_pod_info *pod)
{
	__u64 key = (__u64)sk;
	struct np_connect *c = bpf_map_lookup_elem(&connecting, &key);
	if (!c)
		return 0;
	struct np_connect pending = *c;
	/* The sweep may have taken it (and counted it) since the lookup. */
	if (bpf_map_delete_elem(&connecting, &key))
		return 0;
	connecting_release(pending.slot);
	__u32 slot = pending.slot;
	__u32 flags = pending.flags;
	if (pending.generation != gen) {
		/* The pods changed since the SYN: resolve again. */
		if (!pod_of_sock(sk, pod))
			return 0;
		slot = pod->slot;
		flags = pod->flags;
	}
	pod->slot = slot;
	pod->flags = flags;
	if (newstate == TCP_ESTABLISHED) {
		__u64 ns = bpf_ktime_get_ns() - pending.syn_ns;
		observe(slot, NP_B_CONNECT, ns);
		if (flags & NP_POD_PEERS) {
			struct np_peer_key k = {};
			peer_of_sock(sk, &k);
			observe_peer(&k, slot, ns);
		}
	} else if (newstate == TCP_CLOSE) {
		struct np_pod_counters *pc = slot_counters(slot);
		__u32 r = fail_reason(sk);
		if (pc && r < NP_FAIL_MAX)
			NP_ADD(pc->connect_fail[r], 1);
		if ((flags & NP_POD_PEERS) && r < NP_FAIL_MAX)
			count_sock_peer(sk, slot, NP_M_CONNECT_FAIL, r, 1);
	}
	return 1;
}

/* TcpConnectLatency and TcpRtt share this one program (np_config.types says
 * which are on), so a state change costs one program run, not two.
 * Connect: SYN_SENT records the time and pod by socket; leaving SYN_SENT
 * observes the latency (ESTABLISHED) or counts a failure (CLOSE). RTT:
 * ESTABLISHED marks the socket (rtt_socks) for the periodic sampler,
 * and leaving ESTABLISHED samples it once more. Nothing runs per ACK. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(np_sock_state_change, struct sock *sk, const int oldstate, const int newstate)
{
	if (newstate == TCP_CLOSE) {
		if (!is_tcp(sk))
			return 0;
		struct np_config cfg = config_now();
		if (cfg.types & NP_TYPE_RETRANS)
			retrans_closed(sk);
		struct np_pod_info pod = {};
		if (oldstate == TCP_SYN_SENT && (cfg.types & NP_TYPE_CONNECT))
			connect_done(sk, newstate, cfg.generation, &pod);
		if (oldstate == TCP_ESTABLISHED && (cfg.types & NP_TYPE_RTT))
			rtt_unmark(sk);
		return 0;
	}
	if (newstate == TCP_SYN_SENT) {
		struct np_config cfg = config_now();
		if (!(cfg.types & NP_TYPE_CONNECT) || !is_tcp(sk))
			return 0;
		struct np_pod_info pod;
		if (!pod_of_sock(sk, &pod))
			return 0;
		connect_start(sk, &pod, &cfg);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_ESTABLISHED && newstate != TCP_ESTABLISHED)
		return 0;
	if (!is_tcp(sk))
		return 0;
	struct np_config cfg = config_now();
	struct np_pod_info pod = {};
	int known = 0;
	if (oldstate == TCP_SYN_SENT && (cfg.types & NP_TYPE_CONNECT))
		known = connect_done(sk, newstate, cfg.generation, &pod);
	if (!(cfg.types & NP_TYPE_RTT))
		return 0;
	if (newstate == TCP_ESTABLISHED)
		rtt_mark(sk, known ? &pod : 0);
	else if (oldstate == TCP_ESTABLISHED)
		rtt_unmark(sk);
	return 0;
}

/* What the agent asks of a walk it runs (BPF_PROG_TEST_RUN, the first
 * context argument): 0 for the periodic work, slot + 1 to forget every
 * entry of a slot whose pod left, in the kernel: from userspace that is two
 * syscalls per entry of a table of up to 65,536. */
static __always_inline __u64 forget_arg(struct bpf_raw_tracepoint_args *ctx)
{
	return ctx->args[0];
}

/* One marked connection, for the sampler. The key is only an address: the
 * socket is read with probe reads, and an entry whose socket is gone (its
 * cookie no longer there) is dropped. */
static long rtt_sample_one(struct bpf_map *map, __u64 *key, struct np_rtt_sock *v, void *ctx)
{
	struct sock *sk = (struct sock *)*key;
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (cookie != v->cookie) {
		bpf_map_delete_elem(&rtt_socks, key);
		return 0;
	}
	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED)
		return 0;
	observe_srtt(v->slot, BPF_CORE_READ((struct tcp_sock *)sk, srtt_us));
	return 0;
}

/* One marked connection of a slot being forgotten. */
static long rtt_forget_one(struct bpf_map *map, __u64 *key, struct np_rtt_sock *v, __u64 *slot1)
{
	if (v->slot + 1ull == *slot1)
		bpf_map_delete_elem(&rtt_socks, key);
	return 0;
}

/* Run by the agent every sampling interval (BPF_PROG_TEST_RUN; never
 * attached) over the marked connections, or to forget a slot's. Not a
 * bpf_map_elem iterator: some kernels refuse to load those
 * (kernel/prog_run.rs). */
SEC("raw_tp")
int np_rtt_sample(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 slot1 = forget_arg(ctx);
	if (slot1)
		bpf_for_each_map_elem(&rtt_socks, rtt_forget_one, &slot1, 0);
	else
		bpf_for_each_map_elem(&rtt_socks, rtt_sample_one, 0, 0);
	return 0;
}

/* One pending connect, for the sweep: forgotten when it started before
 * *before (it lost its close), and counted for its pod as untracked.
 * Deleting first means a close racing the sweep is counted once, by
 * whichever deleted the entry. */
static long connect_sweep_one(struct bpf_map *map, __u64 *key, struct np_connect *v, __u64 *before)
{
	/* Compared, not subtracted from now: a connect another CPU started
	 * during the walk is younger, not 2^64 ns old. */
	if (v->syn_ns >= *before)
		return 0;
	__u32 slot = v->slot;
	if (bpf_map_delete_elem(&connecting, key))
		return 0;
	connecting_release(slot);
	count_keyed(slot, NP_M_CONNECT_UNTRACKED, 0);
	return 0;
}

/* One pending connect of a slot being forgotten: gone, and released from
 * the slot's count (not counted untracked: the pod's series go with it). */
static long connect_forget_one(struct bpf_map *map, __u64 *key, struct np_connect *v, __u64 *slot1)
{
	__u32 slot = v->slot;
	if (slot + 1ull != *slot1)
		return 0;
	if (!bpf_map_delete_elem(&connecting, key))
		connecting_release(slot);
	return 0;
}

/* Run by the agent every 30 s (BPF_PROG_TEST_RUN) while
 * TcpConnectLatency is attached, or to forget a slot's pending connects. */
SEC("raw_tp")
int np_connect_sweep(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 slot1 = forget_arg(ctx);
	if (slot1) {
		bpf_for_each_map_elem(&connecting, connect_forget_one, &slot1, 0);
		return 0;
	}
	struct np_config cfg = config_now();
	__u64 now = bpf_ktime_get_ns();
	__u64 age = (__u64)cfg.connect_max_age_s * 1000000000ull;
	if (now <= age)
		return 0;
	__u64 before = now - age;
	bpf_for_each_map_elem(&connecting, connect_sweep_one, &before, 0);
	return 0;
}
