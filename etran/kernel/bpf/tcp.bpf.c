// SPDX-License-Identifier: GPL-2.0
/* etran TCP: the per-packet data path of TCP (RFC 9293) with DCTCP (RFC 8257), as eTran splits it.
 *
 *   tcp_ingress  (ingress_progs[6]) finds the connection (tcp_flows, keyed by the 4-tuple);
 *                packets of no connection go to the daemon (slot 0) when an etran application
 *                owns the port, else to the kernel. Verifies the checksum; SYN_SENT flows and
 *                SYNs go to the daemon. Completes a passive open (the ACK of our SYN-ACK).
 *                PAWS and TS.Recent (RFC 7323), sequence acceptability, RST (RFC 5961),
 *                ACK processing (snd_una, window with wl1/wl2, dupacks and SACK evidence ->
 *                fast retransmit: a retransmission request published to the library), RTT
 *                samples, counters for congestion control (acked, ECE-acked bytes, losses),
 *                in-order data and one out-of-order interval, FIN, the ECN echo; ACKs are
 *                queued for generation (every second segment, at once for out-of-order data,
 *                hole fills, FIN and CE changes; the rest are delayed through the daemon).
 *   tcp_egress   (egress_progs[6]) every frame an application sends: it must own the flow; data
 *                (new or retransmitted) must stay within min(cwnd, peer window) of snd_una
 *                (a resend of snd_una always may go) and within the pacing bucket (the
 *                congestion control's rate), so a loss burst cannot turn into a flood of
 *                retransmissions. The hook writes what the kernel owns: ACK number, window,
 *                timestamps, ECE/CWR, the ECN codepoint, checksum.
 *   tcp_gen      (gen_progs[6]) builds ACKs (with timestamps and a SACK block) into blank or
 *                live frames.
 *   tcp_ctl      run by the daemon (BPF_PROG_RUN): congestion window, RTO, state, publishing.
 *
 * The application's view of each flow is its published slot (enum etran_tcp_pub), which it
 * maps read-only.
 */
#include <linux/tcp.h>
#include "core.h"

#define L4 (sizeof(struct ethhdr) + sizeof(struct iphdr))
#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_PSH 0x08
#define TCPF_ACK 0x10
#define TCPF_URG 0x20
#define TCPF_ECE 0x40
#define TCPF_CWR 0x80
#define ECN_MASK 3
#define ECN_ECT0 2
#define ECN_CE 3
/* After a cwnd cut, new data up to the limit before the cut still goes for this long: the library
 * may have read the old limit just before the cut and been descheduled (on a loaded machine, for
 * tens of ms) before its frames reach the hook; refusing them would turn every cut into losses. */
#define TCP_CUT_GRACE_NS 100000000ULL
#define TCP_PACE_MIN_BURST 16		/* segments the pacing bucket holds at least */
/* A delayed ACK waits this many units of 2^20 ns (4.2 ms) for data to carry it, counted from the
 * first segment it owes. Not one daemon tick (1 ms): a reply that takes longer than a tick (any
 * application on a loaded machine) then costs a pure ACK, a wake-up of the peer and a live-frame
 * pass in the daemon per request. Linux waits at least 40 ms; the sender's RTO is >= 200 ms. */
#define TCP_DELACK_UNITS 4

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCP_MAX_FLOWS);
	__type(key, struct tcp_flow_key);
	__type(value, struct tcp_flow);
} tcp_flows SEC(".maps");

/* flows whose round ended or that saw a loss: the daemon runs congestion control for them */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, TCP_EVENT_QUEUE);
	__type(value, struct tcp_flow_key);
} tcp_cc_q SEC(".maps");

/* flows owing a delayed ACK: the daemon generates it on its next tick unless data took it */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, TCP_EVENT_QUEUE);
	__type(value, struct tcp_flow_key);
} tcp_delack_q SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct etran_tcp_btf_anchor);
} tcp_btf_anchor SEC(".maps");

/* what tcp_ingress tells tcp_rx_data (per CPU; XDP runs to completion on a CPU). Kept in a map,
 * not in registers, so the verifier does not split its paths on every flag. */
struct tcp_opts {
	__u32 tsval;
	__u32 tsecr;
	__u32 sack_hi;		/* highest right edge of the SACK blocks */
	__u32 sack_bytes;	/* bytes the blocks cover above the ACK */
	__u8 has_ts;
	__u8 has_sack;
};

struct opt_walk {
	__u8 b[64];
	__u32 i;
	__u32 optlen;
	int err;
	__u32 pad;
	struct tcp_opts o;
};

struct tcp_rx {
	struct opt_walk w;
	struct tcp_flow_key key;
	__u32 seq;
	__u32 ack;
	__u32 len;
	__u32 wnd_right;
	__u32 tf;
	__u32 ce;
	__u32 deliver;
	__u32 ack_now;
};

/* A fresh load the verifier cannot know the value of: keeps it from splitting paths on flags. */
#define V32(x) (*(volatile __u32 *)&(x))
#define V8(x) (*(volatile __u8 *)&(x))

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcp_rx);
} tcp_rx_scratch SEC(".maps");

#define TCP_RX_DATA_PROG 0
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} tcp_progs SEC(".maps");

static __always_inline struct tcp_rx *rx_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&tcp_rx_scratch, &zero);
}

static __always_inline int before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline int after(__u32 a, __u32 b)
{
	return (__s32)(b - a) < 0;
}

static __always_inline __u32 umin32(__u32 a, __u32 b)
{
	return a < b ? a : b;
}

static __always_inline __u32 ts_now(struct tcp_flow *f)
{
	return (__u32)(bpf_ktime_get_ns() / 1000000) + f->ts_offset;
}

static __always_inline __u64 key_id(struct tcp_flow_key *k)
{
	return (__u64)k->raddr | ((__u64)k->rport << 32) | ((__u64)k->lport << 48);
}

static __always_inline void id_key(__u64 id, struct tcp_flow_key *k)
{
	k->raddr = (__u32)id;
	k->rport = (__u16)(id >> 32);
	k->lport = (__u16)(id >> 48);
}

static __always_inline __u32 load_be32(__u8 *b, __u32 i)
{
	return ((__u32)b[i & 63] << 24) | ((__u32)b[(i + 1) & 63] << 16) | ((__u32)b[(i + 2) & 63] << 8) |
	       (__u32)b[(i + 3) & 63];
}

__noinline int publish(struct tcp_flow *f)
{
	struct pub_slot *p;
	__u32 wnd;

	if (!f)
		return -1;
	p = pub_slot_get(f->slot, f->pub);
	if (!p)
		return -1;
	wnd = umin32(f->cwnd + umin32(f->sacked, f->cwnd), f->snd_wnd);
	p->w[TCP_PUB_TAG] = f->tag;
	p->w[TCP_PUB_STATE] = (__u64)f->state | ((__u64)f->flags << 32);
	p->w[TCP_PUB_SND] = (__u64)f->snd_una | ((__u64)f->snd_nxt << 32);
	p->w[TCP_PUB_LIMIT] = (__u64)(__u32)(f->snd_una + wnd) | ((__u64)f->rcv_nxt << 32);
	p->w[TCP_PUB_RTX] = (__u64)f->rtx_epoch | ((__u64)f->rtx_seq << 32);
	p->w[TCP_PUB_WINDOWS] = (__u64)f->cwnd | ((__u64)f->snd_wnd << 32);
	p->w[TCP_PUB_RECOVERY] = (__u64)f->recovery_point | ((__u64)(__u32)f->rtt_us << 32);
	p->w[TCP_PUB_FIN] = (__u64)f->fin_seq | ((__u64)f->pace_rate << 32);
	return 0;
}
/* The delayed-ACK clock: units of 2^20 ns, never 0 (0 in delack_queued means "not queued"). */
static __always_inline __u32 delack_clock(void)
{
	return (__u32)(bpf_ktime_get_ns() >> 20) | 1;
}

/* A global function: verified once, not at every call site. */
__noinline int push_ack(struct tcp_flow_key *k, struct tcp_flow *f, __u32 kind, __u32 ack, __u32 ece)
{
	struct gen_desc d = { .proto = IPPROTO_TCP };

	if (!k || !f)
		return -1;
	d.kind = kind;
	d.slot = f->slot;
	d.id = key_id(k);
	d.arg0 = ack;
	d.arg1 = ece;
	if (kind == TCP_GEN_ACK) {
		if (__sync_val_compare_and_swap(&f->ack_queued, 0, 1) != 0)
			return 0; /* coalesced with the one already queued */
	}
	if (gen_push(&d) != 0) {
		if (kind == TCP_GEN_ACK)
			f->ack_queued = 0;
		return -1;
	}
	return 0;
}

static __always_inline __u32 ece_state(struct tcp_flow *f)
{
	__u32 fl = f->flags;

	if (!(fl & TCP_F_ECN))
		return 0;
	if (fl & TCP_F_DCTCP_ECHO)
		return (fl & TCP_F_CE) ? 1 : 0;
	return (fl & TCP_F_ECE_LATCH) ? 1 : 0;
}

/* The window field: up to the application's right edge, never below what we advertised
 * before (RFC 9293 3.8.6: do not shrink the window), rounded up to the scale. */
static __always_inline __u16 window_field(struct tcp_flow *f, __u32 ack)
{
	__u32 ws = f->rcv_wscale & 15, right = f->rcv_edge, w;

	if (before(right, f->rcv_adv))
		right = f->rcv_adv;
	w = before(ack, right) ? (right - ack + (1U << ws) - 1) >> ws : 0;
	if (w > 0xffff)
		w = 0xffff;
	if (after(ack + (w << ws), f->rcv_adv))
		f->rcv_adv = ack + (w << ws);
	return bpf_htons(w);
}


/* Parse the options area (optlen bytes at tcp + 20) into the scratch's w.o; -1 if malformed.
 * A global function (verified once); the walk's state lives in the per-CPU scratch, so the
 * verifier does not follow every possible layout. */
__noinline int parse_opts(struct xdp_md *ctx, __u32 optlen)
{
	struct tcp_rx *rx = rx_get();
	struct opt_walk *w;

	if (!rx || !ctx)
		return -1;
	w = &rx->w;
	__builtin_memset(&w->o, 0, sizeof(w->o));
	if (optlen == 0)
		return 0;
	if (optlen < 4 || optlen > 40)
		return -1;
	if (bpf_xdp_load_bytes(ctx, L4 + sizeof(struct tcphdr), w->b, optlen))
		return -1;
	w->optlen = optlen;
	w->i = 0;
	/* the common case: NOP NOP TS and nothing else */
	if (optlen == 12 && w->b[0] == 1 && w->b[1] == 1 && w->b[2] == 8 && w->b[3] == 10) {
		w->o.tsval = load_be32(w->b, 4);
		w->o.tsecr = load_be32(w->b, 8);
		w->o.has_ts = 1;
		return 0;
	}
	for (int n = 0; n < 40; n++) {
		__u32 i = V32(w->i);
		__u8 kind, len;

		if (i >= V32(w->optlen) || i >= 40)
			return 0;
		kind = w->b[i & 63];
		if (kind == 0)
			return 0;
		if (kind == 1) {
			w->i = i + 1;
			continue;
		}
		if (i + 1 >= V32(w->optlen))
			return -1;
		len = w->b[(i + 1) & 63];
		if (len < 2 || i + len > V32(w->optlen))
			return -1;
		if (kind == 8) {
			if (len != 10)
				return -1;
			w->o.tsval = load_be32(w->b, i + 2);
			w->o.tsecr = load_be32(w->b, i + 6);
			w->o.has_ts = 1;
		} else if (kind == 5) {
			if (len < 10 || (len - 2) % 8)
				return -1;
			for (int j = 0; j < 4; j++) {
				__u32 left, right;

				if (2 + 8 * j + 8 > len)
					break;
				left = load_be32(w->b, i + 2 + 8 * j);
				right = load_be32(w->b, i + 2 + 8 * j + 4);
				if (!V8(w->o.has_sack) || after(right, V32(w->o.sack_hi)))
					w->o.sack_hi = right;
				w->o.has_sack = 1;
				if (after(left, V32(rx->ack)) && after(right, left) && right - left < (1U << 30))
					w->o.sack_bytes += right - left;
			}
		} else if ((kind == 2 && len != 4) || (kind == 3 && len != 3) || (kind == 4 && len != 2)) {
			return -1;
		}
		w->i = i + len;
	}
	return 0;
}

/* 1 if the TCP checksum of the received segment (tcp_len bytes) is right. A global function,
 * so the checksum's many length cases are verified once. */
__noinline int csum_ok(struct xdp_md *ctx, __u32 tcp_len)
{
	void *data, *end;
	struct iphdr *ip;
	int ok = 0;

	if (!ctx)
		return 0;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > end)
		return 0;
	if (l4_checksum((void *)(ip + 1), end, tcp_len, ip->saddr, ip->daddr, IPPROTO_TCP, &ok) != 0)
		return 0;
	return ok;
}

static __always_inline int to_daemon(struct xdp_md *ctx)
{
	return to_app(ctx, 0);
}

SEC("xdp")
int tcp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *th = (void *)(ip + 1);
	struct tcp_rx *rx = rx_get();
	struct tcp_flow *f;
	__u32 ip_len, tcp_len, doff, seglen;

	__u64 now;

	if ((void *)(th + 1) > end || !rx)
		return XDP_PASS;
	rx->key.raddr = ip->saddr;
	rx->key.rport = th->source;
	rx->key.lport = th->dest;
	rx->deliver = 0;
	rx->ack_now = 0;
	f = bpf_map_lookup_elem(&tcp_flows, &rx->key);
	if (!f) {
		struct port_key pk = { .proto = IPPROTO_TCP, .port = th->dest };

		if (!bpf_map_lookup_elem(&ports, &pk))
			return XDP_PASS; /* the kernel's own TCP */
		return to_daemon(ctx);
	}
	ip_len = bpf_ntohs(ip->tot_len);
	doff = th->doff * 4;
	if (ip_len < 40 || (void *)ip + ip_len > end || (ip->frag_off & bpf_htons(0x3fff)))
		return drop(f->slot, ETRAN_DROP_MALFORMED);
	tcp_len = ip_len - sizeof(struct iphdr);
	if (doff < 20 || doff > tcp_len)
		return drop(f->slot, ETRAN_DROP_MALFORMED);
	if (!csum_ok(ctx, tcp_len))
		return drop(f->slot, ETRAN_DROP_MALFORMED);
	rx->tf = ((__u8 *)th)[13];
	rx->len = tcp_len - doff;
	rx->seq = bpf_ntohl(th->seq);
	rx->ack = bpf_ntohl(th->ack_seq);
	if (parse_opts(ctx, doff - 20))
		return drop(f->slot, ETRAN_DROP_MALFORMED);
	rx->ce = (ip->tos & ECN_MASK) == ECN_CE;
	now = bpf_ktime_get_ns();

	if (f->state == TCP_S_SYN_SENT || (f->state == TCP_S_SYN_RCVD && (V32(rx->tf) & (TCPF_SYN | TCPF_RST))))
		return to_daemon(ctx);
	if (f->state == TCP_S_SYN_RCVD) {
		if (!(V32(rx->tf) & TCPF_ACK) || V32(rx->ack) != f->snd_nxt || V32(rx->seq) != f->rcv_nxt)
			return to_daemon(ctx); /* the daemon answers (RST) as RFC 9293 says */
		f->snd_una = V32(rx->ack);
		f->snd_wnd = (__u32)bpf_ntohs(th->window) << (f->snd_wscale & 15);
		f->snd_wl1 = V32(rx->seq);
		f->snd_wl2 = V32(rx->ack);
		f->round_end = f->snd_nxt;
		f->last_progress_ns = now;
		if (V8(rx->w.o.has_ts) && (f->flags & TCP_F_TS))
			f->ts_recent = V32(rx->w.o.tsval);
		f->state = TCP_S_ESTABLISHED;
		rx->deliver = 1; /* the application learns of the connection from this frame */
	}
	if (f->state == TCP_S_CLOSED)
		return to_daemon(ctx);
	if (V32(rx->tf) & TCPF_SYN) {
		if (!(V32(rx->tf) & TCPF_RST))
			push_ack(&rx->key, f, TCP_GEN_ACK_NOW, 0, 0); /* RFC 5961 4: challenge ACK */
		return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
	}
	/* PAWS (RFC 7323 5.3); a reordered pure ACK as old as an RTO is still fine (as Linux) */
	if ((V32(f->flags) & TCP_F_TS) && V8(rx->w.o.has_ts) && !(V32(rx->tf) & TCPF_RST) && before(V32(rx->w.o.tsval), f->ts_recent)) {
		if (V32(rx->len) || (V32(rx->tf) & TCPF_FIN) || V32(rx->seq) != f->rcv_nxt || f->ts_recent - V32(rx->w.o.tsval) > 1000) {
			push_ack(&rx->key, f, TCP_GEN_ACK_NOW, 0, 0);
			return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
		}
	}
	seglen = V32(rx->len) + ((V32(rx->tf) & TCPF_FIN) ? 1 : 0);
	rx->wnd_right = after(f->rcv_adv, f->rcv_edge) ? f->rcv_adv : f->rcv_edge;
	/* acceptability (RFC 9293 3.10.7.4) */
	if (seglen == 0) {
		if (V32(rx->seq) != f->rcv_nxt && (before(V32(rx->seq), f->rcv_nxt) || !before(V32(rx->seq), rx->wnd_right))) {
			if (!(V32(rx->tf) & TCPF_RST))
				push_ack(&rx->key, f, TCP_GEN_ACK_NOW, 0, 0);
			return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
		}
	} else if (!((!before(V32(rx->seq), f->rcv_nxt) && before(V32(rx->seq), rx->wnd_right)) ||
		     (!before(V32(rx->seq) + seglen - 1, f->rcv_nxt) && before(V32(rx->seq) + seglen - 1, rx->wnd_right)))) {
		if (!(V32(rx->tf) & TCPF_RST)) {
			/* an old duplicate still refreshes TS.Recent (as Linux) so the sender's RTT stays sane */
			if (V8(rx->w.o.has_ts) && !after(V32(rx->seq), f->last_ack_sent) && after(V32(rx->w.o.tsval), f->ts_recent))
				f->ts_recent = V32(rx->w.o.tsval);
			push_ack(&rx->key, f, TCP_GEN_ACK_NOW, 0, 0);
		}
		return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
	}
	if (V32(rx->tf) & TCPF_RST) {
		if (V32(rx->seq) != f->rcv_nxt) {
			push_ack(&rx->key, f, TCP_GEN_ACK_NOW, 0, 0); /* RFC 5961 3: challenge ACK */
			return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
		}
		if (f->state == TCP_S_TIME_WAIT ||
		    (V32(f->flags) & (TCP_F_FIN_ACKED | TCP_F_FIN_RCVD)) == (TCP_F_FIN_ACKED | TCP_F_FIN_RCVD))
			return drop(f->slot, ETRAN_DROP_GEN_EMPTY); /* RFC 1337; both FINs done: the close is complete */
		__sync_fetch_and_or(&f->flags, TCP_F_RESET);
		f->state = TCP_S_CLOSED;
		publish(f);
		return to_app(ctx, f->slot);
	}
	if (!(V32(rx->tf) & TCPF_ACK))
		return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
	/* TS.Recent (RFC 7323 4.3) */
	if ((V32(f->flags) & TCP_F_TS) && V8(rx->w.o.has_ts) && !after(V32(rx->seq), f->last_ack_sent) && !before(V32(rx->w.o.tsval), f->ts_recent))
		f->ts_recent = V32(rx->w.o.tsval);

	/* ---- the ACK ---- */
	if (after(V32(rx->ack), f->snd_nxt)) {
		push_ack(&rx->key, f, TCP_GEN_ACK_NOW, 0, 0);
		return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
	}
	if (!before(V32(rx->ack), f->snd_una)) {
		__u32 newly = V32(rx->ack) - f->snd_una, wnd = (__u32)bpf_ntohs(th->window) << (f->snd_wscale & 15);
		int wnd_changed = 0;

		/* SACKed bytes are out of the pipe (RFC 6675): new data may go in their place */
		f->sacked = (V32(f->flags) & TCP_F_SACK) ? V32(rx->w.o.sack_bytes) : 0;
		if (before(f->snd_wl1, V32(rx->seq)) || (f->snd_wl1 == V32(rx->seq) && !before(V32(rx->ack), f->snd_wl2))) {
			wnd_changed = wnd != f->snd_wnd;
			f->snd_wnd = wnd;
			f->snd_wl1 = V32(rx->seq);
			f->snd_wl2 = V32(rx->ack);
		}
		if (newly) {
			__u32 data_acked = newly;

			if ((V32(f->flags) & TCP_F_FIN_SENT) && !before(V32(rx->ack), f->fin_seq + 1) && before(f->snd_una, f->fin_seq + 1)) {
				data_acked -= 1;
				__sync_fetch_and_or(&f->flags, TCP_F_FIN_ACKED);
			}
			__sync_fetch_and_add(&f->acked_bytes, data_acked);
			if ((V32(rx->tf) & TCPF_ECE) && (V32(f->flags) & TCP_F_ECN))
				__sync_fetch_and_add(&f->ecn_bytes, data_acked);
			f->snd_una = V32(rx->ack);
			f->dupacks = 0;
			f->last_progress_ns = now;
			if (f->rtt_seq && !before(V32(rx->ack), f->rtt_seq)) {
				f->rtt_us = (now - f->rtt_start_ns) / 1000;
				f->rtt_samples += 1;
				f->rtt_seq = 0;
			}
			if ((V32(f->flags) & (TCP_F_RECOVERY | TCP_F_LOSS)) && !before(V32(rx->ack), f->recovery_point))
				__sync_fetch_and_and(&f->flags, ~(TCP_F_RECOVERY | TCP_F_LOSS));
			if (!before(V32(rx->ack), f->round_end)) {
				f->round_end = f->snd_nxt;
				bpf_map_push_elem(&tcp_cc_q, &rx->key, 0);
			}
			rx->deliver = 1;
		} else if (f->snd_una != f->snd_nxt && !V32(rx->len) && !(V32(rx->tf) & TCPF_FIN) && (!wnd_changed || V8(rx->w.o.has_sack))) {
			f->dupacks += 1;
			rx->deliver = 1;
		}
		if (wnd_changed)
			rx->deliver = 1;
		/* fast retransmit: DupThresh duplicate ACKs, or SACK shows more than DupThresh segments above snd_una */
		if (!(f->flags & (TCP_F_RECOVERY | TCP_F_LOSS)) && f->snd_una != f->snd_nxt &&
		    (f->dupacks >= TCP_DUPTHRESH ||
		     ((V32(f->flags) & TCP_F_SACK) && V8(rx->w.o.has_sack) && after(V32(rx->w.o.sack_hi), f->snd_una + TCP_DUPTHRESH * (__u32)f->mss)))) {
			__sync_fetch_and_or(&f->flags, TCP_F_RECOVERY);
			f->recovery_point = f->snd_nxt;
			f->rtx_seq = f->snd_una;
			f->rtx_epoch += 1;
			f->rtt_seq = 0;
			__sync_fetch_and_add(&f->loss_events, 1);
			bpf_map_push_elem(&tcp_cc_q, &rx->key, 0);
			rx->deliver = 1;
		}
	}
	bpf_tail_call(ctx, &tcp_progs, TCP_RX_DATA_PROG);
	return drop(f->slot, ETRAN_DROP_INTERNAL);
}

/* tcp_progs[0]: the second half of tcp_ingress: data, FIN, the ECN echo, the ACK to send. */
SEC("xdp")
int tcp_rx_data(struct xdp_md *ctx)
{
	struct tcp_rx *rx = rx_get();
	struct tcp_flow *f;
	__u32 seq, len, end_seq, fl, tf;

	if (!rx)
		return XDP_DROP;
	f = bpf_map_lookup_elem(&tcp_flows, &rx->key);
	if (!f)
		return XDP_DROP;
	seq = rx->seq;
	len = rx->len;
	tf = rx->tf;
	end_seq = seq + len;
	fl = f->flags;
	if ((len || (tf & TCPF_FIN)) && !(fl & TCP_F_FIN_RCVD)) {
		if (after(end_seq, rx->wnd_right)) {
			push_ack(&rx->key, f, TCP_GEN_ACK_NOW, 0, 0);
			goto out;
		}
		if (len && (fl & TCP_F_ECN)) {
			if (rx->ce)
				__sync_fetch_and_add(&f->ce_bytes, len);
			if (fl & TCP_F_DCTCP_ECHO) {
				if (!rx->ce != !(fl & TCP_F_CE)) {
					/* RFC 8257 3.2: acknowledge what came before with the old CE state, at once */
					if (f->ack_segs)
						push_ack(&rx->key, f, TCP_GEN_ACK_FIXED, f->rcv_nxt, (fl & TCP_F_CE) ? 1 : 0);
					if (rx->ce)
						__sync_fetch_and_or(&f->flags, TCP_F_CE);
					else
						__sync_fetch_and_and(&f->flags, ~TCP_F_CE);
					rx->ack_now = 1;
				}
			} else {
				if (tf & TCPF_CWR)
					__sync_fetch_and_and(&f->flags, ~TCP_F_ECE_LATCH);
				if (rx->ce)
					__sync_fetch_and_or(&f->flags, TCP_F_ECE_LATCH);
			}
		}
		if (len) {
			if (!after(seq, f->rcv_nxt)) {
				if (after(end_seq, f->rcv_nxt)) {
					__u32 old = f->rcv_nxt;

					f->rcv_nxt = end_seq;
					__sync_fetch_and_add(&f->rx_bytes, end_seq - old);
					rx->deliver = 1;
					if (fl & TCP_F_OOO) {
						if (!before(f->rcv_nxt, f->ooo_lo)) {
							if (after(f->ooo_hi, f->rcv_nxt))
								f->rcv_nxt = f->ooo_hi;
							if (fl & TCP_F_OOO2) { /* the second interval becomes the first */
								f->ooo_lo = f->ooo2_lo;
								f->ooo_hi = f->ooo2_hi;
								__sync_fetch_and_and(&f->flags, ~TCP_F_OOO2);
								if (!before(f->rcv_nxt, f->ooo_lo)) {
									if (after(f->ooo_hi, f->rcv_nxt))
										f->rcv_nxt = f->ooo_hi;
									__sync_fetch_and_and(&f->flags, ~TCP_F_OOO);
								}
							} else {
								__sync_fetch_and_and(&f->flags, ~TCP_F_OOO);
							}
						}
						rx->ack_now = 1; /* a hole (partly) filled */
					} else if (seq != old) {
						rx->ack_now = 1;
					} else {
						/* full segments are acknowledged at once, coalesced per RX batch (the
						 * ACK is built when the batch's blank frames come); a small one (a
						 * request) waits for data to carry its ACK, or the delayed-ACK tick */
						f->ack_segs += 1;
						if (f->ack_segs >= 2 || len >= f->mss)
							rx->ack_now = 1;
					}
				} else {
					rx->ack_now = 1; /* a duplicate */
				}
			} else {
				if (!(fl & TCP_F_OOO)) {
					f->ooo_lo = seq;
					f->ooo_hi = end_seq;
					__sync_fetch_and_or(&f->flags, TCP_F_OOO);
					rx->deliver = 1;
				} else if (!after(seq, f->ooo_hi) && !before(end_seq, f->ooo_lo)) {
					if (before(seq, f->ooo_lo))
						f->ooo_lo = seq;
					if (after(end_seq, f->ooo_hi))
						f->ooo_hi = end_seq;
					if ((fl & TCP_F_OOO2) && !before(f->ooo_hi, f->ooo2_lo)) { /* the two meet */
						if (after(f->ooo2_hi, f->ooo_hi))
							f->ooo_hi = f->ooo2_hi;
						__sync_fetch_and_and(&f->flags, ~TCP_F_OOO2);
					}
					rx->deliver = 1;
				} else if (after(seq, f->ooo_hi)) {
					if (!(fl & TCP_F_OOO2)) {
						f->ooo2_lo = seq;
						f->ooo2_hi = end_seq;
						__sync_fetch_and_or(&f->flags, TCP_F_OOO2);
						rx->deliver = 1;
					} else if (!after(seq, f->ooo2_hi) && !before(end_seq, f->ooo2_lo)) {
						if (before(seq, f->ooo2_lo))
							f->ooo2_lo = seq;
						if (after(end_seq, f->ooo2_hi))
							f->ooo2_hi = end_seq;
						rx->deliver = 1;
					}
				}
				rx->ack_now = 1; /* out of order: a duplicate ACK with SACK at once */
			}
		}
		if ((tf & TCPF_FIN) && f->rcv_nxt == end_seq) {
			f->rcv_nxt = end_seq + 1;
			if (!(f->flags & TCP_F_FIN_SENT))
				__sync_fetch_and_or(&f->flags, TCP_F_FIN_RCVD | TCP_F_PASSIVE_CLOSE);
			else
				__sync_fetch_and_or(&f->flags, TCP_F_FIN_RCVD);
			rx->ack_now = 1;
			rx->deliver = 1;
		} else if (tf & TCPF_FIN) {
			rx->ack_now = 1;
		}
	} else if (len || (tf & TCPF_FIN)) {
		rx->ack_now = 1; /* a retransmitted FIN (or data after it): acknowledge again */
	} else if ((tf & TCPF_CWR) && !(fl & TCP_F_DCTCP_ECHO)) {
		__sync_fetch_and_and(&f->flags, ~TCP_F_ECE_LATCH);
	}
out:
	if (rx->ack_now) {
		push_ack(&rx->key, f, TCP_GEN_ACK, 0, 0);
	} else if (f->ack_segs) {
		__u32 now = delack_clock();

		if (__sync_val_compare_and_swap(&f->delack_queued, 0, now) == 0) {
			if (bpf_map_push_elem(&tcp_delack_q, &rx->key, 0) != 0) {
				f->delack_queued = 0;
				push_ack(&rx->key, f, TCP_GEN_ACK, 0, 0);
			}
		} else if (rx->deliver && f->ack_segs == 1) {
			f->delack_queued = now; /* the first segment owed since our last ACK: count from it */
		}
	}
	publish(f);
	if (rx->deliver && !(f->flags & TCP_F_ORPHAN))
		return to_app(ctx, f->slot);
	return drop(f->slot, ETRAN_DROP_GEN_EMPTY);
}

/* Pacing and the retransmission bound: a token bucket per flow that every data frame (new or
 * retransmitted) draws from, refilled at the congestion control's rate (the daemon writes it:
 * gain * cwnd / srtt) and holding at most twice max(cwnd, TCP_PACE_MIN_BURST segments) (the
 * library paces by half of that, so the cwnd and rate it read a moment ago never make it meet
 * the bound). New data is
 * bound by cwnd as well; retransmissions are not, so without the bucket a library (or a loss
 * burst) could resend the whole window again and again. Before the first RTT sample the rate
 * is a cwnd per millisecond. The library paces itself by the same bucket (the rate is published),
 * so a well-behaved application never meets the bound. 1: the frame may go. */
static __always_inline int pace_take(struct tcp_flow *f, __u32 len, __u64 now)
{
	__u64 rate = f->pace_rate, cap = f->cwnd, dt, tokens;

	if (cap < TCP_PACE_MIN_BURST * (__u32)f->mss)
		cap = TCP_PACE_MIN_BURST * (__u32)f->mss;
	cap *= 2;
	if (!rate)
		rate = (__u64)f->cwnd * 1000;
	dt = now - f->pace_last_ns;
	if (dt > 1000000000ULL)
		dt = 1000000000ULL;
	tokens = f->pace_tokens + rate * dt / 1000000000ULL;
	if (tokens > cap)
		tokens = cap;
	f->pace_last_ns = now;
	if (tokens < len) {
		f->pace_tokens = tokens;
		return 0;
	}
	f->pace_tokens = tokens - len;
	return 1;
}

/* ---- egress: frames the application sends ---------------------------------------------- */
SEC("xdp")
int tcp_egress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct pkt_meta *m = meta_get();
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *th = (void *)(ip + 1);
	struct tcp_flow_key key = {};
	struct tcp_flow *f;
	__u32 tcp_len, doff, len, seq, seg_end, fl, wnd, edge, ack, *opt;
	__u8 tf, *flagsp;
	__u16 csum;
	int ok, new_data = 0;
	__u64 now;

	if (!m)
		return XDP_DROP;
	if ((void *)(th + 1) > end)
		return drop(m->slot, ETRAN_DROP_MALFORMED);
	key.raddr = ip->daddr;
	key.rport = th->dest;
	key.lport = th->source;
	f = bpf_map_lookup_elem(&tcp_flows, &key);
	if (!f || f->slot != m->slot || (f->flags & TCP_F_ORPHAN))
		return drop(m->slot, ETRAN_DROP_NOT_OWNER);
	if (f->state != TCP_S_ESTABLISHED)
		return drop(m->slot, ETRAN_DROP_WINDOW);
	tcp_len = end - (void *)th;
	doff = th->doff * 4;
	fl = f->flags;
	if (doff != ((fl & TCP_F_TS) ? 32 : 20) || doff > tcp_len)
		return drop(m->slot, ETRAN_DROP_MALFORMED);
	flagsp = (__u8 *)th + 13;
	tf = *flagsp;
	if (tf & (TCPF_SYN | TCPF_RST | TCPF_URG))
		return drop(m->slot, ETRAN_DROP_NOT_OWNER); /* the daemon's, never the application's */
	len = tcp_len - doff;
	seq = bpf_ntohl(th->seq);
	now = bpf_ktime_get_ns();
	if (len == 0 && !(tf & TCPF_FIN)) {
		seq = f->snd_nxt; /* a pure ACK (window update) from the current state */
	} else {
		seg_end = seq + len + ((tf & TCPF_FIN) ? 1 : 0);
		/* a gap above snd_nxt is allowed: a frame the hook refused earlier is like a lost one,
		 * and SACK recovery fills it */
		if (before(seq, f->snd_una) || len > f->mss) {
			__sync_fetch_and_add(&f->window_drops, 1);
			return drop(m->slot, ETRAN_DROP_WINDOW);
		}
		if ((fl & TCP_F_FIN_SENT) && after(seg_end, f->fin_seq + 1)) {
			__sync_fetch_and_add(&f->window_drops, 1);
			return drop(m->slot, ETRAN_DROP_WINDOW); /* nothing after our FIN */
		}
		if ((tf & TCPF_FIN) && (fl & TCP_F_FIN_SENT) && seq + len != f->fin_seq) {
			__sync_fetch_and_add(&f->window_drops, 1);
			return drop(m->slot, ETRAN_DROP_WINDOW);
		}
		/* new data and retransmissions alike: within min(cwnd, the peer's window) of snd_una
		 * (a retransmission of snd_una itself always may go), and within the pacing bucket */
		wnd = umin32(f->cwnd + umin32(f->sacked, f->cwnd), f->snd_wnd);
		if (after(seg_end, f->snd_una + wnd) && seq != f->snd_una && !(f->snd_una == f->snd_nxt && len <= 1) &&
		    !(now < f->grace_until_ns && !after(seg_end, f->grace_limit))) {
			__sync_fetch_and_add(&f->window_drops, 1);
			return drop(m->slot, ETRAN_DROP_WINDOW);
		}
		if (len && !pace_take(f, len, now)) {
			__sync_fetch_and_add(&f->pace_drops, 1);
			return drop(m->slot, ETRAN_DROP_RATE);
		}
		if (after(seg_end, f->snd_nxt)) {
			new_data = 1;
			if (f->snd_una == f->snd_nxt)
				f->last_progress_ns = now; /* a new flight: the RTO counts from here */
			if (tf & TCPF_FIN) {
				f->fin_seq = seq + len;
				__sync_fetch_and_or(&f->flags, TCP_F_FIN_SENT);
			}
			f->snd_nxt = seg_end;
			if (!f->rtt_seq) {
				f->rtt_seq = seg_end;
				f->rtt_start_ns = now;
			}
			__sync_fetch_and_add(&f->tx_bytes, len);
		} else {
			if (f->rtt_seq && after(f->rtt_seq, seq))
				f->rtt_seq = 0; /* Karn: no sample from retransmitted data */
			__sync_fetch_and_add(&f->retrans_bytes, len);
		}
	}
	/* the application reports in the ACK field how far it can take data: our window's right edge
	 * (it may only open it, up to rcv_wnd beyond what arrived) */
	edge = bpf_ntohl(th->ack_seq);
	if (after(edge, f->rcv_edge) && edge - f->rcv_nxt <= f->rcv_wnd)
		f->rcv_edge = edge;
	/* the kernel-owned fields */
	ack = f->rcv_nxt;
	th->seq = bpf_htonl(seq);
	th->ack_seq = bpf_htonl(ack);
	th->window = window_field(f, ack);
	th->urg_ptr = 0;
	tf = (tf & (TCPF_FIN | TCPF_PSH)) | TCPF_ACK;
	if (ece_state(f))
		tf |= TCPF_ECE;
	if (new_data && len && (f->flags & TCP_F_CWR)) {
		tf |= TCPF_CWR;
		__sync_fetch_and_and(&f->flags, ~TCP_F_CWR);
	}
	*flagsp = tf;
	ip->tos = (new_data && len && (fl & TCP_F_ECN)) ? ECN_ECT0 : 0;
	if (fl & TCP_F_TS) {
		opt = (void *)(th + 1);
		if ((void *)(opt + 3) > end)
			return drop(m->slot, ETRAN_DROP_MALFORMED);
		opt[0] = bpf_htonl(0x0101080a);
		opt[1] = bpf_htonl(ts_now(f));
		opt[2] = bpf_htonl(f->ts_recent);
	}
	f->last_ack_sent = ack;
	f->ack_segs = 0; /* the ACK rides on this frame */
	th->check = 0;
	csum = l4_checksum(th, end, tcp_len, ip->saddr, ip->daddr, IPPROTO_TCP, &ok);
	if (!ok)
		return drop(m->slot, ETRAN_DROP_MALFORMED);
	th->check = csum;
	publish(f);
	return xmit(ctx, m->slot, 0);
}

/* ---- generation: ACKs into blank or live frames ------------------------------------------ */
#define ACK_FRAME (L4 + sizeof(struct tcphdr))

SEC("xdp")
int tcp_gen(struct xdp_md *ctx)
{
	struct gen_desc *d = gen_desc_get();
	struct host_config *h = host_get();
	struct tcp_flow_key key = {};
	struct tcp_flow *f;
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct tcphdr *th;
	__u32 *opt, ack, ece, optlen = 0, tcp_len, frame, fl;
	__u16 csum;
	int ok, sack;

	if (!d || !h)
		return XDP_DROP;
	id_key(d->id, &key);
	f = bpf_map_lookup_elem(&tcp_flows, &key);
	if (!f)
		return drop(d->slot, ETRAN_DROP_GEN_EMPTY);
	fl = f->flags;
	if (d->kind == TCP_GEN_ACK) {
		f->ack_queued = 0; /* (delack_queued stays: the key is still in tcp_delack_q) */
		if (f->last_ack_sent == f->rcv_nxt && !f->ack_segs && !(fl & TCP_F_OOO))
			return drop(d->slot, ETRAN_DROP_GEN_EMPTY); /* data took it */
	}
	if (f->state < TCP_S_ESTABLISHED || f->state == TCP_S_CLOSED)
		return drop(d->slot, ETRAN_DROP_GEN_EMPTY);
	if (d->kind == TCP_GEN_ACK_FIXED) {
		ack = (__u32)d->arg0;
		ece = (__u32)d->arg1;
	} else {
		ack = f->rcv_nxt;
		ece = ece_state(f);
		f->ack_segs = 0;
		f->last_ack_sent = ack;
	}
	sack = (fl & TCP_F_SACK) && (fl & TCP_F_OOO) && d->kind != TCP_GEN_ACK_FIXED;
	if (sack && (fl & TCP_F_OOO2))
		sack = 2;
	if (fl & TCP_F_TS)
		optlen += 12;
	if (sack == 1)
		optlen += 12;
	else if (sack == 2)
		optlen += 20;
	tcp_len = sizeof(struct tcphdr) + optlen;
	frame = ACK_FRAME + optlen;
	if (bpf_xdp_adjust_tail(ctx, (int)frame - (int)bpf_xdp_get_buff_len(ctx)))
		return drop(d->slot, ETRAN_DROP_INTERNAL);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	th = (void *)(ip + 1);
	opt = (void *)(th + 1);
	if ((void *)(th + 1) > end)
		return drop(d->slot, ETRAN_DROP_INTERNAL);
	eth_ip_build(eth, ip, h->ip, key.raddr, IPPROTO_TCP, tcp_len);
	th->source = key.lport;
	th->dest = key.rport;
	th->seq = bpf_htonl(f->snd_nxt);
	th->ack_seq = bpf_htonl(ack);
	((__u8 *)th)[12] = (tcp_len / 4) << 4;
	((__u8 *)th)[13] = TCPF_ACK | (ece ? TCPF_ECE : 0);
	th->window = window_field(f, ack);
	th->check = 0;
	th->urg_ptr = 0;
	if (fl & TCP_F_TS) {
		if ((void *)(opt + 3) > end)
			return drop(d->slot, ETRAN_DROP_INTERNAL);
		opt[0] = bpf_htonl(0x0101080a);
		opt[1] = bpf_htonl(ts_now(f));
		opt[2] = bpf_htonl(f->ts_recent);
		opt += 3;
	}
	if (sack == 1) {
		if ((void *)(opt + 3) > end)
			return drop(d->slot, ETRAN_DROP_INTERNAL);
		opt[0] = bpf_htonl(0x0101050a);
		opt[1] = bpf_htonl(f->ooo_lo);
		opt[2] = bpf_htonl(f->ooo_hi);
	} else if (sack == 2) {
		/* the most recently changed block should come first (RFC 2018); ours: the higher one */
		if ((void *)(opt + 5) > end)
			return drop(d->slot, ETRAN_DROP_INTERNAL);
		opt[0] = bpf_htonl(0x01010512);
		opt[1] = bpf_htonl(f->ooo2_lo);
		opt[2] = bpf_htonl(f->ooo2_hi);
		opt[3] = bpf_htonl(f->ooo_lo);
		opt[4] = bpf_htonl(f->ooo_hi);
	}
	csum = l4_checksum(th, end, tcp_len, ip->saddr, ip->daddr, IPPROTO_TCP, &ok);
	if (!ok)
		return drop(d->slot, ETRAN_DROP_INTERNAL);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	th = data + L4;
	if ((void *)(th + 1) > end)
		return drop(d->slot, ETRAN_DROP_INTERNAL);
	th->check = csum;
	return xmit(ctx, d->slot, 1);
}

/* ---- the daemon's commands ------------------------------------------------------------------ */
SEC("xdp")
int tcp_ctl(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct tcp_ctl_cmd *c = data + sizeof(struct ethhdr);
	struct tcp_flow_key key;
	struct tcp_flow *f;

	if ((void *)(c + 1) > end)
		return XDP_ABORTED;
	if (c->op == TCP_CTL_CLEAR_PUB) {
		struct pub_slot *p = pub_slot_get((__u32)c->arg64, c->arg);

		if (!p)
			return XDP_ABORTED;
		__builtin_memset(p, 0, sizeof(*p));
		return XDP_PASS;
	}
	key = c->key;
	f = bpf_map_lookup_elem(&tcp_flows, &key);
	if (!f)
		return XDP_ABORTED;
	switch (c->op) {
	case TCP_CTL_PUBLISH:
		break;
	case TCP_CTL_SET_CWND:
		if (c->arg < f->cwnd) {
			/* the limit the library may have read (as publish() computes it); a second cut
			 * within the grace keeps the first one's limit */
			__u32 lim = f->snd_una + umin32(f->cwnd + umin32(f->sacked, f->cwnd), f->snd_wnd);
			__u64 now = bpf_ktime_get_ns();

			if (now >= f->grace_until_ns || after(lim, f->grace_limit))
				f->grace_limit = lim;
			f->grace_until_ns = now + TCP_CUT_GRACE_NS;
		}
		f->cwnd = c->arg;
		if (c->arg64 & 1)
			__sync_fetch_and_or(&f->flags, TCP_F_CWR);
		if (c->arg64 >> 32)
			f->pace_rate = (__u32)(c->arg64 >> 32);
		break;
	case TCP_CTL_RTO:
		if (f->snd_una == f->snd_nxt)
			break;
		f->cwnd = c->arg;
		f->recovery_point = f->snd_nxt;
		f->rtx_seq = f->snd_una;
		f->rtx_epoch += 1;
		f->rtt_seq = 0;
		f->dupacks = 0;
		f->last_progress_ns = bpf_ktime_get_ns();
		__sync_fetch_and_and(&f->flags, ~TCP_F_RECOVERY);
		__sync_fetch_and_or(&f->flags, TCP_F_LOSS);
		break;
	case TCP_CTL_PROBE:
		if (f->snd_una == f->snd_nxt)
			break;
		if (!(f->flags & (TCP_F_RECOVERY | TCP_F_LOSS))) {
			f->recovery_point = f->snd_nxt;
			__sync_fetch_and_or(&f->flags, TCP_F_RECOVERY);
		}
		f->rtx_seq = f->snd_una;
		f->rtx_epoch += 1;
		f->rtt_seq = 0;
		break;
	case TCP_CTL_STATE:
		f->state = c->arg;
		if (c->arg64)
			__sync_fetch_and_or(&f->flags, (__u32)c->arg64);
		if (c->arg64 & TCP_F_ORPHAN)
			f->slot = 0; /* its application is gone: publish nowhere that matters */
		break;
	default:
		return XDP_ABORTED;
	}
	publish(f);
	return XDP_PASS;
}

/* Delayed ACKs: the daemon runs this every tick; each flow in tcp_delack_q that has owed an ACK
 * for TCP_DELACK_UNITS gets one queued for generation. A younger one goes back to the tail and
 * ends the run (the queue is in arrival order: the rest are younger still). Returns how many keys
 * it took. */
SEC("xdp")
int tcp_delack(struct xdp_md *ctx)
{
	struct tcp_flow_key key;
	struct tcp_flow *f;
	__u32 now = delack_clock(), q;
	int n = 0;

	for (int i = 0; i < 128; i++) {
		if (bpf_map_pop_elem(&tcp_delack_q, &key) != 0)
			break;
		n++;
		f = bpf_map_lookup_elem(&tcp_flows, &key);
		if (!f)
			continue;
		q = f->delack_queued;
		if (q && f->ack_segs && f->state == TCP_S_ESTABLISHED && (__s32)(now - q) < TCP_DELACK_UNITS &&
		    bpf_map_push_elem(&tcp_delack_q, &key, 0) == 0)
			break;
		f->delack_queued = 0;
		if (f->ack_segs && f->state == TCP_S_ESTABLISHED)
			push_ack(&key, f, TCP_GEN_ACK, 0, 0);
	}
	return n;
}

char LICENSE[] SEC("license") = "GPL";
