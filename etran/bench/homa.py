"""`etran bench homa`: Homa RPC round trips by message size, against kernel TCP and the AF_XDP floor, and
the Homa paper's workloads W1-W5 (slowdown by size).

One invocation, one test bed (two hosts, no rate limit), every series side by side:

  afxdp-spin        bare AF_XDP busy-poll, 64-byte UDP echo, no transport (the floor: `xF` columns)
  tcp-block-SIZE    Python over kernel TCP: a length-prefixed echo (4-byte length, then the
                    message), TCP_NODELAY, blocking sockets (the baseline of the `x` columns: 64 B)
  tcp-spin-SIZE     the same with non-blocking sockets spinning (busy-poll)
then an etran daemon starts on both hosts, and:
  homa-spin-SIZE    etran.homa.HomaSocket.call() round trips (request and response SIZE bytes),
                    both sides ETRAN_POLL=busy (spinning on the AF_XDP ring)
  homa-block-SIZE   the same, both sides blocking in poll(2)
  w1 .. w5          HomaSocket clients keeping --concurrency RPCs outstanding, request sizes drawn
                    from the Homa paper's workload (W1 Facebook memcached, W2 Google search RPCs,
                    W3 Google all RPCs, W4 Facebook Hadoop, W5 DCTCP web search; sizes capped at
                    Homa's 1,000,000-byte maximum), 100-byte responses. Each RPC's slowdown is its
                    latency over the unloaded latency of an RPC of its size, measured by the same
                    client first (one at a time, by size, interpolated); reported by size class.

SIZE defaults to 64, 1400, 10000, 100000 and 1000000 bytes (--sizes); fewer round trips are
measured for large messages (the count scaled by 1400/SIZE, at least 20). By default the
client is pinned to CPU 0 and the server to CPU 1 (--cpus). Under the table: the targets
(64-byte Homa p50 and p99 at least 5x lower than blocking kernel TCP; p50 within 1.5x of the
AF_XDP floor) and what this run reached, and the slowdown tables.

The worker (both sides of every series here) is this module: `python -m etran.bench.homa
{server|client} --mode {homa,homa-spin,tcp,tcp-spin} ...`.
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from .results import BenchError, Invocation, Series, ratio

MODES = ("homa", "homa-spin", "tcp", "tcp-spin")
DEFAULT_SIZES = (64, 1400, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (64, 100_000)   # --quick: a size figure in seconds, not minutes (1 MB RPCs take long here)
WORKLOADS = ("w1", "w2", "w3", "w4", "w5")
MAX_MESSAGE = 1_000_000
RESPONSE = 100
SERVER_PORT = 9400
MODULE = "etran.bench.homa"
LEN = struct.Struct("!I")
SEQ = struct.Struct("!Q")
SIZE_CLASSES = ((1400, "<=1.4K"), (10_000, "<=10K"), (100_000, "<=100K"), (MAX_MESSAGE, "<=1M"))

# ---- the Homa paper's workloads ---------------------------------------------------------------
# Message-size quantiles of W1-W5 (Montazeri et al., SIGCOMM 2018, Fig. 1), condensed from the
# CDFs HomaModule ships (util/dist.cc): (fraction of messages, largest size at that fraction),
# interpolated log-linearly between points. Sizes above Homa's maximum message are capped.
WORKLOAD_QUANTILES: dict[str, tuple[tuple[float, int], ...]] = {
    "w1": ((0.0, 8), (0.31, 8), (0.42, 11), (0.50, 27), (0.60, 78), (0.70, 149), (0.80, 264), (0.90, 500),
           (0.95, 800), (0.99, 1_900), (0.999, 8_500), (1.0, 100_000)),
    "w2": ((0.0, 8), (0.17, 8), (0.33, 64), (0.34, 128), (0.46, 256), (0.60, 301), (0.80, 410), (0.91, 512),
           (0.958, 1_024), (0.981, 2_048), (0.995, 4_096), (0.9984, 8_192), (0.9993, 65_536),
           (0.99999, 1_000_000), (1.0, 1_000_000)),
    "w3": ((0.0, 8), (0.065, 8), (0.155, 64), (0.35, 128), (0.50, 256), (0.785, 512), (0.863, 1_024),
           (0.909, 2_048), (0.935, 4_096), (0.964, 8_192), (0.985, 16_384), (0.990, 32_768), (0.993, 65_536),
           (0.997, 131_072), (0.9985, 262_144), (0.9995, 524_288), (0.99975, 1_000_000), (1.0, 1_000_000)),
    "w4": ((0.0, 53), (0.05, 300), (0.14, 326), (0.26, 480), (0.46, 600), (0.52, 680), (0.60, 960),
           (0.64, 1_450), (0.67, 1_700), (0.70, 6_100), (0.72, 32_000), (0.80, 49_000), (0.85, 77_000),
           (0.90, 120_000), (0.95, 270_000), (0.97, 830_000), (0.973, 1_000_000), (1.0, 1_000_000)),
    "w5": ((0.0, 1_430), (0.15, 8_580), (0.20, 19_110), (0.30, 27_930), (0.40, 48_510), (0.53, 77_910),
           (0.60, 195_510), (0.62, 364_560), (0.70, 980_490), (0.701, 1_000_000), (1.0, 1_000_000)),
}
WORKLOAD_NAMES = {"w1": "W1 Facebook memcached", "w2": "W2 Google search", "w3": "W3 Google all RPCs",
                  "w4": "W4 Facebook Hadoop", "w5": "W5 DCTCP web search"}


class Workload:
    """Draws message sizes from one of W1-W5."""

    def __init__(self, name: str, seed: int = 146) -> None:
        if name not in WORKLOAD_QUANTILES:
            raise BenchError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
        self.name = name
        self.points = WORKLOAD_QUANTILES[name]
        self.fracs = [p for p, _ in self.points]
        self.rnd = random.Random(seed)

    def size_at(self, u: float) -> int:
        i = bisect.bisect_right(self.fracs, u)
        if i >= len(self.points):
            return self.points[-1][1]
        if i == 0:
            return self.points[0][1]
        (f0, s0), (f1, s1) = self.points[i - 1], self.points[i]
        if f1 <= f0 or s0 == s1:
            return s1
        t = (u - f0) / (f1 - f0)
        return max(1, min(MAX_MESSAGE, int(round(math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))))))

    def sample(self) -> int:
        return self.size_at(self.rnd.random())

    def mean(self, n: int = 20_000) -> float:
        r = random.Random(1)
        return sum(self.size_at(r.random()) for _ in range(n)) / n


def count_for(size: int, count: int) -> int:
    """Round trips to measure for messages of `size` bytes (large ones take long)."""
    if size <= 1400:
        return count
    return max(20, min(count, count * 1400 // size))


# ==== the worker (both sides) ===================================================================

def _payload(size: int, seed: int = 7) -> bytearray:
    return bytearray(random.Random(seed).randbytes(size))


def homa_server(args: argparse.Namespace) -> dict[str, Any]:
    from ..homa import HomaSocket
    from .worker import Counter, Switches, emit, stopped

    if args.mode == "homa-spin":
        os.environ["ETRAN_POLL"] = "busy"
    sock = HomaSocket(args.port)
    done = Counter()
    try:
        emit("READY")
        sw = Switches()
        stopped(_homa_serve, sock, args.reply, time.monotonic() + args.time_limit, done)
        return {"served": done.n, "lib": sock.stats, **sw.since()}
    finally:
        sock.close()


def _homa_serve(sock: Any, reply: int | None, deadline: float, done: Any) -> None:
    from ..homa import HomaTimeoutError

    recv, answer = sock.recv_request, sock.reply
    fixed = bytes(reply) if reply is not None else None
    while time.monotonic() < deadline:
        try:
            req = recv(timeout=1.0)
        except HomaTimeoutError:
            continue
        answer(req, req.payload if fixed is None else fixed)
        done.n += 1


def homa_client(args: argparse.Namespace) -> dict[str, Any]:
    from ..homa import HomaSocket
    from .worker import ClientRun, emit, stopped

    if args.mode == "homa-spin":
        os.environ["ETRAN_POLL"] = "busy"
    sock = HomaSocket()
    addr = (args.peer_ip, args.peer_port)
    try:
        if args.workload:
            emit("READY")
            return _workload(sock, addr, args)
        run = ClientRun(args.count, args.warmup, args.time_limit, args.rtt_timeout)
        emit("READY")
        run.interrupted = stopped(_homa_client_loop, sock, run, _payload(args.size), addr, args.rtt_timeout)
        return run.result(lib=sock.stats)
    finally:
        sock.close()


def _homa_client_loop(sock: Any, run: Any, payload: bytearray, addr: tuple[str, int], rtt_timeout: float) -> None:
    from ..homa import HomaTimeoutError

    call = sock.call
    pc = time.perf_counter_ns
    record = run.record
    seq = len(payload) >= 8
    for i in range(run.total):
        if seq:
            SEQ.pack_into(payload, 0, i)
        data = bytes(payload)
        t0 = pc()
        try:
            r = call(addr, data, timeout=rtt_timeout)
        except HomaTimeoutError:
            if record(i, t0, pc(), False):
                return
            continue
        t1 = pc()
        if r != data:
            run.corrupt += 1
        if record(i, t0, t1):
            return


def _workload(sock: Any, addr: tuple[str, int], args: argparse.Namespace) -> dict[str, Any]:
    """Unloaded latency by size first (one RPC at a time), then the workload with
    `concurrency` RPCs outstanding; every RPC's latency and request size."""
    from .worker import ClientRun, stopped

    wl = Workload(args.workload, seed=args.seed)
    body = random.Random(3).randbytes(MAX_MESSAGE)
    base_sizes = sorted({8, 100, 1400, 5000, 10_000, 50_000, 100_000, 300_000, MAX_MESSAGE})
    base: list[list[int]] = []
    for size in base_sizes:
        reps = 15 if size <= 10_000 else 5
        lat = []
        for _ in range(reps + 2):
            t0 = time.perf_counter_ns()
            sock.call(addr, body[:size], timeout=30)
            lat.append(time.perf_counter_ns() - t0)
        lat = sorted(lat[2:])
        base.append([size, lat[len(lat) // 2]])
    run = ClientRun(args.count, args.warmup, args.time_limit, args.rtt_timeout)
    sizes: list[int] = []
    run.interrupted = stopped(_workload_loop, sock, addr, run, wl, body, args.concurrency, sizes)
    return run.result(sizes=sizes, base=base, lib=sock.stats, concurrency=args.concurrency)


def _workload_loop(sock: Any, addr: tuple[str, int], run: Any, wl: Workload, body: bytes, concurrency: int,
                   sizes: list[int]) -> None:
    pc = time.perf_counter_ns
    started: dict[int, tuple[int, int, int]] = {}
    append, tick = run.recorder.append, run.progress.tick
    sent = done = 0
    while done < run.total:
        while sent < run.total and len(started) < concurrency:
            size = wl.sample()
            started[sock.send_request(addr, body[:size])] = (pc(), size, sent)
            sent += 1
        r = sock.recv_response(None, timeout=30)
        t1 = pc()
        t0, size, i = started.pop(r.id)
        done += 1
        if i >= run.warmup:
            append(t1 - t0)
            sizes.append(size)
            tick(len(sizes))
        if t1 > run.deadline_ns:
            run.truncated = done < run.total
            return


def tcp_server(args: argparse.Namespace) -> dict[str, Any]:
    from .worker import Counter, tcp_serve_one

    done = Counter()
    sw = tcp_serve_one(args.ip, args.port, args.time_limit,
                       lambda c: _tcp_serve(c, args.mode == "tcp-spin", done))
    return {"served": done.n, **sw}


def _recv_exactly(c: socket.socket, view: memoryview, n: int, spin: bool) -> bool:
    got = 0
    recv_into = c.recv_into
    while got < n:
        try:
            k = recv_into(view[got:n], n - got)
        except BlockingIOError:
            if spin:
                continue
            raise
        if not k:
            return False
        got += k
    return True


def _send_all(c: socket.socket, data: memoryview, spin: bool) -> None:
    if not spin:
        c.sendall(data)
        return
    while data:
        try:
            data = data[c.send(data):]
        except BlockingIOError:
            pass


def _tcp_serve(c: socket.socket, spin: bool, done: Any) -> None:
    buf = bytearray(LEN.size + MAX_MESSAGE)
    view = memoryview(buf)
    c.setblocking(not spin)
    while True:
        if not _recv_exactly(c, view, LEN.size, spin):
            return
        n = LEN.unpack_from(buf)[0]
        if n > MAX_MESSAGE or not _recv_exactly(c, view[LEN.size:], n, spin):
            return
        _send_all(c, view[:LEN.size + n], spin)
        done.n += 1


def tcp_client(args: argparse.Namespace) -> dict[str, Any]:
    from .worker import ClientRun, emit, stopped, tcp_connect

    spin = args.mode == "tcp-spin"
    s = tcp_connect(args.ip, (args.peer_ip, args.peer_port))
    run = ClientRun(args.count, args.warmup, args.time_limit, args.rtt_timeout)
    try:
        s.setblocking(not spin)
        emit("READY")
        run.interrupted = stopped(_tcp_client_loop, s, run, _payload(args.size), spin)
        return run.result()
    finally:
        s.close()


def _tcp_client_loop(s: socket.socket, run: Any, payload: bytearray, spin: bool) -> None:
    n = len(payload)
    msg = bytearray(LEN.pack(n)) + payload
    mview = memoryview(msg)
    rbuf = bytearray(LEN.size + n)
    rview = memoryview(rbuf)
    pc = time.perf_counter_ns
    seq = n >= 8
    for i in range(run.total):
        if seq:
            SEQ.pack_into(msg, LEN.size, i)
        t0 = pc()
        _send_all(s, mview, spin)
        if not _recv_exactly(s, rview, LEN.size + n, spin):
            raise ConnectionError("the server closed the connection")
        t1 = pc()
        if rbuf != msg:
            run.corrupt += 1
        if run.record(i, t0, t1):
            return


ROLES = {("server", "homa"): homa_server, ("server", "homa-spin"): homa_server,
         ("client", "homa"): homa_client, ("client", "homa-spin"): homa_client,
         ("server", "tcp"): tcp_server, ("server", "tcp-spin"): tcp_server,
         ("client", "tcp"): tcp_client, ("client", "tcp-spin"): tcp_client}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--ip", required=True, help="this host's address")
    ap.add_argument("--port", type=int, default=SERVER_PORT, help="the server's port")
    ap.add_argument("--peer-ip", help="the server's address (client)")
    ap.add_argument("--peer-port", type=int, help="the server's port (client)")
    ap.add_argument("--size", type=int, default=64, help="request and response bytes")
    ap.add_argument("--reply", type=int, help="server: answer with this many bytes instead of an echo")
    ap.add_argument("--workload", choices=WORKLOADS, help="client: request sizes from this workload")
    ap.add_argument("--concurrency", type=int, default=8, help="workload: RPCs outstanding")
    ap.add_argument("--seed", type=int, default=146)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--rtt-timeout", type=float, default=5.0, help="seconds before an RPC counts as lost")
    ap.add_argument("--cpu", type=int, help="pin this process to CPU N")
    args = ap.parse_args(argv)
    if args.role == "client" and (args.peer_ip is None or args.peer_port is None):
        ap.error("the client needs --peer-ip and --peer-port")
    return args


def main(argv: list[str] | None = None) -> int:
    from .worker import run_worker_main

    args = parse_args(argv)
    return run_worker_main(lambda: ROLES[(args.role, args.mode)](args), args.cpu, mode=args.mode)


# ==== the benchmark =============================================================================

def _size_name(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 and size % 1_000_000 == 0 else (
        f"{size // 1000}K" if size >= 10_000 and size % 1000 == 0 else str(size))


def slowdowns(samples: Sequence[int], sizes: Sequence[int], base: Sequence[Sequence[int]]) -> list[float]:
    """Each RPC's latency over the unloaded latency of its size (linear between measured sizes)."""
    bs = [b[0] for b in base]
    out = []
    for lat, size in zip(samples, sizes):
        i = bisect.bisect_left(bs, size)
        if i <= 0:
            ref = base[0][1]
        elif i >= len(bs):
            ref = base[-1][1]
        else:
            (s0, l0), (s1, l1) = base[i - 1], base[i]
            ref = l0 + (l1 - l0) * (size - s0) / (s1 - s0)
        out.append(lat / ref if ref > 0 else float("nan"))
    return out


def slowdown_table(samples: Sequence[int], sizes: Sequence[int], base: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Slowdown p50/p99 by size class (and over all RPCs)."""
    sd = slowdowns(samples, sizes, base)
    table: dict[str, Any] = {}
    lo = 0
    for hi, label in SIZE_CLASSES:
        xs = sorted(x for x, n in zip(sd, sizes) if lo < n <= hi)
        if xs:
            table[label] = {"rpcs": len(xs), "p50": round(xs[len(xs) // 2], 2),
                            "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2)}
        lo = hi
    xs = sorted(sd)
    if xs:
        table["all"] = {"rpcs": len(xs), "p50": round(xs[len(xs) // 2], 2),
                        "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2)}
    return table


def _run_pair(bed: Any, inv: Invocation, name: str, label: str, mode: str, *, client_args: list[str],
              server_args: list[str], cpus: tuple[int, int] | None, time_limit: float, count: int,
              params: dict[str, Any], progress: Any = None, keep_samples: bool = False) -> Series:
    """A server on h2 and a client on h1 (this module), one series from the client's RESULT."""
    from .worker import Worker, close_workers, run_counts

    h1, h2 = bed.hosts[:2]
    client_cpu, server_cpu = cpus if cpus is not None else (None, None)
    task = progress.add(label, total=count) if progress is not None else None

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=done, total=total)

    server = client = None
    params = {"mode": mode, "client": f"{h1.name} {h1.ip}", "server": f"{h2.name} {h2.ip}",
              "client_cpu": client_cpu, "server_cpu": server_cpu, **params}
    try:
        server = Worker(h2, MODULE, ["server", "--mode", mode, "--ip", h2.ip, "--port", str(SERVER_PORT),
                                     "--time-limit", str(time_limit + 120), *server_args],
                        cpu=server_cpu, name=f"{name} server")
        server.wait_ready(timeout=60)
        client = Worker(h1, MODULE, ["client", "--mode", mode, "--ip", h1.ip, "--peer-ip", h2.ip,
                                     "--peer-port", str(SERVER_PORT), "--time-limit", str(time_limit),
                                     *client_args], cpu=client_cpu, on_progress=on_progress, name=f"{name} client")
        res = client.result(timeout=time_limit + 180)
        server_res = server.stop() or {}
    except BenchError as e:
        return inv.failed_series(name, label, e, params)
    finally:
        close_workers(client, server)
    samples, info = run_counts(res)
    info["preempted"] = (res.get("involuntary_switches") or 0) + (server_res.get("involuntary_switches") or 0)
    info["served"] = server_res.get("served")
    for side, r in (("client", res), ("server", server_res)):
        if r.get("lib"):
            info[f"{side}_lib"] = r["lib"]
    if "sizes" in res:
        info["slowdown"] = slowdown_table(samples, res["sizes"], res["base"])
        info["base_ns"] = res["base"]
        info["concurrency"] = res.get("concurrency")
    error = None
    if res.get("interrupted"):
        error = "interrupted"
    elif res.get("corrupt"):
        error = f"{res['corrupt']} responses differ from their request"
    s = inv.new_series(name, label, samples=samples, params=params, info=info, error=error,
                       keep_samples=keep_samples)
    if progress is not None and task is not None:
        progress.update(task, completed=len(samples))
    return s


def _register() -> None:
    from .afxdp import SERIES as AFXDP_SERIES, run_echo_series
    from .bed import own_testbed, parse_cpus, start_daemons
    from .registry import Benchmark, RunContext, register_benchmark

    floor_spec = AFXDP_SERIES[0]

    @register_benchmark
    class HomaBenchmark(Benchmark):
        name = "homa"
        help = "Homa RPC round trips by size vs kernel TCP and the AF_XDP floor; workloads W1-W5 (slowdown)"
        description = __doc__ or ""
        baseline = "tcp-block-64"
        references = {floor_spec.name: "F"}
        count = 5_000
        quick_count = 500
        warmup = 200
        quick_warmup = 50
        time_limit = 120.0
        quick_time_limit = 40.0
        extra_columns = (("lost", "lost"), ("preempted", "preempted"))

        def add_arguments(self, parser: argparse.ArgumentParser) -> None:
            parser.add_argument("--sizes", default=None,
                                help="message sizes in bytes, comma-separated (default "
                                     f"{','.join(str(s) for s in DEFAULT_SIZES)}; --quick "
                                     f"{','.join(str(s) for s in QUICK_SIZES)})")
            parser.add_argument("--workloads", default=",".join(WORKLOADS),
                                help="Homa paper workloads to run (default %(default)s; 'none': none)")
            parser.add_argument("--concurrency", type=int, default=8, help="workload RPCs outstanding (default 8)")
            parser.add_argument("--no-tcp", action="store_true", help="skip the kernel TCP series")
            parser.add_argument("--no-spin", action="store_true", help="skip the busy-poll series")
            parser.add_argument("--cpus", metavar="CLIENT,SERVER",
                                help="pin client and server to these CPUs (default: the first two; 'none')")
            parser.add_argument("--name", metavar="BED", help="test bed name (default: bench-<random>)")

        def _sizes(self, ctx: RunContext) -> list[int]:
            if ctx.args.sizes is None:
                return list(QUICK_SIZES if ctx.quick else DEFAULT_SIZES)
            try:
                sizes = [int(x) for x in ctx.args.sizes.split(",") if x.strip()]
            except ValueError:
                raise BenchError(f"--sizes {ctx.args.sizes!r}: comma-separated byte counts") from None
            if not sizes or any(not 1 <= s <= MAX_MESSAGE for s in sizes):
                raise BenchError(f"--sizes: between 1 and {MAX_MESSAGE} bytes")
            return sizes

        def _workloads(self, ctx: RunContext) -> list[str]:
            w = ctx.args.workloads.strip().lower()
            if w in ("", "none"):
                return []
            names = [x.strip() for x in w.split(",")]
            for n in names:
                if n not in WORKLOADS:
                    raise BenchError(f"--workloads: unknown {n!r}; choose from {', '.join(WORKLOADS)}")
            return names

        def params(self, ctx: RunContext) -> dict[str, Any]:
            cpus = parse_cpus(ctx.args.cpus)
            return {"sizes": self._sizes(ctx), "workloads": self._workloads(ctx),
                    "concurrency": ctx.args.concurrency, "response_bytes_in_workloads": RESPONSE,
                    "cpus": {"client": cpus[0], "server": cpus[1]} if cpus else None,
                    "testbed": {"hosts": 2, "rate_gbit": None}}

        def run(self, ctx: RunContext) -> None:
            a = ctx.args
            cpus = parse_cpus(a.cpus)
            sizes = self._sizes(ctx)
            workloads = self._workloads(ctx)
            inv = ctx.invocation
            common = dict(cpus=cpus, time_limit=ctx.time_limit, progress=ctx.progress,
                          keep_samples=ctx.keep_samples)
            with own_testbed(a.name) as bed:
                inv.params["testbed"]["name"] = bed.name
                # the floor and kernel TCP: no daemon on the hosts yet
                run_echo_series(bed, floor_spec, inv, count=ctx.count, warmup=ctx.warmup,
                                time_limit=ctx.time_limit, cpus=cpus, payload=64, progress=ctx.progress,
                                keep_samples=ctx.keep_samples)
                tcp_modes = [] if a.no_tcp else [("tcp-block", "tcp", "kernel TCP blocking, NODELAY")] + (
                    [] if a.no_spin or ctx.quick else [("tcp-spin", "tcp-spin", "kernel TCP spin, NODELAY")])

                def by_size(modes: list[tuple[str, str, str]]) -> None:
                    for prefix, mode, label in modes:
                        for size in sizes:
                            n = count_for(size, ctx.count)
                            _run_pair(bed, inv, f"{prefix}-{_size_name(size)}", f"{label}, {size} B", mode,
                                      client_args=["--size", str(size), "--count", str(n),
                                                   "--warmup", str(min(ctx.warmup, n))],
                                      server_args=[], count=n, params={"size": size}, **common)

                by_size(tcp_modes)
                start_daemons(bed)
                inv.params["testbed"]["daemons"] = True
                by_size(([] if a.no_spin else [("homa-spin", "homa-spin", "Homa busy-poll")]) + [
                    ("homa-block", "homa", "Homa blocking")])
                budget = 2_000_000 if ctx.quick else 60_000_000      # request bytes per workload
                for w in workloads:
                    mean = Workload(w).mean()
                    n = max(30, min(ctx.count, int(budget / max(mean, 1))))
                    _run_pair(bed, inv, w, f"{WORKLOAD_NAMES[w]}, Homa blocking, {a.concurrency} outstanding",
                              "homa", client_args=["--workload", w, "--concurrency", str(a.concurrency),
                                                   "--count", str(n), "--warmup", str(min(ctx.warmup, n // 5))],
                              server_args=["--reply", str(RESPONSE)], count=n,
                              params={"workload": w, "mean_request_bytes": round(mean)}, **common)

        def summary(self, inv: Invocation) -> list[str]:
            return summary_lines(inv)


def summary_lines(inv: Invocation) -> list[str]:
    from .report import fmt_ratio, fmt_us

    get = inv.measured

    lines = []
    tcp, floor = get("tcp-block-64"), get("afxdp-spin")
    for homa in (get("homa-spin-64"), get("homa-block-64")):
        if homa is None:
            continue
        if tcp is not None:
            p50, p99 = ratio(tcp, homa, "p50"), ratio(tcp, homa, "p99")
            lines.append(f"{homa.name}: kernel TCP blocking / Homa = p50 {fmt_ratio(p50)}x, p99 {fmt_ratio(p99)}x "
                         f"(target >= 5x: {'met' if min(p50, p99) >= 5 else 'not met'}); Homa p50 "
                         f"{fmt_us(homa.stat('p50'))} us, p99 {fmt_us(homa.stat('p99'))} us")
        if floor is not None:
            r = ratio(homa, floor, "p50")
            lines.append(f"{homa.name}: p50 {fmt_ratio(r)}x the bare AF_XDP floor "
                         f"({fmt_us(floor.stat('p50'))} us; target <= 1.5x: {'met' if r <= 1.5 else 'not met'})")
    for s in inv.series:
        sd = s.info.get("slowdown") if s.ok else None
        if sd:
            cells = "; ".join(f"{k} p50 {v['p50']} p99 {v['p99']} ({v['rpcs']})" for k, v in sd.items())
            lines.append(f"{s.name} slowdown by request size (RPCs): {cells}")
    return lines


def _lazy_register() -> None:
    try:
        _register()
    except ImportError:  # the worker process does not need the registry (and its rich tables)
        pass


if __name__ == "__main__":
    sys.exit(main())
else:
    _lazy_register()
