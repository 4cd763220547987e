// SPDX-License-Identifier: GPL-2.0
/* The etran core: what eTran added to the kernel, built from stock mechanisms.
 *
 *   entrance     XDP on the NIC. IPv4 for this host runs the ingress policy chain, then the
 *                transport registered for its IP protocol (ingress_progs); everything else
 *                gets XDP_PASS, so the kernel's own TCP/UDP keep working.
 *   egress_hook  XDP on the hook side of every tenant port (XDP_EGRESS): every frame an
 *                application sends arrives here, in a private copy. Blank frames go to the
 *                generation program; other frames are checked (size, Ethernet/IPv4, MACs,
 *                source address), run the egress policy chain, then the transport's egress
 *                program, which checks ownership and windows and writes the kernel-owned fields.
 *   gen          XDP_GEN: fills a frame with the next pending control packet from gen_queue
 *                (built by gen_progs[proto]); drops it when nothing is pending. Reached from
 *                egress_hook for blank frames, and run by the daemon with live frames.
 *   to_app_xsk   XDP on the application side of a tenant port: into that application's XSK.
 */
#include "core.h"

SEC("xdp")
int entrance(struct xdp_md *ctx)
{
	struct pkt_meta *m = meta_get();
	struct host_config *h = host_get();

	if (!m || !h)
		return XDP_PASS;
	if (parse_ipv4(ctx, m) != 0 || m->daddr != h->ip)
		return XDP_PASS;
	m->dir = ETRAN_DIR_IN;
	m->stage = 0;
	m->slot = 0;
	return chain_next(ctx, m);
}

/* chain_in[ETRAN_MAX_POLICIES]: after the ingress policies, the transport. */
SEC("xdp")
int in_continue(struct xdp_md *ctx)
{
	struct pkt_meta *m = meta_get();

	if (!m)
		return XDP_PASS;
	bpf_tail_call(ctx, &ingress_progs, m->proto & 0xff);
	return XDP_PASS; /* not an etran protocol: the kernel's */
}

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct host_pub *hp = bpf_map_lookup_elem(&host_pub, &zero);
	struct gen_desc *d = bpf_map_lookup_elem(&gen_scratch, &zero);
	struct pkt_meta *m = meta_get();

	if (!m)
		return XDP_DROP;
	if (!d)
		return XDP_DROP;
	if (bpf_map_pop_elem(&gen_queue, d) != 0)
		return drop(m->slot, ETRAN_DROP_GEN_EMPTY);
	if (hp) {
		__sync_fetch_and_add(&hp->gen_pending, -1);
		__sync_fetch_and_add(&hp->gen_popped, 1);
	}
	/* the transport's builder finds the descriptor in gen_scratch */
	m->slot = d->slot;
	m->proto = d->proto;
	bpf_tail_call(ctx, &gen_progs, d->proto);
	return drop(d->slot, ETRAN_DROP_NO_TRANSPORT);
}

/* Run by the daemon with BPF_PROG_RUN (test mode): the packet is an Ethernet header's worth of
 * padding followed by one struct gen_desc to queue. Going through the kernel keeps host_pub's
 * counters exact (user space may not write host_pub: it is frozen for the applications). */
SEC("xdp")
int gen_enqueue(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct gen_desc *d = data + sizeof(struct ethhdr);
	struct gen_desc copy;

	if ((void *)(d + 1) > end)
		return XDP_ABORTED;
	copy = *d;
	return gen_push(&copy) == 0 ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int egress_hook(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *slotp = bpf_map_lookup_elem(&hook_slot, &ifindex);
	struct pkt_meta *m = meta_get();
	struct host_config *h = host_get();
	__u32 slot;

	if (!slotp || !m || !h)
		return XDP_DROP;
	slot = *slotp;
	m->slot = slot;
	m->dir = ETRAN_DIR_OUT;
	m->stage = 0;
	if ((void *)(eth + 1) > end)
		return drop(slot, ETRAN_DROP_MALFORMED);
	if (eth->h_proto == bpf_htons(ETRAN_BLANK_ETHERTYPE)) {
		bpf_tail_call(ctx, &core_progs, ETRAN_CORE_GEN);
		return drop(slot, ETRAN_DROP_INTERNAL);
	}
	if (end - data > ETRAN_MAX_FRAME)
		return drop(slot, ETRAN_DROP_OVERSIZE);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 || ip->ihl != 5)
		return drop(slot, ETRAN_DROP_MALFORMED);
	if (bpf_ntohs(ip->tot_len) != end - data - sizeof(*eth) || (ip->frag_off & bpf_htons(0x3fff)))
		return drop(slot, ETRAN_DROP_MALFORMED);
	/* the kernel owns the addresses: the library writes the host's own, anything else is a forgery */
	if (!mac_equal(eth->h_source, h->mac))
		return drop(slot, ETRAN_DROP_SPOOF_MAC);
	if (ip->saddr != h->ip)
		return drop(slot, ETRAN_DROP_SPOOF_IP);
	if (parse_ipv4(ctx, m) != 0)
		return drop(slot, ETRAN_DROP_MALFORMED);
	ip->ttl = 64;
	if (slot == 0) /* the daemon's slow path: trusted, already complete */
		return xmit(ctx, 0, 0);
	return chain_next(ctx, m);
}

/* chain_out[ETRAN_MAX_POLICIES]: after the egress policies, the transport. */
SEC("xdp")
int out_continue(struct xdp_md *ctx)
{
	struct pkt_meta *m = meta_get();

	if (!m)
		return XDP_DROP;
	bpf_tail_call(ctx, &egress_progs, m->proto & 0xff);
	return drop(m->slot, ETRAN_DROP_NO_TRANSPORT);
}

SEC("xdp")
int to_app_xsk(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *slot = bpf_map_lookup_elem(&app_port_slot, &ifindex);

	if (!slot)
		return XDP_DROP;
	return bpf_redirect_map(&xsks, *slot, XDP_DROP);
}

char LICENSE[] SEC("license") = "GPL";
