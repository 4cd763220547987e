"""The sans-I/O TCP control path: two TcpConnection objects through a fake network and a fake clock.

The network carries real IPv4/TCP bytes (checksums verified on receipt), with loss,
reordering, duplication, a rate-limited bottleneck and ECN marking injected by the test.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
from collections.abc import Callable

import pytest

from etran.tcp import (Closed, Connected, ConnectionFailed, DataAcked, DataReceived, PeerClosed, Reset,
                       StateChanged, TcpConfig, TcpConnection, TcpState, reset_for)
from etran.tcp import wire as w
from etran.tcp.rtt import RttEstimator
from etran.tcp.sack import Reassembly, Scoreboard
from etran.tcp.seq import MASK, RangeSet, unwrap

A_ADDR = ("10.0.0.1", 40000)
B_ADDR = ("10.0.0.2", 5201)
S = TcpState

# hook verdicts
PASS, DROP, DUP = "pass", "drop", "dup"


class FakeNet:
    """Two endpoints, a one-way delay, an optional bottleneck (rate, ECN threshold) and a fault hook.

    hook(from_a: bool, packet: bytes, now: float) -> PASS | DROP | DUP | ("delay", seconds)
    """

    def __init__(self, a: TcpConnection, b: TcpConnection, *, delay: float = 0.0005, rate_bps: float | None = None,
                 ecn_threshold: int | None = None, hook: Callable | None = None) -> None:
        self.a, self.b = a, b
        self.now = 0.0
        self.delay = delay
        self.rate = rate_bps
        self.k = ecn_threshold
        self.hook = hook
        self._q: list = []
        self._n = itertools.count()
        self._free = {True: 0.0, False: 0.0}
        self.log: list[tuple[float, bool, bytes]] = []          # every packet sent: (time, from_a, bytes)
        self.events: dict[bool, list] = {True: [], False: []}
        self.ce_marked = 0

    def sent(self, from_a: bool) -> list[tuple[float, w.IPv4Header, w.TcpSegment]]:
        out = []
        for t, fa, p in self.log:
            if fa == from_a:
                ip, seg = w.parse_packet(p)
                out.append((t, ip, seg))
        return out

    def received(self, at_a: bool) -> bytes:
        return b"".join(e.data for e in self.events[at_a] if isinstance(e, DataReceived))

    def of(self, at_a: bool, kind: type) -> list:
        return [e for e in self.events[at_a] if isinstance(e, kind)]

    def states(self, at_a: bool) -> list[TcpState]:
        return [e.new for e in self.events[at_a] if isinstance(e, StateChanged)]

    def _flush(self) -> None:
        for from_a, c in ((True, self.a), (False, self.b)):
            for p in c.datagrams_to_send(self.now):
                self.log.append((self.now, from_a, p))
                verdict = self.hook(from_a, p, self.now) if self.hook else PASS
                if verdict == DROP:
                    continue
                extra = verdict[1] if isinstance(verdict, tuple) else 0.0
                t = self.now
                if self.rate:
                    start = max(t, self._free[from_a])
                    backlog = (start - t) * self.rate / 8
                    if self.k is not None and backlog > self.k and p[1] & 3 in (w.ECN_ECT0, w.ECN_ECT1):
                        p = self._mark_ce(p)
                    t = start + len(p) * 8 / self.rate
                    self._free[from_a] = t
                dst = self.b if from_a else self.a
                for _ in range(2 if verdict == DUP else 1):
                    heapq.heappush(self._q, (t + self.delay + extra, next(self._n), dst, p))
        for at_a, c in ((True, self.a), (False, self.b)):
            while (e := c.next_event()) is not None:
                self.events[at_a].append(e)

    def _mark_ce(self, p: bytes) -> bytes:
        self.ce_marked += 1
        b = bytearray(p)
        old = int.from_bytes(b[0:2], "big")
        b[1] |= w.ECN_CE
        csum = w.checksum_adjust(int.from_bytes(b[10:12], "big"), old, int.from_bytes(b[0:2], "big"))
        b[10:12] = csum.to_bytes(2, "big")
        assert w.checksum(b[:20]) == 0
        return bytes(b)

    def inject(self, to_a: bool, packet: bytes, at: float | None = None) -> None:
        heapq.heappush(self._q, (self.now if at is None else at, next(self._n), self.a if to_a else self.b, packet))

    def run(self, until: Callable[[], bool], max_time: float = 60.0, max_steps: int = 2_000_000) -> bool:
        for _ in range(max_steps):
            self._flush()
            if until():
                return True
            times = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            if self._q:
                times.append(self._q[0][0])
            if not times or min(times) > max_time:
                return until()
            self.now = max(self.now, min(times))
            while self._q and self._q[0][0] <= self.now:
                _, _, dst, p = heapq.heappop(self._q)
                dst.receive_datagram(p, self.now)
            for c in (self.a, self.b):
                t = c.get_timer()
                if t is not None and t <= self.now:
                    c.handle_timer(self.now)
        raise AssertionError("the simulation did not settle")


def pair(cfg_a: TcpConfig | None = None, cfg_b: TcpConfig | None = None, *, isn_a: int | None = None,
         isn_b: int | None = None, **net_kw) -> tuple[TcpConnection, TcpConnection, FakeNet]:
    a = TcpConnection(local=A_ADDR, remote=B_ADDR, config=cfg_a or TcpConfig(), isn=isn_a)
    b = TcpConnection(local=B_ADDR, config=cfg_b or TcpConfig(), isn=isn_b)
    b.listen()
    a.connect(0.0)
    return a, b, FakeNet(a, b, **net_kw)


def established(a, b, net, max_time: float = 60.0) -> None:
    assert net.run(lambda: a.state is S.ESTABLISHED and b.state is S.ESTABLISHED, max_time=max_time)


def transfer(a, b, net, data: bytes, max_time: float = 120.0) -> None:
    """a sends data and closes; b reads to end of stream, then closes; both reach CLOSED."""
    a.send(data)
    a.close(net.now)
    assert net.run(lambda: b.state is S.CLOSE_WAIT, max_time=net.now + max_time), (a.snapshot(), b.snapshot())
    b.close(net.now)
    assert net.run(lambda: a.state is S.CLOSED and b.state is S.CLOSED, max_time=net.now + max_time)
    assert net.received(False) == data


def data_segments(net: FakeNet, from_a: bool = True) -> list[tuple[float, w.IPv4Header, w.TcpSegment]]:
    return [x for x in net.sent(from_a) if x[2].payload]


# ---- handshake, transfer, teardown ------------------------------------------------------------
def test_handshake_transfer_1mb_and_graceful_close_through_time_wait():
    a, b, net = pair(TcpConfig(msl=0.25), TcpConfig(msl=0.25), rate_bps=1e9, delay=0.0001)
    established(a, b, net)
    assert net.of(True, Connected) and net.of(False, Connected)
    for c in (a, b):
        assert (c.sack_ok, c.ts_ok, c.ecn_ok, c.snd_wscale, c.rcv_wscale, c.send_mss) == (True, True, True, 7, 7, 1448)
    data = os.urandom(1 << 20)
    a.send(data)
    a.close(net.now)
    assert net.run(lambda: b.state is S.CLOSE_WAIT and a.state is S.FIN_WAIT_2)
    assert net.received(False) == data and net.of(False, PeerClosed)
    assert sum(e.acked for e in net.of(True, DataAcked)) == len(data) == a.bytes_acked
    b.close(net.now)
    assert net.run(lambda: b.state is S.CLOSED)
    assert a.state is S.TIME_WAIT
    t_wait = net.now
    assert net.run(lambda: a.state is S.CLOSED)
    assert a.get_timer() is None and b.get_timer() is None
    assert net.states(True) == [S.SYN_SENT, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT, S.CLOSED]
    assert net.states(False) == [S.LISTEN, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]
    tw_start = next(t for t, fa, p in reversed(net.log) if fa)      # a's last packet: its ACK of b's FIN
    assert net.now - tw_start == pytest.approx(0.5, abs=0.002)
    assert net.now >= t_wait
    assert net.of(True, Closed) and net.of(False, Closed)
    assert a.stats["retransmits"] == 0 and a.stats["bad_packets"] == 0 == b.stats["bad_packets"]
    # the wire carries only valid packets: every one re-parses with checksums verified
    assert all(w.parse_packet(p) is not None for _, _, p in net.log)


def test_simultaneous_close_goes_through_closing():
    a, b, net = pair()
    established(a, b, net)
    a.send(b"x" * 5000)
    b.send(b"y" * 7000)
    a.close(net.now)
    b.close(net.now)
    assert net.run(lambda: a.state is S.CLOSED and b.state is S.CLOSED)
    assert S.CLOSING in net.states(True) and S.CLOSING in net.states(False)
    assert S.TIME_WAIT in net.states(True) and S.TIME_WAIT in net.states(False)
    assert net.received(False) == b"x" * 5000 and net.received(True) == b"y" * 7000


def test_simultaneous_open():
    a = TcpConnection(local=A_ADDR, remote=B_ADDR)
    b = TcpConnection(local=B_ADDR, remote=A_ADDR)
    a.connect(0.0)
    b.connect(0.0)
    net = FakeNet(a, b)
    established(a, b, net)
    assert net.states(True)[:3] == [S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED]
    a.send(b"hello")
    b.send(b"world")
    assert net.run(lambda: net.received(False) == b"hello" and net.received(True) == b"world")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("opts", ["all", "none", "no_sack", "no_ts"])
def test_transfer_exact_under_loss_reordering_and_duplication(seed, opts):
    kw = {"all": {}, "none": dict(sack=False, timestamps=False, window_scale=None, ecn=False, receive_buffer=65535),
          "no_sack": dict(sack=False), "no_ts": dict(timestamps=False)}[opts]
    rnd = random.Random(seed)

    def hook(from_a, p, now):
        if now < 0.001:
            return PASS                        # keep the handshake clean; SYN loss has its own tests
        r = rnd.random()
        if r < 0.03:
            return DROP
        if r < 0.05:
            return DUP
        if r < 0.10:
            return ("delay", rnd.random() * 0.001)
        return PASS

    a, b, net = pair(TcpConfig(**kw), TcpConfig(**kw), rate_bps=1e9, delay=0.0002, ecn_threshold=30_000, hook=hook)
    established(a, b, net)
    data = os.urandom(1 << 20)
    transfer(a, b, net, data)
    assert a.stats["retransmits"] > 0
    if opts == "none":
        for _, _, seg in net.sent(True)[1:]:
            assert seg.options.timestamp is None and not seg.options.sack_blocks


@pytest.mark.parametrize("name", ["reno", "cubic", "dctcp"])
@pytest.mark.parametrize("update", ["round", "ack"])
def test_each_congestion_control_moves_1mb(name, update):
    cfg = TcpConfig(congestion_control=name, cc_update=update)
    a, b, net = pair(cfg, TcpConfig(congestion_control=name), rate_bps=1e9, delay=0.0001, ecn_threshold=30_000)
    established(a, b, net)
    assert a.cc.name == name
    transfer(a, b, net, os.urandom(1 << 20))


def test_sequence_numbers_wrap():
    a, b, net = pair(isn_a=MASK - 5000, isn_b=MASK - 10)
    established(a, b, net)
    data = os.urandom(300_000)
    b.send(b"z" * 20_000)
    transfer(a, b, net, data)
    assert net.received(True) == b"z" * 20_000
    assert any(seg.seq < 1000 for _, _, seg in data_segments(net)), "the test should cross 2**32"


# ---- SYN retries, RST ------------------------------------------------------------------------
def test_syn_retries_then_failure():
    cfg = TcpConfig(syn_retries=4, initial_rto=1.0)
    a, b, net = pair(cfg, hook=lambda fa, p, now: DROP)
    assert net.run(lambda: a.state is S.CLOSED, max_time=100)
    syns = [(t, seg) for t, _, seg in net.sent(True) if seg.flags & w.SYN]
    assert len(syns) == 5
    gaps = [round(syns[i + 1][0] - syns[i][0], 6) for i in range(4)]
    assert gaps == [1.0, 2.0, 4.0, 8.0]
    assert all(seg.seq == syns[0][1].seq for _, seg in syns)
    failed = net.of(True, ConnectionFailed)
    assert len(failed) == 1 and "SYN" in failed[0].reason
    assert net.now == pytest.approx(31.0)               # 1 + 2 + 4 + 8 + 16


def test_lost_syn_and_lost_syn_ack_are_retried():
    dropped = {"syn": 0, "synack": 0}

    def hook(fa, p, now):
        seg = w.parse_packet(p)[1]
        if seg.flags == w.SYN | w.ECE | w.CWR and not dropped["syn"]:
            dropped["syn"] += 1
            return DROP
        if seg.flags & (w.SYN | w.ACK) == w.SYN | w.ACK and not dropped["synack"]:
            dropped["synack"] += 1
            return DROP
        return PASS

    a, b, net = pair(hook=hook)
    established(a, b, net)
    assert dropped == {"syn": 1, "synack": 1}
    assert a.stats["syn_retransmits"] == 1               # SYN again at 1 s
    assert b.stats["syn_retransmits"] == 1               # SYN-ACK again 1 s after the first one
    assert net.now == pytest.approx(2.0015, abs=1e-6)
    assert a.rtt.samples == 0                            # Karn: no sample from a retransmitted SYN
    a.send(b"after")
    assert net.run(lambda: net.received(False) == b"after")


def test_rst_refuses_connection():
    a = TcpConnection(local=A_ADDR, remote=B_ADDR)
    b = TcpConnection(local=B_ADDR, remote=A_ADDR)         # CLOSED: answers with RST
    a.connect(0.0)
    net = FakeNet(a, b)
    assert net.run(lambda: a.state is S.CLOSED)
    assert net.of(True, Reset)[0].reason == "connection refused"
    rst = [seg for _, _, seg in net.sent(False)][0]
    assert rst.flags == w.RST | w.ACK and rst.seq == 0


def test_rst_in_established_exact_vs_in_window_vs_outside():
    a, b, net = pair()
    established(a, b, net)

    def rst(seq):
        seg = w.TcpSegment(B_ADDR[1], A_ADDR[1], seq & MASK, 0, w.RST, 0)
        return w.build_packet(w.ip_to_bytes(B_ADDR[0]), w.ip_to_bytes(A_ADDR[0]), seg)

    rcv = a.rcv_nxt
    n_before = len(net.sent(True))
    net.inject(True, rst(rcv + 1000))                     # in window, not exact: challenge ACK (RFC 5961)
    net.inject(True, rst(rcv + (1 << 30)))                # far outside: ignored
    net.run(lambda: False, max_time=net.now + 0.01)
    assert a.state is S.ESTABLISHED and a.stats["challenge_acks"] == 1
    challenge = [seg for _, _, seg in net.sent(True)[n_before:]]
    assert challenge and challenge[0].flags & w.ACK and challenge[0].ack == rcv & MASK
    net.inject(True, rst(rcv))
    assert net.run(lambda: a.state is S.CLOSED)
    assert net.of(True, Reset)[0].reason == "connection reset by peer"


def test_abort_sends_rst_and_peer_resets():
    a, b, net = pair()
    established(a, b, net)
    a.send(b"x" * 100)
    net.run(lambda: net.received(False) == b"x" * 100)
    a.abort(net.now)
    assert a.state is S.CLOSED
    assert net.run(lambda: b.state is S.CLOSED)
    assert net.of(False, Reset)
    assert net.sent(True)[-1][2].flags & w.RST


def test_syn_in_established_gets_challenge_ack():
    a, b, net = pair()
    established(a, b, net)
    syn = w.TcpSegment(A_ADDR[1], B_ADDR[1], 12345, 0, w.SYN, 1000, w.TcpOptions(mss=1000))
    net.inject(False, w.build_packet(w.ip_to_bytes(A_ADDR[0]), w.ip_to_bytes(B_ADDR[0]), syn))
    net.run(lambda: False, max_time=net.now + 0.01)
    assert b.state is S.ESTABLISHED and b.stats["challenge_acks"] == 1


def test_reset_for_closed_port():
    ack = w.TcpSegment(1, 2, 100, 5000, w.ACK, 0, payload=b"abc")
    r = reset_for(ack)
    assert (r.flags, r.seq, r.src_port, r.dst_port) == (w.RST, 5000, 2, 1)
    syn = w.TcpSegment(1, 2, 100, 0, w.SYN, 0)
    r = reset_for(syn)
    assert (r.flags, r.seq, r.ack) == (w.RST | w.ACK, 0, 101)
    assert reset_for(w.TcpSegment(1, 2, 0, 0, w.RST, 0)) is None


def test_listener_answers_stray_ack_with_rst():
    b = TcpConnection(local=B_ADDR)
    b.listen()
    seg = w.TcpSegment(A_ADDR[1], B_ADDR[1], 1, 777, w.ACK, 100)
    b.receive_datagram(w.build_packet(w.ip_to_bytes(A_ADDR[0]), w.ip_to_bytes(B_ADDR[0]), seg), 0.0)
    out = b.datagrams_to_send(0.0)
    assert len(out) == 1
    ip, r = w.parse_packet(out[0])
    assert w.ip_to_str(ip.dst) == A_ADDR[0] and r.flags == w.RST and r.seq == 777
    assert b.state is S.LISTEN and b.remote_ip is None


# ---- loss recovery ---------------------------------------------------------------------------
def first_flight_dropper(indices: set[int]):
    """Drop the data segments from a with these indices (0-based, first transmissions only)."""
    seen = {"n": 0}
    dropped_seqs: list[int] = []

    def hook(fa, p, now):
        if not fa:
            return PASS
        seg = w.parse_packet(p)[1]
        if not seg.payload:
            return PASS
        if seg.seq in dropped_seqs:                        # a retransmission: let it through
            return PASS
        i = seen["n"]
        seen["n"] += 1
        if i in indices:
            dropped_seqs.append(seg.seq)
            return DROP
        return PASS
    return hook, dropped_seqs


def test_sack_recovery_retransmits_only_the_holes():
    hook, dropped = first_flight_dropper({2, 5, 6})
    a, b, net = pair(hook=hook, rate_bps=1e9, delay=0.0002)
    established(a, b, net)
    data = os.urandom(40 * 1448)
    a.send(data)
    assert net.run(lambda: net.received(False) == data and a.bytes_acked == len(data))
    segs = data_segments(net)
    first_seen: set[int] = set()
    retrans = []
    for _, _, seg in segs:
        if seg.seq in first_seen:
            retrans.append(seg.seq)
        first_seen.add(seg.seq)
    assert sorted(retrans) == sorted(dropped) and len(dropped) == 3
    assert a.stats["fast_recoveries"] == 1 and a.stats["rto_timeouts"] == 0
    assert a.stats["retransmits"] == 3
    assert not a.in_recovery and a.bytes_in_flight == 0
    # the receiver reported the holes with SACK blocks
    assert any(seg.options.sack_blocks for _, _, seg in net.sent(False))


def test_newreno_without_sack_recovers_two_holes_without_rto():
    hook, dropped = first_flight_dropper({3, 6})
    cfg = TcpConfig(sack=False)
    a, b, net = pair(cfg, TcpConfig(sack=False), hook=hook, rate_bps=1e9, delay=0.0002)
    established(a, b, net)
    assert not a.sack_ok and not b.sack_ok
    data = os.urandom(30 * 1448)
    a.send(data)
    assert net.run(lambda: net.received(False) == data)
    assert a.stats["rto_timeouts"] == 0 and a.stats["fast_recoveries"] == 1
    assert a.stats["retransmits"] == 2                        # partial ACK retransmits the second hole
    assert not any(seg.options.sack_blocks for _, _, seg in net.sent(False))


def test_go_back_n_after_rto_without_sack():
    state = {"black_hole": False}

    def hook(fa, p, now):
        return DROP if state["black_hole"] and fa else PASS

    cfg = TcpConfig(sack=False, min_rto=0.2)
    a, b, net = pair(cfg, TcpConfig(sack=False), hook=hook, delay=0.0002)
    established(a, b, net)
    state["black_hole"] = True
    data = os.urandom(8 * 1448)
    a.send(data)
    net.run(lambda: a.stats["rto_timeouts"] >= 1)
    state["black_hole"] = False
    assert net.run(lambda: net.received(False) == data)
    segs = data_segments(net)
    after = [seg.seq for t, _, seg in segs if t > segs[7][0]]
    resent = [x for i, x in enumerate(after) if i == 0 or x != after[i - 1]]   # the first retry was lost too
    assert resent == [seg.seq for _, _, seg in segs[:8]]          # resent in order from snd_una


def test_rto_backoff_doubles_then_gives_up():
    state = {"black_hole": False}
    cfg = TcpConfig(min_rto=0.2, max_retries=5)
    a, b, net = pair(cfg, hook=lambda fa, p, now: DROP if state["black_hole"] else PASS, delay=0.0005)
    established(a, b, net)
    state["black_hole"] = True
    a.send(b"q" * 1000)
    assert net.run(lambda: a.state is S.CLOSED, max_time=100)
    tx = [t for t, _, seg in data_segments(net)]
    assert len(tx) == 1 + 5
    gaps = [tx[i + 1] - tx[i] for i in range(len(tx) - 1)]
    for g0, g1 in zip(gaps, gaps[1:], strict=False):
        assert g1 == pytest.approx(2 * g0)
    assert gaps[0] == pytest.approx(0.2)                       # min_rto bound after a 1 ms handshake RTT
    assert "retransmissions" in net.of(True, ConnectionFailed)[0].reason
    assert a.stats["rto_timeouts"] == 5


def test_rto_with_sack_resends_only_unsacked():
    # lose the whole tail of a flight except one segment: RTO, then only the holes go again
    hook, dropped = first_flight_dropper({6, 7, 9})
    a, b, net = pair(hook=hook, delay=0.0002)
    established(a, b, net)
    data = os.urandom(10 * 1448)
    a.send(data)
    assert net.run(lambda: net.received(False) == data)
    segs = [seg.seq for _, _, seg in data_segments(net)]
    assert len(segs) == 13 and sorted(segs[10:]) == sorted(dropped)


# ---- RTT estimation ------------------------------------------------------------------------------
def test_rtt_estimator_rfc6298():
    r = RttEstimator(initial_rto=1.0, min_rto=0.2, max_rto=60.0)
    assert r.rto == 1.0
    r.update(0.5)
    assert (r.srtt, r.rttvar) == (0.5, 0.25) and r.rto == pytest.approx(1.5)
    r.update(1.0)
    assert r.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.5)
    assert r.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 1.0)
    assert r.rto == pytest.approx(r.srtt + 4 * r.rttvar)
    base = r.rto
    r.backoff()
    r.backoff()
    assert r.rto == pytest.approx(4 * base)
    for _ in range(20):
        r.backoff()
    assert r.rto == 60.0
    r.update(0.001)
    assert r.backoff_exponent == 0
    tiny = RttEstimator(min_rto=0.2)
    tiny.update(0.0001)
    assert tiny.rto == 0.2                                     # min RTO clamp


def test_connection_measures_rtt_from_the_network():
    a, b, net = pair(delay=0.005)
    established(a, b, net)
    a.send(b"x" * 50_000)
    assert net.run(lambda: a.bytes_acked == 50_000)
    assert a.rtt.min_rtt == pytest.approx(0.010, abs=0.001)
    assert a.rtt.srtt == pytest.approx(0.010, rel=0.5)


# ---- option negotiation -------------------------------------------------------------------------
def test_peer_without_any_option_gets_none_of_them():
    bare = TcpConfig(sack=False, timestamps=False, window_scale=None, ecn=False, receive_buffer=65535)
    a, b, net = pair(TcpConfig(), bare, rate_bps=1e9, ecn_threshold=5000, delay=0.0002,
                     hook=first_flight_dropper({4})[0])
    established(a, b, net)
    assert (a.sack_ok, a.ts_ok, a.ecn_ok, a.snd_wscale, a.rcv_wscale) == (False, False, False, 0, 0)
    synack = [seg for _, _, seg in net.sent(False) if seg.flags & w.SYN][0]
    assert synack.options.wscale is None and not synack.options.sack_permitted and synack.options.timestamp is None
    assert not synack.flags & w.ECE
    assert a.send_mss == 1460
    data = os.urandom(200_000)
    b.send(b"r" * 3000)
    transfer(a, b, net, data)
    for _, ip, seg in net.sent(True)[1:]:                       # everything after our SYN
        assert seg.options.timestamp is None and not seg.options.sack_blocks and seg.options.wscale is None
        assert ip.ecn == w.ECN_NOT_ECT and not seg.flags & (w.ECE | w.CWR)
        assert len(seg.payload) <= 1460
        assert seg.window <= 0xFFFF and seg.window * 1 <= 65535   # unscaled
    assert net.ce_marked == 0


def test_scapy_raw_syn_without_options_is_answered_plainly():
    scapy_inet = pytest.importorskip("scapy.layers.inet")
    IP, TCP = scapy_inet.IP, scapy_inet.TCP
    b = TcpConnection(local=B_ADDR)
    b.listen()
    syn = bytes(IP(src=A_ADDR[0], dst=B_ADDR[0]) / TCP(sport=A_ADDR[1], dport=B_ADDR[1], seq=1000, flags="S",
                                                          window=8192, options=[]))
    b.receive_datagram(syn, 0.0)
    (raw,) = b.datagrams_to_send(0.0)
    p = IP(raw)
    assert str(p[TCP].flags) == "SA" and p[TCP].ack == 1001
    assert [k for k, _ in p[TCP].options] == ["MSS"]               # nothing the peer did not offer
    ack = bytes(IP(src=A_ADDR[0], dst=B_ADDR[0]) / TCP(sport=A_ADDR[1], dport=B_ADDR[1], seq=1001,
                                                          ack=p[TCP].seq + 1, flags="A", window=8192))
    b.receive_datagram(ack, 0.01)
    assert b.state is S.ESTABLISHED
    assert b.peer_mss == 536 and b.send_mss == 536                    # RFC 9293 default MSS
    assert b.snd_wnd == 8192
    b.send(os.urandom(5000))
    segs = [IP(x)[TCP] for x in b.datagrams_to_send(0.02)]
    assert segs and all(len(bytes(s.payload)) <= 536 for s in segs)
    assert sum(len(bytes(s.payload)) for s in segs) == 5000         # window 8192 and cwnd allow it all


def test_our_syn_in_scapy():
    scapy_inet = pytest.importorskip("scapy.layers.inet")
    IP, TCP = scapy_inet.IP, scapy_inet.TCP
    a = TcpConnection(local=A_ADDR, remote=B_ADDR, config=TcpConfig(mss=1400, window_scale=9), isn=0x01020304)
    a.connect(5.0)
    (raw,) = a.datagrams_to_send(5.0)
    p = IP(raw)
    t = p[TCP]
    assert str(t.flags) == "SEC" and t.seq == 0x01020304 and t.ack == 0 and t.window == 65535
    opts = dict(t.options)
    assert opts["MSS"] == 1400 and opts["WScale"] == 9 and opts["SAckOK"] == b""
    tsval, tsecr = opts["Timestamp"]
    assert tsecr == 0 and tsval == a._ts_now(5.0)
    assert [k for k, _ in t.options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]    # Linux's order
    again = p.copy()
    del again.chksum
    del again[TCP].chksum
    again = IP(bytes(again))
    assert (again.chksum, again[TCP].chksum) == (p.chksum, t.chksum)
    assert p.tos & 3 == 0                                        # a SYN is not ECT (RFC 3168 6.1.1)


@pytest.mark.parametrize("offer", ["sack", "timestamps", "window_scale", "ecn"])
def test_each_option_needs_both_sides(offer):
    off = {"sack": dict(sack=False), "timestamps": dict(timestamps=False),
           "window_scale": dict(window_scale=None), "ecn": dict(ecn=False)}[offer]
    for cfg_a, cfg_b in ((TcpConfig(**off), TcpConfig()), (TcpConfig(), TcpConfig(**off))):
        a, b, net = pair(cfg_a, cfg_b)
        established(a, b, net)
        got = {"sack": (a.sack_ok, b.sack_ok), "timestamps": (a.ts_ok, b.ts_ok),
               "window_scale": (a.snd_wscale or a.rcv_wscale, b.snd_wscale or b.rcv_wscale),
               "ecn": (a.ecn_ok, b.ecn_ok)}[offer]
        assert not any(got)


# ---- ECN / DCTCP ------------------------------------------------------------------------------------
def test_dctcp_over_a_marking_bottleneck():
    a, b, net = pair(rate_bps=1e9, ecn_threshold=20_000, delay=0.00005)
    established(a, b, net)
    data = os.urandom(4 << 20)
    transfer(a, b, net, data)
    assert net.ce_marked > 0 and b.stats["ce_received"] == net.ce_marked
    assert a.stats["ecn_marked_acks"] > 0
    assert 0 < a.cc.alpha < 1 and a.stats["retransmits"] == 0
    assert any(seg.flags & w.CWR for _, _, seg in data_segments(net))
    # DCTCP echo: ECE appears on ACKs and is also cleared again (not latched)
    acks = [seg for _, _, seg in net.sent(False) if seg.flags & w.ACK and not seg.payload]
    assert any(s.flags & w.ECE for s in acks) and any(not s.flags & w.ECE for s in acks[len(acks) // 2:])
    # data goes out ECT(0), pure ACKs do not
    assert all(ip.ecn in (w.ECN_ECT0, w.ECN_CE) for _, ip, s in data_segments(net))
    assert all(ip.ecn == w.ECN_NOT_ECT for _, ip, s in net.sent(False) if not s.payload)


def test_classic_ecn_receiver_latches_ece_until_cwr():
    # with Reno (classic RFC 3168 echo) the receiver sets ECE on every ACK until it sees CWR
    cfg = TcpConfig(congestion_control="reno", delayed_ack=0.0)
    a, b, net = pair(cfg, cfg)
    established(a, b, net)
    hdr = (w.ip_to_bytes(A_ADDR[0]), w.ip_to_bytes(B_ADDR[0]))

    def data_pkt(offset, ce, cwr=False):
        seg = w.TcpSegment(A_ADDR[1], B_ADDR[1], (a.snd_nxt + offset) & MASK, a.rcv_nxt & MASK,
                           w.ACK | (w.CWR if cwr else 0), 1000,
                           w.TcpOptions(timestamp=(a._ts_now(net.now), a.ts_recent or 0)), b"d" * 100)
        return w.build_packet(*hdr, seg, ecn=w.ECN_CE if ce else w.ECN_ECT0)

    # forge three data segments from a (a itself is idle) so that we control CE and CWR
    b_acks_before = len(net.sent(False))
    for i, (ce, cwr) in enumerate(((True, False), (False, False), (False, True))):
        b.receive_datagram(data_pkt(100 * i, ce, cwr), net.now)
        net._flush()
    acks = [seg for _, _, seg in net.sent(False)[b_acks_before:]]
    assert [bool(s.flags & w.ECE) for s in acks] == [True, True, False]


def test_no_ecn_means_no_ect_and_no_echo():
    a, b, net = pair(TcpConfig(ecn=False), rate_bps=1e9, ecn_threshold=1000)
    established(a, b, net)
    transfer(a, b, net, os.urandom(300_000))
    assert net.ce_marked == 0
    assert all(ip.ecn == w.ECN_NOT_ECT for _, ip, _ in net.sent(True))
    assert not any(seg.flags & (w.ECE | w.CWR) for _, _, seg in net.sent(True)[1:] + net.sent(False))


# ---- congestion control on a live connection ---------------------------------------------------------
def test_swap_congestion_control_mid_transfer():
    a, b, net = pair(rate_bps=1e9, ecn_threshold=30_000, delay=0.0001)
    established(a, b, net)
    data = os.urandom(2 << 20)
    a.send(data)
    assert net.run(lambda: a.bytes_acked > 500_000)
    before = (a.cc.cwnd, a.cc.ssthresh)
    a.set_congestion_control("cubic", net.now)
    assert a.cc.name == "cubic" and (a.cc.cwnd, a.cc.ssthresh) == before
    assert a.snapshot()["cc"] == "cubic"
    a.close(net.now)
    assert net.run(lambda: b.state is S.CLOSE_WAIT)
    assert net.received(False) == data


# ---- flow control, timestamps, delayed ACKs ---------------------------------------------------------
def test_zero_window_probe_and_reopen():
    mute = {"b": False}
    a, b, net = pair(delay=0.0005, hook=lambda fa, p, now: DROP if mute["b"] and not fa else PASS)
    established(a, b, net)
    mute["b"] = True                                   # b's real (open) window must not reach a
    hdr = (w.ip_to_bytes(B_ADDR[0]), w.ip_to_bytes(A_ADDR[0]))

    def window_update(win):
        seg = w.TcpSegment(B_ADDR[1], A_ADDR[1], b.snd_nxt & MASK, a.snd_una & MASK, w.ACK, win,
                           w.TcpOptions(timestamp=(b._ts_now(net.now) + 5, a._ts_now(net.now))))
        return w.build_packet(*hdr, seg)

    a.receive_datagram(window_update(0), net.now)
    assert a.snd_wnd == 0
    a.send(b"p" * 3000)
    t_send = net.now
    n0 = len(net.sent(True))
    net.run(lambda: a.stats["window_probes"] >= 2, max_time=net.now + 5)
    probes = net.sent(True)[n0:]
    assert len(probes) == 2
    assert all(not seg.payload and seg.seq == (a.snd_una - 1) & MASK for _, _, seg in probes)
    assert probes[1][0] - probes[0][0] == pytest.approx(2 * (probes[0][0] - t_send))   # backed off
    mute["b"] = False
    b_rcv = b.rcv_nxt
    a.receive_datagram(window_update(100), net.now)                 # 100 << 7 bytes
    assert net.run(lambda: b.rcv_nxt == b_rcv + 3000)
    assert net.received(False) == b"p" * 3000


def test_paws_drops_old_timestamps():
    a, b, net = pair()
    established(a, b, net)
    a.send(b"first")
    assert net.run(lambda: net.received(False) == b"first")
    old_ts = (b.ts_recent - 1000) & MASK
    seg = w.TcpSegment(A_ADDR[1], B_ADDR[1], a.snd_nxt & MASK, a.rcv_nxt & MASK, w.ACK, 100,
                       w.TcpOptions(timestamp=(old_ts, 0)), b"stale")
    b.receive_datagram(w.build_packet(w.ip_to_bytes(A_ADDR[0]), w.ip_to_bytes(B_ADDR[0]), seg), net.now)
    assert b.stats["paws_rejects"] == 1 and net.received(False) == b"first"


def test_delayed_ack_timer_and_every_second_segment():
    cfg = TcpConfig(delayed_ack=0.04, ack_every=2)
    a, b, net = pair(cfg, cfg, delay=0.001)
    established(a, b, net)
    t0 = net.now
    a.send(b"one")
    assert net.run(lambda: a.bytes_acked == 3)
    ack_time = [t for t, _, seg in net.sent(False)][-1]
    assert ack_time - t0 == pytest.approx(0.001 + 0.04, abs=1e-6)       # the delayed ACK timer
    a.send(b"x" * 1448 * 2)
    t1 = net.now
    assert net.run(lambda: a.bytes_acked == 3 + 2896)
    assert net.now - t1 == pytest.approx(0.002, abs=1e-6)               # two segments: ACK at once


# ---- receive-side reassembly and the scoreboard -----------------------------------------------------
def test_reassembly_and_sack_block_order():
    r = Reassembly(1000)
    assert r.add(1000, b"a" * 100) == b"a" * 100
    assert r.add(1300, b"c" * 100) == b""
    assert r.add(1500, b"e" * 100) == b""
    assert r.sack_blocks() == [(1500, 1600), (1300, 1400)]             # most recent first (RFC 2018)
    assert r.add(1310, b"c" * 10) == b""                                # duplicate inside a block
    assert r.sack_blocks()[0] == (1300, 1400)                          # its block moves to the front
    assert r.add(1400, b"d" * 100) == b""                                # joins two blocks
    assert r.sack_blocks() == [(1300, 1600)]
    assert r.add(1050, b"a" * 50 + b"b" * 200) == b"b" * 200 + b"c" * 100 + b"d" * 100 + b"e" * 100
    assert r.rcv_nxt == 1600 and not r.has_gap and r.sack_blocks() == []
    assert r.add(900, b"z" * 50) == b""                                 # old data


def test_reassembly_random_order_delivers_exactly():
    rnd = random.Random(3)
    data = os.urandom(50_000)
    pieces = [(i, data[i:i + rnd.randint(1000, 3000)]) for i in range(0, len(data), 1000)]
    pieces = pieces + rnd.sample(pieces, 10)
    rnd.shuffle(pieces)
    r = Reassembly(0)
    out = b"".join(r.add(off, chunk) for off, chunk in pieces)
    assert out == data[:r.rcv_nxt] and r.rcv_nxt == len(data)


def test_scoreboard_is_lost_and_pipe():
    sb = Scoreboard(mss=100, dupthresh=3)
    for i in range(10):
        sb.on_sent(i * 100, (i + 1) * 100, 0.0)
    assert sb.pipe() == 1000
    sb.apply_sack([(300, 500)], 0, 1000)
    sb.update_lost()
    assert [s.lost for s in sb.segments][:3] == [False, False, False]    # only 2 SACKed above
    sb.apply_sack([(600, 700)], 0, 1000)
    sb.update_lost()
    assert [s.lost for s in sb.segments] == [True, True, True, False, False, False, False, False, False, False]
    assert sb.pipe() == 1000 - 300 - 300
    seg = sb.next_retransmit()
    assert seg.start == 0
    sb.on_retransmit(seg, 1.0)
    assert sb.pipe() == 500 and sb.next_retransmit().start == 100
    sb.ack(300)
    assert sb.segments[0].start == 300 and sb.sacked_bytes == 300


def test_rangeset():
    rs = RangeSet()
    assert rs.add(10, 20) == 10 and rs.add(15, 25) == 5 and rs.add(30, 40) == 10
    assert list(rs) == [(10, 25), (30, 40)]
    assert rs.add(25, 30) == 5 and list(rs) == [(10, 40)]
    assert rs.add(0, 100) == 70 and list(rs) == [(0, 100)]
    rs.remove_below(50)
    assert list(rs) == [(50, 100)] and rs.covers(60, 70) and not rs.covers(40, 60)
    assert rs.overlap(0, 60) == 10 and rs.highest == 100


def test_unwrap():
    assert unwrap(5, (1 << 32) - 10) == (1 << 32) + 5
    assert unwrap((1 << 32) - 10, (1 << 32) + 5) == (1 << 32) - 10
    assert unwrap(100, 50) == 100


# ---- interoperability with Linux TCP (a TUN device in a private network namespace) -------------------
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE, TCPI_OPT_ECN = 1, 2, 4, 8


class LinuxPeer:
    """Linux TCP on one side of a TUN device, our TcpConnection on the other; the test is the wire.

    `loss` drops that fraction of packets in each direction (seeded), so both stacks recover
    with each other's SACK blocks.
    """

    LINUX_IP, OUR_IP = "10.231.0.1", "10.231.0.2"

    def __init__(self, ns: str, loss: float = 0.0, seed: int = 0) -> None:
        import fcntl
        import subprocess
        import time

        self.time = time
        self.ns = ns
        run = lambda *a: subprocess.run(["ip", "-n", ns, *a], check=True, capture_output=True)  # noqa: E731
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        from etran import netns
        self._ctx = netns.enter(ns)
        self._ctx.__enter__()
        self.tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        ifr = b"etun0".ljust(16, b"\0") + (IFF_TUN | IFF_NO_PI).to_bytes(2, "little") + bytes(22)
        fcntl.ioctl(self.tun, TUNSETIFF, ifr)
        run("addr", "add", f"{self.LINUX_IP}/24", "dev", "etun0")
        run("link", "set", "etun0", "up")
        run("link", "set", "lo", "up")
        with open("/proc/sys/net/ipv4/tcp_ecn", "w") as f:        # per namespace: request ECN too
            f.write("1")
        self.rnd = random.Random(seed)
        self.loss = loss
        self.dropped = 0

    def close(self) -> None:
        import subprocess
        os.close(self.tun)
        self._ctx.__exit__(None, None, None)
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)

    def now(self) -> float:
        return self.time.monotonic()

    def pump(self, conn: TcpConnection, events: list, step: Callable[[], bool], timeout: float = 60.0) -> None:
        """Move packets between the TUN device and conn until step() returns True."""
        import select
        deadline = self.now() + timeout
        while True:
            now = self.now()
            for p in conn.datagrams_to_send(now):
                if self.loss and self.rnd.random() < self.loss:
                    self.dropped += 1
                    continue
                os.write(self.tun, p)
            while (e := conn.next_event()) is not None:
                events.append(e)
            if step():
                return
            assert now < deadline, f"Linux interop timed out: {conn.snapshot()}"
            t = conn.get_timer()
            wait = 0.01 if t is None else max(0.0, min(0.01, t - now))
            r, _, _ = select.select([self.tun], [], [], wait)
            if r:
                while True:
                    try:
                        p = os.read(self.tun, 65536)
                    except BlockingIOError:
                        break
                    if p[0] >> 4 != 4:
                        continue                                   # IPv6 chatter
                    if self.loss and self.rnd.random() < self.loss:
                        self.dropped += 1
                        continue
                    conn.receive_datagram(p, self.now())
            t = conn.get_timer()
            if t is not None and t <= self.now():
                conn.handle_timer(self.now())


def tcp_info_options(sock) -> tuple[int, int, int]:
    import socket
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return info[5], info[6] & 0x0F, info[6] >> 4            # options, snd_wscale, rcv_wscale


def _snmp(name: str) -> dict[str, int]:
    with open("/proc/thread-self/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith(name + ":")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))


@pytest.mark.kernel
@pytest.mark.parametrize("loss", [0.0, 0.02])
def test_linux_connects_to_us_and_both_send_1mb(unique_name, loss):
    import socket
    peer = LinuxPeer(unique_name, loss=loss, seed=1)
    try:
        ours = TcpConnection(local=(peer.OUR_IP, 5000), config=TcpConfig(min_rto=0.05, delayed_ack=0.01))
        ours.listen()
        k = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        k.setblocking(False)
        k.connect_ex((peer.OUR_IP, 5000))
        events: list = []
        peer.pump(ours, events, lambda: ours.state is S.ESTABLISHED)
        assert (ours.sack_ok, ours.ts_ok, ours.ecn_ok, ours.snd_wscale > 0) == (True, True, True, True)
        up, down = os.urandom(1 << 20), os.urandom(1 << 20)
        ours.send(down)
        sent = 0
        got = bytearray()
        k_eof = False

        def step():
            nonlocal sent, k_eof
            try:
                if sent < len(up):
                    sent += k.send(up[sent:sent + 65536])
                    if sent == len(up):
                        k.shutdown(socket.SHUT_WR)
                while not k_eof:
                    chunk = k.recv(1 << 20)
                    if not chunk:
                        k_eof = True
                    got.extend(chunk)
            except BlockingIOError:
                pass
            if len(got) == len(down) and ours.state in (S.ESTABLISHED, S.CLOSE_WAIT) and not ours.unsent_bytes:
                ours.close(peer.now())
            return k_eof and ours.state in (S.CLOSED, S.TIME_WAIT, S.LAST_ACK, S.CLOSE_WAIT) and any(
                isinstance(e, PeerClosed) for e in events)

        peer.pump(ours, events, step)
        assert bytes(got) == down
        assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == up
        opts, snd_ws, rcv_ws = tcp_info_options(k)
        assert opts & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE | TCPI_OPT_ECN) == 15
        assert snd_ws == 7                                          # Linux uses our shift
        assert _snmp("Tcp")["InCsumErrors"] == 0 and _snmp("Tcp")["InErrs"] == 0
        if loss:
            assert peer.dropped > 0 and ours.stats["retransmits"] > 0
        k.close()
        peer.pump(ours, events, lambda: ours.state is S.CLOSED, timeout=10)
    finally:
        peer.close()


@pytest.mark.kernel
@pytest.mark.parametrize("loss", [0.0, 0.02])
def test_we_connect_to_linux_and_both_send_1mb(unique_name, loss):
    import socket
    peer = LinuxPeer(unique_name, loss=loss, seed=2)
    try:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind((peer.LINUX_IP, 5001))
        srv.listen()
        srv.setblocking(False)
        ours = TcpConnection(local=(peer.OUR_IP, 40001), remote=(peer.LINUX_IP, 5001),
                             config=TcpConfig(min_rto=0.05, delayed_ack=0.01, congestion_control="cubic"))
        ours.connect(peer.now())
        events: list = []
        peer.pump(ours, events, lambda: ours.state is S.ESTABLISHED)
        assert (ours.sack_ok, ours.ts_ok, ours.ecn_ok, ours.snd_wscale > 0) == (True, True, True, True)
        conn = {}

        def accept():
            try:
                conn["k"], _ = srv.accept()
                conn["k"].setblocking(False)
            except BlockingIOError:
                pass
            return "k" in conn

        peer.pump(ours, events, accept)
        k = conn["k"]
        up, down = os.urandom(1 << 20), os.urandom(1 << 20)
        ours.send(up)
        ours.close(peer.now())
        sent = 0
        got = bytearray()
        k_eof = False

        def step():
            nonlocal sent, k_eof
            try:
                while not k_eof:
                    chunk = k.recv(1 << 20)
                    if not chunk:
                        k_eof = True
                    got.extend(chunk)
            except BlockingIOError:
                pass
            try:
                if sent < len(down):
                    sent += k.send(down[sent:sent + 65536])
                    if sent == len(down):
                        k.shutdown(socket.SHUT_WR)
            except BlockingIOError:
                pass
            return k_eof and sent == len(down) and any(isinstance(e, PeerClosed) for e in events)

        peer.pump(ours, events, step)
        assert bytes(got) == up
        assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == down
        opts, snd_ws, rcv_ws = tcp_info_options(k)
        assert opts & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE | TCPI_OPT_ECN) == 15
        peer.pump(ours, events, lambda: ours.state is S.TIME_WAIT, timeout=10)
        assert _snmp("Tcp")["InCsumErrors"] == 0
        if loss:
            assert peer.dropped > 0
        k.close()
        srv.close()
    finally:
        peer.close()
