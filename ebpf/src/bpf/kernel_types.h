/* Minimal kernel type definitions for CO-RE.
 *
 * Only the fields netprobe reads are declared; preserve_access_index makes
 * clang emit BTF relocations, and the loader (aya) resolves every field
 * against the running kernel's BTF. This keeps the build independent of the
 * build machine's kernel (no generated vmlinux.h), and the header reviewable.
 */
#ifndef NETPROBE_KERNEL_TYPES_H
#define NETPROBE_KERNEL_TYPES_H

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct kernfs_node {
	__u64 id;
};

struct cgroup {
	int level;
	struct kernfs_node *kn;
	struct cgroup *ancestors[];
};

struct sock_cgroup_data {
	struct cgroup *cgroup;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__u32 u6_addr32[4];
	} in6_u;
};

struct sock_common {
	union {
		struct {
			__be32 skc_daddr;
			__be32 skc_rcv_saddr;
		};
	};
	union {
		struct {
			__be16 skc_dport;
			__u16 skc_num;
		};
	};
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct { __s64 counter; } skc_cookie;
};

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	__u16 sk_protocol;
	__u32 sk_max_ack_backlog;
	struct sock_cgroup_data sk_cgrp_data;
};

struct tcp_sock {
	__u32 srtt_us;
	__u32 total_retrans;
};

struct net_device {
	possible_net_t nd_net;
};

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	char cb[48];
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
};

struct tcp_skb_cb {
	__u32 seq;
	__u32 end_seq;
	union {
		__u32 tcp_tw_isn;
		struct {
			__u16 tcp_gso_segs;
			__u16 tcp_gso_size;
		};
	};
};

struct request_sock {
	struct sock_common __req_common;
};
struct bpf_map;

#pragma clang attribute pop

/* Values of kernel enums that are ABI (uapi or stable since forever). */
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12
#define EBUSY 16
#define EAGAIN 11
#define ENOMEM 12
#define EINVAL 22
#define ECONNREFUSED 111
#define ETIMEDOUT 110
#define EHOSTUNREACH 113
#define ENETUNREACH 101

#endif
