"""Small, bounded traffic generators for checking a test bed with kernel sockets.

Sockets are created by the calling thread inside a host's namespace (`Host.socket`), so
everything here runs in one process. Every loop is bounded in packets and in time.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from .bed import Host

SO_RCVBUFFORCE = 33
IP_RECVTOS = 13
IP_TOS_CMSG = 1  # the cmsg type of a received TOS byte (IP_TOS)
ECT0, CE = 0b10, 0b11


def udp_counters(host: Host) -> dict[str, int]:
    """The host's `Udp:` line of /proc/net/snmp (its own network namespace)."""
    with host.enter(), open("/proc/thread-self/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], (int(v) for v in rows[1][1:])))


@dataclass
class FlowResult:
    sent: int                       # datagrams sent (the `n` asked for plus the trailing `extra`)
    extra: int                      # trailing datagrams (they release a packet held for reordering)
    received: list[int] = field(default_factory=list)   # sequence numbers in arrival order
    tos: list[int] = field(default_factory=list)        # TOS byte of every received datagram
    seconds: float = 0.0

    @property
    def unique(self) -> set[int]:
        return set(self.received)

    @property
    def missing(self) -> int:
        return self.sent - len(self.unique)

    @property
    def duplicates(self) -> int:
        return len(self.received) - len(self.unique)

    @property
    def out_of_order(self) -> int:
        """Packets that arrived after one with a higher sequence number."""
        count, highest = 0, -1
        for s in self.received:
            if s < highest:
                count += 1
            highest = max(highest, s)
        return count

    @property
    def ce_marked(self) -> int:
        return sum(1 for t in self.tos if t & 3 == CE)


def udp_flow(src: Host, dst: Host, n: int = 10_000, size: int = 64, burst: int = 20, gap_s: float = 0.0002,
             tos: int | None = None, port: int = 9000, extra: int = 5, idle_s: float = 0.3,
             limit_s: float = 60.0, one_cpu: bool = True) -> FlowResult:
    """Send `n` + `extra` UDP datagrams (payload: a 4-byte sequence number, padded to `size`
    bytes) from `src` to `dst` in bursts of `burst` with `gap_s` pauses; receive on `dst` until
    `idle_s` passes without a datagram after the last one is sent (or `limit_s` in all).

    one_cpu: send from one CPU only (the sending thread's affinity is restored afterwards);
    a sender that migrates between CPUs can leave frames in two CPUs' veth backlogs, which
    reorders them on their own."""
    if size < 4:
        raise ValueError("size must hold the 4-byte sequence number")
    rx = dst.socket()
    tx = src.socket()
    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        rx.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
        rx.bind((dst.ip, port))
        rx.settimeout(idle_s)
        if tos is not None:
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        result = FlowResult(sent=0, extra=extra)
        deadline = time.monotonic() + limit_s
        done = threading.Event()

        def receive() -> None:
            while time.monotonic() < deadline:
                try:
                    data, anc, _, _ = rx.recvmsg(65536, 64)
                except socket.timeout:
                    if done.is_set():
                        return
                    continue
                (seq,) = struct.unpack_from("!I", data)
                result.received.append(seq)
                for level, kind, value in anc:
                    if level == socket.IPPROTO_IP and kind == IP_TOS_CMSG and value:
                        result.tos.append(value[0])

        thread = threading.Thread(target=receive, name="udp_flow-rx", daemon=True)
        thread.start()
        pad = bytes(size - 4)
        affinity = os.sched_getaffinity(0)
        if one_cpu:
            os.sched_setaffinity(0, {min(affinity)})
        start = time.monotonic()
        try:
            for seq in range(n + extra):
                if time.monotonic() > deadline:
                    break
                tx.sendto(struct.pack("!I", seq) + pad, (dst.ip, port))
                result.sent += 1
                if burst and seq % burst == burst - 1 and gap_s:
                    time.sleep(gap_s)
        finally:
            if one_cpu:
                os.sched_setaffinity(0, affinity)
            done.set()
        thread.join(limit_s)
        result.seconds = time.monotonic() - start
        return result
    finally:
        rx.close()
        tx.close()


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ping(src: Host, dst_ip: str, count: int = 1, timeout_s: float = 1.0) -> list[float]:
    """ICMP echo from `src` (a raw socket, no `ping` binary needed); round trip times in seconds
    of the replies that came back within `timeout_s` each."""
    rtts = []
    ident = os.getpid() & 0xFFFF
    with src.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(timeout_s)
        for seq in range(count):
            body = struct.pack("!d", time.monotonic()) + bytes(24)
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, _icmp_checksum(header + body), ident, seq) + body
            start = time.monotonic()
            s.sendto(packet, (dst_ip, 0))
            while True:
                left = timeout_s - (time.monotonic() - start)
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    data, addr = s.recvfrom(2048)
                except socket.timeout:
                    break
                ihl = (data[0] & 0xF) * 4
                typ, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if typ == 0 and rid == ident and rseq == seq and addr[0] == dst_ip:
                    rtts.append(time.monotonic() - start)
                    break
    return rtts
