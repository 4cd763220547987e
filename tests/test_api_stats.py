"""The public counters and readiness API of etran's application sockets.

`stats` (a snapshot dict with documented keys) on etran.homa.HomaSocket and its asyncio
flavour, etran.udp.UdpSocket and etran.tcp's TcpSocket; `fileno()`; a receive queue shared
by several UDP sockets; etran.tcp.ready_connections. The benchmarks report these instead of
reaching into the sockets' private state, so these tests fail when the API they use breaks.
Applications run unprivileged in a two-host bed with daemons (one bed for the module).
"""

from __future__ import annotations

import uuid

import pytest
from etran_apps import spawn

pytestmark = pytest.mark.kernel

HOMA_KEYS = {"data_sent", "retransmitted", "fifo_packets", "data_received", "grants", "resends", "unknowns",
             "aborts", "frees"}
UDP_KEYS = {"queued", "rx_frames", "tx_frames", "blank_frames"}
TCP_KEYS = {"segments", "retransmits", "bytes_sent", "bytes_received", "blocked", "paced"}


@pytest.fixture(scope="module")
def bed():
    from etran.daemon import testbed_hook
    from etran.testbed import Testbed

    b = Testbed("t" + uuid.uuid4().hex[:6])   # the prefix the leftover check looks for
    try:
        b.up(hosts=2, rate_gbit=None, hooks=[testbed_hook()])
        yield b
    finally:
        b.down()


def run_pair(bed, app_pythonpath, apps, name: str, server_code: str, client_code: str, key: str,
             server_args: tuple = ()) -> tuple:
    """A server app on h2 (until it printed its ready line), then a client app on h1 (given h2's
    address); returns the server, its ready line and the client's first line holding `key`."""
    h1, h2 = bed.hosts
    server = spawn(h2, server_code, app_pythonpath, f"{name}-srv", args=server_args)
    apps.append(server)
    ready = server.wait_for("ready")
    client = spawn(h1, client_code, app_pythonpath, f"{name}-cli", args=(h2.ip,))
    apps.append(client)
    return server, ready, client.wait_for(key, timeout=60)


# ---- Homa ----------------------------------------------------------------------------------

HOMA_SERVER = r"""
import json, sys
from etran.homa import HomaSocket
s = HomaSocket(4100)
print(json.dumps({"ready": True}), flush=True)
n = s.serve(lambda r: r.payload, count=int(sys.argv[1]), timeout=20)
print(json.dumps({"served": n, "stats": s.stats}), flush=True)
s.close()
"""

HOMA_CLIENT = r"""
import asyncio, json, sys
from etran.homa import HomaSocket, aio
peer = (sys.argv[1], 4100)
c = HomaSocket()
before = c.stats
for i in range(5):
    assert c.call(peer, b"x" * 100, timeout=10) == b"x" * 100
big = bytes(30_000)                      # several DATA packets each way (and GRANTs past the unscheduled bytes)
assert c.call(peer, big, timeout=10) == big
after = c.stats
snap = c.stats
snap["data_sent"] = -1                   # a snapshot: changing it changes nothing
out = {"before": before, "after": after, "unchanged": c.stats == after,
       "fileno": c.fileno() == c.engine.xsk.fileno(), "unsched": c.config["unsched_limit"]}

async def main():
    a = aio.HomaSocket()
    r = await a.call(peer, b"z", timeout=10)
    res = {"aio": a.stats, "aio_fileno": a.fileno() == c.fileno(), "aio_reply": bytes(r) == b"z"}
    a.close()
    return res

out.update(asyncio.run(main()))
c.close()
print(json.dumps(out), flush=True)
"""


def test_homa_stats_and_fileno(bed, app_pythonpath, apps):
    server, _, out = run_pair(bed, app_pythonpath, apps, "homastats", HOMA_SERVER, HOMA_CLIENT, "after", (7,))
    before, after = out["before"], out["after"]
    assert set(before) == HOMA_KEYS and set(after) == HOMA_KEYS and set(out["aio"]) == HOMA_KEYS
    big_packets = -(-30_000 // 1424)
    assert after["data_sent"] - before["data_sent"] >= 5 + big_packets
    assert after["data_received"] - before["data_received"] >= 5 + big_packets
    if out["unsched"] < 30_000:
        assert after["grants"] > before["grants"], "the 30 kB request past the unscheduled bytes needed GRANTs"
    assert out["unchanged"], "HomaSocket.stats must be a snapshot"
    assert out["fileno"] and out["aio_fileno"] and out["aio_reply"]
    # the aio socket shares the process's counters: it saw everything before it, and its own RPC
    assert out["aio"]["data_sent"] >= after["data_sent"] + 1
    srv = server.wait_for("served", timeout=60)
    assert srv["served"] == 7 and set(srv["stats"]) == HOMA_KEYS
    assert srv["stats"]["data_received"] >= 6 + big_packets and srv["stats"]["data_sent"] >= 6 + big_packets


# ---- UDP -----------------------------------------------------------------------------------

UDP_ECHO = r"""
import json, sys
import etran.udp
s = etran.udp.UdpSocket()
s.bind(5300)
print(json.dumps({"ready": True}), flush=True)
for _ in range(int(sys.argv[1])):
    d, a = s.recvfrom(timeout=20)
    s.sendto(d, a)
print(json.dumps({"stats": s.stats}), flush=True)
s.close()
"""

UDP_CLIENT = r"""
import json, sys, time
from collections import deque
import etran.udp
peer = (sys.argv[1], 5300)
q = deque()
a, b = etran.udp.UdpSocket(queue=q), etran.udp.UdpSocket(queue=q)   # one receive queue for both
a.bind(0)
b.bind(0)
idle = etran.udp.UdpSocket()                                       # its own queue; nothing comes to it
idle.bind(0)
fresh = a.stats
a.sendto(b"from-a", peer)
b.sendto(b"from-b", peer)
deadline = time.monotonic() + 15
while a.stats["queued"] < 2 and time.monotonic() < deadline:
    try:
        idle.recvfrom(timeout=0.05)                                 # runs the engine; both replies land in q
    except TimeoutError:
        pass
queued = [a.stats["queued"], b.stats["queued"], idle.stats["queued"]]
got = sorted(a.recvfrom(timeout=5)[0].decode() for _ in range(2))  # both through a: the queue is shared
after = a.stats
try:
    b.recvfrom(timeout=0)
    empty = False
except BlockingIOError:
    empty = True
print(json.dumps({"fresh": fresh, "queued": queued, "got": got, "after": after, "empty": empty,
                  "fileno": a.fileno() == b.fileno() == a.engine.xsk.fileno()}), flush=True)
for s in (a, b, idle):
    s.close()
"""


def test_udp_stats_and_shared_queue(bed, app_pythonpath, apps):
    server, _, out = run_pair(bed, app_pythonpath, apps, "udpstats", UDP_ECHO, UDP_CLIENT, "got", (2,))
    assert set(out["fresh"]) == UDP_KEYS and set(out["after"]) == UDP_KEYS
    assert out["queued"] == [2, 2, 0], "two sockets given one queue both count its datagrams; the third has its own"
    assert out["got"] == ["from-a", "from-b"]
    assert out["after"]["queued"] == 0 and out["empty"]
    assert out["after"]["rx_frames"] - out["fresh"]["rx_frames"] >= 2
    assert out["after"]["tx_frames"] - out["fresh"]["tx_frames"] >= 2
    assert out["fileno"]
    srv = server.wait_for("stats", timeout=30)["stats"]
    assert set(srv) == UDP_KEYS and srv["rx_frames"] >= 2 and srv["tx_frames"] >= 2


# ---- TCP -----------------------------------------------------------------------------------

TCP_SERVER = r"""
import json
import etran.tcp
srv = etran.tcp.create_server(("", 7700))
print(json.dumps({"ready": True, "listener": srv.stats, "new": etran.tcp.TcpSocket().stats}), flush=True)
conns = [srv.accept()[0] for _ in range(2)]
out = []
for c in conns:
    data = b""
    while True:
        d = c.recv(4096)
        if not d:
            break
        data += d
        if len(data) >= 1000:
            c.sendall(data)
            data = b""
    out.append(c.stats)
    c.close()
print(json.dumps({"conns": out}), flush=True)
srv.close()
"""

TCP_CLIENT = r"""
import json, sys, time
import etran.tcp
peer = (sys.argv[1], 7700)
a = etran.tcp.create_connection(peer, timeout=10)
b = etran.tcp.create_connection(peer, timeout=10)
etran.tcp.ready_connections(0.2)        # forget what the handshakes left in the record
a.sendall(b"q" * 1000)
a.setblocking(False)
b.setblocking(False)
heard, got = set(), b""
deadline = time.monotonic() + 15
while len(got) < 1000 and time.monotonic() < deadline:
    for s in etran.tcp.ready_connections(0.1):
        assert isinstance(s, etran.tcp.TcpSocket)
        heard.add("a" if s is a else "b" if s is b else "other")
        while True:
            try:
                d = s.recv(4096)
            except BlockingIOError:
                break
            if not d:
                break
            if s is a:
                got += d
sa = a.stats
sa_copy = a.stats
sa_copy["bytes_sent"] = -1
print(json.dumps({"heard": sorted(heard), "got": len(got), "a": sa, "b": b.stats, "unchanged": a.stats == sa,
                  "fileno": a.fileno() == b.fileno()}), flush=True)
a.setblocking(True)
b.setblocking(True)
a.close()
b.close()
"""


def test_tcp_stats_and_ready_connections(bed, app_pythonpath, apps):
    server, ready, out = run_pair(bed, app_pythonpath, apps, "tcpstats", TCP_SERVER, TCP_CLIENT, "heard")
    assert ready["listener"] == dict.fromkeys(TCP_KEYS, 0) and ready["new"] == dict.fromkeys(TCP_KEYS, 0)
    assert out["got"] == 1000
    assert out["heard"] == ["a"], "only the connection that was answered heard something"
    a, b = out["a"], out["b"]
    assert set(a) == TCP_KEYS and set(b) == TCP_KEYS
    assert a["bytes_sent"] >= 1000 and a["segments"] >= 1 and a["bytes_received"] == 1000
    assert b["bytes_sent"] == 0 and b["bytes_received"] == 0
    assert out["unchanged"] and out["fileno"]
    conns = server.wait_for("conns", timeout=60)["conns"]
    assert sorted(c["bytes_received"] for c in conns) == [0, 1000]
    assert sorted(c["bytes_sent"] for c in conns)[1] >= 1000
