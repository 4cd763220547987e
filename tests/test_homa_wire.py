"""Homa's wire format: every header's size and field offsets against HomaModule's layout.

The expected numbers below are read off PlatformLab/HomaModule's current homa_wire.h (all
structs __packed, all multi-byte fields big-endian). They are checked against
  * the Python mirror (etran/homa/wire.py), and
  * the C header (etran/kernel/bpf/homa_wire.h), compiled with clang -target bpf and read
    back from its BTF with bpftool (sizes, member offsets, member sizes, __be types).
Round trips use hand-written byte strings (no scapy).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import struct
import subprocess

import pytest

from etran.homa import HomaConfig, wire

# struct name -> (size, [(member, offset, size), ...]) from HomaModule's homa_wire.h
EXPECTED: dict[str, tuple[int, list[tuple[str, int, int]]]] = {
    "homa_common_hdr": (28, [
        ("sport", 0, 2), ("dport", 2, 2), ("sequence", 4, 4), ("ack", 8, 3), ("type", 11, 1),
        ("doff", 12, 1), ("flags", 13, 1), ("window", 14, 2), ("checksum", 16, 2),
        ("urgent", 18, 2), ("sender_id", 20, 8),
    ]),
    "homa_ack": (10, [("client_id", 0, 8), ("server_port", 8, 2)]),
    "homa_seg_hdr": (4, [("offset", 0, 4)]),
    "homa_data_hdr": (56, [
        ("common", 0, 28), ("message_length", 28, 4), ("incoming", 32, 4), ("ack", 36, 10),
        ("cutoff_version", 46, 2), ("retransmit", 48, 1), ("pad", 49, 3), ("seg", 52, 4),
    ]),
    "homa_grant_hdr": (33, [("common", 0, 28), ("offset", 28, 4), ("priority", 32, 1)]),
    "homa_resend_hdr": (37, [
        ("common", 0, 28), ("offset", 28, 4), ("length", 32, 4), ("priority", 36, 1),
    ]),
    "homa_rpc_unknown_hdr": (28, [("common", 0, 28)]),
    "homa_busy_hdr": (28, [("common", 0, 28)]),
    "homa_cutoffs_hdr": (62, [
        ("common", 0, 28), ("unsched_cutoffs", 28, 32), ("cutoff_version", 60, 2),
    ]),
    "homa_freeze_hdr": (28, [("common", 0, 28)]),
    "homa_need_ack_hdr": (28, [("common", 0, 28)]),
    "homa_ack_hdr": (80, [("common", 0, 28), ("num_acks", 28, 2), ("acks", 30, 50)]),
}

EXPECTED_TYPES = {"DATA": 0x10, "GRANT": 0x11, "RESEND": 0x12, "RPC_UNKNOWN": 0x13, "BUSY": 0x14,
                  "CUTOFFS": 0x15, "FREEZE": 0x16, "NEED_ACK": 0x17, "ACK": 0x18}


# ---- the Python mirror -------------------------------------------------------------------

@pytest.mark.parametrize("c_name", sorted(EXPECTED))
def test_python_layout_matches_homamodule(c_name):
    size, members = EXPECTED[c_name]
    layout = wire.LAYOUTS[c_name]
    assert layout.size == size
    assert layout.struct.size == size
    assert [(n, layout.offsets[n], layout.sizes[n]) for n, _ in layout.members] == members


def test_every_layout_is_checked():
    assert set(wire.LAYOUTS) == set(EXPECTED)


def test_constants():
    assert wire.IPPROTO_HOMA == 146
    assert {t.name: int(t) for t in wire.PacketType} == EXPECTED_TYPES
    assert wire.MAX_OP == 0x18
    assert wire.HEADER_LENGTHS == {EXPECTED_TYPES[n]: EXPECTED[c][0] for n, c in [
        ("DATA", "homa_data_hdr"), ("GRANT", "homa_grant_hdr"), ("RESEND", "homa_resend_hdr"),
        ("RPC_UNKNOWN", "homa_rpc_unknown_hdr"), ("BUSY", "homa_busy_hdr"),
        ("CUTOFFS", "homa_cutoffs_hdr"), ("FREEZE", "homa_freeze_hdr"),
        ("NEED_ACK", "homa_need_ack_hdr"), ("ACK", "homa_ack_hdr")]}
    assert max(wire.HEADER_LENGTHS.values()) <= wire.HOMA_MAX_HEADER == 90
    assert wire.HOMA_MAX_PRIORITIES == 8 and wire.HOMA_MAX_ACKS_PER_PKT == 5
    assert wire.COMMON_HDR_LEN == 28 and wire.DATA_HDR_LEN == 56 and wire.TYPE_OFFSET == 11
    assert wire.DATA_DOFF == 0xD0 and wire.CONTROL_DOFF == 0x50   # 13 and 5 words
    assert wire.HOMA_MAX_MESSAGE_LENGTH == 1_000_000


def test_segment_payload_is_derived_from_header_sizes():
    assert wire.max_data_payload(1500) == 1500 - 20 - 56 == 1424
    assert wire.max_data_payload(9000, wire.IPV6_HEADER_LENGTH) == 9000 - 40 - 56
    assert HomaConfig().seg_payload == 1424
    assert HomaConfig(mtu=9000).seg_payload == 8924
    assert HomaConfig(rtt_bytes=10_000).unsched_limit == 8 * 1424   # rounded up to packets
    assert HomaConfig(max_seg_payload=1000).seg_payload == 1000
    with pytest.raises(ValueError):
        HomaConfig(max_seg_payload=1425)


# ---- byte-exact round trips ------------------------------------------------------------------

def _common(sport, dport, seq, type_, doff, sender_id):
    return (struct.pack(">HHI", sport, dport, seq) + b"\0\0\0" + bytes([type_, doff, 0])
            + b"\0\0" + b"\0\0" + b"\0\0" + struct.pack(">Q", sender_id))


def test_data_bytes():
    payload = bytes(range(100))
    expected = bytes.fromhex(
        "1234" "0063" "00000590"        # sport 0x1234, dport 99, sequence = offset 1424
        "000000" "10" "d0" "00"         # ack[3], type DATA, doff 13<<4, flags
        "0000" "0000" "0000"            # window, checksum, urgent
        "0000000000000102"              # sender_id 258
        "000f4240"                      # message_length 1,000,000
        "00002c80"                      # incoming 11392
        "00000000000000aa" "0064"       # ack: client_id 170, server_port 100
        "0003" "01" "000000"            # cutoff_version 3, retransmit, pad
        "00000590"                      # seg.offset 1424
    ) + payload
    built = wire.build_data(0x1234, 99, 258, 1_000_000, 11392, 1424, payload, ack_id=170,
                            ack_port=100, cutoff_version=3, retransmit=1)
    assert built == expected
    assert wire.parse(built) == wire.DataPacket(0x1234, 99, 258, 1_000_000, 11392, 1424, payload,
                                                170, 100, 3, 1)
    buf = bytearray(200)
    wire.pack_data_into(buf, 8, 0x1234, 99, 258, 1_000_000, 11392, 1424, 170, 100, 3, 1)
    assert bytes(buf[8:64]) == expected[:56]
    assert wire.data_offset(buf, 8) == 1424
    fields = wire.unpack_data(expected)
    assert fields[10] == 258 and fields[11] == 1_000_000 and fields[-1] == 1424


def test_data_payload_is_cut_at_message_end():
    # The last segment of a 1401-byte message holds 1 byte; padding after it is not data.
    pkt = wire.build_data(1, 2, 4, 1401, 1401, 1400, b"z") + b"\0" * 10
    assert wire.parse(pkt).payload == b"z"
    empty = wire.build_data(1, 2, 4, 0, 0, 0)
    assert len(empty) == 56 and wire.parse(empty).payload == b""


def test_grant_bytes():
    expected = _common(100, 0x8000, 0, 0x11, 0x50, 7) + bytes.fromhex("00012345" "05")
    assert len(expected) == 33
    assert wire.build_grant(100, 0x8000, 7, 0x12345, 5) == expected
    assert wire.parse(expected) == wire.GrantPacket(100, 0x8000, 7, 0x12345, 5)


def test_resend_bytes_and_resend_all():
    expected = _common(0x8001, 100, 0, 0x12, 0x50, 4) + bytes.fromhex("00000590" "00000b20" "07")
    assert len(expected) == 37
    assert wire.build_resend(0x8001, 100, 4, 1424, 2848, 7) == expected
    assert wire.parse(expected) == wire.ResendPacket(0x8001, 100, 4, 1424, 2848, 7)
    everything = wire.build_resend(1, 2, 4, 0, wire.RESEND_ALL, 7)
    assert everything[32:36] == b"\xff\xff\xff\xff"
    assert wire.parse(everything).length == -1


@pytest.mark.parametrize("type_,builder,cls", [
    (0x13, wire.build_rpc_unknown, wire.RpcUnknownPacket),
    (0x14, wire.build_busy, wire.BusyPacket),
    (0x16, wire.build_freeze, wire.FreezePacket),
    (0x17, wire.build_need_ack, wire.NeedAckPacket),
])
def test_common_only_bytes(type_, builder, cls):
    expected = _common(5, 6, 0, type_, 0x50, 0x0102030405060708)
    assert builder(5, 6, 0x0102030405060708) == expected
    assert wire.parse(expected) == cls(5, 6, 0x0102030405060708)


def test_cutoffs_bytes():
    cutoffs = (0, 0, 0, 0, 1_000_000, 15000, 2800, 200)
    expected = (_common(100, 0x8000, 0, 0x15, 0x50, 9)
                + b"".join(struct.pack(">I", c) for c in cutoffs) + b"\x00\x2a")
    assert len(expected) == 62
    assert wire.build_cutoffs(100, 0x8000, 9, cutoffs, 42) == expected
    assert wire.parse(expected) == wire.CutoffsPacket(100, 0x8000, 9, cutoffs, 42)
    with pytest.raises(ValueError):
        wire.build_cutoffs(1, 2, 3, (1, 2), 1)


def test_ack_bytes():
    acks = ((2, 100), (4, 100))
    expected = (_common(0x8000, 100, 0, 0x18, 0x50, 6) + b"\x00\x02"
                + struct.pack(">QH", 2, 100) + struct.pack(">QH", 4, 100) + b"\0" * 30)
    assert len(expected) == 80
    assert wire.build_ack(0x8000, 100, 6, acks) == expected
    assert wire.parse(expected) == wire.AckPacket(0x8000, 100, 6, acks)
    full = tuple((2 * i, 7) for i in range(1, 6))
    assert wire.parse(wire.build_ack(1, 2, 3, full)).acks == full
    with pytest.raises(ValueError):
        wire.build_ack(1, 2, 3, full + ((12, 7),))
    lying = bytearray(wire.build_ack(1, 2, 3, ()))
    lying[28:30] = b"\x00\x06"
    with pytest.raises(wire.HomaWireError):
        wire.parse(bytes(lying))


def test_build_is_the_inverse_of_parse():
    packets = [
        wire.DataPacket(1, 2, 4, 3000, 3000, 1424, b"q" * 1424, 0, 0, 1, 0),
        wire.GrantPacket(1, 2, 5, 20000, 3),
        wire.ResendPacket(1, 2, 5, 0, -1, 7),
        wire.RpcUnknownPacket(1, 2, 5), wire.BusyPacket(1, 2, 5), wire.FreezePacket(1, 2, 5),
        wire.NeedAckPacket(1, 2, 5),
        wire.CutoffsPacket(1, 2, 5, (8, 7, 6, 5, 4, 3, 2, 1), 2),
        wire.AckPacket(1, 2, 4, ((6, 2),)),
    ]
    for pkt in packets:
        assert wire.parse(wire.build(pkt)) == pkt


def test_malformed_packets_are_rejected():
    with pytest.raises(wire.HomaWireError):
        wire.parse(b"\0" * 27)
    unknown = bytearray(wire.build_busy(1, 2, 3))
    unknown[11] = 0x19
    with pytest.raises(wire.HomaWireError):
        wire.parse(bytes(unknown))
    with pytest.raises(wire.HomaWireError):
        wire.parse(wire.build_grant(1, 2, 3, 4, 5)[:32])
    assert isinstance(wire.HomaWireError("x"), ValueError)


# ---- priorities and ids ----------------------------------------------------------------------

def test_priority_lives_in_the_high_bits_of_dscp():
    for level in range(8):
        tos = wire.priority_to_tos(level)
        assert tos == level << 5                       # DSCP = tos >> 2, priority = DSCP >> 3
        assert wire.tos_to_priority(tos) == level
        assert wire.priority_to_dscp(level) == (tos >> 2)
        assert wire.dscp_to_priority(tos >> 2) == level
    assert wire.priority_to_tos(7) == 0xE0
    assert wire.priority_to_tos(5, ecn=0b10) == 0xA2   # ECN bits kept
    assert wire.tos_to_priority(0xA3) == 5
    remap = (0, 0, 1, 1, 2, 2, 3, 7)
    assert wire.priority_to_tos(7, remap) == 7 << 5 and wire.priority_to_tos(4, remap) == 2 << 5
    with pytest.raises(ValueError):
        wire.priority_to_tos(8)


def test_rpc_ids():
    assert wire.is_client_id(2) and not wire.is_client_id(3)
    assert wire.local_id(2) == 3 and wire.local_id(3) == 2   # homa_local_id: flip the low bit


# ---- the C header, through BTF ------------------------------------------------------------

HEADER = os.path.join(os.path.dirname(wire.__file__), "..", "kernel", "bpf", "homa_wire.h")


def _need_tools():
    missing = [t for t in ("clang", "bpftool") if shutil.which(t) is None]
    if missing:
        msg = f"needs {' and '.join(missing)} to compile homa_wire.h"
        if os.environ.get("ETRAN_REQUIRE_KERNEL") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@functools.cache
def _btf(tmpdir: str) -> dict:
    from etran.kernel import build
    with open(HEADER, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    c_types = {t.name: int(t) for t in wire.PacketType}
    src = [
        f"/* homa_wire.h sha256 {digest} (keys the build cache) */",
        "#include <linux/bpf.h>",
        '#include "homa_wire.h"',
    ]
    src += [f"struct {name} g_{name};" for name in EXPECTED]
    src += [f'_Static_assert(HOMA_PKT_{n} == {v}, "type {n}");' for n, v in c_types.items()]
    src += [
        '_Static_assert(HOMA_IPPROTO == 146, "proto");',
        f'_Static_assert(HOMA_DATA_DOFF == {wire.DATA_DOFF}, "doff");',
        f'_Static_assert(HOMA_CONTROL_DOFF == {wire.CONTROL_DOFF}, "control doff");',
        '_Static_assert(HOMA_MAX_DATA_PAYLOAD(1500) == 1424, "payload");',
        '_Static_assert(HOMA_MAX_ACKS_PER_PKT == 5 && HOMA_MAX_PRIORITIES == 8, "arrays");',
        'int use(void) { return (int)homa_local_id(g_homa_common_hdr.sender_id)'
        ' + homa_priority_tos(3) + homa_tos_priority(0x60) + homa_is_client(2); }',
    ]
    path = os.path.join(tmpdir, "homa_wire_check.bpf.c")
    with open(path, "w") as f:
        f.write("\n".join(src) + "\n")
    obj = build.compile_source(path)
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(obj)],
                         capture_output=True, text=True, check=True).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def _resolve(types: dict, type_id: int) -> tuple[int, list[str]]:
    """(size in bytes, chain of type names) of a BTF type, through typedefs/modifiers."""
    names: list[str] = []
    t = types[type_id]
    while t["kind"] in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT"):
        names.append(t["name"]) if t.get("name") else None
        t = types[t["type_id"]]
    if t["kind"] == "ARRAY":
        size, inner = _resolve(types, t["type_id"])
        return size * t["nr_elems"], names + inner
    names.append(t.get("name", ""))
    return t["size"], names


@pytest.fixture(scope="module")
def btf_types(tmp_path_factory):
    _need_tools()
    return _btf(str(tmp_path_factory.mktemp("homa_wire")))


@pytest.mark.parametrize("c_name", sorted(EXPECTED))
def test_c_header_matches_homamodule(btf_types, c_name):
    structs = {t["name"]: t for t in btf_types.values() if t["kind"] == "STRUCT" and t.get("name")}
    assert c_name in structs, f"struct {c_name} missing from the BTF"
    size, members = EXPECTED[c_name]
    st = structs[c_name]
    assert st["size"] == size
    got = []
    for m in st["members"]:
        msize, chain = _resolve(btf_types, m["type_id"])
        got.append((m["name"], m["bits_offset"] // 8, msize))
        assert m["bits_offset"] % 8 == 0
        if chain[-1] in ("unsigned short", "unsigned int", "unsigned long long"):
            # every multi-byte scalar is big-endian on the wire
            assert chain[0].startswith("__be"), f"{c_name}.{m['name']} is {chain}, not __be*"
    assert got == members
