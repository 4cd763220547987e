"""Homa's eBPF data path (etran/kernel/bpf/homa.bpf.c) through BPF_PROG_RUN.

The core and the Homa object are loaded in a private namespace (nothing attached, no traffic:
test runs never transmit); frames go through the real entrance (ingress) and egress hook.
The kernel's state is read back from its maps, and the control packets it queued for
generation from gen_queue. Covers reassembly, grants (SRPT, overcommit, one message per peer,
capped incoming), egress enforcement and stamping, the answers to RESEND/NEED_ACK, acks, and
malformed packets: truncated, wrong types, bad offsets, lengths past the message, and 10,000
random packets, all dropped and counted, with the state's invariants intact.
"""

from __future__ import annotations

import random
import socket
import struct

import pytest

from etran import netns
from etran.homa import wire
from etran.kernel.structs import (
    AppInfo, AppStats, DropReason, GenDesc, HomaApp, HomaCounter, HomaRpc, HomaRpcKey, HomaSched, HomaStats,
    NeighEntry, PortKey, PortOwner,
)

pytestmark = pytest.mark.kernel

XDP_DROP, XDP_PASS, XDP_REDIRECT = 1, 2, 4
HOST_IP, HOST_MAC = "10.9.0.1", bytes.fromhex("020000000001")
PEERS = ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5"]
PEER_MAC = bytes.fromhex("020000000002")
SERVER_PORT = 4000
CLIENT_PORT = 40000
ID_LO, ID_HI = 1000, 3000
SEG = 1424
MAX_RPCS = 64


def _ip(a: str) -> int:
    return int.from_bytes(socket.inet_aton(a), "little")


class _StubDaemon:
    """What HomaTransport needs of a daemon to load its programs and write its config."""

    def __init__(self, kernel) -> None:
        from etran.daemon.daemon import Quotas

        self.kernel = kernel
        self.quotas = Quotas()
        self.ip = HOST_IP


class Harness:
    def __init__(self, kernel, transport, app_ifindex: int, hook_ifindex: int) -> None:
        self.k = kernel
        self.t = transport
        self.hook_ifindex = hook_ifindex
        self.entrance = kernel.program("entrance")
        self.hook = kernel.program("egress_hook")

    # ---- frames ----------------------------------------------------------------------
    def frame(self, homa: bytes, src: str = PEERS[0], dst: str = HOST_IP, tot_len: int | None = None,
              eth_src: bytes = PEER_MAC, eth_dst: bytes = HOST_MAC, tos: int = 0) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(homa) if tot_len is None else tot_len, 0, 0x4000, 64,
                         wire.IPPROTO_HOMA, 0, socket.inet_aton(src), socket.inet_aton(dst))
        return eth_dst + eth_src + b"\x08\x00" + ip + homa

    def rx(self, homa: bytes, src: str = PEERS[0], **kw) -> int:
        return self.entrance.test_run(self.frame(homa, src=src, **kw)).retval

    def rx_frame(self, frame: bytes) -> int:
        return self.entrance.test_run(frame).retval

    def tx(self, homa: bytes, dst: str = PEERS[0]) -> tuple[int, bytes]:
        """A frame the application (slot 1) sends, through the egress hook."""
        r = self.hook.test_run(self.frame(homa, src=HOST_IP, dst=dst, eth_src=HOST_MAC, eth_dst=bytes(6)),
                               ingress_ifindex=self.hook_ifindex)
        return r.retval, r.data

    # ---- kernel state ---------------------------------------------------------------------
    def rpcs(self) -> dict[tuple[int, int, int], HomaRpc]:
        out = {}
        for k, v in self.k.objects["homa"].map("homa_rpcs").lookup_batch():
            key = HomaRpcKey.from_buffer_copy(k)
            out[(key.id, key.peer, socket.ntohs(key.lport))] = HomaRpc.from_buffer_copy(v)
        return out

    def rpc(self, rpc_id: int, peer: str = PEERS[0], lport: int = SERVER_PORT) -> HomaRpc | None:
        return self.rpcs().get((rpc_id, _ip(peer), lport))

    def counters(self) -> dict[str, int]:
        total = [0] * 64
        for raw in self.k.objects["homa"].map("homa_stats").lookup_percpu(0):
            s = HomaStats.from_buffer_copy(raw)
            for i in range(64):
                total[i] += s.c[i]
        return {c.label: total[c.value] for c in HomaCounter if c != HomaCounter.HOMA_C_NR}

    def drops(self) -> int:
        total = 0
        for slot in (0, 1):
            s = self.k.app_stats(slot)
            total += sum(s.drops)
        return total

    def drop_reason(self, reason: DropReason) -> int:
        return sum(self.k.app_stats(slot).drops[reason] for slot in (0, 1))

    def gen(self) -> list[GenDesc]:
        out = []
        q = self.k.map("gen_queue")
        while (raw := q.pop()) is not None:
            out.append(GenDesc.from_buffer_copy(raw))
        return out

    def sched(self) -> HomaSched:
        return HomaSched.from_buffer_copy(self.k.objects["homa"].map("homa_sched_map").lookup(0))

    def app_rpcs(self) -> int:
        return AppInfo.from_buffer_copy(self.k.map("apps").lookup(1)).rpcs


@pytest.fixture
def h(veth_ns):
    from etran.daemon.homa import HomaTransport
    from etran.daemon.kernel import Kernel

    with netns.enter(veth_ns):
        va, vb = socket.if_nametoindex("va"), socket.if_nametoindex("vb")
        k = Kernel()
        t = None
        try:
            t = HomaTransport(_StubDaemon(k))
            t.start()
            t.configure(grant_increment=0)   # a GRANT per packet, as in HomaModule (the model)
            k.set_host(HOST_IP, HOST_MAC.hex(":"), va, 1500)
            k.map("apps").update(1, AppInfo(active=1, hook_ifindex=vb, app_ifindex=vb, max_rpcs=MAX_RPCS))
            k.map("tx_ports").update(1, vb)
            k.map("hook_slot").update(vb, 1)
            for port in (SERVER_PORT, CLIENT_PORT):
                k.map("ports").update(PortKey(proto=wire.IPPROTO_HOMA, port=socket.htons(port)), PortOwner(slot=1))
            t.map("homa_apps").update(1, HomaApp(id_lo=ID_LO, id_hi=ID_HI))
            for p in PEERS:
                e = NeighEntry()
                e.mac[:] = PEER_MAC
                k.map("neigh").update(_ip(p), e)
            yield Harness(k, t, vb, vb)
        finally:
            if t is not None:
                t.stop()
            k.close()


def data(sender_id: int, length: int, offset: int, payload: bytes | None = None, sport: int = CLIENT_PORT,
         dport: int = SERVER_PORT, incoming: int | None = None, ack: tuple[int, int] = (0, 0),
         cutoff_version: int = 1) -> bytes:
    if payload is None:
        payload = bytes((offset + i) & 0xFF for i in range(min(SEG, length - offset)))
    if incoming is None:
        incoming = min(length, 8 * SEG)
    return wire.build_data(sport, dport, sender_id, length, incoming, offset, payload, ack[0], ack[1], cutoff_version)


def request(h: Harness, client_id: int, length: int, src: str = PEERS[0], offsets=None) -> list[int]:
    """Send the packets of a request (client id even) into the host; returns the verdicts."""
    if offsets is None:
        offsets = range(0, max(length, 1), SEG) if length else [0]
    return [h.rx(data(client_id, length, off), src=src) for off in offsets]


# ---- reassembly ---------------------------------------------------------------------------

def test_request_creates_server_rpc_and_completes(h):
    assert request(h, 100, 3000, offsets=[0]) == [XDP_REDIRECT]
    r = h.rpc(101)
    assert r is not None and r.state == 6 and r.in_length == 3000 and r.in_remaining == 3000 - SEG
    assert h.app_rpcs() == 1
    assert request(h, 100, 3000, offsets=[2 * SEG]) == [XDP_REDIRECT]     # a gap
    r = h.rpc(101)
    assert r.n_gaps == 1 and (r.gaps[0].start, r.gaps[0].end) == (SEG, 2 * SEG)
    assert request(h, 100, 3000, offsets=[2 * SEG]) == [XDP_DROP]         # duplicate: dropped, counted
    assert h.counters()["rx_dup"] == 1
    assert request(h, 100, 3000, offsets=[SEG]) == [XDP_REDIRECT]         # fills it: complete
    r = h.rpc(101)
    assert r.state == 8 and r.in_remaining == 0 and r.n_gaps == 0        # IN_SERVICE
    assert request(h, 100, 3000, offsets=[0]) == [XDP_DROP]              # late duplicate


def test_gap_slots_are_bounded(h):
    length = 40 * SEG
    offsets = [0] + [2 * i * SEG for i in range(1, 10)]   # nine holes: one too many
    verdicts = request(h, 200, length, offsets=offsets)
    assert verdicts[:9] == [XDP_REDIRECT] * 9 and verdicts[9] == XDP_DROP
    assert h.rpc(201).n_gaps == 8
    assert h.counters()["rx_gap_overflow"] == 1


def test_zero_length_message(h):
    assert h.rx(data(300, 0, 0, b"")) == XDP_REDIRECT
    assert h.rpc(301).state == 8


# ---- grants ----------------------------------------------------------------------------------

def grants(descs: list[GenDesc]) -> list[tuple[int, int, int]]:
    """(rpc id, offset, priority) of queued GRANTs."""
    return [(d.id, d.arg0 & 0xFFFFFFFF, d.arg0 >> 32) for d in descs if d.kind == wire.GRANT]


def test_grants_keep_rtt_bytes_ahead(h):
    cfg = h.t.config
    length = 100 * SEG
    request(h, 400, length, offsets=[0])
    g = grants(h.gen())
    assert [x[:2] for x in g] == [(401, SEG + cfg.rtt_bytes)]
    assert h.rpc(401).in_granted == SEG + cfg.rtt_bytes


def test_grant_increment_batches_grants(h):
    h.t.configure(grant_increment=3 * SEG)
    length = 100 * SEG
    offsets = list(range(0, 20 * SEG, SEG))
    request(h, 450, length, offsets=offsets)
    g = grants(h.gen())
    assert 3 <= len(g) <= len(offsets) // 3 + 1
    steps = [b - a for (_, a, _), (_, b, _) in zip(g, g[1:])]
    assert all(step >= 3 * SEG for step in steps)


def test_srpt_one_message_per_peer_and_overcommit(h):
    # two messages from one peer: only the shorter one is granted to
    request(h, 500, 200 * SEG, src=PEERS[0], offsets=[0])
    assert [i for i, _, _ in grants(h.gen())] == [501]
    request(h, 502, 50 * SEG, src=PEERS[0], offsets=[0])
    assert [i for i, _, _ in grants(h.gen())] == [503]
    request(h, 500, 200 * SEG, src=PEERS[0], offsets=[SEG])
    assert grants(h.gen()) == []          # 501 waits: its peer's shorter message is the one granted
    assert h.rpc(501).in_granted == SEG + h.t.config.rtt_bytes   # what it got while it was alone
    # a shorter message from another peer outranks it: higher priority
    request(h, 600, 20 * SEG, src=PEERS[1], offsets=[0])
    g = grants(h.gen())
    prio = {i: p for i, _, p in g}
    assert 601 in prio
    request(h, 502, 50 * SEG, src=PEERS[0], offsets=[SEG])
    prio.update({i: p for i, _, p in grants(h.gen())})
    assert prio[601] > prio[503]
    s = h.sched()
    keys = [(s.e[i].length - s.e[i].granted, s.e[i].birth) for i in range(s.n)]
    assert keys == sorted(keys)


def test_max_incoming_caps_grants(h):
    h.t.configure(max_overcommit=8, max_incoming=30_000, rtt_bytes=10_000)
    for i, peer in enumerate(PEERS):
        request(h, 700 + 2 * i, 100 * SEG, src=peer, offsets=[0])
    h.gen()
    s = h.sched()
    outstanding = sum(max(0, s.e[i].granted - s.e[i].received) for i in range(s.n))
    assert outstanding <= 30_000 + 8 * SEG   # each message's unscheduled bytes count as well


# ---- egress ------------------------------------------------------------------------------------

def test_egress_creates_client_rpc_enforces_grants_and_stamps(h):
    length = 20 * SEG
    verdict, out = h.tx(data(ID_LO, length, 0, sport=CLIENT_PORT, dport=SERVER_PORT))
    assert verdict == XDP_REDIRECT
    r = h.rpc(ID_LO, lport=CLIENT_PORT)
    assert r is not None and r.state == 5 and r.out_length == length and r.out_granted == h.t.config.unsched_limit
    hdr = wire.parse(out[34:])
    assert hdr.offset == 0 and hdr.incoming == h.t.config.unsched_limit
    assert out[15] >> 5 == 4                # unscheduled priority for 28 KB: level 4 by default
    # beyond the granted offset: refused
    verdict, _ = h.tx(data(ID_LO, length, h.t.config.unsched_limit, sport=CLIENT_PORT))
    assert verdict == XDP_DROP and h.counters()["tx_window"] == 1
    # a GRANT opens it, at the granted priority
    h.rx(wire.build_grant(SERVER_PORT, CLIENT_PORT, ID_LO + 1, 12 * SEG, 2))
    verdict, out = h.tx(data(ID_LO, length, 8 * SEG, sport=CLIENT_PORT))
    assert verdict == XDP_REDIRECT and out[15] >> 5 == 2
    pub = h.k  # the granted offset is published for the application
    assert h.rpc(ID_LO, lport=CLIENT_PORT).out_granted == 12 * SEG


def test_egress_refuses_foreign_ids_ports_and_control_packets(h):
    assert h.tx(data(ID_HI + 2, 100, 0, sport=CLIENT_PORT))[0] == XDP_DROP          # id not ours
    assert h.tx(data(ID_LO + 2, 100, 0, sport=5555))[0] == XDP_DROP                 # port not ours
    assert h.tx(data(ID_LO + 3, 100, 0, sport=SERVER_PORT))[0] == XDP_DROP          # unknown server id
    assert h.tx(wire.build_grant(CLIENT_PORT, SERVER_PORT, ID_LO, 99999, 7))[0] == XDP_DROP
    assert h.tx(wire.build_ack(CLIENT_PORT, SERVER_PORT, 0, [(1234, SERVER_PORT)]))[0] == XDP_DROP
    c = h.counters()
    assert c["tx_bad_id"] == 1 and c["tx_not_owner"] == 4
    assert not h.rpcs()


def test_response_needs_a_complete_request_and_is_acked(h):
    request(h, 800, 100, offsets=[0])                                # a complete request: IN_SERVICE
    assert h.tx(data(801, 200, 0, sport=SERVER_PORT, dport=CLIENT_PORT))[0] == XDP_REDIRECT
    assert h.rpc(801).state == 5
    request(h, 802, 3000, offsets=[0])                               # incomplete: no response yet
    assert h.tx(data(803, 200, 0, sport=SERVER_PORT, dport=CLIENT_PORT))[0] == XDP_DROP
    # a piggybacked ack (in the client's next request) frees the first: DEAD until reaped
    request(h, 804, 100, offsets=[0]) and h.rx(data(806, 100, 0, ack=(800, SERVER_PORT)))
    assert h.rpc(801).state == 9
    assert h.tx(data(801, 200, 0, sport=SERVER_PORT, dport=CLIENT_PORT))[0] == XDP_DROP


def test_client_completion_acks_and_piggybacks(h):
    assert h.tx(data(ID_LO, 100, 0, sport=CLIENT_PORT, dport=SERVER_PORT))[0] == XDP_REDIRECT
    # the response completes the RPC: it ends, an ack is owed
    resp = data(ID_LO + 1, 50, 0, sport=SERVER_PORT, dport=CLIENT_PORT)
    assert h.rx(resp) == XDP_REDIRECT
    assert h.rpc(ID_LO, lport=CLIENT_PORT).state == 9 and h.app_rpcs() == 0   # DEAD until reaped
    assert h.rx(resp) == XDP_DROP   # a late duplicate is dropped
    # a late retransmission of the request does not start the RPC over, not even once it is forgotten
    assert h.tx(data(ID_LO, 100, 0, sport=CLIENT_PORT, dport=SERVER_PORT))[0] == XDP_DROP
    assert h.rpc(ID_LO, lport=CLIENT_PORT).state == 9 and h.app_rpcs() == 0
    h.t.map("homa_rpcs").delete(HomaRpcKey(id=ID_LO, peer=_ip(PEERS[0]), lport=socket.htons(CLIENT_PORT)))
    retrans = wire.build_data(CLIENT_PORT, SERVER_PORT, ID_LO, 100, 100, 0, bytes(100), retransmit=1)
    assert h.tx(retrans)[0] == XDP_DROP and h.rpc(ID_LO, lport=CLIENT_PORT) is None
    assert h.counters()["tx_stale"] == 2
    verdict, out = h.tx(data(ID_LO + 2, 100, 0, sport=CLIENT_PORT, dport=SERVER_PORT))
    assert verdict == XDP_REDIRECT
    p = wire.parse(out[34:])
    assert (p.ack_id, p.ack_port) == (ID_LO, SERVER_PORT)


def test_resend_answers(h):
    h.gen()
    # unknown RPC: RPC_UNKNOWN
    assert h.rx(wire.build_resend(CLIENT_PORT, SERVER_PORT, 900, 0, 100, 7)) == XDP_DROP
    assert [d.kind for d in h.gen()] == [wire.RPC_UNKNOWN]
    # a request still in service: BUSY
    request(h, 902, 100, offsets=[0])
    assert h.rx(wire.build_resend(CLIENT_PORT, SERVER_PORT, 902, 0, 100, 7)) == XDP_DROP
    assert [d.kind for d in h.gen()] == [wire.BUSY]
    # data that was sent: the application retransmits it
    h.tx(data(903, 100, 0, sport=SERVER_PORT, dport=CLIENT_PORT))
    assert h.rx(wire.build_resend(CLIENT_PORT, SERVER_PORT, 902, 0, 100, 7)) == XDP_REDIRECT
    # a NEED_ACK for a client RPC this host no longer has: an ACK
    assert h.rx(wire.build_need_ack(SERVER_PORT, CLIENT_PORT, ID_LO + 1)) == XDP_DROP
    assert [(d.kind, d.id) for d in h.gen()] == [(wire.ACK, ID_LO)]


def test_quota_bounds_server_rpcs(h):
    for i in range(MAX_RPCS + 10):
        h.rx(data(10_000 + 2 * i, 3000, 0))
    assert len(h.rpcs()) == MAX_RPCS and h.app_rpcs() == MAX_RPCS
    assert h.counters()["rx_quota"] == 10


# ---- malformed packets ------------------------------------------------------------------------

def test_truncated_packets_are_dropped_and_counted(h):
    full = data(1100, 3000, 0)
    before = h.drops()
    n = 0
    for cut in range(0, len(full) - 1, 7):
        assert h.rx(full[:cut], tot_len=20 + len(full)) == XDP_DROP   # IP claims more than there is
        n += 1
        if cut < wire.DATA_HDR_LEN:
            assert h.rx(full[:cut]) == XDP_DROP                       # the header itself is cut
            n += 1
    assert h.drops() - before == n
    assert h.counters()["rx_malformed"] == n
    assert not h.rpcs()


def test_wrong_types_are_dropped_and_counted(h):
    before = h.drops()
    for t in (0x00, 0x0F, 0x19, 0x42, 0xE0, 0xFF):
        pkt = bytearray(data(1200, 100, 0))
        pkt[wire.TYPE_OFFSET] = t
        assert h.rx(bytes(pkt)) == XDP_DROP
    assert h.rx(wire.build_freeze(CLIENT_PORT, SERVER_PORT, 1200)) == XDP_DROP
    assert h.drops() - before == 7
    c = h.counters()
    assert c["rx_bad_type"] == 6 and c["rx_freeze"] == 1
    assert not h.rpcs()


def test_bad_offsets_and_lengths_are_dropped(h):
    request(h, 1300, 5000, offsets=[0])
    snapshot = bytes(h.rpc(1301))
    bad = [
        data(1300, 5000, 6000, b"x" * 10),             # offset past the message
        data(1300, 5000, 4500, b"x" * 1000),           # data past the message's end
        data(1300, 9000, SEG),                          # a different length for a known message
        data(1300, 5000, SEG, b""),                     # no data
        data(1300, 0, 0, b"x"),                         # data in an empty message
        data(1302, 2_000_000, 0),                       # longer than any message
        data(1302, 5000, 0, b"x" * 1500),               # a segment longer than the MTU allows
        wire.build_ack(CLIENT_PORT, SERVER_PORT, 0)[:-1],             # short ACK
        wire.build_ack(CLIENT_PORT, SERVER_PORT, 0, [(1, 2)])[:28] + b"\x00\x09" + bytes(50),  # 9 acks
        wire.build_grant(CLIENT_PORT, SERVER_PORT, 1300, 100, 9),     # priority 9
        wire.build_resend(CLIENT_PORT, SERVER_PORT, 1300, 0, 1, 0)[:-1],
        wire.build_cutoffs(CLIENT_PORT, SERVER_PORT, 1300, [1] * 8, 1)[:-2],
    ]
    before = h.drops()
    for pkt in bad:
        assert h.rx(pkt) == XDP_DROP, pkt[:40].hex()
    assert h.drops() - before == len(bad)
    assert bytes(h.rpc(1301)) == snapshot     # the known RPC is untouched
    assert h.rpc(1303) is None


def check_invariants(h: Harness) -> None:
    for key, r in h.rpcs().items():
        assert r.slot == 1, key
        assert r.state in (5, 6, 8, 9), key
        assert r.n_gaps <= 8
        if r.flags & 8:   # the incoming message exists
            assert r.in_remaining <= r.in_length <= wire.HOMA_MAX_MESSAGE_LENGTH
            assert r.in_recv_end <= r.in_length
            for i in range(r.n_gaps):
                g = r.gaps[i]
                assert g.start < g.end <= r.in_recv_end
            missing = sum(r.gaps[i].end - r.gaps[i].start for i in range(r.n_gaps)) + r.in_length - r.in_recv_end
            assert missing == r.in_remaining, key
        assert r.out_granted <= r.out_length
    s = h.sched()
    assert s.n <= 64
    keys = [(s.e[i].length - s.e[i].granted, s.e[i].birth) for i in range(s.n)]
    assert keys == sorted(keys)
    for i in range(s.n):
        assert s.e[i].granted <= s.e[i].length
    assert h.app_rpcs() == sum(1 for r in h.rpcs().values() if r.state != 9)


def random_packet(rnd: random.Random, known_ids: list[int]) -> bytes:
    kind = rnd.random()
    port = rnd.choice([SERVER_PORT, CLIENT_PORT, rnd.randrange(65536)])
    sid = rnd.choice(known_ids + [rnd.getrandbits(64), rnd.randrange(20)])
    if kind < 0.15:   # garbage of any length
        return rnd.randbytes(rnd.randrange(0, 120))
    if kind < 0.25:   # a common header with a random type, then garbage
        return struct.pack("!HHI3sBBBHHHQ", rnd.randrange(65536), port, rnd.getrandbits(32), b"\0\0\0",
                           rnd.randrange(256), 0x50, 0, 0, 0, 0, sid) + rnd.randbytes(rnd.randrange(0, 80))
    t = rnd.choice(list(wire.PacketType))
    if t == wire.DATA:
        length = rnd.choice([0, 1, 100, 5000, 100_000, 1_000_000, 1_000_001, rnd.getrandbits(32)])
        offset = rnd.choice([0, SEG, 2 * SEG, rnd.randrange(max(1, length + 10)), rnd.getrandbits(32)])
        n = rnd.choice([0, 1, 10, SEG, SEG + 1, rnd.randrange(1500)])
        return wire.build_data(rnd.randrange(65536), port, sid, length & 0xFFFFFFFF, rnd.getrandbits(32),
                               offset & 0xFFFFFFFF, rnd.randbytes(n), rnd.choice([0, rnd.getrandbits(64)]),
                               rnd.randrange(65536), rnd.randrange(65536), rnd.randrange(2))
    if t == wire.GRANT:
        return wire.build_grant(rnd.randrange(65536), port, sid, rnd.getrandbits(32), rnd.randrange(12))
    if t == wire.RESEND:
        return wire.build_resend(rnd.randrange(65536), port, sid, rnd.getrandbits(32), rnd.getrandbits(31), 7)
    if t == wire.CUTOFFS:
        return wire.build_cutoffs(rnd.randrange(65536), port, sid, [rnd.getrandbits(32) for _ in range(8)],
                                  rnd.randrange(65536))
    if t == wire.ACK:
        acks = [(rnd.choice(known_ids + [rnd.getrandbits(64)]), port) for _ in range(rnd.randrange(6))]
        pkt = bytearray(wire.build_ack(rnd.randrange(65536), port, sid, acks))
        if rnd.random() < 0.2:
            pkt[28:30] = rnd.randrange(65536).to_bytes(2, "big")   # a lying count
        return bytes(pkt)
    return struct.pack("!HHI3sBBBHHHQ", rnd.randrange(65536), port, 0, b"\0\0\0", t, 0x50, 0, 0, 0, 0, sid)


def test_random_packets_are_dropped_or_handled_and_state_stays_sound(h):
    rnd = random.Random(146)
    # a sentinel RPC from a peer the random packets never use
    sentinel_peer = PEERS[3]
    request(h, 1500, 4 * SEG, src=sentinel_peer, offsets=[0, 2 * SEG])
    sentinel = bytes(h.rpc(1501, peer=sentinel_peer))
    known = [1500, 1501, 2000, 2001, 2002, 2003]
    verdicts = {XDP_DROP: 0, XDP_REDIRECT: 0}
    drops_before = h.drops()
    for i in range(10_000):
        pkt = random_packet(rnd, known)
        src = rnd.choice(PEERS[:3])
        tot = None if rnd.random() < 0.9 else rnd.randrange(0, 1600)
        v = h.rx(pkt, src=src, tot_len=tot)
        assert v in verdicts, f"packet {i}: verdict {v}"
        verdicts[v] += 1
        if i % 2500 == 0:
            check_invariants(h)
            h.gen()
    check_invariants(h)
    # every drop was counted
    assert h.drops() - drops_before == verdicts[XDP_DROP]
    assert verdicts[XDP_DROP] > 8000
    # the sentinel is untouched and still completes normally
    assert bytes(h.rpc(1501, peer=sentinel_peer)) == sentinel
    assert request(h, 1500, 4 * SEG, src=sentinel_peer, offsets=[SEG, 3 * SEG]) == [XDP_REDIRECT] * 2
    r = h.rpc(1501, peer=sentinel_peer)
    assert r.state == 8 and r.in_remaining == 0


def test_random_frames_from_an_application_cannot_break_the_rules(h):
    rnd = random.Random(7)
    for i in range(3000):
        pkt = random_packet(rnd, [ID_LO, ID_LO + 2, ID_LO + 4])
        v, out = h.tx(pkt, dst=rnd.choice(PEERS[:2]))
        if v == XDP_REDIRECT:
            p = wire.parse(out[34:])
            assert p.type == wire.DATA
            assert ID_LO <= p.sender_id < ID_HI or p.sender_id & 1
            r = h.rpc(p.sender_id, peer=socket.inet_ntoa(out[30:34]), lport=p.sport)
            assert r is not None and p.offset < max(r.out_granted, 1) and p.message_length == r.out_length
        else:
            assert v == XDP_DROP
    for key, r in h.rpcs().items():
        assert ID_LO <= key[0] < ID_HI and key[2] in (SERVER_PORT, CLIENT_PORT)
    check_invariants(h)
