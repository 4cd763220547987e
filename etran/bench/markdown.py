"""The Markdown report of benchmark invocations (what `etran bench all` writes as report.md).

Every ratio in the report comes from `results.ratio` (latency) or `info_ratio` (any numeric
`info` field, e.g. throughput): both refuse two series of different invocations
(CrossInvocationRatioError), and the report generator lets that refusal through instead of
printing the number.  A report therefore states a ratio only between series that ran side
by side in one invocation; comparisons across benchmarks are never computed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import fmt_ratio, fmt_us
from .results import RATIO_STATS, BenchError, CrossInvocationRatioError, Invocation, Series, ratio

TABLE_STATS = ("p50", "p90", "p99", "p999")


def info_ratio(a: Series, b: Series, key: str) -> float:
    """a.info[key] / b.info[key], for two series of the same invocation only."""
    if not a.invocation_id or a.invocation_id != b.invocation_id:
        raise CrossInvocationRatioError(a, b)
    va, vb = a.info.get(key), b.info.get(key)
    if not isinstance(va, (int, float)) or not isinstance(vb, (int, float)) or vb == 0:
        raise BenchError(f"no {key} ratio between {a.name!r} and {b.name!r}")
    return float(va) / float(vb)


def ratio_cell(a: Series, b: Series, stat: str = "p50") -> str:
    """A table cell with a.stat / b.stat; raises CrossInvocationRatioError across invocations."""
    if a is b:
        return "**1.00**"
    return fmt_ratio(ratio(a, b, stat))


def _esc(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return _esc(v)


def machine_lines(machine: dict[str, Any], machine_end: dict[str, Any] | None = None) -> list[str]:
    m = machine or {}
    load = m.get("loadavg")
    end = (machine_end or {}).get("loadavg") or m.get("loadavg_end")
    git = m.get("git") or {}
    rows = [
        ("host", m.get("hostname")),
        ("kernel", f"{m.get('kernel')} ({m.get('arch')})"),
        ("CPUs", f"{m.get('cpus')} x {m.get('cpu_model')}" + (f", affinity {m['affinity']}" if m.get("affinity") else "")),
        ("load average (1, 5, 15 min)", (", ".join(f"{x:.2f}" for x in load) if load else "-")
         + (f" at the start; {', '.join(f'{x:.2f}' for x in end)} at the end" if end else "")),
        ("Python", f"{m.get('python')} ({m.get('python_implementation')})"),
        ("etran", f"{m.get('etran')}" + (f", commit {str(git.get('commit'))[:12]}" + (" with local changes"
                                                                                      if git.get("dirty") else "")
                                           if git.get("commit") else "")),
    ]
    out = ["| | |", "|---|---|"]
    out += [f"| {k} | {_esc(v)} |" for k, v in rows]
    return out


def invocation_table(inv: Invocation, extra_columns: Sequence[tuple[str, str]] = (("lost", "lost"),)) -> list[str]:
    """The series of one invocation as a Markdown table, with ratios to its baseline and
    reference series (same invocation: ratio() refuses anything else)."""
    base = None
    if inv.baseline:
        with contextlib.suppress(KeyError):
            b = inv.get(inv.baseline)
            base = b if b.ok else None
    refs: list[tuple[Series, str]] = []
    for name, tag in inv.references.items():
        with contextlib.suppress(KeyError):
            r = inv.get(name)
            if r.ok and r is not base:
                refs.append((r, tag))
    head = ["series", "n", *(f"{st} us" for st in TABLE_STATS)]
    if base is not None:
        head += [f"x {st}" for st in RATIO_STATS]
    for _, tag in refs:
        head += [f"x{tag} p50", f"x{tag} p99"]
    head += [h for _, h in extra_columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for s in inv.series:
        label = _esc(s.label) + (f" (`{s.name}`)" if s.label != s.name else "")
        if not s.ok:
            row = [f"{label}: **{_esc(s.error or 'failed')}**"] + ["-"] * (len(head) - 1)
            lines.append("| " + " | ".join(row) + " |")
            continue
        m = s.summary
        row = [label, f"{m.count:,}", *(fmt_us(m.get(st)) for st in TABLE_STATS)]
        if base is not None:
            row += [ratio_cell(s, base, st) for st in RATIO_STATS]
        for r, _ in refs:
            row += [ratio_cell(s, r, "p50"), ratio_cell(s, r, "p99")]
        row += [_fmt(s.info.get(k)) for k, _ in extra_columns]
        lines.append("| " + " | ".join(row) + " |")
    caption = "Latencies in microseconds (nearest-rank percentiles of every measured request)."
    if base is not None:
        caption += f" `x`: ratio to {_esc(base.label)} (`{base.name}`), measured in this invocation."
    for r, tag in refs:
        caption += f" `x{tag}`: ratio to {_esc(r.label)} (`{r.name}`)."
    return [*lines, "", caption]


def invocation_section(inv: Invocation, *, title: str | None = None, bench_cls: Any = None,
                       figures: Sequence[tuple[str, str]] = (), result_file: str | None = None,
                       level: int = 2, failure: str | None = None) -> list[str]:
    """A report section for one invocation: what ran, the table, the benchmark's own
    comparisons (its summary lines), notes, figures ((caption, relative path))."""
    h = "#" * level
    out = [f"{h} {title or 'etran bench ' + inv.benchmark}", ""]
    if bench_cls is not None and getattr(bench_cls, "help", ""):
        out += [f"{bench_cls.help}.", ""]
    p = inv.params or {}
    facts = [f"status **{inv.status}**", f"invocation `{inv.id[:8]}`", f"started {inv.started}"]
    if inv.duration_s is not None:
        facts.append(f"{inv.duration_s:,.0f} s")
    if "count" in p and p.get("count", 0) > 1:
        facts.append(f"{p['count']:,} measured and {p.get('warmup', 0):,} warm-up operations per series")
    if p.get("duration_s"):
        facts.append(f"{p['duration_s']:g} s measured per point")
    tb = p.get("testbed") or {}
    if tb:
        facts.append(f"test bed {tb.get('name', '?')}: {tb.get('hosts')} hosts, "
                     + (f"links {tb['rate_gbit']:g} Gbit/s" if tb.get("rate_gbit") else "no link rate limit")
                     + (", etran daemons" if tb.get("daemons") else ""))
    if result_file:
        facts.append(f"data [`{Path(result_file).name}`]({result_file})")
    out += ["; ".join(facts) + ".", ""]
    if failure:
        out += [f"**Failed:** {_esc(failure)}", ""]
    if inv.series:
        extra = bench_cls.extra_columns if bench_cls is not None else (("lost", "lost"),)
        out += invocation_table(inv, extra)
        out.append("")
    summary: list[str] = []
    if bench_cls is not None and inv.series:
        try:
            summary = list(bench_cls().summary(inv))
        except CrossInvocationRatioError:
            raise
        except Exception as e:  # a broken summary must not hide the table
            summary = [f"(the comparisons could not be computed: {type(e).__name__}: {e})"]
    if summary:
        out += ["Comparisons (each between series of this invocation):", ""]
        out += [f"- {_esc(line)}" for line in summary]
        out.append("")
    if inv.notes:
        out += ["Notes:", ""]
        out += [f"- {_esc(n)}" for n in inv.notes]
        out.append("")
    for caption, path in figures:
        out += [f"![{_esc(caption)}]({path})", ""]
    return out


def render(invocations: Sequence[tuple[Invocation, dict[str, Any]]], *, title: str = "etran benchmark report",
           intro: Sequence[str] = (), machine: dict[str, Any] | None = None,
           machine_end: dict[str, Any] | None = None, overview: Sequence[dict[str, Any]] = (),
           figures_skipped: Sequence[str] = ()) -> str:
    """The whole report: title, intro lines, the machine, an overview table of the
    benchmarks ({name, status, duration_s, invocation_id, json, error}), then a section per
    invocation (each with `extra`: bench_cls, figures, result_file, failure)."""
    out = [f"# {title}", ""]
    out += list(intro)
    if intro:
        out.append("")
    if machine:
        out += ["## Machine", ""] + machine_lines(machine, machine_end) + [""]
    if overview:
        out += ["## Benchmarks", "", "| benchmark | status | duration | invocation | series | result |",
                "|---|---|---:|---|---:|---|"]
        for row in overview:
            dur = row.get("duration_s")
            res = f"[`{Path(row['json']).name}`]({row['json']})" if row.get("json") else "-"
            status = row.get("status", "?")
            if row.get("error") and status != "complete":
                status += f": {_esc(row['error'])}"
            out.append(f"| {row['name']} | {status} | {f'{dur:,.0f} s' if dur is not None else '-'} | "
                       f"{'`' + row['invocation_id'][:8] + '`' if row.get('invocation_id') else '-'} | "
                       f"{row.get('series', '-')} | {res} |")
        out += ["", ("Each benchmark is its own invocation on its own fresh test bed; ratios are stated only "
                     "between series of one invocation (this machine is noisy: runs minutes apart differ more "
                     "than the effects measured)."), ""]
    for inv, extra in invocations:
        out += invocation_section(inv, **extra)
    if figures_skipped:
        # "bench: kind: reason" -> one line per benchmark
        by: dict[str, list[str]] = {}
        other: list[str] = []
        for note in figures_skipped:
            parts = [p.strip() for p in note.split(":", 2)]
            if len(parts) == 3:
                by.setdefault(parts[0], []).append(parts[1])
            else:
                other.append(note)
        out += ["## Figures not drawn", "", "Figures whose data an invocation does not have (the data each figure "
                "needs is listed in etran/bench/plots.py):", ""]
        out += [f"- {_esc(b)}: {', '.join(kinds)}" for b, kinds in by.items()] + [f"- {_esc(n)}" for n in other]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def relpath(path: str | os.PathLike, start: str | os.PathLike) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")
