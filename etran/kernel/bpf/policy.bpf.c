// SPDX-License-Identifier: GPL-2.0
/* Traffic-management policies, run as a chain of tail calls from the entrance (ingress) and
 * the egress hooks (egress). The daemon puts each program into a slot of chain_in/chain_out
 * and swaps them at run time; every program ends by continuing the chain (core.h).
 *
 *   acl        allow or deny by addresses, ports, protocol and direction (acl_rules)
 *   ratelimit  token buckets per application (egress) and per flow (both directions)
 *   monitor    packet and byte counters per flow (per-application counters and drops by
 *              reason are always kept by the core in app_stats)
 */
#include "core.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ETRAN_ACL_RULES);
	__type(key, __u32);
	__type(value, struct acl_rule);
} acl_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, struct rate_cfg);
} rate_app_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_cfg);
} rate_flow_cfg SEC(".maps");

struct bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ETRAN_MAX_APPS);
	__type(key, __u32);
	__type(value, struct bucket);
} rate_app_state SEC(".maps");

/* spin locks are not allowed in LRU maps: a plain hash, emptied when the limit is removed */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ETRAN_FLOWS_TRACKED);
	__type(key, struct flow_key);
	__type(value, struct bucket);
} rate_flow_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, ETRAN_FLOWS_TRACKED);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flow_stats SEC(".maps");

/* Ports sit in the first four bytes of TCP, UDP and Homa headers alike. */
static __always_inline void flow_of(struct xdp_md *ctx, struct pkt_meta *m, struct flow_key *k)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u16 *l4 = data + sizeof(struct ethhdr) + sizeof(struct iphdr);

	k->saddr = m->saddr;
	k->daddr = m->daddr;
	k->proto = m->proto;
	k->dir = m->dir;
	k->pad = 0;
	k->sport = 0;
	k->dport = 0;
	if ((void *)(l4 + 2) <= end) {
		k->sport = l4[0];
		k->dport = l4[1];
	}
}

static __always_inline int acl_match(const struct acl_rule *r, const struct flow_key *k)
{
	if (!r->in_use || !(r->dirs & (1 << k->dir)))
		return 0;
	if ((k->saddr & r->smask) != (r->saddr & r->smask) || (k->daddr & r->dmask) != (r->daddr & r->dmask))
		return 0;
	if (r->proto && r->proto != k->proto)
		return 0;
	if (r->sport && r->sport != k->sport)
		return 0;
	if (r->dport && r->dport != k->dport)
		return 0;
	return 1;
}

SEC("xdp")
int acl(struct xdp_md *ctx)
{
	struct pkt_meta *m = meta_get();
	struct flow_key k;

	if (!m)
		return XDP_DROP;
	flow_of(ctx, m, &k);
	for (__u32 i = 0; i < ETRAN_ACL_RULES; i++) {
		__u32 idx = i;
		struct acl_rule *r = bpf_map_lookup_elem(&acl_rules, &idx);

		if (!r)
			break;
		if (acl_match(r, &k)) {
			if (r->action)
				return drop(m->slot, ETRAN_DROP_ACL);
			break;
		}
	}
	return chain_next(ctx, m);
}

/* Take `len` bytes from the bucket; 1 if they fit. */
static __always_inline int bucket_take(struct bucket *b, const struct rate_cfg *c, __u64 len, __u64 now)
{
	__u64 elapsed, tokens;
	int ok;

	bpf_spin_lock(&b->lock);
	elapsed = now - b->last_ns;
	if (b->last_ns == 0 || elapsed > 1000000000ULL)
		elapsed = 1000000000ULL;
	b->last_ns = now;
	tokens = b->tokens + elapsed * c->bytes_per_sec / 1000000000ULL;
	if (tokens > c->burst)
		tokens = c->burst;
	ok = tokens >= len;
	b->tokens = ok ? tokens - len : tokens;
	bpf_spin_unlock(&b->lock);
	return ok;
}

SEC("xdp")
int ratelimit(struct xdp_md *ctx)
{
	struct pkt_meta *m = meta_get();
	__u32 zero = 0, slot;
	__u64 now = bpf_ktime_get_ns(), len = ctx->data_end - ctx->data;
	struct rate_cfg *c;
	struct bucket *b, fresh = {};
	struct flow_key k;

	if (!m)
		return XDP_DROP;
	slot = m->slot;
	if (m->dir == ETRAN_DIR_OUT) {
		c = bpf_map_lookup_elem(&rate_app_cfg, &slot);
		b = bpf_map_lookup_elem(&rate_app_state, &slot);
		if (c && b && c->bytes_per_sec && !bucket_take(b, c, len, now))
			return drop(slot, ETRAN_DROP_RATE);
	}
	c = bpf_map_lookup_elem(&rate_flow_cfg, &zero);
	if (c && c->bytes_per_sec) {
		flow_of(ctx, m, &k);
		b = bpf_map_lookup_elem(&rate_flow_state, &k);
		if (!b) {
			fresh.tokens = c->burst;
			bpf_map_update_elem(&rate_flow_state, &k, &fresh, BPF_NOEXIST);
			b = bpf_map_lookup_elem(&rate_flow_state, &k);
		}
		if (b && !bucket_take(b, c, len, now))
			return drop(slot, ETRAN_DROP_RATE);
	}
	return chain_next(ctx, m);
}

SEC("xdp")
int monitor(struct xdp_md *ctx)
{
	struct pkt_meta *m = meta_get();
	struct flow_key k;
	struct flow_stats *s, fresh = { 1, ctx->data_end - ctx->data };

	if (!m)
		return XDP_DROP;
	flow_of(ctx, m, &k);
	s = bpf_map_lookup_elem(&flow_stats, &k);
	if (s) {
		s->packets += 1;
		s->bytes += ctx->data_end - ctx->data;
	} else {
		bpf_map_update_elem(&flow_stats, &k, &fresh, BPF_NOEXIST);
	}
	return chain_next(ctx, m);
}

char LICENSE[] SEC("license") = "GPL";
