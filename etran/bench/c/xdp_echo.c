// SPDX-License-Identifier: GPL-2.0
/*
 * xdp_echo: the C floor of etran's round-trip benchmarks.
 *
 * One program, two roles, over one AF_XDP socket (copy mode, need_wakeup, queue 0):
 *
 *   --server   echoes every UDP/IPv4 frame it receives in place (MACs, IPv4 addresses and
 *              UDP ports swapped; both checksums stay valid) until SIGTERM/SIGINT or
 *              --time-limit.
 *   --client   sends --warmup + --count echo requests of --payload bytes, one at a time,
 *              spinning on the RX ring (busy-poll); times each round trip with
 *              clock_gettime(CLOCK_MONOTONIC) from just before the TX descriptor is
 *              submitted (and the kernel kicked) to just after the reply was checked.
 *
 * Where the socket comes from (no libbpf/libxdp: only libc and the kernel's UAPI headers):
 *
 *   --ifname IF --xskmap-fd N | --xskmap-pin PATH
 *              creates its own UMEM and socket on IF and puts the socket into the XSKMAP
 *              of an XDP program someone else attached (etran.bench.cecho loads etran's
 *              to_xsk with a UDP-port filter and passes its map fd).
 *   --xsk-fd N --umem-fd M --frames F --frame-size S --rings RX,TX,FILL,COMP
 *              adopts a socket etran's daemon made for an application (its tenant port):
 *              the UMEM is the memfd the daemon registered, already bound.
 *
 * Output, one line each on stdout (etran.bench.worker's protocol):
 *   READY                     the socket is receiving
 *   PROGRESS <done> <total>   about every 2 % of the measured round trips (client)
 *   RESULT <json>             at the end: the client's samples (ns) and counters, or the
 *                             server's echo count; both with socket statistics
 *   ERROR <message>           it failed (exit status 1)
 *
 * Everything is bounded: the client by its count and --time-limit, a missing reply by
 * --rtt-timeout (counted as lost), the server by --time-limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <linux/if_xdp.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#define ETH_HLEN 14
#define IP_HLEN 20
#define UDP_HLEN 8
#define PAYLOAD_OFF (ETH_HLEN + IP_HLEN + UDP_HLEN) /* 42 */
#define BATCH 64
#define REBIND_WAIT_NS 2000000000ULL /* a queue just released by another socket stays busy briefly */

/* ---- small helpers ----------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void emit(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "xdp_echo: %s\n", msg);
	/* the message goes into a line of its own: no newlines */
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	emit("ERROR %s", msg);
	exit(1);
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static long bpf_sys(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* ---- rings ------------------------------------------------------------------------- */

struct ring {
	uint32_t *producer;
	uint32_t *consumer;
	uint32_t *flags;
	void *desc;
	uint32_t size;
	uint32_t mask;
	uint32_t local; /* our producer (fill, tx) or consumer (rx, comp) index */
	void *map;
	size_t map_len;
};

static inline uint32_t load_acquire(uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store_release(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* producer rings (fill, tx): free slots */
static inline uint32_t prod_free(struct ring *r)
{
	return r->size - (r->local - load_acquire(r->consumer));
}

static inline void prod_submit(struct ring *r, uint32_t n)
{
	r->local += n;
	store_release(r->producer, r->local);
}

/* consumer rings (rx, comp): entries ready */
static inline uint32_t cons_avail(struct ring *r)
{
	return load_acquire(r->producer) - r->local;
}

static inline void cons_release(struct ring *r, uint32_t n)
{
	r->local += n;
	store_release(r->consumer, r->local);
}

static inline int needs_wakeup(struct ring *r)
{
	return __atomic_load_n(r->flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP;
}

static void map_ring(int fd, struct ring *r, uint32_t size, const struct xdp_ring_offset *off, off_t pgoff,
		     size_t entry, int producer_side, const char *name)
{
	r->map_len = off->desc + (size_t)size * entry;
	r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
	if (r->map == MAP_FAILED)
		die("mapping the %s ring (%u entries) failed: %s", name, size, strerror(errno));
	r->producer = (uint32_t *)((char *)r->map + off->producer);
	r->consumer = (uint32_t *)((char *)r->map + off->consumer);
	r->flags = (uint32_t *)((char *)r->map + off->flags);
	r->desc = (char *)r->map + off->desc;
	r->size = size;
	r->mask = size - 1;
	/* an adopted socket may not start at index 0 */
	r->local = producer_side ? *r->producer : *r->consumer;
}

/* ---- the socket -------------------------------------------------------------------- */

struct xsk {
	int fd;
	uint8_t *umem;
	size_t umem_len;
	uint32_t frames;
	uint32_t frame_size;
	struct ring fill, comp, rx, tx;
	uint64_t *free_tx; /* the client's free TX frames (a stack) */
	uint32_t nfree;
	int zerocopy;
	uint64_t kicks, kick_busy, rx_wakeups;
};

static void check_pow2(const char *what, uint32_t v)
{
	if (v < 2 || (v & (v - 1)))
		die("%s %u is not a power of two", what, v);
}

static void map_rings(struct xsk *x, uint32_t rx, uint32_t tx, uint32_t fill, uint32_t comp)
{
	struct xdp_mmap_offsets off;
	socklen_t len = sizeof(off);

	if (getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len))
		die("getsockopt(XDP_MMAP_OFFSETS): %s", strerror(errno));
	map_ring(x->fd, &x->rx, rx, &off.rx, XDP_PGOFF_RX_RING, sizeof(struct xdp_desc), 0, "RX");
	map_ring(x->fd, &x->tx, tx, &off.tx, XDP_PGOFF_TX_RING, sizeof(struct xdp_desc), 1, "TX");
	map_ring(x->fd, &x->fill, fill, &off.fr, XDP_UMEM_PGOFF_FILL_RING, sizeof(uint64_t), 1, "fill");
	map_ring(x->fd, &x->comp, comp, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, sizeof(uint64_t), 0, "completion");
}

static void read_mode(struct xsk *x)
{
	struct xdp_options opts;
	socklen_t len = sizeof(opts);

	if (getsockopt(x->fd, SOL_XDP, XDP_OPTIONS, &opts, &len) == 0)
		x->zerocopy = !!(opts.flags & XDP_OPTIONS_ZEROCOPY);
}

/* Half the frames stock the fill ring (RX), the other half are for sending. */
static void stock(struct xsk *x)
{
	uint32_t half = x->frames / 2, n = half < x->fill.size ? half : x->fill.size;
	uint64_t *fill = x->fill.desc;

	if (prod_free(&x->fill) < n)
		die("the fill ring is not empty: was this socket used before?");
	for (uint32_t i = 0; i < n; i++)
		fill[(x->fill.local + i) & x->fill.mask] = (uint64_t)i * x->frame_size;
	prod_submit(&x->fill, n);
	x->free_tx = calloc(x->frames - half, sizeof(uint64_t));
	if (!x->free_tx)
		die("out of memory");
	for (uint32_t i = half; i < x->frames; i++)
		x->free_tx[x->nfree++] = (uint64_t)i * x->frame_size;
}

static void xsk_create(struct xsk *x, const char *ifname, uint32_t queue, uint32_t frames, uint32_t ring,
		       int map_fd)
{
	struct xdp_umem_reg reg;
	struct sockaddr_xdp sxdp;
	unsigned int ifindex = if_nametoindex(ifname);
	uint64_t deadline;
	union bpf_attr attr;
	uint32_t key = queue;
	int value;

	if (!ifindex)
		die("no interface %s in this network namespace", ifname);
	x->frames = frames;
	x->frame_size = 2048;
	x->umem_len = (size_t)frames * x->frame_size;
	x->umem = mmap(NULL, x->umem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (x->umem == MAP_FAILED)
		die("allocating a %zu-byte UMEM failed: %s", x->umem_len, strerror(errno));
	x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (x->fd < 0)
		die("socket(AF_XDP): %s (needs CAP_NET_RAW)", strerror(errno));
	memset(&reg, 0, sizeof(reg));
	reg.addr = (uint64_t)(uintptr_t)x->umem;
	reg.len = x->umem_len;
	reg.chunk_size = x->frame_size;
	if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)))
		die("XDP_UMEM_REG: %s", strerror(errno));
	if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &ring, sizeof(ring)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &ring, sizeof(ring)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_RX_RING, &ring, sizeof(ring)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_TX_RING, &ring, sizeof(ring)))
		die("setting the ring sizes (%u): %s", ring, strerror(errno));
	map_rings(x, ring, ring, ring, ring);
	stock(x); /* before bind: frames are there as soon as the socket receives */

	memset(&sxdp, 0, sizeof(sxdp));
	sxdp.sxdp_family = AF_XDP;
	sxdp.sxdp_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
	sxdp.sxdp_ifindex = ifindex;
	sxdp.sxdp_queue_id = queue;
	deadline = now_ns() + REBIND_WAIT_NS;
	while (bind(x->fd, (struct sockaddr *)&sxdp, sizeof(sxdp))) {
		if (errno != EBUSY || now_ns() > deadline)
			die("binding the AF_XDP socket to %s queue %u: %s", ifname, queue, strerror(errno));
		usleep(5000);
	}
	read_mode(x);

	memset(&attr, 0, sizeof(attr));
	value = x->fd;
	attr.map_fd = map_fd;
	attr.key = (uint64_t)(uintptr_t)&key;
	attr.value = (uint64_t)(uintptr_t)&value;
	attr.flags = BPF_ANY;
	if (bpf_sys(BPF_MAP_UPDATE_ELEM, &attr))
		die("putting the socket into the XSKMAP (fd %d, key %u): %s", map_fd, key, strerror(errno));
}

static void xsk_adopt(struct xsk *x, int xsk_fd, int umem_fd, uint32_t frames, uint32_t frame_size,
		      const uint32_t rings[4])
{
	int domain = 0;
	socklen_t len = sizeof(domain);

	if (getsockopt(xsk_fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) || domain != AF_XDP)
		die("fd %d is not an AF_XDP socket", xsk_fd);
	x->fd = xsk_fd;
	x->frames = frames;
	x->frame_size = frame_size;
	x->umem_len = (size_t)frames * frame_size;
	x->umem = mmap(NULL, x->umem_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, umem_fd, 0);
	if (x->umem == MAP_FAILED)
		die("mapping the UMEM (fd %d, %zu bytes): %s", umem_fd, x->umem_len, strerror(errno));
	close(umem_fd);
	map_rings(x, rings[0], rings[1], rings[2], rings[3]);
	read_mode(x);
	stock(x);
}

/* Let the kernel transmit the TX ring (copy mode: this call does the sending). */
static inline void kick_tx(struct xsk *x)
{
	if (!needs_wakeup(&x->tx))
		return;
	x->kicks++;
	if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0) {
		if (errno == EBUSY)
			x->kick_busy++; /* the device dropped a frame */
		else if (errno != EAGAIN && errno != ENOBUFS && errno != ENETDOWN)
			die("sendto (TX kick): %s", strerror(errno));
	}
}

static inline void wakeup_rx(struct xsk *x)
{
	if (!needs_wakeup(&x->fill))
		return;
	x->rx_wakeups++;
	recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

static inline uint64_t chunk(struct xsk *x, uint64_t addr)
{
	return addr & ~(uint64_t)(x->frame_size - 1);
}

/* Completed TX frames: back to the fill ring (server: it sends the RX frames) or to the
 * free TX frames (client). */
static void complete(struct xsk *x, int to_fill)
{
	uint32_t n = cons_avail(&x->comp);
	uint64_t *comp = x->comp.desc, *fill = x->fill.desc;

	if (!n)
		return;
	if (to_fill) {
		uint32_t room = prod_free(&x->fill);

		if (n > room)
			n = room;
		for (uint32_t i = 0; i < n; i++)
			fill[(x->fill.local + i) & x->fill.mask] = chunk(x, comp[(x->comp.local + i) & x->comp.mask]);
		prod_submit(&x->fill, n);
	} else {
		for (uint32_t i = 0; i < n; i++)
			x->free_tx[x->nfree++] = chunk(x, comp[(x->comp.local + i) & x->comp.mask]);
	}
	cons_release(&x->comp, n);
}

/* ---- JSON output -------------------------------------------------------------------- */

struct usage {
	long nvcsw, nivcsw;
};

static struct usage usage_now(void)
{
	struct rusage ru;
	struct usage u = {0, 0};

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		u.nvcsw = ru.ru_nvcsw;
		u.nivcsw = ru.ru_nivcsw;
	}
	return u;
}

static void print_common(struct xsk *x, struct usage since)
{
	struct xdp_statistics st;
	socklen_t len = sizeof(st);
	struct usage u = usage_now();

	printf("\"voluntary_switches\":%ld,\"involuntary_switches\":%ld,", u.nvcsw - since.nvcsw,
	       u.nivcsw - since.nivcsw);
	printf("\"xsk_mode\":\"%s\",\"tx_kicks\":%" PRIu64 ",\"tx_busy\":%" PRIu64 ",\"rx_wakeups\":%" PRIu64,
	       x->zerocopy ? "zerocopy" : "copy", x->kicks, x->kick_busy, x->rx_wakeups);
	memset(&st, 0, sizeof(st));
	if (getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, &st, &len) == 0)
		printf(",\"xsk_stats\":{\"rx_dropped\":%llu,\"rx_invalid_descs\":%llu,\"tx_invalid_descs\":%llu,"
		       "\"rx_ring_full\":%llu,\"rx_fill_ring_empty_descs\":%llu,\"tx_ring_empty_descs\":%llu}",
		       (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
		       (unsigned long long)st.tx_invalid_descs, (unsigned long long)st.rx_ring_full,
		       (unsigned long long)st.rx_fill_ring_empty_descs, (unsigned long long)st.tx_ring_empty_descs);
}

/* ---- server ----------------------------------------------------------------------- */

static inline void swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
	uint8_t t[6];

	memcpy(t, a, n);
	memcpy(a, b, n);
	memcpy(b, t, n);
}

/* In place: MACs, IPv4 addresses and UDP ports swapped; 0 if it is no UDP/IPv4 frame. */
static inline int echo_in_place(uint8_t *f, uint32_t len)
{
	if (len < PAYLOAD_OFF || f[12] != 0x08 || f[13] != 0x00 || f[14] != 0x45 || f[23] != 17)
		return 0;
	swap_bytes(f, f + 6, 6);
	swap_bytes(f + 26, f + 30, 4);
	swap_bytes(f + 34, f + 36, 2);
	return 1;
}

static int serve(struct xsk *x, double time_limit)
{
	uint64_t deadline = now_ns() + (uint64_t)(time_limit * 1e9), echoed = 0, ignored = 0;
	struct xdp_desc *rxd = x->rx.desc, *txd = x->tx.desc;
	uint64_t *fill = x->fill.desc;
	struct usage since = usage_now();
	uint32_t spins = 0;

	emit("READY");
	while (!stop_requested) {
		uint32_t n = cons_avail(&x->rx), m = 0, back = 0;

		if (!n) {
			complete(x, 1);
			wakeup_rx(x);
			if (!(++spins & 0xffff) && now_ns() > deadline)
				break;
			continue;
		}
		if (n > BATCH)
			n = BATCH;
		if (prod_free(&x->tx) < n)
			complete(x, 1);
		for (uint32_t i = 0; i < n; i++) {
			struct xdp_desc d = rxd[(x->rx.local + i) & x->rx.mask];

			if (prod_free(&x->tx) > m && echo_in_place(x->umem + d.addr, d.len)) {
				txd[(x->tx.local + m) & x->tx.mask] = d;
				m++;
			} else {
				/* not ours to echo (or no TX room): straight back to the fill ring */
				fill[(x->fill.local + back++) & x->fill.mask] = chunk(x, d.addr);
				ignored++;
			}
		}
		cons_release(&x->rx, n);
		if (back)
			prod_submit(&x->fill, back);
		if (m) {
			prod_submit(&x->tx, m);
			kick_tx(x);
			echoed += m;
		}
		complete(x, 1);
	}
	printf("RESULT {\"role\":\"server\",\"echoed\":%" PRIu64 ",\"ignored\":%" PRIu64 ",\"interrupted\":%s,",
	       echoed, ignored, stop_requested ? "true" : "false");
	print_common(x, since);
	printf("}\n");
	fflush(stdout);
	return 0;
}

/* ---- client ----------------------------------------------------------------------- */

struct client_opts {
	uint8_t src_mac[6], dst_mac[6];
	struct in_addr src_ip, dst_ip;
	uint16_t sport, dport;
	uint32_t payload;
	uint64_t count, warmup;
	double time_limit, rtt_timeout;
};

static uint16_t ip_checksum(const uint8_t *h, size_t len)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)h[i] << 8 | h[i + 1];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* The same frame etran.bench.frames.udp_frame builds: DF, TTL 64, UDP checksum 0, and the
 * payload of etran.bench.frames.pattern_payload (8-byte big-endian sequence, then a pattern). */
static uint32_t build_frame(uint8_t *f, const struct client_opts *o)
{
	uint32_t udp_len = UDP_HLEN + o->payload, total = IP_HLEN + udp_len;
	uint8_t *ip = f + ETH_HLEN, *udp = ip + IP_HLEN, *p = udp + UDP_HLEN;
	uint16_t c;

	memcpy(f, o->dst_mac, 6);
	memcpy(f + 6, o->src_mac, 6);
	f[12] = 0x08;
	f[13] = 0x00;
	memset(ip, 0, IP_HLEN);
	ip[0] = 0x45;
	ip[2] = total >> 8;
	ip[3] = total & 0xff;
	ip[6] = 0x40; /* DF */
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, &o->src_ip, 4);
	memcpy(ip + 16, &o->dst_ip, 4);
	c = ip_checksum(ip, IP_HLEN);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	udp[0] = o->sport >> 8;
	udp[1] = o->sport & 0xff;
	udp[2] = o->dport >> 8;
	udp[3] = o->dport & 0xff;
	udp[4] = udp_len >> 8;
	udp[5] = udp_len & 0xff;
	udp[6] = udp[7] = 0;
	memset(p, 0, 8);
	for (uint32_t i = 0; i < o->payload - 8; i++)
		p[8 + i] = (uint8_t)((i * 7 + 3) & 0xff);
	return ETH_HLEN + total;
}

static inline void put_seq(uint8_t *p, uint64_t seq)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = seq & 0xff;
		seq >>= 8;
	}
}

static inline uint64_t get_seq(const uint8_t *p)
{
	uint64_t s = 0;

	for (int i = 0; i < 8; i++)
		s = s << 8 | p[i];
	return s;
}

static int run_client(struct xsk *x, const struct client_opts *o)
{
	uint8_t frame[1600];
	uint32_t flen = build_frame(frame, o);
	uint64_t total = o->warmup + o->count, measured = 0, lost = 0, corrupt = 0, i;
	uint64_t *samples = malloc((o->count ? o->count : 1) * sizeof(uint64_t));
	uint64_t timeout_ns = (uint64_t)(o->rtt_timeout * 1e9), started, deadline;
	uint64_t step = o->count / 50 > 100 ? o->count / 50 : 100, next_progress = step;
	struct xdp_desc *rxd = x->rx.desc, *txd = x->tx.desc;
	uint64_t *fill = x->fill.desc;
	int truncated = 0, interrupted = 0;
	struct usage since;

	if (!samples)
		die("out of memory for %" PRIu64 " samples", o->count);
	emit("READY");
	since = usage_now();
	started = now_ns();
	deadline = started + (uint64_t)(o->time_limit * 1e9);
	for (i = 0; i < total; i++) {
		uint64_t addr, t0, t1;
		int ok = 0;

		if (stop_requested) {
			interrupted = 1;
			break;
		}
		if (!x->nfree)
			complete(x, 0);
		if (!x->nfree || !prod_free(&x->tx))
			die("no free UMEM frame or TX slot for round trip %" PRIu64, i);
		addr = x->free_tx[--x->nfree];
		memcpy(x->umem + addr, frame, flen);
		put_seq(x->umem + addr + PAYLOAD_OFF, i);
		put_seq(frame + PAYLOAD_OFF, i); /* the expected reply's payload */
		txd[x->tx.local & x->tx.mask] = (struct xdp_desc){.addr = addr, .len = flen, .options = 0};

		t0 = now_ns();
		prod_submit(&x->tx, 1);
		kick_tx(x);
		for (;;) {
			uint32_t n = cons_avail(&x->rx);

			if (n) {
				if (n > BATCH)
					n = BATCH;
				for (uint32_t j = 0; j < n; j++) {
					struct xdp_desc d = rxd[(x->rx.local + j) & x->rx.mask];
					const uint8_t *r = x->umem + d.addr;

					if (d.len == flen && !memcmp(r + PAYLOAD_OFF, frame + PAYLOAD_OFF, flen - PAYLOAD_OFF))
						ok = 1;
					else if (d.len >= PAYLOAD_OFF + 8 && get_seq(r + PAYLOAD_OFF) == i) {
						corrupt++;
						ok = 1;
					} /* else a late reply to a lost request: keep waiting */
					fill[(x->fill.local + j) & x->fill.mask] = chunk(x, d.addr);
				}
				cons_release(&x->rx, n);
				prod_submit(&x->fill, n); /* room: every RX frame came from the fill ring */
				if (ok)
					break;
				continue;
			}
			wakeup_rx(x);
			if (now_ns() - t0 > timeout_ns || stop_requested)
				break;
		}
		t1 = now_ns();
		complete(x, 0);
		if (!ok) {
			if (stop_requested) {
				interrupted = 1;
				break;
			}
			lost++;
		} else if (i >= o->warmup) {
			samples[measured++] = t1 - t0;
			if (measured >= next_progress) {
				next_progress = measured + step;
				emit("PROGRESS %" PRIu64 " %" PRIu64, measured, o->count);
			}
		}
		if (t1 > deadline) {
			truncated = i + 1 < total;
			break;
		}
	}
	printf("RESULT {\"role\":\"client\",\"measured\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"corrupt\":%" PRIu64
	       ",\"truncated\":%s,\"interrupted\":%s,\"elapsed_s\":%.3f,\"frame_len\":%u,",
	       measured, lost, corrupt, truncated ? "true" : "false", interrupted ? "true" : "false",
	       (now_ns() - started) / 1e9, flen);
	print_common(x, since);
	printf(",\"samples\":[");
	for (uint64_t k = 0; k < measured; k++)
		printf(k ? ",%" PRIu64 : "%" PRIu64, samples[k]);
	printf("]}\n");
	fflush(stdout);
	free(samples);
	return 0;
}

/* ---- arguments -------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("usage: xdp_echo --server|--client SOCKET [options]\n"
	      "SOCKET: --ifname IF [--queue Q] (--xskmap-fd N | --xskmap-pin PATH) [--frames N] [--ring N]\n"
	      "     or --xsk-fd N --umem-fd N --frames N --frame-size N --rings RX,TX,FILL,COMP\n"
	      "client: --src-mac M --dst-mac M --src-ip A --dst-ip A --sport P --dport P [--payload 64]\n"
	      "        [--count 20000] [--warmup 1000] [--rtt-timeout 0.2]\n"
	      "both:   [--time-limit 60] [--cpu N]\n",
	      f);
}

static void parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		die("bad MAC address %s", s);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		die("bad %s: %s", what, s);
	return v;
}

static double parse_seconds(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v > 0) || v > 86400)
		die("bad %s: %s (seconds, > 0)", what, s);
	return v;
}

enum {
	O_SERVER = 256, O_CLIENT, O_IFNAME, O_QUEUE, O_MAPFD, O_MAPPIN, O_XSKFD, O_UMEMFD, O_FRAMES, O_FRAMESIZE,
	O_RINGS, O_RING, O_SRCMAC, O_DSTMAC, O_SRCIP, O_DSTIP, O_SPORT, O_DPORT, O_PAYLOAD, O_COUNT, O_WARMUP,
	O_TIMELIMIT, O_RTTTIMEOUT, O_CPU, O_HELP,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"server", no_argument, 0, O_SERVER},       {"client", no_argument, 0, O_CLIENT},
		{"ifname", required_argument, 0, O_IFNAME}, {"queue", required_argument, 0, O_QUEUE},
		{"xskmap-fd", required_argument, 0, O_MAPFD}, {"xskmap-pin", required_argument, 0, O_MAPPIN},
		{"xsk-fd", required_argument, 0, O_XSKFD},  {"umem-fd", required_argument, 0, O_UMEMFD},
		{"frames", required_argument, 0, O_FRAMES}, {"frame-size", required_argument, 0, O_FRAMESIZE},
		{"rings", required_argument, 0, O_RINGS},   {"ring", required_argument, 0, O_RING},
		{"src-mac", required_argument, 0, O_SRCMAC}, {"dst-mac", required_argument, 0, O_DSTMAC},
		{"src-ip", required_argument, 0, O_SRCIP},  {"dst-ip", required_argument, 0, O_DSTIP},
		{"sport", required_argument, 0, O_SPORT},   {"dport", required_argument, 0, O_DPORT},
		{"payload", required_argument, 0, O_PAYLOAD}, {"count", required_argument, 0, O_COUNT},
		{"warmup", required_argument, 0, O_WARMUP}, {"time-limit", required_argument, 0, O_TIMELIMIT},
		{"rtt-timeout", required_argument, 0, O_RTTTIMEOUT}, {"cpu", required_argument, 0, O_CPU},
		{"help", no_argument, 0, O_HELP},           {0, 0, 0, 0},
	};
	struct client_opts o = {.payload = 64, .count = 20000, .warmup = 1000, .time_limit = 60, .rtt_timeout = 0.2};
	int role = 0, map_fd = -1, xsk_fd = -1, umem_fd = -1, cpu = -1, have[6] = {0};
	const char *ifname = NULL, *map_pin = NULL;
	uint32_t queue = 0, frames = 0, frame_size = 0, ring = 1024, rings[4] = {0};
	struct xsk x;
	struct sigaction sa;
	int c;

	/* die with the parent (the Python worker that set up the XDP program or registration) */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (getppid() == 1)
		stop_requested = 1;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_SERVER: role = 's'; break;
		case O_CLIENT: role = 'c'; break;
		case O_IFNAME: ifname = optarg; break;
		case O_QUEUE: queue = (uint32_t)parse_u64(optarg, "--queue"); break;
		case O_MAPFD: map_fd = (int)parse_u64(optarg, "--xskmap-fd"); break;
		case O_MAPPIN: map_pin = optarg; break;
		case O_XSKFD: xsk_fd = (int)parse_u64(optarg, "--xsk-fd"); break;
		case O_UMEMFD: umem_fd = (int)parse_u64(optarg, "--umem-fd"); break;
		case O_FRAMES: frames = (uint32_t)parse_u64(optarg, "--frames"); break;
		case O_FRAMESIZE: frame_size = (uint32_t)parse_u64(optarg, "--frame-size"); break;
		case O_RING: ring = (uint32_t)parse_u64(optarg, "--ring"); break;
		case O_RINGS:
			if (sscanf(optarg, "%u,%u,%u,%u", &rings[0], &rings[1], &rings[2], &rings[3]) != 4)
				die("--rings wants RX,TX,FILL,COMP sizes, got %s", optarg);
			break;
		case O_SRCMAC: parse_mac(optarg, o.src_mac); have[0] = 1; break;
		case O_DSTMAC: parse_mac(optarg, o.dst_mac); have[1] = 1; break;
		case O_SRCIP:
			if (inet_pton(AF_INET, optarg, &o.src_ip) != 1)
				die("bad --src-ip %s", optarg);
			have[2] = 1;
			break;
		case O_DSTIP:
			if (inet_pton(AF_INET, optarg, &o.dst_ip) != 1)
				die("bad --dst-ip %s", optarg);
			have[3] = 1;
			break;
		case O_SPORT: o.sport = (uint16_t)parse_u64(optarg, "--sport"); have[4] = 1; break;
		case O_DPORT: o.dport = (uint16_t)parse_u64(optarg, "--dport"); have[5] = 1; break;
		case O_PAYLOAD: o.payload = (uint32_t)parse_u64(optarg, "--payload"); break;
		case O_COUNT: o.count = parse_u64(optarg, "--count"); break;
		case O_WARMUP: o.warmup = parse_u64(optarg, "--warmup"); break;
		case O_TIMELIMIT: o.time_limit = parse_seconds(optarg, "--time-limit"); break;
		case O_RTTTIMEOUT: o.rtt_timeout = parse_seconds(optarg, "--rtt-timeout"); break;
		case O_CPU: cpu = (int)parse_u64(optarg, "--cpu"); break;
		case O_HELP: usage(stdout); return 0;
		default: usage(stderr); die("bad arguments (see the usage above)");
		}
	}
	if (optind != argc)
		die("unexpected argument %s", argv[optind]);
	if (!role)
		die("give --server or --client");
	if (role == 'c') {
		for (int i = 0; i < 6; i++)
			if (!have[i])
				die("the client needs --src-mac, --dst-mac, --src-ip, --dst-ip, --sport and --dport");
		if (o.payload < 8 || o.payload > 1472)
			die("--payload %u: between 8 and 1472 bytes", o.payload);
		if (!o.count)
			die("--count must be positive");
	}
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("pinning to CPU %d: %s", cpu, strerror(errno));
	}

	memset(&x, 0, sizeof(x));
	if (xsk_fd >= 0) {
		if (ifname || map_fd >= 0 || map_pin)
			die("--xsk-fd adopts a socket: no --ifname, --xskmap-fd or --xskmap-pin with it");
		if (umem_fd < 0 || !frames || !frame_size || !rings[0])
			die("--xsk-fd needs --umem-fd, --frames, --frame-size and --rings");
		check_pow2("--frame-size", frame_size);
		for (int i = 0; i < 4; i++)
			check_pow2("a ring size", rings[i]);
		xsk_adopt(&x, xsk_fd, umem_fd, frames, frame_size, rings);
	} else {
		if (!ifname)
			die("give --ifname (with --xskmap-fd or --xskmap-pin) or --xsk-fd");
		if (map_pin) {
			union bpf_attr attr;

			if (map_fd >= 0)
				die("--xskmap-fd or --xskmap-pin, not both");
			memset(&attr, 0, sizeof(attr));
			attr.pathname = (uint64_t)(uintptr_t)map_pin;
			map_fd = (int)bpf_sys(BPF_OBJ_GET, &attr);
			if (map_fd < 0)
				die("opening the pinned XSKMAP %s: %s", map_pin, strerror(errno));
		}
		if (map_fd < 0)
			die("--ifname needs the XSKMAP of the XDP program on it: --xskmap-fd or --xskmap-pin");
		check_pow2("--ring", ring);
		if (!frames)
			frames = 2 * ring;
		check_pow2("--frames", frames);
		xsk_create(&x, ifname, queue, frames, ring, map_fd);
	}
	if (stop_requested)
		die("stopped before it was ready");
	return role == 's' ? serve(&x, o.time_limit) : run_client(&x, &o);
}
