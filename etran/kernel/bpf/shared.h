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


/* ---- Homa: homa.bpf.c (etran/daemon/homa.py, etran/homa/socket.py) --------------------- */
#include <linux/bpf.h>	/* struct bpf_spin_lock */

enum etran_homa_limits {
	HOMA_MAX_GAPS = 8,		/* holes tracked per incoming message */
	HOMA_SCHED_SLOTS = 64,		/* grantable incoming messages per host (grant table) */
	HOMA_MAX_OVERCOMMIT = 8,	/* at most this many messages granted to at once */
	HOMA_MAX_ACKS = 8,		/* acks a client host keeps per peer before sending an ACK packet */
	HOMA_SIZE_BUCKETS = 48,		/* incoming message-size histogram (for cutoffs) */
	HOMA_MAX_RPCS = 16384,		/* RPCs per host (homa_rpcs) */
	HOMA_ETRAN_NOTIFY = 0xe0,	/* kernel -> application only, never on the wire */
};
#define HOMA_NO_SLOT 0xffffffffU

/* enum homa_rpc_state: HomaModule's values */
enum etran_homa_rpc_state {
	HOMA_RPC_OUTGOING = 5,
	HOMA_RPC_INCOMING = 6,
	HOMA_RPC_IN_SERVICE = 8,
	HOMA_RPC_DEAD = 9,
};

/* homa_rpc.flags */
enum etran_homa_rpc_flags {
	HOMA_RPCF_SCHED = 1,		/* the incoming message is in the grant table */
	HOMA_RPCF_OVERFLOW = 2,		/* needs grants but the table was full */
	HOMA_RPCF_SENT_ANY = 4,		/* a packet of the outgoing message went out */
	HOMA_RPCF_IN_STARTED = 8,	/* the incoming message exists */
};

/* NOTIFY codes (homa_common_hdr.sequence of a HOMA_ETRAN_NOTIFY frame) */
enum etran_homa_notify {
	HOMA_NOTIFY_ABORTED = 1,	/* client RPC failed; the errno is in urgent */
	HOMA_NOTIFY_FREED = 2,		/* server RPC gone (acked or timed out): drop its response */
};

/* homa_ctl commands (BPF_PROG_RUN by the daemon) */
enum etran_homa_ctl_op {
	HOMA_CTL_ABORT = 1,		/* client RPC: delete, tell the application (errno in arg) */
	HOMA_CTL_FREE = 2,		/* server RPC: delete, tell the application */
	HOMA_CTL_REAP = 3,		/* delete a DEAD server RPC */
	HOMA_CTL_DROP = 4,		/* delete silently (the application is gone) */
	HOMA_CTL_KICK = 5,		/* run the grant scheduler (a safety net) */
	HOMA_CTL_CLEAR_SCHED = 6,	/* empty the grant table */
};

/* Homa's per-CPU counters: homa_stats[0].c[...] */
enum etran_homa_counter {
	HOMA_C_RX_DATA, HOMA_C_RX_GRANT, HOMA_C_RX_RESEND, HOMA_C_RX_UNKNOWN, HOMA_C_RX_BUSY,
	HOMA_C_RX_CUTOFFS, HOMA_C_RX_NEED_ACK, HOMA_C_RX_ACK, HOMA_C_RX_FREEZE,
	HOMA_C_RX_MALFORMED, HOMA_C_RX_BAD_TYPE, HOMA_C_RX_NO_PORT, HOMA_C_RX_NO_RPC, HOMA_C_RX_DUP,
	HOMA_C_RX_QUOTA, HOMA_C_RX_NOT_OWNER, HOMA_C_RX_GAP_OVERFLOW, HOMA_C_RX_STALE_GRANT,
	HOMA_C_RX_DELIVERED,
	HOMA_C_CLIENT_RPCS, HOMA_C_SERVER_RPCS, HOMA_C_CLIENT_DONE, HOMA_C_SERVER_ACKED,
	HOMA_C_ABORTED, HOMA_C_FREED, HOMA_C_REAPED,
	HOMA_C_TX_DATA, HOMA_C_TX_WINDOW, HOMA_C_TX_NOT_OWNER, HOMA_C_TX_MALFORMED, HOMA_C_TX_QUOTA,
	HOMA_C_TX_BAD_ID, HOMA_C_TX_ACK_PIGGYBACK,
	HOMA_C_GRANTS, HOMA_C_FIFO_GRANTS, HOMA_C_SCHED_OVERFLOW, HOMA_C_RESEND_BUSY,
	HOMA_C_RESEND_FWD, HOMA_C_UNKNOWN_SENT, HOMA_C_ACKS_SENT, HOMA_C_CUTOFFS_SENT,
	HOMA_C_NOTIFY, HOMA_C_GEN_FAIL, HOMA_C_GEN_BUILT, HOMA_C_TX_STALE,
	HOMA_C_NR = 64,
};

struct homa_rpc_key {
	__u64 id;		/* this host's id for the RPC (client even, server odd) */
	__u32 peer;		/* the other host's IPv4 address, network byte order */
	__u16 lport;		/* this host's port, network byte order */
	__u16 pad;
};

struct homa_gap {
	__u32 start;
	__u32 end;
};

/* homa_rpcs[key]: one RPC as the data path sees it */
struct homa_rpc {
	__u32 slot;		/* the owning application */
	__u8 state;		/* enum etran_homa_rpc_state */
	__u8 flags;		/* enum etran_homa_rpc_flags */
	__u16 pport;		/* the peer's port, network byte order */
	__u64 created_ns;	/* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 heard_ns;		/* last packet that showed the peer alive */
	__u64 done_ns;		/* outgoing message fully sent / DEAD since */
	/* the outgoing message (request of a client, response of a server) */
	__u32 out_length;
	__u32 out_granted;	/* packets starting below this may go */
	__u32 out_sent;		/* one past the highest byte sent */
	__u32 out_unsched;	/* bytes below this go at the unscheduled priority */
	__u8 out_unsched_prio;
	__u8 out_sched_prio;	/* from the latest GRANT */
	__u16 pad0;
	/* the incoming message */
	__u32 in_length;
	__u32 in_recv_end;	/* one past the highest byte received */
	__u32 in_remaining;
	__u32 in_granted;	/* the sender may send every byte below this */
	__u8 in_prio;		/* priority of our latest GRANT */
	__u8 n_gaps;
	__u16 pad1;
	__u64 in_birth;
	struct homa_gap gaps[HOMA_MAX_GAPS];
};

struct homa_ack_entry {
	__u64 client_id;
	__u16 server_port;	/* network byte order */
	__u16 pad[3];
};

/* homa_peers[address]: what a client or server host knows about another host */
struct homa_peer {
	struct bpf_spin_lock lock;
	__u16 cutoff_version;	/* of the cutoffs it sent us (0: none yet) */
	__u8 has_cutoffs;
	__u8 n_acks;
	__u32 cutoffs[8];	/* its unscheduled cutoffs: the priority to use when sending to it */
	__u64 cutoffs_sent_ns;	/* when we last sent it ours */
	struct homa_ack_entry acks[HOMA_MAX_ACKS];	/* acks we owe it (our completed client RPCs) */
};

/* homa_cfg[0], written by the daemon (every Homa parameter the data path uses) */
struct homa_config {
	__u32 rtt_bytes;
	__u32 unsched_bytes;		/* rounded up to whole packets */
	__u32 max_overcommit;		/* <= HOMA_MAX_OVERCOMMIT */
	__u32 max_incoming;
	__u32 grant_nonfifo;		/* SRPT bytes between FIFO grants (0: off) */
	__u32 fifo_grant_increment;
	__u32 max_sched_prio;
	__u32 max_seg;			/* message bytes per DATA packet (1424 at MTU 1500) */
	__u32 max_message_length;
	__u16 cutoff_version;		/* of our own cutoffs */
	__u8 ctrl_prio;			/* priority level of control packets */
	__u8 flags;
	__u32 unsched_cutoffs[8];	/* ours: what peers should use (CUTOFFS) */
	__u32 default_cutoffs[8];	/* used for a peer until its CUTOFFS arrives */
	__u8 priority_map[8];		/* level -> DSCP high 3 bits */
	__u64 cutoffs_min_interval_ns;
	__u32 grant_increment;		/* grant only this many new bytes at a time (or the rest) */
	__u32 pad;
};

struct homa_sched_entry {
	struct homa_rpc_key key;
	__u32 length;
	__u32 granted;
	__u32 received;
	__u32 rank;		/* in the active set at the last schedule (< max_overcommit), else 0xff */
	__u64 birth;
};

/* homa_sched_map[0]: the receiver's grant table, sorted by (ungranted bytes, birth).
 * `busy` is a try-lock (cmpxchg): whoever finds it taken queues its change in homa_sched_q
 * and the holder applies it before letting go. */
struct homa_sched {
	__u32 busy;
	__u32 n;
	__s64 nonfifo_left;
	__u64 births;
	__u64 total_incoming;	/* granted - received over the table, at the last schedule */
	struct homa_sched_entry e[HOMA_SCHED_SLOTS];
};

/* homa_apps[slot]: client RPC ids this application may use, [id_lo, id_hi) */
struct homa_app {
	__u64 id_lo;
	__u64 id_hi;
};

struct homa_stats {
	__u64 c[HOMA_C_NR];
};

/* one command for homa_ctl (BPF_PROG_RUN: an Ethernet header's worth of padding, then this) */
struct homa_ctl_cmd {
	__u32 op;		/* enum etran_homa_ctl_op */
	__u32 arg;		/* HOMA_CTL_ABORT: errno */
	struct homa_rpc_key key;
};

/* what the published slot of an outgoing RPC holds: pub[(id >> 1) % ETRAN_PUB_SLOTS].w */
enum etran_homa_pub {
	HOMA_PUB_ID = 0,	/* the RPC's id (the slot is shared by ids equal modulo 2048) */
	HOMA_PUB_GRANTED = 1,	/* out_granted */
	HOMA_PUB_PRIO = 2,	/* out_sched_prio */
	HOMA_PUB_LENGTH = 3,	/* out_length */
};

struct etran_homa_btf_anchor {
	enum etran_homa_limits limits;
	enum etran_homa_rpc_state state;
	enum etran_homa_rpc_flags flags;
	enum etran_homa_notify notify;
	enum etran_homa_ctl_op ctl;
	enum etran_homa_counter counter;
	enum etran_homa_pub pub;
	struct homa_ctl_cmd cmd;	/* only reached through a cast in homa_ctl */
};

/* ---- TCP: tcp.bpf.c (etran/daemon/tcp.py, etran/tcp/socket.py) ------------------------- */
enum etran_tcp_limits {
	TCP_MAX_FLOWS = 16384,		/* connections per host (tcp_flows) */
	TCP_EVENT_QUEUE = 16384,	/* flow keys for the daemon (rounds, delayed ACKs) */
	TCP_DUPTHRESH = 3,
};

/* tcp_flow.state (the data path's view; the daemon's TcpConnection has the full one) */
enum etran_tcp_state {
	TCP_S_SYN_SENT = 1,		/* every packet goes to the daemon */
	TCP_S_SYN_RCVD = 2,		/* the ACK of our SYN-ACK makes it ESTABLISHED in the kernel */
	TCP_S_ESTABLISHED = 3,		/* FINs are flags: close is a byte-stream matter */
	TCP_S_TIME_WAIT = 4,
	TCP_S_CLOSED = 5,
};

/* tcp_flow.flags */
enum etran_tcp_flags {
	TCP_F_TS = 1,			/* timestamps negotiated */
	TCP_F_SACK = 2,
	TCP_F_ECN = 4,
	TCP_F_DCTCP_ECHO = 8,		/* echo CE per segment (RFC 8257), else latch ECE until CWR */
	TCP_F_FIN_SENT = 16,		/* our FIN is at fin_seq */
	TCP_F_FIN_ACKED = 32,
	TCP_F_FIN_RCVD = 64,		/* the peer's FIN was consumed in order */
	TCP_F_RESET = 128,		/* the peer reset the connection */
	TCP_F_CE = 256,			/* CE state of the last data segment (DCTCP echo) */
	TCP_F_ECE_LATCH = 512,		/* classic echo: ECE until the sender's CWR */
	TCP_F_CWR = 1024,		/* set CWR on the next new data segment */
	TCP_F_RECOVERY = 2048,		/* fast recovery until snd_una >= recovery_point */
	TCP_F_LOSS = 4096,		/* RTO recovery (go-back-N) until snd_una >= recovery_point */
	TCP_F_OOO = 8192,		/* [ooo_lo, ooo_hi) holds out-of-order data */
	TCP_F_PASSIVE_CLOSE = 16384,	/* the peer's FIN came before ours */
	TCP_F_ORPHAN = 32768,		/* the application is gone; the kernel finishes the close */
	TCP_F_OOO2 = 65536,		/* [ooo2_lo, ooo2_hi) holds out-of-order data too */
};

/* gen_desc.kind for TCP (gen_desc.id = the flow key as a __u64) */
enum etran_tcp_gen {
	TCP_GEN_ACK = 1,		/* an ACK from the flow's current state, if one is still owed */
	TCP_GEN_ACK_FIXED = 2,		/* arg0 = ack number, arg1 = ECE (DCTCP: CE state changed) */
	TCP_GEN_ACK_NOW = 3,		/* a duplicate or challenge ACK: always sent */
};

/* tcp_ctl commands (BPF_PROG_RUN by the daemon) */
enum etran_tcp_ctl_op {
	TCP_CTL_PUBLISH = 1,		/* copy the flow into its published slot */
	TCP_CTL_SET_CWND = 2,		/* cwnd = arg; arg64 & 1: set CWR on the next data; arg64 >> 32: pacing rate (bytes/s), 0 keeps it */
	TCP_CTL_RTO = 3,		/* retransmission timeout: cwnd = arg, go back to snd_una */
	TCP_CTL_STATE = 4,		/* state = arg; arg64: flags to set */
	TCP_CTL_CLEAR_PUB = 5,		/* zero published slot arg of application arg64 */
	TCP_CTL_PROBE = 6,		/* no progress for a while (a lost ACK or tail): resend from snd_una, cwnd kept */
};

/* what a flow's published slot holds: pub[tcp_flow.pub].w */
enum etran_tcp_pub {
	TCP_PUB_TAG = 0,		/* the flow's tag: tells the library the slot is this flow's */
	TCP_PUB_STATE = 1,		/* state | flags << 32 */
	TCP_PUB_SND = 2,		/* snd_una | snd_nxt << 32 */
	TCP_PUB_LIMIT = 3,		/* snd_una + min(cwnd, snd_wnd) | rcv_nxt << 32 */
	TCP_PUB_RTX = 4,		/* rtx_epoch | rtx_seq << 32: retransmit from rtx_seq */
	TCP_PUB_WINDOWS = 5,		/* cwnd | snd_wnd << 32 */
	TCP_PUB_RECOVERY = 6,		/* recovery_point | rtt_us << 32 */
	TCP_PUB_FIN = 7,		/* fin_seq | pace_rate << 32 */
};

/* tcp_flows key: the connection as this host sees it (network byte order) */
struct tcp_flow_key {
	__u32 raddr;
	__u16 rport;
	__u16 lport;
};

/* tcp_flows value. Sequence numbers are wire values (32 bits, compared modulo 2^32).
 * Writers: ingress (receive side, snd_una and the ACK counters), egress (snd_nxt, RTT timing),
 * the daemon through tcp_ctl (cwnd, state, retransmission requests); flags change atomically. */
struct tcp_flow {
	__u32 slot;		/* the owning application */
	__u32 pub;		/* index of its published slot */
	__u64 tag;
	__u32 state;		/* enum etran_tcp_state */
	__u32 flags;		/* enum etran_tcp_flags */
	__u32 iss;
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 snd_wnd;		/* bytes (scaled) */
	__u32 snd_wl1;
	__u32 snd_wl2;
	__u32 cwnd;		/* bytes, set by the daemon's congestion control */
	__u32 fin_seq;
	__u32 recovery_point;
	__u32 rtx_epoch;
	__u32 rtx_seq;
	__u32 round_end;	/* a round (for congestion control) ends when snd_una passes this */
	__u32 rtt_seq;		/* timing the segment ending here (0: not timing) */
	__u32 dupacks;
	__u32 irs;
	__u32 rcv_nxt;
	__u32 rcv_wnd;		/* bytes we advertise beyond rcv_nxt */
	__u32 ooo_lo;		/* one out-of-order interval */
	__u32 ooo_hi;
	__u32 last_ack_sent;
	__u32 ts_recent;
	__u32 ts_offset;	/* TSval = ms clock + ts_offset */
	__u16 mss;		/* payload of a full segment */
	__u8 snd_wscale;
	__u8 rcv_wscale;
	__u32 ack_segs;		/* in-order segments since our last ACK */
	__u32 ack_queued;	/* an ACK descriptor is in gen_queue */
	__u32 delack_queued;	/* the key is in tcp_delack_q: delack_clock() of the oldest owed segment */
	__u32 rcv_edge;		/* right edge of our window: what the application can take (never moves left) */
	__u32 rcv_adv;		/* right edge we advertised (rounded up to the scale; never shrinks) */
	__u32 ooo2_lo;		/* a second out-of-order interval (TCP_F_OOO2), above the first */
	__u32 ooo2_hi;
	__u32 sacked;		/* bytes above snd_una the latest ACK's SACK blocks cover (not in the pipe) */
	__u64 rtt_start_ns;
	__u64 last_progress_ns;	/* snd_una advanced (or the daemon's RTO) */
	__u64 rtt_us;		/* latest RTT sample */
	__u64 rtt_samples;
	__u64 acked_bytes;	/* counters the daemon's congestion control reads */
	__u64 ecn_bytes;	/* acked by ACKs with ECE */
	__u64 loss_events;
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 retrans_bytes;
	__u64 ce_bytes;		/* received with CE */
	__u64 window_drops;	/* frames the egress hook refused */
	__u64 grace_until_ns;	/* after a cwnd cut, until then ... */
	__u32 grace_limit;	/* ... new data up to the limit before the cut still goes (the library
				 * could not have seen the cut when it queued those frames) */
	__u32 pace_rate;	/* bytes/s the congestion control allows (0: not known yet, cwnd per ms) */
	__u64 pace_last_ns;	/* pacing token bucket: last refill */
	__u64 pace_drops;	/* data frames (new or retransmitted) the hook refused for the rate */
	__u32 pace_tokens;	/* bytes the bucket holds (at most max(cwnd, TCP_PACE_MIN_BURST MSS)) */
	__u32 pad2;
};

/* one command for tcp_ctl (BPF_PROG_RUN: an Ethernet header's worth of padding, then this) */
struct tcp_ctl_cmd {
	__u32 op;		/* enum etran_tcp_ctl_op */
	__u32 arg;
	struct tcp_flow_key key;
	__u64 arg64;
};

struct etran_tcp_btf_anchor {
	enum etran_tcp_limits limits;
	enum etran_tcp_state state;
	enum etran_tcp_flags flags;
	enum etran_tcp_gen gen;
	enum etran_tcp_ctl_op ctl;
	enum etran_tcp_pub pub;
	struct tcp_ctl_cmd cmd;
};

#endif /* ETRAN_SHARED_H */
