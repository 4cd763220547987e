"""The kernel, not the library, decides what a TCP application may send, and congestion control
is the daemon's, swappable on a live connection.

* An application that pushes far more than its congestion window in one burst gets the excess
  dropped by the egress hook (counted as "window"); its stream still arrives intact because a
  refused frame is handled like a lost one.
* Frames an application may never send (SYN, RST, data below snd_una, another connection's
  ports) are dropped too.
* A live connection switches DCTCP -> CUBIC -> Reno -> DCTCP (and to an algorithm defined by a
  small Python class in a plug-in module) without dropping it; cwnd carries over.
"""

from __future__ import annotations

import textwrap

import pytest
from etran_apps import spawn

from etran import ipc

pytestmark = pytest.mark.kernel

# a sink: PORT [CONNECTIONS]; answers each connection's EOF with the length and SHA-256 it got
SINK = r"""
import hashlib, json, sys
import etran.tcp
srv = etran.tcp.create_server(("", int(sys.argv[1])))
print(json.dumps({"listening": 1}), flush=True)
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 1):
    conn, peer = srv.accept()
    h, n = hashlib.sha256(), 0
    while True:
        d = conn.recv(1 << 20)
        if not d:
            break
        h.update(d); n += len(d)
    conn.sendall(json.dumps({"n": n, "sha": h.hexdigest()}).encode())
    conn.close()
    print(json.dumps({"done": n}), flush=True)
"""

# app side: half-close, then the sink's answer (see SINK)
FINISH = r"""
import json, socket


def finish(s):
    s.shutdown(socket.SHUT_WR)
    s.settimeout(60)
    reply = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        reply += d
    return json.loads(reply)
"""

GREEDY = FINISH + r"""
import hashlib, json, socket, struct, sys, time
import etran.tcp
from etran.tcp import socket as ts
host, port = sys.argv[1], int(sys.argv[2])
s = etran.tcp.create_connection((host, port), timeout=10)
eng = s.engine
data = bytes(range(256)) * 4096 * 2            # 2 MB
w = s._pub()
cwnd = w[5] & 0xFFFFFFFF
# a greedy application: queue 200 segments and put them all on the ring at once, ignoring the limit
s._sbuf += data
with eng.lock:
    for i in range(200):
        s._emit(s._snd_base + i * s.mss, s.mss, False)
    s._snd_nxt = s._sent_hi = s._snd_base + 200 * s.mss
    eng.flush()
time.sleep(0.2)
after = s.flow_stats()
# forged frames: SYN, RST, data far below snd_una, another connection's ports
def forge(flags=0x18, seq=None, sport=None, dport=None, payload=b"x" * 100):
    a = eng.tx_frame_wait(1.0)
    t = s._tmpl
    hl = s._hlen
    ts._HDR.pack_into(eng.buf, a, t[0], t[1], t[2], t[3], t[4], hl - 14 + len(payload), 1, t[7], t[8], t[9], 0,
                      t[11], t[12], sport or t[13], dport or t[14], (seq if seq is not None else s._snd_base) & 0xFFFFFFFF,
                      0, (hl - 34) << 2, flags, 0, 0, 0)
    if s._ts:
        eng.buf[a + 54:a + 66] = ts._TS_PLACEHOLDER
    eng.buf[a + hl:a + hl + len(payload)] = payload
    eng.commit(hl + len(payload))
with eng.lock:
    forge(flags=0x02)                                   # SYN
    forge(flags=0x04)                                   # RST
    forge(seq=s._snd_base - 5000)                       # below snd_una
    forge(sport=s.local[1] ^ 1)                         # not our connection
    forge(dport=s.remote[1] ^ 1)
    eng.flush()
time.sleep(0.2)
# the rest of the stream the normal way; everything must still arrive
s._push(); eng.flush()
reply = finish(s)
s.close()
print(json.dumps({"cwnd": cwnd, "window_drops": after["window_drops"], "sent_frames": 200,
                  "reply": reply, "sha": hashlib.sha256(data).hexdigest(), "n": len(data)}), flush=True)
"""


def app_drops(host, name: str) -> dict:
    with ipc.Client(ipc.socket_path(host.netns)) as c:
        for a in c.call("stats")["apps"]:
            if a["name"] == name:
                return a["drops"]
    return {}


def test_the_hook_drops_what_exceeds_cwnd_and_forged_frames(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    sink = spawn(h2, SINK, app_pythonpath, "sink", args=(7300,))
    apps.append(sink)
    sink.wait_for("listening")
    greedy = spawn(h1, GREEDY, app_pythonpath, "greedy", args=(h2.ip, 7300))
    apps.append(greedy)
    res = greedy.wait_for("window_drops", timeout=90)
    drops = app_drops(h1, "greedy")
    # initial window: 10 segments; the burst of 200 must have been cut down in the kernel
    assert res["cwnd"] <= 20 * 1448
    assert res["window_drops"] >= 150, res
    assert drops.get("window", 0) >= 150 + 1, drops          # the burst and the frame below snd_una
    assert drops.get("not_owner", 0) >= 4, drops              # SYN, RST, two foreign port pairs
    # and the stream still arrived whole: refused frames were recovered like lost ones
    assert res["reply"]["n"] == res["n"] and res["reply"]["sha"] == res["sha"]


SWAPPER = FINISH + r"""
import hashlib, json, socket, sys, time
import etran.tcp
host, port, plugin = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = etran.tcp.create_connection((host, port), timeout=10)
data = bytes(range(256)) * 4096
h = hashlib.sha256()
seen = []
for i, cc in enumerate(["dctcp", "cubic", "reno", plugin, "dctcp"]):
    if i:
        before = s.flow_stats()
        r = s.set_congestion_control(cc)
        after = s.flow_stats()
        seen.append({"cc": after["cc"], "cwnd_before": r["cwnd_before"], "cwnd_after": r["cwnd"],
                     "kernel_cwnd": after["cwnd"], "state": after["state"]})
    for _ in range(6):
        s.sendall(data); h.update(data)
reply = finish(s)
s.close()
print(json.dumps({"swaps": seen, "reply": reply, "sha": h.hexdigest()}), flush=True)
"""

PLUGIN = '''
from etran.tcp.cc import CongestionControl, LossKind, register_congestion_control


class Halfway(CongestionControl):
    """Slow start, then +1 MSS per round; a loss keeps 3/4 of the window."""

    name = "halfway"

    def on_round(self, acked_bytes, ecn_marked_bytes=0, loss_events=0, rtt_sample_us=None, now=0.0, *,
                 round_complete=True):
        self.begin_round(acked_bytes, ecn_marked_bytes, loss_events, rtt_sample_us, now)
        reduced = self.ecn_reaction(ecn_marked_bytes, now)
        if not (reduced or self.in_recovery) and self.slow_start(acked_bytes) and round_complete:
            self.cwnd += self.mss
        self.end_round(round_complete)
        return reduced

    def on_loss(self, kind=LossKind.FAST_RETRANSMIT, now=0.0):
        self.ssthresh = max(self.cwnd * 3 // 4, 2 * self.mss)
        self.cwnd = self.mss if kind is LossKind.RTO else self.ssthresh


register_congestion_control("halfway", Halfway)
'''


def test_congestion_control_swaps_on_a_live_connection(etran_bed, app_pythonpath, apps, tmp_path, monkeypatch):
    plugin = tmp_path / "halfway_cc.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    plugin.chmod(0o644)
    monkeypatch.setenv("ETRAN_TCP_CC_MODULES", str(plugin))   # the daemons load it at start
    bed = etran_bed(hosts=2, rate_gbit=1, ecn_threshold_kb=30, loss=0.001)
    h1, h2 = bed.hosts
    sink = spawn(h2, SINK, app_pythonpath, "sink", args=(7301,))
    apps.append(sink)
    sink.wait_for("listening")
    cli = spawn(h1, SWAPPER, app_pythonpath, "swapper", args=(h2.ip, 7301, "halfway"))
    apps.append(cli)
    res = cli.wait_for("swaps", timeout=120)
    assert [s["cc"] for s in res["swaps"]] == ["cubic", "reno", "halfway", "dctcp"]
    for s in res["swaps"]:
        assert s["state"] == 3, "the connection stayed established"
        assert s["cwnd_after"] == max(s["cwnd_before"], 2 * 1448), "the new algorithm starts from the old one's cwnd"
    assert res["reply"]["sha"] == res["sha"]
