"""A Homa socket as a sans-I/O state machine (HomaModule homa_incoming.c's packet handlers,
homa_sock.c's RPC tables), in the style of aioquic's QuicConnection and h11.

Feed it datagrams (Homa header onwards, IP stripped) and time; take datagrams and events::

    ep = HomaEndpoint(address="10.0.0.1", port=0x8000)
    rpc_id = ep.send_request("10.0.0.2", 99, b"hello", now)
    for dgram in ep.datagrams_to_send(now): ...          # Datagram(dst, data, priority)
    ep.receive_datagram(data, src="10.0.0.2", now=now)
    while (event := ep.next_event()) is not None: ...     # RequestReceived, ResponseReceived, RpcAborted
    deadline = ep.get_timer(); ...; ep.handle_timer(now)

``now`` is integer nanoseconds from any monotonic clock; the endpoint never reads a clock.
Addresses are opaque hashable values. One endpoint is one socket (one port) and can be a
client and a server at once. RPC ids come from ``id_allocator`` (share one per host: a
server names an RPC by (client address, id)); by default 2, 4, 6, ...

Datagram priorities are Homa levels 0..7 (7 highest); the I/O layer writes
``wire.priority_to_tos(level, config.priority_map)`` into the IP header. Control packets go
at ``config.max_prio``.
"""

from __future__ import annotations

import errno
import itertools
from collections import Counter, deque
from collections.abc import Callable
from typing import NamedTuple

from . import wire
from .config import HomaConfig
from .cutoffs import SizeDistribution, compute_cutoffs
from .events import Event, RequestReceived, ResponseReceived, RpcAborted
from .grant import GrantScheduler
from .incoming import MessageIn
from .outgoing import MessageOut
from .pacer import Pacer
from .peer import Peer
from .rpc import Rpc, RpcState
from .timer import TimerAction, check_rpc


class Datagram(NamedTuple):
    dst: object          # peer address
    data: bytes          # Homa header + payload
    priority: int        # Homa priority level (goes into DSCP)


class HomaEndpoint:
    def __init__(self, address: object, port: int, config: HomaConfig | None = None, *,
                 id_allocator: Callable[[], int] | None = None) -> None:
        self.address = address
        self.port = port
        self.config = config = config if config is not None else HomaConfig()
        self._alloc_id = id_allocator or itertools.count(2, 2).__next__
        self.peers: dict[object, Peer] = {}
        self.client_rpcs: dict[int, Rpc] = {}
        self.server_rpcs: dict[tuple[object, int], Rpc] = {}
        self._dead: deque[tuple[object, int]] = deque()
        self._dead_set: set[tuple[object, int]] = set()
        self._events: deque[Event] = deque()
        self._out: list[Datagram] = []      # control packets and retransmissions, sent first
        self.pacer = Pacer(config)
        self.grants = GrantScheduler(config)
        self._birth = 0
        self._next_tick: int | None = None
        # What peers should use when they send to us (CUTOFFS).
        self.unsched_cutoffs: tuple[int, ...] = tuple(config.unsched_cutoffs)
        self.cutoff_version = 1
        self.sizes = SizeDistribution()
        self.stats: Counter[str] = Counter()

    # ==== application side ====================================================================
    def send_request(self, dest: object, dport: int, payload: bytes, now: int) -> int:
        """Start a client RPC; returns its id (even)."""
        self._check_length(payload)
        rpc_id = self._alloc_id()
        if rpc_id & 1 or rpc_id in self.client_rpcs:
            raise ValueError(f"id allocator returned {rpc_id}: client ids are even and unique")
        peer = self._peer(dest)
        rpc = Rpc(rpc_id, peer, dport, RpcState.OUTGOING)
        rpc.msgout = self._message_out(rpc, payload)
        self.client_rpcs[rpc_id] = rpc
        self._arm(now)
        self.pacer.add(rpc.msgout)
        return rpc_id

    def send_response(self, peer: object, rpc_id: int, payload: bytes, now: int) -> None:
        """Answer a RequestReceived(peer, rpc_id)."""
        self._check_length(payload)
        rpc = self.server_rpcs.get((peer, rpc_id))
        if rpc is None or rpc.state != RpcState.IN_SERVICE:
            state = "unknown" if rpc is None else rpc.state.name
            raise ValueError(f"no request in service for rpc {rpc_id} from {peer!r} ({state})")
        rpc.msgout = self._message_out(rpc, payload)
        rpc.state = RpcState.OUTGOING
        rpc.heard()
        self._arm(now)
        self.pacer.add(rpc.msgout)

    def cancel(self, rpc_id: int) -> None:
        """Forget a client RPC (no event). The server will ask for an ack and get one."""
        rpc = self.client_rpcs.get(rpc_id)
        if rpc is not None:
            self._free_client(rpc)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ==== network side ========================================================================
    def datagrams_to_send(self, now: int) -> list[Datagram]:
        """Control packets and retransmissions, then new DATA packets as the pacer allows."""
        out, self._out = self._out, []
        pacer = self.pacer
        full = pacer.wire_bytes(wire.DATA_HDR_LEN + self.config.seg_payload)
        while pacer.can_send(now, full):
            m = pacer.pick()
            if m is None:
                break
            offset = m.take_next()
            dgram = self._data_packet(m, offset, 0, m.priority_at(offset))
            out.append(dgram)
            pacer.charge(pacer.wire_bytes(len(dgram.data)))
            pacer.sent(len(dgram.data) - wire.DATA_HDR_LEN)
            self.stats["data_sent"] += 1
            if not m.has_sendable():
                pacer.discard(m)
        return out

    def receive_datagram(self, data: bytes, src: object, now: int) -> None:
        try:
            pkt = wire.parse(data)
        except wire.HomaWireError:
            self.stats["malformed"] += 1
            return
        self.receive_packet(pkt, src, now)

    def receive_packet(self, pkt: wire.Packet, src: object, now: int) -> None:
        """Handle an already parsed packet (wire.parse)."""
        if pkt.dport != self.port:
            self.stats["wrong_port"] += 1
            return
        self.stats[f"rx_{wire.PacketType(pkt.type).name}"] += 1
        handler = self._HANDLERS.get(pkt.type)
        if handler is not None:
            handler(self, pkt, src, now)

    # ==== time ================================================================================
    def get_timer(self) -> int | None:
        """The next time handle_timer (or datagrams_to_send, for the pacer) should run."""
        times = []
        if self._next_tick is not None and (self.client_rpcs or self.server_rpcs):
            times.append(self._next_tick)
        ready = self.pacer.next_ready()
        if ready is not None:
            times.append(ready)
        return min(times) if times else None

    def handle_timer(self, now: int) -> None:
        if self._next_tick is None or now < self._next_tick:
            return
        self._next_tick = now + self.config.timer_interval_ns
        self._tick()

    # ==== control path: priorities ===========================================================
    def recompute_cutoffs(self) -> bool:
        """Recompute our unscheduled cutoffs from the sizes of messages received so far;
        if they changed, bump cutoff_version (peers then get a CUTOFFS). True if changed."""
        if not len(self.sizes):
            return False
        max_sched, cutoffs = compute_cutoffs(self.sizes.counts, self.config.unsched_limit,
                                             self.config.num_priorities)
        if cutoffs == self.unsched_cutoffs and max_sched == self.grants.max_sched_prio:
            return False
        self.unsched_cutoffs = cutoffs
        self.grants.max_sched_prio = max_sched
        self.cutoff_version = (self.cutoff_version % 0xFFFF) + 1
        return True

    # ==== introspection =======================================================================
    def client_rpc(self, rpc_id: int) -> Rpc | None:
        return self.client_rpcs.get(rpc_id)

    def server_rpc(self, peer: object, rpc_id: int) -> Rpc | None:
        return self.server_rpcs.get((peer, rpc_id))

    # ==== internals: helpers ==================================================================
    def _check_length(self, payload: bytes) -> None:
        if len(payload) > self.config.max_message_length:
            raise ValueError(f"message of {len(payload)} bytes exceeds the maximum "
                             f"{self.config.max_message_length} (EMSGSIZE)")

    def _peer(self, addr: object) -> Peer:
        peer = self.peers.get(addr)
        if peer is None:
            peer = self.peers[addr] = Peer(addr, self.config)
        return peer

    def _next_birth(self) -> int:
        self._birth += 1
        return self._birth

    def _message_out(self, rpc: Rpc, payload: bytes) -> MessageOut:
        cfg = self.config
        prio = rpc.peer.unsched_priority(len(payload), cfg.num_priorities)
        return MessageOut(payload, cfg.seg_payload, cfg.unsched_limit, prio, self._next_birth(), rpc)

    def _arm(self, now: int) -> None:
        """Start ticking when the first RPC appears (an idle endpoint has no timer)."""
        first = len(self.client_rpcs) + len(self.server_rpcs) <= 1
        if self._next_tick is None or (first and self._next_tick < now):
            self._next_tick = now + self.config.timer_interval_ns

    def _lookup(self, src: object, lid: int) -> Rpc | None:
        if lid & 1:
            return self.server_rpcs.get((src, lid))
        rpc = self.client_rpcs.get(lid)
        if rpc is not None and rpc.peer.addr != src:
            return None
        return rpc

    def _control(self, dst: object, data: bytes) -> None:
        self._out.append(Datagram(dst, data, self.config.max_prio))

    def _data_packet(self, m: MessageOut, offset: int, retransmit: int, priority: int) -> Datagram:
        rpc = m.rpc
        peer = rpc.peer
        ack_id = 0
        if rpc.is_client:
            taken = peer.take_acks(rpc.dport, 1)
            if taken:
                ack_id = taken[0]
        hdr = m.header(self.port, rpc.dport, rpc.id, offset, ack_id, rpc.dport if ack_id else 0,
                       peer.cutoff_version, retransmit)
        return Datagram(peer.addr, hdr + m.segment(offset), priority)

    def _retransmit(self, m: MessageOut, start: int, end: int, priority: int) -> int:
        sent = 0
        for offset in m.resend_offsets(start, end):
            dgram = self._data_packet(m, offset, 1, priority)
            self._out.append(dgram)
            self.pacer.charge(self.pacer.wire_bytes(len(dgram.data)))
            sent += 1
        self.stats["data_retransmitted"] += sent
        return sent

    def _issue_grants(self) -> None:
        for m, prio in self.grants.schedule():
            rpc = m.owner
            self._control(rpc.peer.addr, wire.build_grant(self.port, rpc.dport, rpc.id, m.granted, prio))
            self.stats["grants_sent"] += 1

    def _request_retrans(self, rpc: Rpc) -> None:
        """RESENDs for everything missing (homa_request_retrans), plus our latest GRANT
        again in case it was lost."""
        prio = self.config.max_prio
        addr, dport, sid = rpc.peer.addr, rpc.dport, rpc.id
        m = rpc.msgin
        if m is None:
            self._control(addr, wire.build_resend(self.port, dport, sid, 0, wire.RESEND_ALL, prio))
            self.stats["resends_sent"] += 1
            return
        if m.grant_sent:
            self._control(addr, wire.build_grant(self.port, dport, sid, m.granted, m.priority))
        for offset, length in m.resend_ranges():
            self._control(addr, wire.build_resend(self.port, dport, sid, offset, length, prio))
            self.stats["resends_sent"] += 1

    def _free_client(self, rpc: Rpc) -> None:
        del self.client_rpcs[rpc.id]
        rpc.state = RpcState.DEAD
        if rpc.msgin is not None:
            self._forget_msgin(rpc.msgin)
        if rpc.msgout is not None:
            self.pacer.discard(rpc.msgout)

    def _free_server(self, rpc: Rpc, remember: bool) -> None:
        key = (rpc.peer.addr, rpc.id)
        del self.server_rpcs[key]
        rpc.state = RpcState.DEAD
        if rpc.msgin is not None:
            self._forget_msgin(rpc.msgin)
        if rpc.msgout is not None:
            self.pacer.discard(rpc.msgout)
        if remember:
            self._dead.append(key)
            self._dead_set.add(key)
            while len(self._dead) > self.config.dead_rpc_memory:
                self._dead_set.discard(self._dead.popleft())

    def _forget_msgin(self, m: MessageIn) -> None:
        """A message leaves the scheduler: whoever was waiting behind it may get grants now
        (homa_grant_end_rpc)."""
        tracked = m.sched_state != 0 or m.charged
        self.grants.forget(m)
        if tracked:
            self._issue_grants()

    def _acked(self, src: object, client_id: int, server_port: int) -> None:
        """An ack for one of our server RPCs (homa_rpc_acked)."""
        if client_id == 0 or server_port != self.port:
            return
        rpc = self.server_rpcs.get((src, client_id ^ 1))
        if rpc is not None:
            self._free_server(rpc, remember=True)
            self.stats["acked"] += 1

    def _add_ack(self, rpc: Rpc) -> None:
        flush = rpc.peer.add_ack(rpc.dport, rpc.id)
        if flush:
            last = flush.pop()
            self._control(rpc.peer.addr, wire.build_ack(self.port, rpc.dport, last,
                                                        [(cid, rpc.dport) for cid in flush]))

    # ==== internals: packet handlers (homa_incoming.c) =========================================
    def _on_data(self, pkt: wire.DataPacket, src: object, now: int) -> None:
        lid = pkt.sender_id ^ 1
        if lid & 1:
            # We are the server.
            if pkt.ack_id:
                self._acked(src, pkt.ack_id, pkt.ack_port)
            key = (src, lid)
            rpc = self.server_rpcs.get(key)
            if rpc is None:
                if key in self._dead_set or pkt.message_length > self.config.max_message_length:
                    self.stats["data_dropped"] += 1
                    return
                rpc = Rpc(lid, self._peer(src), pkt.sport, RpcState.INCOMING)
                self.server_rpcs[key] = rpc
                self._arm(now)
                self._new_msgin(rpc, pkt)
            elif rpc.state != RpcState.INCOMING:
                self.stats["data_dropped"] += 1     # late duplicate of a complete request
                return
        else:
            rpc = self._lookup(src, lid)
            if rpc is None:
                self.stats["data_dropped"] += 1
                return
            if rpc.state == RpcState.OUTGOING:
                # First response packet: the server has our whole request.
                rpc.state = RpcState.INCOMING
                self.pacer.discard(rpc.msgout)
                self._new_msgin(rpc, pkt)
        rpc.heard()
        self._check_cutoffs(rpc, pkt, now)
        m = rpc.msgin
        if pkt.incoming > m.granted:
            m.granted = min(pkt.incoming, m.length)
        if m.add_packet(pkt.offset, pkt.payload) == 0:
            self.stats["data_duplicate"] += 1
        if m.complete:
            self.grants.forget(m)
            if rpc.is_client:
                self._free_client(rpc)
                self._events.append(ResponseReceived(rpc.id, m.payload()))
                self._add_ack(rpc)
            else:
                rpc.state = RpcState.IN_SERVICE
                self._events.append(RequestReceived(src, rpc.dport, rpc.id, m.payload()))
        else:
            self.grants.update(m)
        self._issue_grants()

    def _new_msgin(self, rpc: Rpc, pkt: wire.DataPacket) -> None:
        m = MessageIn(pkt.message_length, pkt.incoming, self._next_birth(), rpc.peer.addr,
                      self.config.max_gaps)
        m.owner = rpc
        rpc.msgin = m
        self.sizes.record(pkt.message_length)

    def _check_cutoffs(self, rpc: Rpc, pkt: wire.DataPacket, now: int) -> None:
        if pkt.cutoff_version == self.cutoff_version:
            return
        peer = rpc.peer
        last = peer.last_cutoffs_sent_ns
        if last is not None and now - last < self.config.cutoffs_min_interval_ns:
            return
        peer.last_cutoffs_sent_ns = now
        self._control(peer.addr, wire.build_cutoffs(self.port, rpc.dport, rpc.id,
                                                    self.unsched_cutoffs, self.cutoff_version))
        self.stats["cutoffs_sent"] += 1

    def _on_grant(self, pkt: wire.GrantPacket, src: object, now: int) -> None:
        rpc = self._lookup(src, pkt.sender_id ^ 1)
        if rpc is None:
            return
        rpc.heard()
        if rpc.state != RpcState.OUTGOING or rpc.msgout is None:
            return
        if rpc.msgout.grant(pkt.offset, pkt.priority):
            self.pacer.add(rpc.msgout)

    def _on_resend(self, pkt: wire.ResendPacket, src: object, now: int) -> None:
        lid = pkt.sender_id ^ 1
        rpc = self._lookup(src, lid)
        if rpc is None:
            self._control(src, wire.build_rpc_unknown(self.port, pkt.sport, lid))
            self.stats["unknown_sent"] += 1
            return
        rpc.heard()
        busy = wire.build_busy(self.port, rpc.dport, rpc.id)
        m = rpc.msgout
        if m is None or (not rpc.is_client and rpc.state != RpcState.OUTGOING) or pkt.length == 0:
            self._control(src, busy)     # no response yet (or a liveness probe)
            self.stats["busy_sent"] += 1
            return
        start = pkt.offset
        end = m.tx_end if pkt.length == wire.RESEND_ALL else start + pkt.length
        if not self._retransmit(m, start, end, pkt.priority):
            self._control(src, busy)     # asked for data we have not sent (not yet granted)
            self.stats["busy_sent"] += 1

    def _on_rpc_unknown(self, pkt: wire.RpcUnknownPacket, src: object, now: int) -> None:
        rpc = self._lookup(src, pkt.sender_id ^ 1)
        if rpc is None:
            return
        if rpc.is_client:
            if rpc.state == RpcState.OUTGOING:
                # The server lost (or never got) our request: send what we sent again.
                rpc.heard()
                m = rpc.msgout
                self._retransmit(m, 0, m.tx_end, m.unsched_priority)
        else:
            self._free_server(rpc, remember=True)

    def _on_busy(self, pkt: wire.BusyPacket, src: object, now: int) -> None:
        rpc = self._lookup(src, pkt.sender_id ^ 1)
        if rpc is not None:
            rpc.heard()

    def _on_cutoffs(self, pkt: wire.CutoffsPacket, src: object, now: int) -> None:
        peer = self._peer(src)
        peer.unsched_cutoffs = tuple(pkt.unsched_cutoffs)
        peer.cutoff_version = pkt.cutoff_version

    def _on_need_ack(self, pkt: wire.NeedAckPacket, src: object, now: int) -> None:
        lid = pkt.sender_id ^ 1
        if lid & 1:
            return      # only clients are asked for acks
        rpc = self._lookup(src, lid)
        if rpc is not None:
            # Still waiting for (part of) the response: not safe to ack; ask for it.
            rpc.heard()
            self._request_retrans(rpc)
            return
        peer = self._peer(src)
        peer.drop_ack(pkt.sport, lid)
        others = peer.take_acks(pkt.sport, wire.HOMA_MAX_ACKS_PER_PKT)
        self._control(src, wire.build_ack(self.port, pkt.sport, lid,
                                          [(cid, pkt.sport) for cid in others]))
        self.stats["acks_sent"] += 1

    def _on_ack(self, pkt: wire.AckPacket, src: object, now: int) -> None:
        lid = pkt.sender_id ^ 1
        if lid & 1:
            rpc = self.server_rpcs.get((src, lid))
            if rpc is not None:
                self._free_server(rpc, remember=True)
                self.stats["acked"] += 1
        for client_id, server_port in pkt.acks:
            self._acked(src, client_id, server_port)

    _HANDLERS = {
        wire.DATA: _on_data,
        wire.GRANT: _on_grant,
        wire.RESEND: _on_resend,
        wire.RPC_UNKNOWN: _on_rpc_unknown,
        wire.BUSY: _on_busy,
        wire.CUTOFFS: _on_cutoffs,
        wire.NEED_ACK: _on_need_ack,
        wire.ACK: _on_ack,
    }

    # ==== internals: the timer (homa_timer.c) ==================================================
    def _tick(self) -> None:
        cfg = self.config
        self._issue_grants()       # safety net: nothing may wait for a grant forever
        for rpc in list(self.client_rpcs.values()):
            action = check_rpc(rpc, cfg)
            if action == TimerAction.RESEND:
                self._request_retrans(rpc)
            elif action == TimerAction.BUSY:
                self._control(rpc.peer.addr, wire.build_busy(self.port, rpc.dport, rpc.id))
            elif action == TimerAction.ABORT:
                self._free_client(rpc)
                self._events.append(RpcAborted(
                    rpc.id, errno.ETIMEDOUT,
                    f"no answer from {rpc.peer.addr!r} port {rpc.dport} after "
                    f"{cfg.timeout_resends} RESENDs"))
                self.stats["client_timeouts"] += 1
        for rpc in list(self.server_rpcs.values()):
            action = check_rpc(rpc, cfg)
            if action == TimerAction.RESEND:
                self._request_retrans(rpc)
            elif action == TimerAction.NEED_ACK:
                self._control(rpc.peer.addr, wire.build_need_ack(self.port, rpc.dport, rpc.id))
                self.stats["need_acks_sent"] += 1
            elif action == TimerAction.FREE:
                self._free_server(rpc, remember=False)
                self.stats["server_timeouts"] += 1
