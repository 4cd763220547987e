"""Homa's SRPT under load, end to end: three hosts stream 1 MB messages to a receiver while
short RPCs run to the same receiver host (another application there).

As in the Homa paper, the network is the bottleneck: the switch port towards the receiver
is rate-limited (RATE_GBIT, below what the stack drives) and has strict priority queues keyed
on the DSCP high bits that Homa stamps (etran/testbed/bed.py, switch.bpf.c), like a
datacenter switch. The receiver's SRPT grants (rtt_bytes, overcommit) bound the queue of
scheduled bytes there; short messages go at the highest unscheduled level and pass it.

* A 10 KB message overtakes a 1 MB one: sent right after it, from the same socket to the
  same receiver, it completes first (sender-side SRPT in the pacer, unscheduled bytes, and
  the receiver's SRPT grants).
* The short RPCs' p99 under that load stays within 3x of their unloaded p99 (each the median
  over the cycles of the phases' p99, see CYCLES), plus one
  full-size packet's time on the rate-limited wire (see WIRE_PACKET_US). Phases
  alternate between no load and the bulk load to the short RPCs' receiver ("same"), so the
  machine's other work weighs on both alike; a third phase sends the same bulk load to a
  fifth host behind an equally limited port ("other"): a control that loads the CPUs but not
  the receiver's path. A miss names its likely cause: CPU contention when the control hurts
  as much, else the receiver-bound load itself.
* The priorities are really used: the receiver's port sent packets from the highest band
  (short messages, control) and from the scheduled bands (granted bulk bytes), and the grants
  kept its queue bounded (no drops).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.kernel

ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[1])
# CPU shares: on a real cluster every host has CPUs of its own; here five hosts (their
# daemons, the applications and the kernel's packet work) share two with whatever else runs,
# and the test is about the network. So the bulk applications run at the lowest CPU priority,
# and the short-RPC client and server, which sleep between RPCs, in the real-time class
# (LATENCY_CRITICAL). Why not nice alone: each daemon is a session of its own, so with
# autogroup (on by default) it competes as a whole group, and nice only ranks tasks within a
# group. Measured with perf sched on this bed, the short RPCs' p99 tail was scheduling delay:
# the woken server waited 1-8 ms for a CPU (behind other groups' slices, at HZ 250), in
# every phase, with the packet already in its socket; in the real-time class the phases'
# differences are the network's (the port's queue), as on a cluster.
NICE = 19
PRELUDE = (f"import sys, os, time, json, random, signal\nsys.path.insert(0, {ROOT!r})\n"
           f"NICE = {NICE}\n")
LATENCY_CRITICAL = "os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))\n"
BULK_PORT, SHORT_PORT = 5000, 5001

BULK_SERVER = """
from etran.homa import HomaSocket
os.nice(NICE)
s = HomaSocket(int(sys.argv[1]))
print('ready', flush=True)
s.serve(lambda r: b'', timeout=60)
"""

SHORT_SERVER = LATENCY_CRITICAL + """
from etran.homa import HomaSocket
s = HomaSocket(int(sys.argv[1]))
print('ready', flush=True)
s.serve(lambda r: r.payload, timeout=60)
"""

BULK_CLIENT = """
import select
os.nice(NICE)
from etran.homa import HomaSocket, HomaTimeoutError
c = HomaSocket()
port = int(sys.argv[1])
data = os.urandom(1_000_000)
active, outstanding, n, addr = False, 0, 0, None
print('ready', flush=True)
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 0 if (active or outstanding) else None)
    if ready:
        cmd = sys.stdin.readline().split()
        if cmd and cmd[0] == 'on':                   # on ADDRESS: stream to that receiver
            active, addr = True, (cmd[1], port)
        elif cmd and cmd[0] == 'off':
            active = False
            while outstanding:                   # let what is in flight finish
                c.recv_response(None, timeout=30)
                outstanding -= 1
                n += 1
            print('idle', flush=True)
            continue
        else:
            break
    if active and outstanding < 1:               # a 1 MB message always in flight
        c.send_request(addr, data)
        outstanding += 1
        continue
    if outstanding:
        try:
            c.recv_response(None, timeout=0.05)
            outstanding -= 1
            n += 1
        except HomaTimeoutError:
            pass
print(json.dumps({'messages': n}), flush=True)
"""

SHORT_CLIENT = LATENCY_CRITICAL + """
from etran.homa import HomaSocket
c = HomaSocket()
addr = (sys.argv[1], int(sys.argv[2]))
data = os.urandom(100)
print('ready', flush=True)
for line in sys.stdin:
    lat = []
    for i in range(int(line)):
        t = time.perf_counter()
        c.call(addr, data, timeout=10)
        lat.append(time.perf_counter() - t)
        time.sleep(0.0005)
    print(json.dumps(lat), flush=True)
"""

OVERTAKE = """
from etran.homa import HomaSocket
c = HomaSocket()
addr = (sys.argv[1], int(sys.argv[2]))
print('ready', flush=True)
for line in sys.stdin:
    big = c.send_request(addr, os.urandom(1_000_000))
    time.sleep(0.002)                       # the 1 MB message is under way
    small = c.send_request(addr, os.urandom(10_000))
    first = c.recv_response(None, timeout=30).id
    c.recv_response(None, timeout=30)
    print(json.dumps('10KB' if first == small else '1MB'), flush=True)
"""


CONFIGURE = """
from etran.homa import configure
configure(**json.loads(sys.argv[1]))
"""


def _start(host, code: str, *args: str) -> subprocess.Popen:
    p = host.popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", line + p.stdout.read()[-3000:]
    return p


def _ask(p: subprocess.Popen, cmd: str):
    p.stdin.write(cmd + "\n")
    p.stdin.flush()
    line = p.stdout.readline()
    assert line, p.stdout.read()[-3000:]
    return json.loads(line) if line.strip() != "idle" else "idle"


def _expect_idle(p: subprocess.Popen) -> None:
    line = p.stdout.readline()
    if line.strip() != "idle":
        p.kill()
        raise AssertionError("a bulk sender failed: " + line + p.stdout.read()[-3000:])


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] * 1e6


# (off, same, other) phase cycles. Each phase's p99 is judged by its median over the cycles:
# this machine's noise comes in bursts (other processes, the hypervisor) that can hit any one
# phase; a transport defect shows in every cycle, a burst only in one.
CYCLES = 5
SAMPLES = 400      # short RPCs per phase
# The receivers' switch ports: below what this Python stack drives with three senders, so the
# network, not the CPUs, is the bottleneck (a queue builds at the port: see its queue max), yet
# fast enough that a full packet ahead of a short one (300 us) is small next to a round trip.
RATE_GBIT = 0.04
# Homa sized for that link, as HomaModule is for its own. The receiver grants at most
# max_incoming bytes ahead in all, which bounds the port's queue. A granted message of low
# rank waits behind the higher ranks' packets until they finish, up to a few 1 MB messages
# at the port rate (~1 s here, ~1 ms at 25 Gbit/s): the silence before a RESEND must be
# longer, or RESENDs resend what is only queued and the queue collapses. Slower ticks and
# fewer, larger grants: less CPU for the daemons and the kernel on these shared CPUs.
# No switch preempts a packet on the wire: a short packet that arrives while a full-size bulk
# packet is being sent waits for it. At RATE_GBIT that is 0.3 ms; at the 10-25 Gbit/s of the
# Homa paper it is 0.5-1.2 us, lost in its 3x. The bound adds it so it judges the transport
# (queueing, priorities, grants), not the test bed's slow port.
WIRE_PACKET_US = (1500 + 38) * 8 / (RATE_GBIT * 1e3)
HOMA = {"max_incoming": 40_000, "timer_interval_ns": 20_000_000, "resend_ticks": 50, "grant_increment": 4 * 1424}


def test_short_rpcs_keep_their_latency_and_short_messages_overtake(testbed):
    from etran.daemon import testbed_hook

    bed = testbed(hosts=5, rate_gbit=None, hooks=[testbed_hook()])
    h1, h2, h3, h4, h5 = bed.hosts
    bed.configure([h4.name, h5.name], rate_gbit=RATE_GBIT)
    bed.set_priorities([h4.name, h5.name])
    for h in bed.hosts:
        r = h.run([sys.executable, "-c", PRELUDE + CONFIGURE, json.dumps(HOMA)], capture_output=True, text=True,
                  timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    procs: list[subprocess.Popen] = []
    samples: dict[str, list[float]] = {"off": [], "same": [], "other": []}
    phases = []
    overtakes: list[str] = []
    target = {"same": h4.ip, "other": h5.ip}
    try:
        procs += [_start(h4, BULK_SERVER, str(BULK_PORT)), _start(h5, BULK_SERVER, str(BULK_PORT)),
                  _start(h4, SHORT_SERVER, str(SHORT_PORT))]
        senders = [_start(h, BULK_CLIENT, str(BULK_PORT)) for h in (h1, h2, h3)]
        procs += senders
        short = _start(h1, SHORT_CLIENT, h4.ip, str(SHORT_PORT))
        overtake = _start(h2, OVERTAKE, h4.ip, str(BULK_PORT))
        procs += [short, overtake]
        for phase in ("off", "same", "other") * CYCLES:
            for p in senders:     # every phase starts from idle senders
                p.stdin.write("off\n")
                p.stdin.flush()
            for p in senders:
                _expect_idle(p)
            if phase != "off":
                for p in senders:
                    p.stdin.write(f"on {target[phase]}\n")
                    p.stdin.flush()
                time.sleep(0.3)   # the bulk messages are streaming, the port queue is full
            lat = _ask(short, str(SAMPLES))
            samples[phase] += lat
            phases.append((phase, round(_pct(lat, 0.5)), round(_pct(lat, 0.99))))
            if phase == "same":
                overtakes.append(_ask(overtake, "go"))
        for p in senders:
            p.stdin.write("off\n")
            p.stdin.flush()
            _expect_idle(p)
            p.stdin.write("quit\n")
            p.stdin.flush()
        bulk = [json.loads(p.communicate(timeout=30)[0].strip().splitlines()[-1]) for p in senders]
        bands = bed.priority_stats()[h4.name]
        port = bed.switch_stats()[h4.name]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    # each kind's p99: the median over the cycles of its phases' p99 (see CYCLES)
    off99, same99, other99 = (statistics.median(p99 for kind, _, p99 in phases if kind == k)
                              for k in ("off", "same", "other"))
    pooled = {k: round(_pct(samples[k], 0.99)) for k in samples}
    report = (f"p99 (median over cycles) unloaded {off99:.0f} us, bulk to the same receiver {same99:.0f} us, "
              f"bulk elsewhere {other99:.0f} us (CPU-contention control); pooled p99 {pooled}; "
              f"phases (kind, p50, p99 us): {phases}; "
              f"1 MB messages per sender: {bulk}; overtakes: {overtakes}; receiver port packets per band "
              f"(Homa level 7..0, other): {bands}; its queue max {port['queue_max']} B, "
              f"qdisc drops {port['qdisc_drops']}")
    print(report)
    assert all(b["messages"] > 0 for b in bulk), report          # the load was real
    assert bands[0] > 0, report                                   # short messages, control: top level
    assert sum(bands[4:8]) > 0, report                            # granted bulk bytes: scheduled levels
    assert port["qdisc_drops"] == 0, report                       # the grants bound the queue
    assert overtakes and all(o == "10KB" for o in overtakes), report
    bound = 3 * off99 + WIRE_PACKET_US
    cause = ("CPU contention (the control, the same load sent elsewhere, hurts as much)"
             if same99 <= 1.5 * other99 + WIRE_PACKET_US else "the receiver-bound load itself")
    assert same99 <= bound, (f"short-RPC p99 {same99:.0f} us is over 3x unloaded + {WIRE_PACKET_US:.0f} us on the "
                             f"wire ({bound:.0f} us); likely cause: {cause}; " + report)
