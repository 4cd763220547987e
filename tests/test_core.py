"""The eTran core on a stock kernel: daemon, tenant ports, egress hook, policy chain, protection.

Applications run as user nobody in test-bed hosts, with etran UDP as the transport that
exercises the core paths (entrance -> tenant port -> XSK, and XSK -> egress hook -> NIC).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from etran import ipc
from etran.daemon import launcher
from etran.testbed.traffic import ping
from etran_apps import spawn

pytestmark = pytest.mark.kernel


def stats(host) -> dict:
    with ipc.Client(ipc.socket_path(host.netns)) as c:
        return c.call("stats")


def app_stats(host, name: str) -> dict | None:
    for a in stats(host)["apps"]:
        if a["name"] == name:
            return a
    return None


def links(host) -> list[str]:
    out = subprocess.run(["nsenter", f"--net=/run/netns/{host.netns}", "ip", "-o", "link"], capture_output=True,
                         text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


# An application that binds a port, sends `count` datagrams to each peer (payload names
# sender and receiver), and reports everything it received.
EXCHANGE = r"""
import json, sys, time
import etran.udp as u
from etran.lib.engine import default_engine
me, port, peers, count = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
eng = default_engine()
eng.session.client.call("ping")
s = u.UdpSocket(); s.bind(port)
print(json.dumps({"ready": me, "uid": __import__("os").getuid()}), flush=True)
sys.stdin.readline()  # go
for i in range(count):
    for name, ip, pport in peers:
        s.sendto(f"{me}>{name}#{i}".encode(), (ip, pport))
    if i % 16 == 0:
        time.sleep(0.001)
got = []
deadline = time.monotonic() + 5
while time.monotonic() < deadline and len(got) < count * len(peers):
    try:
        got.append(s.recvfrom(timeout=0.5)[0].decode())
    except TimeoutError:
        pass
print(json.dumps({"got": got}), flush=True)
sys.stdin.readline()  # stay registered until the test has read the daemon's counters
"""


def test_applications_exchange_frames_and_each_sees_only_its_own(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    who = {"a": (h1, 6001), "b": (h1, 6002), "c": (h2, 6003)}
    count = 200
    for name, (host, port) in who.items():
        peers = [(n, h.ip, p) for n, (h, p) in who.items() if n != name]
        apps.append(spawn(host, EXCHANGE, app_pythonpath, name, args=(name, port, json.dumps(peers), count)))
    for app in apps:
        assert app.wait_for("ready")["uid"] == 65534  # unprivileged
    for app in apps:
        app.send("go")
    for name, app in zip(who, apps):
        got = app.wait_for("got", timeout=60)["got"]
        assert all(g.split("#")[0].endswith(f">{name}") for g in got), f"{name} received another's traffic"
        assert {g.split(">")[0] for g in got} == set(who) - {name}
        assert len(got) == len(set(got)) == count * 2, f"{name} got {len(got)} of {count * 2}"
    for host in (h1, h2):
        for a in stats(host)["apps"]:
            assert not a["drops"], a
    assert sum(a["tx_packets"] for a in stats(h1)["apps"]) == 2 * 2 * count
    for app in apps:
        app.send("bye")


FORGER = r"""
import json, struct, sys, os, socket, random
import etran.udp as u
from etran.lib.engine import default_engine
victim_ip, victim_port, other_port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
eng = default_engine()
s = u.UdpSocket(); s.bind(7000)
me_ip, me_mac = eng.session.host_ip_bytes, eng.session.host_mac_bytes
dst_ip = socket.inet_aton(victim_ip)

def frame(payload, src_mac=me_mac, dst_mac=b"\0" * 6, ethertype=0x0800, src_ip=me_ip, sport=7000, ihl=5,
          proto=17, frag=0x4000, tot_delta=0, pad=b""):
    udp = struct.pack("!HHHH", sport, victim_port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(udp) + tot_delta, 0, frag, 64, proto, 0, src_ip, dst_ip)
    return dst_mac + src_mac + struct.pack("!H", ethertype) + ip + pad + udp

rng = random.Random(7)
kinds = {
    "spoof_src_mac": lambda i: frame(b"FORGED%d" % i, src_mac=bytes([2, 0x66, 0x66, 0x66, 0x66, i & 0xff])),
    "spoof_dst_mac": lambda i: frame(b"FORGED%d" % i, dst_mac=bytes([2, 0x77, 0x77, 0x77, 0x77, i & 0xff])),
    "spoof_src_ip": lambda i: frame(b"FORGED%d" % i, src_ip=socket.inet_aton("198.18.0.%d" % (2 + i % 200))),
    "other_tenant_port": lambda i: frame(b"FORGED%d" % i, sport=other_port),
    "unbound_port": lambda i: frame(b"FORGED%d" % i, sport=7099),
    "garbage": lambda i: bytes(rng.getrandbits(8) for _ in range(60 + i % 200)),
    "wrong_ethertype": lambda i: frame(b"FORGED%d" % i, ethertype=0x86dd),
    "truncated": lambda i: frame(b"FORGED%d" % i)[: 14 + 8],
    "bad_ip_length": lambda i: frame(b"FORGED%d" % i, tot_delta=7),
    "ip_options": lambda i: frame(b"FORGED%d" % i, ihl=6, pad=b"\x01\x01\x01\x01"),
    "fragment": lambda i: frame(b"FORGED%d" % i, frag=0x2000),
    "oversized": lambda i: frame(b"FORGED%d" % i + bytes(1550)),
    "no_transport": lambda i: frame(b"FORGED%d" % i, proto=99),
}
sent = {k: 0 for k in kinds}
for i in range(rounds):
    for k, make in kinds.items():
        data = make(i)
        a = eng.tx_frame_wait(5)
        eng.buf[a:a + len(data)] = data
        eng.commit(len(data))
        sent[k] += 1
    if i % 4 == 0:
        eng.flush()
        eng.xsk.complete()
for i in range(20):  # and some honest datagrams, which must arrive
    s.sendto(b"LEGIT%d" % i, (victim_ip, victim_port))
eng.flush()
eng.xsk.flush(5)
print(json.dumps({"sent": sent, "xsk": eng.xsk.statistics()._asdict()}), flush=True)
sys.stdin.readline()  # stay registered until the test has read the counters
"""

LISTENER = r"""
import json, sys
import etran.udp as u
s = u.UdpSocket(); s.bind(int(sys.argv[1]))
print(json.dumps({"ready": True}), flush=True)
got = []
while True:
    try:
        got.append(s.recvfrom(timeout=float(sys.argv[2]))[0].decode(errors="replace"))
    except TimeoutError:
        break
print(json.dumps({"got": got}), flush=True)
"""


def capture(netns: str, ifname: str, stop: threading.Event, out: list[bytes]) -> None:
    """Every frame seen on a switch port (both directions), until `stop`."""
    from etran import netns as ns

    with ns.enter(netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((ifname, 0))
    s.settimeout(0.1)
    with s:
        while not stop.is_set():
            try:
                out.append(s.recv(4096))
            except TimeoutError:
                pass


def test_forged_frames_never_reach_the_wire_and_are_all_counted(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    victim = spawn(h2, LISTENER, app_pythonpath, "victim", args=(7001, 3))
    neighbour = spawn(h1, LISTENER, app_pythonpath, "same-host tenant", args=(7002, 3))
    apps += [victim, neighbour]
    victim.wait_for("ready")
    neighbour.wait_for("ready")
    frames: list[bytes] = []
    stop = threading.Event()
    t = threading.Thread(target=capture, args=(bed.switch_netns, "p1", stop, frames))
    t.start()
    try:
        forger = spawn(h1, FORGER, app_pythonpath, "forger", args=(h2.ip, 7001, 7002, 800))
        apps.append(forger)
        report = forger.wait_for("sent", timeout=120)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    sent = report["sent"]
    total = sum(sent.values())
    assert total >= 10_000
    assert report["xsk"]["tx_invalid_descs"] == 0
    forged_on_wire = [f for f in frames if b"FORGED" in f]
    assert not forged_on_wire, f"{len(forged_on_wire)} forged frames reached the switch"
    assert sum(b"LEGIT" in f for f in frames) == 20
    got = victim.wait_for("got")["got"]
    assert sorted(got) == sorted(f"LEGIT{i}" for i in range(20))
    assert neighbour.wait_for("got")["got"] == []
    drops = app_stats(h1, "forger")["drops"]
    forger.send("exit")
    assert sum(drops.values()) == total, drops
    assert drops["spoof_mac"] == sent["spoof_src_mac"] + sent["spoof_dst_mac"]
    assert drops["spoof_ip"] == sent["spoof_src_ip"]
    assert drops["not_owner"] == sent["other_tenant_port"] + sent["unbound_port"]
    assert drops["oversize"] == sent["oversized"]
    assert drops["no_transport"] == sent["no_transport"]
    assert drops["malformed"] == (sent["garbage"] + sent["wrong_ethertype"] + sent["truncated"] + sent["bad_ip_length"]
                                  + sent["ip_options"] + sent["fragment"])


PINGER = r"""
import json, sys, time
import etran.udp as u
s = u.UdpSocket(); s.bind(int(sys.argv[1]))
peer = (sys.argv[2], int(sys.argv[3]))
print(json.dumps({"ready": True}), flush=True)
sys.stdin.readline()
ok = lost = 0
end = time.monotonic() + float(sys.argv[4])
while time.monotonic() < end:
    s.sendto(b"ping", peer)
    try:
        s.recvfrom(timeout=0.2)
        ok += 1
    except TimeoutError:
        lost += 1
print(json.dumps({"ok": ok, "lost": lost}), flush=True)
"""

ECHO = r"""
import json, sys
import etran.udp as u
s = u.UdpSocket(); s.bind(int(sys.argv[1]))
print(json.dumps({"ready": True}), flush=True)
while True:
    try:
        d, a = s.recvfrom(timeout=float(sys.argv[2]))
    except TimeoutError:
        break
    s.sendto(d, a)
print(json.dumps({"done": True}), flush=True)
"""


def test_killed_application_is_reclaimed_within_a_second(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    echo = spawn(h2, ECHO, app_pythonpath, "echo", args=(8000, 10))
    survivor = spawn(h1, PINGER, app_pythonpath, "survivor", args=(8001, h2.ip, 8000, 3))
    victim = spawn(h1, LISTENER, app_pythonpath, "victim", args=(8002, 30))
    apps += [echo, survivor, victim]
    for a in apps:
        a.wait_for("ready")
    slot = app_stats(h1, "victim")["slot"]
    assert f"etk{slot}" in links(h1)
    survivor.send("go")
    time.sleep(0.5)
    os.kill(victim.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while app_stats(h1, "victim") is not None or f"etk{slot}" in links(h1):
        assert time.monotonic() - killed_at < 1.0, "the killed application's resources are still there after 1 s"
        time.sleep(0.02)
    # its port is free again (the kernel can bind it), and the other application never noticed
    with h1.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((h1.ip, 8002))
    result = survivor.wait_for("ok", timeout=30)
    assert result["lost"] == 0 and result["ok"] > 10


def test_kernel_tcp_and_udp_keep_working_beside_etran(etran_bed):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    assert len(ping(h1, h2.ip, count=3)) == 3
    payload = os.urandom(1 << 20)
    server = h2.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((h2.ip, 9100))
    server.listen(1)
    received = bytearray()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)
            conn.sendall(b"done")

    t = threading.Thread(target=serve)
    t.start()
    with h1.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        c.connect((h2.ip, 9100))
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        assert c.recv(16) == b"done"
    t.join(10)
    server.close()
    assert bytes(received) == payload
    with h2.socket() as rx, h1.socket() as tx:
        rx.bind((h2.ip, 9101))
        rx.settimeout(2)
        for i in range(50):
            tx.sendto(b"k%d" % i, (h2.ip, 9101))
        assert sorted(rx.recv(100) for _ in range(50)) == sorted(b"k%d" % i for i in range(50))


RATE_SENDER = r"""
import json, sys, time
import etran.udp as u
s = u.UdpSocket(); s.bind(int(sys.argv[1]))
peer = (sys.argv[2], int(sys.argv[3]))
payload = bytes(1000)
print(json.dumps({"ready": True}), flush=True)
while True:
    line = sys.stdin.readline().split()
    if not line or line[0] == "exit":
        break
    seconds, pps = float(line[1]), int(line[2])
    n = int(seconds * pps)
    start = time.monotonic()
    for i in range(n):
        s.sendto(payload, peer)
        ahead = start + (i + 1) / pps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    print(json.dumps({"sent": n}), flush=True)
"""

COUNTER = r"""
import json, sys, time
import etran.udp as u
s = u.UdpSocket(); s.bind(int(sys.argv[1]))
print(json.dumps({"ready": True}), flush=True)
while True:
    line = sys.stdin.readline().split()
    if not line or line[0] == "exit":
        break
    seconds = float(line[1])
    got = nbytes = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            d, _ = s.recvfrom(timeout=max(0.001, end - time.monotonic()))
            got += 1
            nbytes += len(d)
        except TimeoutError:
            pass
    print(json.dumps({"got": got, "bytes": nbytes}), flush=True)
"""


def policy(host, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "etran", "policy", "--host", host.netns, *args], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1]) if out.stdout.strip().startswith("{") else {}


def measure(sender, counter, seconds: float, pps: int) -> int:
    counter.send(f"count {seconds + 0.3}")
    sender.send(f"send {seconds} {pps}")
    sender.wait_for("sent", timeout=seconds + 30)
    return counter.wait_for("got", timeout=seconds + 30)["got"]


def test_policies_change_live_traffic(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    sender = spawn(h1, RATE_SENDER, app_pythonpath, "sender", args=(8100, h2.ip, 8101))
    counter = spawn(h2, COUNTER, app_pythonpath, "counter", args=(8101,))
    apps += [sender, counter]
    sender.wait_for("ready")
    counter.wait_for("ready")
    assert measure(sender, counter, 0.5, 1000) == 500
    # an ACL deny on the receiver's entrance stops the flow; deleting it restores it
    rule = policy(h2, "add", "acl", "deny", "--proto", "udp", "--dport", "8101", "--dir", "in")
    assert measure(sender, counter, 0.5, 1000) == 0
    assert app_stats(h2, "counter") is not None
    policy(h2, "del", rule["id"])
    assert measure(sender, counter, 0.5, 1000) == 500
    # a per-application rate limit on the sender caps what leaves it (about 4,000 frames/s
    # offered against a limit of 1,000 x 1,042-byte frames/s), within 10%
    limit = policy(h1, "add", "ratelimit", "--app", "sender", "--rate", str(1000 * 1042 * 8), "--burst", "20840")
    got = measure(sender, counter, 2.0, 4000)
    assert 1800 <= got <= 2200, got
    assert app_stats(h1, "sender")["drops"]["rate"] > 0
    policy(h1, "del", limit["id"])
    assert measure(sender, counter, 0.5, 1000) == 500
    assert [p for p in stats(h1)["policies"]] == [] and stats(h2)["policies"] == []


def test_daemon_stop_and_restart_leave_nothing_behind(testbed, app_pythonpath, apps):
    bed = testbed(hosts=2, rate_gbit=None)
    h1 = bed.hosts[0]

    def clean() -> bool:
        xdp = subprocess.run(["nsenter", f"--net=/run/netns/{h1.netns}", "ip", "-o", "link", "show", "eth0"],
                             capture_output=True, text=True).stdout
        return (not any(n.startswith(("etk", "eta")) for n in links(h1)) and " xdp" not in xdp
                and not os.path.exists(ipc.socket_path(h1.netns)))

    assert clean()
    launcher.start(h1.netns)
    app = spawn(h1, LISTENER, app_pythonpath, "app", args=(8200, 30))
    apps.append(app)
    app.wait_for("ready")
    assert not clean()
    launcher.stop(h1.netns)  # SIGTERM: it removes what it made
    assert clean()
    app.kill()
    # a crash leaves things behind; the next start removes them first
    pid = launcher.start(h1.netns)
    app = spawn(h1, LISTENER, app_pythonpath, "app", args=(8200, 30))
    apps.append(app)
    app.wait_for("ready")
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert not clean()
    app.kill()
    launcher.start(h1.netns)
    with open(launcher.log_path(h1.netns)) as f:
        assert "removed leftovers" in f.read()
    launcher.stop(h1.netns)
    assert clean()


ASYNC_CLIENT = r"""
import asyncio, json, sys
import etran.udp as u

async def main():
    socks = [u.UdpSocket() for _ in range(3)]
    for s in socks:
        s.bind(0)
    async def one(s, n):
        for i in range(n):
            s.sendto(b"%d-%d" % (s.port, i), (sys.argv[1], int(sys.argv[2])))
            data, _ = await s.recvfrom_async(timeout=5)
            assert data == b"%d-%d" % (s.port, i), data
        return n
    done = await asyncio.gather(*(one(s, 50) for s in socks))
    print(json.dumps({"done": sum(done)}), flush=True)

asyncio.run(main())
"""

BUSY_CLIENT = r"""
import json, sys, time
import etran.udp as u
from etran.lib.engine import default_engine
eng = default_engine()
s = u.UdpSocket(); s.bind(0)
for i in range(200):
    s.sendto(b"b%d" % i, (sys.argv[1], int(sys.argv[2])))
    assert s.recvfrom(timeout=5)[0] == b"b%d" % i
print(json.dumps({"done": 200, "busy": eng.busy_poll}), flush=True)
"""


def test_asyncio_and_busy_poll_applications(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    echo = spawn(h2, ECHO, app_pythonpath, "echo", args=(8300, 10))
    apps.append(echo)
    echo.wait_for("ready")
    aio = spawn(h1, ASYNC_CLIENT, app_pythonpath, "asyncio", args=(h2.ip, 8300))
    apps.append(aio)
    assert aio.wait_for("done", timeout=60)["done"] == 150
    busy = spawn(h1, BUSY_CLIENT, app_pythonpath, "busy", args=(h2.ip, 8300), env={"ETRAN_POLL": "busy"})
    apps.append(busy)
    assert busy.wait_for("done", timeout=60) == {"done": 200, "busy": True}
