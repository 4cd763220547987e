"""A packet capture of etran <-> Linux TCP, decoded by scapy: what etran puts on the wire is
standard TCP. Every IPv4 and TCP checksum is valid; options are well formed and negotiated as
RFC 7323 (MSS/WS only on SYNs, timestamps on every segment once agreed), RFC 2018 (SACK only
when permitted, blocks inside the window) and RFC 3168 (ECN setup SYN, ECT only on new data)
say. Captured on the switch port towards the etran host, with loss so that SACK is exercised.

Checksums are verified as a receiver verifies them (RFC 1071: the one's complement sum over
the covered bytes, checksum field included, is all ones), never by recomputing one and comparing
values: 0x0000 and 0xffff are the same one's complement zero, and senders differ in which they
write. Linux's software checksum (the test bed turns checksum offload off) writes 0xffff where
the sum comes out zero (CSUM_MANGLED_0 in skb_checksum_help), so a recompute-and-compare check
failed on about one Linux segment in 65,536 that was valid on the wire.
"""

from __future__ import annotations

import struct
import subprocess
import time

import pytest
from test_tcp_interop import run_bulk

from etran.tcp.wire import checksum, pseudo_header_sum

FIN, SYN, RST, PSH, ACK, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x40, 0x80
ETH_HLEN = 14  # the switch ports are Ethernet (veth)


def capture(bed, port: str, path: str) -> subprocess.Popen:
    # --immediate-mode: libpcap takes a TPACKET_V2 ring, which hands each frame over at once, instead
    # of TPACKET_V3 blocks that wait for a timer; otherwise the frames of the last unretired block
    # (often the closing FIN exchange) are lost when the capture stops
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{bed.switch_netns}", "tcpdump", "-i", port, "-w", path,
                             "-s", "0", "--immediate-mode", "-U", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    return proc


def stop(proc: subprocess.Popen) -> None:
    time.sleep(0.5)
    proc.terminate()
    proc.wait(timeout=10)


def checksums_ok(packet: bytes) -> tuple[bool, bool]:
    """(IPv4 header checksum valid, TCP checksum valid) of the IPv4 packet `packet` as captured,
    verified the way a receiver does (RFC 1071: the checksum over the covered bytes, checksum
    field included, comes out zero), so both encodings of a zero checksum pass."""
    ihl = (packet[0] & 0x0F) * 4
    total_len = struct.unpack("!H", packet[2:4])[0]
    segment = packet[ihl:total_len]
    pseudo = pseudo_header_sum(packet[12:16], packet[16:20], 6, len(segment))
    return checksum(packet[:ihl]) == 0 and len(packet) >= total_len, checksum(segment, pseudo) == 0


def decode(path: str, etran_ip: str):
    from scapy.all import IP, TCP, raw, rdpcap

    out = []
    for p in rdpcap(path):
        if IP not in p or TCP not in p:
            continue
        ip = p[IP]
        t = ip[TCP]
        ip_ok, tcp_ok = checksums_ok(bytes(p.original)[ETH_HLEN:])  # the bytes captured, not scapy's rebuild
        out.append({"from_etran": ip.src == etran_ip, "ip_ok": ip_ok, "tcp_ok": tcp_ok, "checksum": hex(t.chksum),
                    "flags": int(t.flags), "seq": t.seq, "ack": t.ack, "len": len(t.payload), "tos": ip.tos,
                    "opts": list(t.options), "window": t.window, "raw_opts": bytes(raw(t))[20:t.dataofs * 4]})
    return out


# A pure ACK Linux sent in a capture run (IPv4 header, then TCP header with timestamps) whose TCP
# checksum sums to zero: Linux wrote 0xffff at bytes 36-37, a recomputation gives 0x0000.
LINUX_ACK_FFFF = bytes.fromhex("450000340eab400040069ff1c6120002c61200011c20e1569c1fcd6efade224f"
                               "8010036bffff00000101080ab218a761ba9c4ee0")


def test_checksum_verification_accepts_both_zeros_and_catches_damage():
    assert checksums_ok(LINUX_ACK_FFFF) == (True, True)
    plus_zero = LINUX_ACK_FFFF[:36] + b"\x00\x00" + LINUX_ACK_FFFF[38:]
    assert checksums_ok(plus_zero) == (True, True)
    for i in range(len(LINUX_ACK_FFFF) * 8):  # any single flipped bit is caught, header or segment
        damaged = bytearray(LINUX_ACK_FFFF)
        damaged[i // 8] ^= 1 << (i % 8)
        assert checksums_ok(bytes(damaged)) != (True, True), f"a flipped bit in byte {i // 8} went unnoticed"


def opt(pkt, name):
    for k, v in pkt["opts"]:
        if k == name:
            return v if v is not None else True
    return None


def check_options_well_formed(p) -> None:
    """Walk the raw options: lengths consistent, known kinds with their RFC lengths."""
    b = p["raw_opts"]
    i = 0
    while i < len(b):
        kind = b[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        ln = b[i + 1]
        assert ln >= 2 and i + ln <= len(b), f"bad option length at {i}: {b.hex()}"
        assert {2: 4, 3: 3, 4: 2, 8: 10}.get(kind, ln) == ln, f"option {kind} has length {ln}"
        if kind == 5:
            assert (ln - 2) % 8 == 0 and ln >= 10
        i += ln
    assert len(b) % 4 == 0


def check_capture(pkts, etran_active: bool) -> dict:
    assert pkts, "nothing captured"
    bad = [p for p in pkts if not (p["ip_ok"] and p["tcp_ok"])]
    assert not bad, f"{len(bad)} packets with a bad checksum, e.g. {bad[0]}"
    for p in pkts:
        check_options_well_formed(p)
    ours = [p for p in pkts if p["from_etran"]]
    theirs = [p for p in pkts if not p["from_etran"]]
    synack = next(p for p in (theirs if etran_active else ours) if p["flags"] & SYN and p["flags"] & ACK)
    syns = [p for p in (ours if etran_active else theirs) if p["flags"] & SYN and not p["flags"] & ACK]
    assert syns
    syn = next((p for p in syns if opt(p, "Timestamp")[0] == opt(synack, "Timestamp")[1]), syns[-1])  # (retries)
    # RFC 7323 / 2018: the offers, and answers only to what was offered
    assert opt(syn, "MSS") and opt(synack, "MSS")
    for o in ("WScale", "SAckOK", "Timestamp"):
        assert opt(syn, o) is not None, f"the SYN offers no {o}"
        assert opt(synack, o) is not None, f"the SYN-ACK answers no {o}"
    assert opt(synack, "Timestamp")[1] == opt(syn, "Timestamp")[0], "SYN-ACK TSecr must echo the SYN's TSval"
    assert synack["ack"] == (syn["seq"] + 1) & 0xFFFFFFFF
    # RFC 3168: an ECN-setup SYN is SYN+ECE+CWR; the SYN-ACK accepts with ECE (not CWR)
    ecn = False
    if etran_active:
        assert syn["flags"] & (ECE | CWR) == ECE | CWR, "etran's SYN must request ECN"
        ecn = bool(synack["flags"] & ECE)
        assert not synack["flags"] & CWR
    else:
        assert not (syn["flags"] & ECE) or (synack["flags"] & ECE), "etran must accept an ECN request"
        ecn = bool(syn["flags"] & ECE and syn["flags"] & CWR)
        if not ecn:
            assert not synack["flags"] & ECE, "ECE on a SYN-ACK to a SYN without ECN setup"
    # after the handshake: no MSS/WS, timestamps on every segment, ECT(0) only on new data
    seen_data: set[int] = set()
    sack_blocks = 0
    for p in ours:
        if p["flags"] & SYN:
            continue
        assert opt(p, "MSS") is None and opt(p, "WScale") is None, "MSS/WS outside a SYN"
        if not p["flags"] & RST:
            assert opt(p, "Timestamp") is not None, f"a segment without timestamps: {p}"
        blocks = opt(p, "SAck")
        if blocks:
            sack_blocks += 1
            pairs = list(zip(blocks[::2], blocks[1::2]))
            assert len(pairs) <= 3, "at most 3 SACK blocks with timestamps"
            for left, right in pairs:
                assert 0 < (right - left) & 0xFFFFFFFF < 1 << 30
                assert 0 < (left - p["ack"]) & 0xFFFFFFFF < 1 << 30, "a SACK block at or below the ACK"
        ect = p["tos"] & 3
        assert ect in (0, 2), "etran sends Not-ECT or ECT(0), never CE or ECT(1)"
        if p["len"]:
            new = p["seq"] not in seen_data
            seen_data.add(p["seq"])
            if ect:
                assert ecn and new, "ECT(0) on a retransmission or without ECN negotiated"
            elif ecn and new:
                pass  # a segment the switch saw once may still have been a retransmission of a lost one
        else:
            assert ect == 0, "ECT on a pure ACK"
    assert any(p["len"] for p in ours), "etran sent no data"
    return {"packets": len(pkts), "ours": len(ours), "sack_acks": sack_blocks, "ecn": ecn}


@pytest.mark.kernel
def test_capture_etran_client_linux_server(etran_bed, app_pythonpath, apps, tmp_path):
    bed = etran_bed(hosts=2, rate_gbit=None, loss=0.02)
    path = str(tmp_path / "e2l.pcap")
    cap = capture(bed, "p1", path)
    try:
        run_bulk(bed, app_pythonpath, apps, "linux", "etran", mb=1, port=7200)
    finally:
        stop(cap)
    info = check_capture(decode(path, bed.hosts[0].ip), etran_active=True)
    assert info["ecn"], "Linux accepts ECN (tcp_ecn=2): the connection should use it"


@pytest.mark.kernel
def test_capture_linux_client_etran_server(etran_bed, app_pythonpath, apps, tmp_path):
    bed = etran_bed(hosts=2, rate_gbit=None, loss=0.02)
    path = str(tmp_path / "l2e.pcap")
    cap = capture(bed, "p2", path)
    try:
        run_bulk(bed, app_pythonpath, apps, "etran", "linux", mb=1, port=7201)
    finally:
        stop(cap)
    info = check_capture(decode(path, bed.hosts[1].ip), etran_active=False)
    assert info["sack_acks"] > 0, "with 2% loss etran's ACKs should carry SACK blocks"
