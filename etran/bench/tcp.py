"""`etran bench tcp`: etran TCP against Python over kernel TCP and the bare AF_XDP floor.

In one run, between two hosts of its own test bed:

  latency   request/response round trips, 64 B and 4 KB: kernel TCP blocking (the baseline)
            and non-blocking spin (etran.bench.echo), bare AF_XDP busy-poll (the floor, no
            transport), etran TCP busy-poll and blocking (this module's worker)
  goodput   one flow, client -> server, kernel TCP and etran TCP (Mbit/s in `info`; the
            samples are the times of each 1 MB send)
  kv        requests per second of the RESP key-value store (`etran kv-server`, etran.tcp.kv)
            over etran TCP and over kernel TCP, the same server code; the client pipelines
            `--kv-depth` requests (SET/GET mix) per round trip; samples are per-request times

Targets (stated, not asserted, under the table): 64 B p50 and p99 at least 4x below kernel TCP
blocking; KV rps at least 2.5x kernel TCP; goodput at least half of kernel TCP.

The worker side (python -m etran.bench.tcp ROLE ...) is below.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

from .registry import Benchmark, RunContext, register_benchmark
from .results import BenchError, Invocation, Series
from .worker import ClientRun, Worker, emit, run_worker_main, stopped

MODULE = "etran.bench.tcp"
PORT = 9300


# ---- the worker program -------------------------------------------------------------------------
def _net(mode: str):
    if mode.startswith("etran"):
        if mode == "etran-spin":
            os.environ["ETRAN_POLL"] = "busy"
        import etran.tcp as net

        return net
    return socket


def echo_server(a: argparse.Namespace) -> dict[str, Any]:
    net = _net(a.mode)
    srv = net.create_server((a.ip if a.mode == "kernel" else "", a.port))
    emit("READY")
    served = {"bytes": 0}

    def loop() -> None:
        conn, _ = srv.accept()
        if a.mode == "kernel":
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = conn.recv(1 << 20)
            if not d:
                break
            served["bytes"] += len(d)
            if a.role == "echo-server":
                conn.sendall(d)
        if a.role == "sink-server":
            conn.sendall(str(served["bytes"]).encode())
        conn.close()

    stopped(loop)
    srv.close()
    return {"served_bytes": served["bytes"]}


def _connect(a: argparse.Namespace) -> Any:
    """The client's connection to the server (etran or kernel TCP by --mode), blocking, no Nagle."""
    s = _net(a.mode).create_connection((a.peer_ip, a.port), timeout=10)
    s.settimeout(None)
    if a.mode == "kernel":
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def echo_client(a: argparse.Namespace) -> dict[str, Any]:
    s = _connect(a)
    run = ClientRun(a.count, a.warmup, a.time_limit)
    payload = bytes((i * 7) & 0xFF for i in range(a.payload))
    emit("READY")

    def loop() -> None:
        pc = time.perf_counter_ns
        plen = len(payload)
        for i in range(run.total):
            t0 = pc()
            s.sendall(payload)
            got = 0
            while got < plen:
                d = s.recv(plen - got)
                if not d:
                    raise RuntimeError("the server closed the connection")
                got += len(d)
            if run.record(i, t0, pc()):
                return

    run.interrupted = stopped(loop)
    s.close()
    return run.result()


def goodput_client(a: argparse.Namespace) -> dict[str, Any]:
    net = _net(a.mode)
    s = net.create_connection((a.peer_ip, a.port), timeout=10)
    s.settimeout(120)
    chunk = bytes(range(256)) * 4096
    n = max(1, a.megabytes)
    run = ClientRun(n, 0, a.time_limit)
    emit("READY")
    t0 = time.perf_counter_ns()

    def loop() -> None:
        for i in range(n):
            c0 = time.perf_counter_ns()
            s.sendall(chunk)
            run.recorder.append(time.perf_counter_ns() - c0)
            run.progress.tick(i + 1)

    run.interrupted = stopped(loop)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        d = s.recv(100)
        if not d:
            break
        reply += d
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    s.close()
    received = int(reply or b"0")
    return run.result(goodput_mbps=round(received * 8 / elapsed / 1e6, 1), bytes=received, seconds=round(elapsed, 3))


def kv_server(a: argparse.Namespace) -> dict[str, Any]:
    if a.mode == "etran-spin":
        os.environ["ETRAN_POLL"] = "busy"
    from ..tcp.kv import serve

    stopped(lambda: serve(a.ip if a.mode == "kernel" else "", a.port, kernel=a.mode == "kernel",
                          max_requests=0, ready=lambda p: emit("READY")))
    return {}


def kv_client(a: argparse.Namespace) -> dict[str, Any]:
    from ..tcp.kv import resp_command

    s = _connect(a)
    depth = max(1, a.depth)
    value = b"v" * a.payload
    batches = []
    for b in range(64):
        reqs = []
        for j in range(depth):
            k = f"key{(b * depth + j) % 1000}".encode()
            reqs.append(resp_command("SET", k, value) if j % 4 == 0 else resp_command("GET", k))
        batches.append(b"".join(reqs))
    run = ClientRun(a.count, a.warmup, a.time_limit)
    emit("READY")
    stats = {"requests": 0, "t": 0.0}

    def replies_complete(buf: bytes) -> int:
        """How many complete replies (+OK, $-1, $n data) are in buf."""
        n, i = 0, 0
        while i < len(buf):
            end = buf.find(b"\r\n", i)
            if end < 0:
                break
            if buf[i:i + 1] == b"$" and buf[i + 1:end] != b"-1":
                size = int(buf[i + 1:end])
                if len(buf) < end + 2 + size + 2:
                    break
                i = end + 2 + size + 2
            else:
                i = end + 2
            n += 1
        return n

    def loop() -> None:
        pc = time.perf_counter_ns
        t_start = pc()
        total = 0
        for i in range(run.total):
            t0 = pc()
            s.sendall(batches[i % 64])
            buf = b""
            while replies_complete(buf) < depth:
                d = s.recv(1 << 16)
                if not d:
                    raise RuntimeError("the server closed the connection")
                buf += d
            t1 = pc()
            if i >= run.warmup:
                if i == run.warmup:
                    t_start = t0
                run.recorder.append((t1 - t0) // depth)
                run.progress.tick(i - run.warmup + 1)
                total += depth
            if t1 > run.deadline_ns:
                run.truncated = i + 1 < run.total
                break
        stats["requests"] = total
        stats["t"] = (pc() - t_start) / 1e9

    run.interrupted = stopped(loop)
    s.close()
    rps = stats["requests"] / stats["t"] if stats["t"] else 0.0
    return run.result(rps=round(rps), depth=depth)


ROLES = {"echo-server": echo_server, "sink-server": echo_server, "echo-client": echo_client,
         "goodput-client": goodput_client, "kv-server": kv_server, "kv-client": kv_client}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m etran.bench.tcp")
    p.add_argument("role", choices=sorted(ROLES))
    p.add_argument("--mode", default="etran", choices=("etran", "etran-spin", "kernel"))
    p.add_argument("--ip", default="")
    p.add_argument("--peer-ip", default="")
    p.add_argument("--port", type=int, default=PORT)
    p.add_argument("--payload", type=int, default=64)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--megabytes", type=int, default=100)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--time-limit", type=float, default=60.0)
    p.add_argument("--cpu", type=int)
    a = p.parse_args(argv)
    return run_worker_main(lambda: ROLES[a.role](a), a.cpu, mode=a.mode)


# ---- the benchmark ---------------------------------------------------------------------------------
def _pair(bed: Any, inv: Invocation, name: str, label: str, server_role: str, client_role: str, mode: str,
          args: list[str], port: int, ctx: RunContext, cpus: tuple[int, int] | None, server_mode: str | None = None,
          extra_info: tuple[str, ...] = ()) -> Series:
    return run_pair(bed, inv, name, label, server_role, client_role, mode, args, port, count=ctx.count,
                    time_limit=ctx.time_limit, progress=ctx.progress, keep_samples=ctx.keep_samples, cpus=cpus,
                    server_mode=server_mode, extra_info=extra_info)


def run_pair(bed: Any, inv: Invocation, name: str, label: str, server_role: str, client_role: str, mode: str,
             args: list[str], port: int, *, count: int, time_limit: float, progress: Any = None,
             keep_samples: bool = False, cpus: tuple[int, int] | None = None, server_mode: str | None = None,
             extra_info: tuple[str, ...] = ()) -> Series:
    """A server (SERVER_ROLE) on h2 and a client (CLIENT_ROLE) on h1 of this module's worker;
    one series from the client's RESULT (also `etran demo`'s etran TCP rows)."""
    h1, h2 = bed.hosts[:2]
    params = {"mode": mode, "server": server_role, "client": client_role, "args": args}
    client_cpu, server_cpu = cpus if cpus else (None, None)
    task = progress.add(label, total=count) if progress is not None else None

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=done, total=total)

    server = client = None
    try:
        server = Worker(h2, MODULE, [server_role, "--mode", server_mode or mode, "--ip", h2.ip, "--port", str(port),
                                     *args], cpu=server_cpu, name=f"{name} server")
        server.wait_ready(timeout=60)
        client = Worker(h1, MODULE, [client_role, "--mode", mode, "--peer-ip", h2.ip, "--port", str(port),
                                     "--time-limit", str(time_limit), *args], cpu=client_cpu,
                        on_progress=on_progress, name=f"{name} client")
        res = client.result(timeout=time_limit + 90)
    except BenchError as e:
        return inv.failed_series(name, label, e, params)
    finally:
        for w in (client, server):
            if w is not None:
                try:
                    w.stop(timeout=5)
                except Exception:  # noqa: BLE001 (never let one failure stop the loop)
                    pass
                w.close()
    samples = res.pop("samples", [])
    info = {k: res.get(k) for k in ("measured", "truncated", "elapsed_s", *extra_info)}
    return inv.new_series(name, label, samples=samples, params=params, info=info, keep_samples=keep_samples)


@register_benchmark
class TcpBenchmark(Benchmark):
    name = "tcp"
    help = "etran TCP vs Python over kernel TCP and the bare AF_XDP floor: latency, goodput, KV rps"
    description = __doc__ or ""
    baseline = "tcp-blocking"
    references = {"afxdp-spin": "F"}
    count = 20_000
    quick_count = 500
    warmup = 1_000
    quick_warmup = 100
    time_limit = 60.0
    quick_time_limit = 30.0
    extra_columns = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--megabytes", type=int, default=200, help="goodput transfer size (default 200)")
        parser.add_argument("--kv-depth", type=int, default=8, help="pipelined KV requests per round trip")
        parser.add_argument("--cpus", default=None, help="CLIENT,SERVER cpus or 'none' (default: pinned apart)")
        parser.add_argument("--skip", default="", help="comma-separated parts to skip: latency,goodput,kv,floor")

    def params(self, ctx: RunContext) -> dict[str, Any]:
        a = ctx.args
        return {"megabytes": a.megabytes, "kv_depth": a.kv_depth}

    def run(self, ctx: RunContext) -> None:
        from .afxdp import SERIES, EchoSeries, run_echo_series
        from .bed import own_testbed, parse_cpus, start_daemons

        a = ctx.args
        skip = set(filter(None, a.skip.split(",")))
        cpus = parse_cpus(a.cpus)
        inv = ctx.invocation
        mb = min(a.megabytes, 10) if ctx.quick else a.megabytes
        common = dict(count=ctx.count, warmup=ctx.warmup, time_limit=ctx.time_limit, cpus=cpus,
                      keep_samples=ctx.keep_samples, progress=ctx.progress)
        with own_testbed(hosts=2) as bed:
            # the kernel and the bare floor first: no daemon may own the NIC for bare AF_XDP
            if "latency" not in skip:
                k_blocking, k_spin = SERIES[2], SERIES[3]
                run_echo_series(bed, k_blocking, inv, port_offset=0, **common)
                run_echo_series(bed, k_spin, inv, port_offset=1, **common)
                if "floor" not in skip:
                    run_echo_series(bed, SERIES[0], inv, port_offset=2, **common)
                if not ctx.quick:  # --quick: 64-byte latency only
                    run_echo_series(bed, EchoSeries("tcp-blocking-4k", "kernel TCP blocking, 4 KB", "tcp"), inv,
                                    port_offset=3, payload=4096, **common)
            if "goodput" not in skip:
                _pair(bed, inv, "goodput-kernel", "goodput, kernel TCP", "sink-server", "goodput-client", "kernel",
                      ["--megabytes", str(mb)], PORT + 1, ctx, cpus, extra_info=("goodput_mbps", "seconds"))
            if "kv" not in skip:
                _pair(bed, inv, "kv-kernel", "KV server over kernel TCP", "kv-server", "kv-client", "kernel",
                      ["--depth", str(a.kv_depth), "--count", str(ctx.count), "--warmup", str(ctx.warmup)],
                      PORT + 2, ctx, cpus, extra_info=("rps", "depth"))
            start_daemons(bed)
            port = PORT + 10
            if "latency" not in skip:
                for payload, suffix in ((64, ""),) + (() if ctx.quick else ((4096, "-4k"),)):
                    for mode, label in (("etran-spin", "etran TCP busy-poll"), ("etran", "etran TCP blocking")):
                        name = ("etran-tcp-spin" if mode == "etran-spin" else "etran-tcp-blocking") + suffix
                        _pair(bed, inv, name, f"{label}{', 4 KB' if suffix else ''}", "echo-server", "echo-client",
                              mode, ["--payload", str(payload), "--count", str(ctx.count), "--warmup", str(ctx.warmup)],
                              port, ctx, cpus)
                        port += 1
            if "goodput" not in skip:
                _pair(bed, inv, "goodput-etran", "goodput, etran TCP", "sink-server", "goodput-client", "etran",
                      ["--megabytes", str(mb)], port, ctx, cpus, extra_info=("goodput_mbps", "seconds"))
                port += 1
            if "kv" not in skip:
                _pair(bed, inv, "kv-etran", "KV server over etran TCP (busy-poll)", "kv-server", "kv-client",
                      "etran-spin", ["--depth", str(a.kv_depth), "--count", str(ctx.count), "--warmup",
                                     str(ctx.warmup)], port, ctx, cpus, extra_info=("rps", "depth"))

    def summary(self, inv: Invocation) -> list[str]:
        by = {s.name: s for s in inv.series}
        out = []

        def p(name: str, q: str) -> float | None:
            s = by.get(name)
            if s is None or s.summary is None:
                return None
            return getattr(s.summary, q, None)

        for payload, suffix in (("64 B", ""), ("4 KB", "-4k")):
            base = "tcp-blocking" + suffix
            for e in ("etran-tcp-spin", "etran-tcp-blocking"):
                for q in ("p50", "p99"):
                    b, v = p(base, q), p(e + suffix, q)
                    if b and v:
                        out.append(f"{payload} {q}: {e}{suffix} {v / 1000:.1f} us vs kernel TCP blocking "
                                   f"{b / 1000:.1f} us: {b / v:.2f}x lower" + (" (target 4x)" if not suffix else ""))
        g = {n: (by[n].info or {}).get("goodput_mbps") for n in ("goodput-kernel", "goodput-etran") if n in by}
        if g.get("goodput-kernel") and g.get("goodput-etran"):
            out.append(f"goodput: etran {g['goodput-etran']} Mbit/s vs kernel {g['goodput-kernel']} Mbit/s: "
                       f"{g['goodput-etran'] / g['goodput-kernel']:.2f}x (target >= 0.5x)")
        k = {n: (by[n].info or {}).get("rps") for n in ("kv-kernel", "kv-etran") if n in by}
        if k.get("kv-kernel") and k.get("kv-etran"):
            out.append(f"KV: etran {k['kv-etran']} rps vs kernel {k['kv-kernel']} rps: "
                       f"{k['kv-etran'] / k['kv-kernel']:.2f}x (target 2.5x)")
        return out


if __name__ == "__main__":
    sys.exit(main())
