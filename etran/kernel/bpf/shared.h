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

#endif /* ETRAN_SHARED_H */
