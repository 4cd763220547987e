"""Homa's wire format: the current Linux HomaModule layout (``homa_wire.h``), in Python.

Every Homa packet starts with a 28-byte common header laid out like a TCP header (so a NIC
could segment it with TSO); the packet type sits in the low byte of TCP's ack field. All
multi-byte fields are big-endian and every struct is packed. The C twin of this module is
``etran/kernel/bpf/homa_wire.h``; ``tests/test_homa_wire.py`` checks both against the
numbers in HomaModule's header (and the C side through the BTF clang emits).

    struct homa_common_hdr (28)     sport:2 dport:2 sequence:4 ack[3] type:1 doff:1 flags:1
                                    window:2 checksum:2 urgent:2 sender_id:8
    struct homa_ack (10)            client_id:8 server_port:2
    struct homa_seg_hdr (4)         offset:4
    struct homa_data_hdr (56)       common message_length:4 incoming:4 ack(10) cutoff_version:2
                                    retransmit:1 pad[3] seg(4)
    struct homa_grant_hdr (33)      common offset:4 priority:1
    struct homa_resend_hdr (37)     common offset:4 length:4 priority:1
    struct homa_rpc_unknown_hdr,
    homa_busy_hdr, homa_freeze_hdr,
    homa_need_ack_hdr (28)          common only
    struct homa_cutoffs_hdr (62)    common unsched_cutoffs[8]:4 cutoff_version:2
    struct homa_ack_hdr (80)        common num_acks:2 acks[5](10)

One segment per DATA packet (current HomaModule has no multi-segment DATA outside GSO):
``seg.offset`` and ``common.sequence`` both carry the offset of the packet's first byte.

Hot path: the application library packs one DATA header per packet. Use
:func:`pack_data_into` (one precompiled :class:`struct.Struct` ``pack_into`` into a buffer you
own) and :func:`unpack_data` / :func:`data_offset`; :func:`parse` builds a named tuple per
packet and is meant for the control path and tests.

Not in the format (older HomaModule versions had them): GRANT's ``resend_all`` byte (removed;
the grant header is 33 bytes) and the RESTART type. RESEND ``length`` -1 means "nothing of
the message arrived; resend everything sent so far".
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple, Union

from ..errors import EtranError

# ---- constants (homa_wire.h, homa.h) ------------------------------------------------------

IPPROTO_HOMA = 146


class PacketType(IntEnum):
    """enum homa_packet_type."""

    DATA = 0x10
    GRANT = 0x11
    RESEND = 0x12
    RPC_UNKNOWN = 0x13
    BUSY = 0x14
    CUTOFFS = 0x15
    FREEZE = 0x16
    NEED_ACK = 0x17
    ACK = 0x18


DATA = PacketType.DATA
GRANT = PacketType.GRANT
RESEND = PacketType.RESEND
RPC_UNKNOWN = PacketType.RPC_UNKNOWN
BUSY = PacketType.BUSY
CUTOFFS = PacketType.CUTOFFS
FREEZE = PacketType.FREEZE
NEED_ACK = PacketType.NEED_ACK
ACK = PacketType.ACK
MAX_OP = 0x18

HOMA_MAX_PRIORITIES = 8
HOMA_MAX_ACKS_PER_PKT = 5
HOMA_MAX_HEADER = 90            # bytes in the largest Homa header
HOMA_MIN_PKT_LENGTH = 26        # Homa header + data, excluding IP/Ethernet
HOMA_ETH_FRAME_OVERHEAD = 24    # preamble, SFD, CRC, inter-packet gap
HOMA_ETH_OVERHEAD = 18 + HOMA_ETH_FRAME_OVERHEAD  # plus Ethernet header + VLAN tag
HOMA_MAX_MESSAGE_LENGTH = 1_000_000
HOMA_MIN_DEFAULT_PORT = 0x8000  # ports below are server ports; client ports are >= this
HOMA_TCP_FLAGS = 6              # flags value only used when Homa hijacks TCP (we do not)
HOMA_TCP_URGENT = 0xB97D        # urgent value only used when Homa hijacks TCP (we do not)
IPV4_HEADER_LENGTH = 20
IPV6_HEADER_LENGTH = 40
RESEND_ALL = -1                 # RESEND length: nothing received, resend all sent so far


class HomaWireError(EtranError, ValueError):
    """A byte string is not a well-formed Homa packet (too short, unknown type, ...)."""


# ---- layouts ------------------------------------------------------------------------------

class Layout:
    """A packed big-endian C struct: its members (possibly nested layouts or arrays),
    member offsets, size, and one precompiled :class:`struct.Struct` for the flattened form.

    ``members`` is a list of ``(name, kind)`` where kind is a struct format code for one
    scalar or byte array (``"H"``, ``"3s"``), ``(code, n)`` for an array of n scalars, a
    nested :class:`Layout`, or ``(Layout, n)`` for an array of structs.
    """

    def __init__(self, c_name: str, members: list[tuple[str, object]]) -> None:
        self.c_name = c_name
        self.members = members
        fmt = ""
        self.offsets: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        for name, kind in members:
            self.offsets[name] = struct.calcsize("!" + fmt)
            part = self._fmt(kind)
            self.sizes[name] = struct.calcsize("!" + part)
            fmt += part
        self.format = "!" + fmt
        self.struct = struct.Struct(self.format)
        self.size = self.struct.size

    @staticmethod
    def _fmt(kind: object) -> str:
        if isinstance(kind, Layout):
            return kind.format[1:]
        if isinstance(kind, tuple):
            inner, count = kind
            return (Layout._fmt(inner)) * count if isinstance(inner, Layout) else f"{count}{inner}"
        return str(kind)

    def __repr__(self) -> str:
        return f"<Layout struct {self.c_name} ({self.size} bytes)>"


COMMON_HDR = Layout("homa_common_hdr", [
    ("sport", "H"), ("dport", "H"), ("sequence", "I"), ("ack", "3s"), ("type", "B"),
    ("doff", "B"), ("flags", "B"), ("window", "H"), ("checksum", "H"), ("urgent", "H"),
    ("sender_id", "Q"),
])
HOMA_ACK = Layout("homa_ack", [("client_id", "Q"), ("server_port", "H")])
SEG_HDR = Layout("homa_seg_hdr", [("offset", "I")])
DATA_HDR = Layout("homa_data_hdr", [
    ("common", COMMON_HDR), ("message_length", "I"), ("incoming", "I"), ("ack", HOMA_ACK),
    ("cutoff_version", "H"), ("retransmit", "B"), ("pad", "3s"), ("seg", SEG_HDR),
])
GRANT_HDR = Layout("homa_grant_hdr", [("common", COMMON_HDR), ("offset", "I"), ("priority", "B")])
# length is __be32 in C; packed signed here so that RESEND_ALL (-1) round-trips.
RESEND_HDR = Layout("homa_resend_hdr", [
    ("common", COMMON_HDR), ("offset", "I"), ("length", "i"), ("priority", "B"),
])
RPC_UNKNOWN_HDR = Layout("homa_rpc_unknown_hdr", [("common", COMMON_HDR)])
BUSY_HDR = Layout("homa_busy_hdr", [("common", COMMON_HDR)])
CUTOFFS_HDR = Layout("homa_cutoffs_hdr", [
    ("common", COMMON_HDR), ("unsched_cutoffs", ("I", HOMA_MAX_PRIORITIES)), ("cutoff_version", "H"),
])
FREEZE_HDR = Layout("homa_freeze_hdr", [("common", COMMON_HDR)])
NEED_ACK_HDR = Layout("homa_need_ack_hdr", [("common", COMMON_HDR)])
ACK_HDR = Layout("homa_ack_hdr", [
    ("common", COMMON_HDR), ("num_acks", "H"), ("acks", (HOMA_ACK, HOMA_MAX_ACKS_PER_PKT)),
])

LAYOUTS: dict[str, Layout] = {layout.c_name: layout for layout in (
    COMMON_HDR, HOMA_ACK, SEG_HDR, DATA_HDR, GRANT_HDR, RESEND_HDR, RPC_UNKNOWN_HDR, BUSY_HDR,
    CUTOFFS_HDR, FREEZE_HDR, NEED_ACK_HDR, ACK_HDR,
)}

HEADER_LENGTHS: dict[int, int] = {
    DATA: DATA_HDR.size, GRANT: GRANT_HDR.size, RESEND: RESEND_HDR.size,
    RPC_UNKNOWN: RPC_UNKNOWN_HDR.size, BUSY: BUSY_HDR.size, CUTOFFS: CUTOFFS_HDR.size,
    FREEZE: FREEZE_HDR.size, NEED_ACK: NEED_ACK_HDR.size, ACK: ACK_HDR.size,
}

COMMON_HDR_LEN = COMMON_HDR.size       # 28
DATA_HDR_LEN = DATA_HDR.size           # 56
TYPE_OFFSET = COMMON_HDR.offsets["type"]  # 13
# doff: the high nibble is the TCP data offset in 32-bit words. DATA: the bytes TSO would
# replicate (homa_data_hdr minus homa_seg_hdr, 52 -> 13); every other packet: 5 (20 bytes).
DATA_DOFF = ((DATA_HDR_LEN - SEG_HDR.size) // 4) << 4   # 0xd0
CONTROL_DOFF = 5 << 4                                     # 0x50


def max_data_payload(mtu: int = 1500, ip_header: int = IPV4_HEADER_LENGTH) -> int:
    """Message bytes in one full DATA packet: MTU - IP header - homa_data_hdr (1500 -> 1424)."""
    return mtu - ip_header - DATA_HDR_LEN


# ---- ids and priorities --------------------------------------------------------------------

def is_client_id(rpc_id: int) -> bool:
    """Client RPC ids are even; the server's id for the same RPC is the client's with bit 0 set."""
    return not rpc_id & 1


def local_id(sender_id: int) -> int:
    """homa_local_id(): the id this host uses for the RPC named by a packet's sender_id."""
    return sender_id ^ 1


def priority_to_tos(priority: int, priority_map: tuple[int, ...] | None = None, ecn: int = 0) -> int:
    """IPv4 TOS (IPv6 traffic class) byte for a Homa priority: the priority (through the
    optional priority_map, as HomaModule's ``priority_map``) in the high 3 bits of DSCP,
    i.e. ``p << 5``; the two ECN bits are kept from ``ecn``."""
    level = priority_map[priority] if priority_map is not None else priority
    if not 0 <= level < 8:
        raise ValueError(f"Homa priority level must be 0..7, got {level}")
    return (level << 5) | (ecn & 0x3)


def tos_to_priority(tos: int) -> int:
    """The priority level carried in a TOS / traffic-class byte (high 3 bits of DSCP)."""
    return (tos >> 5) & 0x7


def priority_to_dscp(priority: int) -> int:
    """The 6-bit DSCP value for a priority level (``p << 3``)."""
    return (priority & 0x7) << 3


def dscp_to_priority(dscp: int) -> int:
    return (dscp >> 3) & 0x7


# ---- packet tuples (what parse() returns and the protocol logic consumes) -----------------

class DataPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    message_length: int
    incoming: int
    offset: int
    payload: bytes
    ack_id: int = 0
    ack_port: int = 0
    cutoff_version: int = 0
    retransmit: int = 0
    type: int = DATA


class GrantPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    offset: int
    priority: int
    type: int = GRANT


class ResendPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    offset: int
    length: int          # RESEND_ALL (-1): everything sent so far
    priority: int
    type: int = RESEND


class RpcUnknownPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    type: int = RPC_UNKNOWN


class BusyPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    type: int = BUSY


class CutoffsPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    unsched_cutoffs: tuple[int, ...]
    cutoff_version: int
    type: int = CUTOFFS


class FreezePacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    type: int = FREEZE


class NeedAckPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    type: int = NEED_ACK


class AckPacket(NamedTuple):
    sport: int
    dport: int
    sender_id: int
    acks: tuple[tuple[int, int], ...]   # (client_id, server_port), at most 5
    type: int = ACK


Packet = Union[DataPacket, GrantPacket, ResendPacket, RpcUnknownPacket, BusyPacket,
               CutoffsPacket, FreezePacket, NeedAckPacket, AckPacket]

# ---- packing -------------------------------------------------------------------------------

_ZERO3 = b"\0\0\0"
_DATA = DATA_HDR.struct
_GRANT = GRANT_HDR.struct
_RESEND = RESEND_HDR.struct
_COMMON = COMMON_HDR.struct
_CUTOFFS = CUTOFFS_HDR.struct
_ACK = ACK_HDR.struct
_DATA_OFFSET = struct.Struct("!I")


def pack_data_into(buf, pos: int, sport: int, dport: int, sender_id: int, message_length: int,
                   incoming: int, offset: int, ack_id: int = 0, ack_port: int = 0,
                   cutoff_version: int = 0, retransmit: int = 0) -> None:
    """Write a 56-byte homa_data_hdr at buf[pos:]; the segment's data follows it."""
    _DATA.pack_into(buf, pos, sport, dport, offset, _ZERO3, DATA, DATA_DOFF, 0, 0, 0, 0, sender_id,
                    message_length, incoming, ack_id, ack_port, cutoff_version, retransmit, _ZERO3,
                    offset)


def pack_data(sport: int, dport: int, sender_id: int, message_length: int, incoming: int,
              offset: int, ack_id: int = 0, ack_port: int = 0, cutoff_version: int = 0,
              retransmit: int = 0) -> bytes:
    """The 56-byte homa_data_hdr alone."""
    return _DATA.pack(sport, dport, offset, _ZERO3, DATA, DATA_DOFF, 0, 0, 0, 0, sender_id,
                      message_length, incoming, ack_id, ack_port, cutoff_version, retransmit,
                      _ZERO3, offset)


def build_data(sport: int, dport: int, sender_id: int, message_length: int, incoming: int,
               offset: int, payload: bytes = b"", ack_id: int = 0, ack_port: int = 0,
               cutoff_version: int = 0, retransmit: int = 0) -> bytes:
    """A DATA packet: homa_data_hdr followed by one segment of message data."""
    return pack_data(sport, dport, sender_id, message_length, incoming, offset, ack_id,
                     ack_port, cutoff_version, retransmit) + bytes(payload)


def _common(sport: int, dport: int, sender_id: int, type_: int) -> bytes:
    return _COMMON.pack(sport, dport, 0, _ZERO3, type_, CONTROL_DOFF, 0, 0, 0, 0, sender_id)


def build_grant(sport: int, dport: int, sender_id: int, offset: int, priority: int) -> bytes:
    return _GRANT.pack(sport, dport, 0, _ZERO3, GRANT, CONTROL_DOFF, 0, 0, 0, 0, sender_id,
                       offset, priority)


def build_resend(sport: int, dport: int, sender_id: int, offset: int, length: int,
                 priority: int) -> bytes:
    return _RESEND.pack(sport, dport, 0, _ZERO3, RESEND, CONTROL_DOFF, 0, 0, 0, 0, sender_id,
                        offset, length, priority)


def build_rpc_unknown(sport: int, dport: int, sender_id: int) -> bytes:
    return _common(sport, dport, sender_id, RPC_UNKNOWN)


def build_busy(sport: int, dport: int, sender_id: int) -> bytes:
    return _common(sport, dport, sender_id, BUSY)


def build_freeze(sport: int, dport: int, sender_id: int) -> bytes:
    return _common(sport, dport, sender_id, FREEZE)


def build_need_ack(sport: int, dport: int, sender_id: int) -> bytes:
    return _common(sport, dport, sender_id, NEED_ACK)


def build_cutoffs(sport: int, dport: int, sender_id: int, unsched_cutoffs, cutoff_version: int) -> bytes:
    cutoffs = tuple(unsched_cutoffs)
    if len(cutoffs) != HOMA_MAX_PRIORITIES:
        raise ValueError(f"CUTOFFS carries exactly {HOMA_MAX_PRIORITIES} cutoffs, got {len(cutoffs)}")
    return _CUTOFFS.pack(sport, dport, 0, _ZERO3, CUTOFFS, CONTROL_DOFF, 0, 0, 0, 0, sender_id,
                         *cutoffs, cutoff_version)


def build_ack(sport: int, dport: int, sender_id: int, acks=()) -> bytes:
    """An ACK packet carrying up to HOMA_MAX_ACKS_PER_PKT (client_id, server_port) pairs."""
    acks = tuple(acks)
    if len(acks) > HOMA_MAX_ACKS_PER_PKT:
        raise ValueError(f"an ACK packet carries at most {HOMA_MAX_ACKS_PER_PKT} acks, got {len(acks)}")
    flat: list[int] = []
    for client_id, server_port in acks:
        flat += (client_id, server_port)
    flat += (0, 0) * (HOMA_MAX_ACKS_PER_PKT - len(acks))
    return _ACK.pack(sport, dport, 0, _ZERO3, ACK, CONTROL_DOFF, 0, 0, 0, 0, sender_id,
                     len(acks), *flat)


def build(packet: Packet) -> bytes:
    """Bytes for any packet tuple (the inverse of :func:`parse`)."""
    t = packet.type
    if t == DATA:
        return build_data(packet.sport, packet.dport, packet.sender_id, packet.message_length,
                          packet.incoming, packet.offset, packet.payload, packet.ack_id,
                          packet.ack_port, packet.cutoff_version, packet.retransmit)
    if t == GRANT:
        return build_grant(packet.sport, packet.dport, packet.sender_id, packet.offset, packet.priority)
    if t == RESEND:
        return build_resend(packet.sport, packet.dport, packet.sender_id, packet.offset,
                            packet.length, packet.priority)
    if t == CUTOFFS:
        return build_cutoffs(packet.sport, packet.dport, packet.sender_id, packet.unsched_cutoffs,
                             packet.cutoff_version)
    if t == ACK:
        return build_ack(packet.sport, packet.dport, packet.sender_id, packet.acks)
    if t in (RPC_UNKNOWN, BUSY, FREEZE, NEED_ACK):
        return _common(packet.sport, packet.dport, packet.sender_id, t)
    raise HomaWireError(f"unknown Homa packet type {t:#x}")


# ---- parsing -------------------------------------------------------------------------------

def packet_type(buf) -> int:
    """The type byte of a Homa packet (no validation beyond length)."""
    if len(buf) < COMMON_HDR_LEN:
        raise HomaWireError(f"a Homa packet is at least {COMMON_HDR_LEN} bytes, got {len(buf)}")
    return buf[TYPE_OFFSET]


def unpack_data(buf, pos: int = 0) -> tuple:
    """Raw homa_data_hdr fields at buf[pos:] in struct order: (sport, dport, sequence, ack3,
    type, doff, flags, window, checksum, urgent, sender_id, message_length, incoming,
    ack_client_id, ack_server_port, cutoff_version, retransmit, pad, seg_offset)."""
    return _DATA.unpack_from(buf, pos)


def data_offset(buf, pos: int = 0) -> int:
    """seg.offset of a DATA packet at buf[pos:] (the offset of its first message byte)."""
    return _DATA_OFFSET.unpack_from(buf, pos + 52)[0]


def parse(buf) -> Packet:
    """Parse one Homa packet (starting at the Homa header, IP header stripped).

    Raises HomaWireError for a short packet or an unknown type. A DATA packet's payload is
    everything after the 56-byte header, cut at message_length - offset.
    """
    n = len(buf)
    t = packet_type(buf)
    need = HEADER_LENGTHS.get(t)
    if need is None:
        raise HomaWireError(f"unknown Homa packet type {t:#x}")
    if n < need:
        raise HomaWireError(f"{PacketType(t).name} packet needs {need} header bytes, got {n}")
    if t == DATA:
        (sport, dport, _seq, _a, _t, _doff, _fl, _w, _c, _u, sender_id, length, incoming, ack_id,
         ack_port, cutoff_version, retransmit, _pad, offset) = _DATA.unpack_from(buf, 0)
        end = DATA_HDR_LEN + max(0, length - offset)
        return DataPacket(sport, dport, sender_id, length, incoming, offset,
                          bytes(buf[DATA_HDR_LEN:end]), ack_id, ack_port, cutoff_version, retransmit)
    if t == GRANT:
        f = _GRANT.unpack_from(buf, 0)
        return GrantPacket(f[0], f[1], f[10], f[11], f[12])
    if t == RESEND:
        f = _RESEND.unpack_from(buf, 0)
        return ResendPacket(f[0], f[1], f[10], f[11], f[12], f[13])
    if t == CUTOFFS:
        f = _CUTOFFS.unpack_from(buf, 0)
        return CutoffsPacket(f[0], f[1], f[10], tuple(f[11:11 + HOMA_MAX_PRIORITIES]), f[-1])
    if t == ACK:
        f = _ACK.unpack_from(buf, 0)
        count = f[11]
        if count > HOMA_MAX_ACKS_PER_PKT:
            raise HomaWireError(f"ACK packet claims {count} acks; at most {HOMA_MAX_ACKS_PER_PKT} fit")
        acks = tuple((f[12 + 2 * i], f[13 + 2 * i]) for i in range(count))
        return AckPacket(f[0], f[1], f[10], acks)
    f = _COMMON.unpack_from(buf, 0)
    cls = {RPC_UNKNOWN: RpcUnknownPacket, BUSY: BusyPacket, FREEZE: FreezePacket,
           NEED_ACK: NeedAckPacket}[t]
    return cls(f[0], f[1], f[10])
