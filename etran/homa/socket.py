"""Homa RPCs for applications: HomaModule's socket semantics on the etran engine.

    from etran.homa import HomaSocket

    srv = HomaSocket(4000)                       # a server port (the daemon gives it to us)
    req = srv.recv_request(timeout=1.0)          # Request: .payload, .peer, .id
    srv.reply(req, b"answer")                    # or srv.serve(lambda req: req.payload)

    cli = HomaSocket()                           # an ephemeral port: client (and server) at once
    answer = cli.call(("198.18.0.2", 4000), b"question", timeout=1.0)
    rpc_id = cli.send_request(("198.18.0.2", 4000), b"q")   # many outstanding per socket
    answer = cli.recv_response(rpc_id, timeout=1.0)        # Response: bytes with .id, .peer

What runs where. The kernel (etran/kernel/bpf/homa.bpf.c) owns the protocol state: it finds
every packet's RPC, keeps reassembly and grant state, schedules grants (SRPT), answers
RESENDs it can, and its egress hook refuses DATA beyond the granted offset and stamps
priorities and acks. The daemon (etran/daemon/homa.py) runs the timers. This library does
what needs the data: it segments messages into DATA packets, paces them (SRPT among its
own messages, a FIFO fraction, a cap on the NIC backlog), retransmits what a RESEND or
RPC_UNKNOWN asks for from the messages it still holds, reassembles incoming messages from
the DATA packets the kernel delivers (only packets with new bytes reach us), and waits.

Errors: HomaTimeoutError (a call's timeout, or the transport gave up: ETIMEDOUT),
HomaPeerUnknownError, HomaMessageTooLargeError, HomaPortInUseError (etran.homa.errors).
"""

from __future__ import annotations

import errno as _errno
import socket as _socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import EtranError
from ..lib.engine import Engine, default_engine
from . import wire
from .errors import (
    HomaError, HomaMessageTooLargeError, HomaPeerUnknownError, HomaPortInUseError, HomaRpcError, HomaTimeoutError,
)
from .incoming import MessageIn

IPPROTO_HOMA = wire.IPPROTO_HOMA
HDRS = 90                      # Ethernet 14 + IPv4 20 + homa_data_hdr 56
ETH_OVERHEAD = 24              # preamble, CRC, gap: what the NIC backlog counts besides the frame
_FRAME = struct.Struct("!6s6sH" "BBHHHBBH4s4s" + wire.DATA_HDR.format[1:])
# a DATA frame from the IPv4 total length on: (total length, source address, source port,
# destination port, sender id, message_length, incoming, ack.client_id, ack.server_port,
# (cutoff_version, retransmit, pad), seg.offset): one unpack per received DATA packet
_RX_DATA = struct.Struct("!H8x4s4xHH16xQIIQH6xI")
_MAX_CACHED = 4096             # cached headers / peer tuples per process
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_ACK = struct.Struct("!QH")
_Z6 = bytes(6)
_Z3 = bytes(3)
NOTIFY = 0xE0                  # HOMA_ETRAN_NOTIFY: kernel -> application only
NOTIFY_ABORTED, NOTIFY_FREED = 1, 2
RESEND_ALL = 0xFFFFFFFF
WAIT_DONE, WAIT_EXPIRED = -1.0, -2.0   # HomaEngine.wait_step's verdicts (a wait is never negative)
PUB_SLOTS = 1024
# frame offsets
O_TYPE, O_DPORT, O_SEQ, O_URGENT, O_SID = 45, 36, 38, 52, 54

Address = tuple[str, int]


class Request:
    """A whole request a server received: answer it with HomaSocket.reply(request, payload)."""

    __slots__ = ("id", "peer", "payload", "_rpc")

    def __init__(self, rpc_id: int, peer: Address, payload: bytes, rpc: _ServerRpc) -> None:
        self.id = rpc_id          # the server's id (the client's id | 1)
        self.peer = peer          # (client address, client port)
        self.payload = payload
        self._rpc = rpc

    def __repr__(self) -> str:
        return f"<Request id={self.id} from {self.peer[0]}:{self.peer[1]} {len(self.payload)} bytes>"


class Response(bytes):
    """A response: the payload bytes, with .id (the RPC's id) and .peer (server address, port)."""

    id: int
    peer: Address


class _Out:
    """An outgoing message: the library keeps it until the RPC ends (RESENDs need it)."""

    __slots__ = ("id", "sport", "dport", "dst", "data", "length", "granted", "next", "birth", "queued")

    def __init__(self, rpc_id: int, sport: int, dport: int, dst: bytes, data: bytes, granted: int, birth: int) -> None:
        self.id = rpc_id
        self.sport = sport
        self.dport = dport
        self.dst = dst
        self.data = memoryview(data)
        self.length = len(data)
        self.granted = granted    # packets starting below this may go
        self.next = -1 if not data else 0   # next new packet's offset; -1: the empty packet is unsent
        self.birth = birth
        self.queued = False

    def sendable(self) -> bool:
        if self.next < 0:
            return True
        return self.next < self.length and self.next < self.granted

    def sent_end(self) -> int:
        return 0 if self.next < 0 else self.next


class _ClientRpc:
    __slots__ = ("id", "peer", "dst", "dport", "out", "inm", "result", "error", "done")

    def __init__(self, rpc_id: int, peer: Address, dst: bytes, out: _Out) -> None:
        self.id = rpc_id
        self.peer = peer
        self.dst = dst
        self.dport = peer[1]
        self.out = out
        self.inm: MessageIn | None = None
        self.result: Response | None = None
        self.error: HomaError | None = None
        self.done = False


class _ServerRpc:
    __slots__ = ("id", "peer", "dst", "cport", "inm", "out", "state")

    INCOMING, IN_SERVICE, OUTGOING = 0, 1, 2

    def __init__(self, rpc_id: int, peer: Address, dst: bytes) -> None:
        self.id = rpc_id
        self.peer = peer
        self.dst = dst
        self.cport = peer[1]
        self.inm: MessageIn | None = None
        self.out: _Out | None = None
        self.state = self.INCOMING


class HomaEngine:
    """Homa's part of one process's engine: the sockets by port, ids, the pacer, RX handlers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        s = engine.session
        self.buf = engine.buf
        self.view = engine.umem.view
        self.mac = s.host_mac_bytes
        self.ip = s.host_ip_bytes
        self.pub = s.pub
        self.sockets: dict[int, HomaSocket] = {}
        self.config: dict[str, Any] = {}
        self.seg = 1424
        self.unsched = 11392
        self.max_len = wire.HOMA_MAX_MESSAGE_LENGTH
        self.link_mbps = 10_000
        self.max_backlog = 15_000
        self.nonfifo = 0
        self.nonfifo_left = 0
        self.id_next = 0
        self.id_hi = 0
        self.queue: list[_Out] = []   # the pacer's messages with granted, unsent packets
        self.births = 0
        self.backlog = 0
        self.backlog_ns = 0
        self.known_peers: set[str] = {s.host_ip}
        self.peers: dict[str, bytes] = {}         # check_peer's answers
        self.names: dict[bytes, str] = {}         # peer addresses as text, by their bytes
        # (address bytes, port) -> (host, port): a server makes a peer's tuple once, not per request
        self.peer_tuples: dict[tuple[bytes, int], Address] = {}
        # (dst, sport, dport, length) -> a single-packet message's 90 header bytes but the id:
        # a small message copies a ready header instead of packing 33 fields
        self.headers: dict[tuple[bytes, int, int, int], bytearray] = {}
        self.stats = {"data_sent": 0, "retransmitted": 0, "fifo_packets": 0, "data_received": 0,
                      "grants": 0, "resends": 0, "unknowns": 0, "aborts": 0, "frees": 0}
        engine.register(IPPROTO_HOMA, self.on_frame)

    # ---- set-up -------------------------------------------------------------------------
    def configure(self, cfg: dict[str, Any]) -> None:
        self.config = cfg
        self.seg = int(cfg["seg_payload"])
        self.unsched = int(cfg["unsched_limit"])
        self.max_len = int(cfg["max_message_length"])
        self.link_mbps = int(cfg["link_mbps"])
        self.max_backlog = int(cfg["max_nic_backlog_bytes"])
        frac = int(cfg["pacer_fifo_fraction"])
        self.nonfifo = self.seg * 1000 // frac - self.seg if frac > 0 else 0
        self.nonfifo_left = self.nonfifo

    def set_ids(self, ids: list[int]) -> None:
        self.id_next, self.id_hi = int(ids[0]), int(ids[1])

    def new_id(self) -> int:
        if self.id_next >= self.id_hi:
            self.set_ids(self.engine.session.request("homa.ids")["ids"])
        rpc_id = self.id_next
        self.id_next += 2
        return rpc_id

    def check_peer(self, host: str) -> bytes:
        """The peer's address as bytes, once the daemon has said it can reach it (remembered)."""
        dst = self.peers.get(host)
        if dst is not None:
            return dst
        try:
            dst = _socket.inet_aton(host)
        except (OSError, TypeError):
            raise HomaPeerUnknownError(f"{host!r} is not an IPv4 address") from None
        if host not in self.known_peers:
            if not self.engine.session.request("homa.peer", addr=host)["known"]:
                raise HomaPeerUnknownError(f"peer {host} is unknown: this host has no neighbour or route for it "
                                           "(EHOSTUNREACH)")
            self.known_peers.add(host)
        self.peers[host] = dst
        return dst

    # ---- sending ------------------------------------------------------------------------
    def send_packet(self, o: _Out, offset: int, retransmit: int = 0) -> bool:
        """Write one DATA packet into a TX frame (the caller flushes); False if no frame is free."""
        eng = self.engine
        a = eng.tx_frame()
        if a < 0:
            return False
        n = o.length - offset
        if n > self.seg:
            n = self.seg
        _FRAME.pack_into(self.buf, a, _Z6, self.mac, 0x0800, 0x45, 0, 76 + n, 0, 0x4000, 64, IPPROTO_HOMA, 0,
                         self.ip, o.dst, o.sport, o.dport, offset, _Z3, wire.DATA, wire.DATA_DOFF, 0, 0, 0, 0, o.id,
                         o.length, o.granted, 0, 0, 0, retransmit, _Z3, offset)
        if n:
            self.view[a + HDRS:a + HDRS + n] = o.data[offset:offset + n]
        eng.commit(HDRS + n)
        self.backlog += HDRS + n + ETH_OVERHEAD
        return True

    def start(self, o: _Out) -> None:
        """A new message: send what the grants and the pacer allow now."""
        n = o.length
        if not self.queue and n <= self.seg and o.granted == n and \
                (self.backlog + HDRS + n + ETH_OVERHEAD <= self.max_backlog or self._drained(HDRS + n + ETH_OVERHEAD)):
            # one packet and nothing else waiting: a cached header, one frame, no pacer
            # bookkeeping (the backlog is charged)
            key = (o.dst, o.sport, o.dport, n)
            hdr = self.headers.get(key)
            if hdr is None:
                hdr = self._data_header(key)
            _U64.pack_into(hdr, O_SID, o.id)
            try:
                self.engine.send(hdr, o.data, 0.0)
            except BlockingIOError:  # no TX frame free now: the pacer retries
                pass
            else:
                o.next = n
                self.backlog += HDRS + n + ETH_OVERHEAD
                self.stats["data_sent"] += 1
                return
        self.enqueue(o)
        self.pump()

    def _drained(self, frame: int) -> bool:
        """Let the NIC backlog drain by the time since it was last drained; True if `frame`
        bytes fit now (the one-packet path charges the backlog without draining it)."""
        now = time.monotonic_ns()
        if now > self.backlog_ns:
            drained = (now - self.backlog_ns) * self.link_mbps // 8000
            self.backlog = self.backlog - drained if self.backlog > drained else 0
            self.backlog_ns = now
        return self.backlog + frame <= self.max_backlog

    def _data_header(self, key: tuple[bytes, int, int, int]) -> bytearray:
        """The header of a whole message in one first-time DATA packet (offset 0, all granted)."""
        dst, sport, dport, n = key
        hdr = bytearray(HDRS)
        _FRAME.pack_into(hdr, 0, _Z6, self.mac, 0x0800, 0x45, 0, 76 + n, 0, 0x4000, 64, IPPROTO_HOMA, 0,
                         self.ip, dst, sport, dport, 0, _Z3, wire.DATA, wire.DATA_DOFF, 0, 0, 0, 0, 0,
                         n, n, 0, 0, 0, 0, _Z3, 0)
        if len(self.headers) >= _MAX_CACHED:
            self.headers.clear()
        self.headers[key] = hdr
        return hdr

    def enqueue(self, o: _Out) -> None:
        if not o.queued and o.sendable():
            o.queued = True
            self.queue.append(o)

    def dequeue(self, o: _Out) -> None:
        if o.queued:
            o.queued = False
            self.queue.remove(o)

    def pump(self) -> int | None:
        """Send new DATA packets as grants and the NIC backlog allow, SRPT first (a FIFO packet
        now and then). Returns nanoseconds until the next packet may go, or None if nothing waits."""
        q = self.queue
        if not q:
            return None
        self._drained(0)
        seg = self.seg
        wait = None
        sent = 0
        while q:
            if self.backlog and self.backlog + seg + HDRS > self.max_backlog:
                excess = self.backlog + seg + HDRS - self.max_backlog
                wait = max(1000, excess * 8000 // self.link_mbps)
                break
            if len(q) == 1:
                o = q[0]
            elif self.nonfifo and self.nonfifo_left <= 0:
                self.nonfifo_left += self.nonfifo
                o = min(q, key=_birth)
                self.stats["fifo_packets"] += 1
            else:
                o = min(q, key=_srpt)
            offset = o.next if o.next > 0 else 0
            if not self.send_packet(o, offset):
                wait = 20_000   # the TX ring is full: after the kernel took some
                break
            sent += 1
            if o.next < 0:
                o.next = 0
            else:
                o.next = offset + seg if offset + seg < o.length else o.length
                if self.nonfifo:
                    self.nonfifo_left -= seg
            if not o.sendable():
                o.queued = False
                q.remove(o)
        if sent:
            self.stats["data_sent"] += sent
            self.engine.flush()
        return wait

    def retransmit(self, o: _Out, start: int, end: int) -> int:
        """Send again the packets of [start, end) that went out already (RESEND, RPC_UNKNOWN)."""
        sent_end = o.sent_end()
        if o.length == 0:
            if o.next >= 0 and start == 0 and self.send_packet(o, 0, 1):
                self.engine.flush()
                return 1
            return 0
        if end > sent_end:
            end = sent_end
        n = 0
        off = (start // self.seg) * self.seg
        while off < end:
            if not self.send_packet(o, off, 1):
                break
            n += 1
            off += self.seg
        if n:
            self.stats["retransmitted"] += n
            self.engine.flush()
        return n

    # ---- receiving ------------------------------------------------------------------------
    def _on_control(self, t: int, a: int) -> None:
        """A packet other than DATA (type `t`): GRANT, RESEND, NOTIFY, ACK, RPC_UNKNOWN."""
        buf = self.buf
        sock = self.sockets.get((buf[a + O_DPORT] << 8) | buf[a + O_DPORT + 1])
        if sock is None:
            return
        sid = _U64.unpack_from(buf, a + O_SID)[0]
        if t == wire.GRANT:
            self._on_grant(sock, a, sid)
        elif t == wire.RESEND:
            self._on_resend(sock, a, sid)
        elif t == NOTIFY:
            self._on_notify(sock, a, sid)
        elif t == wire.ACK:
            self._on_ack(sock, a, sid)
        elif t == wire.RPC_UNKNOWN:
            self._on_unknown(sock, a, sid)

    def _peer(self, dst: bytes, port: int) -> Address:
        """The (host, port) tuple of a peer, made once."""
        key = (dst, port)
        peer = self.peer_tuples.get(key)
        if peer is None:
            host = self.names.get(dst)
            if host is None:
                host = self.names[dst] = _socket.inet_ntoa(dst)
            if len(self.peer_tuples) >= _MAX_CACHED:
                self.peer_tuples.clear()
            peer = self.peer_tuples[key] = (host, port)
        return peer

    def on_frame(self, a: int, ln: int) -> None:
        """The engine's handler for Homa frames. DATA (the round trip's path) here, with one
        unpack of its header; the other types by _on_control."""
        buf = self.buf
        t = buf[a + O_TYPE]
        if t != wire.DATA:
            self._on_control(t, a)
            return
        iplen, dst, sport, dport, sid, length, _incoming, ack_id, ack_port, offset = _RX_DATA.unpack_from(buf, a + 16)
        sock = self.sockets.get(dport)
        if sock is None:
            return
        n = iplen - 76
        if n < 0 or offset + n > length:
            return
        self.stats["data_received"] += 1
        lid = sid ^ 1
        if lid & 1:
            # a request (we are the server)
            server = sock._server
            if ack_id:   # the client's previous RPC with us ended: forget it (mostly this socket's)
                if ack_port == dport:
                    old = server.pop((dst, ack_id | 1), None)
                    if old is not None and old.out is not None and old.out.queued:
                        self.dequeue(old.out)
                else:
                    self._acked(dst, ack_id | 1, ack_port)
            key = (dst, lid)
            rpc = server.get(key)
            if rpc is None:
                peer = self.peer_tuples.get((dst, sport))
                if peer is None:
                    peer = self._peer(dst, sport)
                rpc = server[key] = _ServerRpc(lid, peer, dst)
            elif rpc.state != _ServerRpc.INCOMING:
                return
            if offset == 0 and n == length:   # the message in one packet
                payload = buf[a + HDRS:a + HDRS + n]
            else:
                payload = self._reassemble(rpc, a, offset, n, length)
                if payload is None:
                    return
                payload = bytes(payload)
            rpc.state = _ServerRpc.IN_SERVICE
            sock._requests.append(Request(lid, rpc.peer, payload, rpc))
            return
        rpc = sock._client.get(lid)
        if rpc is None or rpc.done:
            return
        if rpc.out.queued:  # the server has our whole request
            self.dequeue(rpc.out)
        if offset == 0 and n == length:
            r = Response(self.view[a + HDRS:a + HDRS + n])
        else:
            payload = self._reassemble(rpc, a, offset, n, length)
            if payload is None:
                return
            r = Response(payload)
        r.id = lid
        r.peer = rpc.peer
        rpc.result = r
        rpc.done = True
        rpc.out = None
        sock._ready.append(lid)

    def _reassemble(self, rpc: _ClientRpc | _ServerRpc, a: int, offset: int, n: int,
                    length: int) -> memoryview | bytearray | None:
        """The whole message once the DATA packet at `a` completes it, else None (it is kept).
        A message in one packet does not come here (on_frame copies it straight out)."""
        m = rpc.inm
        if m is None:
            m = rpc.inm = MessageIn(length, 0, max_gaps=1 << 30)
        m.add_packet(offset, self.view[a + HDRS:a + HDRS + n])
        if not m.complete:
            return None
        rpc.inm = None
        return m.buf

    def _find_out(self, sock: HomaSocket, a: int, lid: int) -> _Out | None:
        if lid & 1:
            rpc = sock._server.get((bytes(self.buf[a + 26:a + 30]), lid))
        else:
            rpc = sock._client.get(lid)
        return rpc.out if rpc is not None else None

    def _on_grant(self, sock: HomaSocket, a: int, sid: int) -> None:
        lid = sid ^ 1
        o = self._find_out(sock, a, lid)
        if o is None:
            return
        self.stats["grants"] += 1
        offset = _U32.unpack_from(self.buf, a + 62)[0]
        p = self.pub[(lid >> 1) & (PUB_SLOTS - 1)].w
        if p[0] == lid and p[1] > offset:
            offset = p[1]   # the kernel's view (a later GRANT may have overtaken this one)
        if offset > o.length:
            offset = o.length
        if offset > o.granted:
            o.granted = offset
            self.enqueue(o)

    def _on_resend(self, sock: HomaSocket, a: int, sid: int) -> None:
        lid = sid ^ 1
        o = self._find_out(sock, a, lid)
        if o is None:
            return
        self.stats["resends"] += 1
        offset, length = struct.unpack_from("!II", self.buf, a + 62)
        end = o.sent_end() if length == RESEND_ALL else offset + length
        self.retransmit(o, offset, end)

    def _on_unknown(self, sock: HomaSocket, a: int, sid: int) -> None:
        lid = sid ^ 1
        self.stats["unknowns"] += 1
        if lid & 1:
            rpc = sock._server.pop((bytes(self.buf[a + 26:a + 30]), lid), None)
            if rpc is not None and rpc.out is not None:
                self.dequeue(rpc.out)
            return
        rpc = sock._client.get(lid)
        if rpc is not None and rpc.out is not None and rpc.inm is None:
            # the server does not know our request (lost, or it restarted): send it again
            self.retransmit(rpc.out, 0, rpc.out.sent_end())

    def _acked(self, dst: bytes, server_id: int, port: int) -> None:
        sock = self.sockets.get(port)
        if sock is not None:
            rpc = sock._server.pop((dst, server_id), None)
            if rpc is not None and rpc.out is not None:
                self.dequeue(rpc.out)

    def _on_ack(self, sock: HomaSocket, a: int, sid: int) -> None:
        buf = self.buf
        dst = bytes(buf[a + 26:a + 30])
        if sid and not sid & 1:
            self._acked(dst, sid | 1, sock.port)
        count = _U16.unpack_from(buf, a + 62)[0]
        for i in range(min(count, wire.HOMA_MAX_ACKS_PER_PKT)):
            cid, port = _ACK.unpack_from(buf, a + 64 + 10 * i)
            if cid:
                self._acked(dst, cid | 1, port)

    def _on_notify(self, sock: HomaSocket, a: int, lid: int) -> None:
        code = _U32.unpack_from(self.buf, a + O_SEQ)[0]
        err = _U16.unpack_from(self.buf, a + O_URGENT)[0]
        if code == NOTIFY_ABORTED:
            rpc = sock._client.get(lid)
            if rpc is None or rpc.done:
                return
            self.stats["aborts"] += 1
            if rpc.out is not None:
                self.dequeue(rpc.out)
            where = f"{rpc.peer[0]} port {rpc.peer[1]}"
            if err == _errno.ETIMEDOUT:
                rpc.error = HomaTimeoutError(f"RPC {lid} to {where} timed out: no answer after the configured "
                                             "RESENDs (ETIMEDOUT)", lid)
            else:
                rpc.error = HomaRpcError(f"RPC {lid} to {where} failed: {_errno.errorcode.get(err, err)}", lid, err)
            rpc.done = True
            rpc.out = None
            sock._ready.append(lid)
        elif code == NOTIFY_FREED:
            self.stats["frees"] += 1
            dst = bytes(self.buf[a + 26:a + 30])
            rpc = sock._server.pop((dst, lid), None)
            if rpc is not None and rpc.out is not None:
                self.dequeue(rpc.out)

    # ---- waiting -----------------------------------------------------------------------------
    def wait_step(self, done: Callable[[], bool], deadline: float | None) -> float | None:
        """One pass of a wait (the blocking and the asyncio one share it): pace, then say how
        long the caller may block for traffic: seconds, or None for as long as it takes;
        WAIT_DONE once done(), WAIT_EXPIRED once the deadline (time.monotonic()) has passed."""
        if done():
            return WAIT_DONE
        pace = self.pump()
        if done():
            return WAIT_DONE
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return WAIT_EXPIRED
        if pace is not None:
            p = pace / 1e9
            left = p if left is None or p < left else left
        return left

    def wait(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Run the engine (RX, pacing) until done() or the timeout; True if done."""
        poll = self.engine.poll
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.queue:   # messages to pace
                left = self.wait_step(done, deadline)
                if left is not None and left < 0:
                    return left == WAIT_DONE
            elif done():     # wait_step's verdicts without the pacer (nothing to pace)
                return True
            elif deadline is None:
                left = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
            poll(left)


def _srpt(o: _Out) -> tuple[int, int]:
    return (o.length - o.next, o.birth)


def _birth(o: _Out) -> int:
    return o.birth


def homa_engine(engine: Engine) -> HomaEngine:
    h = engine.transport_state.get("homa")
    if h is None:
        h = engine.transport_state["homa"] = HomaEngine(engine)
    return h  # type: ignore[return-value]


class HomaSocket:
    """A Homa socket: client and server at once, many outstanding RPCs.

    `port=None` binds an ephemeral port (a client); a number binds that port (a server).
    """

    def __init__(self, port: int | None = None, engine: Engine | None = None) -> None:
        self.engine = engine or default_engine()
        self._h = homa_engine(self.engine)
        try:
            reply = self.engine.session.request("homa.bind", port=int(port or 0))
        except EtranError as e:
            if "in use" in str(e):
                raise HomaPortInUseError(str(e)) from None
            raise
        self.port: int = reply["port"]
        if not self._h.config:
            self._h.configure(reply["config"])
            self._h.set_ids(reply["ids"])
        self._h.sockets[self.port] = self
        self._client: dict[int, _ClientRpc] = {}
        self._server: dict[tuple[bytes, int], _ServerRpc] = {}
        self._requests: deque[Request] = deque()
        self._ready: deque[int] = deque()
        self._closed = False

    # ---- properties ---------------------------------------------------------------------
    @property
    def address(self) -> Address:
        return (self.engine.session.host_ip, self.port)

    @property
    def config(self) -> dict[str, Any]:
        """The host's Homa parameters (as the daemon had them when this process bound its first port)."""
        return dict(self._h.config)

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of this process's Homa library counters (shared by all its Homa sockets,
        which run on one engine); the host's kernel and daemon counters are `etran.homa.stats()`.

        data_sent                 DATA packets sent (first transmissions)
        retransmitted             DATA packets sent again for a RESEND or an RPC_UNKNOWN
        fifo_packets              packets the pacer sent by age rather than SRPT (its FIFO share)
        data_received             DATA packets received (the kernel passes only packets with new bytes)
        grants, resends, unknowns GRANT, RESEND and RPC_UNKNOWN packets received
        aborts, frees             RPCs the kernel reported aborted (timed out) or freed
        """
        return dict(self._h.stats)

    def fileno(self) -> int:
        """The engine's AF_XDP socket, for selectors: readable when frames wait in the ring
        (shared by every etran socket of this process; call poll() after a wake-up)."""
        return self.engine.xsk.fileno()

    def _check_open(self) -> None:
        if self._closed:
            raise HomaError("the Homa socket is closed")

    def _check_len(self, payload: Any) -> bytes:
        """A message to send as bytes (kept for RESENDs), once the socket is open and it is not too long."""
        if self._closed:
            self._check_open()
        data = payload if isinstance(payload, bytes) else bytes(payload)
        if len(data) > self._h.max_len:
            raise HomaMessageTooLargeError(f"a message of {len(data)} bytes is longer than the maximum "
                                           f"{self._h.max_len} (EMSGSIZE)")
        return data

    # ---- client ---------------------------------------------------------------------------
    def send_request(self, addr: Address, payload: bytes | bytearray | memoryview) -> int:
        """Start an RPC; returns its id (even). The response comes with recv_response."""
        return self._send_request(addr, payload).id

    def _send_request(self, addr: Address, payload: bytes | bytearray | memoryview) -> _ClientRpc:
        data = self._check_len(payload)
        host, port = addr
        port = int(port)
        h = self._h
        dst = h.peers.get(host)
        if dst is None:
            dst = h.check_peer(host)
        rpc_id = h.id_next
        if rpc_id < h.id_hi:
            h.id_next = rpc_id + 2
        else:
            rpc_id = h.new_id()
        h.births += 1   # the pacer's FIFO order
        n = len(data)
        o = _Out(rpc_id, self.port, port, dst, data, min(n, h.unsched), h.births)
        rpc = self._client[rpc_id] = _ClientRpc(rpc_id, (host, port), dst, o)
        h.start(o)
        return rpc

    def recv_response(self, rpc_id: int | None = None, timeout: float | None = None) -> Response:
        """The response of RPC `rpc_id` (None: of whichever RPC completes first); raises
        HomaTimeoutError when `timeout` passes (the RPC stays outstanding) or the transport gave up."""
        self._check_open()
        if rpc_id is None:
            while True:
                rpc = self._next_ready()
                if rpc is not None:
                    return self._finish(rpc)
                if not self._h.wait(lambda: bool(self._ready), timeout):
                    raise HomaTimeoutError(f"no response within {timeout} s")
        rpc = self._client.get(rpc_id)
        if rpc is None:
            raise HomaError(f"no outstanding RPC {rpc_id} on this socket")
        if not rpc.done and not self._h.wait(lambda: rpc.done, timeout):
            raise HomaTimeoutError(f"no response to RPC {rpc_id} from {rpc.peer[0]}:{rpc.peer[1]} within {timeout} s",
                                   rpc_id)
        return self._finish(rpc)

    def _next_ready(self) -> _ClientRpc | None:
        """The first finished RPC whose id is in the ready queue (ids of cancelled ones are skipped)."""
        ready = self._ready
        while ready:
            rpc = self._client.get(ready.popleft())
            if rpc is not None and rpc.done:
                return rpc
        return None

    def _finish(self, rpc: _ClientRpc) -> Response:
        del self._client[rpc.id]
        if rpc.error is not None:
            raise rpc.error
        return rpc.result  # type: ignore[return-value]

    def call(self, addr: Address, payload: bytes | bytearray | memoryview, timeout: float | None = None) -> Response:
        """One RPC: send the request, wait for the response (bytes with .id and .peer)."""
        rpc = self._send_request(addr, payload)
        try:
            if not rpc.done and not self._h.wait(lambda: rpc.done, timeout):
                raise HomaTimeoutError(f"no response to RPC {rpc.id} from {rpc.peer[0]}:{rpc.peer[1]} within "
                                       f"{timeout} s", rpc.id)
            return self._finish(rpc)
        except HomaTimeoutError:
            self.cancel(rpc.id)
            raise

    def cancel(self, rpc_id: int) -> None:
        """Forget an outstanding RPC here (a late response is dropped)."""
        rpc = self._client.pop(rpc_id, None)
        if rpc is not None and rpc.out is not None:
            self._h.dequeue(rpc.out)

    @property
    def outstanding(self) -> int:
        return sum(1 for r in self._client.values() if not r.done)

    # ---- server ---------------------------------------------------------------------------
    def recv_request(self, timeout: float | None = None) -> Request:
        """The next whole request (raises HomaTimeoutError after `timeout` seconds)."""
        if self._closed:
            self._check_open()
        requests = self._requests
        if not requests and not self._h.wait(lambda: bool(requests), timeout):
            raise HomaTimeoutError(f"no request within {timeout} s")
        return requests.popleft()

    def reply(self, request: Request, payload: bytes | bytearray | memoryview) -> None:
        """Send the response to a request (kept until the client acks it, for RESENDs)."""
        data = self._check_len(payload)
        rpc = request._rpc
        if rpc.state != _ServerRpc.IN_SERVICE:
            raise HomaError(f"request {request.id} was already answered")
        h = self._h
        if self._server.get((rpc.dst, rpc.id)) is not rpc:
            rpc.state = _ServerRpc.OUTGOING
            return  # the kernel freed it meanwhile (the client went away): nothing to send
        rpc.state = _ServerRpc.OUTGOING
        h.births += 1
        n = len(data)
        o = rpc.out = _Out(rpc.id, self.port, rpc.cport, rpc.dst, data, min(n, h.unsched), h.births)
        h.start(o)

    def serve(self, handler: Callable[[Request], bytes | None], count: int | None = None,
              timeout: float | None = None) -> int:
        """Answer requests with handler(request) (None: an empty response) until `count` are
        served or no request comes for `timeout` seconds; returns how many were served."""
        served = 0
        while count is None or served < count:
            try:
                req = self.recv_request(timeout)
            except HomaTimeoutError:
                break
            resp = handler(req)
            self.reply(req, b"" if resp is None else resp)
            served += 1
        # let the last responses go out
        self._h.wait(lambda: not self._h.queue, 0.5)
        return served

    # ---- end ------------------------------------------------------------------------------
    def poll(self, timeout: float | None = 0.0) -> None:
        """Run the engine once (receive, pace): for programs with their own loops."""
        self._h.pump()
        self.engine.poll(timeout)
        self._h.pump()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        h = self._h
        for rpc in self._client.values():
            if rpc.out is not None:
                h.dequeue(rpc.out)
        for rpc in self._server.values():
            if rpc.out is not None:
                h.dequeue(rpc.out)
        h.sockets.pop(self.port, None)
        try:
            self.engine.session.request("homa.unbind", port=self.port)
        except EtranError:
            pass

    def __enter__(self) -> HomaSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HomaSocket {self.engine.session.host_ip}:{self.port} outstanding={self.outstanding}>"


def configure(engine: Engine | None = None, **params: Any) -> dict[str, Any]:
    """Read (no params) or set (root) the host's Homa parameters: rtt_bytes, max_overcommit,
    timer_interval_ns, resend_ticks, timeout_resends, unsched_cutoffs, ... Returns them all."""
    engine = engine or default_engine()
    return engine.session.request("homa.config", set=params)["config"]


def stats(engine: Engine | None = None) -> dict[str, Any]:
    """The host's Homa counters (kernel data path and daemon timer)."""
    engine = engine or default_engine()
    return engine.session.request("homa.stats")["stats"]
