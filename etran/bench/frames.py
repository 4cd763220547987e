"""Building and echoing raw Ethernet/IPv4/UDP frames (for AF_XDP benchmarks and checks)."""

from __future__ import annotations

import socket
import struct

ETH_HLEN = 14
IP_HLEN = 20
UDP_HLEN = 8
UDP_PAYLOAD_OFFSET = ETH_HLEN + IP_HLEN + UDP_HLEN  # 42
ETH_P_IP = 0x0800
IPPROTO_UDP = 17


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ip_checksum(header: bytes) -> int:
    """The Internet checksum (RFC 1071) of an IPv4 header whose checksum field is zero."""
    if len(header) % 2:
        header += b"\0"
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int,
              payload: bytes, ident: int = 0) -> bytes:
    """An Ethernet/IPv4/UDP frame with a valid IPv4 header checksum and UDP checksum 0
    (allowed for IPv4: "not computed"), so the payload may change without recomputing it."""
    udp_len = UDP_HLEN + len(payload)
    total = IP_HLEN + udp_len
    if total > 1500:
        raise ValueError(f"a {len(payload)}-byte payload does not fit a 1500-byte MTU")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0x4000, 64, IPPROTO_UDP, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    eth = mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP)
    return eth + ip + struct.pack("!HHHH", sport, dport, udp_len, 0) + payload


def echo_reply(f: bytes) -> bytes:
    """The reply to an Ethernet/IPv4 (no options)/UDP frame: MACs, IP addresses and ports
    swapped, everything else as it was.  Both checksums stay valid: swapping two 16-bit
    words of a one's-complement sum does not change it."""
    return f[6:12] + f[0:6] + f[12:26] + f[30:34] + f[26:30] + f[36:38] + f[34:36] + f[38:]


def pattern_payload(size: int, seq: int = 0) -> bytearray:
    """`size` bytes: an 8-byte big-endian sequence number, then a fixed byte pattern."""
    if size < 8:
        raise ValueError("the payload needs at least 8 bytes for the sequence number")
    p = bytearray(struct.pack("!Q", seq) + bytes((i * 7 + 3) & 0xFF for i in range(size - 8)))
    return p
