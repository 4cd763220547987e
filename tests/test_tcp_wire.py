"""etran.tcp.wire against an independent implementation (scapy) and against malformed input."""

from __future__ import annotations

import os
import random
import struct
import timeit

import pytest

from etran.tcp import wire as w

scapy_inet = pytest.importorskip("scapy.layers.inet")
IP, TCP = scapy_inet.IP, scapy_inet.TCP

SRC, DST = w.ip_to_bytes("10.1.2.3"), w.ip_to_bytes("192.168.7.9")


def ref_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 straight from the text: 16-bit words, end-around carry."""
    if len(data) & 1:
        data += b"\0"
    s = initial
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def scapy_checksums_valid(raw: bytes) -> bool:
    """scapy recomputes both checksums when they are deleted; compare with what we wrote."""
    pkt = IP(raw)
    rebuilt = pkt.copy()
    del rebuilt.chksum
    del rebuilt[TCP].chksum
    again = IP(bytes(rebuilt))
    return again.chksum == pkt.chksum and again[TCP].chksum == pkt[TCP].chksum


# ---- checksum -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2, 3, 20, 21, 40, 1460, 1461, 1480, 9000])
def test_checksum_matches_rfc1071(n):
    rnd = random.Random(n)
    for _ in range(20):
        data = bytes(rnd.getrandbits(8) for _ in range(n))
        init = rnd.getrandbits(20)
        assert w.checksum(data, init) == ref_checksum(data, init)


def test_checksum_edge_values():
    assert w.checksum(b"") == 0xFFFF
    assert w.checksum(bytes(100)) == 0xFFFF            # all zero: sum 0, checksum 0xFFFF
    assert w.checksum(b"\xff\xff") == 0                  # negative zero sum: checksum 0, as RFC 1071
    assert w.checksum(b"\xff\xff" * 7) == ref_checksum(b"\xff\xff" * 7) == 0
    assert w.checksum(b"\x12\x34\xed\xcb") == ref_checksum(b"\x12\x34\xed\xcb")
    # a buffer carrying its own checksum sums to zero
    data = bytearray(os.urandom(64))
    data[10:12] = b"\0\0"
    data[10:12] = w.checksum(data).to_bytes(2, "big")
    assert w.checksum(data) == 0


def test_checksum_adjust_matches_recompute():
    rnd = random.Random(7)
    for _ in range(200):
        data = bytearray(rnd.getrandbits(8) for _ in range(40))
        c0 = w.checksum(data)
        pos = rnd.randrange(0, 40, 2)
        old = int.from_bytes(data[pos:pos + 2], "big")
        new = rnd.getrandbits(16)
        data[pos:pos + 2] = new.to_bytes(2, "big")
        assert w.checksum_adjust(c0, old, new) == w.checksum(data)


def test_checksum_speed_1460():
    payload = os.urandom(1480)
    init = w.pseudo_header_sum(SRC, DST, 6, 1480)
    n = 2000
    t = min(timeit.repeat(lambda: w.checksum(payload, init), number=n, repeat=5)) / n
    print(f"checksum of 1480 bytes: {t * 1e9:.0f} ns")
    assert t < 100e-6


# ---- packets we build, decoded by scapy -----------------------------------------------------
def test_syn_decodes_in_scapy():
    opts = w.TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamp=(123456789, 0))
    seg = w.TcpSegment(40000, 80, 0xDEADBEEF, 0, w.SYN | w.ECE | w.CWR, 65535, opts)
    raw = w.build_packet(SRC, DST, seg, ident=77)
    p = IP(raw)
    assert p.src == "10.1.2.3" and p.dst == "192.168.7.9" and p.ttl == 64 and p.id == 77 and p.flags == "DF"
    t = p[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, t.window) == (40000, 80, 0xDEADBEEF, 0, 65535)
    assert str(t.flags) == "SEC"
    assert t.options == [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456789, 0)), ("NOP", None), ("WScale", 7)]
    assert t.dataofs * 4 == 40                  # Linux's 20 option bytes
    assert scapy_checksums_valid(raw)


@pytest.mark.parametrize("ts,sack_blocks", [
    (None, []), ((1, 2), []), (None, [(100, 200)]), ((5, 6), [(1, 2), (3, 4), (5, 6), (7, 8)]),
    (None, [(1, 2), (3, 4), (5, 6), (7, 8)]), ((0xFFFFFFFF, 0x80000000), [(0xFFFFFF00, 0x10)]),
])
@pytest.mark.parametrize("ecn", [w.ECN_NOT_ECT, w.ECN_ECT0, w.ECN_CE])
def test_data_segments_decode_in_scapy(ts, sack_blocks, ecn):
    payload = os.urandom(1448 if ts else 1460)
    opts = w.TcpOptions(timestamp=ts, sack_blocks=list(sack_blocks))
    seg = w.TcpSegment(5000, 6000, 0xFFFFFFF0, 12345, w.ACK | w.PSH | w.CWR, 501, opts, payload)
    raw = w.build_packet(SRC, DST, seg, ecn=ecn, dscp=10)
    p = IP(raw)
    assert p.tos == (10 << 2) | ecn and p.len == len(raw)
    t = p[TCP]
    assert bytes(t.payload) == payload
    assert str(t.flags) == "PAC"
    decoded = dict((k, v) for k, v in t.options if k not in ("NOP", "EOL"))
    if ts:
        assert decoded["Timestamp"] == ts
    expect_blocks = sack_blocks[: (3 if ts else 4)]
    if expect_blocks:
        flat = tuple(x for b in expect_blocks for x in b)
        assert decoded["SAck"] == flat
    assert scapy_checksums_valid(raw)
    # and back through our parser
    ip, s2 = w.parse_packet(raw)
    assert ip.ecn == ecn and ip.dscp == 10
    assert s2.payload == payload and s2.options.timestamp == ts and s2.options.sack_blocks == expect_blocks


def test_option_layout_is_linux_like():
    assert w.build_options(w.TcpOptions(timestamp=(1, 2))) == b"\x01\x01\x08\x0a" + struct.pack("!II", 1, 2)
    assert w.build_options(w.TcpOptions(mss=1460, sack_permitted=True, timestamp=(1, 0), wscale=7)) == (
        b"\x02\x04\x05\xb4" + b"\x04\x02\x08\x0a" + struct.pack("!II", 1, 0) + b"\x01\x03\x03\x07")
    assert w.build_options(w.TcpOptions(mss=536, sack_permitted=True)) == b"\x02\x04\x02\x18\x01\x01\x04\x02"
    for o in (w.TcpOptions(), w.TcpOptions(mss=1), w.TcpOptions(wscale=3), w.TcpOptions(sack_blocks=[(1, 2)]),
              w.TcpOptions(unknown=[(30, b"\x00\x01\x02")])):
        assert len(w.build_options(o)) % 4 == 0
    assert len(w.build_options(w.TcpOptions(timestamp=(1, 1), sack_blocks=[(1, 2)] * 4))) == 12 + 4 + 24
    with pytest.raises(ValueError):
        w.build_options(w.TcpOptions(unknown=[(99, bytes(40))]))


# ---- packets scapy builds, parsed by us -----------------------------------------------------
def test_scapy_syn_parses():
    raw = bytes(IP(src="1.1.1.1", dst="2.2.2.2", tos=0x02) / TCP(
        sport=1234, dport=80, seq=42, flags="SEC", window=29200,
        options=[("MSS", 1400), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 9),
                 ("Timestamp", (7, 0))]))
    ip, seg = w.parse_packet(raw)
    assert w.ip_to_str(ip.src) == "1.1.1.1" and ip.ecn == w.ECN_ECT0
    assert seg.flags == w.SYN | w.ECE | w.CWR and w.flags_str(seg.flags) == "SEC"
    o = seg.options
    assert (o.mss, o.wscale, o.sack_permitted, o.timestamp) == (1400, 9, True, (7, 0))
    assert seg.window == 29200 and seg.seq == 42 and seg.seg_len == 1


def test_scapy_options_in_odd_orders_and_unknown_kinds():
    raw = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / TCP(
        flags="A", options=[("Timestamp", (1, 2)), (34, b"abcdefgh"), ("SAck", (10, 20, 30, 40)), ("EOL", None)])
        / b"hello")
    ip, seg = w.parse_packet(raw)
    assert seg.options.timestamp == (1, 2)
    assert seg.options.sack_blocks == [(10, 20), (30, 40)]
    assert seg.options.unknown == [(34, b"abcdefgh")]
    assert seg.payload == b"hello"


def test_scapy_ip_options_and_padding():
    raw = bytes(IP(src="1.1.1.1", dst="2.2.2.2", options=[scapy_inet.IPOption_RR(routers=["0.0.0.0"])]) /
                TCP(flags="S")) + b"\0" * 6           # Ethernet-style trailing padding
    ip, seg = w.parse_packet(raw)
    assert ip.header_length > 20 and seg.flags == w.SYN


def test_scapy_ecn_codepoints():
    for tos, ecn in ((0, w.ECN_NOT_ECT), (1, w.ECN_ECT1), (2, w.ECN_ECT0), (3, w.ECN_CE), (0xB8 | 3, w.ECN_CE)):
        ip, _ = w.parse_packet(bytes(IP(src="1.1.1.1", dst="2.2.2.2", tos=tos) / TCP()))
        assert ip.ecn == ecn and ip.dscp == tos >> 2


# ---- rejection without exceptions ------------------------------------------------------------
@pytest.mark.parametrize("opts", [
    b"\x02",                              # kind without length
    b"\x02\x00\x00\x00",                  # length 0
    b"\x02\x01\x00\x00",                  # length 1
    b"\x08\x0a\x00\x00",                  # runs past the end
    b"\x02\x05\x05\xb4\x00\x00\x00\x00",  # MSS with length 5
    b"\x03\x04\x07\x00",                  # WS with length 4
    b"\x04\x03\x00\x00",                  # SACK_PERM with length 3
    b"\x08\x08" + bytes(6),               # TS with length 8
    b"\x05\x06" + bytes(6),               # SACK with a partial block
    b"\x05\x02\x00\x00",                  # SACK with no block
])
def test_malformed_options_rejected(opts):
    assert w.parse_options(opts) is None
    raw = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / TCP(options=[]))
    # splice the bad options into a TCP header with the right data offset and valid checksums
    seg = bytearray(raw[20:40]) + opts + b"\0" * (-len(opts) % 4)
    seg[12] = (len(seg) // 4) << 4
    seg[16:18] = b"\0\0"
    src, dst = w.ip_to_bytes("1.1.1.1"), w.ip_to_bytes("2.2.2.2")
    seg[16:18] = w.checksum(seg, w.pseudo_header_sum(src, dst, 6, len(seg))).to_bytes(2, "big")
    pkt = w.build_ipv4(src, dst, len(seg)) + bytes(seg)
    assert w.parse_packet(pkt) is None


def test_eol_and_nops_end_parsing_cleanly():
    assert w.parse_options(b"\x01\x01\x01\x00\xff\xff") == w.TcpOptions()
    assert w.parse_options(b"\x03\x03\x20\x00").wscale == 14       # shift capped at 14 (RFC 7323)


def test_bad_checksums_and_shapes_rejected():
    seg = w.TcpSegment(1, 2, 3, 4, w.ACK, 5, w.TcpOptions(timestamp=(1, 2)), b"data")
    raw = bytearray(w.build_packet(SRC, DST, seg))
    assert w.parse_packet(bytes(raw)) is not None
    bad_tcp = bytearray(raw)
    bad_tcp[-1] ^= 1
    assert w.parse_packet(bytes(bad_tcp)) is None
    assert w.parse_packet(bytes(bad_tcp), verify=False) is not None
    bad_ip = bytearray(raw)
    bad_ip[8] ^= 1                                       # TTL changed, header checksum stale
    assert w.parse_packet(bytes(bad_ip)) is None
    frag = bytes(IP(src="1.1.1.1", dst="2.2.2.2", flags="MF") / TCP())
    assert w.parse_packet(frag) is None
    udp = bytes(IP(src="1.1.1.1", dst="2.2.2.2", proto=17) / (b"\0" * 8))
    assert w.parse_packet(udp) is None
    short = bytearray(raw)
    short[20 + 12] = 0x40                                # data offset 4 words < 5
    assert w.parse_tcp(bytes(short[20:])) is None
    assert w.parse_packet(bytes(raw[:30])) is None
    assert w.parse_packet(b"") is None


def test_fuzz_never_raises():
    rnd = random.Random(1)
    base = w.build_packet(SRC, DST, w.TcpSegment(1, 2, 3, 4, w.SYN, 5, w.TcpOptions(
        mss=1460, wscale=7, sack_permitted=True, timestamp=(1, 2))))
    for _ in range(5000):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 6)):
            b[rnd.randrange(len(b))] = rnd.getrandbits(8)
        w.parse_packet(bytes(b))
        w.parse_packet(bytes(b), verify=False)
        w.parse_options(bytes(b[40:]))
        w.parse_packet(bytes(b[:rnd.randrange(len(b))]), verify=False)


# ---- misc ------------------------------------------------------------------------------------
def test_ethernet_roundtrip_and_flags():
    hdr = w.build_ethernet(b"\x02" * 6, b"\x04" * 6)
    pkt = w.build_packet(SRC, DST, w.TcpSegment(1, 2, 3, 4, w.ACK, 5))
    dst, src, et, payload = w.parse_ethernet(hdr + pkt)
    assert (dst, src, et) == (b"\x02" * 6, b"\x04" * 6, 0x0800) and bytes(payload) == pkt
    assert w.parse_ethernet(b"\0" * 5) is None
    assert w.flags_str(w.SYN | w.ACK) == "SA" and w.flags_str(0) == "."
