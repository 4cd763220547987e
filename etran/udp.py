"""UDP datagrams over etran: the smallest transport, socket-like.

    sock = etran.udp.UdpSocket()          # registers with the host's daemon on first use
    sock.bind(5000)                       # the daemon gives the port to this application
    sock.sendto(b"hello", ("198.18.0.2", 5000))
    data, addr = sock.recvfrom(timeout=1.0)

The library writes the headers it knows (the host's own MAC and address); the egress hook
checks them, checks that this application bound the source port, and writes the UDP
checksum. Datagrams to ports nobody bound through etran reach the kernel as usual.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque

from .errors import EtranError
from .lib.engine import Engine, default_engine

HEADERS = 42  # Ethernet 14 + IPv4 20 + UDP 8
MAX_PAYLOAD = 1500 - 28
# dst MAC (zero: the kernel fills it), src MAC, ethertype, IPv4 header, UDP header
_HDR = struct.Struct("!6s6sHBBHHHBBH4s4sHHHH")
_IPV4 = 0x0800
_DF = 0x4000
_PORTS = struct.Struct("!HHH")  # UDP source port, destination port, length
_MAX_CACHED = 4096  # cached peer addresses / headers per demultiplexer / socket


class _Demux:
    """The engine's handler for IP protocol 17: a frame goes to the socket bound to its port."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sockets: dict[int, UdpSocket] = {}
        # (source address, destination address, source port) as bytes -> (host, port): the
        # peers' address tuples are made once, not per datagram
        self._peers: dict[bytes, tuple[str, int]] = {}
        engine.register(socket.IPPROTO_UDP, self.on_frame)

    def on_frame(self, addr: int, length: int) -> None:
        buf = self.engine.buf
        sport, dport, udp_len = _PORTS.unpack_from(buf, addr + 34)
        sock = self.sockets.get(dport)
        if sock is None:
            return
        end = addr + 34 + udp_len
        if udp_len < 8 or end > addr + length:
            return
        key = buf[addr + 26:addr + 36]
        peer = self._peers.get(key)
        if peer is None:
            peer = self._peer(key, sport)
        sock._inbox.append((buf[addr + HEADERS:end], peer))

    def _peer(self, key: bytes, sport: int) -> tuple[str, int]:
        if len(self._peers) >= _MAX_CACHED:
            self._peers.clear()
        peer = self._peers[key] = (socket.inet_ntoa(key[:4]), sport)
        return peer


def _demux(engine: Engine) -> _Demux:
    d = engine.transport_state.get("udp")
    if d is None:
        d = engine.transport_state["udp"] = _Demux(engine)
    return d


class UdpSocket:
    """A UDP socket carried by etran. Blocking by default; settimeout/setblocking as in `socket`.

    `queue`: the deque received datagrams are appended to, as (data, (host, port)). Sockets
    given the same deque share it, so one check covers them all (what epoll does for kernel
    sockets; a client with a thousand sockets, say); recvfrom on any of them then returns the
    next datagram of any.
    """

    def __init__(self, engine: Engine | None = None, *,
                 queue: deque[tuple[bytes, tuple[str, int]]] | None = None) -> None:
        self.engine = engine or default_engine()
        self._demux = _demux(self.engine)
        self._inbox: deque[tuple[bytes, tuple[str, int]]] = deque() if queue is None else queue
        self.port = 0
        self.timeout: float | None = None
        self._closed = False
        s = self.engine.session
        self._mac = s.host_mac_bytes
        self._ip = s.host_ip_bytes
        # destination -> (payload length, the 42 header bytes): a datagram to a known peer
        # copies a ready header instead of packing 17 fields
        self._headers: dict[tuple[str, int], tuple[int, bytes]] = {}

    # ---- socket-like API -------------------------------------------------------------
    def bind(self, address: int | tuple[str, int] = 0) -> None:
        port = address[1] if isinstance(address, tuple) else int(address)
        if self.port:
            raise EtranError(f"this socket is already bound to port {self.port}")
        self.port = self.engine.session.request("udp.bind", port=port)["port"]
        self._demux.sockets[self.port] = self

    def getsockname(self) -> tuple[str, int]:
        return (self.engine.session.host_ip, self.port)

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def setblocking(self, flag: bool) -> None:
        self.timeout = None if flag else 0.0

    def fileno(self) -> int:
        """The engine's AF_XDP socket, for selectors: readable when frames wait in the ring
        (shared by every etran socket of this process). After a wake-up, recvfrom on a
        non-blocking socket until BlockingIOError: the frames may be another socket's."""
        return self.engine.xsk.fileno()

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot: `queued`, the datagrams waiting in this socket's receive queue; and the
        frame counters of the process's engine (all its etran sockets): `rx_frames` received,
        `tx_frames` sent, `blank_frames` sent blank for the kernel to fill (ACKs, GRANTs)."""
        e = self.engine
        return {"queued": len(self._inbox), "rx_frames": e.rx_frames, "tx_frames": e.tx_frames,
                "blank_frames": e.blank_frames}

    def sendto(self, data: bytes | bytearray | memoryview, address: tuple[str, int]) -> int:
        n = len(data)
        try:
            h = self._headers.get(address)
        except TypeError:  # an unhashable address (a list): the slow path checks it
            h = None
        if h is None or h[0] != n:  # empty until bound, emptied by close()
            h = self._header(n, address)
        self.engine.send(h[1], data, self.timeout)
        return n

    def _header(self, n: int, address: tuple[str, int]) -> tuple[int, bytes]:
        """Check a datagram and its destination; the header to send it with (cached)."""
        if self._closed:
            raise EtranError("the socket is closed")
        if not self.port:
            self.bind(0)
        if n > MAX_PAYLOAD:
            raise EtranError(f"a datagram of {n} bytes does not fit one {MAX_PAYLOAD}-byte etran UDP frame")
        host, port = address
        try:
            dst = socket.inet_aton(host)
        except (OSError, TypeError):
            raise EtranError(f"{host!r} is not an IPv4 address") from None
        hdr = _HDR.pack(b"\0" * 6, self._mac, _IPV4, 0x45, 0, 28 + n, 0, _DF, 64, socket.IPPROTO_UDP, 0,
                        self._ip, dst, self.port, port, 8 + n, 0)
        h = (n, hdr)
        if len(self._headers) >= _MAX_CACHED:
            self._headers.clear()
        self._headers[(host, port)] = h
        return h

    def recvfrom(self, bufsize: int = 65536, timeout: float | None = ...) -> tuple[bytes, tuple[str, int]]:  # type: ignore[assignment]
        """The next datagram; raises TimeoutError (or BlockingIOError when non-blocking)."""
        inbox = self._inbox
        if not inbox:
            if timeout is ...:
                timeout = self.timeout
            self._wait(timeout)
        data, addr = inbox.popleft()
        if len(data) > bufsize:
            data = data[:bufsize]
        return data, addr

    def _wait(self, timeout: float | None) -> None:
        """Poll the engine until the inbox has a datagram, or raise."""
        inbox = self._inbox
        poll = self.engine.poll
        if timeout is None:
            while not inbox:
                poll(None)
            return
        if timeout > 0:
            deadline = time.monotonic() + timeout
            poll(timeout)
            while not inbox:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                poll(left)
        else:
            poll(0)
        if not inbox:
            if timeout == 0:
                raise BlockingIOError("no datagram is waiting")
            raise TimeoutError(f"no datagram within {timeout} s")

    def recv(self, bufsize: int = 65536) -> bytes:
        return self.recvfrom(bufsize)[0]

    async def recvfrom_async(self, timeout: float | None = None) -> tuple[bytes, tuple[str, int]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            self.engine.poll(0)
            if self._inbox:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise asyncio.TimeoutError(f"no datagram within {timeout} s")
            await self.engine.wait_async(left)
        return self._inbox.popleft()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._headers.clear()
        if self.port:
            self._demux.sockets.pop(self.port, None)
            try:
                self.engine.session.request("udp.unbind", port=self.port)
            except EtranError:
                pass

    def __enter__(self) -> UdpSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
