"""`etran bench dctcp`: DCTCP's queue and fairness on a rate-limited switch port.

Three hosts, an etran daemon on each.  Two etran TCP flows (h1 -> h3 and h2 -> h3) share
the switch port towards h3, limited to `--link-rate` (default 0.05 Gbit/s: below what the
Python stack drives even on a busy 2-core machine), which marks CE on ECT packets while
its queue holds more than K (`--ecn-threshold`, default 30 KB).  Series, in one run:

  dctcp   both flows with cc=dctcp: they should hold the queue near K and share the link
  reno    the same flows with cc=reno, which ignores the marks: nothing holds the queue near K

Each runs `--duration` seconds (--quick: dctcp only, 3 s); the first second (slow start)
is left out of the figures.  Under each series: Jain's fairness index of the two flows' goodput, the
link's utilization (bytes the switch port sent over its rate), the median queue against
K, CE marks and drops, each flow's DCTCP alpha; `info["queue_timeline"]` holds the port's
queue over time as its ECN marker sees it (the `queue` figure: the phantom queue K is
compared with, every 20 ms; it does not model drops, so past the buffer it runs above the
real queue) and `info["qdisc_timeline"]` the bytes waiting in its HTB queue (every 50 ms).  The
samples are the times of each 1 MB `sendall` of both senders (a slow send is a flow held
back).

The worker side (python -m etran.bench.dctcp ROLE ...) is below.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from .worker import ClientRun, Worker, emit, run_worker_main, stopped

MODULE = "etran.bench.dctcp"
PORT = 7600
CHUNK = 1 << 20
BIN_S = 0.1
QUEUE_INTERVAL = 0.02
CCS = ("dctcp", "reno")
# 50 Mbit/s: two Python senders fill it even when the 2 CPUs are shared with other work (at 100
# Mbit/s they reach about 45% of the link under load, and then no queue forms); K = 30 KB there.
LINK_GBIT = 0.05
K_KB = 30.0


# ---- the worker program ---------------------------------------------------------------------

def _take(c: Any) -> int:
    """Bytes read from a non-blocking connection now (0: none waiting, or its end)."""
    try:
        return len(c.recv(CHUNK))
    except BlockingIOError:
        return 0


def receiver(a: argparse.Namespace) -> dict[str, Any]:
    """Accept --flows connections, count each one's bytes in BIN_S bins from the first byte
    for --duration seconds; then close."""
    import etran.tcp

    srv = etran.tcp.create_server(("", a.port), cc=a.cc)
    emit("READY")
    conns: list[Any] = []
    bins: list[list[int]] = []
    state = {"t0": None}

    def loop() -> None:
        while len(conns) < a.flows:
            c, _ = srv.accept()
            c.setblocking(False)
            conns.append(c)
            bins.append([0] * int(a.duration / BIN_S + 1))
        nbins = len(bins[0])
        poll = getattr(getattr(conns[0], "_d", None), "poll", None)
        while True:
            sizes = [_take(c) for c in conns]
            if any(sizes):
                now = time.monotonic()
                if state["t0"] is None:
                    state["t0"] = now
                k = int((now - state["t0"]) / BIN_S)
                if k >= nbins:
                    return
                for i, n in enumerate(sizes):
                    bins[i][k] += n
            else:
                if state["t0"] is not None and time.monotonic() - state["t0"] >= a.duration:
                    return
                if poll is not None:
                    poll(0.002)
                else:
                    time.sleep(0.0005)

    interrupted = stopped(loop)
    for c in conns:
        c.close()
    srv.close()
    return {"bins": bins, "bin_s": BIN_S, "interrupted": interrupted}


def sender(a: argparse.Namespace) -> dict[str, Any]:
    """One flow to --peer-ip: 1 MB sendall()s for --duration seconds (each one's time is a
    sample); its flow statistics (cc, alpha, ECN bytes, losses) near the end."""
    import etran.tcp

    s = etran.tcp.create_connection((a.peer_ip, a.port), timeout=10, cc=a.cc)
    s.settimeout(30)
    data = bytes(CHUNK)
    run = ClientRun(10**9, 0, a.duration + 30)
    stats: dict[str, Any] = {}
    emit("READY")

    def loop() -> None:
        pc = time.perf_counter_ns
        end = time.monotonic() + a.duration
        while time.monotonic() < end:
            t0 = pc()
            s.sendall(data)
            run.recorder.append(pc() - t0)
            if not stats and time.monotonic() > end - 1.0:
                stats.update(s.flow_stats())

    try:
        run.interrupted = stopped(loop)
    except (ConnectionError, OSError) as e:  # the receiver closed first: the measurement is done
        run.truncated = bool(str(e))
    if not stats:
        try:
            stats.update(s.flow_stats())
        except Exception:  # noqa: BLE001 (the flow is gone; report without its statistics)
            pass
    s.abort()
    return run.result(flow={k: stats.get(k) for k in ("cc", "alpha", "ecn_bytes", "acked_bytes", "loss_events",
                                                      "cwnd", "srtt_us")})


ROLES = {"receiver": receiver, "sender": sender}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    p.add_argument("role", choices=sorted(ROLES))
    p.add_argument("--cc", choices=CCS, default="dctcp")
    p.add_argument("--peer-ip", default="")
    p.add_argument("--port", type=int, default=PORT)
    p.add_argument("--flows", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--cpu", type=int)
    a = p.parse_args(argv)
    return run_worker_main(lambda: ROLES[a.role](a), a.cpu, mode=a.cc)


# ---- the benchmark --------------------------------------------------------------------------

def jain(xs: list[float]) -> float | None:
    """Jain's fairness index: 1 when all are equal, 1/n when one has everything."""
    sq = sum(x * x for x in xs)
    return sum(xs) ** 2 / (len(xs) * sq) if xs and sq > 0 else None


def run_flows(bed: Any, inv: Any, cc: str, *, duration: float, rate_gbit: float, k_kb: float, port: int,
              progress: Any = None, keep_samples: bool = False) -> Any:
    """Two senders (h1, h2) into one receiver (h3) with `cc`; one series with the figures."""
    from .loadbed import QueueSampler
    from .results import BenchError

    h1, h2, h3 = bed.hosts[:3]
    name, label = cc, f"2 etran TCP flows, {cc.upper() if cc == 'dctcp' else cc}, K = {k_kb:g} KB"
    params = {"cc": cc, "flows": 2, "senders": [h1.name, h2.name], "receiver": h3.name, "duration_s": duration,
              "link_rate_gbit": rate_gbit, "ecn_threshold_kb": k_kb}
    task = progress.add(label, total=int(duration * 10)) if progress is not None else None
    workers: list[Worker] = []
    try:
        recv = Worker(h3, MODULE, ["receiver", "--cc", cc, "--port", str(port), "--duration", str(duration)],
                      name=f"{cc} receiver")
        workers.append(recv)
        recv.wait_ready(timeout=60)
        senders = [Worker(h, MODULE, ["sender", "--cc", cc, "--peer-ip", h3.ip, "--port", str(port),
                                      "--duration", str(duration + 2)], cpu=i, name=f"{cc} sender {i + 1}")
                   for i, h in enumerate((h1, h2))]
        workers += senders
        for w in senders:
            w.wait_ready(timeout=60)
        t_start = time.monotonic()
        time.sleep(1.0)  # past slow start
        first = bed.switch_stats().get(h3.name, {})
        t0 = time.monotonic()
        with QueueSampler(bed, h3.name, interval=0.05) as q, \
                QueueSampler(bed, h3.name, interval=QUEUE_INTERVAL, source="phantom") as ph:
            while time.monotonic() - t_start < duration - 0.3:
                time.sleep(0.1)
                if progress is not None:
                    progress.update(task, completed=int((time.monotonic() - t_start) * 10))
        last = bed.switch_stats().get(h3.name, {})
        elapsed = time.monotonic() - t0
        got = recv.result(timeout=duration + 60)
        flows = [w.result(timeout=duration + 60) for w in senders]
    except BenchError as e:
        return inv.failed_series(name, label, e, params)
    finally:
        for w in workers:
            w.close()
    skip = int(1.0 / got["bin_s"])
    per_flow = [sum(b[skip:]) for b in got["bins"]]
    seconds = max(len(got["bins"][0]) - skip, 1) * got["bin_s"]
    qbytes = q.timeline()["bytes"]
    pbytes = ph.timeline()["bytes"]
    k_bytes = int(k_kb * 1000)
    util = (last.get("bytes", 0) - first.get("bytes", 0)) * 8 / (rate_gbit * 1e9 * elapsed) if elapsed > 0 else None
    info = {
        "jain": round(jain([float(x) for x in per_flow]) or 0.0, 3),
        "utilization": round(util, 3) if util is not None else None,
        "goodput_mbps": [round(b * 8 / seconds / 1e6, 1) for b in per_flow],
        "median_queue_kb": round(statistics.median(pbytes) / 1000, 1) if pbytes else None,
        "median_qdisc_kb": round(statistics.median(qbytes) / 1000, 1) if qbytes else None,
        "queue_max_kb": round(max(pbytes) / 1000, 1) if pbytes else None,
        "qdisc_max_kb": round(max(qbytes) / 1000, 1) if qbytes else None,
        "ecn_threshold_kb": k_kb, "ecn_threshold_bytes": k_bytes,
        "ce_marked": last.get("ce_marked", 0) - first.get("ce_marked", 0),
        "drops": (last.get("qdisc_drops", 0) - first.get("qdisc_drops", 0)) + (
            last.get("dropped", 0) - first.get("dropped", 0)),
        "flows": [f.get("flow") for f in flows],
        "alpha": [(f.get("flow") or {}).get("alpha") for f in flows],
        "queue_timeline": ph.timeline(), "qdisc_timeline": q.timeline(),
    }
    if q.error or ph.error:
        info["queue_error"] = q.error or ph.error
    samples = [x for f in flows for x in f.get("samples", [])]
    error = "interrupted" if got.get("interrupted") or any(f.get("interrupted") for f in flows) else None
    s = inv.new_series(name, label, samples=samples, params=params, info=info, error=error, keep_samples=keep_samples)
    if progress is not None:
        progress.update(task, completed=int(duration * 10))
    return s


def _register() -> None:
    from .bed import own_testbed
    from .registry import RunContext, TimedBenchmark, register_benchmark
    from .results import BenchError, Invocation

    @register_benchmark
    class DctcpBenchmark(TimedBenchmark):
        name = "dctcp"
        help = "DCTCP queue occupancy and fairness: two etran TCP flows through a rate-limited port marking at K"
        description = __doc__ or ""
        baseline = None
        duration = 10.0
        quick_duration = 3.0
        min_duration = 1.5               # the first second is left out
        extra_columns = (("jain", "Jain"), ("utilization", "link util"), ("median_queue_kb", "median queue KB"),
                         ("ecn_threshold_kb", "K KB"), ("ce_marked", "CE marks"), ("drops", "drops"))

        def add_arguments(self, parser: argparse.ArgumentParser) -> None:
            self.add_duration_argument(parser)
            parser.add_argument("--link-rate", type=float, default=LINK_GBIT, metavar="GBIT",
                                help=f"rate of every test-bed link, Gbit/s (default {LINK_GBIT:g})")
            parser.add_argument("--ecn-threshold", type=float, default=K_KB, metavar="KB",
                                help=f"K: the switch marks CE above this queue (default {K_KB:g} KB)")
            parser.add_argument("--cc", default=None,
                                help=f"congestion controls to run, comma-separated (default {','.join(CCS)}; "
                                     "--quick: dctcp)")
            parser.add_argument("--name", metavar="BED", help="test bed name (default: bench-<random>)")

        def _plan(self, ctx: RunContext) -> dict[str, Any]:
            a = ctx.args
            d = self.duration_of(ctx)
            ccs = [c.strip() for c in (a.cc or ("dctcp" if ctx.quick else ",".join(CCS))).split(",") if c.strip()]
            if not ccs or any(c not in CCS for c in ccs):
                raise BenchError(f"--cc: a comma-separated choice of {', '.join(CCS)}")
            if a.link_rate <= 0 or a.ecn_threshold <= 0:
                raise BenchError("--link-rate and --ecn-threshold must be positive")
            return {"duration_s": d, "ccs": ccs, "link_rate_gbit": a.link_rate, "ecn_threshold_kb": a.ecn_threshold}

        def params(self, ctx: RunContext) -> dict[str, Any]:
            plan = self._plan(ctx)
            plan["testbed"] = {"hosts": 3, "rate_gbit": plan["link_rate_gbit"],
                               "ecn_threshold_kb": plan["ecn_threshold_kb"], "daemons": True}
            return plan

        def run(self, ctx: RunContext) -> None:
            plan = self._plan(ctx)
            inv = ctx.invocation
            with own_testbed(ctx.args.name, hosts=3, daemons=True, rate_gbit=plan["link_rate_gbit"],
                             ecn_threshold_kb=plan["ecn_threshold_kb"]) as bed:
                inv.params["testbed"]["name"] = bed.name
                for i, cc in enumerate(plan["ccs"]):
                    run_flows(bed, inv, cc, duration=plan["duration_s"], rate_gbit=plan["link_rate_gbit"],
                              k_kb=plan["ecn_threshold_kb"], port=PORT + i, progress=ctx.progress,
                              keep_samples=ctx.keep_samples)

        def summary(self, inv: Invocation) -> list[str]:
            return summary_lines(inv)


def summary_lines(inv: Any) -> list[str]:
    lines = []
    for s in inv.series:
        if not s.ok:
            continue
        i = s.info
        lines.append(f"{s.name}: Jain {i.get('jain')}, link utilization {i.get('utilization')}, goodput "
                     f"{i.get('goodput_mbps')} Mbit/s, median queue {i.get('median_queue_kb')} KB "
                     f"(HTB queue {i.get('median_qdisc_kb')} KB) vs K {i.get('ecn_threshold_kb')} KB, "
                     f"max {i.get('queue_max_kb')} KB (HTB {i.get('qdisc_max_kb')} KB), "
                     f"{i.get('ce_marked')} CE marks, {i.get('drops')} drops, "
                     f"alpha {i.get('alpha')}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
else:
    try:
        _register()
    except ImportError:  # the worker process does not need the registry
        pass
