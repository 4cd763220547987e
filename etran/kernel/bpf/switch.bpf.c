// SPDX-License-Identifier: GPL-2.0
/* The test bed's switch: one program on the tc clsact egress hook (direct action) of every
 * switch port, i.e. on the way from the bridge towards a host. This kernel has no netem, RED
 * or fq_codel, so the link effects the transports must survive are made here:
 *
 *   - ECN marking from a phantom queue: per port, a backlog in bytes that drains at the
 *     port rate (bpf_ktime_get_ns) and grows by each packet's length; above the threshold,
 *     ECT packets get CE (and a fixed IPv4 header checksum). The HTB qdisc behind this hook
 *     holds the real queue; the phantom one tracks it without reading qdisc internals.
 *   - faults, each with a probability (a fraction of 2^32, bpf_get_prandom_u32):
 *       loss       TC_ACT_SHOT
 *       duplicate  bpf_clone_redirect to the same port's egress; the clone carries
 *                  SWITCH_CLONE_MARK so it passes this program untouched
 *       corrupt    flip one bit after the IPv4 header (never Ethernet/IP), so the L4
 *                  checksum catches it
 *       reorder    keep a copy of the packet in the port's hold buffer and drop it; the next
 *                  packet on the port is cloned out first and then rewritten into the held
 *                  bytes, so the two swap. An atomic state word (cmpxchg) keeps two CPUs
 *                  from using the buffer at once.
 *   - strict priority queues, as a datacenter switch has for Homa, on ports that have them
 *     (Testbed.set_priorities): one HTB leaf class per band under the port's rate-limited
 *     class 1:1 (etran/testbed/bed.py), served by HTB priority. skb->priority set to a leaf's
 *     class id makes HTB take that leaf directly; where the leaves do not exist HTB finds no
 *     such class and uses 1:1 as before. Homa packets (IP protocol 146) go by the level in
 *     the high 3 bits of DSCP (level 7 -> band 0); every other packet to the default band.
 *
 * Config, stats, queue state and hold buffers are maps keyed by the port's ifindex; ports
 * without a config entry pass everything. The Python side is etran/testbed/switch.py.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shared.h"

#define MAX_PORTS 1024

/* strict priority queues; keep in step with etran/testbed/bed.py (PRIO_CLASS_BASE, PRIO_BANDS) */
#define PRIO_CLASS_BASE 0x00010010U	/* HTB class 1:10 holds band 0 */
#define PRIO_HOMA_LEVELS 8
#define PRIO_DEFAULT_BAND PRIO_HOMA_LEVELS	/* the last band: everything that is not Homa */
#define IPPROTO_HOMA 146

/* hold buffer states */
#define HOLD_EMPTY 0
#define HOLD_BUSY 1
#define HOLD_HELD 2

struct port_queue {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 backlog;		/* bytes */
	__u64 last_ns;
};

struct port_hold {
	__u32 state;		/* HOLD_*; changed only by cmpxchg */
	__u32 len;
	__u8 data[SWITCH_HOLD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, struct switch_port_config);
} port_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, struct switch_port_stats);
} port_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, struct port_queue);
} port_queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u32);
	__type(value, struct port_hold);
} port_hold SEC(".maps");

static __always_inline int chance(__u32 p)
{
	if (p == 0)
		return 0;
	return p == SWITCH_PROB_ALWAYS || bpf_get_prandom_u32() < p;
}

/* The IPv4 header of an Ethernet frame, or NULL. Reloads pointers: call after any helper
 * that may move packet data. */
static __always_inline struct iphdr *ipv4_header(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return NULL;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 || ip->ihl < 5)
		return NULL;
	return ip;
}

/* Phantom queue: drain since the last packet at the port rate, then add this packet.
 * Returns the backlog in bytes. */
static __always_inline __u64 phantom_enqueue(__u32 ifindex, const struct switch_port_config *cfg,
					     struct switch_port_stats *st, __u64 bytes)
{
	struct port_queue *q = bpf_map_lookup_elem(&port_queue, &ifindex);
	__u64 now = bpf_ktime_get_ns();
	__u64 backlog, dt, drained;

	if (!q || cfg->rate_kbps == 0)
		return 0;
	bpf_spin_lock(&q->lock);
	dt = now > q->last_ns ? now - q->last_ns : 0;
	backlog = q->backlog;
	if (dt >= 1000000000ULL) {
		backlog = 0;	/* idle for a second: empty at any rate we accept */
	} else {
		/* bytes = ns * kbit/s * 1000 / 8 / 1e9; no overflow for dt < 1 s, rate < 1e9 kbit/s */
		drained = dt * cfg->rate_kbps / 8000000ULL;
		backlog = backlog > drained ? backlog - drained : 0;
	}
	backlog += bytes;
	q->backlog = backlog;
	q->last_ns = now;
	st->queue_bytes = backlog;
	st->queue_time_ns = now;
	if (backlog > st->queue_max)
		st->queue_max = backlog;
	bpf_spin_unlock(&q->lock);
	return backlog;
}

/* Set CE on an ECT packet; returns 1 if marked. */
static __always_inline int mark_ce(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header(skb);
	__u16 old_word, new_word;
	__u8 tos;

	if (!ip)
		return 0;
	tos = ip->tos;
	if ((tos & 3) == 0 || (tos & 3) == 3)
		return 0;	/* not ECT, or already CE */
	old_word = *(__u16 *)ip;	/* version/ihl and tos, network order */
	tos |= 3;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, tos), &tos, 1, 0))
		return 0;
	ip = ipv4_header(skb);
	if (!ip)
		return 0;
	new_word = *(__u16 *)ip;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_word, new_word, 2))
		return 0;
	return 1;
}

/* Flip one random bit of the IPv4 payload (never the Ethernet or IP header; for UDP never
 * the checksum field, since a zero UDP checksum means "none"). Returns 1 if flipped. */
static __always_inline int corrupt_payload(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header(skb);
	__u32 ihl, tot, l4len, pos, r;
	__u8 byte;

	if (!ip)
		return 0;
	ihl = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (tot <= ihl || ETH_HLEN + tot > skb->len)
		return 0;
	l4len = tot - ihl;
	r = bpf_get_prandom_u32();
	pos = (r >> 3) % l4len;
	if (ip->protocol == IPPROTO_UDP && (pos == 6 || pos == 7))
		pos = 0;	/* the source port instead of the checksum */
	pos += ETH_HLEN + ihl;
	if (pos > 0xffff || bpf_skb_load_bytes(skb, pos, &byte, 1))
		return 0;
	byte ^= 1 << (r & 7);
	return bpf_skb_store_bytes(skb, pos, &byte, 1, 0) == 0;
}

/* Pick the packet's band of the port's prio qdisc (see the top of this file). */
static __always_inline void select_band(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4_header(skb);
	__u32 band = PRIO_DEFAULT_BAND;

	if (ip && ip->protocol == IPPROTO_HOMA)
		band = PRIO_HOMA_LEVELS - 1 - (ip->tos >> 5);
	skb->priority = PRIO_CLASS_BASE + band;
}

/* Send a copy of skb out of the same port now; the copy skips this program. */
static __always_inline int send_clone(struct __sk_buff *skb)
{
	__u32 mark = skb->mark;
	long ret;

	skb->mark = SWITCH_CLONE_MARK;
	ret = bpf_clone_redirect(skb, skb->ifindex, 0);
	skb->mark = mark;
	return ret == 0;
}

/* Reorder, first half: keep a copy of this packet and drop it. Returns 1 if held. */
static __always_inline int hold_packet(struct __sk_buff *skb, struct port_hold *h)
{
	__u32 len = skb->len;

	if (skb->gso_size || len < ETH_HLEN || len > 1514)
		return 0;
	if (__sync_val_compare_and_swap(&h->state, HOLD_EMPTY, HOLD_BUSY) != HOLD_EMPTY)
		return 0;
	len &= 0x7ff;	/* for the verifier: len <= 1514 already */
	if (len < ETH_HLEN || len > SWITCH_HOLD_MAX || bpf_skb_load_bytes(skb, 0, h->data, len)) {
		__sync_val_compare_and_swap(&h->state, HOLD_BUSY, HOLD_EMPTY);
		return 0;
	}
	h->len = len;
	__sync_val_compare_and_swap(&h->state, HOLD_BUSY, HOLD_HELD);
	return 1;
}

/* Reorder, second half: send this packet first (a clone), then turn skb into the held one.
 * Returns -1 when nothing is held, else the verdict for skb. */
static __always_inline int release_held(struct __sk_buff *skb, struct port_hold *h,
					struct switch_port_stats *st)
{
	__u32 len;

	if (h->state != HOLD_HELD)
		return -1;
	if (__sync_val_compare_and_swap(&h->state, HOLD_HELD, HOLD_BUSY) != HOLD_HELD)
		return -1;
	if (!send_clone(skb)) {
		/* could not send the current one ahead: it passes as it is, and the held
		 * one waits for the next packet */
		__sync_val_compare_and_swap(&h->state, HOLD_BUSY, HOLD_HELD);
		__sync_fetch_and_add(&st->errors, 1);
		return TC_ACT_OK;
	}
	len = h->len & 0x7ff;
	if (len < ETH_HLEN || len > SWITCH_HOLD_MAX ||
	    bpf_skb_change_tail(skb, len, 0) || bpf_skb_store_bytes(skb, 0, h->data, len, 0)) {
		/* the current packet already left as the clone; the held one is lost */
		__sync_val_compare_and_swap(&h->state, HOLD_BUSY, HOLD_EMPTY);
		__sync_fetch_and_add(&st->errors, 1);
		return TC_ACT_SHOT;
	}
	__sync_val_compare_and_swap(&h->state, HOLD_BUSY, HOLD_EMPTY);
	return TC_ACT_OK;
}

SEC("tc")
int switch_egress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct switch_port_config *cfg;
	struct switch_port_stats *st;
	struct port_hold *h;
	__u64 len = skb->len;
	__u64 backlog;
	int dup = 0, verdict;

	if (skb->mark == SWITCH_CLONE_MARK) {
		skb->mark = 0;	/* our duplicate or reorder clone: already handled */
		return TC_ACT_OK;
	}
	cfg = bpf_map_lookup_elem(&port_config, &ifindex);
	st = bpf_map_lookup_elem(&port_stats, &ifindex);
	if (!cfg || !st)
		return TC_ACT_OK;
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, len);
	select_band(skb);	/* before any clone: clones keep it */

	if (chance(cfg->loss)) {
		__sync_fetch_and_add(&st->dropped, 1);
		return TC_ACT_SHOT;
	}
	dup = chance(cfg->duplicate);

	backlog = phantom_enqueue(ifindex, cfg, st, dup ? 2 * len : len);
	if (cfg->ecn_threshold && backlog > cfg->ecn_threshold && mark_ce(skb))
		__sync_fetch_and_add(&st->ce_marked, 1);

	if (chance(cfg->corrupt) && corrupt_payload(skb))
		__sync_fetch_and_add(&st->corrupted, 1);

	if (dup) {
		if (send_clone(skb))
			__sync_fetch_and_add(&st->duplicated, 1);
		else
			__sync_fetch_and_add(&st->errors, 1);
	}

	h = bpf_map_lookup_elem(&port_hold, &ifindex);
	if (!h)
		return TC_ACT_OK;
	verdict = release_held(skb, h, st);
	if (verdict >= 0) {
		select_band(skb);	/* skb now carries the held packet */
		return verdict;
	}
	if (chance(cfg->reorder) && hold_packet(skb, h)) {
		__sync_fetch_and_add(&st->reordered, 1);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

/* Native XDP on every switch port, passing everything to the bridge. A veth accepts frames
 * that its peer redirects with XDP (the hosts' egress hooks and daemons do) only while it has
 * an XDP program of its own. */
SEC("xdp")
int switch_rx(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
