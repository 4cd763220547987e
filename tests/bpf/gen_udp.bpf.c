// SPDX-License-Identifier: GPL-2.0
/* A test transport's generator (gen_progs[253]): builds a UDP datagram to (desc.id = IPv4
 * address, desc.arg0 = port) carrying desc.kind, in whatever frame the core hands it. */
#include <linux/udp.h>
#include "core.h"

#define FRAME (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + 4)

SEC("xdp")
int gen_udp(struct xdp_md *ctx)
{
	struct gen_desc *d = gen_desc_get();
	struct host_config *h = host_get();
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 *body;
	int ok;

	if (!d || !h)
		return XDP_DROP;
	if (bpf_xdp_adjust_tail(ctx, (int)FRAME - (int)(ctx->data_end - ctx->data)))
		return drop(d->slot, ETRAN_DROP_INTERNAL);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	udp = (void *)(ip + 1);
	body = (void *)(udp + 1);
	if ((void *)(body + 1) > end)
		return drop(d->slot, ETRAN_DROP_INTERNAL);
	eth_ip_build(eth, ip, h->ip, (__u32)d->id, IPPROTO_UDP, FRAME - sizeof(struct ethhdr) - sizeof(struct iphdr));
	udp->source = bpf_htons(9);
	udp->dest = bpf_htons((__u16)d->arg0);
	udp->len = bpf_htons(sizeof(*udp) + 4);
	udp->check = 0;
	*body = bpf_htonl(d->kind);
	udp->check = l4_checksum(udp, end, sizeof(*udp) + 4, ip->saddr, ip->daddr, IPPROTO_UDP, &ok);
	return xmit(ctx, d->slot, 1);
}

char LICENSE[] SEC("license") = "GPL";
