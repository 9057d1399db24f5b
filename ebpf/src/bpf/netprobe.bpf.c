// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* netprobe's kernel side: one object with every probe type's programs and
 * the maps they share (common.h). Each probe type is one source in probes/,
 * registered here by one include; its Rust side is node-agent/src/catalog.
 * The agent loads the object and attaches only the programs of the types
 * some plan uses.
 */

#include "common.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#include "probes/tcp_retransmits.bpf.c"
#include "probes/tcp_resets.bpf.c"
#include "probes/sock_state.bpf.c"
#include "probes/packet_drops.bpf.c"
#include "probes/traffic.bpf.c"
#include "probes/dns.bpf.c"
#include "probes/skb.bpf.c"
