"""Benchmarks by name, and what runs one invocation of any of them.

A benchmark is a subclass of `Benchmark` decorated with `@register_benchmark`, in a module
listed in BENCHMARK_MODULES (imported when the CLI is built).  It declares its name,
help, baseline series and default counts, adds its own options, and in `run(ctx)` adds
series to `ctx.invocation`.  Everything else is shared (etran.bench.cli builds
`etran bench NAME` from this):

  --quick              small counts (quick_count / quick_warmup), for tests and smoke runs
  --count, --warmup    override the counts
  --time-limit S       bound on each series
  --json PATH          where to write the result (default: results/NAME-TIME-ID.json)
  --out DIR            the folder for the default file name (default: results/)
  --samples            keep every raw sample in the JSON file, not only the summary
  --no-progress        no progress bars

`run_benchmark` creates the Invocation (id, time, machine), runs the benchmark with
progress bars, marks it complete/failed/interrupted, writes the JSON file (also after
Ctrl-C or an error, with the series measured so far), and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .report import Progress, console, print_invocation
from .results import DEFAULT_OUT_DIR, BenchError, Invocation, machine_info

# Modules whose import registers benchmarks; later benchmarks (homa, tcp, kv, c floor) add theirs here.
BENCHMARK_MODULES = [
    "etran.bench.afxdp",
    "etran.bench.dctcp",
    "etran.bench.homa",
    "etran.bench.isolation",
    "etran.bench.scale",
    "etran.bench.tcp",
]
RESERVED = frozenset(("list", "show", "all", "plot"))

BENCHMARKS: dict[str, type[Benchmark]] = {}


def register_benchmark(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make `cls` available as `etran bench <cls.name>`."""
    if not cls.name or cls.name in RESERVED:
        raise ValueError(f"bad benchmark name {cls.name!r}")
    if cls.name in BENCHMARKS and BENCHMARKS[cls.name] is not cls:
        raise ValueError(f"two benchmarks are named {cls.name!r}")
    BENCHMARKS[cls.name] = cls
    return cls


def load_benchmarks() -> dict[str, type[Benchmark]]:
    for module in BENCHMARK_MODULES:
        importlib.import_module(module)
    return BENCHMARKS


def get(name: str) -> type[Benchmark]:
    load_benchmarks()
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise BenchError(f"no benchmark named {name!r}; see `etran bench list`") from None


@dataclass
class RunContext:
    """What a benchmark's run() gets: its parsed options, the resolved counts, the
    invocation to add series to, and progress bars."""

    args: argparse.Namespace
    invocation: Invocation
    quick: bool
    count: int
    warmup: int
    time_limit: float
    keep_samples: bool = False
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))
    console: Any = None

    def log(self, message: str) -> None:
        if self.progress.enabled and self.progress._p is not None:
            self.progress.log(message)
        elif self.console is not None:
            self.console.print(message)


class Benchmark:
    """Base class of a benchmark (see the module docstring)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    description: ClassVar[str] = ""
    baseline: ClassVar[str | None] = None      # the series ratios are stated against
    references: ClassVar[dict[str, str]] = {}  # further series ratios are stated against: {name: column tag}
    count: ClassVar[int] = 20_000               # measured operations per series
    quick_count: ClassVar[int] = 2_000
    warmup: ClassVar[int] = 1_000
    quick_warmup: ClassVar[int] = 200
    time_limit: ClassVar[float] = 120.0         # seconds per series
    quick_time_limit: ClassVar[float] = 30.0
    extra_columns: ClassVar[tuple[tuple[str, str], ...]] = (("lost", "lost"),)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this benchmark's own options."""

    def params(self, ctx: RunContext) -> dict[str, Any]:
        """This benchmark's own parameters, recorded in the invocation (besides the counts)."""
        return {}

    def run(self, ctx: RunContext) -> None:
        raise NotImplementedError

    def summary(self, inv: Invocation) -> list[str]:
        """Lines printed under the table (e.g. ratios between particular series)."""
        return []


class TimedBenchmark(Benchmark):
    """A benchmark whose series run for a time (`--duration`), not a count of operations."""

    count = quick_count = 1           # time-based: see --duration
    warmup = quick_warmup = 0
    time_limit = 120.0
    quick_time_limit = 60.0
    duration: ClassVar[float] = 4.0
    quick_duration: ClassVar[float] = 1.0
    min_duration: ClassVar[float] = 0.0

    def add_duration_argument(self, parser: argparse.ArgumentParser, per: str = "series") -> None:
        parser.add_argument("--duration", type=float, metavar="S",
                            help=f"measured seconds per {per} (default {self.duration:g}, quick {self.quick_duration:g})")

    def duration_of(self, ctx: RunContext) -> float:
        d = ctx.args.duration if getattr(ctx.args, "duration", None) is not None else (
            self.quick_duration if ctx.quick else self.duration)
        if d <= self.min_duration:
            raise BenchError(f"--duration must be more than {self.min_duration:g} s")
        return d


def add_common_arguments(p: argparse.ArgumentParser, bench: type[Benchmark]) -> None:
    p.add_argument("--quick", action="store_true",
                   help=f"small counts ({bench.quick_count} measured, {bench.quick_warmup} warm-up; "
                        f"default {bench.count} and {bench.warmup})")
    p.add_argument("--count", type=int, metavar="N", help="measured operations per series")
    p.add_argument("--warmup", type=int, metavar="N", help="unmeasured operations before them")
    p.add_argument("--time-limit", type=float, metavar="S",
                   help=f"seconds per series at most (default {bench.time_limit:g}, quick {bench.quick_time_limit:g})")
    p.add_argument("--json", metavar="PATH", help="write the result here (default: OUT/NAME-TIME-ID.json)")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT_DIR, help=f"result folder (default {DEFAULT_OUT_DIR}/)")
    p.add_argument("--samples", action="store_true", help="keep every raw sample in the JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (like Ctrl-C), so clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_benchmark(bench_cls: type[Benchmark], args: argparse.Namespace, con: Any = None) -> tuple[Invocation, Path]:
    """One invocation: run, write JSON, print the table. Returns (invocation, JSON path);
    KeyboardInterrupt is re-raised after the partial result is written."""
    bench = bench_cls()
    quick = bool(getattr(args, "quick", False))
    count = args.count if getattr(args, "count", None) is not None else (bench.quick_count if quick else bench.count)
    warmup = args.warmup if getattr(args, "warmup", None) is not None else (
        bench.quick_warmup if quick else bench.warmup)
    time_limit = args.time_limit if getattr(args, "time_limit", None) is not None else (
        bench.quick_time_limit if quick else bench.time_limit)
    if count <= 0 or warmup < 0 or time_limit <= 0:
        raise BenchError("--count must be positive, --warmup not negative and --time-limit positive")
    con = con or console()
    inv = Invocation(benchmark=bench.name, baseline=bench.baseline, references=dict(bench.references),
                     machine=machine_info())
    ctx = RunContext(args=args, invocation=inv, quick=quick, count=count, warmup=warmup, time_limit=time_limit,
                     keep_samples=bool(getattr(args, "samples", False)), console=con)
    inv.params = {"quick": quick, "count": count, "warmup": warmup, "time_limit_s": time_limit}
    inv.params.update(bench.params(ctx))
    status = "failed"
    try:
        with sigterm_as_interrupt(), Progress(enabled=not getattr(args, "no_progress", False)) as progress:
            ctx.progress = progress
            bench.run(ctx)
        status = "complete" if inv.series and all(s.settled for s in inv.series) else "failed"
    except KeyboardInterrupt:
        status = "interrupted"
        inv.notes.append("interrupted (Ctrl-C or SIGTERM): the series measured so far only")
        raise
    except Exception as e:
        inv.notes.append(f"error: {e}")
        raise
    finally:
        inv.finish(status)
        path = inv.write(getattr(args, "json", None), getattr(args, "out", DEFAULT_OUT_DIR) or DEFAULT_OUT_DIR)
        if inv.series:
            print_invocation(inv, con, extra_columns=bench.extra_columns)
            with contextlib.suppress(Exception):  # a summary must never hide the result
                for line in bench.summary(inv):
                    con.print(line)
        con.print(f"{status}: wrote {path}")
    return inv, path
