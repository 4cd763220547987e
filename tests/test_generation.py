"""XDP_GEN on a stock kernel: the kernel's queue of pending control packets, the blank-frame
producer (BPF_PROG_RUN of `gen` on a blank frame) and the daemon's live-frame producer."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from etran import netns
from etran.bpf import BpfObject
from etran.bpf.attach import attach_xdp, detach_xdp
from etran.daemon.kernel import NIC_SLOT, Kernel
from etran.kernel.structs import DropReason, GenDesc, Limits, NeighEntry, PktCounter, PktMeta

pytestmark = pytest.mark.kernel
HERE = Path(__file__).parent
TEST_PROTO = 253
XDP_DROP, XDP_REDIRECT = 1, 4
HOST_IP, PEER_IP = "198.18.7.1", "198.18.7.2"
HOST_MAC, PEER_MAC = "02:00:00:00:07:01", "02:00:00:00:07:02"


@pytest.fixture
def kernel():
    k = Kernel()
    k.register_transport(TEST_PROTO, str(HERE / "bpf" / "gen_udp.bpf.c"), None, None, "gen_udp")
    k.set_host(HOST_IP, HOST_MAC, nic_ifindex=1, mtu=1500)
    entry = NeighEntry()
    entry.mac[:] = bytes.fromhex(PEER_MAC.replace(":", ""))
    k.map("neigh").update(int.from_bytes(socket.inet_aton(PEER_IP), "little"), entry)
    yield k
    k.close()


def blank(length: int = 256) -> bytes:
    return bytes(12) + int(Limits.ETRAN_BLANK_ETHERTYPE).to_bytes(2, "big") + bytes(length - 14)


def desc(kind: int, port: int, slot: int = 3) -> GenDesc:
    return GenDesc(proto=TEST_PROTO, kind=kind, slot=slot, id=int.from_bytes(socket.inet_aton(PEER_IP), "little"),
                   arg0=port)


def test_blank_frames_are_filled_from_the_queue_or_dropped(kernel):
    assert kernel.push_gen([desc(7, 5000), desc(8, 5001), desc(9, 5002)]) == 3
    assert kernel.host_pub().gen_pending == 3
    gen = kernel.program("gen")
    for kind, port in ((7, 5000), (8, 5001), (9, 5002)):  # FIFO
        r = gen.test_run(blank())
        assert r.retval in (XDP_DROP, XDP_REDIRECT)  # no NIC in tx_ports here: the redirect falls back to drop
        pkt = Ether(r.data)
        assert (pkt.src, pkt.dst) == (HOST_MAC, PEER_MAC)
        assert (pkt[IP].src, pkt[IP].dst, pkt[UDP].dport) == (HOST_IP, PEER_IP, port)
        assert bytes(pkt[UDP].payload) == kind.to_bytes(4, "big")
        rebuilt = pkt.copy()
        del rebuilt[IP].chksum, rebuilt[UDP].chksum
        rebuilt = Ether(bytes(rebuilt))
        assert (pkt[IP].chksum, pkt[UDP].chksum) == (rebuilt[IP].chksum, rebuilt[UDP].chksum)
    hp = kernel.host_pub()
    assert (hp.gen_pending, hp.gen_pushed, hp.gen_popped) == (0, 3, 3)
    # nothing pending: the blank frame is dropped and counted, for the application whose
    # blank it was, as such (not as an attack)
    kernel.map("scratch").update(0, PktMeta(slot=5))
    assert gen.test_run(blank()).retval == XDP_DROP
    assert kernel.app_stats(5).drops[DropReason.ETRAN_DROP_GEN_EMPTY] == 1
    assert kernel.app_stats(3).gen_packets == 3


def test_queue_full_is_refused_and_counted(kernel):
    n = int(Limits.ETRAN_GEN_QUEUE)
    assert kernel.push_gen(desc(1, 1) for _ in range(n + 5)) == n
    assert kernel.host_pub().gen_dropped == 1  # push_gen stops at the first refusal


def test_daemon_live_frames_send_pending_packets(kernel, veth_ns):
    with netns.enter(veth_ns):
        nic = socket.if_nametoindex("va")  # the host's NIC; its peer vb is the wire
        kernel.map("tx_ports").update(NIC_SLOT, nic)  # a DEVMAP entry is written from inside the namespace
    with BpfObject.load("counter") as sink:
        attach_xdp("vb", sink.program("count_packets"), netns=veth_ns)
        try:
            kernel.push_gen([desc(k, 6000 + k) for k in range(5)])
            with netns.enter(veth_ns):
                kernel.run_gen(5, nic)
            deadline = time.monotonic() + 2
            while PktCounter.from_buffer_copy(sink.map("counters").lookup(0)).packets < 5:
                assert time.monotonic() < deadline, "the live frames did not reach the wire"
                time.sleep(0.01)
        finally:
            detach_xdp("vb", netns=veth_ns)
    assert kernel.host_pub().gen_pending == 0
