"""Homa's sans-I/O protocol logic: endpoints talking through a fake network, plus the
scheduler, pacer, reassembly, timer and cutoff pieces on their own. No sockets, no kernel,
a fake clock (integer nanoseconds)."""

from __future__ import annotations

import errno
import heapq
import math
import random
from collections import Counter

import pytest

from etran.homa import (
    GrantScheduler, HomaConfig, HomaEndpoint, MessageIn, MessageOut, Pacer, Peer,
    RequestReceived, ResponseReceived, RpcAborted, RpcState, compute_cutoffs, wire,
)

MS = 1_000_000
US = 1_000
SIZES = [0, 1, 100, 1400, 1401, 10_000, 100_000, 1_000_000]
SERVER_PORT = 100


# ---- a fake network ----------------------------------------------------------------------

class FakeNet:
    """Endpoints keyed by address; datagrams delivered after `delay` ns. Faults are injected
    here: loss, duplication (the copy may arrive much later), reordering (random extra
    delay), and an optional filter(src, datagram) -> keep. Time jumps to the next delivery
    or endpoint timer."""

    def __init__(self, seed=0, loss=0.0, dup=0.0, reorder=0.0, delay=5 * US, jitter=40 * US):
        self.rng = random.Random(seed)
        self.loss, self.dup, self.reorder, self.delay, self.jitter = loss, dup, reorder, delay, jitter
        self.eps: dict[str, HomaEndpoint] = {}
        self.now = 0
        self.queue: list = []
        self.seq = 0
        self.filter = None
        self.log: list[tuple[int, str, str, wire.Packet]] = []    # (time sent, src, dst, packet)
        self.delivered: list[tuple[int, str, str, wire.Packet]] = []
        self.record = False

    def add(self, ep: HomaEndpoint) -> HomaEndpoint:
        self.eps[ep.address] = ep
        return ep

    def _inject(self, src, d) -> None:
        if self.record:
            self.log.append((self.now, src, d.dst, wire.parse(d.data)))
        if self.filter is not None and not self.filter(src, d):
            return
        if self.rng.random() < self.loss:
            return
        for _ in range(2 if self.rng.random() < self.dup else 1):
            t = self.now + self.delay
            if self.rng.random() < self.reorder:
                t += self.rng.randrange(self.jitter)
            self.seq += 1
            heapq.heappush(self.queue, (t, self.seq, src, d.dst, d.data))

    def _flush(self) -> None:
        for addr, ep in self.eps.items():
            for d in ep.datagrams_to_send(self.now):
                self._inject(addr, d)

    def step(self) -> bool:
        for ep in self.eps.values():
            ep.handle_timer(self.now)
        self._flush()
        while self.queue and self.queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self.queue)
            ep = self.eps.get(dst)
            if ep is not None:
                if self.record:
                    self.delivered.append((self.now, src, dst, wire.parse(data)))
                ep.receive_datagram(data, src, self.now)
        self._flush()
        times = [self.queue[0][0]] if self.queue else []
        times += [t for t in (ep.get_timer() for ep in self.eps.values()) if t is not None]
        if not times:
            return False
        self.now = max(self.now + 1, min(times))
        return True

    def run(self, done, limit_ns=20_000 * MS) -> bool:
        while not done():
            if not self.step() or self.now > limit_ns:
                return done()
        return True


class Apps:
    """Application behaviour: servers answer each request with its bytes reversed; results
    and how often each request was served are recorded."""

    def __init__(self, net: FakeNet, respond=True):
        self.net, self.respond = net, respond
        self.results: dict[tuple[str, int], object] = {}
        self.served: Counter = Counter()
        self.requests: list[RequestReceived] = []

    def pump(self) -> None:
        for ep in self.net.eps.values():
            while (e := ep.next_event()) is not None:
                if isinstance(e, RequestReceived):
                    self.served[(ep.address, e.peer, e.rpc_id)] += 1
                    self.requests.append(e)
                    if self.respond:
                        ep.send_response(e.peer, e.rpc_id, e.payload[::-1], self.net.now)
                else:
                    key = (ep.address, e.rpc_id)
                    assert key not in self.results, f"second result for {key}"
                    self.results[key] = e


def _payload(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


# ---- end to end ----------------------------------------------------------------------------

FAULTS = {
    "lossless": dict(loss=0.0, dup=0.0, reorder=0.0),
    "lossy": dict(loss=0.05, dup=0.05, reorder=0.2),
    "hostile": dict(loss=0.15, dup=0.2, reorder=0.4),
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("faults", sorted(FAULTS))
def test_rpcs_complete_exactly_once_with_exact_payloads(faults, seed):
    net = FakeNet(seed=seed, **FAULTS[faults])
    server = net.add(HomaEndpoint("s", SERVER_PORT))
    clients = [net.add(HomaEndpoint(f"c{i}", 0x8000 + i)) for i in range(2)]
    rng = random.Random(seed)
    sent = {}
    for client in clients:
        for size in SIZES:
            payload = _payload(rng, size)
            sent[(client.address, client.send_request("s", SERVER_PORT, payload, 0))] = payload
    apps = Apps(net)
    assert net.run(lambda: (apps.pump(), len(apps.results) == len(sent))[1])
    for key, payload in sent.items():
        result = apps.results[key]
        assert isinstance(result, ResponseReceived), f"{key}: {result}"
        assert result.payload == payload[::-1], f"{key}: wrong response ({len(result.payload)} bytes)"
    assert len(apps.served) == len(sent) and set(apps.served.values()) == {1}
    assert {len(r.payload) for r in apps.requests} == set(SIZES)
    # Acks (piggybacked, batched ACKs, or NEED_ACK -> ACK) let the server forget everything.
    assert net.run(lambda: not server.server_rpcs, limit_ns=net.now + 2000 * MS)
    assert not any(c.client_rpcs for c in clients)
    assert set(apps.served.values()) == {1}


def test_many_small_rpcs_flush_acks_in_ack_packets():
    net = FakeNet()
    net.record = True
    server = net.add(HomaEndpoint("s", SERVER_PORT))
    client = net.add(HomaEndpoint("c", 0x8000))
    apps = Apps(net)
    ids = [client.send_request("s", SERVER_PORT, bytes([i]) * 50, 0) for i in range(23)]
    assert net.run(lambda: (apps.pump(), len(apps.results) == len(ids))[1])
    acks = [p for _, src, _, p in net.log if p.type == wire.ACK and src == "c"]
    assert acks and all(len(p.acks) == wire.HOMA_MAX_ACKS_PER_PKT for p in acks)
    assert net.run(lambda: not server.server_rpcs, limit_ns=net.now + 100 * MS)


# ---- SRPT ---------------------------------------------------------------------------------

def test_srpt_receiver_grants_the_short_message_first():
    cfg = HomaConfig(rtt_bytes=2 * 1424, max_overcommit=1, grant_fifo_fraction=0)
    net = FakeNet()
    net.record = True
    net.add(HomaEndpoint("s", SERVER_PORT, cfg))
    big = net.add(HomaEndpoint("a", 0x8000, cfg))
    small = net.add(HomaEndpoint("b", 0x8000, cfg))
    apps = Apps(net)
    big_id = big.send_request("s", SERVER_PORT, bytes(1_000_000), 0)
    net.run(lambda: net.now >= 200 * US)
    small_id = small.send_request("s", SERVER_PORT, bytes(10_000), net.now)
    order = []

    def done():
        apps.pump()
        for e in apps.requests:
            if len(e.payload) not in order:
                order.append(len(e.payload))
        return len(apps.results) == 2

    assert net.run(done)
    assert order == [10_000, 1_000_000]
    first_b = min(t for t, src, dst, p in net.delivered if src == "b" and p.type == wire.DATA)
    last_b = max(t for t, src, dst, p in net.delivered if src == "b" and p.type == wire.DATA)
    grants_to_a = [t for t, src, dst, p in net.log if dst == "a" and p.type == wire.GRANT]
    assert grants_to_a and not [t for t in grants_to_a if first_b <= t < last_b], \
        "the 1 MB message got grants while the 10 KB one was incoming"
    assert isinstance(apps.results[("b", small_id)], ResponseReceived)
    assert isinstance(apps.results[("a", big_id)], ResponseReceived)


def _msg(length, peer, birth, cfg, received=None):
    m = MessageIn(length, cfg.unsched_limit, birth, peer, cfg.max_gaps)
    got = m.granted if received is None else received
    seg = cfg.seg_payload
    for off in range(0, got, seg):
        m.add_packet(off, b"\0" * min(seg, got - off))
    return m


def test_scheduler_srpt_order_and_priorities():
    cfg = HomaConfig(rtt_bytes=10_000, max_overcommit=1, grant_fifo_fraction=0)
    s = GrantScheduler(cfg)
    big = _msg(1_000_000, "a", 1, cfg)
    small = _msg(30_000, "b", 2, cfg)
    for m in (big, small):
        s.update(m)
    assert s.table == [small, big]
    grants = s.schedule()
    assert grants == [(small, 0)]            # one active message: lowest scheduled level
    assert big.granted == big.unsched
    # priorities: rank r of n, shifted so the last active message is at level 0
    assert [s.priority(r, 1) for r in range(1)] == [0]
    assert [s.priority(r, 2) for r in range(2)] == [1, 0]
    assert [s.priority(r, 4) for r in range(4)] == [3, 2, 1, 0]
    assert [s.priority(r, 6) for r in range(6)] == [3, 2, 1, 0, 0, 0]


def test_pacer_sends_the_shortest_message_first_within_the_nic_backlog():
    cfg = HomaConfig(pacer_fifo_fraction=0, max_nic_backlog_bytes=5000)
    p = Pacer(cfg)
    big = MessageOut(bytes(1_000_000), cfg.seg_payload, 1_000_000, birth=1)
    small = MessageOut(bytes(10_000), cfg.seg_payload, 10_000, birth=2)
    p.add(big)
    p.add(small)
    order, now = [], 0
    full = p.wire_bytes(wire.DATA_HDR_LEN + cfg.seg_payload)
    while len(order) < 20:
        m = p.pick()
        if not p.can_send(now, full):
            now = p.next_ready()
            assert p.can_send(now, full)
        before = p.backlog
        m.take_next()
        p.charge(full)
        p.sent(cfg.seg_payload)
        assert before == 0 or p.backlog <= cfg.max_nic_backlog_bytes
        order.append(m)
    n_small = math.ceil(10_000 / cfg.seg_payload)
    assert order[:n_small] == [small] * n_small and order[n_small:] == [big] * (20 - n_small)


def test_pacer_fifo_fraction_sends_some_of_the_oldest():
    cfg = HomaConfig(pacer_fifo_fraction=200, max_nic_backlog_bytes=10**9)
    p = Pacer(cfg)
    old = MessageOut(bytes(1_000_000), cfg.seg_payload, 1_000_000, birth=1)
    p.add(old)
    sent = Counter()
    for i in range(100):
        young = MessageOut(bytes(5000), cfg.seg_payload, 5000, birth=2 + i)
        p.add(young)
        while young.has_sendable():
            m = p.pick()
            m.take_next()
            p.sent(cfg.seg_payload)
            sent["old" if m is old else "young"] += 1
    share = sent["old"] / (sent["old"] + sent["young"])
    assert 0.1 < share < 0.3     # ~20% (one packet every 4 SRPT packets)


# ---- overcommitment, per-peer limit, max_incoming, FIFO grants --------------------------------

def test_overcommit_limit_and_incoming_cap():
    cfg = HomaConfig(rtt_bytes=10_000, max_overcommit=8, grant_fifo_fraction=0)
    s = GrantScheduler(cfg)
    msgs = [_msg(1_000_000 + i, f"p{i}", i, cfg) for i in range(12)]
    for m in msgs:
        s.update(m)
    assert s.total_incoming == 0         # all unscheduled bytes arrived
    grants = s.schedule()
    assert [m for m, _ in grants] == msgs[:8]
    assert all(m.granted == m.received + cfg.rtt_bytes for m in msgs[:8])
    assert all(m.granted == m.unsched for m in msgs[8:])
    assert s.total_incoming == cfg.incoming_limit == 80_000
    assert s.schedule() == []            # cap reached: nothing more until data arrives
    # Data for one message arrives: it (and only it) may be granted again.
    m0 = msgs[0]
    m0.add_packet(m0.recv_end, b"\0" * 1424)
    s.update(m0)
    again = s.schedule()
    assert [m for m, _ in again] == [m0] and s.total_incoming <= cfg.incoming_limit


def test_at_most_one_message_per_peer_is_granted():
    cfg = HomaConfig(rtt_bytes=10_000, max_overcommit=8, grant_fifo_fraction=0)
    s = GrantScheduler(cfg)
    a1 = _msg(200_000, "a", 1, cfg)
    a2 = _msg(100_000, "a", 2, cfg)
    b1 = _msg(300_000, "b", 3, cfg)
    for m in (a1, a2, b1):
        s.update(m)
    assert [m for m, _ in s.schedule()] == [a2, b1]
    assert a1.granted == a1.unsched


def test_unscheduled_bytes_count_against_max_incoming():
    cfg = HomaConfig(rtt_bytes=10_000, max_overcommit=2, grant_fifo_fraction=0)
    s = GrantScheduler(cfg)
    fresh = [_msg(500_000, f"p{i}", i, cfg, received=0) for i in range(3)]
    for m in fresh:
        s.update(m)
    assert s.total_incoming == 3 * cfg.unsched_limit > cfg.incoming_limit
    assert s.schedule() == []


def test_fifo_fraction_gives_the_oldest_message_progress():
    def starve(fifo_fraction):
        cfg = HomaConfig(rtt_bytes=10_000, max_overcommit=1, grant_fifo_fraction=fifo_fraction,
                         fifo_grant_increment=10_000)
        s = GrantScheduler(cfg)
        old = _msg(1_000_000, "old", 0, cfg)
        s.update(old)
        birth, young = 1, None
        for _ in range(400):
            if young is None or young.complete:
                if young is not None:
                    s.forget(young)
                young = _msg(50_000, "young", birth, cfg)
                birth += 1
                s.update(young)
            for m, _ in s.schedule():
                # the sender delivers everything granted
                while m.recv_end < m.granted:
                    m.add_packet(m.recv_end, b"\0" * min(1424, m.granted - m.recv_end))
                if m.complete:
                    s.forget(m)
                else:
                    s.update(m)
        return old.granted - old.unsched, s.fifo_grants

    no_fifo, n0 = starve(0)
    with_fifo, n1 = starve(100)
    assert no_fifo == 0 and n0 == 0              # SRPT alone starves the old message
    assert with_fifo > 0 and n1 > 0
    assert with_fifo == n1 * 10_000


def test_freeing_the_granted_message_grants_the_next_one():
    # Regression: grants used to be recomputed only on DATA arrival, so when the active
    # message's RPC was freed (ACK, RPC_UNKNOWN, timeout) the next one waited forever.
    cfg = HomaConfig(rtt_bytes=2848, max_overcommit=1, max_incoming=100_000, grant_fifo_fraction=0)
    server = HomaEndpoint("s", SERVER_PORT, cfg)
    seg = cfg.seg_payload
    for src, rid, length in (("b", 2, 50_000), ("a", 2, 500_000)):
        for off in (0, seg):
            server.receive_datagram(wire.build_data(0x8000, SERVER_PORT, rid, length, 2 * seg, off,
                                                    bytes(seg)), src, 0)
    grants = [(d.dst, wire.parse(d.data).offset) for d in server.datagrams_to_send(0)
              if wire.parse(d.data).type == wire.GRANT]
    assert grants and {dst for dst, _ in grants} == {"b"}      # SRPT: only the shorter one
    server.receive_datagram(wire.build_rpc_unknown(0x8000, SERVER_PORT, 2), "b", 0)
    assert server.server_rpc("b", 3) is None
    after = [(d.dst, wire.parse(d.data).type) for d in server.datagrams_to_send(0)]
    assert after == [("a", wire.GRANT)]


def test_scheduler_table_is_bounded_and_refills_from_overflow():
    cfg = HomaConfig(max_grantable=4, grant_fifo_fraction=0)
    s = GrantScheduler(cfg)
    msgs = [_msg(100_000 * (6 - i), f"p{i}", i, cfg) for i in range(6)]   # later = shorter
    for m in msgs:
        s.update(m)
    assert len(s.table) == 4 and s.table == msgs[2:][::-1]
    assert set(s.overflow) == set(msgs[:2])
    s.forget(msgs[5])
    assert len(s.table) == 4 and msgs[1] in s.table and s.overflow == [msgs[0]]


# ---- reassembly -----------------------------------------------------------------------------

def test_reassembly_out_of_order_duplicates_and_gaps():
    data = bytes(range(256)) * 40          # 10240 bytes
    seg = 1424
    m = MessageIn(len(data), incoming=len(data), max_gaps=4)
    offsets = list(range(0, len(data), seg))
    assert m.add_packet(offsets[2], data[offsets[2]:offsets[2] + seg]) == seg
    assert m.gaps == [[0, offsets[2]]]
    assert m.add_packet(offsets[5], data[offsets[5]:offsets[5] + seg]) == seg
    assert m.resend_ranges() == [(0, 2 * seg), (3 * seg, 2 * seg), (6 * seg, len(data) - 6 * seg)]
    assert m.add_packet(offsets[5], data[offsets[5]:offsets[5] + seg]) == 0     # duplicate
    assert m.add_packet(offsets[0], data[:seg]) == seg
    assert m.gaps == [[seg, 2 * seg], [3 * seg, 5 * seg]]
    for off in reversed(offsets):
        m.add_packet(off, data[off:off + seg])
    assert m.complete and not m.gaps and m.payload() == data
    assert m.bytes_remaining == 0 and m.received == len(data)


def test_reassembly_gap_list_is_bounded():
    m = MessageIn(100 * 1424, incoming=100 * 1424, max_gaps=2)
    assert m.add_packet(1424, b"x" * 1424) == 1424        # gap [0, 1424)
    assert m.add_packet(3 * 1424, b"x" * 1424) == 1424    # gap [2848, 4272)
    assert m.add_packet(5 * 1424, b"x" * 1424) == 0       # a third gap: dropped
    assert m.dropped == 1 and len(m.gaps) == 2
    assert m.add_packet(0, b"x" * 1424) == 1424           # filling gaps still works


def test_zero_length_message():
    m = MessageIn(0, incoming=0)
    assert m.complete and m.payload() == b""
    out = MessageOut(b"", 1424, 10_000)
    assert out.has_sendable()
    assert out.take_next() == 0 and not out.has_sendable() and out.fully_sent()
    assert out.resend_offsets(0, 0) == [0]


# ---- timers: RESEND, abort, BUSY ------------------------------------------------------------

def _drive(ep: HomaEndpoint, until: int):
    """Run one endpoint alone (its datagrams go nowhere); return (time, packet) sent and events."""
    sent, events = [], []
    t = 0
    while True:
        t = ep.get_timer()
        if t is None or t > until:
            return sent, events
        ep.handle_timer(t)
        sent += [(t, wire.parse(d.data)) for d in ep.datagrams_to_send(t)]
        while (e := ep.next_event()) is not None:
            events.append((t, e))


def test_silent_peer_gets_resends_then_the_rpc_aborts():
    cfg = HomaConfig(timer_interval_ns=1 * MS, resend_ticks=5, resend_interval=5, timeout_resends=3)
    ep = HomaEndpoint("c", 0x8000, cfg)
    rid = ep.send_request("ghost", SERVER_PORT, b"x" * 100, 0)
    first = ep.datagrams_to_send(0)
    assert [wire.parse(d.data).type for d in first] == [wire.DATA]
    sent, events = _drive(ep, 100 * MS)
    resends = [(t, p) for t, p in sent if p.type == wire.RESEND]
    assert [t for t, _ in resends] == [5 * MS, 10 * MS, 15 * MS]
    for _, p in resends:
        assert (p.sport, p.dport, p.sender_id) == (0x8000, SERVER_PORT, rid)
        assert (p.offset, p.length, p.priority) == (0, wire.RESEND_ALL, cfg.max_prio)
    assert events == [(20 * MS, RpcAborted(rid, errno.ETIMEDOUT, events[0][1].reason))]
    assert ep.client_rpc(rid) is None and ep.get_timer() is None


def test_resend_gaps_from_the_server_then_drop():
    cfg = HomaConfig(resend_ticks=2, resend_interval=2, timeout_resends=2, rtt_bytes=100_000)
    ep = HomaEndpoint("s", SERVER_PORT, cfg)
    body = bytes(5000)
    for off in (0, 2848):                     # packet at 1424 lost
        ep.receive_datagram(wire.build_data(0x8000, SERVER_PORT, 8, 5000, 5000, off,
                                            body[off:off + 1424]), "c", 0)
    sent, events = _drive(ep, 50 * MS)
    resends = [(t, (p.offset, p.length)) for t, p in sent if p.type == wire.RESEND]
    assert resends == [(2 * MS, (1424, 1424)), (2 * MS, (4272, 728)),
                       (4 * MS, (1424, 1424)), (4 * MS, (4272, 728))]
    assert ep.server_rpc("c", 9) is None and events == []    # dropped silently at 6 ms
    assert ep.stats["server_timeouts"] == 1


def test_busy_keeps_a_slow_server_alive():
    cfg = HomaConfig(resend_ticks=2, resend_interval=2, timeout_resends=2)
    net = FakeNet()
    net.record = True
    server = net.add(HomaEndpoint("s", SERVER_PORT, cfg))
    client = net.add(HomaEndpoint("c", 0x8000, cfg))
    apps = Apps(net, respond=False)          # the server application never answers
    rid = client.send_request("s", SERVER_PORT, b"question", 0)
    net.run(lambda: (apps.pump(), net.now > 100 * MS)[1])
    assert ("c", rid) not in apps.results and client.client_rpc(rid) is not None
    kinds = Counter(p.type for _, _, _, p in net.log)
    assert kinds[wire.RESEND] >= 10 and kinds[wire.BUSY] >= kinds[wire.RESEND] - 1   # one in flight
    server.send_response("c", rid | 1, b"answer", net.now)
    assert net.run(lambda: (apps.pump(), ("c", rid) in apps.results)[1])
    assert apps.results[("c", rid)] == ResponseReceived(rid, b"answer")


# ---- at-most-once: server state until ACK -----------------------------------------------------

def test_server_keeps_state_until_the_piggybacked_ack():
    net = FakeNet()
    net.record = True
    server = net.add(HomaEndpoint("s", SERVER_PORT, HomaConfig(request_ack_ticks=1000)))
    client = net.add(HomaEndpoint("c", 0x8000))
    apps = Apps(net)
    first = client.send_request("s", SERVER_PORT, b"one", 0)
    assert net.run(lambda: (apps.pump(), ("c", first) in apps.results)[1])
    net.run(lambda: net.now > 50 * MS)
    rpc = server.server_rpc("c", first | 1)
    assert rpc is not None and rpc.state == RpcState.OUTGOING      # kept: no ack yet
    # A late RESEND is still answered with the response, not RPC_UNKNOWN.
    server.receive_datagram(wire.build_resend(0x8000, SERVER_PORT, first, 0, wire.RESEND_ALL, 7), "c", net.now)
    again = [wire.parse(d.data) for d in server.datagrams_to_send(net.now)]
    assert [(p.type, p.retransmit, p.payload) for p in again] == [(wire.DATA, 1, b"eno")]
    second = client.send_request("s", SERVER_PORT, b"two", net.now)
    assert net.run(lambda: (apps.pump(), ("c", second) in apps.results)[1])
    carrier = [p for _, src, _, p in net.log if p.type == wire.DATA and src == "c" and p.sender_id == second]
    assert (carrier[0].ack_id, carrier[0].ack_port) == (first, SERVER_PORT)
    assert server.server_rpc("c", first | 1) is None
    assert set(apps.served.values()) == {1}


def test_server_asks_for_an_ack_and_frees_on_ack():
    cfg = HomaConfig(request_ack_ticks=3)
    net = FakeNet()
    net.record = True
    server = net.add(HomaEndpoint("s", SERVER_PORT, cfg))
    client = net.add(HomaEndpoint("c", 0x8000, cfg))
    apps = Apps(net)
    rid = client.send_request("s", SERVER_PORT, b"ping", 0)
    assert net.run(lambda: (apps.pump(), ("c", rid) in apps.results)[1])
    assert server.server_rpc("c", rid | 1) is not None
    assert net.run(lambda: server.server_rpc("c", rid | 1) is None, limit_ns=net.now + 50 * MS)
    kinds = [(src, p.type) for _, src, _, p in net.log if p.type in (wire.NEED_ACK, wire.ACK)]
    assert kinds == [("s", wire.NEED_ACK), ("c", wire.ACK)]
    ack = [p for _, src, _, p in net.log if p.type == wire.ACK][0]
    assert (ack.sport, ack.dport, ack.sender_id) == (0x8000, SERVER_PORT, rid)


def test_acked_request_duplicates_are_not_served_again():
    net = FakeNet()
    server = net.add(HomaEndpoint("s", SERVER_PORT))
    client = net.add(HomaEndpoint("c", 0x8000))
    apps = Apps(net)
    rid = client.send_request("s", SERVER_PORT, b"once", 0)
    assert net.run(lambda: (apps.pump(), ("c", rid) in apps.results)[1])
    server.receive_datagram(wire.build_ack(0x8000, SERVER_PORT, rid), "c", net.now)
    assert server.server_rpc("c", rid | 1) is None
    stale = wire.build_data(0x8000, SERVER_PORT, rid, 4, 4, 0, b"once")
    server.receive_datagram(stale, "c", net.now)
    apps.pump()
    assert apps.served[("s", "c", rid | 1)] == 1 and server.server_rpc("c", rid | 1) is None


def test_need_ack_produces_ack():
    client = HomaEndpoint("c", 0x8000)
    client.peers.setdefault("s", Peer("s", client.config)).acks[SERVER_PORT] = [2, 4]
    client.receive_datagram(wire.build_need_ack(SERVER_PORT, 0x8000, 5), "s", 0)   # rpc 4, done
    out = [wire.parse(d.data) for d in client.datagrams_to_send(0)]
    assert out == [wire.AckPacket(0x8000, SERVER_PORT, 4, ((2, SERVER_PORT),))]
    assert client.peers["s"].acks[SERVER_PORT] == []
    # A client still waiting for the response asks for it instead of acking.
    rid = client.send_request("s", SERVER_PORT, b"?", 0)
    client.datagrams_to_send(0)
    client.receive_datagram(wire.build_need_ack(SERVER_PORT, 0x8000, rid | 1), "s", 0)
    out = [wire.parse(d.data) for d in client.datagrams_to_send(0)]
    assert [p.type for p in out] == [wire.RESEND]


# ---- unknown RPCs, BUSY ---------------------------------------------------------------------

def test_unknown_rpc_gets_rpc_unknown():
    server = HomaEndpoint("s", SERVER_PORT)
    server.receive_datagram(wire.build_resend(0x8004, SERVER_PORT, 42, 0, wire.RESEND_ALL, 7), "c", 0)
    out = [(d.dst, d.priority, wire.parse(d.data)) for d in server.datagrams_to_send(0)]
    assert out == [("c", 7, wire.RpcUnknownPacket(SERVER_PORT, 0x8004, 43))]
    client = HomaEndpoint("c", 0x8000)
    client.receive_datagram(wire.build_resend(SERVER_PORT, 0x8000, 43, 0, 100, 7), "s", 0)
    assert [wire.parse(d.data) for d in client.datagrams_to_send(0)] == [
        wire.RpcUnknownPacket(0x8000, SERVER_PORT, 42)]
    # Packets that need no answer are dropped.
    server.receive_datagram(wire.build_grant(0x8000, SERVER_PORT, 42, 5000, 1), "c", 0)
    server.receive_datagram(wire.build_busy(0x8000, SERVER_PORT, 42), "c", 0)
    assert server.datagrams_to_send(0) == []


def test_rpc_unknown_makes_the_client_send_its_request_again():
    client = HomaEndpoint("c", 0x8000)
    rid = client.send_request("s", SERVER_PORT, bytes(3000), 0)
    first = [wire.parse(d.data) for d in client.datagrams_to_send(0)]
    client.receive_datagram(wire.build_rpc_unknown(SERVER_PORT, 0x8000, rid | 1), "s", 0)
    again = [wire.parse(d.data) for d in client.datagrams_to_send(0)]
    assert [p.offset for p in again] == [p.offset for p in first] == [0, 1424, 2848]
    assert all(p.retransmit == 1 for p in again)


def test_resend_for_data_not_yet_granted_gets_busy():
    client = HomaEndpoint("c", 0x8000)
    rid = client.send_request("s", SERVER_PORT, bytes(100_000), 0)
    unsched = [wire.parse(d.data) for d in client.datagrams_to_send(0)]
    assert [p.offset for p in unsched] == list(range(0, 8 * 1424, 1424))
    assert all(p.incoming == 8 * 1424 for p in unsched)
    client.receive_datagram(wire.build_resend(SERVER_PORT, 0x8000, rid | 1, 50_000, 1424, 6), "s", 0)
    assert [wire.parse(d.data) for d in client.datagrams_to_send(0)] == [
        wire.BusyPacket(0x8000, SERVER_PORT, rid)]
    client.receive_datagram(wire.build_resend(SERVER_PORT, 0x8000, rid | 1, 1424, 1424, 6), "s", 0)
    out = client.datagrams_to_send(0)
    assert [(d.priority, wire.parse(d.data).offset, wire.parse(d.data).retransmit) for d in out] == [(6, 1424, 1)]
    # A server that has not answered yet says BUSY too.
    server = HomaEndpoint("s", SERVER_PORT)
    server.receive_datagram(wire.build_data(0x8000, SERVER_PORT, 2, 3, 3, 0, b"abc"), "c", 0)
    server.datagrams_to_send(0)
    server.receive_datagram(wire.build_resend(0x8000, SERVER_PORT, 2, 0, wire.RESEND_ALL, 7), "c", 0)
    assert [wire.parse(d.data).type for d in server.datagrams_to_send(0)] == [wire.BUSY]


def test_grants_release_data_with_the_granted_priority():
    client = HomaEndpoint("c", 0x8000)
    rid = client.send_request("s", SERVER_PORT, bytes(100_000), 0)
    client.datagrams_to_send(0)
    client.receive_datagram(wire.build_grant(SERVER_PORT, 0x8000, rid | 1, 8 * 1424 + 100, 2), "s", 0)
    out = [(d.priority, wire.parse(d.data)) for d in client.datagrams_to_send(0)]
    assert [(prio, p.offset, p.incoming) for prio, p in out] == [(2, 8 * 1424, 9 * 1424)]


# ---- priorities and cutoffs --------------------------------------------------------------------

def test_unscheduled_priority_follows_the_cutoffs():
    peer = Peer("s", HomaConfig())        # HomaModule defaults: 200, 2800, 15000, max
    assert [peer.unsched_priority(n) for n in (0, 200, 201, 2800, 10_000, 15_001, 1_000_000)] == \
        [7, 7, 6, 6, 5, 4, 4]
    client = HomaEndpoint("c", 0x8000)
    client.send_request("s", SERVER_PORT, bytes(100), 0)
    client.send_request("s", SERVER_PORT, bytes(10_000), 0)
    prios = {(wire.parse(d.data).message_length, d.priority) for d in client.datagrams_to_send(0)}
    assert prios == {(100, 7), (10_000, 5)}


def test_cutoffs_from_a_size_distribution():
    rng = random.Random(7)
    sizes = [int(10 ** rng.uniform(0, 6)) for _ in range(20_000)]      # log-uniform 1 B..1 MB
    limit = HomaConfig().unsched_limit
    max_sched, cutoffs = compute_cutoffs(sizes, limit)
    total = sum(max(s, 1) for s in sizes)
    unsched = sum(max(min(s, limit), 1) for s in sizes)
    n_unsched = 7 - max_sched
    assert n_unsched == max(1, min(7, round(8 * unsched / total)))
    assert cutoffs[:max_sched + 1] == (0,) * (max_sched + 1)
    assert cutoffs[max_sched + 1] == wire.HOMA_MAX_MESSAGE_LENGTH
    assert list(cutoffs[max_sched + 1:]) == sorted(cutoffs[max_sched + 1:], reverse=True)
    # Each unscheduled level carries a similar share of the unscheduled bytes.
    peer = Peer("x", HomaConfig(unsched_cutoffs=cutoffs))
    per_level = Counter()
    for s in sizes:
        per_level[peer.unsched_priority(s)] += max(min(s, limit), 1)
    shares = [per_level[level] / unsched for level in range(max_sched + 1, 8)]
    assert all(0.5 / n_unsched < share < 2.0 / n_unsched for share in shares), shares
    # Degenerate distributions.
    assert compute_cutoffs({100: 50}, limit)[0] == 0             # all unscheduled: 7 levels
    ms, big = compute_cutoffs({1_000_000: 50}, limit)
    assert ms == 6 and big[7] == wire.HOMA_MAX_MESSAGE_LENGTH    # mostly scheduled: 1 level
    assert compute_cutoffs({}, limit)[1][7] == wire.HOMA_MAX_MESSAGE_LENGTH


def test_receiver_sends_new_cutoffs_to_senders():
    cfg = HomaConfig(cutoffs_min_interval_ns=0)
    net = FakeNet()
    net.record = True
    server = net.add(HomaEndpoint("s", SERVER_PORT, cfg))
    client = net.add(HomaEndpoint("c", 0x8000, cfg))
    apps = Apps(net)
    ids = [client.send_request("s", SERVER_PORT, bytes(n), 0) for n in (10, 20, 30, 40)]
    assert net.run(lambda: (apps.pump(), len(apps.results) == 4)[1])
    assert client.peers["s"].cutoff_version == 1           # learnt on first contact
    assert server.recompute_cutoffs() and server.cutoff_version == 2
    assert server.grants.max_sched_prio == 0                # tiny messages: all unscheduled
    rid = client.send_request("s", SERVER_PORT, bytes(25), net.now)
    assert net.run(lambda: (apps.pump(), ("c", rid) in apps.results)[1])
    cut = [p for _, src, _, p in net.log if p.type == wire.CUTOFFS and src == "s"]
    assert sorted({p.cutoff_version for p in cut}) == [1, 2]
    assert cut[-1].cutoff_version == 2 and cut[-1].unsched_cutoffs == server.unsched_cutoffs
    assert client.peers["s"].unsched_cutoffs == server.unsched_cutoffs
    later = client.send_request("s", SERVER_PORT, bytes(25), net.now)
    d = client.datagrams_to_send(net.now)
    assert wire.parse(d[0].data).cutoff_version == 2
    assert d[0].priority == client.peers["s"].unsched_priority(25)
    assert later


# ---- config -----------------------------------------------------------------------------------

def test_every_parameter_lives_in_one_settable_config():
    cfg = HomaConfig()
    for name in ("rtt_bytes", "unsched_bytes", "max_overcommit", "max_incoming", "max_grantable",
                 "grant_fifo_fraction", "fifo_grant_increment", "pacer_fifo_fraction",
                 "max_nic_backlog_bytes", "link_mbps", "num_priorities", "max_sched_prio",
                 "unsched_cutoffs", "priority_map", "timer_interval_ns", "resend_ticks",
                 "resend_interval", "timeout_resends", "request_ack_ticks", "mtu", "max_gaps"):
        assert hasattr(cfg, name)
    assert cfg.max_overcommit == 8 and cfg.incoming_limit == 8 * cfg.rtt_bytes
    small = cfg.replace(rtt_bytes=5000, max_incoming=12_345, unsched_bytes=1)
    assert small.incoming_limit == 12_345 and small.unsched_limit == 1424
    with pytest.raises(ValueError):
        HomaConfig(max_sched_prio=8)
    with pytest.raises(ValueError):
        HomaConfig(mtu=60)
    with pytest.raises(ValueError):
        HomaConfig(unsched_cutoffs=(1, 2, 3))
    with pytest.raises(ValueError):
        HomaEndpoint("c", 1).send_request("s", 2, bytes(1_000_001), 0)
