"""`etran bench afxdp`: the round-trip floor: bare AF_XDP (Python and C), kernel UDP and TCP, etran UDP.

Measures the round-trip latency (p50/p99/p999) of 64-byte echoes between two test-bed
hosts over bare AF_XDP in Python (no transport logic) and in C (the limit of the path on
this machine), in the same invocation Python over kernel UDP and kernel TCP between the
same hosts, and etran's own UDP transport through the daemons and tenant ports.  This is
the floor every later transport is measured against.

Set-up: its own test bed (a unique name, no rate limit), the echo server on h2 and the
client on h1, each its own process (etran.bench.echo) in its host's network namespace,
started fresh for every series so no series inherits another's XDP program or sockets.
By default the client is pinned to CPU 0 and the server to CPU 1 (`--cpus`), so two
spinning processes never share a core.  Series, in order:

  afxdp-spin    AF_XDP busy-poll: both sides spin on their RX ring (UDP/IPv4 frames,
                64-byte payload, 106-byte frames: the same bytes on the wire as kernel UDP)
  c-afxdp       the same in C (etran/bench/c/xdp_echo.c, built with gcc): the C floor,
                the `xC` ratios
  udp-blocking  kernel UDP, blocking recv
  tcp-blocking  kernel TCP, TCP_NODELAY, blocking recv (the baseline of the `x` ratios)
  tcp-spin      kernel TCP, TCP_NODELAY, non-blocking sockets spinning on recv
then an etran daemon starts on both hosts (its entrance program takes the NIC), and:
  c-etran       the C echo through etran's tenant ports (NIC -> entrance -> UDP ingress ->
                tenant port -> XSK, back through the egress hook; three veth hops each way
                instead of one): the floor of etran's path, the `xCe` ratios
  etran-udp-spin      etran.udp.UdpSocket on both hosts, ETRAN_POLL=busy
  etran-udp-blocking  etran.udp.UdpSocket on both hosts, blocking in poll(2)

Under the table: what the etran core costs over bare AF_XDP (etran-udp-spin against
afxdp-spin, and c-etran against c-afxdp), and how close Python gets to C.  Other
benchmarks add the C floor to their own run with `add_c_floor(bed, inv, ...)`.

The test bed is torn down at the end, also after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .bed import daemons_running, own_testbed, parse_cpus, start_daemons
from .registry import Benchmark, RunContext, register_benchmark
from .results import BenchError, Invocation, Series, ratio
from .worker import Worker, close_workers, run_counts


@dataclass(frozen=True)
class EchoSeries:
    name: str
    label: str
    mode: str              # etran.bench.echo --mode
    daemon: bool = False   # needs an etran daemon on both hosts (bare AF_XDP on the NIC must not have one)


# Python over bare AF_XDP and the kernel (what `etran demo` runs too)
SERIES: tuple[EchoSeries, ...] = (
    EchoSeries("afxdp-spin", "AF_XDP busy-poll", "afxdp"),
    EchoSeries("udp-blocking", "kernel UDP blocking", "udp"),
    EchoSeries("tcp-blocking", "kernel TCP blocking, NODELAY", "tcp"),
    EchoSeries("tcp-spin", "kernel TCP non-blocking spin", "tcp-spin"),
)
C_AFXDP = EchoSeries("c-afxdp", "C AF_XDP busy-poll (the C floor)", "c-afxdp")
C_ETRAN = EchoSeries("c-etran", "C AF_XDP busy-poll, tenant ports", "c-etran", daemon=True)
ETRAN_UDP: tuple[EchoSeries, ...] = (
    EchoSeries("etran-udp-spin", "etran UDP busy-poll", "etran-udp-spin", daemon=True),
    EchoSeries("etran-udp-blocking", "etran UDP blocking", "etran-udp", daemon=True),
)
# `etran bench afxdp`, in this order: the series without daemons first
ALL_SERIES: tuple[EchoSeries, ...] = (SERIES[0], C_AFXDP, *SERIES[1:], C_ETRAN, *ETRAN_UDP)
BASELINE = "tcp-blocking"
FLOOR = C_AFXDP.name
REFERENCES = {C_AFXDP.name: "C", C_ETRAN.name: "Ce"}
SERVER_PORT = 9000
CLIENT_PORT = 9001
ECHO_MODULE = "etran.bench.echo"


def series_by_name(names: Sequence[str] | None) -> list[EchoSeries]:
    if not names:
        return list(ALL_SERIES)
    known = {s.name: s for s in ALL_SERIES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"unknown series {', '.join(unknown)}; choose from {', '.join(known)}")
    return [known[n] for n in names]


def run_echo_series(bed: Any, spec: EchoSeries, inv: Invocation, *, count: int, warmup: int, time_limit: float,
                    cpus: tuple[int, int] | None = None, payload: int = 64, rtt_timeout: float = 0.2,
                    port_offset: int = 0, keep_samples: bool = False, progress: Any = None) -> Series:
    """One series between h1 (client) and h2 (server) of a live bed, added to `inv`.
    Failures become a series with `error` set (and no summary)."""
    h1, h2 = bed.hosts[:2]
    sport, cport = SERVER_PORT + 2 * port_offset, CLIENT_PORT + 2 * port_offset
    client_cpu, server_cpu = cpus if cpus is not None else (None, None)
    common = ["--mode", spec.mode, "--payload", str(payload)]
    params = {"mode": spec.mode, "payload": payload, "client": f"{h1.name} {h1.ip}", "server": f"{h2.name} {h2.ip}",
              "client_cpu": client_cpu, "server_cpu": server_cpu, "daemon": spec.daemon}
    try:
        load_start = list(os.getloadavg())
    except OSError:
        load_start = None
    task = progress.add(spec.label, total=count) if progress is not None else None

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=done, total=total)

    if spec.mode.startswith("c-"):
        # build once, here, before the workers start: a missing compiler is one clear error
        from ..errors import BuildError
        from .native import binary

        try:
            params["binary"] = str(binary("xdp_echo"))
        except BuildError as e:
            return inv.failed_series(spec.name, spec.label, e, params)
    server = client = None
    try:
        server = Worker(h2, ECHO_MODULE, ["server", *common, "--ip", h2.ip, "--port", str(sport), "--ifname", h2.ifname,
                                          "--time-limit", str(time_limit + 60)], cpu=server_cpu, name=f"{spec.name} server")
        server.wait_ready(timeout=30)
        client = Worker(h1, ECHO_MODULE,
                        ["client", *common, "--ip", h1.ip, "--mac", h1.mac, "--port", str(cport), "--ifname", h1.ifname,
                         "--peer-ip", h2.ip, "--peer-mac", h2.mac, "--peer-port", str(sport),
                         "--count", str(count), "--warmup", str(warmup), "--time-limit", str(time_limit),
                         "--rtt-timeout", str(rtt_timeout)],
                        cpu=client_cpu, on_progress=on_progress, name=f"{spec.name} client")
        res = client.result(timeout=time_limit + 60)
        server_res = server.stop() or {}
    except BenchError as e:
        return inv.failed_series(spec.name, spec.label, e, params)
    except KeyboardInterrupt:
        # keep what the client measured before the interrupt (it reports when stopped)
        partial = client.stop() if client is not None else None
        if partial and partial.get("samples"):
            inv.new_series(spec.name, spec.label, samples=partial["samples"], params=params, error="interrupted",
                           info={k: partial.get(k) for k in ("measured", "lost", "elapsed_s")},
                           keep_samples=keep_samples)
        raise
    finally:
        close_workers(client, server)
    samples, info = run_counts(res)
    info["client_cpu"], info["server_cpu"] = res.get("cpu"), server_res.get("cpu")
    info["loadavg_start"] = load_start
    for k in ("xsk_mode", "xsk_stats", "xdp", "path", "poll", "engine", "etran_app", "tx_busy", "rx_wakeups"):
        if k in res:
            info[f"client_{k}"] = res[k]
        if k in server_res:
            info[f"server_{k}"] = server_res[k]
    info["server_echoed"] = server_res.get("echoed", server_res.get("echoed_bytes"))
    for side, r in (("client", res), ("server", server_res)):
        for k in ("voluntary_switches", "involuntary_switches"):
            info[f"{side}_{k}"] = r.get(k)
    # times the CPU was taken from a spinning/blocked worker: the usual cause of a long tail here
    info["preempted"] = (res.get("involuntary_switches") or 0) + (server_res.get("involuntary_switches") or 0)
    error = None
    if res.get("interrupted"):
        error = "interrupted"
    elif res.get("corrupt"):
        error = f"{res['corrupt']} replies differ from their request"
    s = inv.new_series(spec.name, spec.label, samples=samples, params=params, info=info, error=error,
                       keep_samples=keep_samples)
    if progress is not None:
        progress.update(task, completed=len(samples))
    return s


def run_echo(bed: Any, inv: Invocation, series: Sequence[EchoSeries] = SERIES, **kwargs: Any) -> list[Series]:
    """Every series in turn on a live bed (see run_echo_series for the options)."""
    return [run_echo_series(bed, spec, inv, port_offset=i, **kwargs) for i, spec in enumerate(series)]


@register_benchmark
class AfxdpBenchmark(Benchmark):
    name = "afxdp"
    help = "round-trip floor: bare AF_XDP (Python and C) vs kernel UDP/TCP and etran UDP (64-byte echoes)"
    description = __doc__ or ""
    baseline = BASELINE
    references = REFERENCES
    count = 20_000
    quick_count = 1_000
    warmup = 1_000
    quick_warmup = 200
    time_limit = 120.0
    quick_time_limit = 30.0
    extra_columns = (("lost", "lost"), ("truncated", "cut"), ("preempted", "preempted"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--series", action="append", metavar="NAME",
                            help=f"only this series (repeatable): {', '.join(s.name for s in ALL_SERIES)}")
        parser.add_argument("--payload", type=int, default=64, help="payload bytes per message (default 64)")
        parser.add_argument("--cpus", metavar="CLIENT,SERVER",
                            help="pin client and server to these CPUs (default: the first two allowed; 'none': no "
                                 "pinning)")
        parser.add_argument("--name", metavar="BED", help="test bed name (default: bench-<random>)")
        parser.add_argument("--rtt-timeout", type=float, default=0.2,
                            help="seconds before a UDP/AF_XDP reply counts as lost (default 0.2)")

    def params(self, ctx: RunContext) -> dict[str, Any]:
        a = ctx.args
        cpus = parse_cpus(a.cpus)
        if not 8 <= a.payload <= 1472:
            raise BenchError(f"--payload {a.payload}: between 8 and 1472 bytes")
        return {"series": [s.name for s in series_by_name(a.series)], "payload": a.payload, "floor": FLOOR,
                "cpus": {"client": cpus[0], "server": cpus[1]} if cpus else None,
                "rtt_timeout_s": a.rtt_timeout, "testbed": {"hosts": 2, "rate_gbit": None}}

    def run(self, ctx: RunContext) -> None:
        a = ctx.args
        series = series_by_name(a.series)
        cpus = parse_cpus(a.cpus)
        plain = [s for s in series if not s.daemon]
        managed = [s for s in series if s.daemon]
        kwargs = dict(count=ctx.count, warmup=ctx.warmup, time_limit=ctx.time_limit, cpus=cpus, payload=a.payload,
                      rtt_timeout=a.rtt_timeout, keep_samples=ctx.keep_samples, progress=ctx.progress)
        inv = ctx.invocation
        with own_testbed(a.name, daemons=not plain) as bed:
            inv.params["testbed"]["name"] = bed.name
            for i, spec in enumerate(plain):
                run_echo_series(bed, spec, inv, port_offset=i, **kwargs)
            if managed:
                if plain:
                    start_daemons(bed)
                inv.params["testbed"]["daemons"] = True
                for i, spec in enumerate(managed, start=len(plain)):
                    run_echo_series(bed, spec, inv, port_offset=i, **kwargs)

    def summary(self, inv: Invocation) -> list[str]:
        return summary_lines(inv)


# ---- the C floor for any benchmark ----------------------------------------------------------

def add_c_floor(bed: Any, inv: Invocation, *, count: int, warmup: int, time_limit: float,
                cpus: tuple[int, int] | None = None, path: str = "auto", payload: int = 64, rtt_timeout: float = 0.2,
                port_offset: int = 40, keep_samples: bool = False, progress: Any = None,
                reference: str | None = "C") -> Series:
    """Measure the C floor between h1 (client) and h2 (server) of a live bed and add it to
    `inv` as a series (with `error` set if it failed; it never raises for a failed measurement).

    path: "nic" (series c-afxdp: bare AF_XDP on the NIC; the hosts must have no etran
    daemon), "etran" (series c-etran: through etran's tenant ports; needs the daemons),
    or "auto": "etran" when every host runs a daemon, else "nic".  The C program is built
    (cached) by etran.bench.native.  UDP ports 9000 + 2 * port_offset (server) and one
    more (client).  `reference`: the tag under which tables show ratios to this series
    (`x<tag>` columns; None: none).  Typical use, inside a benchmark's run():

        from etran.bench.afxdp import add_c_floor
        add_c_floor(bed, ctx.invocation, count=ctx.count, warmup=ctx.warmup,
                    time_limit=ctx.time_limit, cpus=cpus, progress=ctx.progress)
    """
    if path == "auto":
        path = "etran" if daemons_running(bed) else "nic"
    if path not in ("nic", "etran"):
        raise BenchError(f"C floor path {path!r}: choose 'nic', 'etran' or 'auto'")
    spec = C_ETRAN if path == "etran" else C_AFXDP
    s = run_echo_series(bed, spec, inv, count=count, warmup=warmup, time_limit=time_limit, cpus=cpus,
                        payload=payload, rtt_timeout=rtt_timeout, port_offset=port_offset, keep_samples=keep_samples,
                        progress=progress)
    if reference:
        inv.references.setdefault(s.name, reference)
    return s


def summary_lines(inv: Invocation) -> list[str]:
    """The comparisons this benchmark exists for, as sentences (only between series that ran)."""
    from .report import fmt_ratio, fmt_us

    get = inv.measured

    def cmp(a: Series, b: Series) -> str:
        return ", ".join(f"{st} {fmt_ratio(ratio(a, b, st))}x" for st in ("p50", "p99", "p999"))

    lines = []
    py, c, ce, eu = get("afxdp-spin"), get(C_AFXDP.name), get(C_ETRAN.name), get("etran-udp-spin")
    if py and c:
        lines.append(f"Python vs C on bare AF_XDP (afxdp-spin / c-afxdp): {cmp(py, c)}; "
                     f"C floor p50 {fmt_us(c.stat('p50'))} us")
    if ce and c:
        lines.append(f"tenant-port path vs the NIC, both in C (c-etran / c-afxdp): {cmp(ce, c)}")
    if eu and py:
        lines.append(f"etran core over bare AF_XDP, Python (etran-udp-spin / afxdp-spin): {cmp(eu, py)}")
    if eu and ce:
        lines.append(f"etran UDP vs the C floor of its path (etran-udp-spin / c-etran): {cmp(eu, ce)}")
    return lines
