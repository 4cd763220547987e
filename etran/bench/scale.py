"""`etran bench scale`: etran UDP, Homa and TCP request/response at 2, 4 and 8 hosts and at 1
to 1,000 concurrent clients; etran UDP also against offered load (open loop) and message size.

One test bed of 8 hosts (the most any sweep needs), an etran daemon on h1 and h2 (with a
per-application port quota of 1,100, so one process can hold 1,000 sockets); the hosts sweep
starts the daemons of h3..hN as it reaches N, so no idle daemon takes CPU from the points
before (an idle daemon costs about 0.15 of a CPU here; `daemon_cpus` of each point says what
the daemons used).  One etran UDP echo server on h1 answers every point; the
clients are etran.bench.loadworker processes (the load generator, etran.bench.load), by
default all pinned to CPU 0 and the server to CPU 1, blocking in select(2) (`--poll busy`:
spinning).  Sweeps (`--sweep`, repeatable; default all, --quick all but size):

  clients  one client process on h2 with N sockets (distinct UDP ports, each a client with
           one request outstanding: a closed loop of N outstanding), N = 1, 10, 100, 1000
  hosts    N-1 client processes on h2..hN, one socket and one request outstanding each,
           N = 2, 4, 8
  load     one client process on h2 with 16 sockets, Poisson arrivals (open loop) at
           fractions of the peak throughput the clients sweep reached (latency from the
           scheduled arrival)
  size     one client, one request outstanding, request = response = 64 ... 1472 bytes

Each point runs `--duration` seconds (after a warm-up) and gives a series: the latency of
every request of every client, the throughput (sum over clients, requests/s), losses, and how
busy the CPUs were.  The ratios (x) are latency ratios to `clients-1` (one request at a
time: the unloaded round trip).

This machine has 2 CPUs, and every host of the test bed is a namespace on it: more hosts
add processes, not CPUs.  Where a point was CPU-bound (the server's process near a full
core, or both CPUs near fully busy, other processes included) its series says so
(`cpu-bound`), and the notes under the table say which figures that limits.

Endpoints (`--endpoint`, repeatable; default etran-udp, homa, etran-tcp): `homa` is RPCs on
one etran Homa socket (Homa has no connections: N clients are N RPCs outstanding on it),
`etran-tcp` N etran TCP connections to an `etran.tcp.start_server` server (length-prefixed
requests); both run the clients and hosts sweeps only.  `kernel-udp` measures the host
kernel's UDP the same way, side by side.  In the clients sweep a request counts as lost only
after max(1, N/100) s (with N outstanding it waits behind N-1 others).

Counts: time-based (`--duration`; `--count`/`--warmup` are not used).
"""

from __future__ import annotations

import argparse
from typing import Any

from .bed import own_testbed, parse_cpus
from .load import load_levels
from .loadbed import ClientSpec, LoadServer, QuotaDaemonHook, run_point
from .registry import RunContext, TimedBenchmark, register_benchmark
from .results import BenchError, Invocation, Series, ratio

SWEEPS = ("clients", "hosts", "load", "size")
QUICK_SWEEPS = ("clients", "hosts", "load")  # --quick: `etran bench homa` draws latency against size
HOSTS = (2, 4, 8)
CLIENTS = (1, 10, 100, 1000)
SIZES = (64, 256, 512, 1024, 1472)
QUICK_SIZES = (64, 1472)
LOAD_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25)
QUICK_LOAD_FRACTIONS = (0.25, 0.75, 1.25)
LOAD_CONNS = 16
MAX_PORTS = 1100
ENDPOINT_PORTS = {"etran-udp": 9500, "kernel-udp": 9600, "homa": 9700, "etran-tcp": 9800}
ENDPOINT_PREFIX = {"etran-udp": "", "kernel-udp": "kudp-", "homa": "homa-", "etran-tcp": "tcp-"}
ENDPOINT_LABEL = {"etran-udp": "etran UDP", "kernel-udp": "kernel UDP", "homa": "etran Homa", "etran-tcp": "etran TCP"}
# the sweeps an endpoint runs (the others: all); Homa and TCP give the hosts and clients figures only
ENDPOINT_SWEEPS = {"homa": ("clients", "hosts"), "etran-tcp": ("clients", "hosts")}
DEFAULT_ENDPOINTS = ("etran-udp", "homa", "etran-tcp")
BASELINE = "clients-1"


def clients_timeout(n: int) -> float:
    """Seconds before a request of the clients sweep counts as lost: with N outstanding a
    request waits behind N-1 others, so at 1,000 (up to 10 ms of server time each on a busy
    2-core machine) 0.5 s would count every one lost.  Half of it is the drain at the end."""
    return max(1.0, n / 100)


def _ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if not text:
        return default
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise BenchError(f"{text!r}: give comma-separated numbers") from None
    if not values or min(values) < 1:
        raise BenchError(f"{text!r}: numbers of at least 1")
    return values


@register_benchmark
class ScaleBenchmark(TimedBenchmark):
    name = "scale"
    help = "etran UDP at 2/4/8 hosts and 1-1,000 clients; throughput vs offered load; latency vs size"
    description = __doc__ or ""
    baseline = BASELINE
    duration = 4.0
    quick_duration = 0.5
    extra_columns = (("throughput_rps", "req/s"), ("lost", "lost"), ("cpu_busy", "cpu busy"),
                     ("cpu_bound", "cpu-bound"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sweep", action="append", choices=SWEEPS, help="only this sweep (repeatable)")
        parser.add_argument("--endpoint", action="append", choices=tuple(ENDPOINT_PORTS),
                            help="transport (repeatable; default etran-udp, homa and etran-tcp; homa and "
                                 "etran-tcp run the clients and hosts sweeps only)")
        self.add_duration_argument(parser, "point")
        parser.add_argument("--hosts-list", metavar="N,N", help="hosts sweep (default 2,4,8)")
        parser.add_argument("--clients-list", metavar="N,N", help="clients sweep (default 1,10,100,1000)")
        parser.add_argument("--sizes", metavar="B,B", help="size sweep, bytes (default 64,256,512,1024,1472; "
                                                          "quick 64,1472)")
        parser.add_argument("--poll", choices=("block", "busy"), default="block",
                            help="clients and server wait in select/poll (default) or spin")
        parser.add_argument("--cpus", metavar="CLIENT,SERVER",
                            help="pin clients and server to these CPUs (default: the first two; 'none': no pinning)")
        parser.add_argument("--name", metavar="BED", help="test bed name (default: bench-<random>)")

    def _plan(self, ctx: RunContext) -> dict[str, Any]:
        a = ctx.args
        sizes = _ints(a.sizes, QUICK_SIZES if ctx.quick else SIZES)
        if max(sizes) > 1472 or min(sizes) < 12:
            raise BenchError("--sizes: between 12 and 1472 bytes (one datagram)")
        duration = self.duration_of(ctx)
        return {"sweeps": list(a.sweep or (QUICK_SWEEPS if ctx.quick else SWEEPS)),
                "endpoints": list(dict.fromkeys(a.endpoint or DEFAULT_ENDPOINTS)),
                "hosts": sorted(set(_ints(a.hosts_list, HOSTS))), "clients": sorted(set(_ints(a.clients_list, CLIENTS))),
                "sizes": list(sizes), "load_fractions": list(QUICK_LOAD_FRACTIONS if ctx.quick else LOAD_FRACTIONS),
                "duration_s": duration, "warmup_s": 0.1 if ctx.quick else 0.5, "poll": a.poll}

    def params(self, ctx: RunContext) -> dict[str, Any]:
        cpus = parse_cpus(ctx.args.cpus)
        plan = self._plan(ctx)
        plan["cpus"] = {"clients": cpus[0], "server": cpus[1]} if cpus else None
        hosts = max(plan["hosts"]) if "hosts" in plan["sweeps"] else 2
        plan["testbed"] = {"hosts": hosts, "rate_gbit": None, "daemons": True, "max_ports": MAX_PORTS}
        return plan

    def run(self, ctx: RunContext) -> None:
        a = ctx.args
        inv = ctx.invocation
        plan = self._plan(ctx)
        cpus = parse_cpus(a.cpus)
        client_cpu, server_cpu = cpus if cpus else (None, None)
        nhosts = max(plan["hosts"]) if "hosts" in plan["sweeps"] else 2
        dur, warm, poll = plan["duration_s"], plan["warmup_s"], plan["poll"]
        common: dict[str, Any] = dict(duration=dur, warmup=warm, progress=ctx.progress,
                                      keep_samples=ctx.keep_samples, poll=poll)
        inv.notes.append(
            f"This machine has {inv.machine.get('cpus')} CPUs; every test-bed host is a network namespace on it, "
            "so more hosts add processes, not CPUs. Clients are pinned to CPU "
            f"{client_cpu if client_cpu is not None else 'any'}, the server to CPU "
            f"{server_cpu if server_cpu is not None else 'any'}.")
        hook = QuotaDaemonHook(MAX_PORTS, first=(1, 2))  # the other hosts' daemons start with the hosts sweep
        with own_testbed(a.name, hosts=nhosts, hooks=[hook]) as bed:
            inv.params["testbed"]["name"] = bed.name
            common["bed"] = bed
            hosts = bed.hosts
            h1, h2 = hosts[0], hosts[1]
            started: set[int] = set()
            for ep in plan["endpoints"]:
                pre, lab = ENDPOINT_PREFIX[ep], ENDPOINT_LABEL[ep]
                sweeps = [sw for sw in plan["sweeps"] if sw in ENDPOINT_SWEEPS.get(ep, SWEEPS)]
                if not sweeps:
                    continue
                with LoadServer(h1, endpoint=ep, port=ENDPOINT_PORTS[ep], cpu=server_cpu, poll=poll,
                                time_limit=3600, app_name=f"scale-server-{ep}") as server:
                    peak = 0.0
                    if "clients" in sweeps:
                        for n in plan["clients"]:
                            s = run_point(inv, f"{pre}clients-{n}", f"{lab}, {n:,} client{'s' if n > 1 else ''}",
                                          server=server, clients=[ClientSpec(h2, [
                                              "--mode", "closed", "--outstanding", str(n), "--conns", str(n)],
                                              client_cpu)],
                                          params={"sweep": "clients", "group": lab, "clients": n, "hosts": 2,
                                                  "mode": "closed", "outstanding": n, "conns": n, "size": 64},
                                          timeout=clients_timeout(n), drain=clients_timeout(n) / 2, **common)
                            if s.ok:
                                peak = max(peak, float(s.info.get("throughput_rps") or 0))
                            elif n >= 1000:
                                inv.notes.append(f"{n:,} clients did not run on this machine: {s.error}")
                    if "load" in sweeps:
                        if peak <= 0:
                            s = run_point(inv, f"{pre}peak", f"{lab}, peak (64 outstanding)", server=server,
                                          clients=[ClientSpec(h2, ["--mode", "closed", "--outstanding", "64",
                                                                   "--conns", "64"], client_cpu)],
                                          params={"sweep": "peak", "group": lab, "mode": "closed",
                                                  "outstanding": 64, "conns": 64, "size": 64}, **common)
                            peak = float(s.info.get("throughput_rps") or 0) if s.ok else 0.0
                        if peak > 0:
                            inv.params.setdefault("peak_rps", {})[ep] = peak
                            for rate in dict.fromkeys(load_levels(peak, plan["load_fractions"])):
                                run_point(inv, f"{pre}open-{int(rate)}", f"{lab}, open loop {int(rate):,}/s",
                                          server=server, clients=[ClientSpec(h2, [
                                              "--mode", "open", "--rate", str(rate), "--conns", str(LOAD_CONNS)],
                                              client_cpu)],
                                          params={"sweep": "load", "group": lab, "mode": "open",
                                                  "offered_rps": rate, "conns": LOAD_CONNS, "size": 64,
                                                  "fraction_of_peak": round(rate / peak, 3)}, **common)
                        else:
                            inv.notes.append(f"{lab}: no peak throughput measured, so no open-loop sweep")
                    if "size" in sweeps:
                        for size in plan["sizes"]:
                            run_point(inv, f"{pre}size-{size}", f"{lab}, {size} B", server=server,
                                      clients=[ClientSpec(h2, ["--mode", "closed", "--size", str(size)], client_cpu)],
                                      params={"sweep": "size", "group": lab, "mode": "closed", "outstanding": 1,
                                              "size": size, "response_size": size}, **common)
                    if "hosts" in sweeps:
                        for n in plan["hosts"]:
                            if n > len(hosts):
                                continue
                            if n < 2:
                                inv.notes.append("hosts sweep: 1 host has no client; skipped")
                                continue
                            for h in hosts[2:n]:
                                if h.index not in started:
                                    hook.start_on(h)
                                    started.add(h.index)
                            clients = [ClientSpec(h, ["--mode", "closed"], client_cpu) for h in hosts[1:n]]
                            run_point(inv, f"{pre}hosts-{n}", f"{lab}, {n} hosts ({n - 1} to 1)", server=server,
                                      clients=clients,
                                      params={"sweep": "hosts", "group": lab, "hosts": n, "clients": n - 1,
                                              "mode": "closed", "outstanding": 1, "size": 64}, **common)
        self._limit_notes(inv)

    @staticmethod
    def _limit_notes(inv: Invocation) -> None:
        others_note(inv)
        bound: dict[str, list[str]] = {}
        for s in inv.series:
            if s.ok and s.info.get("cpu_bound"):
                bound.setdefault(str(s.params.get("sweep")), []).append(f"{s.name} ({s.info.get('limit')})")
        for sweep, names in bound.items():
            inv.notes.append(f"CPU-bound ({sweep} sweep): the 2-core machine, not the network, limits "
                             f"these points: {', '.join(names)}")

    def summary(self, inv: Invocation) -> list[str]:
        return summary_lines(inv)


def others_note(inv: Invocation) -> None:
    """A note when other processes on the machine took a notable share of the CPUs."""
    from .loadbed import OTHERS_NOTABLE

    vals = [float(s.info["other_cpus"]) for s in inv.series if s.ok and s.info.get("other_cpus") is not None]
    if vals and sum(vals) / len(vals) >= OTHERS_NOTABLE:
        inv.notes.append(f"CPU time not charged to this benchmark's processes (other users' work on this machine, "
                         f"kernel threads) was {sum(vals) / len(vals):.1f} of its {inv.machine.get('cpus')} CPUs on "
                         f"average while it ran (up to {max(vals):.1f}): where that is other work, throughput here "
                         "is lower, and latency higher, than on an idle machine.")


def _get(inv: Invocation, name: str) -> Series | None:
    try:
        s = inv.get(name)
    except KeyError:
        return None
    return s if s.ok else None


def throughput_ratio(a: Series, b: Series) -> float:
    """Throughput of a over b, for two series of the same invocation only."""
    from .results import CrossInvocationRatioError

    if not a.invocation_id or a.invocation_id != b.invocation_id:
        raise CrossInvocationRatioError(a, b)
    tb = float(b.info.get("throughput_rps") or 0)
    if tb <= 0:
        raise BenchError(f"{b.name!r} has no throughput: no ratio")
    return float(a.info.get("throughput_rps") or 0) / tb


def summary_lines(inv: Invocation) -> list[str]:
    from .report import fmt_ratio

    lines = []
    for ep, pre in ENDPOINT_PREFIX.items():
        lab = ENDPOINT_LABEL[ep]

        def sweep(name: str, ep: str = ep) -> list[Series]:
            return [s for s in inv.series if s.ok and s.params.get("sweep") == name and s.params.get("endpoint") == ep]

        one = _get(inv, f"{pre}clients-1")
        if one:
            for s in sweep("clients"):
                if s is not one:
                    lines.append(f"{lab}: {s.params['clients']:,} clients vs 1: throughput "
                                 f"{fmt_ratio(throughput_ratio(s, one))}x, p50 {fmt_ratio(ratio(s, one, 'p50'))}x, "
                                 f"p99 {fmt_ratio(ratio(s, one, 'p99'))}x")
        two = _get(inv, f"{pre}hosts-2")
        if two:
            for s in sweep("hosts"):
                if s is not two:
                    lines.append(f"{lab}: {s.params['hosts']} hosts vs 2: throughput "
                                 f"{fmt_ratio(throughput_ratio(s, two))}x, p99 {fmt_ratio(ratio(s, two, 'p99'))}x")
        opens = sweep("load")
        if opens:
            best = max(opens, key=lambda s: float(s.info.get("throughput_rps") or 0))
            lines.append(f"{lab}: open loop: at most {float(best.info['throughput_rps']):,.0f} req/s achieved "
                         f"(offered {float(best.params['offered_rps']):,.0f}/s)")
    return lines
