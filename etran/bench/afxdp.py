"""`etran bench afxdp`: the round-trip floor, bare AF_XDP against kernel UDP and TCP.

Measures the round-trip latency (p50/p99/p999) of 64-byte echoes between two test-bed
hosts over bare AF_XDP in Python (no transport logic), and in the same invocation Python
over kernel UDP and kernel TCP between the same hosts.  This is the floor every later
transport is measured against.

Set-up: its own test bed (a unique name, no rate limit), the echo server on h2 and the
client on h1, each its own process (etran.bench.echo) in its host's network namespace,
started fresh for every series so no series inherits another's XDP program or sockets.
By default the client is pinned to CPU 0 and the server to CPU 1 (`--cpus`), so two
spinning processes never share a core.  Series, in order:

  afxdp-spin    AF_XDP busy-poll: both sides spin on their RX ring (UDP/IPv4 frames,
                64-byte payload, 106-byte frames: the same bytes on the wire as kernel UDP)
  udp-blocking  kernel UDP, blocking recv
  tcp-blocking  kernel TCP, TCP_NODELAY, blocking recv (the baseline of the ratios)
  tcp-spin      kernel TCP, TCP_NODELAY, non-blocking sockets spinning on recv

The test bed is torn down at the end, also after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .bed import own_testbed, parse_cpus
from .registry import Benchmark, RunContext, register_benchmark
from .results import BenchError, Invocation, Series
from .worker import Worker


@dataclass(frozen=True)
class EchoSeries:
    name: str
    label: str
    mode: str        # etran.bench.echo --mode


SERIES: tuple[EchoSeries, ...] = (
    EchoSeries("afxdp-spin", "AF_XDP busy-poll", "afxdp"),
    EchoSeries("udp-blocking", "kernel UDP blocking", "udp"),
    EchoSeries("tcp-blocking", "kernel TCP blocking, NODELAY", "tcp"),
    EchoSeries("tcp-spin", "kernel TCP non-blocking spin", "tcp-spin"),
)
BASELINE = "tcp-blocking"
SERVER_PORT = 9000
CLIENT_PORT = 9001
ECHO_MODULE = "etran.bench.echo"


def series_by_name(names: Sequence[str] | None) -> list[EchoSeries]:
    if not names:
        return list(SERIES)
    known = {s.name: s for s in SERIES}
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
              "client_cpu": client_cpu, "server_cpu": server_cpu}
    task = progress.add(spec.label, total=count) if progress is not None else None

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=done, total=total)

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
        return inv.new_series(spec.name, spec.label, params=params, error=str(e).splitlines()[0],
                              info={"error_detail": str(e)})
    except KeyboardInterrupt:
        # keep what the client measured before the interrupt (it reports when stopped)
        partial = client.stop() if client is not None else None
        if partial and partial.get("samples"):
            inv.new_series(spec.name, spec.label, samples=partial["samples"], params=params, error="interrupted",
                           info={k: partial.get(k) for k in ("measured", "lost", "elapsed_s")},
                           keep_samples=keep_samples)
        raise
    finally:
        for w in (client, server):
            if w is not None:
                w.close()
    samples = res.pop("samples", [])
    info = {k: res.get(k) for k in ("measured", "lost", "corrupt", "truncated", "interrupted", "elapsed_s")}
    info["client_cpu"], info["server_cpu"] = res.get("cpu"), server_res.get("cpu")
    for k in ("xsk_mode", "xsk_stats", "xdp"):
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
    help = "round-trip floor: bare AF_XDP vs kernel UDP and TCP (Python, 64-byte echoes)"
    description = __doc__ or ""
    baseline = BASELINE
    count = 20_000
    quick_count = 2_000
    warmup = 1_000
    quick_warmup = 200
    time_limit = 120.0
    quick_time_limit = 30.0
    extra_columns = (("lost", "lost"), ("truncated", "cut"), ("preempted", "preempted"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--series", action="append", metavar="NAME",
                            help=f"only this series (repeatable): {', '.join(s.name for s in SERIES)}")
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
        return {"series": [s.name for s in series_by_name(a.series)], "payload": a.payload,
                "cpus": {"client": cpus[0], "server": cpus[1]} if cpus else None,
                "rtt_timeout_s": a.rtt_timeout, "testbed": {"hosts": 2, "rate_gbit": None}}

    def run(self, ctx: RunContext) -> None:
        a = ctx.args
        series = series_by_name(a.series)
        cpus = parse_cpus(a.cpus)
        with own_testbed(a.name) as bed:
            ctx.invocation.params["testbed"]["name"] = bed.name
            run_echo(bed, ctx.invocation, series, count=ctx.count, warmup=ctx.warmup, time_limit=ctx.time_limit,
                     cpus=cpus, payload=a.payload, rtt_timeout=a.rtt_timeout, keep_samples=ctx.keep_samples,
                     progress=ctx.progress)
