"""DCTCP over etran on a rate-limited test-bed link with ECN marking at threshold K.

Two etran flows (from two hosts) share the switch port towards a third host, limited to
100 Mbit/s (below what the stack drives even on a busy 2-core machine), marking CE above K = 60 KB.
Over 10 s: the flows share fairly (Jain's index >= 0.9), the queue stays near K (never at the
buffer limit: no drops), and the link carries more than 90% of its rate.

The applications are their connections' ACK clock, so the link stays busy only if they run
within a few ms of each ACK (the queue at K drains in 4.8 ms). Each application reports how
long it waited for a CPU after each wake-up (/proc/self/schedstat); when the machine was so
loaded that the average wait was longer than STARVED_MS, no transport in Python could keep the
link busy, and the test checks the rest but only reports the utilization.
"""

from __future__ import annotations

import statistics
import time
import warnings

import pytest
from etran_apps import spawn

pytestmark = pytest.mark.kernel

RATE_GBIT = 0.1
K_KB = 60
SECONDS = 10
STARVED_MS = 1.0          # average wait for a CPU per wake-up above which utilization is not judged

RECEIVER = r"""
import json, sys, time
import etran.tcp
def sched():
    return [int(x) for x in open("/proc/self/schedstat").read().split()]
srv = etran.tcp.create_server(("", 7500))
print(json.dumps({"listening": 1}), flush=True)
conns = [srv.accept()[0] for _ in range(int(sys.argv[1]))]
for c in conns:
    c.setblocking(False)
dur = int(sys.argv[2])
counts = [[0] * dur for _ in conns]
t0 = None
done = False
while not done:
    got = False
    for i, c in enumerate(conns):
        try:
            d = c.recv(1 << 20)
        except BlockingIOError:
            continue
        if not d:
            continue
        got = True
        now = time.monotonic()
        if t0 is None:
            t0 = now
            s0 = sched()
            print(json.dumps({"started": 1}), flush=True)
        k = int(now - t0)
        if k >= dur:
            done = True
            break
        counts[i][k] += len(d)
    if not got:
        if t0 is not None and time.monotonic() - t0 >= dur:
            break
        conns[0]._d.poll(0.002)
print(json.dumps({"counts": counts, "sched": [b - a for a, b in zip(s0, sched())]}), flush=True)
"""

SENDER = r"""
import json, sys, time
import etran.tcp
def sched():
    return [int(x) for x in open("/proc/self/schedstat").read().split()]
s = etran.tcp.create_connection((sys.argv[1], 7500), timeout=10, cc="dctcp")
s.settimeout(30)
data = bytes(1 << 20)
end = time.monotonic() + float(sys.argv[2])
stats = None
try:
    while time.monotonic() < end:
        s.sendall(data)
        if stats is None and time.monotonic() > end - 8:
            stats = s.flow_stats()
            s0 = sched()
except ConnectionResetError:
    pass
print(json.dumps({"alpha": stats["alpha"], "ecn_bytes": stats["ecn_bytes"], "acked": stats["acked_bytes"],
                  "losses": stats["loss_events"], "cc": stats["cc"],
                  "sched": [b - a for a, b in zip(s0, sched())]}), flush=True)
s.abort()
"""


def jain(xs: list[float]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def test_dctcp_two_flows_fair_queue_near_k_link_utilized(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=3, rate_gbit=RATE_GBIT, ecn_threshold_kb=K_KB)
    h1, h2, h3 = bed.hosts
    recv = spawn(h3, RECEIVER, app_pythonpath, "dctcp-recv", args=(2, SECONDS))
    apps.append(recv)
    recv.wait_for("listening")
    senders = [spawn(h, SENDER, app_pythonpath, f"dctcp-send{i}", args=(h3.ip, SECONDS + 4)) for i, h in
               enumerate((h1, h2))]
    apps.extend(senders)
    recv.wait_for("started", timeout=30)
    time.sleep(1.0)                       # past slow start
    first = bed.switch_stats()["h3"]
    t0 = time.monotonic()
    queue = []
    while time.monotonic() - t0 < SECONDS - 3:
        queue.append(bed.switch_stats()["h3"]["queue_now"])
        time.sleep(0.5)
    last = bed.switch_stats()["h3"]
    elapsed = time.monotonic() - t0
    rmsg = recv.wait_for("counts", timeout=60)
    counts = rmsg["counts"]
    flows = [s.wait_for("alpha", timeout=60) for s in senders]
    sched = [rmsg["sched"]] + [f.pop("sched") for f in flows]
    cpu_wait_ms = sum(x[1] for x in sched) / max(1, sum(x[2] for x in sched)) / 1e6

    per_flow = [sum(c[1:]) for c in counts]            # bytes after the first second
    fairness = jain(per_flow)
    utilization = (last["bytes"] - first["bytes"]) * 8 / (RATE_GBIT * 1e9 * elapsed)
    median_queue = statistics.median(queue)
    report = {"jain": round(fairness, 3), "utilization": round(utilization, 3),
              "goodput_mbps": [round(b * 8 / 1e6 / (SECONDS - 1), 1) for b in per_flow],
              "median_queue_kb": round(median_queue / 1024, 1), "queue_max_kb": round(last["queue_max"] / 1024, 1),
              "ce_marked": last["ce_marked"], "drops": last["qdisc_drops"] + last["dropped"], "flows": flows,
              "cpu_wait_ms_per_wakeup": round(cpu_wait_ms, 2)}
    print(report)
    assert all(f["cc"] == "dctcp" for f in flows)
    assert last["ce_marked"] > 0 and all(f["ecn_bytes"] > 0 for f in flows), "no ECN feedback reached the senders"
    assert all(0 < f["alpha"] < 1 for f in flows), report
    assert fairness >= 0.9, report
    assert last["qdisc_drops"] == 0, f"the queue hit the buffer limit: {report}"
    assert median_queue <= 2 * K_KB * 1024, f"the queue is not held near K: {report}"
    # The target, whenever the machine let the applications run (see the docstring);
    # the library asks for a short scheduler slice (etran.lib.sched.request_short_slice) so that
    # it does on a moderately loaded machine too.
    if cpu_wait_ms <= STARVED_MS:
        assert utilization > 0.9, report
    else:
        warnings.warn(f"utilization not judged: the applications waited {cpu_wait_ms:.1f} ms for a CPU "
                      f"per wake-up (> {STARVED_MS} ms): {report}")
        assert utilization > 0.3, report
