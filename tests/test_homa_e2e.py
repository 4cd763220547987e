"""Homa over etran, end to end: applications in test-bed hosts, daemons, the eBPF data path.

One two-host bed (daemons on both) serves the module; every test starts its own server and
client processes in the hosts and leaves the bed as it found it (faults off, default timers).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

pytestmark = pytest.mark.kernel

ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[1])
PRELUDE = f"import sys, os, time, json, random\nsys.path.insert(0, {ROOT!r})\n"
SERVER_PORT = 4000


@pytest.fixture(scope="module")
def bed():
    from etran.daemon import testbed_hook
    from etran.testbed import Testbed

    b = Testbed("th" + uuid.uuid4().hex[:6])
    try:
        b.up(hosts=2, rate_gbit=None, hooks=[testbed_hook()])
        yield b
    finally:
        b.down()


def run(host, code: str, *args: str, timeout: float = 120) -> dict:
    """Run Python code in a host; its last stdout line is JSON: return it."""
    p = host.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args], capture_output=True, text=True,
                 timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert p.returncode == 0 and lines, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    return json.loads(lines[-1])


class Server:
    """A server process in a host: prints 'ready' once bound, then runs `code`."""

    def __init__(self, host, code: str, *args: str) -> None:
        self.p = host.popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
        line = self.p.stdout.readline()
        assert line.strip() == "ready", line + self.p.stdout.read()[-3000:]

    def result(self, timeout: float = 60) -> dict:
        out, _ = self.p.communicate(timeout=timeout)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert lines, out
        return json.loads(lines[-1])

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)


ECHO = """
from etran.homa import HomaSocket
s = HomaSocket(int(sys.argv[1]))
print('ready', flush=True)
n = s.serve(lambda r: r.payload, timeout=float(sys.argv[2]))
print(json.dumps({'served': n}))
"""


def test_echo_every_size_class(bed):
    h1, h2 = bed.hosts
    srv = Server(h2, ECHO, str(SERVER_PORT), "3")
    try:
        out = run(h1, """
            import hashlib
            from etran.homa import HomaSocket
            c = HomaSocket()
            res = {}
            rnd = random.Random(5)
            for size in (0, 1, 100, 1400, 1401, 10_000, 100_000, 1_000_000):
                data = rnd.randbytes(size)
                t = time.perf_counter()
                r = c.call((sys.argv[1], int(sys.argv[2])), data, timeout=10)
                res[size] = [bytes(r) == data, r.id % 2, round((time.perf_counter() - t) * 1e3, 2)]
            print(json.dumps(res))
        """, h2.ip, str(SERVER_PORT))
    finally:
        srv.kill()
    for size, (ok, parity, ms) in out.items():
        assert ok, f"{size}-byte echo came back different"
        assert parity == 0        # client ids are even
    assert len(out) == 8


def test_clear_errors(bed):
    h1, h2 = bed.hosts
    srv = Server(h2, ECHO, str(SERVER_PORT), "5")
    try:
        out = run(h2, """
            from etran.homa import HomaSocket, HomaPortInUseError, HomaMessageTooLargeError, HomaPeerUnknownError
            from etran.homa import HomaTimeoutError
            errs = {}
            try:
                HomaSocket(int(sys.argv[1]))
            except HomaPortInUseError as e:
                errs['port'] = str(e)
            c = HomaSocket()
            try:
                c.call(('198.18.0.1', 9), b'x' * 1_000_001)
            except HomaMessageTooLargeError as e:
                errs['size'] = str(e)
            try:
                c.call(('198.18.1.77', 9), b'x')
            except HomaPeerUnknownError as e:
                errs['peer'] = str(e)
            try:
                c.call(('not-an-address', 9), b'x')
            except HomaPeerUnknownError as e:
                errs['addr'] = str(e)
            try:
                c.recv_request(timeout=0.05)
            except HomaTimeoutError as e:
                errs['timeout'] = str(e)
            print(json.dumps(errs))
        """, str(SERVER_PORT))
    finally:
        srv.kill()
    assert set(out) == {"port", "size", "peer", "addr", "timeout"}, out
    assert "EADDRINUSE" in out["port"] and "EMSGSIZE" in out["size"] and "198.18.1.77" in out["peer"]


STRESS_SERVER = """
import collections
from etran.homa import HomaSocket
s = HomaSocket(int(sys.argv[1]))
print('ready', flush=True)
seen = collections.Counter()
def handler(r):
    seen[bytes(r.payload[:8])] += 1
    return r.payload
s.serve(handler, timeout=float(sys.argv[2]))
print(json.dumps({'served': sum(seen.values()), 'distinct': len(seen),
                  'dups': sum(v - 1 for v in seen.values() if v > 1)}))
"""

STRESS_CLIENT = """
from etran.homa import HomaSocket
n, window = int(sys.argv[3]), int(sys.argv[4])
c = HomaSocket()
addr = (sys.argv[1], int(sys.argv[2]))
sizes = [8, 100, 1400, 1401, 3000, 10_000, 30_000]
rnd = random.Random(1)
out = {}
done = sent = bad = dup = errors = 0
error = None
got = set()
t0 = time.monotonic()
while done < n:
    while sent < n and len(out) < window:
        p = sent.to_bytes(8, 'big') + rnd.randbytes(rnd.choice(sizes) - 8)
        out[c.send_request(addr, p)] = (sent, p)
        sent += 1
    assert len(out) <= window
    try:
        r = c.recv_response(None, timeout=30)
    except Exception as e:
        errors += 1
        error = repr(e)
        break
    i, p = out.pop(r.id)
    bad += bytes(r) != p
    dup += i in got
    got.add(i)
    done += 1
print(json.dumps({'done': done, 'distinct': len(got), 'bad': bad, 'dup': dup, 'errors': errors, 'error': error,
                  'seconds': round(time.monotonic() - t0, 2), 'lib': c.stats}))
"""


def test_loss_and_reordering_every_rpc_exactly_once(bed):
    h1, h2 = bed.hosts
    bed.configure(loss=0.02, reorder=0.05)
    try:
        srv = Server(h2, STRESS_SERVER, str(SERVER_PORT), "5")
        try:
            out = run(h1, STRESS_CLIENT, h2.ip, str(SERVER_PORT), "10000", "64", timeout=300)
            served = srv.result(timeout=60)
        finally:
            srv.kill()
        stats = bed.switch_stats()
    finally:
        bed.configure(loss=0.0, reorder=0.0)
    assert out["done"] == 10_000 and out["distinct"] == 10_000, out
    assert out["bad"] == 0 and out["dup"] == 0 and out["errors"] == 0, out
    assert served == {"served": 10_000, "distinct": 10_000, "dups": 0}, served
    assert out["lib"]["retransmitted"] > 0      # the faults were real and were repaired
    assert sum(s["dropped"] for s in stats.values()) > 500
    assert sum(s["reordered"] for s in stats.values()) > 1000


CRASHING_SERVER = """
import signal
from etran.homa import HomaSocket
s = HomaSocket(int(sys.argv[1]))
print('ready', flush=True)
s.recv_request()
os.kill(os.getpid(), signal.SIGKILL)      # mid-RPC: the request is in, no response will come
"""

CRASH_CLIENT = """
from etran.homa import HomaSocket, HomaTimeoutError, configure
cfg = configure(timer_interval_ns=2_000_000, resend_ticks=5, resend_interval=5, timeout_resends=5)
expected = (cfg['resend_ticks'] + cfg['resend_interval'] * cfg['timeout_resends']) * cfg['timer_interval_ns'] / 1e9
c = HomaSocket()
res = {'expected': expected}
for size in (100, 300_000):
    t = time.monotonic()
    try:
        c.call((sys.argv[1], int(sys.argv[2])), os.urandom(size))     # no timeout of its own
        res[size] = 'answered?'
    except HomaTimeoutError as e:
        res[size] = [round(time.monotonic() - t, 3), e.errno, str(e)]
    if size == 100:
        print('next', flush=True)
        sys.stdin.readline()                                          # the next server is up
print(json.dumps(res))
"""


RESTORE_TIMERS = """
from etran.daemon.homa import default_config
from etran.homa import configure
d = default_config()
configure(timer_interval_ns=d.timer_interval_ns, resend_ticks=d.resend_ticks, resend_interval=d.resend_interval,
          timeout_resends=d.timeout_resends)
print('{}')
"""


def test_server_crash_gives_the_client_an_error_after_the_timeout(bed):
    h1, h2 = bed.hosts
    client = None
    try:
        srv = Server(h2, CRASHING_SERVER, str(SERVER_PORT))
        client = h1.popen([sys.executable, "-c", PRELUDE + CRASH_CLIENT, h2.ip, str(SERVER_PORT)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert client.stdout.readline().strip() == "next"
        srv.p.wait(10)
        srv = Server(h2, CRASHING_SERVER, str(SERVER_PORT))   # crashes while a 300 KB request comes in
        client.stdin.write("go\n")
        client.stdin.flush()
        out, _ = client.communicate(timeout=60)
        srv.p.wait(10)
        res = json.loads(out.strip().splitlines()[-1])
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        run(h1, RESTORE_TIMERS)
    expected = res.pop("expected")
    import errno
    for size, (seconds, err, msg) in res.items():
        assert err == errno.ETIMEDOUT, msg
        assert expected * 0.5 <= seconds <= expected * 10 + 1.0, (size, seconds, expected)


AIO_SERVER = """
import asyncio
from etran.homa.aio import HomaSocket

async def main():
    s = HomaSocket(int(sys.argv[1]))
    print('ready', flush=True)
    async def handler(req):
        if req.payload[:1] == b's':
            await asyncio.sleep(0.05)          # a slow request must not hold up the others
        return req.payload[::-1]
    n = await s.serve(handler, timeout=2)
    print(json.dumps({'served': n}))

asyncio.run(main())
"""

AIO_CLIENT = """
import asyncio
from etran.homa.aio import HomaSocket
from etran.homa import HomaTimeoutError

async def main():
    c = HomaSocket()
    addr = (sys.argv[1], int(sys.argv[2]))
    rnd = random.Random(3)
    payloads = [bytes([ord('f')]) + rnd.randbytes(rnd.choice([10, 1400, 5000, 40_000])) for _ in range(200)]
    payloads[0] = b's' + payloads[0][1:]
    t = time.monotonic()
    answers = await asyncio.gather(*(c.call(addr, p, timeout=20) for p in payloads))
    ok = all(bytes(a) == p[::-1] for a, p in zip(answers, payloads))
    rid = await c.send_request(addr, b'fx' * 100)
    r = await c.recv_response(None, timeout=5)
    try:
        await c.recv_response(None, timeout=0.05)
        late = 'no error'
    except HomaTimeoutError:
        late = 'timeout'
    print(json.dumps({'ok': ok, 'n': len(answers), 'any': r.id == rid, 'late': late,
                      'seconds': round(time.monotonic() - t, 2)}))

asyncio.run(main())
"""


def test_asyncio_flavour(bed):
    h1, h2 = bed.hosts
    srv = Server(h2, AIO_SERVER, str(SERVER_PORT))
    try:
        out = run(h1, AIO_CLIENT, h2.ip, str(SERVER_PORT))
        served = srv.result(timeout=30)
    finally:
        srv.kill()
    assert out["ok"] and out["n"] == 200 and out["any"] and out["late"] == "timeout", out
    assert served == {"served": 201}
