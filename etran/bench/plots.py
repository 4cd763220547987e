"""Figures (PNG, matplotlib's Agg backend) from benchmark result files: `etran bench plot`.

Each kind of figure reads what it needs from the series of one invocation (one JSON file),
so any benchmark gets a figure by recording these fields; an invocation without them gets
no such figure, and the plotter says why (`PlotSet.skipped`).  Data conventions:

  cdf       every measured series: the raw samples if the file kept them (`--samples`),
            else `info["quantiles"]` ({"q": [...], "ns": [...]}: see load.quantile_points),
            else the summary's percentiles (a coarse step, marked "percentiles only").
            One figure per invocation, or per `params["sweep"]` when series carry one (per
            `params["mode"]` when there are more than 14 series).
A line is a group: `params["group"]`, else "endpoint", "transport" or "mode".
  size      p50 and p99 against message size: series with `params["size"]` (bytes); a line
            per (`params["sweep"]`, `params["group"]`) with two sizes or more.
  slowdown  slowdown by message size for the W1-W5 workloads: series with
            `params["workload"]` ("W1".."W5") and `info["slowdown_by_size"]`
            ([{"size", "p50", "p99", "count"}], see load.slowdown_by_size) or a size-class
            table `info["slowdown"]` ({"<=1.4K": {"p50", "p99"}, ...}, as etran.bench.homa
            writes); a panel per workload, a line per group (the transport).
  load      throughput against offered load: series with `params["offered_rps"]` and
            `info["throughput_rps"]`; a line per group with two offered loads or more; a
            second panel with p50/p99 against offered load.
  scale     throughput and latency against hosts or clients: series with
            `params["sweep"]` "hosts" or "clients", `params[sweep]` the number, and
            `info["throughput_rps"]`; CPU-bound points (`info["cpu_bound"]`) are hollow.
  queue     queue occupancy over time: series with `info["queue_timeline"]`
            ({"t_s": [...], "bytes": [...]}; optional `info["ecn_threshold_bytes"]`).

Files: OUT/<benchmark>-<kind>[-<sweep>].png (with -<invocation id> when several
invocations of one benchmark are plotted together).
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import BenchError, Invocation, Series

KINDS = ("cdf", "size", "slowdown", "load", "scale", "queue")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_LINES = 14


@dataclass
class Figure:
    kind: str
    path: Path
    benchmark: str
    invocation_id: str
    title: str


@dataclass
class PlotSet:
    figures: list[Figure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def by_benchmark(self, name: str) -> list[Figure]:
        return [f for f in self.figures if f.benchmark == name]


# ---- data (pure: no matplotlib) ----------------------------------------------------------------

def cdf_points(s: Series) -> tuple[list[float], list[float], str]:
    """(latencies in us, cumulative fractions, source) for a measured series; source is
    "samples", "quantiles" or "percentiles"."""
    if s.samples:
        xs = sorted(s.samples)
        n = len(xs)
        step = max(1, n // 2000)  # at most ~2,000 points, always the tail exactly
        idx = list(range(0, n, step))
        tail = max(0, n - 200)
        idx = sorted(set(idx) | set(range(tail, n)))
        return [xs[i] / 1000 for i in idx], [(i + 1) / n for i in idx], "samples"
    q = s.info.get("quantiles") if isinstance(s.info, dict) else None
    if q and q.get("q") and len(q["q"]) == len(q.get("ns") or []):
        return [v / 1000 for v in q["ns"]], [float(f) for f in q["q"]], "quantiles"
    if s.summary is None:
        return [], [], "none"
    m = s.summary
    pts = [(m.min, 0.0), (m.p50, 0.5), (m.p90, 0.9), (m.p99, 0.99), (m.p999, 0.999), (m.max, 1.0)]
    return [p[0] / 1000 for p in pts], [p[1] for p in pts], "percentiles"


def _group(s: Series) -> str:
    """The line a series belongs to: params group, endpoint, transport or mode (the first there)."""
    for key in ("group", "endpoint", "transport", "mode"):
        if s.params.get(key):
            return str(s.params[key])
    return ""


def _size_bound(label: str) -> float | None:
    """'<=1.4K' -> 1400, '<=1M' -> 1e6, '<=512' -> 512 (size-class labels); None if not one."""
    t = label.strip().lstrip("<=").strip().upper().rstrip("B")
    mult = 1.0
    if t.endswith("K"):
        t, mult = t[:-1], 1e3
    elif t.endswith("M"):
        t, mult = t[:-1], 1e6
    try:
        return float(t) * mult
    except ValueError:
        return None


def _slowdown_rows(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Slowdown by size from info["slowdown_by_size"] ([{size, p50, p99, count}]) or from a
    size-class table info["slowdown"] ({"<=1.4K": {"p50", "p99", ...}, ...}; "all" ignored)."""
    rows = info.get("slowdown_by_size")
    if isinstance(rows, list) and rows:
        return sorted((r for r in rows if isinstance(r, dict) and "size" in r), key=lambda r: r["size"])
    table = info.get("slowdown")
    out = []
    if isinstance(table, dict):
        for label, row in table.items():
            bound = _size_bound(str(label))
            if bound is not None and isinstance(row, dict) and "p50" in row and "p99" in row:
                out.append({"size": bound, "p50": row["p50"], "p99": row["p99"],
                            "count": row.get("count", row.get("rpcs"))})
    return sorted(out, key=lambda r: r["size"])


def size_lines(inv: Invocation) -> dict[str, list[tuple[float, float, float]]]:
    """{line name: [(size, p50 us, p99 us)]} for groups with at least two sizes."""
    groups: dict[str, dict[float, Series]] = defaultdict(dict)
    for s in inv.series:
        if s.ok and isinstance(s.params.get("size"), (int, float)) and not s.params.get("workload"):
            key = " / ".join(x for x in (_group(s), str(s.params.get("sweep") or "")) if x) or inv.benchmark
            groups[key].setdefault(float(s.params["size"]), s)
    out = {}
    for key, by in groups.items():
        if len(by) >= 2:
            out[key] = [(size, by[size].stat("p50") / 1000, by[size].stat("p99") / 1000) for size in sorted(by)]
    # a line per group only where sizes vary; drop lines that are one sweep at one size
    return out


def slowdown_panels(inv: Invocation) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{workload: {group: slowdown_by_size rows}}."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for s in inv.series:
        wl = s.params.get("workload")
        rows = _slowdown_rows(s.info) if s.ok and wl else []
        if rows:
            out[str(wl).upper()][_group(s) or s.name] = rows
    return dict(sorted(out.items()))


def load_lines(inv: Invocation) -> dict[str, list[tuple[float, float, float, float]]]:
    """{group: [(offered/s, achieved/s, p50 us, p99 us)]} for groups with two offered loads or more."""
    groups: dict[str, dict[float, Series]] = defaultdict(dict)
    for s in inv.series:
        if s.ok and isinstance(s.params.get("offered_rps"), (int, float)) and s.info.get("throughput_rps") is not None:
            groups[_group(s) or inv.benchmark].setdefault(float(s.params["offered_rps"]), s)
    return {g: [(o, float(by[o].info["throughput_rps"]), by[o].stat("p50") / 1000, by[o].stat("p99") / 1000)
                for o in sorted(by)] for g, by in groups.items() if len(by) >= 2}


def scale_lines(inv: Invocation, sweep: str) -> dict[str, list[tuple[float, float, float, float, bool]]]:
    """{group: [(n, throughput/s, p50 us, p99 us, cpu bound)]} of a hosts/clients sweep."""
    groups: dict[str, dict[float, Series]] = defaultdict(dict)
    for s in inv.series:
        n = s.params.get(sweep)
        if s.ok and s.params.get("sweep") == sweep and isinstance(n, (int, float)) \
                and s.info.get("throughput_rps") is not None:
            groups[_group(s) or inv.benchmark].setdefault(float(n), s)
    return {g: [(n, float(by[n].info["throughput_rps"]), by[n].stat("p50") / 1000, by[n].stat("p99") / 1000,
                 bool(by[n].info.get("cpu_bound"))) for n in sorted(by)] for g, by in groups.items() if len(by) >= 2}


def queue_lines(inv: Invocation) -> dict[str, tuple[list[float], list[float], float | None]]:
    out = {}
    for s in inv.series:
        tl = s.info.get("queue_timeline") if isinstance(s.info, dict) else None
        if tl and tl.get("t_s") and len(tl["t_s"]) == len(tl.get("bytes") or []):
            out[s.label] = ([float(t) for t in tl["t_s"]], [float(b) / 1000 for b in tl["bytes"]],
                            s.info.get("ecn_threshold_bytes"))
    return out


def cdf_groups(inv: Invocation) -> dict[str, list[Series]]:
    """{suffix: series} of the CDF figures: one per sweep when series carry one; one per mode
    when there are too many series for one figure; else one."""
    ok = [s for s in inv.series if s.ok]
    for key in ("sweep", "mode"):
        if (key == "sweep" or len(ok) > MAX_LINES) and sum(1 for s in ok if s.params.get(key)) > len(ok) // 2:
            groups: dict[str, list[Series]] = defaultdict(list)
            for s in ok:
                groups[str(s.params.get(key) or "other")].append(s)
            return dict(groups)
    return {"": ok} if ok else {}


def expected_kinds(inv: Invocation) -> dict[str, list[str]]:
    """{kind: [file suffixes]} of the figures this invocation's data calls for."""
    out: dict[str, list[str]] = {}
    groups = cdf_groups(inv)
    if groups:
        out["cdf"] = [f"-{k}" if k else "" for k in groups]
    if size_lines(inv):
        out["size"] = [""]
    if slowdown_panels(inv):
        out["slowdown"] = [""]
    if load_lines(inv):
        out["load"] = [""]
    sc = [f"-{sw}" for sw in ("hosts", "clients") if scale_lines(inv, sw)]
    if sc:
        out["scale"] = sc
    if queue_lines(inv):
        out["queue"] = [""]
    return out


# ---- drawing -----------------------------------------------------------------------------------

def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (8.0, 4.8)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=size, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))  # room for the footer line
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _human_bytes(v: float, _pos: Any = None) -> str:
    for unit, div in (("M", 1e6), ("K", 1e3)):
        if v >= div:
            x = v / div
            return f"{x:g}{unit}"
    return f"{v:g}"


def _tidy_log(ax: Any, plain_y: bool = False, size_x: bool = False) -> None:
    """Log axes that read well: no minor tick labels (they collide); with `plain_y`, y ticks at
    1, 2, 5 x 10^k as plain numbers; with `size_x`, x ticks at 1, 2, 5 x 10^k as 64, 1K, 1M."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

    for axis, log in ((ax.xaxis, ax.get_xscale() == "log"), (ax.yaxis, ax.get_yscale() == "log")):
        if log:
            axis.set_minor_formatter(NullFormatter())
    def subs(lo: float, hi: float) -> tuple[float, ...]:  # 1-2-5 over a narrow range, decades over a wide one
        return (1.0, 2.0, 5.0) if lo > 0 and hi / lo < 300 else (1.0,)

    if plain_y and ax.get_yscale() == "log":
        f = ScalarFormatter()
        f.set_scientific(False)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs(*ax.get_ylim())))
        ax.yaxis.set_major_formatter(f)
    if size_x and ax.get_xscale() == "log":
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs(*ax.get_xlim())))
        ax.xaxis.set_major_formatter(FuncFormatter(_human_bytes))


def _footer(fig: Any, inv: Invocation) -> None:
    m = inv.machine or {}
    load = m.get("loadavg")
    text = (f"etran bench {inv.benchmark}, invocation {inv.id[:8]}, {inv.started[:19].replace('T', ' ')} UTC; "
            f"kernel {m.get('kernel')}, {m.get('cpus')} CPUs" + (f", load {load[0]:.2f}" if load else ""))
    fig.text(0.01, 0.005, text, fontsize=6.5, color="0.4", ha="left", va="bottom")


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def plot_cdf(inv: Invocation, series: Sequence[Series], path: Path, title: str) -> None:
    fig, axes = _figure()
    ax = axes[0][0]
    shown = list(series)[:MAX_LINES]
    for s in shown:
        xs, ys, source = cdf_points(s)
        if not xs:
            continue
        label = s.label + (" (percentiles only)" if source == "percentiles" else "")
        ax.step(xs, ys, where="post", label=label, linewidth=1.3)
    ax.set_xscale("log")
    ax.set_xlabel("round-trip latency (us, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.005)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    _tidy_log(ax)
    if len(series) > len(shown):
        ax.text(0.01, 0.98, f"first {len(shown)} of {len(series)} series", transform=ax.transAxes, fontsize=7,
                va="top")
    _footer(fig, inv)
    _save(fig, path)


def plot_size(inv: Invocation, lines: dict[str, list[tuple[float, float, float]]], path: Path, title: str) -> None:
    fig, axes = _figure()
    ax = axes[0][0]
    for k, (name, pts) in enumerate(sorted(lines.items())):
        color = f"C{k % 10}"
        sizes = [p[0] for p in pts]
        ax.plot(sizes, [p[1] for p in pts], "o-", color=color, label=f"{name} p50")
        ax.plot(sizes, [p[2] for p in pts], "s--", color=color, label=f"{name} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("message size (bytes, log scale)")
    ax.set_ylabel("latency (us, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    _tidy_log(ax, size_x=True)
    _footer(fig, inv)
    _save(fig, path)


def plot_slowdown(inv: Invocation, panels: dict[str, dict[str, list[dict[str, Any]]]], path: Path,
                  title: str) -> None:
    n = len(panels)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = _figure(rows, cols, size=(4.2 * cols, 3.4 * rows + 0.4))
    for i, (wl, groups) in enumerate(panels.items()):
        ax = axes[i // cols][i % cols]
        for k, (g, rows_) in enumerate(sorted(groups.items())):
            color = f"C{k % 10}"
            sizes = [r["size"] for r in rows_]
            ax.plot(sizes, [r["p50"] for r in rows_], "o-", color=color, label=f"{g} p50", markersize=3)
            ax.plot(sizes, [r["p99"] for r in rows_], "s--", color=color, label=f"{g} p99", markersize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(wl, fontsize=10)
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("slowdown")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
        _tidy_log(ax, plain_y=True, size_x=True)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(title, fontsize=10)
    _footer(fig, inv)
    _save(fig, path)


def plot_load(inv: Invocation, lines: dict[str, list[tuple[float, float, float, float]]], path: Path,
              title: str) -> None:
    fig, axes = _figure(1, 2, size=(11.0, 4.6))
    ax, ax2 = axes[0]
    top = 0.0
    for k, (g, pts) in enumerate(sorted(lines.items())):
        color = f"C{k % 10}"
        offered = [p[0] for p in pts]
        top = max(top, *offered, *(p[1] for p in pts))
        ax.plot(offered, [p[1] for p in pts], "o-", color=color, label=g)
        ax2.plot(offered, [p[2] for p in pts], "o-", color=color, label=f"{g} p50")
        ax2.plot(offered, [p[3] for p in pts], "s--", color=color, label=f"{g} p99")
    ax.plot([0, top], [0, top], ":", color="0.5", label="achieved = offered")
    ax.set_xlabel("offered load (requests/s, Poisson)")
    ax.set_ylabel("achieved throughput (requests/s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax2.set_yscale("log")
    ax2.set_xlabel("offered load (requests/s)")
    ax2.set_ylabel("latency from arrival (us, log scale)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    _tidy_log(ax2)
    fig.suptitle(title, fontsize=10)
    _footer(fig, inv)
    _save(fig, path)


def plot_scale(inv: Invocation, sweep: str, lines: dict[str, list[tuple[float, float, float, float, bool]]],
               path: Path, title: str) -> None:
    fig, axes = _figure(1, 2, size=(11.0, 4.6))
    ax, ax2 = axes[0]
    for k, (g, pts) in enumerate(sorted(lines.items())):
        color = f"C{k % 10}"
        ns = [p[0] for p in pts]
        ax.plot(ns, [p[1] for p in pts], "-", color=color, label=g)
        ax2.plot(ns, [p[2] for p in pts], "-", color=color, label=f"{g} p50")
        ax2.plot(ns, [p[3] for p in pts], "--", color=color, label=f"{g} p99")
        for n, thr, p50, p99, bound in pts:
            face = "none" if bound else color
            ax.plot([n], [thr], "o", color=color, markerfacecolor=face)
            ax2.plot([n], [p50], "o", color=color, markerfacecolor=face)
            ax2.plot([n], [p99], "s", color=color, markerfacecolor=face)
    what = "test-bed hosts (N-1 clients, 1 server)" if sweep == "hosts" else "concurrent clients (one request each)"
    for a in (ax, ax2):
        a.set_xlabel(what)
        if sweep == "clients":
            a.set_xscale("log")
        a.grid(True, which="both", alpha=0.3)
    ax.set_ylabel("throughput (requests/s)")
    ax.set_ylim(bottom=0)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (us, log scale)")
    ax.legend(fontsize=7)
    ax2.legend(fontsize=7)
    _tidy_log(ax)
    _tidy_log(ax2)
    fig.suptitle(title + "\n(hollow markers: CPU-bound on this machine)", fontsize=10)
    _footer(fig, inv)
    _save(fig, path)


def plot_queue(inv: Invocation, lines: dict[str, tuple[list[float], list[float], float | None]], path: Path,
               title: str) -> None:
    fig, axes = _figure()
    ax = axes[0][0]
    thresholds = set()
    for label, (ts, kb, thr) in list(lines.items())[:MAX_LINES]:
        ax.plot(ts, kb, label=label, linewidth=1.0)
        if thr:
            thresholds.add(float(thr))
    for thr in sorted(thresholds):
        ax.axhline(thr / 1000, linestyle=":", color="0.4", label=f"ECN threshold {thr / 1000:g} KB")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("queue occupancy (KB)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    _footer(fig, inv)
    _save(fig, path)


def plot_invocation(inv: Invocation, out_dir: str | os.PathLike, tag: str = "") -> PlotSet:
    """Every figure this invocation's data calls for, into `out_dir`; what it skipped and why."""
    out = Path(out_dir)
    ps = PlotSet()
    base = f"{inv.benchmark}{tag}"
    head = f"etran bench {inv.benchmark}"
    if inv.status != "complete":
        head += f" ({inv.status})"

    def add(kind: str, suffix: str, title: str, draw: Any, *args: Any) -> None:
        path = out / f"{base}-{kind}{suffix}.png"
        draw(inv, *args, path, title)
        ps.figures.append(Figure(kind, path, inv.benchmark, inv.id, title))

    groups = cdf_groups(inv)
    if not groups:
        ps.skipped.append(f"{inv.benchmark}: no measured series, no figures")
        return ps
    for key, series in groups.items():
        add("cdf", f"-{key}" if key else "", f"{head}: latency CDF" + (f" ({key})" if key else ""),
            plot_cdf, series)
    sl = size_lines(inv)
    if sl:
        add("size", "", f"{head}: p50/p99 against message size", plot_size, sl)
    else:
        ps.skipped.append(f"{inv.benchmark}: size: no series group with two message sizes or more")
    sd = slowdown_panels(inv)
    if sd:
        add("slowdown", "", f"{head}: slowdown by message size", plot_slowdown, sd)
    else:
        ps.skipped.append(f"{inv.benchmark}: slowdown: no W1-W5 workload series (params.workload, "
                          "info.slowdown_by_size)")
    ll = load_lines(inv)
    if ll:
        add("load", "", f"{head}: throughput against offered load", plot_load, ll)
    else:
        ps.skipped.append(f"{inv.benchmark}: load: no group with two offered loads or more")
    scaled = False
    for sweep in ("hosts", "clients"):
        lines = scale_lines(inv, sweep)
        if lines:
            scaled = True
            add("scale", f"-{sweep}", f"{head}: throughput and latency against {sweep}",
                lambda i, ln, p, t, sw=sweep: plot_scale(i, sw, ln, p, t), lines)
    if not scaled:
        ps.skipped.append(f"{inv.benchmark}: scale: no hosts or clients sweep")
    ql = queue_lines(inv)
    if ql:
        add("queue", "", f"{head}: queue occupancy over time", plot_queue, ql)
    else:
        ps.skipped.append(f"{inv.benchmark}: queue: no series with info.queue_timeline")
    return ps


def plot_all(invocations: Iterable[Invocation], out_dir: str | os.PathLike) -> PlotSet:
    invs = list(invocations)
    count: dict[str, int] = defaultdict(int)
    for inv in invs:
        count[inv.benchmark] += 1
    ps = PlotSet()
    for inv in invs:
        sub = plot_invocation(inv, out_dir, tag=f"-{inv.id[:8]}" if count[inv.benchmark] > 1 else "")
        ps.figures += sub.figures
        ps.skipped += sub.skipped
    return ps


def is_png(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == PNG_MAGIC
    except OSError:
        return False


# ---- inputs ------------------------------------------------------------------------------------

def resolve_inputs(paths: Sequence[str], default_root: str = "results") -> list[Path]:
    """Invocation JSON files from the arguments: files, folders (their invocation files, or
    the ones a suite manifest lists), or nothing (the newest `etran bench all` folder)."""
    from .suite import MANIFEST, latest_suite_dir, manifest_files

    if not paths:
        d = latest_suite_dir(default_root)
        if d is None:
            raise BenchError(f"no result files given and no `etran bench all` run under {default_root}/; "
                             "name the JSON files (or a folder)")
        paths = [str(d)]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            if (p / MANIFEST).exists():
                out += manifest_files(p / MANIFEST)
            else:
                out += sorted(x for x in p.glob("*.json") if x.name != MANIFEST)
        elif p.name == MANIFEST:
            out += manifest_files(p)
        elif p.exists():
            out.append(p)
        else:
            raise BenchError(f"{p}: no such file or folder")
    return out


def add_parser(bsub: Any) -> None:
    p = bsub.add_parser("plot", help="regenerate the figures (PNG) from result files",
                        description="Draw latency CDFs, p50/p99 against size, slowdown by size (W1-W5), throughput "
                                    "against offered load and against hosts/clients, and queue occupancy, from "
                                    "the JSON files of benchmark invocations. Figures whose data a file lacks are "
                                    "skipped with a note.")
    p.add_argument("files", nargs="*", metavar="JSON", help="result files or folders (default: the newest "
                                                             "`etran bench all` folder under results/)")
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: a plots/ folder beside the first file)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from .report import console

    con = console()
    files = resolve_inputs(args.files)
    if not files:
        raise BenchError("no result files to plot")
    invs = []
    for f in files:
        invs.append(Invocation.load(f))
    out = Path(args.out) if args.out else files[0].parent / "plots"
    ps = plot_all(invs, out)
    for fig in ps.figures:
        con.print(f"wrote {fig.path}")
    for note in ps.skipped:
        con.print(f"[dim]skipped {note}[/dim]")
    return 0
