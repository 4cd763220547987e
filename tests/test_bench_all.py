"""`etran bench all`, the load generator, the Markdown report and the figures.

Unit tests: the load generator (closed and open loop) against an in-process fake server on
a fake clock, its helpers (quantiles, slowdown by size, merging clients), the report's
refusal to state a ratio across invocations, every kind of figure from synthetic data, and
the suite runner with benchmarks that pass and fail.  The kernel test runs
`etran bench all --quick` as a user would and checks its JSON, its figures and its time.
"""

from __future__ import annotations

import heapq
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etran.bench import CrossInvocationRatioError, Invocation
from etran.bench.load import (
    CallableEndpoint,
    LoadSpec,
    load_levels,
    merge,
    quantile_points,
    run_load,
    slowdown_by_size,
)

ROOT = Path(__file__).resolve().parents[1]
# The bound on `etran bench all --quick` (docs/BENCHMARKS.md states it too): every
# benchmark at its quick counts, each on its own bed, with the report and every figure.
QUICK_LIMIT_S = 300


# ---- the load generator -------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


class FakeServer:
    """One FIFO server with a fixed service time, on a fake clock; drops every `drop_every`-th
    request (0: none)."""

    def __init__(self, clock: Clock, service_ns: int, rtt_ns: int = 1000, drop_every: int = 0) -> None:
        self.clock, self.service, self.rtt, self.drop_every = clock, service_ns, rtt_ns, drop_every
        self.busy_until = 0
        self.queue: list[tuple[int, int]] = []
        self.received = 0
        self.conns: set[int] = set()

    def send(self, conn: int, tag: int, size: int, response_size: int) -> None:
        self.received += 1
        self.conns.add(conn)
        if self.drop_every and self.received % self.drop_every == 0:
            return
        start = max(self.clock.t, self.busy_until)
        self.busy_until = start + self.service
        heapq.heappush(self.queue, (self.busy_until + self.rtt, tag))

    def poll(self, timeout: float) -> list[int]:
        now = self.clock.t
        if self.queue and (timeout == 0 or self.queue[0][0] <= now + timeout * 1e9):
            self.clock.t = max(now, self.queue[0][0])
        else:
            self.clock.t = now + int(timeout * 1e9) + 1
        out = []
        while self.queue and self.queue[0][0] <= self.clock.t:
            out.append(heapq.heappop(self.queue)[1])
        return out


def test_closed_loop_keeps_n_outstanding():
    clock = Clock()
    srv = FakeServer(clock, service_ns=10_000)
    r = run_load(srv, LoadSpec(mode="closed", outstanding=4, conns=2, duration=1.0, warmup=0.1), clock=clock)
    # the server is the bottleneck: one request per 10 us
    assert r.throughput_rps == pytest.approx(100_000, rel=0.01)
    assert r.lost == 0 and r.unsent == 0 and r.measured_issued == len(r.samples)
    # four outstanding on one FIFO server: each waits for the three ahead of it
    assert sorted(r.samples)[len(r.samples) // 2] == 40_000
    assert srv.conns == {0, 1}


def test_open_loop_follows_offered_load_and_counts_overload():
    for rate in (20_000, 60_000):
        clock = Clock()
        r = run_load(FakeServer(clock, service_ns=10_000), LoadSpec(mode="open", rate=rate, duration=2.0, seed=3),
                     clock=clock)
        assert r.offered_rps == rate
        assert r.throughput_rps == pytest.approx(rate, rel=0.05)  # Poisson: close to the offered load
        assert r.lost == 0
        assert min(r.samples) >= 11_000  # service + rtt, never less
    # overload (1.5x the capacity): achieved throughput is the capacity; the backlog makes
    # latency (from the scheduled arrival) grow, and what never went out is counted
    clock = Clock()
    r = run_load(FakeServer(clock, service_ns=10_000),
                 LoadSpec(mode="open", rate=150_000, duration=1.0, max_outstanding=64, timeout=5.0), clock=clock)
    assert r.throughput_rps == pytest.approx(100_000, rel=0.02)
    assert r.backlog_max > 1000 and r.unsent > 0 and max(r.samples) > 100_000_000


def test_lost_requests_are_counted_and_the_closed_loop_goes_on():
    clock = Clock()
    r = run_load(FakeServer(clock, service_ns=10_000, drop_every=10),
                 LoadSpec(mode="closed", outstanding=2, duration=1.0, timeout=0.001), clock=clock)
    assert r.lost > 0 and len(r.samples) > 5 * r.lost  # about 1 in 10 dropped
    assert r.throughput_rps > 1_000  # each loss stalls one client for about a sweep interval, no more


def test_callable_endpoint_and_stop():
    calls = []
    ep = CallableEndpoint(lambda size, resp: calls.append((size, resp)))
    r = run_load(ep, LoadSpec(mode="closed", duration=0.05, warmup=0.0, size=100, response_size=20))
    assert calls and calls[0] == (100, 20) and r.completed > 0
    r = run_load(ep, LoadSpec(mode="closed", duration=10.0), stop=lambda: True)
    assert r.interrupted
    with pytest.raises(ValueError):
        LoadSpec(mode="open").validate()


def test_size_distribution_and_slowdown_by_size():
    clock = Clock()
    sizes = iter([100, 1000, 10_000] * 100_000)
    r = run_load(FakeServer(clock, service_ns=10_000), LoadSpec(mode="closed", duration=0.1, size=lambda rng: next(sizes),
                                                                 record_sizes=True), clock=clock)
    assert r.sizes is not None and len(r.sizes) == len(r.samples) and set(r.sizes) == {100, 1000, 10_000}
    rows = slowdown_by_size([10, 100, 1000, 5000], [2, 4, 8, 50], lambda s: 1 + s / 1000)
    assert [row["size"] for row in rows] == [16, 128, 1024, 8192]
    assert rows[-1]["p50"] == pytest.approx(50 / 6)
    rows = slowdown_by_size([10, 20], [5, 10], lambda s: 5.0, buckets=[100])
    assert rows == [{"size": 100, "count": 2, "p50": 1.0, "p99": 2.0}]


def test_quantiles_merge_and_levels():
    q = quantile_points(list(range(1, 10_001)))
    assert q["q"][0] == 0.0 and q["q"][-1] == 1.0 and q["ns"][0] == 1 and q["ns"][-1] == 10_000
    assert q["q"] == sorted(q["q"]) and q["ns"] == sorted(q["ns"]) and 150 <= len(q["q"]) <= 210
    i = q["q"].index(0.99)
    assert q["ns"][i] == 9_900  # nearest rank, exact
    m = merge([{"samples": [1, 2], "completed": 2, "throughput_rps": 10.0, "lost": 1, "offered_rps": 5},
               {"samples": [3], "completed": 1, "throughput_rps": 5.5, "lost": 0, "offered_rps": 5}])
    assert m["samples"] == [1, 2, 3] and m["throughput_rps"] == 15.5 and m["lost"] == 1 and m["offered_rps"] == 10
    assert load_levels(43_210, [0.1, 0.5, 1.0]) == [4300.0, 22000.0, 43000.0]


# ---- the report refuses cross-invocation ratios --------------------------------------------

def _inv(name: str, series: dict[str, list[int]], baseline: str | None = None) -> Invocation:
    inv = Invocation(benchmark=name, baseline=baseline)
    for s, samples in series.items():
        inv.new_series(s, s.upper(), samples=samples, info={"throughput_rps": 100})
    inv.finish("complete")
    return inv


def test_report_refuses_a_ratio_across_invocations():
    from etran.bench.markdown import info_ratio, invocation_section, ratio_cell, render
    from etran.bench.scale import throughput_ratio

    a = _inv("one", {"x": [10, 20, 30], "y": [20, 40, 60]}, baseline="y")
    b = _inv("two", {"z": [5, 10, 15]})
    assert ratio_cell(a.get("x"), a.get("y")) == "0.50"
    assert info_ratio(a.get("x"), a.get("y"), "throughput_rps") == 1.0
    for refuse in (lambda: ratio_cell(a.get("x"), b.get("z")), lambda: info_ratio(a.get("x"), b.get("z"), "throughput_rps"),
                   lambda: throughput_ratio(a.get("x"), b.get("z"))):
        with pytest.raises(CrossInvocationRatioError, match="did not run in the same invocation"):
            refuse()
    text = render([(a, {}), (b, {})])
    assert "| 0.50 |" in text and "**1.00**" in text
    # a series of another invocation smuggled in as the baseline: the generator refuses
    # to write the report rather than state the ratio
    a.series.append(b.get("z"))
    a.baseline = "z"
    with pytest.raises(CrossInvocationRatioError):
        invocation_section(a)
    with pytest.raises(CrossInvocationRatioError):
        render([(a, {})])


# ---- figures ----------------------------------------------------------------------------------

def _synthetic() -> Invocation:
    """Series carrying every kind of figure's data."""
    inv = Invocation(benchmark="synthetic", baseline="size-64", machine={"kernel": "k", "cpus": 2, "loadavg": [1, 1, 1]})
    base = list(range(10_000, 30_000, 10))
    for size in (64, 1024, 1472):
        inv.new_series(f"size-{size}", f"{size} B", samples=[x + size for x in base],
                       params={"size": size, "group": "etran UDP", "sweep": "size"})
    for n in (1, 10, 100):
        inv.new_series(f"clients-{n}", f"{n} clients", samples=[x * n for x in base[:500]],
                       params={"sweep": "clients", "clients": n, "group": "etran UDP"},
                       info={"throughput_rps": 1000 * n, "cpu_bound": n == 100})
    for n in (2, 4):
        inv.new_series(f"hosts-{n}", f"{n} hosts", samples=base[:300],
                       params={"sweep": "hosts", "hosts": n, "group": "etran UDP"}, info={"throughput_rps": 900 * n})
    for rate in (1000, 5000, 9000):
        inv.new_series(f"open-{rate}", f"open {rate}", samples=[x + rate for x in base[:400]],
                       params={"sweep": "load", "offered_rps": rate, "group": "etran UDP"},
                       info={"throughput_rps": min(rate, 6000), "quantiles": quantile_points(base)})
    for w in ("W1", "W3"):
        inv.new_series(w.lower(), w, samples=base[:100], params={"workload": w, "group": "Homa"},
                       info={"slowdown_by_size": [{"size": 1000, "p50": 1.2, "p99": 3.0, "count": 50},
                                                  {"size": 100_000, "p50": 2.0, "p99": 9.0, "count": 50}]})
    inv.new_series("w5", "W5 (a size-class table)", samples=base[:100], params={"workload": "w5", "mode": "homa"},
                   info={"slowdown": {"<=10K": {"rpcs": 3, "p50": 1.5, "p99": 4.0},
                                      "<=1M": {"rpcs": 9, "p50": 3.0, "p99": 8.0}, "all": {"p50": 2, "p99": 8}}})
    inv.new_series("dctcp", "DCTCP, 2 flows", samples=base[:100],
                   info={"queue_timeline": {"t_s": [0, 0.1, 0.2, 0.3], "bytes": [0, 30_000, 45_000, 20_000]},
                         "ecn_threshold_bytes": 30_000})
    inv.new_series("broken", "broken", error="did not run")
    inv.finish("complete")
    return inv


def test_every_kind_of_figure_from_synthetic_data(tmp_path):
    from etran.bench.plots import KINDS, cdf_points, expected_kinds, is_png, plot_all, slowdown_panels

    inv = _synthetic()
    assert set(expected_kinds(inv)) == set(KINDS)
    assert set(slowdown_panels(inv)) == {"W1", "W3", "W5"}
    assert slowdown_panels(inv)["W5"]["homa"][-1]["size"] == 1e6
    ps = plot_all([inv], tmp_path)
    kinds = {f.kind for f in ps.figures}
    assert kinds == set(KINDS)
    for f in ps.figures:
        assert f.path.exists() and is_png(f.path) and f.path.stat().st_size > 5_000, f.path
    names = {f.path.name for f in ps.figures}
    assert {"synthetic-scale-hosts.png", "synthetic-scale-clients.png", "synthetic-load.png",
            "synthetic-size.png", "synthetic-slowdown.png", "synthetic-queue.png", "synthetic-cdf-size.png"} <= names
    assert ps.skipped == []
    _, ys, source = cdf_points(inv.get("open-1000"))
    assert source == "quantiles" and ys[-1] == 1.0
    # only latencies: a CDF, and a note for each figure it cannot have
    plain = _inv("plain", {"a": [1, 2, 3], "b": [2, 3, 4]})
    ps = plot_all([plain], tmp_path / "plain")
    assert [f.kind for f in ps.figures] == ["cdf"]
    assert len(ps.skipped) == len(KINDS) - 1 and all(s.startswith("plain:") for s in ps.skipped)
    assert cdf_points(plain.get("a"))[2] == "percentiles"


def test_plot_command_regenerates_figures(tmp_path):
    inv = _synthetic()
    path = inv.write(tmp_path / "synthetic.json")
    out = subprocess.run([sys.executable, "-m", "etran", "bench", "plot", str(path), "--out", str(tmp_path / "p")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and len(list((tmp_path / "p").glob("*.png"))) >= 6


# ---- the suite runner, with benchmarks that pass and fail -------------------------------------

def test_suite_reports_a_failed_benchmark_and_runs_the_rest(tmp_path):
    import argparse

    from etran.bench import registry
    from etran.bench.suite import BEGIN_MARK, END_MARK, MANIFEST, REPORT, publish, run_suite

    @registry.register_benchmark
    class Good(registry.Benchmark):
        name = "unit-good"
        help = "passes"
        baseline = "slow"
        count, quick_count = 100, 10

        def run(self, ctx):
            ctx.invocation.new_series("fast", "fast", samples=range(1, ctx.count + 1))
            ctx.invocation.new_series("slow", "slow", samples=range(10, 10 * ctx.count + 1, 10))

    @registry.register_benchmark
    class Bad(registry.Benchmark):
        name = "unit-bad"
        help = "fails half-way"

        def run(self, ctx):
            ctx.invocation.new_series("one", "one", samples=[1, 2, 3])
            raise RuntimeError("the test bed caught fire")

    def runner(name, argv, out, timeout, to_terminal):
        p = argparse.ArgumentParser()
        cls = registry.get(name)
        registry.add_common_arguments(p, cls)
        cls().add_arguments(p)
        try:
            inv, _ = registry.run_benchmark(cls, p.parse_args(argv[1:] + ["--no-progress"]))
        except Exception:
            return 1, None
        return (0 if inv.status == "complete" else 1), None

    try:
        suite = run_suite(["unit-bad", "unit-good"], tmp_path, quick=True, runner=runner, command="test")
    finally:
        registry.BENCHMARKS.pop("unit-good", None)
        registry.BENCHMARKS.pop("unit-bad", None)
    assert suite.status == "failed"
    st = {o.name: o for o in suite.outcomes}
    assert st["unit-bad"].status == "failed" and "caught fire" in st["unit-bad"].error
    assert st["unit-good"].status == "complete" and st["unit-good"].series == 2
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert [b["status"] for b in manifest["benchmarks"]] == ["failed", "complete"]
    assert Invocation.load(tmp_path / "unit-good.json").params["quick"] is True
    report = (tmp_path / REPORT).read_text()
    assert "| unit-bad | failed: " in report and "caught fire" in report
    assert "## etran bench unit-good" in report and "| 0.10 |" in report  # fast / slow, same invocation
    assert "plots/unit-good-cdf.png" in report and (tmp_path / "plots" / "unit-good-cdf.png").exists()
    assert "- unit-good: size, slowdown, load, scale, queue" in report  # figures it has no data for
    # into a document: between its markers, figures and data (no raw samples) beside it
    doc = tmp_path / "docs" / "BENCH.md"
    doc.parent.mkdir()
    doc.write_text(f"# Benchmarks\n\nby hand\n\n{BEGIN_MARK}\nold report\n{END_MARK}\n\nalso by hand\n")
    assets = publish(tmp_path, doc)
    text = doc.read_text()
    assert "by hand" in text and "also by hand" in text and "old report" not in text
    assert "## The latest report" in text and "### etran bench unit-good" in text
    assert "](bench/unit-good-cdf.png)" in text and "](bench/unit-good.json)" in text
    assert (assets / "unit-good-cdf.png").exists() and "samples" not in (assets / "unit-good.json").read_text()


# ---- kernel: the real command --------------------------------------------------------------

def leftovers(prefix: str) -> list[str]:
    """Namespaces and BPF pins named with `prefix` (what a command left behind)."""
    found = [e for e in os.listdir("/run/netns") if e.startswith(prefix)] if os.path.isdir("/run/netns") else []
    if os.path.isdir("/sys/fs/bpf/etran"):
        found += [e for e in os.listdir("/sys/fs/bpf/etran") if e.startswith(prefix)]
    return found


def run_etran(args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """`python -m etran ARGS` as a user runs it, bounded: past `timeout` s it gets Ctrl-C (SIGINT
    to its process group: it stops and takes its bed down), then the test fails."""
    proc = subprocess.Popen([sys.executable, "-m", "etran", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=150)
        pytest.fail(f"{what} did not finish within {timeout:.0f} s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.kernel
@pytest.mark.timeout(QUICK_LIMIT_S + 360)
def test_bench_all_quick_end_to_end(tmp_path, unique_name):
    from etran.bench.plots import expected_kinds, is_png
    from etran.bench.registry import load_benchmarks
    from etran.bench.suite import MANIFEST, REPORT

    out = tmp_path / "all"
    t0 = time.monotonic()
    # a run past the bound still finishes (and says how long it took) unless it hangs
    p = run_etran(["bench", "all", "--quick", "--out", str(out), "--bed-prefix", unique_name], QUICK_LIMIT_S + 180,
                  "etran bench all --quick")
    elapsed = time.monotonic() - t0
    assert leftovers(unique_name) == []
    manifest = json.loads((out / MANIFEST).read_text())
    logs = {b["name"]: (out / b["log"]).read_text()[-3000:] for b in manifest["benchmarks"] if b.get("log")}
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:], logs)
    assert elapsed < QUICK_LIMIT_S, f"etran bench all --quick took {elapsed:.0f} s (the limit is 5 minutes)"
    names = sorted(load_benchmarks())
    assert [b["name"] for b in manifest["benchmarks"]] == names
    assert manifest["status"] == "complete" and manifest["quick"] is True
    report = (out / REPORT).read_text()
    figures = {f["file"] for f in manifest["figures"]}
    for b in manifest["benchmarks"]:
        assert b["status"] == "complete", b
        inv = Invocation.load(out / b["json"])  # valid JSON of the result schema
        assert inv.status == "complete" and inv.id == b["invocation_id"] and inv.params["quick"] is True
        # every series measured, or a settled outcome (a victim a flood starved: see isolation)
        assert inv.series and all(s.settled for s in inv.series), [(s.name, s.error) for s in inv.series if not s.settled]
        assert f"## etran bench {inv.benchmark}" in report
        for kind, suffixes in expected_kinds(inv).items():
            for suffix in suffixes:
                rel = f"plots/{inv.benchmark}-{kind}{suffix}.png"
                assert rel in figures, rel
                assert is_png(out / rel), rel
                assert f"]({rel})" in report
    # the figures the issue asks for: latency CDFs per transport, p50/p99 against size, W1-W5
    # slowdown, throughput against offered load, DCTCP queue over time (and the scale sweeps)
    assert {"plots/afxdp-cdf.png", "plots/homa-size.png", "plots/homa-slowdown.png", "plots/scale-load.png",
            "plots/dctcp-queue.png", "plots/isolation-cdf.png", "plots/scale-scale-hosts.png",
            "plots/scale-scale-clients.png"} <= figures, sorted(figures)
    assert any(f.startswith("plots/homa-cdf") for f in figures) and any(f.startswith("plots/tcp-cdf") for f in figures)
    iso = Invocation.load(out / "isolation.json")
    assert [s.name for s in iso.series] == ["alone", "flood", "flood-limited", "homa-alone", "homa-flood",
                                            "tcp-alone", "tcp-flood", "tcp-flood-limited"]
    for limited in ("flood-limited", "tcp-flood-limited"):
        assert iso.get(limited).info["hook_drops"] > 0  # the rate limit acted in the egress hook
    scale = Invocation.load(out / "scale.json")
    for group in ("etran UDP", "etran Homa"):
        sweep = [s for s in scale.series if s.params.get("group") == group]
        assert {s.params.get("hosts") for s in sweep if s.params.get("sweep") == "hosts"} == {2, 4, 8}, group
        assert {s.params.get("clients") for s in sweep if s.params.get("sweep") == "clients"} == {1, 10, 100, 1000}
    dctcp = Invocation.load(out / "dctcp.json")
    d = dctcp.get("dctcp")
    assert d.params["cc"] == "dctcp" and d.info["queue_timeline"]["t_s"] and 0 < d.info["jain"] <= 1
    assert d.info["ce_marked"] > 0 and d.info["median_queue_kb"] is not None and d.info["utilization"] > 0
    # `etran bench plot DIR` draws the same figures again from the JSON
    q = subprocess.run([sys.executable, "-m", "etran", "bench", "plot", str(out), "--out", str(tmp_path / "again")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert q.returncode == 0, q.stderr
    assert sorted(x.name for x in (tmp_path / "again").glob("*.png")) == sorted(Path(f).name for f in figures)
