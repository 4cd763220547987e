"""Pacing and the retransmission bound: the congestion control's rate reaches the kernel, the
library paces by it, and the egress hook refuses what exceeds it.

A plug-in congestion control ("trickle": cwnd 16 segments, 100 KB/s) makes the numbers
deterministic:

* A normal application sending 300 KB takes at least (300 KB - one bucket) / 100 KB/s and the
  hook refuses none of its frames: the library paced itself by the published rate.
* An application that resends one segment 300 times in a burst (what an unbounded fast
  retransmit or RTO loop would do after a loss burst) gets all but the hook's bucket (twice
  the library's) refused (counted as "rate"); the stream still arrives intact.
"""

from __future__ import annotations

import textwrap

import pytest
from etran_apps import spawn
from test_tcp_enforce import FINISH, SINK

pytestmark = pytest.mark.kernel

RATE = 100_000          # bytes/s
CWND_SEGS = 16

PLUGIN = f'''
from etran.tcp.cc import CongestionControl, register_congestion_control


class Trickle(CongestionControl):
    """A fixed window and a fixed, slow pacing rate (a test fixture): it ignores all feedback."""

    name = "trickle"

    def on_init(self, now=0.0):
        self.cwnd, self.rate = {CWND_SEGS} * self.mss, float({RATE})

    def __init__(self, **kw):
        super().__init__(**kw)
        self.on_init()

    def on_round(self, *args, **kw):
        self.on_init()
        return False

    def on_loss(self, *args, **kw):
        self.on_init()


register_congestion_control("trickle", Trickle)
'''

SENDER = FINISH + r"""
import hashlib, json, socket, sys, time
import etran.tcp
from etran.kernel.structs import TcpPub
host, port = sys.argv[1], int(sys.argv[2])
FIN = int(TcpPub.TCP_PUB_FIN)

# 1. a well-behaved application: the library paces
s = etran.tcp.create_connection((host, port), timeout=10, cc="trickle")
data = bytes(range(256)) * 1200                    # 300 KB
t0 = time.monotonic()
s.sendall(data)
reply = finish(s)
elapsed = time.monotonic() - t0
st = s.flow_stats()
s.close()
paced = {"elapsed": elapsed, "pace_drops": st["pace_drops"], "pace_rate": st["pace_rate"],
         "ok": reply == {"n": len(data), "sha": hashlib.sha256(data).hexdigest()}, "paced": s.stats["paced"]}

# 2. a retransmission flood
s = etran.tcp.create_connection((host, port), timeout=10, cc="trickle")
eng = s.engine
first = bytes(range(256)) * 80                     # 20 KB the normal way, so a round ends and the rate is set
s.sendall(first)
w = s._pub()
deadline = time.monotonic() + 20
while time.monotonic() < deadline and (w[2] & 0xFFFFFFFF != w[2] >> 32 or w[FIN] >> 32 == 0):
    s._d.poll(0.005)
rate_before = w[FIN] >> 32
time.sleep(0.25)                                   # the bucket refills (25 KB at 100 KB/s: full)
rest = bytes(range(256)) * 120                     # 30 KB
with eng.lock:
    s._sbuf += rest
    base = s._snd_base + len(s._sbuf) - s._soff - len(rest)
    # ten new segments after a hole at `base` (within cwnd and the bucket), so the peer cannot
    # acknowledge them while the flood goes out and the hook has to refuse it for the rate ...
    for i in range(1, 11):
        s._emit(base + i * s.mss, s.mss, False)
    for _ in range(300):                           # ... and the first of them again, 300 times
        s._emit(base + s.mss, s.mss, False)
    s._snd_nxt = s._sent_hi = base + 11 * s.mss    # the hole is repaired as any loss is
    eng.flush()
time.sleep(0.3)
st = s.flow_stats()
s._push(); eng.flush()
reply = finish(s)
s.close()
whole = first + rest
flood = {"rate_before": rate_before, "retrans_bytes": st["retrans_bytes"], "pace_drops": st["pace_drops"],
         "window_drops": st["window_drops"],
         "ok": reply == {"n": len(whole), "sha": hashlib.sha256(whole).hexdigest()}}
print(json.dumps({"paced": paced, "flood": flood}), flush=True)
"""


def test_pacing_rate_reaches_the_hook_library_paces_and_retransmission_floods_are_refused(
        etran_bed, app_pythonpath, apps, tmp_path, monkeypatch):
    plugin = tmp_path / "trickle_cc.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    plugin.chmod(0o644)
    tmp_path.chmod(0o755)
    monkeypatch.setenv("ETRAN_TCP_CC_MODULES", str(plugin))   # the daemons load it at start
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    sink = spawn(h2, SINK, app_pythonpath, "sink", args=(7310, 2))
    apps.append(sink)
    sink.wait_for("listening")
    cli = spawn(h1, SENDER, app_pythonpath, "pacer", args=(h2.ip, 7310))
    apps.append(cli)
    res = cli.wait_for("paced", timeout=120)
    paced, flood = res["paced"], res["flood"]
    print(res)
    mss = 1448
    bucket = CWND_SEGS * mss
    # the library paced: it took at least as long as the rate allows, and the hook refused nothing
    assert paced["ok"], res
    assert paced["pace_rate"] == RATE, res
    assert paced["pace_drops"] == 0, f"the library sent faster than the hook's rate: {res}"
    assert paced["elapsed"] >= 0.8 * (300 * 1024 - bucket) / RATE, f"not paced: {res}"
    # the flood: at most a bucket's worth of resends went out, the rest was refused for the rate
    assert flood["rate_before"] == RATE, res
    assert flood["retrans_bytes"] <= 2 * bucket, f"retransmissions were not bounded: {res}"
    assert flood["pace_drops"] >= 300 - 2 * CWND_SEGS, res
    assert flood["ok"], res
