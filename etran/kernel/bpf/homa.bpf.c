// SPDX-License-Identifier: GPL-2.0
/* etran Homa: the data path of Homa (SIGCOMM 2018) in the HomaModule wire format.
 *
 *   homa_ingress  (ingress_progs[146]) finds the RPC of every packet for this host, keeps the
 *                 reassembly state of incoming messages (received ranges, bytes remaining,
 *                 granted), delivers new DATA to the owning application, applies GRANTs,
 *                 answers RESEND (RPC_UNKNOWN, BUSY, or hands it to the application that holds
 *                 the data), frees acked server RPCs, answers NEED_ACK, keeps CUTOFFS.
 *   homa_grant    (homa_progs[0], tail call) the receiver's grant scheduler: SRPT over the
 *                 incoming messages that need grants, overcommitment (at most one message per
 *                 peer), capped incoming bytes, rtt_bytes ahead, a FIFO fraction. GRANTs are
 *                 queued for generation (gen_push).
 *   homa_egress   (egress_progs[146]) every DATA packet an application sends: it must own the
 *                 port and the RPC (client ids from its own range), stay below the granted
 *                 offset; the hook creates the RPC on its first packet, stamps the priority
 *                 (unscheduled cutoffs or the granted priority), `incoming`, the cutoff version,
 *                 and piggybacks an ack. Applications send nothing but DATA.
 *   homa_gen      (gen_progs[146]) builds GRANT, RESEND, BUSY, RPC_UNKNOWN, NEED_ACK, ACK and
 *                 CUTOFFS packets into blank or live frames, and NOTIFY frames (RPC aborted or
 *                 freed) that go to an application instead of the wire.
 *   homa_ctl      run by the daemon (BPF_PROG_RUN): abort, free, reap RPCs; kick the scheduler.
 *
 * Concurrency: the NIC's ingress runs on one CPU at a time (one NAPI); egress hooks of
 * different applications and the daemon's runs may run beside it. The grant table and the
 * per-peer ack lists are under spin locks; other RPC fields have one writer per field.
 */
#include "core.h"
#include "homa_wire.h"

#define HOMA_L4 (sizeof(struct ethhdr) + sizeof(struct iphdr))
#define HOMA_GRANT_PROG 0
#define HOMA_MAX_GRANTS (HOMA_MAX_OVERCOMMIT + 1)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HOMA_MAX_RPCS);
	__type(key, struct homa_rpc_key);
	__type(value, struct homa_rpc);
} homa_rpcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct homa_peer);
} homa_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct homa_config);
} homa_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct homa_sched);
} homa_sched_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, struct homa_app);
} homa_apps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct homa_stats);
} homa_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HOMA_SIZE_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} homa_sizes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} homa_progs SEC(".maps");

enum homa_sched_op {
	SCHED_INSERT = 1,	/* a new incoming message needs grants */
	SCHED_UPDATE = 2,	/* more of it arrived */
	SCHED_REMOVE = 3,	/* complete, or its RPC is gone */
	SCHED_KICK = 4,		/* just run the scheduler */
	SCHED_CLEAR = 5,	/* empty the table */
};

struct homa_grant_out {
	struct homa_rpc_key key;
	__u32 offset;
	__u32 prio;
};

/* per CPU: what homa_ingress/homa_ctl tell homa_grant */
struct homa_grant_scratch {
	__u32 op;
	__u32 deliver;		/* slot to deliver the frame to afterwards; HOMA_NO_SLOT: none */
	struct homa_sched_entry ent;
	__u32 ng;
	__u32 overflow;
	struct homa_grant_out g[HOMA_MAX_GRANTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct homa_grant_scratch);
} homa_gscratch SEC(".maps");

/* makes clang emit the Homa enums into BTF (tests/test_structs.py compares them) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct etran_homa_btf_anchor);
} homa_btf SEC(".maps");

/* ---- small helpers ---------------------------------------------------------------------- */

static __always_inline void cnt(__u32 i)
{
	__u32 zero = 0;
	struct homa_stats *s = bpf_map_lookup_elem(&homa_stats, &zero);

	if (s)
		s->c[i & (HOMA_C_NR - 1)] += 1;
}

static __always_inline struct homa_config *cfg_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&homa_cfg, &zero);
}

static __always_inline int key_eq(const struct homa_rpc_key *a, const struct homa_rpc_key *b)
{
	return a->id == b->id && a->peer == b->peer && a->lport == b->lport;
}

static __always_inline __u64 pack_ports(__u32 peer, __u16 lport, __u16 pport)
{
	return (__u64)peer | ((__u64)lport << 32) | ((__u64)pport << 48);
}

static __always_inline __u8 prio_tos(struct homa_config *c, __u32 prio)
{
	return (__u8)((c->priority_map[prio & 7] & 7) << 5);
}

static __always_inline int rpc_quota_take(__u32 slot)
{
	struct app_info *a = bpf_map_lookup_elem(&apps, &slot);

	if (!a || !a->active || a->rpcs >= a->max_rpcs)
		return -1;
	__sync_fetch_and_add(&a->rpcs, 1);
	return 0;
}

static __always_inline void rpc_quota_give(__u32 slot)
{
	struct app_info *a = bpf_map_lookup_elem(&apps, &slot);

	if (a && a->rpcs > 0)
		__sync_fetch_and_add(&a->rpcs, -1);
}

static __always_inline void record_size(__u32 length)
{
	/* bucket 2*log2(len) + the next bit: about sqrt(2) apart */
	__u32 b = 0, v = length;

	if (length >= 2) {
#pragma unroll
		for (int i = 0; i < 21; i++) {
			if (v < 2)
				break;
			v >>= 1;
			b++;
		}
		b = 2 * b + ((length >> (b - 1)) & 1);
	} else {
		b = length;
	}
	if (b >= HOMA_SIZE_BUCKETS)
		b = HOMA_SIZE_BUCKETS - 1;
	__u64 *c = bpf_map_lookup_elem(&homa_sizes, &b);
	if (c)
		*c += 1;
}

static __always_inline void notify(__u32 slot, const struct homa_rpc_key *key, __u16 pport, __u32 code, __u32 err)
{
	struct gen_desc d = {
		.proto = HOMA_IPPROTO, .kind = HOMA_ETRAN_NOTIFY, .slot = slot, .id = key->id,
		.arg0 = (__u64)code | ((__u64)err << 32), .arg1 = pack_ports(key->peer, key->lport, pport),
	};

	if (gen_push(&d) == 0)
		cnt(HOMA_C_NOTIFY);
	else
		cnt(HOMA_C_GEN_FAIL);
}

static __always_inline void gen_ctrl(__u8 kind, __u32 slot, __u64 id, __u32 peer, __u16 lport, __u16 pport,
				     __u64 arg0, __u16 flags)
{
	struct gen_desc d = {
		.proto = HOMA_IPPROTO, .kind = kind, .flags = flags, .slot = slot, .id = id,
		.arg0 = arg0, .arg1 = pack_ports(peer, lport, pport),
	};

	if (gen_push(&d) != 0)
		cnt(HOMA_C_GEN_FAIL);
}

static __always_inline struct homa_peer *peer_get(__u32 addr, int create)
{
	struct homa_peer *p = bpf_map_lookup_elem(&homa_peers, &addr);
	struct homa_peer fresh = {};

	if (p || !create)
		return p;
	bpf_map_update_elem(&homa_peers, &addr, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&homa_peers, &addr);
}

/* Remember an ack owed to `peer`; 1 if the list is now full (send an ACK packet). */
static __always_inline int peer_add_ack(struct homa_peer *p, __u64 client_id, __u16 server_port)
{
	int full = 0;

	bpf_spin_lock(&p->lock);
	if (p->n_acks < HOMA_MAX_ACKS) {
		__u32 i = p->n_acks & (HOMA_MAX_ACKS - 1);

		p->acks[i].client_id = client_id;
		p->acks[i].server_port = server_port;
		p->n_acks++;
	}
	full = p->n_acks >= HOMA_MAX_ACKS;
	bpf_spin_unlock(&p->lock);
	return full;
}

/* Take one owed ack (0 if none). */
static __always_inline __u64 peer_pop_ack(struct homa_peer *p, __u16 *server_port)
{
	__u64 id = 0;

	bpf_spin_lock(&p->lock);
	if (p->n_acks > 0 && p->n_acks <= HOMA_MAX_ACKS) {
		__u32 i = (p->n_acks - 1) & (HOMA_MAX_ACKS - 1);

		id = p->acks[i].client_id;
		*server_port = p->acks[i].server_port;
		p->n_acks--;
	}
	bpf_spin_unlock(&p->lock);
	return id;
}

/* ---- reassembly (HomaModule homa_add_packet, bounded gaps) ------------------------------- */

#define ADD_OVERFLOW 0xffffffffU

/* Account for bytes [start, end) of the incoming message; returns the number of new bytes,
 * or ADD_OVERFLOW if the packet would need one gap slot too many (dropped; resent later). */
static __always_inline __u32 add_range(struct homa_rpc *r, __u32 start, __u32 end)
{
	__u32 recv_end = r->in_recv_end, n = r->n_gaps, new = 0, top;

	if (start >= end)
		return 0;
	if (n > HOMA_MAX_GAPS)
		n = HOMA_MAX_GAPS;
	if (start >= recv_end) {
		if (start > recv_end) {
			if (n >= HOMA_MAX_GAPS)
				return ADD_OVERFLOW;
			r->gaps[n & (HOMA_MAX_GAPS - 1)].start = recv_end;
			r->gaps[n & (HOMA_MAX_GAPS - 1)].end = start;
			r->n_gaps = n + 1;
		}
		r->in_recv_end = end;
		return end - start;
	}
	/* a split (the range strictly inside one gap) needs one more slot */
#pragma unroll
	for (int i = 0; i < HOMA_MAX_GAPS; i++) {
		if (i >= n)
			break;
		if (r->gaps[i].start < start && end < r->gaps[i].end && n >= HOMA_MAX_GAPS)
			return ADD_OVERFLOW;
	}
	top = end;
	if (end > recv_end) {
		new = end - recv_end;
		r->in_recv_end = end;
		top = recv_end;
	}
	__u32 added = n;
#pragma unroll
	for (int i = 0; i < HOMA_MAX_GAPS; i++) {
		if (i >= n)
			break;
		__u32 gs = r->gaps[i].start, ge = r->gaps[i].end;
		__u32 s = start > gs ? start : gs;
		__u32 e = top < ge ? top : ge;

		if (s >= e)
			continue;
		new += e - s;
		if (s == gs && e == ge) {
			r->gaps[i].start = 0;	/* emptied: compacted below */
			r->gaps[i].end = 0;
		} else if (s == gs) {
			r->gaps[i].start = e;
		} else if (e == ge) {
			r->gaps[i].end = s;
		} else if (added < HOMA_MAX_GAPS) {
			r->gaps[added & (HOMA_MAX_GAPS - 1)].start = e;
			r->gaps[added & (HOMA_MAX_GAPS - 1)].end = ge;
			r->gaps[i].end = s;
			added++;
		}
	}
	__u32 j = 0;
#pragma unroll
	for (int i = 0; i < HOMA_MAX_GAPS; i++) {
		if (i >= added)
			break;
		if (r->gaps[i].start < r->gaps[i].end) {
			if (j != i)
				r->gaps[j & (HOMA_MAX_GAPS - 1)] = r->gaps[i];
			j++;
		}
	}
	r->n_gaps = j;
	return new;
}

/* ---- the grant scheduler (HomaModule homa_grant.c; etran/homa/grant.py is the model) ------
 *
 * The table is sorted by (ungranted bytes, birth). Each pass over it is a bpf_loop callback
 * (verified once, whatever the table holds). The table's try-lock `busy` is taken with
 * cmpxchg; a CPU that finds it taken queues its change in homa_sched_q for the holder. */

struct sched_op {
	__u32 op;
	__u32 pad;
	struct homa_sched_entry ent;
};

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 256);
	__type(value, struct sched_op);
} homa_sched_q SEC(".maps");

struct sched_ctx {
	struct homa_sched *t;
	struct homa_grant_scratch *s;
	struct homa_config *c;
	struct homa_rpc_key key;
	__u32 n;
	__u32 nact;
	__u32 overcommit;
	__s32 found;
	__u32 pos;
	__s32 best;
	__u64 total;
	__u64 srpt;
	__u64 best_birth;
	__u32 peers[HOMA_MAX_OVERCOMMIT];
};

static __always_inline int sched_less(const struct homa_sched_entry *a, const struct homa_sched_entry *b)
{
	__u32 ua = a->length - a->granted, ub = b->length - b->granted;

	return ua < ub || (ua == ub && a->birth < b->birth);
}

static long find_cb(__u64 i, void *p)
{
	struct sched_ctx *x = p;
	struct homa_sched *t = x->t;

	if (i >= x->n || i >= HOMA_SCHED_SLOTS)
		return 1;
	if (key_eq(&t->e[i].key, &x->key)) {
		x->found = i;
		return 1;
	}
	return 0;
}

/* move e[pos] towards the front while it is better than its neighbour */
static long bubble_cb(__u64 k, void *p)
{
	struct sched_ctx *x = p;
	struct homa_sched *t = x->t;
	struct homa_sched_entry tmp;
	__u32 i = x->pos;

	if (i == 0 || i >= HOMA_SCHED_SLOTS)
		return 1;
	if (!sched_less(&t->e[i], &t->e[i - 1]))
		return 1;
	tmp = t->e[i];
	t->e[i] = t->e[i - 1];
	t->e[i - 1] = tmp;
	x->pos = i - 1;
	return 0;
}

/* insertion sort: cheap on a table that is nearly sorted, as it always is */
static long sort_cb(__u64 i, void *p)
{
	struct sched_ctx *x = p;

	if (i >= x->n)
		return 1;
	x->pos = i;
	bpf_loop(HOMA_SCHED_SLOTS, bubble_cb, x, 0);
	return 0;
}

static long shift_cb(__u64 k, void *p)
{
	struct sched_ctx *x = p;
	struct homa_sched *t = x->t;
	__u32 j = x->pos + k;

	if (j >= HOMA_SCHED_SLOTS - 1 || j + 1 >= x->n)
		return 1;
	t->e[j] = t->e[j + 1];
	return 0;
}

/* the table's entry i for a bpf_loop callback, or NULL past its end (the loop stops) */
static __always_inline struct homa_sched_entry *sched_entry(struct sched_ctx *x, __u64 i)
{
	if (i >= x->n || i >= HOMA_SCHED_SLOTS)
		return NULL;
	return &x->t->e[i];
}

static long select_cb(__u64 i, void *p)
{
	struct sched_ctx *x = p;
	struct homa_sched_entry *e = sched_entry(x, i);

	if (!e)
		return 1;
	if (e->granted > e->received)
		x->total += e->granted - e->received;
	e->rank = 0xff;
	if (e->granted >= e->length || x->nact >= x->overcommit)
		return 0;
#pragma unroll
	for (int j = 0; j < HOMA_MAX_OVERCOMMIT; j++) {
		if (j < x->nact && x->peers[j] == e->key.peer)
			return 0; /* one message per peer: its best one */
	}
	x->peers[x->nact & (HOMA_MAX_OVERCOMMIT - 1)] = e->key.peer;
	e->rank = x->nact;
	x->nact++;
	return 0;
}

static __always_inline __u32 sched_prio(struct homa_config *c, __u32 rank, __u32 n_active)
{
	__s32 prio = (__s32)c->max_sched_prio - (__s32)rank;
	__s32 extra = (__s32)c->max_sched_prio + 1 - (__s32)n_active;

	if (extra > 0)
		prio -= extra;
	return prio > 0 ? prio : 0;
}

static __always_inline void sched_grant(struct homa_grant_scratch *s, struct homa_sched_entry *e, __u32 prio)
{
	__u32 g = s->ng;

	if (g >= HOMA_MAX_GRANTS)
		return;
	s->g[g].key = e->key;
	s->g[g].offset = e->granted;
	s->g[g].prio = prio;
	s->ng = g + 1;
}

static long grant_cb(__u64 i, void *p)
{
	struct sched_ctx *x = p;
	struct homa_config *c = x->c;
	struct homa_sched_entry *e = sched_entry(x, i);
	__u32 target, inc;

	if (!e)
		return 1;
	if (e->rank >= HOMA_MAX_OVERCOMMIT)
		return 0;
	target = e->received + c->rtt_bytes;
	if (target > e->length)
		target = e->length;
	if (target <= e->granted)
		return 0;
	if (target < e->length && target - e->granted < c->grant_increment)
		return 0; /* not worth a packet yet */
	if (x->total >= c->max_incoming)
		return 1;
	inc = target - e->granted;
	if (inc > c->max_incoming - x->total)
		inc = c->max_incoming - x->total;
	e->granted += inc;
	x->total += inc;
	x->srpt += inc;
	sched_grant(x->s, e, sched_prio(c, e->rank, x->nact));
	return 0;
}

static long fifo_cb(__u64 i, void *p)
{
	struct sched_ctx *x = p;
	struct homa_sched_entry *e = sched_entry(x, i);

	if (!e)
		return 1;
	if (e->rank < HOMA_MAX_OVERCOMMIT || e->granted >= e->length)
		return 0;
	if (e->birth < x->best_birth) {
		x->best_birth = e->birth;
		x->best = i;
	}
	return 0;
}

static __always_inline void sched_apply(struct sched_ctx *x, __u32 op, struct homa_sched_entry *ent)
{
	struct homa_sched *t = x->t;

	if (op == SCHED_CLEAR) {
		t->n = 0;
		x->n = 0;
		return;
	}
	if (op == SCHED_KICK)
		return;
	x->key = ent->key;
	x->found = -1;
	bpf_loop(HOMA_SCHED_SLOTS, find_cb, x, 0);
	if (op == SCHED_REMOVE) {
		if (x->found >= 0) {
			x->pos = x->found;
			bpf_loop(HOMA_SCHED_SLOTS, shift_cb, x, 0);
			if (t->n > 0)
				t->n--;
			x->n = t->n;
		}
		return;
	}
	if (x->found >= 0 && x->found < HOMA_SCHED_SLOTS) {
		struct homa_sched_entry *e = &t->e[x->found];

		if (ent->received > e->received)
			e->received = ent->received;
		if (ent->granted > e->granted && ent->granted <= e->length)
			e->granted = ent->granted;
		return;
	}
	/* insert (also an update of a message that did not fit before) */
	if (t->n >= HOMA_SCHED_SLOTS) {
		x->s->overflow |= 1;
		return;
	}
	__u32 n = t->n & (HOMA_SCHED_SLOTS - 1);

	t->e[n] = *ent;
	t->births += 1;
	t->e[n].birth = t->births;
	t->e[n].rank = 0xff;
	t->n = n + 1;
	x->n = n + 1;
}

/* Pick the active set (the best message of each of up to max_overcommit peers, in SRPT
 * order), keep each rtt_bytes ahead within max_incoming, then maybe one FIFO grant. */
static __always_inline void sched_run(struct sched_ctx *x)
{
	struct homa_sched *t = x->t;
	struct homa_config *c = x->c;

	bpf_loop(HOMA_SCHED_SLOTS, sort_cb, x, 0);
	x->nact = 0;
	x->total = 0;
	x->srpt = 0;
	x->overcommit = c->max_overcommit < HOMA_MAX_OVERCOMMIT ? c->max_overcommit : HOMA_MAX_OVERCOMMIT;
	bpf_loop(HOMA_SCHED_SLOTS, select_cb, x, 0);
	bpf_loop(HOMA_SCHED_SLOTS, grant_cb, x, 0);
	if (c->grant_nonfifo && x->srpt) {
		t->nonfifo_left -= x->srpt;
		if (t->nonfifo_left <= 0) {
			t->nonfifo_left += c->grant_nonfifo;
			x->best = -1;
			x->best_birth = ~0ULL;
			bpf_loop(HOMA_SCHED_SLOTS, fifo_cb, x, 0);
			if (x->best >= 0 && x->best < HOMA_SCHED_SLOTS) {
				struct homa_sched_entry *e = &t->e[x->best];
				__u32 inc = c->fifo_grant_increment;

				if (inc > e->length - e->granted)
					inc = e->length - e->granted;
				e->granted += inc;
				x->total += inc;
				sched_grant(x->s, e, c->max_sched_prio);
				x->s->overflow |= 2; /* a FIFO grant */
			}
		}
	}
	t->total_incoming = x->total;
	bpf_loop(HOMA_SCHED_SLOTS, sort_cb, x, 0); /* granted only grows: entries move up */
}

SEC("xdp")
int homa_grant(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct homa_grant_scratch *s = bpf_map_lookup_elem(&homa_gscratch, &zero);
	struct homa_sched *t = bpf_map_lookup_elem(&homa_sched_map, &zero);
	struct homa_config *c = cfg_get();
	struct sched_ctx x = {};
	struct sched_op q;

	if (!s || !t || !c)
		return XDP_DROP;
	s->ng = 0;
	s->overflow = 0;
	if (__sync_val_compare_and_swap(&t->busy, 0, 1) != 0) {
		/* another CPU schedules: it applies our change before it lets go */
		if (s->op != SCHED_KICK) {
			q.op = s->op;
			q.pad = 0;
			q.ent = s->ent;
			if (bpf_map_push_elem(&homa_sched_q, &q, 0) != 0)
				cnt(HOMA_C_GEN_FAIL);
		}
		goto deliver;
	}
	x.t = t;
	x.s = s;
	x.c = c;
	x.n = t->n;
	sched_apply(&x, s->op, &s->ent);
#pragma unroll
	for (int k = 0; k < 4; k++) {
		if (bpf_map_pop_elem(&homa_sched_q, &q) != 0)
			break;
		sched_apply(&x, q.op, &q.ent);
	}
	if (s->op != SCHED_CLEAR)
		sched_run(&x);
	__sync_fetch_and_and(&t->busy, 0);

	if (s->overflow & 1) {
		struct homa_rpc *r = bpf_map_lookup_elem(&homa_rpcs, &s->ent.key);

		cnt(HOMA_C_SCHED_OVERFLOW);
		if (r) {
			r->flags |= HOMA_RPCF_OVERFLOW;
			r->flags &= ~HOMA_RPCF_SCHED;
		}
	}
	if (s->overflow & 2)
		cnt(HOMA_C_FIFO_GRANTS);
#pragma unroll
	for (int i = 0; i < HOMA_MAX_GRANTS; i++) {
		if (i >= s->ng)
			break;
		struct homa_grant_out *g = &s->g[i];
		struct homa_rpc *r = bpf_map_lookup_elem(&homa_rpcs, &g->key);

		if (!r)
			continue;
		if (g->offset > r->in_granted)
			r->in_granted = g->offset;
		r->in_prio = g->prio;
		gen_ctrl(HOMA_PKT_GRANT, r->slot, g->key.id, g->key.peer, g->key.lport, r->pport,
			 (__u64)g->offset | ((__u64)g->prio << 32), 0);
		cnt(HOMA_C_GRANTS);
	}
deliver:
	if (s->deliver == HOMA_NO_SLOT)
		return XDP_PASS;
	cnt(HOMA_C_RX_DELIVERED);
	return to_app(ctx, s->deliver);
}

/* Hand the frame to homa_grant (which delivers it to `deliver` afterwards). */
static __always_inline int sched_call(struct xdp_md *ctx, __u32 op, const struct homa_rpc_key *key,
				      struct homa_rpc *r, __u32 deliver)
{
	__u32 zero = 0;
	struct homa_grant_scratch *s = bpf_map_lookup_elem(&homa_gscratch, &zero);

	if (s) {
		s->op = op;
		s->deliver = deliver;
		if (key)
			s->ent.key = *key;
		if (r) {
			s->ent.length = r->in_length;
			s->ent.granted = r->in_granted;
			s->ent.received = r->in_length - r->in_remaining;
			s->ent.rank = 0xff;
		}
		bpf_tail_call(ctx, &homa_progs, HOMA_GRANT_PROG);
	}
	cnt(HOMA_C_GEN_FAIL);
	if (deliver == HOMA_NO_SLOT)
		return XDP_PASS;
	return to_app(ctx, deliver);
}

/* ---- RPC life ----------------------------------------------------------------------------- */

/* Free a server RPC the client acked (homa_rpc_acked): it stays as DEAD for a while so that a
 * late duplicate of its request is not served twice; the daemon reaps it. */
static __always_inline void server_acked(__u32 peer, __u64 client_id, __u16 server_port, __u32 deliver_slot)
{
	struct homa_rpc_key key = { .id = client_id | 1, .peer = peer, .lport = server_port };
	struct homa_rpc *r = bpf_map_lookup_elem(&homa_rpcs, &key);

	if (!r || r->state == HOMA_RPC_DEAD)
		return;
	r->state = HOMA_RPC_DEAD;
	r->done_ns = bpf_ktime_get_ns();
	rpc_quota_give(r->slot);
	cnt(HOMA_C_SERVER_ACKED);
	if (r->slot != deliver_slot)
		notify(r->slot, &key, r->pport, HOMA_NOTIFY_FREED, 0);
}

/* ---- ingress ------------------------------------------------------------------------------- */

static __always_inline int in_drop(__u32 slot, __u32 counter, __u32 reason)
{
	cnt(counter);
	return drop(slot, reason);
}

static __always_inline int on_data(struct xdp_md *ctx, struct homa_config *c, __u32 owner, __u32 homa_len,
				   __u32 saddr)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct homa_data_hdr *d = data + HOMA_L4;
	struct homa_rpc_key key = {};
	struct homa_rpc *r;
	__u32 length, offset, incoming, seg, new;
	int fresh = 0;
	__u64 now;

	if ((void *)(d + 1) > end || homa_len < sizeof(*d))
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	seg = homa_len - sizeof(*d);
	length = bpf_ntohl(d->message_length);
	offset = bpf_ntohl(d->seg.offset);
	incoming = bpf_ntohl(d->incoming);
	if (length > c->max_message_length || seg > c->max_seg || offset > length || seg > length - offset ||
	    (length == 0 && offset != 0) || (length != 0 && seg == 0))
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	key.id = homa_local_id(d->common.sender_id);
	key.peer = saddr;
	key.lport = d->common.dport;
	now = bpf_ktime_get_ns();
	if (key.id & 1) {
		/* we are the server; the client may ack one of its earlier RPCs */
		if (d->ack.client_id)
			server_acked(saddr, bpf_be64_to_cpu(d->ack.client_id), d->ack.server_port, owner);
		r = bpf_map_lookup_elem(&homa_rpcs, &key);
		if (!r) {
			struct homa_rpc fresh_rpc = {};

			if (rpc_quota_take(owner) != 0)
				return in_drop(owner, HOMA_C_RX_QUOTA, ETRAN_DROP_QUOTA);
			fresh_rpc.slot = owner;
			fresh_rpc.state = HOMA_RPC_INCOMING;
			fresh_rpc.pport = d->common.sport;
			fresh_rpc.created_ns = now;
			if (bpf_map_update_elem(&homa_rpcs, &key, &fresh_rpc, BPF_NOEXIST) != 0) {
				rpc_quota_give(owner);
				return in_drop(owner, HOMA_C_RX_QUOTA, ETRAN_DROP_QUOTA);
			}
			r = bpf_map_lookup_elem(&homa_rpcs, &key);
			if (!r)
				return in_drop(owner, HOMA_C_RX_QUOTA, ETRAN_DROP_INTERNAL);
			cnt(HOMA_C_SERVER_RPCS);
			fresh = 1;
		} else if (r->state != HOMA_RPC_INCOMING) {
			return in_drop(owner, HOMA_C_RX_DUP, ETRAN_DROP_WINDOW);
		}
	} else {
		r = bpf_map_lookup_elem(&homa_rpcs, &key);
		if (!r)
			return in_drop(owner, HOMA_C_RX_NO_RPC, ETRAN_DROP_NOT_OWNER);
		if (r->state == HOMA_RPC_OUTGOING) {
			r->state = HOMA_RPC_INCOMING; /* the server has our whole request */
			fresh = 1;
		} else if (r->state != HOMA_RPC_INCOMING) {
			return in_drop(owner, HOMA_C_RX_DUP, ETRAN_DROP_WINDOW);
		}
	}
	if (r->slot != owner)
		return in_drop(owner, HOMA_C_RX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
	if (fresh || !(r->flags & HOMA_RPCF_IN_STARTED)) {
		r->in_length = length;
		r->in_remaining = length;
		r->in_recv_end = 0;
		r->n_gaps = 0;
		r->in_granted = incoming < length ? incoming : length;
		r->in_birth = now;
		r->flags |= HOMA_RPCF_IN_STARTED;
		fresh = 1;
		record_size(length);
	} else if (r->in_length != length) {
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	}
	if (incoming > r->in_granted && incoming <= length)
		r->in_granted = incoming;
	r->heard_ns = now;
	if (length == 0) {
		new = 0;
	} else {
		new = add_range(r, offset, offset + seg);
		if (new == ADD_OVERFLOW)
			return in_drop(owner, HOMA_C_RX_GAP_OVERFLOW, ETRAN_DROP_WINDOW);
		if (new == 0)
			return in_drop(owner, HOMA_C_RX_DUP, ETRAN_DROP_WINDOW);
		if (new > r->in_remaining)
			new = r->in_remaining;
		r->in_remaining -= new;
	}
	/* our cutoffs are newer than what the sender uses: tell it (rate-limited per peer) */
	if (d->cutoff_version != bpf_htons(c->cutoff_version)) {
		struct homa_peer *p = peer_get(saddr, 1);

		if (p && now - p->cutoffs_sent_ns >= c->cutoffs_min_interval_ns) {
			p->cutoffs_sent_ns = now;
			gen_ctrl(HOMA_PKT_CUTOFFS, owner, key.id, saddr, key.lport, r->pport, 0, 0);
			cnt(HOMA_C_CUTOFFS_SENT);
		}
	}
	if (r->in_remaining == 0) {
		__u8 flags = r->flags;

		if (key.id & 1) {
			r->state = HOMA_RPC_IN_SERVICE;
			r->flags = flags & ~(HOMA_RPCF_SCHED | HOMA_RPCF_OVERFLOW);
		} else {
			/* the client has its response: the RPC ends here, the server gets an ack. It
			 * stays as DEAD for a while (the daemon reaps it) so that a late retransmission
			 * of the request by the application, or a late packet of the response, finds it
			 * and is dropped instead of starting the RPC over. */
			struct homa_peer *p = peer_get(saddr, 1);
			__u16 server_port = r->pport;

			r->state = HOMA_RPC_DEAD;
			r->done_ns = bpf_ktime_get_ns();
			r->flags = flags & ~(HOMA_RPCF_SCHED | HOMA_RPCF_OVERFLOW);
			rpc_quota_give(owner);
			cnt(HOMA_C_CLIENT_DONE);
			if (p && peer_add_ack(p, key.id, server_port)) {
				gen_ctrl(HOMA_PKT_ACK, owner, 0, saddr, key.lport, server_port, 0, 0);
				cnt(HOMA_C_ACKS_SENT);
			}
			r = NULL;
		}
		if (flags & (HOMA_RPCF_SCHED | HOMA_RPCF_OVERFLOW))
			return sched_call(ctx, SCHED_REMOVE, &key, NULL, owner);
		cnt(HOMA_C_RX_DELIVERED);
		return to_app(ctx, owner);
	}
	if (fresh && r->in_granted < length) {
		r->flags |= HOMA_RPCF_SCHED;
		return sched_call(ctx, SCHED_INSERT, &key, r, owner);
	}
	if (r->flags & (HOMA_RPCF_SCHED | HOMA_RPCF_OVERFLOW)) {
		if (r->flags & HOMA_RPCF_OVERFLOW) {
			r->flags &= ~HOMA_RPCF_OVERFLOW;
			r->flags |= HOMA_RPCF_SCHED;
		}
		return sched_call(ctx, SCHED_UPDATE, &key, r, owner);
	}
	cnt(HOMA_C_RX_DELIVERED);
	return to_app(ctx, owner);
}

/* A control packet's common header, or NULL when the packet is too short to hold one. */
static __always_inline struct homa_common_hdr *common_hdr(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct homa_common_hdr *h = data + HOMA_L4;

	return (void *)(h + 1) > end ? NULL : h;
}

/* The local RPC that a packet from saddr names (its key goes to *key), or NULL. */
static __always_inline struct homa_rpc *rpc_named(struct homa_rpc_key *key, const struct homa_common_hdr *h,
						  __u32 saddr)
{
	key->id = homa_local_id(h->sender_id);
	key->peer = saddr;
	key->lport = h->dport;
	return bpf_map_lookup_elem(&homa_rpcs, key);
}

static __always_inline int on_grant(struct xdp_md *ctx, struct homa_config *c, __u32 owner, __u32 homa_len,
				    __u32 saddr)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct homa_grant_hdr *g = data + HOMA_L4;
	struct homa_rpc_key key = {};
	struct homa_rpc *r;
	struct pub_slot *ps;
	__u32 offset;

	if ((void *)(g + 1) > end || homa_len < sizeof(*g) || g->priority >= HOMA_MAX_PRIORITIES)
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	r = rpc_named(&key, &g->common, saddr);
	if (!r)
		return in_drop(owner, HOMA_C_RX_NO_RPC, ETRAN_DROP_NOT_OWNER);
	if (r->slot != owner)
		return in_drop(owner, HOMA_C_RX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
	r->heard_ns = bpf_ktime_get_ns();
	if (r->state != HOMA_RPC_OUTGOING)
		return in_drop(owner, HOMA_C_RX_STALE_GRANT, ETRAN_DROP_WINDOW);
	offset = bpf_ntohl(g->offset);
	if (offset > r->out_length)
		offset = r->out_length;
	r->out_sched_prio = g->priority;
	if (offset <= r->out_granted)
		return in_drop(owner, HOMA_C_RX_STALE_GRANT, ETRAN_DROP_WINDOW);
	r->out_granted = offset;
	ps = pub_slot_get(owner, (__u32)(key.id >> 1) & (ETRAN_PUB_SLOTS - 1));
	if (ps) {
		ps->w[HOMA_PUB_ID] = key.id;
		ps->w[HOMA_PUB_GRANTED] = offset;
		ps->w[HOMA_PUB_PRIO] = g->priority;
		ps->w[HOMA_PUB_LENGTH] = r->out_length;
	}
	cnt(HOMA_C_RX_DELIVERED);
	return to_app(ctx, owner); /* the library wakes up and sends */
}

static __always_inline int on_resend(struct xdp_md *ctx, struct homa_config *c, __u32 owner, __u32 homa_len,
				     __u32 saddr)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct homa_resend_hdr *h = data + HOMA_L4;
	struct homa_rpc_key key = {};
	struct homa_rpc *r;
	__u32 offset, length;

	if ((void *)(h + 1) > end || homa_len < sizeof(*h))
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	r = rpc_named(&key, &h->common, saddr);
	if (!r || r->state == HOMA_RPC_DEAD) {
		gen_ctrl(HOMA_PKT_RPC_UNKNOWN, owner, key.id, saddr, key.lport, h->common.sport, 0, 0);
		cnt(HOMA_C_UNKNOWN_SENT);
		return in_drop(owner, HOMA_C_RX_NO_RPC, ETRAN_DROP_NOT_OWNER);
	}
	if (r->slot != owner)
		return in_drop(owner, HOMA_C_RX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
	r->heard_ns = bpf_ktime_get_ns();
	offset = bpf_ntohl(h->offset);
	length = bpf_ntohl(h->length);
	/* nothing of the asked range sent yet (not granted, or no response yet): BUSY */
	if ((r->state != HOMA_RPC_OUTGOING && !(!(key.id & 1) && r->state == HOMA_RPC_INCOMING)) ||
	    !(r->flags & HOMA_RPCF_SENT_ANY) || length == 0 ||
	    (offset >= r->out_sent && !(r->out_length == 0 && offset == 0))) {
		gen_ctrl(HOMA_PKT_BUSY, owner, key.id, saddr, key.lport, r->pport, 0, 0);
		cnt(HOMA_C_RESEND_BUSY);
		return in_drop(owner, HOMA_C_RX_RESEND, ETRAN_DROP_GEN_EMPTY);
	}
	cnt(HOMA_C_RESEND_FWD);
	cnt(HOMA_C_RX_DELIVERED);
	return to_app(ctx, owner); /* the library holds the data: it retransmits */
}

static __always_inline int on_unknown(struct xdp_md *ctx, __u32 owner, __u32 saddr)
{
	struct homa_common_hdr *h = common_hdr(ctx);
	struct homa_rpc_key key = {};
	struct homa_rpc *r;

	if (!h)
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	r = rpc_named(&key, h, saddr);
	if (!r)
		return in_drop(owner, HOMA_C_RX_NO_RPC, ETRAN_DROP_NOT_OWNER);
	if (r->slot != owner)
		return in_drop(owner, HOMA_C_RX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
	/* not a sign of life: a peer that lost its socket answers every RESEND like this */
	if (!(key.id & 1)) {
		if (r->state != HOMA_RPC_OUTGOING)
			return in_drop(owner, HOMA_C_RX_UNKNOWN, ETRAN_DROP_WINDOW);
		cnt(HOMA_C_RX_DELIVERED);
		return to_app(ctx, owner); /* the library sends its request again */
	}
	if (r->state != HOMA_RPC_DEAD) {
		__u8 flags = r->flags;

		bpf_map_delete_elem(&homa_rpcs, &key);
		rpc_quota_give(owner);
		cnt(HOMA_C_FREED);
		if (flags & (HOMA_RPCF_SCHED | HOMA_RPCF_OVERFLOW))
			return sched_call(ctx, SCHED_REMOVE, &key, NULL, owner);
	}
	cnt(HOMA_C_RX_DELIVERED);
	return to_app(ctx, owner); /* the library drops what it held for the RPC */
}

static __always_inline int on_busy(struct xdp_md *ctx, __u32 owner, __u32 saddr)
{
	struct homa_common_hdr *h = common_hdr(ctx);
	struct homa_rpc_key key = {};
	struct homa_rpc *r;

	if (!h)
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	r = rpc_named(&key, h, saddr);
	if (r && r->slot == owner)
		r->heard_ns = bpf_ktime_get_ns();
	return in_drop(owner, HOMA_C_RX_BUSY, ETRAN_DROP_GEN_EMPTY);
}

static __always_inline int on_cutoffs(struct xdp_md *ctx, __u32 owner, __u32 homa_len, __u32 saddr)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct homa_cutoffs_hdr *h = data + HOMA_L4;
	struct homa_peer *p;

	if ((void *)(h + 1) > end || homa_len < sizeof(*h))
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	p = peer_get(saddr, 1);
	if (p) {
#pragma unroll
		for (int i = 0; i < HOMA_MAX_PRIORITIES; i++)
			p->cutoffs[i] = bpf_ntohl(h->unsched_cutoffs[i]);
		p->cutoff_version = bpf_ntohs(h->cutoff_version);
		p->has_cutoffs = 1;
	}
	return in_drop(owner, HOMA_C_RX_CUTOFFS, ETRAN_DROP_GEN_EMPTY);
}

static __always_inline int on_need_ack(struct xdp_md *ctx, __u32 owner, __u32 saddr)
{
	struct homa_common_hdr *h = common_hdr(ctx);
	struct homa_rpc_key key = {};
	struct homa_rpc *r;

	if (!h)
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	r = rpc_named(&key, h, saddr);
	if (key.id & 1)	/* only clients are asked for acks */
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	if (r && r->state != HOMA_RPC_DEAD) {
		/* still waiting for (part of) the response: not safe to ack; the timer asks for it.
		 * Not a sign of life either: heard_ns stays, so the timer keeps sending RESENDs for
		 * what is missing (which keep the server's RPC alive) instead of waiting politely
		 * while the server gives up on its ack. */
		return in_drop(owner, HOMA_C_RX_NEED_ACK, ETRAN_DROP_GEN_EMPTY);
	}
	gen_ctrl(HOMA_PKT_ACK, owner, key.id, saddr, key.lport, h->sport, 0, 1);
	cnt(HOMA_C_ACKS_SENT);
	return in_drop(owner, HOMA_C_RX_NEED_ACK, ETRAN_DROP_GEN_EMPTY);
}

static __always_inline int on_ack(struct xdp_md *ctx, __u32 owner, __u32 homa_len, __u32 saddr)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct homa_ack_hdr *h = data + HOMA_L4;
	__u64 id;
	__u16 n;

	if ((void *)(h + 1) > end || homa_len < sizeof(*h))
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	n = bpf_ntohs(h->num_acks);
	if (n > HOMA_MAX_ACKS_PER_PKT)
		return in_drop(owner, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	id = bpf_be64_to_cpu(h->common.sender_id);
	if (id && !(id & 1))
		server_acked(saddr, id, h->common.dport, owner);
#pragma unroll
	for (int i = 0; i < HOMA_MAX_ACKS_PER_PKT; i++) {
		if (i >= n)
			break;
		if (h->acks[i].client_id)
			server_acked(saddr, bpf_be64_to_cpu(h->acks[i].client_id), h->acks[i].server_port, owner);
	}
	cnt(HOMA_C_RX_ACK);
	cnt(HOMA_C_RX_DELIVERED);
	return to_app(ctx, owner); /* the library drops the responses it kept */
}

SEC("xdp")
int homa_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct homa_common_hdr *h = data + HOMA_L4;
	struct homa_config *c = cfg_get();
	struct port_key pk = { .proto = HOMA_IPPROTO };
	struct port_owner *po;
	__u32 ip_len, homa_len, owner, saddr;

	if (!c)
		return XDP_DROP;
	if ((void *)(h + 1) > end)
		return in_drop(0, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	ip_len = bpf_ntohs(ip->tot_len);
	if (ip_len < sizeof(struct iphdr) + sizeof(*h) || sizeof(struct ethhdr) + ip_len > (__u32)(end - data) ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return in_drop(0, HOMA_C_RX_MALFORMED, ETRAN_DROP_MALFORMED);
	homa_len = ip_len - sizeof(struct iphdr);
	saddr = ip->saddr;
	pk.port = h->dport;
	po = bpf_map_lookup_elem(&ports, &pk);
	if (!po) {
		/* no socket on the port: a RESEND learns the RPC is unknown, a NEED_ACK gets its ack
		 * (no RPC here means the client has it all), the rest is dropped */
		if (h->type == HOMA_PKT_RESEND && homa_len >= sizeof(struct homa_resend_hdr)) {
			gen_ctrl(HOMA_PKT_RPC_UNKNOWN, 0, homa_local_id(h->sender_id), saddr, h->dport, h->sport, 0, 0);
			cnt(HOMA_C_UNKNOWN_SENT);
		} else if (h->type == HOMA_PKT_NEED_ACK && !(homa_local_id(h->sender_id) & 1)) {
			gen_ctrl(HOMA_PKT_ACK, 0, homa_local_id(h->sender_id), saddr, h->dport, h->sport, 0, 1);
			cnt(HOMA_C_ACKS_SENT);
		}
		return in_drop(0, HOMA_C_RX_NO_PORT, ETRAN_DROP_NO_APP);
	}
	owner = po->slot;
	switch (h->type) {
	case HOMA_PKT_DATA:
		cnt(HOMA_C_RX_DATA);
		return on_data(ctx, c, owner, homa_len, saddr);
	case HOMA_PKT_GRANT:
		cnt(HOMA_C_RX_GRANT);
		return on_grant(ctx, c, owner, homa_len, saddr);
	case HOMA_PKT_RESEND:
		return on_resend(ctx, c, owner, homa_len, saddr);
	case HOMA_PKT_RPC_UNKNOWN:
		cnt(HOMA_C_RX_UNKNOWN);
		return on_unknown(ctx, owner, saddr);
	case HOMA_PKT_BUSY:
		return on_busy(ctx, owner, saddr);
	case HOMA_PKT_CUTOFFS:
		return on_cutoffs(ctx, owner, homa_len, saddr);
	case HOMA_PKT_NEED_ACK:
		return on_need_ack(ctx, owner, saddr);
	case HOMA_PKT_ACK:
		return on_ack(ctx, owner, homa_len, saddr);
	case HOMA_PKT_FREEZE:
		return in_drop(owner, HOMA_C_RX_FREEZE, ETRAN_DROP_GEN_EMPTY);
	}
	return in_drop(owner, HOMA_C_RX_BAD_TYPE, ETRAN_DROP_MALFORMED);
}

/* ---- egress -------------------------------------------------------------------------------- */

static __always_inline int out_drop(__u32 slot, __u32 counter, __u32 reason)
{
	cnt(counter);
	return drop(slot, reason);
}

/* The unscheduled priority for a message of `length` bytes to `peer`: the highest level
 * whose cutoff covers it (the peer's cutoffs once it sent them, ours by default). */
static __always_inline __u32 unsched_prio(struct homa_config *c, struct homa_peer *p, __u32 length)
{
	__u32 prio = 0;

#pragma unroll
	for (int i = 0; i < HOMA_MAX_PRIORITIES; i++) {
		__u32 cut = (p && p->has_cutoffs) ? p->cutoffs[i] : c->default_cutoffs[i];

		if (cut >= length)
			prio = i;
	}
	return prio;
}

SEC("xdp")
int homa_egress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct pkt_meta *m = meta_get();
	struct homa_config *c = cfg_get();
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct homa_data_hdr *d = data + HOMA_L4;
	struct homa_rpc_key key = {};
	struct port_key pk = { .proto = HOMA_IPPROTO };
	struct port_owner *po;
	struct homa_peer *peer;
	struct homa_rpc *r;
	__u32 slot, length, offset, seg, granted, prio;
	__u64 now;

	if (!m || !c)
		return XDP_DROP;
	slot = m->slot;
	if ((void *)(d + 1) > end) {
		struct homa_common_hdr *h = data + HOMA_L4;

		if ((void *)(h + 1) <= end && h->type != HOMA_PKT_DATA)
			return out_drop(slot, HOMA_C_TX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
		return out_drop(slot, HOMA_C_TX_MALFORMED, ETRAN_DROP_MALFORMED);
	}
	if (d->common.type != HOMA_PKT_DATA) /* control packets are the kernel's to send */
		return out_drop(slot, HOMA_C_TX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
	pk.port = d->common.sport;
	po = bpf_map_lookup_elem(&ports, &pk);
	if (!po || po->slot != slot)
		return out_drop(slot, HOMA_C_TX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
	seg = (__u32)(end - (void *)d) - sizeof(*d);
	length = bpf_ntohl(d->message_length);
	offset = bpf_ntohl(d->seg.offset);
	if (length > c->max_message_length || seg > c->max_seg || offset > length || seg > length - offset ||
	    (length == 0 && offset != 0) || (length != 0 && seg == 0))
		return out_drop(slot, HOMA_C_TX_MALFORMED, ETRAN_DROP_MALFORMED);
	key.id = bpf_be64_to_cpu(d->common.sender_id);
	key.peer = ip->daddr;
	key.lport = d->common.sport;
	now = bpf_ktime_get_ns();
	peer = bpf_map_lookup_elem(&homa_peers, &key.peer);
	r = bpf_map_lookup_elem(&homa_rpcs, &key);
	if (!r) {
		/* the first packet of a request creates the client RPC */
		struct homa_app *ha = bpf_map_lookup_elem(&homa_apps, &slot);
		struct homa_rpc fresh = {};

		if (key.id & 1)
			return out_drop(slot, HOMA_C_TX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
		/* a retransmission never starts an RPC: this one ended (and was forgotten) already */
		if (d->retransmit)
			return out_drop(slot, HOMA_C_TX_STALE, ETRAN_DROP_NOT_OWNER);
		if (!ha || key.id < ha->id_lo || key.id >= ha->id_hi)
			return out_drop(slot, HOMA_C_TX_BAD_ID, ETRAN_DROP_NOT_OWNER);
		if (rpc_quota_take(slot) != 0)
			return out_drop(slot, HOMA_C_TX_QUOTA, ETRAN_DROP_QUOTA);
		fresh.slot = slot;
		fresh.state = HOMA_RPC_OUTGOING;
		fresh.pport = d->common.dport;
		fresh.created_ns = now;
		fresh.heard_ns = now;
		fresh.out_length = length;
		fresh.out_unsched = length < c->unsched_bytes ? length : c->unsched_bytes;
		fresh.out_granted = fresh.out_unsched;
		fresh.out_unsched_prio = unsched_prio(c, peer, length);
		if (bpf_map_update_elem(&homa_rpcs, &key, &fresh, BPF_NOEXIST) != 0) {
			rpc_quota_give(slot);
			return out_drop(slot, HOMA_C_TX_QUOTA, ETRAN_DROP_QUOTA);
		}
		r = bpf_map_lookup_elem(&homa_rpcs, &key);
		if (!r)
			return out_drop(slot, HOMA_C_TX_QUOTA, ETRAN_DROP_INTERNAL);
		cnt(HOMA_C_CLIENT_RPCS);
	} else {
		if (r->slot != slot || r->pport != d->common.dport)
			return out_drop(slot, HOMA_C_TX_NOT_OWNER, ETRAN_DROP_NOT_OWNER);
		if (r->state == HOMA_RPC_IN_SERVICE && (key.id & 1)) {
			/* the first packet of a response */
			r->out_length = length;
			r->out_unsched = length < c->unsched_bytes ? length : c->unsched_bytes;
			r->out_granted = r->out_unsched;
			r->out_unsched_prio = unsched_prio(c, peer, length);
			r->out_sent = 0;
			r->heard_ns = now;
			r->state = HOMA_RPC_OUTGOING;
		} else if (r->state != HOMA_RPC_OUTGOING && !(!(key.id & 1) && r->state == HOMA_RPC_INCOMING)) {
			/* the RPC ended (DEAD), or a response before its request is complete */
			return out_drop(slot, r->state == HOMA_RPC_DEAD ? HOMA_C_TX_STALE : HOMA_C_TX_NOT_OWNER,
					ETRAN_DROP_NOT_OWNER);
		}
		if (r->out_length != length)
			return out_drop(slot, HOMA_C_TX_MALFORMED, ETRAN_DROP_MALFORMED);
	}
	granted = r->out_granted;
	if (offset >= granted && length != 0)
		return out_drop(slot, HOMA_C_TX_WINDOW, ETRAN_DROP_WINDOW);
	/* the kernel's fields */
	prio = offset < r->out_unsched ? r->out_unsched_prio : r->out_sched_prio;
	ip->tos = prio_tos(c, prio);
	d->common.sequence = d->seg.offset;
	d->common.ack[0] = 0;
	d->common.ack[1] = 0;
	d->common.ack[2] = 0;
	d->common.doff = HOMA_DATA_DOFF;
	d->common.flags = 0;
	d->common.window = 0;
	d->common.checksum = 0;
	d->common.urgent = 0;
	if (c->max_seg) {
		__u32 inc = granted + c->max_seg - 1;

		inc -= inc % c->max_seg;
		d->incoming = bpf_htonl(inc < length ? inc : length);
	}
	d->cutoff_version = (peer && peer->has_cutoffs) ? bpf_htons(peer->cutoff_version) : 0;
	d->ack.client_id = 0;
	d->ack.server_port = 0;
	if (!(key.id & 1) && peer && peer->n_acks) {
		__u16 sp = 0;
		__u64 acked = peer_pop_ack(peer, &sp);

		if (acked) {
			d->ack.client_id = bpf_cpu_to_be64(acked);
			d->ack.server_port = sp;
			cnt(HOMA_C_TX_ACK_PIGGYBACK);
		}
	}
	if (offset + seg > r->out_sent)
		r->out_sent = offset + seg;
	if (!(r->flags & HOMA_RPCF_SENT_ANY))
		r->flags |= HOMA_RPCF_SENT_ANY;
	if (r->out_sent >= r->out_length && !r->done_ns)
		r->done_ns = now;
	cnt(HOMA_C_TX_DATA);
	return xmit(ctx, slot, 0);
}

/* ---- generation ---------------------------------------------------------------------------- */

static __always_inline __u32 gen_len(__u8 kind)
{
	switch (kind) {
	case HOMA_PKT_GRANT:
		return sizeof(struct homa_grant_hdr);
	case HOMA_PKT_RESEND:
		return sizeof(struct homa_resend_hdr);
	case HOMA_PKT_CUTOFFS:
		return sizeof(struct homa_cutoffs_hdr);
	case HOMA_PKT_ACK:
		return sizeof(struct homa_ack_hdr);
	case HOMA_PKT_RPC_UNKNOWN:
	case HOMA_PKT_BUSY:
	case HOMA_PKT_NEED_ACK:
	case HOMA_ETRAN_NOTIFY:
		return sizeof(struct homa_common_hdr);
	}
	return 0;
}

SEC("xdp")
int homa_gen(struct xdp_md *ctx)
{
	struct gen_desc *d = gen_desc_get();
	struct homa_config *c = cfg_get();
	struct host_config *host = host_get();
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct homa_common_hdr *h;
	__u32 hlen, want, peer;
	__u16 lport, pport;
	__u32 slot;
	__u8 kind;

	if (!d || !c || !host)
		return XDP_DROP;
	kind = d->kind;
	slot = d->slot;
	hlen = gen_len(kind);
	if (!hlen)
		return out_drop(slot, HOMA_C_GEN_FAIL, ETRAN_DROP_INTERNAL);
	want = HOMA_L4 + hlen;
	if (bpf_xdp_adjust_tail(ctx, (int)want - (int)bpf_xdp_get_buff_len(ctx)) != 0)
		return out_drop(slot, HOMA_C_GEN_FAIL, ETRAN_DROP_INTERNAL);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	ip = data + sizeof(*eth);
	h = data + HOMA_L4;
	if ((void *)(h + 1) > end)
		return out_drop(slot, HOMA_C_GEN_FAIL, ETRAN_DROP_INTERNAL);
	peer = (__u32)d->arg1;
	lport = (__u16)(d->arg1 >> 32);
	pport = (__u16)(d->arg1 >> 48);

	__builtin_memset(eth->h_dest, 0, ETH_ALEN);
	__builtin_memcpy(eth->h_source, host->mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = prio_tos(c, c->ctrl_prio);
	ip->tot_len = bpf_htons(sizeof(*ip) + hlen);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000);
	ip->ttl = 64;
	ip->protocol = HOMA_IPPROTO;
	ip->check = 0;
	ip->saddr = host->ip;
	ip->daddr = peer;
	__builtin_memset(h, 0, sizeof(*h));
	h->sport = lport;
	h->dport = pport;
	h->type = kind;
	h->doff = HOMA_CONTROL_DOFF;
	h->sender_id = bpf_cpu_to_be64(d->id);

	switch (kind) {
	case HOMA_PKT_GRANT: {
		struct homa_grant_hdr *g = (void *)h;

		if ((void *)(g + 1) > end)
			return out_drop(slot, HOMA_C_GEN_FAIL, ETRAN_DROP_INTERNAL);
		g->offset = bpf_htonl((__u32)d->arg0);
		g->priority = (__u8)(d->arg0 >> 32);
		break;
	}
	case HOMA_PKT_RESEND: {
		struct homa_resend_hdr *rs = (void *)h;

		if ((void *)(rs + 1) > end)
			return out_drop(slot, HOMA_C_GEN_FAIL, ETRAN_DROP_INTERNAL);
		rs->offset = bpf_htonl((__u32)d->arg0);
		rs->length = bpf_htonl((__u32)(d->arg0 >> 32));
		rs->priority = (__u8)d->flags;
		break;
	}
	case HOMA_PKT_CUTOFFS: {
		struct homa_cutoffs_hdr *co = (void *)h;

		if ((void *)(co + 1) > end)
			return out_drop(slot, HOMA_C_GEN_FAIL, ETRAN_DROP_INTERNAL);
#pragma unroll
		for (int i = 0; i < HOMA_MAX_PRIORITIES; i++)
			co->unsched_cutoffs[i] = bpf_htonl(c->unsched_cutoffs[i]);
		co->cutoff_version = bpf_htons(c->cutoff_version);
		break;
	}
	case HOMA_PKT_ACK: {
		struct homa_ack_hdr *a = (void *)h;
		struct homa_peer *p = bpf_map_lookup_elem(&homa_peers, &peer);
		__u16 n = 0;

		if ((void *)(a + 1) > end)
			return out_drop(slot, HOMA_C_GEN_FAIL, ETRAN_DROP_INTERNAL);
		__builtin_memset(a->acks, 0, sizeof(a->acks));
		if (p) {
#pragma unroll
			for (int i = 0; i < HOMA_MAX_ACKS_PER_PKT; i++) {
				__u16 sp = 0;
				__u64 id = peer_pop_ack(p, &sp);

				if (!id)
					break;
				a->acks[i].client_id = bpf_cpu_to_be64(id);
				a->acks[i].server_port = sp;
				n++;
			}
		}
		a->num_acks = bpf_htons(n);
		if (!d->id && !n)	/* a flush that found the list empty (already piggybacked) */
			return drop(slot, ETRAN_DROP_GEN_EMPTY);
		break;
	}
	case HOMA_ETRAN_NOTIFY:
		/* to the application, as if from the peer */
		__builtin_memcpy(eth->h_dest, host->mac, ETH_ALEN);
		ip->saddr = peer;
		ip->daddr = host->ip;
		h->sport = pport;
		h->dport = lport;
		h->sequence = bpf_htonl((__u32)d->arg0);
		h->urgent = bpf_htons((__u16)(d->arg0 >> 32));
		ip_set_checksum(ip);
		cnt(HOMA_C_GEN_BUILT);
		return to_app(ctx, slot);
	default:
		break;
	}
	cnt(HOMA_C_GEN_BUILT);
	return xmit(ctx, slot, 1);
}

/* ---- the daemon's commands ------------------------------------------------------------------ */

SEC("xdp")
int homa_ctl(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct homa_ctl_cmd *cmd = data + sizeof(struct ethhdr);
	struct homa_rpc_key key;
	struct homa_rpc *r;
	__u32 op, slot;
	__u16 pport;
	__u8 flags, state;

	if ((void *)(cmd + 1) > end)
		return XDP_ABORTED;
	op = cmd->op;
	key = cmd->key;
	key.pad = 0;
	if (op == HOMA_CTL_KICK)
		return sched_call(ctx, SCHED_KICK, NULL, NULL, HOMA_NO_SLOT);
	if (op == HOMA_CTL_CLEAR_SCHED)
		return sched_call(ctx, SCHED_CLEAR, NULL, NULL, HOMA_NO_SLOT);
	r = bpf_map_lookup_elem(&homa_rpcs, &key);
	if (!r)
		return XDP_DROP;
	slot = r->slot;
	pport = r->pport;
	flags = r->flags;
	state = r->state;
	switch (op) {
	case HOMA_CTL_ABORT:
	case HOMA_CTL_FREE:
	case HOMA_CTL_DROP:
		bpf_map_delete_elem(&homa_rpcs, &key);
		if (state != HOMA_RPC_DEAD)
			rpc_quota_give(slot);
		if (op == HOMA_CTL_ABORT) {
			cnt(HOMA_C_ABORTED);
			notify(slot, &key, pport, HOMA_NOTIFY_ABORTED, cmd->arg);
		} else if (op == HOMA_CTL_FREE) {
			cnt(HOMA_C_FREED);
			notify(slot, &key, pport, HOMA_NOTIFY_FREED, 0);
		}
		if (flags & (HOMA_RPCF_SCHED | HOMA_RPCF_OVERFLOW))
			return sched_call(ctx, SCHED_REMOVE, &key, NULL, HOMA_NO_SLOT);
		return XDP_PASS;
	case HOMA_CTL_REAP:
		if (state != HOMA_RPC_DEAD)
			return XDP_DROP;
		bpf_map_delete_elem(&homa_rpcs, &key);
		cnt(HOMA_C_REAPED);
		return XDP_PASS;
	}
	return XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
