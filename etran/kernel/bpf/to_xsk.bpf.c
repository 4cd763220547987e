// SPDX-License-Identifier: GPL-2.0
/* to_xsk: put received frames into the AF_XDP socket of their RX queue.
 *
 * xsks_map[rx_queue_index] holds the socket (XSKMAP); a queue without a socket, and any
 * frame the optional filter does not select, gets XDP_PASS so the kernel stack still sees
 * ARP, neighbour discovery and everything else.
 *
 * Filter (to_xsk_filter[0], all zero = every frame goes to the socket):
 *   ethertype  host byte order; 0 = any frame (the other fields are then ignored)
 *   ip_proto   with ethertype 0x0800: IPv4 protocol to select, 0 = any
 *   dport      with ip_proto 6 or 17: TCP/UDP destination port (host order), 0 = any
 * Counters (to_xsk_stats, per CPU): [0] redirected, [1] passed.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct to_xsk_filter {
	__u16 ethertype;
	__u8 ip_proto;
	__u8 pad;
	__u16 dport;
	__u16 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct to_xsk_filter);
} to_xsk_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} to_xsk_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&to_xsk_stats, &idx);

	if (c)
		*c += 1;
}

/* 1 when the frame is one the filter selects. */
static __always_inline int selected(struct xdp_md *ctx, const struct to_xsk_filter *f)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *l4; /* dest is at the same offset in TCP and UDP */

	if (!f->ethertype)
		return 1;
	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto != bpf_htons(f->ethertype))
		return 0;
	if (f->ethertype != ETH_P_IP || !f->ip_proto)
		return 1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return 0;
	if (ip->protocol != f->ip_proto)
		return 0;
	if (!f->dport || (f->ip_proto != IPPROTO_UDP && f->ip_proto != IPPROTO_TCP))
		return 1;
	if (ip->ihl < 5 || (ip->frag_off & bpf_htons(0x1fff)))
		return 0;
	l4 = (void *)ip + ip->ihl * 4;
	if ((void *)(l4 + 1) > data_end)
		return 0;
	return l4->dest == bpf_htons(f->dport);
}

SEC("xdp")
int to_xsk(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct to_xsk_filter *f = bpf_map_lookup_elem(&to_xsk_filter, &zero);
	long act;

	if (f && !selected(ctx, f)) {
		count(1);
		return XDP_PASS;
	}
	act = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	count(act == XDP_REDIRECT ? 0 : 1);
	return act;
}

char LICENSE[] SEC("license") = "GPL";
