// SPDX-License-Identifier: GPL-2.0
/* etran UDP: the smallest transport, and the one the core's tests exercise.
 *
 *   udp_ingress  (ingress_progs[17]) a datagram to a port some application bound goes to
 *                that application's tenant port; any other port is the kernel's (XDP_PASS).
 *   udp_egress   (egress_progs[17]) the source port must be bound by the sending application;
 *                the kernel writes the UDP length check and the checksum.
 */
#include <linux/udp.h>
#include "core.h"

SEC("xdp")
int udp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct pkt_meta *m = meta_get();
	struct udphdr *udp;
	struct port_key key = { .proto = IPPROTO_UDP };
	struct port_owner *owner;

	if (!m)
		return XDP_PASS;
	udp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	key.port = udp->dest;
	owner = bpf_map_lookup_elem(&ports, &key);
	if (!owner)
		return XDP_PASS;
	if (bpf_ntohs(udp->len) < sizeof(*udp) || (void *)udp + bpf_ntohs(udp->len) > end)
		return drop(owner->slot, ETRAN_DROP_MALFORMED);
	return to_app(ctx, owner->slot);
}

SEC("xdp")
int udp_egress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct pkt_meta *m = meta_get();
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *udp = (void *)(ip + 1);
	struct port_key key = { .proto = IPPROTO_UDP };
	struct port_owner *owner;
	__u32 len;
	__u16 csum;
	int ok;

	if (!m)
		return XDP_DROP;
	if ((void *)(udp + 1) > end)
		return drop(m->slot, ETRAN_DROP_MALFORMED);
	len = (__u32)(end - (void *)udp);
	if (bpf_ntohs(udp->len) != len)
		return drop(m->slot, ETRAN_DROP_MALFORMED);
	key.port = udp->source;
	owner = bpf_map_lookup_elem(&ports, &key);
	if (!owner || owner->slot != m->slot)
		return drop(m->slot, ETRAN_DROP_NOT_OWNER);
	udp->check = 0;
	csum = l4_checksum(udp, end, len, ip->saddr, ip->daddr, IPPROTO_UDP, &ok);
	if (!ok)
		return drop(m->slot, ETRAN_DROP_MALFORMED);
	udp->check = csum ? csum : 0xffff;
	return xmit(ctx, m->slot, 0);
}

char LICENSE[] SEC("license") = "GPL";
