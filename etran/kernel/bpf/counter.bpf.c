// SPDX-License-Identifier: GPL-2.0
/* Counts packets and bytes in an mmapable array and passes them on; the smallest program
 * that shows the loader, mmap'ed maps and BPF_PROG_RUN working. Used by tests and the demo. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "shared.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pkt_counter);
} counters SEC(".maps");

/* What verdict to give: XDP_PASS unless a test sets another. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} verdict SEC(".maps");

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct pkt_counter *c = bpf_map_lookup_elem(&counters, &zero);
	__u32 *v = bpf_map_lookup_elem(&verdict, &zero);

	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, ctx->data_end - ctx->data);
	}
	return v && *v ? *v : XDP_PASS;
}

/* The same count on the tc hook (for tests of tc attach); TC_ACT_OK = 0 */
SEC("tc")
int count_skb(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct pkt_counter *c = bpf_map_lookup_elem(&counters, &zero);

	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, skb->len);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
