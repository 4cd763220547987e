"""Benchmarks: `etran bench NAME`.

  stats     LatencyRecorder and LatencySummary: ns samples, exact nearest-rank percentiles
  results   Invocation and Series (one JSON file per invocation), machine info, and
            ratio(), which refuses series of different invocations
  report    the rich table of an invocation, progress bars
  registry  Benchmark (base class), @register_benchmark, run_benchmark, the common options
  worker    worker processes inside test-bed hosts (READY / PROGRESS / RESULT lines)
  frames    raw Ethernet/IPv4/UDP frames for AF_XDP
  echo      the echo server and client (AF_XDP, kernel UDP, kernel TCP, etran UDP, C)
  cecho     the C echo as an echo worker: XDP program or daemon registration, then the C program
  native    the C tools in bench/c (xdp_echo.c), built with gcc and cached by content
  afxdp     `etran bench afxdp`: the round-trip floor; add_c_floor() for any benchmark
  cli       `etran bench ...`
"""

from .results import BenchError, CrossInvocationRatioError, Invocation, Series, ratio
from .stats import PERCENTILES, LatencyRecorder, LatencySummary, percentile

__all__ = [
    "PERCENTILES",
    "BenchError",
    "CrossInvocationRatioError",
    "Invocation",
    "LatencyRecorder",
    "LatencySummary",
    "Series",
    "percentile",
    "ratio",
]
