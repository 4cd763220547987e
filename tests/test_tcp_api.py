"""The etran TCP socket API behaves like the standard library's, and `etran kv-server` speaks RESP.

Socket semantics checked between two test-bed hosts (unprivileged applications): timeouts,
non-blocking mode, getpeername/getsockname, recv_into, fileno() with selectors, shutdown
(half close), connection refused. The key-value server runs with `etran kv-server` and is
driven by a kernel-TCP client speaking RESP (as redis-cli would). The RESP parser is unit
tested without a kernel.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from etran_apps import NOBODY, spawn

from etran.tcp.kv import KvStore, RespParser, resp_command

API_SERVER = r"""
import json, socket, sys
import etran.tcp
srv = etran.tcp.create_server(("", 7600))
print(json.dumps({"listening": srv.getsockname()}), flush=True)
conn, peer = srv.accept()
assert conn.getpeername() == peer and conn.getsockname() == srv.getsockname()
data = b""
while True:
    d = conn.recv(4096)
    if not d:
        break
    data += d
conn.sendall(b"after-half-close:" + data)    # the client shut down writing, still reads
conn.close()
print(json.dumps({"got": data.decode()}), flush=True)
"""

API_CLIENT = r"""
import json, selectors, socket, sys, time
import etran.tcp
host = sys.argv[1]
out = {}
try:
    etran.tcp.create_connection((host, 7601), timeout=5)
    out["refused"] = False
except ConnectionRefusedError:
    out["refused"] = True
s = etran.tcp.create_connection((host, 7600), timeout=5)
out["peer"] = list(s.getpeername())
out["sock"] = list(s.getsockname())
s.settimeout(0.2)
t0 = time.monotonic()
try:
    s.recv(10)
    out["timeout"] = False
except TimeoutError:
    out["timeout"] = 0.15 < time.monotonic() - t0 < 2.0
s.setblocking(False)
try:
    s.recv(10)
    out["nonblocking"] = False
except BlockingIOError:
    out["nonblocking"] = True
s.setblocking(True)
s.sendall(b"hello ")
s.send(b"world")
s.shutdown(socket.SHUT_WR)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
buf = bytearray(100)
got = b""
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    if sel.select(1.0):
        s.setblocking(False)
        try:
            n = s.recv_into(buf)
        except BlockingIOError:
            continue                      # the engine had frames, not (yet) for this socket
        if n == 0:
            break
        got += bytes(buf[:n])
out["reply"] = got.decode()
s.close()
print(json.dumps(out), flush=True)
"""



@pytest.mark.kernel
def test_socket_api_semantics(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    server = spawn(h2, API_SERVER, app_pythonpath, "apisrv")
    apps.append(server)
    assert server.wait_for("listening")["listening"] == [h2.ip, 7600]
    client = spawn(h1, API_CLIENT, app_pythonpath, "apicli", args=(h2.ip,))
    apps.append(client)
    res = client.wait_for("reply", timeout=60)
    assert res["refused"], "a connect to a port nobody listens on must be refused (the peer's kernel RSTs)"
    assert res["peer"] == [h2.ip, 7600] and res["sock"][0] == h1.ip
    assert res["timeout"] and res["nonblocking"]
    assert res["reply"] == "after-half-close:hello world"
    assert server.wait_for("got")["got"] == "hello world"


@pytest.mark.kernel
def test_kv_server_speaks_resp_to_a_kernel_client(etran_bed, app_pythonpath):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(app_pythonpath), "HOME": "/tmp", "ETRAN_APP_NAME": "kv"}
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", sys.executable, "-m", "etran", "kv-server", "--port", "6390"]
    server = h2.popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        deadline = time.monotonic() + 20
        c = None
        while time.monotonic() < deadline:
            try:
                c = h1.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.settimeout(5)
                c.connect((h2.ip, 6390))
                break
            except OSError:
                c.close()
                c = None
                time.sleep(0.3)
        assert c is not None, "etran kv-server did not come up"

        def call(*args: bytes | str) -> bytes:
            c.sendall(resp_command(*args))
            out = b""
            while not out.endswith(b"\r\n") or (out.startswith(b"$") and out.count(b"\r\n") < 2 and out != b"$-1\r\n"):
                out += c.recv(4096)
            return out

        assert call("PING") == b"+PONG\r\n"
        assert call("SET", "k1", "v1") == b"+OK\r\n"
        assert call("GET", "k1") == b"$2\r\nv1\r\n"
        assert call("GET", "nope") == b"$-1\r\n"
        assert call("DEL", "k1", "nope") == b":1\r\n"
        assert call("EXISTS", "k1") == b":0\r\n"
        # pipelined: three requests in one write, three answers in order
        c.sendall(resp_command("SET", "a", "1") + resp_command("GET", "a") + b"PING\r\n")
        want = b"+OK\r\n$1\r\n1\r\n+PONG\r\n"
        got = b""
        while len(got) < len(want):
            got += c.recv(4096)
        assert got == want
        c.close()
    finally:
        server.kill()
        server.wait()


def test_resp_parser_and_store():
    p = RespParser()
    store = KvStore()
    wire = resp_command("SET", "key", b"va\r\nlue") + resp_command("GET", "key") + b"PING\r\n"
    for i in range(0, len(wire), 3):           # byte-by-byte arrival in small pieces
        p.feed(wire[i:i + 3])
    cmds = p.commands()
    assert cmds == [[b"SET", b"key", b"va\r\nlue"], [b"GET", b"key"], [b"PING"]]
    assert [store.execute(c) for c in cmds] == [b"+OK\r\n", b"$7\r\nva\r\nlue\r\n", b"+PONG\r\n"]
    p.feed(b"*2\r\n$3\r\nGET\r\n$3\r\nke")
    assert p.commands() == []                  # incomplete: wait
    p.feed(b"y\r\n")
    assert p.commands() == [[b"GET", b"key"]]
    assert store.execute([b"NOPE"]).startswith(b"-ERR")
