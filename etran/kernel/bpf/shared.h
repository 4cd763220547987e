/* SPDX-License-Identifier: GPL-2.0 */
/* Structs shared between the eBPF programs and Python. The Python mirror is
 * etran/kernel/structs.py; tests/test_structs.py checks both agree through BTF.
 * Fixed-width types and explicit padding only. */
#ifndef ETRAN_SHARED_H
#define ETRAN_SHARED_H

#include <linux/types.h>

/* counter.bpf.c: packets seen by a program */
struct pkt_counter {
	__u64 packets;
	__u64 bytes;
};

/* switch.bpf.c: the test bed's switch egress ports (ECN marker and fault injector).
 * Maps are keyed by the port's ifindex in the switch namespace. */
#define SWITCH_PROB_ALWAYS 0xffffffffU	/* probabilities are fractions of 2^32 */
#define SWITCH_CLONE_MARK 0x45545243U	/* skb->mark of our own clones ("ETRC") */
#define SWITCH_HOLD_MAX 1520		/* reorder buffer: one frame of at most 1514 bytes */

struct switch_port_config {
	__u64 rate_kbps;	/* phantom queue drain rate, kbit/s; 0: no phantom queue */
	__u32 ecn_threshold;	/* set CE on ECT packets when the phantom queue exceeds this (bytes); 0: off */
	__u32 loss;		/* drop */
	__u32 duplicate;	/* send twice */
	__u32 reorder;		/* hold back and send after the next packet */
	__u32 corrupt;		/* flip one bit after the IPv4 header */
	__u32 pad;
};

struct switch_port_stats {
	__u64 packets;		/* seen by the program (clones not counted) */
	__u64 bytes;
	__u64 dropped;		/* injected loss */
	__u64 duplicated;
	__u64 reordered;	/* held back and swapped with the next packet */
	__u64 corrupted;
	__u64 ce_marked;
	__u64 queue_bytes;	/* phantom queue backlog after the last packet */
	__u64 queue_time_ns;	/* bpf_ktime_get_ns() of that packet (CLOCK_MONOTONIC) */
	__u64 queue_max;	/* largest phantom backlog seen */
	__u64 errors;		/* helper failures (a held packet lost, a failed clone) */
};

/* ---- the core: core.bpf.c, and every transport and policy object (see core.h) ---------- */
enum etran_limits {
	ETRAN_MAX_APPS = 64,		/* tenant-port slots; slot 0 is the daemon's slow path */
	ETRAN_NIC_SLOT = 64,		/* tx_ports[ETRAN_NIC_SLOT] is the NIC */
	ETRAN_MAX_POLICIES = 8,		/* policy programs per direction; chain slot 8 continues */
	ETRAN_PUB_SLOTS = 1024,		/* published-state slots per application */
	ETRAN_GEN_QUEUE = 8192,		/* pending generated packets per host */
	ETRAN_BLANK_ETHERTYPE = 0x88b5,	/* a blank frame for the generation program (IEEE local experimental) */
	ETRAN_BLANK_MIN = 128,		/* the library's blank frames are at least this long */
	ETRAN_MAX_FRAME = 1514,		/* Ethernet header + 1500 MTU */
};

/* Why the kernel dropped a frame; app_stats.drops[] is indexed by these. */
enum etran_drop_reason {
	ETRAN_DROP_MALFORMED = 0,	/* truncated or invalid headers, bad lengths */
	ETRAN_DROP_OVERSIZE = 1,	/* larger than the MTU */
	ETRAN_DROP_SPOOF_MAC = 2,	/* source or destination MAC not the kernel's */
	ETRAN_DROP_SPOOF_IP = 3,	/* source address not this host's */
	ETRAN_DROP_NOT_OWNER = 4,	/* port, flow or RPC owned by another application (or nobody) */
	ETRAN_DROP_NO_ROUTE = 5,	/* no neighbour for the destination */
	ETRAN_DROP_ACL = 6,		/* denied by the ACL policy */
	ETRAN_DROP_RATE = 7,		/* over a rate limit */
	ETRAN_DROP_WINDOW = 8,		/* beyond the window, cwnd or grants */
	ETRAN_DROP_QUOTA = 9,		/* over the application's flow/RPC quota */
	ETRAN_DROP_NO_TRANSPORT = 10,	/* IP protocol with no etran transport */
	ETRAN_DROP_NO_APP = 11,		/* frame on a port no application owns */
	ETRAN_DROP_GEN_EMPTY = 12,	/* blank frame with nothing pending (normal, not an attack) */
	ETRAN_DROP_INTERNAL = 13,	/* a map or helper failed */
	ETRAN_DROP_NR = 16,
};

enum etran_dir {
	ETRAN_DIR_IN = 0,
	ETRAN_DIR_OUT = 1,
};

/* host_cfg[0], written by the daemon at start */
struct host_config {
	__u32 ip;		/* network byte order */
	__u32 nic_ifindex;
	__u8 mac[6];
	__u16 mtu;
	__u32 flags;
	__u32 pad;
};

/* neigh[ipv4 address] */
struct neigh_entry {
	__u8 mac[6];
	__u16 pad;
};

/* apps[slot] */
struct app_info {
	__u32 active;
	__u32 hook_ifindex;	/* the tenant port's hook side (egress hook runs here) */
	__u32 app_ifindex;	/* the application side (its AF_XDP socket) */
	__u32 uid;
	__u32 max_flows;	/* quotas, enforced where flows/RPCs are created */
	__u32 max_rpcs;
	__u32 flows;		/* current counts */
	__u32 rpcs;
};

/* app_stats[slot], per CPU */
struct app_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 gen_packets;	/* control packets generated into blank frames or live frames */
	__u64 pad;
	__u64 drops[16];	/* by enum etran_drop_reason */
};

/* ports: (IP protocol, local port) -> owning slot */
struct port_key {
	__u8 proto;
	__u8 pad;
	__u16 port;		/* network byte order */
};

struct port_owner {
	__u32 slot;
	__u32 pad;
};

/* scratch[0], per CPU: what one program in a tail-call chain tells the next */
struct pkt_meta {
	__u32 slot;		/* the application (egress) or the owner once known (ingress) */
	__u32 stage;		/* next policy slot to try */
	__u32 dir;		/* enum etran_dir */
	__u32 proto;
	__u32 l4_off;
	__u32 len;		/* frame length */
	__u32 saddr;		/* network byte order */
	__u32 daddr;
	__u16 sport;		/* network byte order */
	__u16 dport;
	__u32 pad;
};

/* gen_queue entries: a control packet to build when a frame is available */
struct gen_desc {
	__u8 proto;		/* the transport's IP protocol: gen_progs[proto] builds it */
	__u8 kind;		/* transport-defined (ACK, GRANT, RESEND, ...) */
	__u16 flags;
	__u32 slot;		/* the application it concerns */
	__u64 id;		/* transport-defined (flow index, RPC id) */
	__u64 arg0;
	__u64 arg1;
};

/* host_pub[0]: mmapped read-only by every application */
struct host_pub {
	__u64 gen_pending;	/* descriptors in gen_queue: send this many blank frames */
	__u64 gen_pushed;
	__u64 gen_popped;
	__u64 gen_dropped;	/* queue full */
};

/* app_pub[slot] is an mmapable array of these, read-only for that application only.
 * Transports give the words meaning (etran/kernel/structs.py has their views). */
struct pub_slot {
	__u64 w[8];
};

/* ---- policies: policy.bpf.c (traffic management by tail calls) ------------------------- */
enum etran_policy_limits {
	ETRAN_ACL_RULES = 64,
	ETRAN_FLOWS_TRACKED = 16384,
};

/* acl_rules[i]: the first rule in use that matches decides; no match allows */
struct acl_rule {
	__u32 saddr;		/* network byte order, compared under smask */
	__u32 smask;
	__u32 daddr;
	__u32 dmask;
	__u16 sport;		/* network byte order; 0 = any */
	__u16 dport;
	__u8 proto;		/* 0 = any */
	__u8 dirs;		/* bit 0: ingress, bit 1: egress */
	__u8 action;		/* 0 allow, 1 deny */
	__u8 in_use;
};

/* token-bucket limits: rate_app_cfg[slot], rate_flow_cfg[0] (every flow) */
struct rate_cfg {
	__u64 bytes_per_sec;	/* 0 = unlimited */
	__u64 burst;		/* bytes */
};

/* flows are (addresses, ports, protocol) as seen on the wire, plus the direction */
struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

/* Constants live in enums so their values reach BTF, where tests/test_structs.py compares
 * them with the Python mirror; this struct (the value of core.h's btf_anchor map) is what
 * makes clang emit them. */
struct etran_btf_anchor {
	enum etran_limits limits;
	enum etran_drop_reason drop_reason;
	enum etran_dir dir;
	enum etran_policy_limits policy_limits;
};

#endif /* ETRAN_SHARED_H */
