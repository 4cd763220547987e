/* SPDX-License-Identifier: GPL-2.0 */
/* The etran core as every eBPF object sees it: the shared maps and small helpers.
 *
 * core.bpf.c creates these maps; transport and policy objects include this header too and
 * the loader makes them reuse the core's maps by name (etran/daemon/programs.py), so one
 * set of maps ties the entrance, the egress hooks, the transports and the policies together.
 *
 * Tail-call plumbing:
 *   entrance (NIC)  --chain_in[0..7]-->  chain_in[8] = in_continue  --ingress_progs[proto]-->
 *   egress_hook     --chain_out[0..7]--> chain_out[8] = out_continue --egress_progs[proto]-->
 *   gen (blank frames and live frames)   --gen_progs[proto]-->
 * Programs pass what they learned in scratch[0] (per CPU; XDP runs to completion on a CPU).
 */
#ifndef ETRAN_CORE_H
#define ETRAN_CORE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shared.h"

#ifndef AF_INET
#define AF_INET 2
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct host_config);
} host_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, struct app_info);
} apps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, struct app_stats);
} app_stats SEC(".maps");

/* hook-side ifindex -> slot (the egress hook's identity check) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, __u32);
} hook_slot SEC(".maps");

/* app-side ifindex -> slot (to_app_xsk) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, __u32);
} app_port_slot SEC(".maps");

/* slot -> hook-side ifindex; ETRAN_NIC_SLOT -> the NIC */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, ETRAN_MAX_APPS + 1);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct port_key);
	__type(value, struct port_owner);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pkt_meta);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, ETRAN_MAX_POLICIES + 1);
	__type(key, __u32);
	__type(value, __u32);
} chain_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, ETRAN_MAX_POLICIES + 1);
	__type(key, __u32);
	__type(value, __u32);
} chain_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} ingress_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} egress_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} gen_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, ETRAN_GEN_QUEUE);
	__type(value, struct gen_desc);
} gen_queue SEC(".maps");

/* IPv4 address -> next hop's MAC, kept by the daemon from the kernel's neighbour table.
 * (bpf_fib_lookup would need IP forwarding enabled on the NIC, turning hosts into routers.) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct neigh_entry);
} neigh SEC(".maps");

/* destinations the egress path found no neighbour for; the daemon resolves them */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 256);
	__type(value, __u32);
} neigh_miss SEC(".maps");

/* gen pops a descriptor here for the transport's builder (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_desc);
} gen_scratch SEC(".maps");

/* the core's own programs, for tail calls between them */
#define ETRAN_CORE_GEN 0
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} core_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct host_pub);
} host_pub SEC(".maps");

struct pub_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ETRAN_PUB_SLOTS);
	__type(key, __u32);
	__uint(value_size, sizeof(struct pub_slot));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__array(values, struct pub_inner);
} app_pub SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct etran_btf_anchor);
} btf_anchor SEC(".maps");

/* ---- helpers ------------------------------------------------------------------------ */

static __always_inline struct pkt_meta *meta_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline struct gen_desc *gen_desc_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&gen_scratch, &zero);
}

static __always_inline struct host_config *host_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&host_cfg, &zero);
}

static __always_inline struct app_stats *stats_get(__u32 slot)
{
	return bpf_map_lookup_elem(&app_stats, &slot);
}

static __always_inline int drop(__u32 slot, __u32 reason)
{
	struct app_stats *s = stats_get(slot);

	if (s && reason < ETRAN_DROP_NR)
		s->drops[reason & (ETRAN_DROP_NR - 1)] += 1;
	return XDP_DROP;
}

/* The application's published-state array (mmapped read-only by it), or NULL. */
static __always_inline void *pub_map(__u32 slot)
{
	return bpf_map_lookup_elem(&app_pub, &slot);
}

static __always_inline struct pub_slot *pub_slot_get(__u32 slot, __u32 index)
{
	void *m = pub_map(slot);

	if (!m)
		return NULL;
	return bpf_map_lookup_elem(m, &index);
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])) == 0;
}

static __always_inline int mac_zero(const __u8 *a)
{
	return (a[0] | a[1] | a[2] | a[3] | a[4] | a[5]) == 0;
}

/* Fold a 32-bit one's-complement sum to 16 bits. */
static __always_inline __u16 csum_fold32(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline void ip_set_checksum(struct iphdr *ip)
{
	__u32 sum = 0;
	__u16 *w = (__u16 *)ip;

	ip->check = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	ip->check = csum_fold32(sum);
}

/* The Ethernet and IPv4 headers of a frame the kernel builds (ACKs, GRANTs, test packets):
 * no options, DF, TTL 64, ECN not-ECT. The destination MAC stays zero and the IP checksum
 * unset: xmit() fills both in. `l4_len` is the length of everything after the IP header. */
static __always_inline void eth_ip_build(struct ethhdr *eth, struct iphdr *ip, __u32 saddr, __u32 daddr,
					 __u8 proto, __u32 l4_len)
{
	__builtin_memset(eth->h_dest, 0, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + l4_len);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000);
	ip->ttl = 64;
	ip->protocol = proto;
	ip->saddr = saddr;
	ip->daddr = daddr;
}

#define CSUM_CHUNK(n)                                                          \
	if (left >= (n)) {                                                     \
		if (p + (n) > end)                                             \
			return 0;                                              \
		sum = bpf_csum_diff(0, 0, p, (n), sum);                        \
		p += (n);                                                      \
		left -= (n);                                                   \
	}

/* The TCP/UDP checksum (RFC 768/9293 pseudo-header) of `len` bytes at `l4` in the packet,
 * in network byte order, ready to store. Chunks of constant size keep the verifier happy.
 * Returns 0 if the bytes are not all inside the packet (the caller drops the frame). */
static __always_inline __u16 l4_checksum(void *l4, void *end, __u32 len, __u32 saddr, __u32 daddr, __u8 proto,
					 int *ok)
{
	__u8 *p = l4;
	__u32 left = len & 0xffff;
	__u64 sum = 0;
	__u32 pseudo[3] = { saddr, daddr, bpf_htonl(((__u32)proto << 16) | (len & 0xffff)) };

	*ok = 0;
	if (left > 2048)
		return 0;
	sum = bpf_csum_diff(0, 0, pseudo, sizeof(pseudo), 0);
#pragma unroll
	for (int i = 0; i < 4; i++) {
		CSUM_CHUNK(512)
	}
	CSUM_CHUNK(256)
	CSUM_CHUNK(128)
	CSUM_CHUNK(64)
	CSUM_CHUNK(32)
	CSUM_CHUNK(16)
	CSUM_CHUNK(8)
	CSUM_CHUNK(4)
	if (left >= 2) {
		if (p + 2 > end)
			return 0;
		sum += *(__u16 *)p;
		p += 2;
		left -= 2;
	}
	if (left >= 1) {
		if (p + 1 > end)
			return 0;
		sum += *p; /* the odd byte, padded with a zero byte, as a little-endian load sees it */
	}
	*ok = 1;
	return csum_fold32(sum);
}

/* Parse Ethernet + IPv4 (no options) into meta; 0 on success. */
static __always_inline int parse_ipv4(struct xdp_md *ctx, struct pkt_meta *m)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 || ip->ihl != 5)
		return -1;
	m->proto = ip->protocol;
	m->l4_off = sizeof(*eth) + sizeof(*ip);
	m->len = end - data;
	m->saddr = ip->saddr;
	m->daddr = ip->daddr;
	m->sport = 0;
	m->dport = 0;
	return 0;
}

/* Deliver the frame to `slot`'s tenant port (slot 0 is the daemon's slow path). */
static __always_inline int to_app(struct xdp_md *ctx, __u32 slot)
{
	struct app_stats *s = stats_get(slot);

	if (s) {
		s->rx_packets += 1;
		s->rx_bytes += ctx->data_end - ctx->data;
	}
	return bpf_redirect_map(&tx_ports, slot, XDP_DROP);
}

/* Send a finished frame (IPv4 header complete except its checksum) to the wire. The
 * destination MAC comes from the neighbour map; a frame for this host hairpins at the switch. */
static __always_inline int xmit(struct xdp_md *ctx, __u32 slot, int generated)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct host_config *h = host_get();
	struct neigh_entry *n;
	struct app_stats *s;
	__u32 daddr;

	if (!h || (void *)(ip + 1) > end)
		return drop(slot, ETRAN_DROP_MALFORMED);
	ip_set_checksum(ip);
	daddr = ip->daddr;
	if (daddr == h->ip) {
		n = (struct neigh_entry *)h->mac;
	} else {
		n = bpf_map_lookup_elem(&neigh, &daddr);
		if (!n) {
			bpf_map_push_elem(&neigh_miss, &daddr, BPF_EXIST);
			return drop(slot, ETRAN_DROP_NO_ROUTE);
		}
	}
	/* the destination MAC is the kernel's too: zero means "fill it in", anything else must match */
	if (!mac_zero(eth->h_dest) && !mac_equal(eth->h_dest, n->mac))
		return drop(slot, ETRAN_DROP_SPOOF_MAC);
	__builtin_memcpy(eth->h_dest, n->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, h->mac, ETH_ALEN);
	s = stats_get(slot);
	if (s) {
		s->tx_packets += 1;
		s->tx_bytes += end - data;
		if (generated)
			s->gen_packets += 1;
	}
	return bpf_redirect_map(&tx_ports, ETRAN_NIC_SLOT, XDP_DROP);
}

#define CHAIN_WALK(chain)                                                      \
	do {                                                                   \
		_Pragma("unroll") for (__u32 i = 0; i < ETRAN_MAX_POLICIES; i++) { \
			if (i < m->stage)                                      \
				continue;                                      \
			m->stage = i + 1;                                      \
			bpf_tail_call(ctx, &chain, i);                         \
		}                                                              \
		m->stage = ETRAN_MAX_POLICIES + 1;                             \
		bpf_tail_call(ctx, &chain, ETRAN_MAX_POLICIES);                \
	} while (0)

/* Run the next policy of the packet's chain, or the chain's continuation (slot 8).
 * Empty policy slots are skipped; never returns unless the continuation is missing. */
static __always_inline int chain_next(struct xdp_md *ctx, struct pkt_meta *m)
{
	if (m->dir == ETRAN_DIR_OUT)
		CHAIN_WALK(chain_out);
	else
		CHAIN_WALK(chain_in);
	return drop(m->slot, ETRAN_DROP_INTERNAL);
}

/* Queue a control packet for generation (ACK, GRANT, ...); 0 on success. */
static __always_inline int gen_push(struct gen_desc *d)
{
	__u32 zero = 0;
	struct host_pub *hp = bpf_map_lookup_elem(&host_pub, &zero);

	if (bpf_map_push_elem(&gen_queue, d, 0) != 0) {
		if (hp)
			__sync_fetch_and_add(&hp->gen_dropped, 1);
		return -1;
	}
	if (hp) {
		__sync_fetch_and_add(&hp->gen_pending, 1);
		__sync_fetch_and_add(&hp->gen_pushed, 1);
	}
	return 0;
}

#endif /* ETRAN_CORE_H */
