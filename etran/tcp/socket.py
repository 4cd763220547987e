"""TCP over etran for applications: a socket-like API on the engine, mirroring `socket`.

    import etran.tcp
    srv = etran.tcp.create_server(("", 8080))        # listening socket (the daemon owns the port)
    conn, peer = srv.accept()
    conn.sendall(conn.recv(4096))

    s = etran.tcp.create_connection(("198.18.0.2", 8080), timeout=5)
    s.sendall(b"hello"); print(s.recv(4096)); s.close()

What the library does and what it may not: it keeps the byte stream (unacknowledged data to
(re)send, received data to reassemble) in its own memory and writes segments with the
sequence number and payload; the kernel's egress hook writes every other header field from
the connection's state (ACK number, window, timestamps, ECN, checksums) and drops whatever
is beyond min(cwnd, peer window) or outside [snd_una, snd_nxt]. The library reads snd_una,
the send limit, retransmission requests and the state from the flow's published slot (a
read-only mapping) and paces itself by them. Handshakes and teardown decisions are the
daemon's; the library asks for them (`tcp.connect`, `tcp.accept`, `tcp.close`).
"""

from __future__ import annotations

import atexit
import errno
import socket as _socket
import struct
import threading
import time
from typing import Any

from ..errors import EtranError
from ..kernel.structs import TcpFlowFlags as F
from ..kernel.structs import TcpKState as S
from ..kernel.structs import TcpPub as P
from ..lib.engine import Engine, default_engine

# the kernel's enums as plain ints (enum arithmetic costs microseconds per packet in CPython)
TCP_F_FIN_ACKED = int(F.TCP_F_FIN_ACKED)
TCP_F_LOSS = int(F.TCP_F_LOSS)
TCP_F_RECOVERY = int(F.TCP_F_RECOVERY)
TCP_F_RESET = int(F.TCP_F_RESET)
TCP_PUB_LIMIT = int(P.TCP_PUB_LIMIT)
TCP_PUB_RTX = int(P.TCP_PUB_RTX)
TCP_PUB_SND = int(P.TCP_PUB_SND)
TCP_PUB_STATE = int(P.TCP_PUB_STATE)
TCP_PUB_TAG = int(P.TCP_PUB_TAG)
TCP_PUB_WINDOWS = int(P.TCP_PUB_WINDOWS)
TCP_PUB_FIN = int(P.TCP_PUB_FIN)
TCP_S_CLOSED = int(S.TCP_S_CLOSED)
TCP_S_ESTABLISHED = int(S.TCP_S_ESTABLISHED)

__all__ = ["SNDBUF", "STATS_KEYS", "TcpSocket", "create_connection", "create_server", "ready_connections"]

TCP_OFF = 34                     # Ethernet 14 + IPv4 20 (the kernel sends no IP options)
SNDBUF = 4 << 20                # bytes the library holds unacknowledged or unsent per connection
LINGER = 10.0                   # close() waits this long for our data and FIN to be acknowledged
M32 = 0xFFFFFFFF
_HDR = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")
_TS_PLACEHOLDER = b"\x01\x01\x08\x0a" + bytes(8)
_IP_VAR = struct.Struct("!HH")           # at 16: IPv4 total length, identification
_SEQ_ACK = struct.Struct("!II")          # at 38: TCP sequence number, ACK field (our window's right edge)
TCPF_FIN, TCPF_SYN, TCPF_RST, TCPF_PSH, TCPF_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_SACK = struct.Struct("!II")
# at 16: IPv4 total length, source address, TCP ports, sequence number, data offset, flags (one C call per frame)
_RX = struct.Struct("!H8x4s4xHHI4xBB")
_mono_ns = time.monotonic_ns
# the state word's bits _push's fast path needs clear (or equal to ESTABLISHED): state, reset, recovery, loss
_FAST_MASK = M32 | ((TCP_F_RESET | TCP_F_RECOVERY | TCP_F_LOSS) << 32)
MSG_PEEK = int(_socket.MSG_PEEK)  # a plain int: IntFlag arithmetic costs microseconds
PACE_MIN_BURST = 16             # segments; the egress hook's TCP_PACE_MIN_BURST
STATS_KEYS = ("segments", "retransmits", "bytes_sent", "bytes_received", "blocked", "paced")  # TcpSocket.stats


def unwrap(x: int, ref: int) -> int:
    """The integer closest to `ref` that is `x` modulo 2**32."""
    return ref + (((x - ref) + (1 << 31)) & M32) - (1 << 31)


class _Demux:
    """The engine's handler for IP protocol 6: frames to their connection or listener."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conns: dict[tuple[bytes, int, int], TcpSocket] = {}
        self.listeners: dict[int, TcpSocket] = {}
        self.dirty: set[TcpSocket] = set()
        self.pushed: set[TcpSocket] = set()       # the connections the last poll() pushed
        self.heard: set[TcpSocket] = set()        # connections with news since the asyncio pump looked
        self.ignored: dict[tuple[bytes, int, int], float] = {}
        engine.register(_socket.IPPROTO_TCP, self.on_frame)
        atexit.register(self._at_exit)

    def on_frame(self, addr: int, length: int) -> None:
        buf = self.engine.buf
        tot, raddr, rport, lport, seq, doff, flags = _RX.unpack_from(buf, addr + 16)
        key = (raddr, rport, lport)
        c = self.conns.get(key)
        if c is not None:
            if c._connected:                 # the common case, one call less per frame
                c._rx(buf, addr, tot, seq, doff, flags)
            else:
                c._on_frame(addr, length)
            self.dirty.add(c)
            return
        lst = self.listeners.get(key[2])
        if lst is not None and key not in self.ignored:
            lst._on_new(key, addr, length)

    def poll(self, timeout: float | None) -> int:
        """One RX batch; then let the connections that heard something send what they may."""
        eng = self.engine
        n = eng.poll(timeout)
        if self.dirty:
            self.pushed = dirty = self.dirty
            self.dirty = set()
            for c in dirty:
                c._push()
            eng.flush()
            self.heard |= dirty
        elif self.pushed:
            self.pushed = set()
        return n

    def _at_exit(self) -> None:
        for c in list(self.conns.values()):
            try:
                c.close(linger=3.0)
            except Exception:  # noqa: BLE001 (never let one failure stop the loop)
                pass


def _demux(engine: Engine) -> _Demux:
    d = engine.transport_state.get("tcp")
    if d is None:
        d = engine.transport_state["tcp"] = _Demux(engine)
    return d


class TcpSocket:
    """A TCP socket carried by etran: listening (create_server) or connected."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or default_engine()
        self._d = _demux(self.engine)
        self.timeout: float | None = _socket.getdefaulttimeout()
        self._listening = False
        self._connected = False
        self._closed = False
        self.local: tuple[str, int] = (self.engine.session.host_ip, 0)
        self.remote: tuple[str, int] | None = None
        self.cc = "dctcp"
        # listening
        self._accept_q: list[TcpSocket] = []
        # connected
        self._key: tuple[bytes, int, int] | None = None
        self._early: list[bytes] = []
        self._p: dict[str, Any] = {}
        self._w = None
        self._stats = dict.fromkeys(STATS_KEYS, 0)

    # ---- creation ------------------------------------------------------------------------
    def _listen(self, port: int, backlog: int, cc: str) -> None:
        reply = self.engine.session.request("tcp.listen", port=port, backlog=backlog, cc=cc)
        self.local = (self.engine.session.host_ip, reply["port"])
        self.cc = cc
        self._listening = True
        self._d.listeners[reply["port"]] = self

    def _connect(self, host: str, port: int, timeout: float | None, cc: str) -> None:
        eng = self.engine
        self._connect_start(host, port, cc)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with eng.lock:
                if self._connect_poll():
                    return
            if deadline is not None and time.monotonic() >= deadline:
                self._abort_request()
                raise TimeoutError(errno.ETIMEDOUT, f"connection to {host}:{port} timed out")
            with eng.lock:
                self._d.poll(0.001)

    def _connect_start(self, host: str, port: int, cc: str) -> None:
        """Ask the daemon to open the connection (its SYN goes out now)."""
        eng = self.engine
        try:
            _socket.inet_aton(host)
        except OSError:
            host = _socket.gethostbyname(host)
        with eng.lock:
            reply = eng.session.request("tcp.connect", host=host, port=port, cc=cc)
            self.cc = cc
            self.local = (eng.session.host_ip, reply["lport"])
            self.remote = (host, port)
            self._pub_i = reply["pub"]
            self._tag = reply["tag"]
            self._key = (_socket.inet_aton(host), port, reply["lport"])
            self._d.conns[self._key] = self  # frames before the parameters are known wait in _early

    def _connect_poll(self) -> bool:
        """True once the handshake completed (and the connection is set up); raises if it failed."""
        host, port = self.remote
        w = self.engine.session.pub[self._pub_i].w
        if w[TCP_PUB_TAG] != self._tag:
            return False
        st = w[TCP_PUB_STATE]
        state, flags = st & M32, st >> 32
        if state == TCP_S_CLOSED:
            self._drop_conn()
            if flags & TCP_F_RESET:
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {host}:{port} refused")
            raise TimeoutError(errno.ETIMEDOUT, f"connection to {host}:{port} timed out")
        if state != TCP_S_ESTABLISHED:
            return False
        eng = self.engine
        info = eng.session.request("tcp.info", raddr=host, rport=port, lport=self.local[1])["flow"]
        self._setup(info)
        early, self._early = self._early, []
        for frame in early:
            self._on_frame_bytes(frame)
        self._push()
        eng.flush()
        return True

    def _setup(self, p: dict[str, Any]) -> None:
        s = self.engine.session
        self._p = p
        self._pub_i = p["pub"]
        self._w = None
        self._tag = p["tag"]
        self.mss = int(p["mss"])
        self._ts = bool(p["ts"])
        self._hlen = 14 + 20 + (32 if self._ts else 20)
        self._doff = self._hlen - 34    # a TCP header without SACK blocks: timestamps only, or no options
        raddr = _socket.inet_aton(p["raddr"])
        self.remote = (p["raddr"], int(p["rport"]))
        self.local = (s.host_ip, int(p["lport"]))
        self._key = (raddr, int(p["rport"]), int(p["lport"]))
        self._tmpl = t = (b"\0" * 6, s.host_mac_bytes, 0x0800, 0x45, 0, 0, 0, 0x4000, 64, 6, 0, s.host_ip_bytes,
                          raddr, int(p["lport"]), int(p["rport"]))
        # every segment starts as a copy of this header; _emit then writes what changes
        hdr = bytearray(self._hlen)
        _HDR.pack_into(hdr, 0, t[0], t[1], t[2], t[3], t[4], 0, 0, t[7], t[8], t[9], 0, t[11], t[12], t[13], t[14],
                       0, 0, (self._hlen - 34) << 2, TCPF_ACK | TCPF_PSH, 0, 0, 0)
        if self._ts:
            hdr[54:66] = _TS_PLACEHOLDER
        self._hdr = bytes(hdr)
        self._hbuf = hdr   # _emit's copy: the fields that change are patched in place
        # send side (unwrapped sequence numbers)
        self._snd_base = (int(p["iss"]) + 1)          # sequence number of _sbuf[_soff]
        self._sbuf = bytearray()
        self._soff = 0
        self._snd_nxt = self._snd_base                # next byte to (re)send
        self._sent_hi = self._snd_base                # highest byte sent + 1 (the kernel's snd_nxt)
        self._fin_wanted = False
        self._fin_sent = False
        self._rtx_epoch = int(self.engine.session.pub[self._pub_i].w[TCP_PUB_RTX]) & M32
        self._rtx_done: set[int] = set()
        self._sacked: list[tuple[int, int]] = []
        self._stall_at: float | None = None
        self._stall_nxt = 0
        self._ip_id = 0
        self._pace_tokens = 1 << 62                   # our copy of the hook's pacing bucket (see _pace): full
        self._pace_t = time.monotonic_ns()
        # receive side
        self._rcv_nxt = int(p["irs"]) + 1
        self._rcv_wnd = int(p["rcv_wnd"])
        self._edge_sent = self._rcv_nxt + self._rcv_wnd
        self._rbuf = bytearray()
        self._roff = 0
        self._ooo: dict[int, bytes] = {}
        self._peer_fin: int | None = None
        self._eof = False
        self._reset = False
        self._reset_why = ""
        self._shut_rd = False
        self._connected = True
        self._stats = dict.fromkeys(STATS_KEYS, 0)

    # ---- frames in ------------------------------------------------------------------------
    def _on_new(self, key: tuple[bytes, int, int], addr: int, length: int) -> None:
        """A listener hears of a connection the kernel just established."""
        try:
            info = self.engine.session.request("tcp.accept", raddr=_socket.inet_ntoa(key[0]), rport=key[1],
                                               lport=key[2])["flow"]
        except EtranError:
            self._d.ignored[key] = time.monotonic()
            if len(self._d.ignored) > 4096:
                self._d.ignored.clear()
            return
        c = TcpSocket(self.engine)
        c.cc = self.cc
        c.timeout = None
        c._setup(info)
        self._d.conns[c._key] = c
        c._on_frame(addr, length)
        self._accept_q.append(c)

    def _on_frame(self, addr: int, length: int) -> None:
        if not self._connected:
            self._early.append(bytes(self.engine.buf[addr:addr + length]))
            return
        self._on_frame_bytes(self.engine.buf, addr)

    def _on_frame_bytes(self, buf, addr: int = 0) -> None:
        tot, _, _, _, seq, doff, flags = _RX.unpack_from(buf, addr + 16)
        self._rx(buf, addr, tot, seq, doff, flags)

    def _rx(self, buf, addr: int, tot: int, seq: int, doff: int, flags: int) -> None:
        """One segment of this connection (fields already parsed by the demux)."""
        if flags & TCPF_RST:
            self._reset = True
            self._reset_why = "RST received"
            return
        t = addr + TCP_OFF
        doff = (doff >> 4) * 4
        plen = tot - 20 - doff
        rn = self._rcv_nxt
        if seq == (rn & M32) and not flags & TCPF_FIN and not self._ooo and doff == self._doff:
            # in-order data (or a pure ACK) without SACK blocks, FIN or holes: the request/response path
            if plen > 0:
                self._rbuf += buf[t + doff:t + doff + plen]
                self._rcv_nxt = rn + plen
                self._stats["bytes_received"] += plen
                rn += plen
            if self._peer_fin is not None and rn >= self._peer_fin:
                self._eof = True
            return
        if doff > 32 or (doff > 20 and not self._ts):
            self._parse_sack(buf, t + 20, doff - 20)
        seq = rn + (((seq - rn) + (1 << 31)) & M32) - (1 << 31)         # unwrap(seq, rn), inlined
        if plen > 0:
            start = t + doff
            if seq <= rn:
                if seq + plen > rn:
                    self._rbuf += buf[start + rn - seq:start + plen]
                    self._rcv_nxt = rn = seq + plen
                    self._stats["bytes_received"] += plen
                    ooo = self._ooo
                    while ooo:
                        s2 = min(ooo)
                        if s2 > rn:
                            break
                        data = ooo.pop(s2)
                        if s2 + len(data) > rn:
                            self._rbuf += data[rn - s2:]
                            self._rcv_nxt = rn = s2 + len(data)
            elif len(self._ooo) < 4096:
                self._ooo[seq] = bytes(buf[start:start + plen])
        if flags & TCPF_FIN:
            self._peer_fin = seq + max(plen, 0)
        if self._peer_fin is not None and self._rcv_nxt >= self._peer_fin:
            self._eof = True

    def _parse_sack(self, buf, o: int, n: int) -> None:
        i = 0
        while i < n:
            kind = buf[o + i]
            if kind == 0:
                return
            if kind == 1:
                i += 1
                continue
            if i + 1 >= n:
                return
            ln = buf[o + i + 1]
            if ln < 2:
                return
            if kind == 5:
                for j in range(o + i + 2, o + i + ln - 7, 8):
                    a, b = _SACK.unpack_from(buf, j)
                    a, b = unwrap(a, self._snd_base), unwrap(b, self._snd_base)
                    if self._snd_base <= a < b <= self._sent_hi:
                        self._add_sack(a, b)
            i += ln

    def _add_sack(self, a: int, b: int) -> None:
        out = []
        for x, y in self._sacked:
            if y < a or x > b:
                out.append((x, y))
            else:
                a, b = min(a, x), max(b, y)
        out.append((a, b))
        out.sort()
        self._sacked = out[-16:]

    def _is_sacked(self, s: int, e: int) -> bool:
        for x, y in self._sacked:
            if x <= s and e <= y:
                return True
        return False

    # ---- frames out ------------------------------------------------------------------------
    def _pub(self):
        w = self._w
        if w is None:  # a live view of the kernel's published slot (no copy)
            w = self._w = self.engine.session.pub[self._pub_i].w
        return w

    def _push(self) -> None:
        """Send what the kernel allows now: retransmissions it asked for, new data, the FIN."""
        if not self._connected or self._reset:
            return
        w = self._w
        if w is None:
            w = self._pub()
        if w[TCP_PUB_TAG] != self._tag:
            return
        if (w[TCP_PUB_STATE] & _FAST_MASK != TCP_S_ESTABLISHED or self._fin_wanted or self._sacked
                or w[TCP_PUB_RTX] & M32 != self._rtx_epoch):
            self._push_slow(w)
            return
        # established without loss, recovery or FIN, no SACK state: the request/response path.
        # Same decisions as _push_slow, with fewer calls.
        snd = w[TCP_PUB_SND]
        base = self._snd_base
        una = base + ((((snd & M32) - base) + 0x80000000) & M32) - 0x80000000
        knxt = base + ((((snd >> 32) - base) + 0x80000000) & M32) - 0x80000000
        hi = self._sent_hi
        if knxt != una or hi != una or self._snd_nxt != una or una < base:
            self._push_slow(w)  # data in flight (or a stall to watch)
            return
        self._stall_at = None
        sbuf = self._sbuf
        data_end = base + len(sbuf) - self._soff
        if una > base:
            if una >= data_end:
                if sbuf:
                    self._sbuf = sbuf = bytearray()
                self._soff = 0
            else:
                self._soff += una - base
                if self._soff > (1 << 20) and self._soff * 2 > len(sbuf):
                    del sbuf[:self._soff]
                    self._soff = 0
            self._snd_base = base = una
        if una >= data_end:
            return  # nothing to send: most calls on a request/response path end here
        mss = self.mss
        limit = base + ((((w[TCP_PUB_LIMIT] & M32) - base) + 0x80000000) & M32) - 0x80000000
        # the pacing bucket (see _pace), inlined
        now = _mono_ns()
        cwnd = w[TCP_PUB_WINDOWS] & M32
        rate = w[TCP_PUB_FIN] >> 32 or cwnd * 1000
        cap = (cwnd if cwnd > PACE_MIN_BURST * mss else PACE_MIN_BURST * mss) - mss
        dt = now - self._pace_t
        self._pace_t = now
        tokens = self._pace_tokens + rate * (dt if dt < 1_000_000_000 else 1_000_000_000) // 1_000_000_000
        if tokens > cap:
            tokens = cap
        nxt = una
        while nxt < data_end:
            n = data_end - nxt
            if n > mss:
                n = mss
            if nxt + n > limit:
                if nxt != una or limit > una:
                    self._stats["blocked"] += 1
                break
            if n > tokens:
                self._stats["paced"] += 1
                break
            tokens -= n
            self._emit(nxt, n, False)
            nxt += n
        self._snd_nxt = nxt
        if nxt > hi:
            self._sent_hi = nxt
        self._pace_tokens = tokens

    def _push_slow(self, w) -> None:
        """_push in general: losses, recovery, FIN, data in flight, stalls."""
        st = w[TCP_PUB_STATE]
        state, flags = st & M32, st >> 32
        if flags & TCP_F_RESET or state == TCP_S_CLOSED and not flags & TCP_F_FIN_ACKED:
            self._reset = True
            self._reset_why = f"kernel state {state} flags {flags:#x}"
            return
        base = self._snd_base
        una = unwrap(w[TCP_PUB_SND] & M32, base)
        data_end = base + len(self._sbuf) - self._soff
        if una > base:
            k = min(una, data_end) - base
            if k > 0:
                self._soff += k
                self._snd_base = base = base + k
                if self._soff > (1 << 20) and self._soff * 2 > len(self._sbuf):
                    del self._sbuf[:self._soff]
                    self._soff = 0
            if self._sacked and self._sacked[0][0] < base:
                self._sacked = [(max(x, base), y) for x, y in self._sacked if y > base]
        if self._snd_nxt < una:
            self._snd_nxt = min(una, data_end + (1 if self._fin_sent else 0))
        knxt = unwrap(w[TCP_PUB_SND] >> 32, base)
        if knxt == una and self._sent_hi > knxt:
            # the kernel holds nothing in flight but we believe we sent more: either frames are
            # still on their way to the hook, or it refused them (a limit that moved down under
            # us). If that lasts, send again from where the kernel is.
            now = time.monotonic()
            if self._stall_at is None or self._stall_nxt != knxt:
                self._stall_at, self._stall_nxt = now, knxt
            elif now - self._stall_at > 0.003:
                self._stall_at = None
                self._sent_hi = self._snd_nxt = knxt
                if self._fin_sent and knxt <= data_end:
                    self._fin_sent = False
        else:
            self._stall_at = None
        if state != TCP_S_ESTABLISHED:
            return
        rtx = w[TCP_PUB_RTX]
        epoch = rtx & M32
        if epoch != self._rtx_epoch:
            self._rtx_epoch = epoch
            self._rtx_done = set()
            if flags & TCP_F_LOSS:                          # RTO: go back to snd_una
                self._snd_nxt = una
                self._sacked = []
                self._fin_sent = self._fin_sent and False
        recovering = flags & TCP_F_RECOVERY
        if not recovering and self._snd_nxt >= data_end and (self._fin_sent or not self._fin_wanted):
            return  # nothing to (re)send: most calls on a request/response path end here
        limit = unwrap(w[TCP_PUB_LIMIT] & M32, base)
        mss = self.mss
        tokens = self._pace(w)
        if recovering:
            # SACK-based: resend the holes below the highest SACKed byte, each once per episode
            top = self._sacked[-1][1] if self._sacked else una + 1
            s = una
            n = 0
            while s < top and s < self._sent_hi and n < 64:
                e = min(s + mss, data_end, self._sent_hi)
                if e <= s:
                    break
                if s not in self._rtx_done and not self._is_sacked(s, e):
                    if e > limit and s != una or e - s > tokens:
                        break
                    tokens -= e - s
                    self._emit(s, e - s, False)
                    self._rtx_done.add(s)
                    self._stats["retransmits"] += 1
                    n += 1
                s = e
        # new data (or go-back-N resends after an RTO)
        nxt = self._snd_nxt
        while nxt < data_end:
            n = min(mss, data_end - nxt)
            if nxt + n > limit:
                if nxt == una and limit <= una:
                    break
                if nxt + n > limit:
                    self._stats["blocked"] += 1
                    break
            if n > tokens:
                self._stats["paced"] += 1
                break
            fin = self._fin_wanted and nxt + n == data_end and nxt + n + 1 <= limit
            if nxt < self._sent_hi:
                if recovering and (nxt in self._rtx_done or self._is_sacked(nxt, nxt + n)):
                    nxt += n
                    continue
                self._stats["retransmits"] += 1
            tokens -= n
            self._emit(nxt, n, fin)
            nxt += n
            if fin:
                self._fin_sent = True
                nxt += 1
        if self._fin_wanted and not self._fin_sent and nxt == data_end and data_end + 1 <= max(limit, una + 1):
            self._emit(data_end, 0, True)
            self._fin_sent = True
            nxt = data_end + 1
        self._snd_nxt = nxt
        self._sent_hi = max(self._sent_hi, nxt)
        self._pace_tokens = tokens

    def _pace(self, w) -> int:
        """Bytes we may send now: the hook's pacing bucket as we can know it.

        The hook refills its bucket at the published rate (gain * cwnd / srtt, bytes/s) up to
        twice max(cwnd, PACE_MIN_BURST segments) and refuses data frames beyond it. Our copy
        refills from an earlier clock reading and holds less than half of that, so a paced
        application is not refused even when the rate or cwnd changed since it looked."""
        now = time.monotonic_ns()
        cwnd = w[TCP_PUB_WINDOWS] & M32
        rate = w[TCP_PUB_FIN] >> 32 or cwnd * 1000
        cap = max(cwnd, PACE_MIN_BURST * self.mss) - self.mss
        dt = min(now - self._pace_t, 1_000_000_000)
        self._pace_t = now
        return min(cap, self._pace_tokens + rate * dt // 1_000_000_000)

    def _emit(self, seq: int, n: int, fin: bool) -> None:
        """One segment into a TX frame: the prebuilt header, then the fields that change (the
        kernel writes the rest); cheaper than packing all 22 header fields per segment."""
        eng = self.engine
        a = eng.tx_frame()
        if a < 0:
            a = eng.tx_frame_wait(5.0)
        buf = eng.buf
        hl = self._hlen
        h = self._hbuf
        self._ip_id = ip_id = (self._ip_id + 1) & 0xFFFF
        # our window's right edge: what we have read plus the window (the hook takes it from the ACK field)
        edge = self._rcv_nxt - (len(self._rbuf) - self._roff) + self._rcv_wnd
        if edge > self._edge_sent:
            self._edge_sent = edge
        _IP_VAR.pack_into(h, 16, hl - 14 + n, ip_id)
        _SEQ_ACK.pack_into(h, 38, seq & M32, edge & M32)
        h[47] = TCPF_ACK | TCPF_PSH | TCPF_FIN if fin else TCPF_ACK | TCPF_PSH
        buf[a:a + hl] = h
        if n:
            off = self._soff + seq - self._snd_base
            buf[a + hl:a + hl + n] = self._sbuf[off:off + n]
        eng.commit(hl + n)
        st = self._stats
        st["segments"] += 1
        st["bytes_sent"] += n

    def _send_window_update(self) -> None:
        """A pure ACK from the current state (the kernel writes it)."""
        if self._connected and not self._closed:
            self._emit(self._sent_hi, 0, False)
            self.engine.flush()

    # ---- waiting ---------------------------------------------------------------------------------
    def _wait(self, ready, timeout: float | None, what: str, checked: bool = False) -> None:
        """Run the engine until ready() (holding the engine's lock only while polling).
        `checked`: the caller just found ready() false (one check less)."""
        eng = self.engine
        if not checked:
            with eng.lock:
                if ready():  # the common case on a request/response path: no clock, no poll
                    return
        deadline = None if timeout is None else time.monotonic() + timeout
        step0 = 0.0021 if eng.busy_poll or threading.active_count() <= 1 else 0.002
        polled = False
        while True:
            with eng.lock:
                if ready():
                    return
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0 and not polled:
                    # non-blocking (or expired): take what the ring holds before giving up
                    polled = True
                    self._d.poll(0)
                    if self._connected:
                        self._push()
                        eng.flush()
                    if ready():
                        return
                if left is not None and left <= 0:
                    if timeout == 0:
                        raise BlockingIOError(errno.EAGAIN, f"{what} would block")
                    raise TimeoutError(errno.ETIMEDOUT, f"{what} timed out")
                step = step0 if left is None else min(step0, left)
                self._d.poll(step)
                if self._connected and self not in self._d.pushed:
                    # nothing for us in that batch (or a timeout): what time alone changes
                    # (the pacing bucket, a stall) may still let us send; _Demux.poll already
                    # pushed the connections that heard something
                    self._push()
                    eng.flush()

    # ---- the socket API -------------------------------------------------------------------------
    def settimeout(self, timeout: float | None) -> None:
        self.timeout = None if timeout is None else float(timeout)

    def gettimeout(self) -> float | None:
        return self.timeout

    def setblocking(self, flag: bool) -> None:
        self.timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self.timeout != 0.0

    def fileno(self) -> int:
        """The engine's AF_XDP socket, for selectors: readable when frames wait in the ring.
        As with SSL sockets, data may already sit in the library: after a wake-up, recv on a
        non-blocking socket until BlockingIOError before selecting again."""
        return self.engine.xsk.fileno()

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of this connection's library counters (zeros until it is connected):

        segments        segments written (data, FIN, window updates; retransmissions too)
        retransmits     of them, data sent again (SACK recovery, a retransmission request, an RTO)
        bytes_sent      payload bytes written, retransmissions included
        bytes_received  payload bytes of segments that arrived in order (not those queued out of order)
        blocked         times sending stopped at the send limit (congestion or peer window)
        paced           times sending stopped to keep to the pacing rate
        The daemon's view of the flow (cwnd, RTT, DCTCP's alpha) is flow_stats()."""
        return dict(self._stats)

    def getsockname(self) -> tuple[str, int]:
        return self.local

    def getpeername(self) -> tuple[str, int]:
        if self.remote is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return self.remote

    @property
    def family(self) -> int:
        return _socket.AF_INET

    @property
    def type(self) -> int:
        return _socket.SOCK_STREAM

    @property
    def proto(self) -> int:
        return _socket.IPPROTO_TCP

    def accept(self) -> tuple[TcpSocket, tuple[str, int]]:
        if not self._listening:
            raise OSError(errno.EINVAL, "accept() on a socket that is not listening")
        self._wait(lambda: bool(self._accept_q) or self._closed, self.timeout, "accept")
        if self._closed:
            raise OSError(errno.EBADF, "the listening socket was closed")
        c = self._accept_q.pop(0)
        return c, c.remote

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "the socket is closed")
        if not self._connected:
            raise OSError(errno.ENOTCONN, "the socket is not connected")

    def send(self, data) -> int:
        if self._closed or not self._connected:
            self._check_open()
        if self._fin_wanted:
            raise BrokenPipeError(errno.EPIPE, "send after shutdown")
        if type(data) is bytes or type(data) is bytearray:
            mv = data
        else:
            mv = memoryview(data).cast("B")
        if not len(mv):
            return 0
        eng = self.engine
        if not self._reset:
            with eng.lock:
                room = SNDBUF - (len(self._sbuf) - self._soff)
                if room > 0 and not self._reset:
                    # room in the send buffer (the common case): no waiting, one _push
                    if len(mv) <= room:
                        self._sbuf += mv
                        n = len(mv)
                    else:
                        n = room
                        self._sbuf += memoryview(mv)[:n]
                    self._push()
                    eng.flush()
                    return n
        mv = memoryview(mv).cast("B")

        def room() -> bool:
            if self._reset or len(self._sbuf) - self._soff < SNDBUF:
                return True  # (the _push below sends; one _push per send on the hot path)
            self._push()
            return len(self._sbuf) - self._soff < SNDBUF

        self._wait(room, self.timeout, "send")
        if self._reset:
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
        eng = self.engine
        with eng.lock:
            n = min(len(mv), SNDBUF - (len(self._sbuf) - self._soff))
            self._sbuf += mv[:n]
            self._push()
            eng.flush()
        return n

    def sendall(self, data) -> None:
        if type(data) is bytes:
            n = self.send(data)
            if n == len(data):
                return  # all of it in one send (the request/response path): no memoryview
            mv = memoryview(data)[n:]
        else:
            mv = memoryview(data).cast("B")
        while len(mv):
            n = self.send(mv)
            mv = mv[n:]

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._closed or not self._connected:
            self._check_open()
        if len(self._rbuf) <= self._roff and not (self._eof or self._reset or self._shut_rd):
            self._wait(self._readable, self.timeout, "recv", True)
        with self.engine.lock:
            avail = len(self._rbuf) - self._roff
            if not avail and self._reset and not self._eof:
                self._d.poll(0)              # frames before the reset may still wait in the ring
                avail = len(self._rbuf) - self._roff
            if not avail:
                if self._reset and not self._eof:
                    raise ConnectionResetError(errno.ECONNRESET, f"connection reset by peer ({self._reset_why})")
                return b""
            n = bufsize if bufsize < avail else avail
            if n == avail and not self._roff and not flags:
                out = bytes(self._rbuf)         # all of it: one copy
            else:
                out = bytes(self._rbuf[self._roff:self._roff + n])
            if not flags & MSG_PEEK:
                self._roff += n
                if self._roff == len(self._rbuf):
                    self._rbuf = bytearray()
                    self._roff = 0
                elif self._roff > (1 << 20):
                    del self._rbuf[:self._roff]
                    self._roff = 0
                # open the window again once a quarter of it was read (a window update)
                edge = self._rcv_nxt - (len(self._rbuf) - self._roff) + self._rcv_wnd
                if edge - self._edge_sent >= self._rcv_wnd // 4 and not self._reset and self._peer_fin is None:
                    self._send_window_update()
            return out

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        mv = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(mv), flags)
        mv[:len(data)] = data
        return len(data)

    def _readable(self) -> bool:
        return len(self._rbuf) > self._roff or self._eof or self._reset or self._shut_rd

    def shutdown(self, how: int) -> None:
        self._check_open()
        if how in (_socket.SHUT_RD, _socket.SHUT_RDWR):
            self._shut_rd = True
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR) and not self._fin_wanted:
            self._fin_wanted = True
            with self.engine.lock:
                self._push()
                self.engine.flush()

    def _all_acked(self) -> bool:
        if self._reset:
            return True
        self._push()
        w = self._pub()
        if w[TCP_PUB_TAG] != self._tag:
            return True
        st = w[TCP_PUB_STATE]
        return bool((st >> 32) & (TCP_F_FIN_ACKED | TCP_F_RESET)) or (st & M32) == TCP_S_CLOSED

    def close(self, linger: float | None = None) -> None:
        """Send what is queued and a FIN, wait (up to `linger` s) until they are acknowledged,
        then hand the connection to the daemon to finish (TIME_WAIT and so on)."""
        if self._closed:
            return
        self._closed = True
        eng = self.engine
        if self._listening:
            self._d.listeners.pop(self.local[1], None)
            try:
                eng.session.request("tcp.unlisten", port=self.local[1])
            except EtranError:
                pass
            return
        if self._key is None:
            return
        abort = False
        if self._connected and not self._reset:
            self._fin_wanted = True
            try:
                self._wait(self._all_acked, LINGER if linger is None else linger, "close")
            except (TimeoutError, BlockingIOError):
                abort = True
        self._drop_conn(abort)

    def _drop_conn(self, abort: bool = False) -> None:
        self._d.conns.pop(self._key, None)
        self._d.dirty.discard(self)
        self._d.ignored[self._key] = time.monotonic()
        try:
            self.engine.session.request("tcp.close", raddr=_socket.inet_ntoa(self._key[0]), rport=self._key[1],
                                        lport=self._key[2], abort=abort)
        except (EtranError, OSError):
            pass
        self._closed = True

    def _abort_request(self) -> None:
        self._drop_conn(abort=True)

    def abort(self) -> None:
        """Reset the connection (RST) now."""
        if not self._closed and self._key is not None:
            self._drop_conn(abort=True)

    # ---- extras -----------------------------------------------------------------------------------
    def set_congestion_control(self, name: str) -> dict[str, Any]:
        """Swap the congestion control of this live connection (in the daemon, no kernel change)."""
        self._check_open()
        return self.engine.session.request("tcp.set_cc", raddr=self.remote[0], rport=self.remote[1],
                                           lport=self.local[1], cc=name)

    def flow_stats(self) -> dict[str, Any]:
        return self.engine.session.request("tcp.flow_stats", raddr=self.remote[0], rport=self.remote[1],
                                           lport=self.local[1])["flow"]

    def setsockopt(self, *args: Any) -> None:
        """Accepted and ignored (etran's TCP has no per-socket options yet)."""

    def getsockopt(self, level: int, opt: int, *args: Any) -> int:
        if level == _socket.SOL_SOCKET and opt == _socket.SO_ERROR:
            return 0
        if level == _socket.SOL_SOCKET and opt == _socket.SO_TYPE:
            return _socket.SOCK_STREAM
        return 0

    def makefile(self, mode: str = "r", buffering: int | None = None, **kw: Any):
        return _socket.socket.makefile(self, mode, buffering, **kw)  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        pass

    def __enter__(self) -> TcpSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "listening" if self._listening else "connected" if self._connected else "new"
        return f"<etran.tcp.TcpSocket {kind} {self.local} -> {self.remote}>"


def ready_connections(timeout: float | None = 0.0, engine: Engine | None = None) -> set[TcpSocket]:
    """Receive one batch (waiting up to `timeout` s; None: until frames come) and return the
    connections that heard something since the last call: data, an ACK, a FIN or a reset.

    For a program that drives many connections from its own loop (one check per batch, not
    per connection; fileno() is the same for all of them): recv on each returned socket,
    non-blocking, until BlockingIOError. asyncio streams (etran.tcp.streams) consume the same
    record: use one or the other on an engine."""
    d = _demux(engine or default_engine())
    with d.engine.lock:
        d.poll(timeout)
        heard, d.heard = d.heard, set()
    return heard


def create_connection(address: tuple[str, int], timeout: float | None = None, source_address: Any = None, *,
                      cc: str = "dctcp", engine: Engine | None = None) -> TcpSocket:
    """Like socket.create_connection: a connected TcpSocket."""
    s = TcpSocket(engine)
    s._connect(address[0], int(address[1]), timeout if timeout is not None else 30.0, cc)
    s.timeout = timeout
    return s


def create_server(address: tuple[str, int], *, backlog: int = 128, cc: str = "dctcp", reuse_port: bool = False,
                  engine: Engine | None = None, family: int = _socket.AF_INET) -> TcpSocket:
    """Like socket.create_server: a listening TcpSocket on this host's address."""
    s = TcpSocket(engine)
    s._listen(int(address[1]), backlog, cc)
    return s
