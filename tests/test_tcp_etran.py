"""etran TCP end to end between test-bed hosts: etran <-> etran, as unprivileged applications."""

from __future__ import annotations

import pytest
from etran_apps import spawn

pytestmark = pytest.mark.kernel

ECHO_SERVER = r"""
import json, sys
import etran.tcp
srv = etran.tcp.create_server(("", int(sys.argv[1])))
print(json.dumps({"listening": srv.getsockname()}), flush=True)
for _ in range(int(sys.argv[2])):
    conn, peer = srv.accept()
    total = 0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        total += len(data)
        conn.sendall(data)
    conn.close()
    print(json.dumps({"served": list(peer), "bytes": total}), flush=True)
srv.close()
"""

ECHO_CLIENT = r"""
import json, sys, time
import etran.tcp
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = etran.tcp.create_connection((host, port), timeout=10)
t0 = time.monotonic()
ok = 0
for i in range(count):
    msg = f"hello {i} ".encode() * (1 + i % 7)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(65536)
        assert chunk, "eof"
        got += chunk
    ok += got == msg
s.close()
print(json.dumps({"ok": ok, "elapsed": time.monotonic() - t0, "local": s.getsockname(), "peer": s.getpeername()}), flush=True)
"""


def test_etran_to_etran_connect_echo_close(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    server = spawn(h2, ECHO_SERVER, app_pythonpath, "tcpsrv", args=(7000, 1))
    apps.append(server)
    server.wait_for("listening")
    client = spawn(h1, ECHO_CLIENT, app_pythonpath, "tcpcli", args=(h2.ip, 7000, 200))
    apps.append(client)
    res = client.wait_for("ok", timeout=60)
    assert res["ok"] == 200
    assert res["peer"] == [h2.ip, 7000]
    served = server.wait_for("served", timeout=30)
    assert served["served"][0] == h1.ip and served["bytes"] > 0


def test_etran_to_etran_50mb_with_loss_and_reordering(etran_bed, app_pythonpath, apps):
    from test_tcp_interop import run_bulk

    bed = etran_bed(hosts=2, rate_gbit=None, loss=0.01, reorder=0.01)
    run_bulk(bed, app_pythonpath, apps, "etran", "etran")
