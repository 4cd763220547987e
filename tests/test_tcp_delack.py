"""Request/response over etran TCP needs no timer: the reply carries the ACK of the request.

What this guards (not timed): a 64-byte request/response exchange must cost one frame each way.
When the delayed ACK of a request fired on the daemon's next tick (1 ms) instead of waiting for
the reply to carry it, every reply slower than a tick (any application on a loaded machine)
cost a pure ACK from the daemon: an extra wake-up of the client, a live-frame pass in the
daemon, and round trips of milliseconds under load. The server here waits 2 ms before each
reply (longer than a tick, well below the delayed-ACK time); the client counts the frames
it receives: one per reply, give or take the replies the scheduler delayed past the
delayed-ACK time.
"""

from __future__ import annotations

import pytest
from etran_apps import spawn

pytestmark = pytest.mark.kernel

COUNT = 100

SLOW_ECHO_SERVER = r"""
import json, sys, time
import etran.tcp
srv = etran.tcp.create_server(("", int(sys.argv[1])))
print(json.dumps({"listening": srv.getsockname()}), flush=True)
conn, peer = srv.accept()
eng = conn.engine
n = 0
while True:
    data = conn.recv(65536)
    if not data:
        break
    time.sleep(float(sys.argv[2]))      # the application thinks: longer than a daemon tick
    conn.sendall(data)
    n += 1
conn.close()
print(json.dumps({"served": n, "blanks": eng.blank_frames}), flush=True)
srv.close()
"""

COUNTING_CLIENT = r"""
import json, sys
import etran.tcp
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = etran.tcp.create_connection((host, port), timeout=10)
s.settimeout(10)
eng = s.engine
msg = b"x" * 64
s.sendall(msg)                                 # settle the handshake's frames first
assert len(s.recv(64)) == 64
rx0, tx0 = eng.rx_frames, eng.tx_frames
for i in range(count):
    s.sendall(msg)
    got = 0
    while got < len(msg):
        chunk = s.recv(65536)
        assert chunk, "eof"
        got += len(chunk)
rx, tx = eng.rx_frames - rx0, eng.tx_frames - tx0
s.close()
print(json.dumps({"rx": rx, "tx": tx, "segments": s.stats["segments"]}), flush=True)
"""


def test_reply_carries_the_ack_no_daemon_tick(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    server = spawn(h2, SLOW_ECHO_SERVER, app_pythonpath, "tcpslow", args=(7100, 0.002))
    apps.append(server)
    server.wait_for("listening")
    client = spawn(h1, COUNTING_CLIENT, app_pythonpath, "tcpcount", args=(h2.ip, 7100, COUNT))
    apps.append(client)
    res = client.wait_for("rx", timeout=120)
    # the requests: one frame each, whose ACK rides on the next request (no blank frames)
    assert res["tx"] == COUNT, res
    # the replies: one frame each. A pure ACK per request (the delayed ACK firing on the
    # daemon's tick before the reply) would double this; allow a quarter for replies the
    # scheduler of a loaded machine held past the delayed-ACK time
    assert COUNT <= res["rx"] <= COUNT + COUNT // 4, res
    served = server.wait_for("served", timeout=30)
    assert served["served"] == COUNT + 1
