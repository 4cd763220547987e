/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Homa's wire format, for the eBPF data path: the layout of the current Linux HomaModule
 * (PlatformLab/HomaModule homa_wire.h), written from that header's field list.
 *
 * IP protocol 146. Every packet starts with struct homa_common_hdr, laid out like a TCP
 * header; the packet type is the low byte of TCP's ack field. All fields are big-endian
 * and every struct is packed. One segment per DATA packet: seg.offset (and
 * common.sequence) is the offset of the packet's first message byte.
 *
 * Python mirror: etran/homa/wire.py. tests/test_homa_wire.py compiles this header and
 * checks every struct's size and member offsets (BTF) against HomaModule's numbers. */
#ifndef ETRAN_HOMA_WIRE_H
#define ETRAN_HOMA_WIRE_H

#include <linux/types.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define HOMA_IPPROTO 146

/* enum homa_packet_type (prefixed: DATA/ACK are too generic for a shared header) */
enum homa_packet_type {
	HOMA_PKT_DATA = 0x10,
	HOMA_PKT_GRANT = 0x11,
	HOMA_PKT_RESEND = 0x12,
	HOMA_PKT_RPC_UNKNOWN = 0x13,
	HOMA_PKT_BUSY = 0x14,
	HOMA_PKT_CUTOFFS = 0x15,
	HOMA_PKT_FREEZE = 0x16,
	HOMA_PKT_NEED_ACK = 0x17,
	HOMA_PKT_ACK = 0x18,
	HOMA_PKT_MAX_OP = 0x18,
};

#define HOMA_MAX_PRIORITIES 8
#define HOMA_MAX_ACKS_PER_PKT 5
#define HOMA_MAX_HEADER 90
#define HOMA_MIN_PKT_LENGTH 26
#define HOMA_MAX_MESSAGE_LENGTH 1000000
#define HOMA_MIN_DEFAULT_PORT 0x8000	/* client ports are >= this */
#define HOMA_TCP_FLAGS 6		/* only with TCP hijacking, which we do not use */
#define HOMA_TCP_URGENT 0xb97d		/* only with TCP hijacking, which we do not use */
#define HOMA_RESEND_ALL 0xffffffffU	/* resend length: nothing arrived, resend all sent */

struct homa_common_hdr {
	__be16 sport;
	__be16 dport;
	__be32 sequence;	/* DATA: offset of the first byte (same as seg.offset) */
	__u8 ack[3];		/* high bytes of TCP's ack field; unused */
	__u8 type;		/* enum homa_packet_type */
	__u8 doff;		/* high nibble: header words (DATA 13, others 5) */
	__u8 flags;		/* unused (HOMA_TCP_FLAGS only when hijacking TCP) */
	__be16 window;		/* unused */
	__be16 checksum;	/* unused */
	__be16 urgent;		/* unused (HOMA_TCP_URGENT only when hijacking TCP) */
	__be64 sender_id;	/* RPC id on the sender; low bit set: sender is the server */
} __attribute__((packed));

/* An RPC the server may forget: the client has its whole response. client_id 0: none. */
struct homa_ack {
	__be64 client_id;
	__be16 server_port;
} __attribute__((packed));

struct homa_seg_hdr {
	__be32 offset;		/* offset in the message of this segment's first byte */
} __attribute__((packed));

struct homa_data_hdr {
	struct homa_common_hdr common;
	__be32 message_length;	/* total bytes in the message */
	__be32 incoming;	/* the sender will send at least up to here without more grants */
	struct homa_ack ack;	/* piggybacked ack, if ack.client_id != 0 */
	__be16 cutoff_version;	/* version of the newest CUTOFFS from the receiver, 0: none */
	__u8 retransmit;	/* 1: sent in response to a RESEND */
	__u8 pad[3];
	struct homa_seg_hdr seg;
} __attribute__((packed));

struct homa_grant_hdr {
	struct homa_common_hdr common;
	__be32 offset;		/* the sender may now send every byte before this offset */
	__u8 priority;		/* priority for the message's scheduled packets */
} __attribute__((packed));

struct homa_resend_hdr {
	struct homa_common_hdr common;
	__be32 offset;		/* first byte to retransmit */
	__be32 length;		/* bytes to retransmit; HOMA_RESEND_ALL: everything sent so far */
	__u8 priority;		/* priority for the retransmitted packets */
} __attribute__((packed));

struct homa_rpc_unknown_hdr {
	struct homa_common_hdr common;
} __attribute__((packed));

struct homa_busy_hdr {
	struct homa_common_hdr common;
} __attribute__((packed));

struct homa_cutoffs_hdr {
	struct homa_common_hdr common;
	__be32 unsched_cutoffs[HOMA_MAX_PRIORITIES];	/* entry i: largest length using priority i */
	__be16 cutoff_version;
} __attribute__((packed));

struct homa_freeze_hdr {
	struct homa_common_hdr common;
} __attribute__((packed));

struct homa_need_ack_hdr {
	struct homa_common_hdr common;
} __attribute__((packed));

struct homa_ack_hdr {
	struct homa_common_hdr common;
	__be16 num_acks;	/* valid leading entries of acks */
	struct homa_ack acks[HOMA_MAX_ACKS_PER_PKT];
} __attribute__((packed));

_Static_assert(sizeof(struct homa_common_hdr) == 28, "homa_common_hdr is 28 bytes");
_Static_assert(sizeof(struct homa_ack) == 10, "homa_ack is 10 bytes");
_Static_assert(sizeof(struct homa_seg_hdr) == 4, "homa_seg_hdr is 4 bytes");
_Static_assert(sizeof(struct homa_data_hdr) == 56, "homa_data_hdr is 56 bytes");
_Static_assert(sizeof(struct homa_grant_hdr) == 33, "homa_grant_hdr is 33 bytes");
_Static_assert(sizeof(struct homa_resend_hdr) == 37, "homa_resend_hdr is 37 bytes");
_Static_assert(sizeof(struct homa_cutoffs_hdr) == 62, "homa_cutoffs_hdr is 62 bytes");
_Static_assert(sizeof(struct homa_ack_hdr) == 80, "homa_ack_hdr is 80 bytes");
_Static_assert(sizeof(struct homa_ack_hdr) <= HOMA_MAX_HEADER, "largest header fits HOMA_MAX_HEADER");

/* doff of DATA packets: the header bytes before the segment header, in 32-bit words */
#define HOMA_DATA_DOFF ((__u8)(((sizeof(struct homa_data_hdr) - sizeof(struct homa_seg_hdr)) >> 2) << 4))
#define HOMA_CONTROL_DOFF ((__u8)(5 << 4))

/* Message bytes in one full DATA packet over IPv4 with the given MTU (1500 -> 1424). */
#define HOMA_MAX_DATA_PAYLOAD(mtu) ((mtu) - 20 - (int)sizeof(struct homa_data_hdr))

/* IPv4 TOS / IPv6 traffic class for a priority level: the level in DSCP's high 3 bits. */
static __always_inline __u8 homa_priority_tos(__u8 priority)
{
	return (__u8)((priority & 0x7) << 5);
}

static __always_inline __u8 homa_tos_priority(__u8 tos)
{
	return tos >> 5;
}

/* Client ids are even; the server's id for an RPC is the client's with bit 0 set. */
static __always_inline int homa_is_client(__u64 id)
{
	return (id & 1) == 0;
}

/* homa_local_id(): the id this host uses for the RPC named by a packet's sender_id. */
static __always_inline __u64 homa_local_id(__be64 sender_id)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return __builtin_bswap64(sender_id) ^ 1;
#else
	return sender_id ^ 1;
#endif
}

#endif /* ETRAN_HOMA_WIRE_H */
