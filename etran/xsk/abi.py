"""The AF_XDP kernel ABI (include/uapi/linux/if_xdp.h) as Python constants and structs.

Only what etran.xsk uses.  Layouts are the ones of Linux >= 6.8; every struct here is
accepted by older kernels too (the kernel reads the prefix it knows, see comments).
"""

from __future__ import annotations

import struct

AF_XDP = 44
SOL_XDP = 283

# sockaddr_xdp.sxdp_flags
XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_USE_NEED_WAKEUP = 1 << 3
XDP_USE_SG = 1 << 4

# xdp_umem_reg.flags
XDP_UMEM_UNALIGNED_CHUNK_FLAG = 1 << 0

# ring->flags
XDP_RING_NEED_WAKEUP = 1 << 0

# socket options (level SOL_XDP)
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_OPTIONS = 8
XDP_MAX_TX_SKB_BUDGET = 9  # Linux >= 6.17: descriptors copy-mode TX handles per sendto()

XDP_OPTIONS_ZEROCOPY = 1 << 0

# mmap page offsets of the four rings
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

# The kernel always leaves this much room before a received frame (XDP_PACKET_HEADROOM);
# the UMEM's own headroom comes on top of it.
XDP_PACKET_HEADROOM = 256

# Aligned-mode chunk sizes the kernel accepts: a power of two in [2048, PAGE_SIZE].
MIN_CHUNK_SIZE = 2048

# struct xdp_umem_reg {u64 addr; u64 len; u32 chunk_size; u32 headroom; u32 flags;
# u32 tx_metadata_len;}: 32 bytes.  Kernels before 6.8 have the same size (the last four
# bytes are padding there), and a kernel given fewer than 32 bytes silently ignores
# `flags`, so always pass all 32 with zeroed padding.
UMEM_REG = struct.Struct("=QQIIII")

# struct sockaddr_xdp {u16 family; u16 flags; u32 ifindex; u32 queue_id; u32 shared_umem_fd;}
SOCKADDR_XDP = struct.Struct("=HHIII")

# struct xdp_mmap_offsets: four struct xdp_ring_offset {u64 producer, consumer, desc, flags}
# in the order rx, tx, fill, completion.
MMAP_OFFSETS = struct.Struct("=" + "QQQQ" * 4)

# struct xdp_statistics: six u64 (Linux >= 5.9; earlier kernels fill only the first three).
STATISTICS = struct.Struct("=QQQQQQ")
STATISTICS_FIELDS = (
    "rx_dropped",
    "rx_invalid_descs",
    "tx_invalid_descs",
    "rx_ring_full",
    "rx_fill_ring_empty_descs",
    "tx_ring_empty_descs",
)

# struct xdp_options {u32 flags;}
OPTIONS = struct.Struct("=I")

# struct xdp_desc {u64 addr; u32 len; u32 options;}
XDP_DESC_SIZE = 16
# fill and completion rings hold bare u64 addresses
ADDR_SIZE = 8
