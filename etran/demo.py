"""`etran demo`: bring up a test bed, run traffic through it, print what was measured, tear it down.

The demo is a list of steps (STEPS) run in order against one fresh two-host test bed:

  afxdp-burst   frames of every size from 60 to 1514 bytes, h1 -> h2 through AF_XDP
                sockets on both hosts, checked byte for byte and in order
  afxdp-echo    the `etran bench afxdp` floor in quick mode: 64-byte round trips over
                bare AF_XDP, kernel UDP and kernel TCP, p50/p99/p999 and ratios to TCP

Later transports add their steps to STEPS (a `Step` with a name, a title and a function
from DemoContext to StepResult).  A failing step is reported and the others still run;
the test bed goes away at the end whatever happens (error, Ctrl-C, SIGTERM).  The whole
demo takes well under a minute.
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


def step_afxdp_echo(ctx: DemoContext) -> StepResult:
    """The round-trip floor (etran bench afxdp, quick counts) on the demo's bed."""
    from .bench.afxdp import BASELINE, SERIES, run_echo
    from .bench.bed import parse_cpus
    from .bench.report import COMPACT_BELOW, fmt_ratio, fmt_us, table

    inv = ctx.invocation
    inv.baseline = BASELINE
    count = ctx.args.count
    series = run_echo(ctx.bed, inv, SERIES, count=count, warmup=max(count // 10, 50), time_limit=20.0,
                      cpus=parse_cpus(None), progress=ctx.progress)
    ok = all(s.ok for s in series)
    parts = []
    ratios = inv.ratios()
    for s in series:
        if s.ok:
            parts.append(f"{s.name} {fmt_us(s.summary.p50)} us (x{fmt_ratio(ratios.get(s.name, {}).get('p50'))})")
        else:
            parts.append(f"{s.name}: {s.error}")
    return StepResult(ok, "p50: " + ", ".join(parts), {"series": [s.name for s in series], "count": count},
                      [table(inv, title=f"round trips, {count} each (64-byte echoes, h1 <-> h2)",
                             extra_columns=(("lost", "lost"), ("preempted", "preempted")),
                             compact=ctx.console.width < COMPACT_BELOW)])


STEPS: list[Step] = [
    Step("afxdp-burst", "AF_XDP frames h1 -> h2, byte for byte", step_afxdp_burst),
    Step("afxdp-echo", "round trips: AF_XDP vs kernel UDP/TCP", step_afxdp_echo),
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
    inv = Invocation(benchmark="demo", machine=machine_info(),
                     params={"steps": [s.name for s in steps], "count": args.count, "frames": args.frames,
                             "quick": args.quick})
    results: list[tuple[Step, StepResult, float]] = []
    started = time.monotonic()
    status = "failed"
    try:
        with sigterm_as_interrupt():
            con.print("[bold]etran demo[/bold]: a two-host test bed, traffic through AF_XDP, kernel UDP and TCP")
            t0 = time.monotonic()
            with own_testbed(args.name, prefix="demo") as bed:
                inv.params["testbed"] = {"name": bed.name, "hosts": 2, "rate_gbit": None}
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
