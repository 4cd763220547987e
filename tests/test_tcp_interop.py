"""etran TCP interoperates with Linux TCP, in both directions, between test-bed hosts.

The same application code runs over etran (`etran.tcp`) or the kernel (`socket`): a server
receives a stream until EOF and checks its SHA-256, answers with the digest and a stream of
its own; the client checks both. 50 MB each way over links with 1% loss and 1% reordering.
"""

from __future__ import annotations

import pytest
from etran_apps import spawn

pytestmark = pytest.mark.kernel

MB = 1 << 20

# argv: stack ("etran" or "linux"), address, port, megabytes
BULK_SERVER = r"""
import hashlib, json, sys, time
stack, host, port, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if stack == "etran":
    import etran.tcp as net
else:
    import socket as net
base = bytes(range(256)) * 4096
def chunk(i, seed):
    return seed + i.to_bytes(8, "big") + base[9:]
srv = net.create_server((host, port))
print(json.dumps({"listening": port}), flush=True)
conn, peer = srv.accept()
h, n, t0 = hashlib.sha256(), 0, time.monotonic()
while True:
    data = conn.recv(1 << 20)
    if not data:
        break
    h.update(data)
    n += len(data)
up = time.monotonic() - t0
conn.sendall(h.hexdigest().encode() + b"\n")
t1 = time.monotonic()
for i in range(mb):
    conn.sendall(chunk(i, b"S"))
conn.close()
print(json.dumps({"received": n, "sha256": h.hexdigest(), "up_s": up, "down_s": time.monotonic() - t1,
                  "peer": list(peer)}), flush=True)
"""

BULK_CLIENT = r"""
import hashlib, json, sys, time
stack, host, port, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if stack == "etran":
    import etran.tcp as net
else:
    import socket as net
base = bytes(range(256)) * 4096
def chunk(i, seed):
    return seed + i.to_bytes(8, "big") + base[9:]
s = net.create_connection((host, port), timeout=30)
sent = hashlib.sha256()
t0 = time.monotonic()
for i in range(mb):
    c = chunk(i, b"C")
    sent.update(c)
    s.sendall(c)
s.shutdown(1)
s.settimeout(120)
buf = b""
while b"\n" not in buf:
    d = s.recv(65536)
    assert d, "EOF before the digest"
    buf += d
line, rest = buf.split(b"\n", 1)
up = time.monotonic() - t0
got = hashlib.sha256(rest)
n = len(rest)
while True:
    d = s.recv(1 << 20)
    if not d:
        break
    got.update(d)
    n += len(d)
want = hashlib.sha256()
for i in range(mb):
    want.update(chunk(i, b"S"))
s.close()
print(json.dumps({"up_ok": line.decode() == sent.hexdigest(), "down_ok": got.hexdigest() == want.hexdigest(),
                  "down_bytes": n, "seconds": time.monotonic() - t0, "up_s": up}), flush=True)
"""


def run_bulk(bed, app_pythonpath, apps, server_stack: str, client_stack: str, mb: int = 50, port: int = 7100):
    h1, h2 = bed.hosts
    server = spawn(h2, BULK_SERVER, app_pythonpath, f"bulk-{server_stack}-srv", args=(server_stack, h2.ip, port, mb))
    apps.append(server)
    server.wait_for("listening")
    client = spawn(h1, BULK_CLIENT, app_pythonpath, f"bulk-{client_stack}-cli", args=(client_stack, h2.ip, port, mb))
    apps.append(client)
    res = client.wait_for("up_ok", timeout=240)
    srv = server.wait_for("received", timeout=30)
    assert srv["received"] == mb * MB
    assert res["up_ok"], "the server's SHA-256 of what it received differs from what the client sent"
    assert res["down_bytes"] == mb * MB
    assert res["down_ok"], "the client's SHA-256 of what it received differs from what the server sent"
    assert srv["peer"][0] == h1.ip
    return res, srv


def test_etran_client_to_linux_server_50mb_with_loss_and_reordering(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None, loss=0.01, reorder=0.01)
    run_bulk(bed, app_pythonpath, apps, "linux", "etran")
    stats = bed.switch_stats()
    assert stats["h2"]["dropped"] > 0 and stats["h2"]["reordered"] > 0, "the faults were not injected"


def test_linux_client_to_etran_server_50mb_with_loss_and_reordering(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None, loss=0.01, reorder=0.01)
    run_bulk(bed, app_pythonpath, apps, "etran", "linux")
    stats = bed.switch_stats()
    assert stats["h1"]["dropped"] > 0 and stats["h2"]["dropped"] > 0
