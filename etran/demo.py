"""`etran demo`: bring up a test bed, run Homa and TCP over etran beside kernel TCP, print one
comparison table measured in this run, tear the bed down.

The demo is a list of steps (STEPS) run in order against one fresh two-host test bed, all
measuring into one invocation (etran.bench.results), so every ratio compares series of this run:

  afxdp-burst   frames of every size from 60 to 1514 bytes, h1 -> h2 through AF_XDP
                sockets on both hosts, checked byte for byte and in order
  kernel        64-byte round trips over bare AF_XDP (the floor: Python, no transport),
                kernel UDP and kernel TCP (blocking, the baseline, and spinning)
                (etran.bench.afxdp's series; no daemon yet: bare AF_XDP needs the NIC)
  etran-udp     then an etran daemon on each host; etran UDP busy-poll
  homa          64-byte Homa RPCs over etran, busy-poll and blocking (etran.bench.homa's worker)
  tcp           64-byte request/response over etran TCP, busy-poll and blocking (etran.bench.tcp's)

At the end: the steps table and the comparison table (p50/p99, kernel TCP / this, this /
floor), and with --json the invocation with the table as `params["comparison"]`.  A failing
step is reported and the others still run; the test bed goes away at the end whatever
happens (error, Ctrl-C, SIGTERM).  About a minute (--quick: fewer round trips).
"""

from __future__ import annotations

import argparse
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import EtranError


@dataclass
class StepResult:
    """What a step measured: ok or not, a one-line summary for the steps table, key
    figures (`details`, also written to JSON) and extra rich renderables to print."""

    ok: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    renderables: list[Any] = field(default_factory=list)


@dataclass
class DemoContext:
    args: argparse.Namespace
    bed: Any
    console: Any
    progress: Any
    invocation: Any  # etran.bench.results.Invocation: measurements of this demo run, ratios within it
    quick: bool = True
    daemons: bool = False


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[DemoContext], StepResult]


# ---- steps ---------------------------------------------------------------------------------

BURST_PORT = 9100
BURST_FRAMES = 2_000
BURST_WINDOW = 512
BURST_TIME_LIMIT_S = 20.0
ECHO_COUNT = 2_000
QUICK_COUNT = 300
QUICK_FRAMES = 500


def burst_frames(h1: Any, h2: Any, count: int) -> list[bytes]:
    """`count` UDP frames h1 -> h2 whose sizes sweep 60..1514 bytes; payload = seq + pattern."""
    from .bench.frames import udp_frame

    out = []
    for seq in range(count):
        size = 60 + (seq * 37) % (1514 - 60 + 1)
        body = struct.pack("!Q", seq) + bytes((seq * 31 + i) & 0xFF for i in range(size - 42 - 8))
        out.append(udp_frame(h1.mac, h2.mac, h1.ip, h2.ip, BURST_PORT + 1, BURST_PORT, body, ident=seq))
    return out


def step_afxdp_burst(ctx: DemoContext) -> StepResult:
    """Send frames in batches from an AF_XDP socket on h1 to one on h2; every frame must
    arrive unchanged and in order.  The sender stays at most a window ahead; should a frame
    be lost anyway it goes back to the first missing one (counted as retransmitted)."""
    from .bench.frames import ETH_P_IP, IPPROTO_UDP
    from .xsk import XskProgram, XskSocket

    h1, h2 = ctx.bed.hosts[:2]
    total = ctx.args.frames
    frames = burst_frames(h1, h2, total)
    nbytes = sum(len(f) for f in frames)
    task = ctx.progress.add("AF_XDP burst h1 -> h2", total=total)
    with XskProgram(h2.ifname, netns=h2.netns) as prog:
        prog.set_filter(ethertype=ETH_P_IP, ip_proto=IPPROTO_UDP, dport=BURST_PORT)
        with XskSocket(h2.ifname, netns=h2.netns, tx_size=0) as rx, \
                XskSocket(h1.ifname, netns=h1.netns, rx_size=0) as tx:
            prog.add(rx)
            r = _burst_loop(rx, tx, frames, ctx.progress, task)
            tx.flush(timeout=2.0)
            stats = rx.statistics()
            mode = rx.mode
    expected, retransmitted, mismatched, elapsed = r
    ok = expected == total and mismatched == 0
    rate = expected / elapsed if elapsed > 0 else 0.0
    gbit = nbytes * 8 / elapsed / 1e9 if elapsed > 0 and ok else 0.0
    summary = (f"{expected:,}/{total:,} frames (60-1514 B, {nbytes / 1e6:.1f} MB) identical and in order, "
               f"{retransmitted} resent, {rate / 1000:.0f} kframes/s, {gbit:.2f} Gbit/s, {mode} mode")
    if mismatched:
        summary += f", {mismatched} DIFFERENT"
    return StepResult(ok, summary, {"frames": total, "received": expected, "bytes": nbytes,
                                    "retransmitted": retransmitted, "mismatched": mismatched,
                                    "elapsed_s": round(elapsed, 3), "frames_per_s": round(rate),
                                    "xsk_mode": mode, "rx_stats": stats._asdict()})


def _burst_loop(rx: Any, tx: Any, frames: list[bytes], progress: Any, task: Any) -> tuple[int, int, int, float]:
    total = len(frames)
    umem, rxb = rx.umem, rx.rx_batch
    expected = sent = retransmitted = mismatched = 0
    start = last_progress = time.monotonic()
    deadline = start + BURST_TIME_LIMIT_S
    while expected < total and time.monotonic() < deadline:
        if sent < total and sent - expected < BURST_WINDOW:
            sent += tx.send(frames[sent:min(total, sent + 64, expected + BURST_WINDOW)])
        n = rx.recv_batch()
        for a, ln in zip(rxb.addr[:n], rxb.len[:n]):
            seq = struct.unpack_from("!Q", umem.buf, a + 42)[0]
            if seq != expected:
                continue  # after a loss: wait for the resend of `expected`
            if umem.buf[a:a + ln] != frames[seq]:
                mismatched += 1
            expected += 1
            last_progress = time.monotonic()
        rx.release()
        tx.complete()
        if n:
            progress.update(task, completed=expected)
        elif sent > expected and time.monotonic() - last_progress > 0.2:
            retransmitted += sent - expected  # go back to the first missing frame
            sent = expected
            last_progress = time.monotonic()
    return expected, retransmitted, mismatched, time.monotonic() - start


def step_kernel(ctx: DemoContext) -> StepResult:
    """The bare AF_XDP floor and Python over the kernel (etran bench afxdp's series), before
    any daemon: bare AF_XDP needs the NIC to itself."""
    from .bench.afxdp import SERIES, run_echo

    series = run_echo(ctx.bed, ctx.invocation, SERIES, **_echo_kwargs(ctx))
    return _echo_result(ctx, series)


def step_etran_udp(ctx: DemoContext) -> StepResult:
    """etran UDP busy-poll (etran bench afxdp's series) through the daemons' data path."""
    from .bench.afxdp import ETRAN_UDP, run_echo_series

    _ensure_daemons(ctx)
    s = run_echo_series(ctx.bed, ETRAN_UDP[0], ctx.invocation, port_offset=len(ctx.invocation.series) + 8,
                        **_echo_kwargs(ctx))
    return _echo_result(ctx, [s])


def step_homa(ctx: DemoContext) -> StepResult:
    """64-byte Homa RPCs over etran, busy-poll and blocking (etran bench homa's worker)."""
    from .bench.bed import parse_cpus
    from .bench.homa import _run_pair

    _ensure_daemons(ctx)
    count = ctx.args.count
    out = []
    for name, mode, label in (("homa-spin", "homa-spin", "etran Homa busy-poll"),
                              ("homa-blocking", "homa", "etran Homa blocking")):
        out.append(_run_pair(ctx.bed, ctx.invocation, name, label, mode,
                             client_args=["--size", "64", "--count", str(count), "--warmup", str(_warmup(count))],
                             server_args=[], cpus=parse_cpus(None), time_limit=ECHO_TIME_LIMIT_S, count=count,
                             params={"size": 64}, progress=ctx.progress))
    return _echo_result(ctx, out)


def step_tcp(ctx: DemoContext) -> StepResult:
    """64-byte request/response over etran TCP, busy-poll and blocking (etran bench tcp's worker)."""
    from .bench.bed import parse_cpus
    from .bench.tcp import PORT, run_pair

    _ensure_daemons(ctx)
    count = ctx.args.count
    out = []
    for i, (name, mode, label) in enumerate((("etran-tcp-spin", "etran-spin", "etran TCP busy-poll"),
                                             ("etran-tcp-blocking", "etran", "etran TCP blocking"))):
        out.append(run_pair(ctx.bed, ctx.invocation, name, label, "echo-server", "echo-client", mode,
                            ["--payload", "64", "--count", str(count), "--warmup", str(_warmup(count))],
                            PORT + 10 + i, count=count, time_limit=ECHO_TIME_LIMIT_S, progress=ctx.progress,
                            cpus=parse_cpus(None)))
    return _echo_result(ctx, out)


ECHO_TIME_LIMIT_S = 20.0


def _warmup(count: int) -> int:
    return max(count // 10, 50)


def _echo_kwargs(ctx: DemoContext) -> dict[str, Any]:
    from .bench.bed import parse_cpus

    count = ctx.args.count
    return dict(count=count, warmup=_warmup(count), time_limit=ECHO_TIME_LIMIT_S, cpus=parse_cpus(None),
                progress=ctx.progress)


def _ensure_daemons(ctx: DemoContext) -> None:
    """An etran daemon on every host, once (from the first etran step on)."""
    from .bench.bed import start_daemons

    if not ctx.daemons:
        start_daemons(ctx.bed)
        ctx.daemons = True
        ctx.invocation.params["testbed"]["daemons"] = True


def _echo_result(ctx: DemoContext, series: list[Any]) -> StepResult:
    from .bench.report import fmt_us

    parts = [f"{s.name} p50 {fmt_us(s.summary.p50)} us, p99 {fmt_us(s.summary.p99)} us" if s.ok
             else f"{s.name}: {s.error}" for s in series]
    return StepResult(all(s.ok for s in series) and bool(series), "; ".join(parts),
                      {"series": [s.name for s in series], "count": ctx.args.count})


# The comparison table: (series, what it is) in the order shown; the first kernel TCP row is the baseline.
BASELINE = "tcp-blocking"
FLOOR = "afxdp-spin"


def comparison(inv: Any) -> dict[str, dict[str, Any]]:
    """{series: {p50_us, p99_us, tcp_over_p50, tcp_over_p99, over_floor_p50}} for every measured
    series of the demo's invocation; the ratios only within it (results.ratio refuses others)."""
    from .bench.results import ratio

    def get(name: str) -> Any:
        try:
            s = inv.get(name)
        except KeyError:
            return None
        return s if s.ok else None

    base, floor = get(BASELINE), get(FLOOR)
    out: dict[str, dict[str, Any]] = {}
    for s in inv.series:
        if not s.ok:
            out[s.name] = {"label": s.label, "error": s.error}
            continue
        row: dict[str, Any] = {"label": s.label, "n": s.summary.count, "p50_us": round(s.stat("p50") / 1000, 2),
                               "p99_us": round(s.stat("p99") / 1000, 2)}
        if base is not None:
            row["tcp_over_p50"] = round(ratio(base, s, "p50"), 2)
            row["tcp_over_p99"] = round(ratio(base, s, "p99"), 2)
        if floor is not None:
            row["over_floor_p50"] = round(ratio(s, floor, "p50"), 2)
        out[s.name] = row
    return out


def comparison_table(inv: Any, rows: dict[str, dict[str, Any]]) -> Any:
    from rich import box
    from rich.table import Table

    from .bench.report import fmt_ratio

    m = inv.machine or {}
    t = Table(box=box.SIMPLE_HEAD, title="etran demo: 64-byte round trips h1 <-> h2, measured in this run",
              caption=f"latencies in microseconds; kernel TCP = {BASELINE} (Python, blocking, TCP_NODELAY); "
                      f"floor = {FLOOR} (Python over bare AF_XDP, no transport); invocation {inv.id[:8]}; "
                      f"kernel {m.get('kernel')}, {m.get('cpus')} CPUs"
                      + (f", load {m['loadavg'][0]:.2f}" if m.get("loadavg") else ""))
    for col, just in (("transport", "left"), ("n", "right"), ("p50", "right"), ("p99", "right"),
                      ("kernel TCP / this, p50", "right"), ("kernel TCP / this, p99", "right"),
                      ("this / floor, p50", "right")):
        t.add_column(col, justify=just, no_wrap=just == "right")
    for name, r in rows.items():
        if "error" in r:
            t.add_row(f"{r['label']} [red]({r['error']})[/red]", "-", "-", "-", "-", "-", "-")
            continue
        bold = name.startswith(("homa", "etran-tcp"))
        label = f"[bold]{r['label']}[/bold]" if bold else r["label"]
        t.add_row(label, f"{r['n']:,}", f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}",
                  "1.00" if name == BASELINE else fmt_ratio(r.get("tcp_over_p50")),
                  "1.00" if name == BASELINE else fmt_ratio(r.get("tcp_over_p99")),
                  "1.00" if name == FLOOR else fmt_ratio(r.get("over_floor_p50")))
    return t


STEPS: list[Step] = [
    Step("afxdp-burst", "AF_XDP frames h1 -> h2, byte for byte", step_afxdp_burst),
    Step("kernel", "AF_XDP floor, kernel UDP and TCP", step_kernel),
    Step("etran-udp", "etran UDP", step_etran_udp),
    Step("homa", "etran Homa RPCs", step_homa),
    Step("tcp", "etran TCP", step_tcp),
]


# ---- running -------------------------------------------------------------------------------

def run_demo(args: argparse.Namespace) -> int:
    from rich import box
    from rich.table import Table

    from .bench.bed import own_testbed
    from .bench.registry import sigterm_as_interrupt
    from .bench.report import Progress, console
    from .bench.results import Invocation, machine_info

    if args.count is None:
        args.count = QUICK_COUNT if args.quick else ECHO_COUNT
    if args.frames is None:
        args.frames = QUICK_FRAMES if args.quick else BURST_FRAMES
    if args.count <= 0 or args.frames <= 0:
        raise EtranError("--count and --frames must be positive")
    steps = [s for s in STEPS if not args.step or s.name in args.step]
    unknown = set(args.step or ()) - {s.name for s in STEPS}
    if unknown:
        raise EtranError(f"unknown demo step(s) {', '.join(sorted(unknown))}; steps: {', '.join(s.name for s in STEPS)}")
    con = console()
    inv = Invocation(benchmark="demo", machine=machine_info(), baseline=BASELINE, references={FLOOR: "F"},
                     params={"steps": [s.name for s in steps], "count": args.count, "frames": args.frames,
                             "quick": args.quick})
    results: list[tuple[Step, StepResult, float]] = []
    started = time.monotonic()
    status = "failed"
    try:
        with sigterm_as_interrupt():
            con.print("[bold]etran demo[/bold]: a two-host test bed; Homa and TCP over etran beside kernel TCP "
                      "and the bare AF_XDP floor")
            t0 = time.monotonic()
            with own_testbed(args.name, prefix="demo") as bed:
                inv.params["testbed"] = {"name": bed.name, "hosts": 2, "rate_gbit": None, "daemons": False}
                con.print(f"test bed {bed.name!r} up in {time.monotonic() - t0:.1f} s: "
                          + ", ".join(f"{h.name} {h.ip} ({h.netns})" for h in bed.hosts))
                with Progress(enabled=not args.no_progress, con=None) as progress:
                    ctx = DemoContext(args=args, bed=bed, console=con, progress=progress, invocation=inv)
                    for step in steps:
                        t = time.monotonic()
                        results.append((step, _run_step(step, ctx), time.monotonic() - t))
            con.print(f"test bed {bed.name!r} removed" + ("" if not bed.exists() else " [red](NOT fully)[/red]"))
        status = "complete" if results and all(r.ok for _, r, _ in results) else "failed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if results:
            t = Table(box=box.SIMPLE_HEAD, title="etran demo",
                      caption=f"{time.monotonic() - started:.1f} s in all; invocation {inv.id[:8]}")
            t.add_column("step", no_wrap=True)
            t.add_column("result", no_wrap=True)
            t.add_column("time", justify="right", no_wrap=True)
            t.add_column("measured")
            for step, r, dt in results:
                t.add_row(step.title, "[green]ok[/green]" if r.ok else "[red]FAILED[/red]", f"{dt:.1f} s", r.summary)
            for _, r, _ in results:
                for renderable in r.renderables:
                    con.print(renderable)
            con.print(t)
        rows = comparison(inv) if inv.series else {}
        if rows:
            con.print(comparison_table(inv, rows))
            inv.params["comparison"] = rows
        inv.params["step_results"] = {s.name: {"ok": r.ok, "summary": r.summary, "seconds": round(dt, 3),
                                               **r.details} for s, r, dt in results}
        inv.finish(status)
        if args.json:
            con.print(f"wrote {inv.write(args.json)}")
    return 0 if status == "complete" else 1


def _run_step(step: Step, ctx: DemoContext) -> StepResult:
    try:
        return step.run(ctx)
    except Exception as e:  # report it, run the other steps; the bed still goes away
        if ctx.args.verbose:
            traceback.print_exc()
        return StepResult(False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                          {"error": str(e)})


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="bring up a test bed, run traffic, print results, tear it down",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=None,
                   help=f"round trips per echo series (default {ECHO_COUNT}, --quick {QUICK_COUNT})")
    p.add_argument("--frames", type=int, default=None,
                   help=f"frames in the AF_XDP burst (default {BURST_FRAMES}, --quick {QUICK_FRAMES})")
    p.add_argument("--quick", action="store_true", help="smaller counts (a few seconds in all)")
    p.add_argument("--step", action="append", metavar="NAME",
                   help="only this step (repeatable): " + ", ".join(s.name for s in STEPS))
    p.add_argument("--name", metavar="BED", help="test bed name (default: demo-<random>)")
    p.add_argument("--json", metavar="PATH", help="also write what was measured as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks of failing steps")
    p.set_defaults(func=run_demo)
