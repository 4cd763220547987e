"""Printing results: a rich table per invocation, and progress bars for long runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from .results import RATIO_STATS, Invocation, Series

LATENCY_STATS = ("p50", "p99", "p999")


def console(stderr: bool = False) -> Any:
    """A rich console; when the output is not a terminal, wide enough that tables never fold."""
    from rich.console import Console

    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)


def fmt_us(ns: float | None) -> str:
    """Nanoseconds as microseconds with 3 significant digits or one decimal, whichever is longer."""
    if ns is None:
        return "-"
    us = ns / 1000
    if us >= 1000:
        return f"{us:,.0f}"
    if us >= 100:
        return f"{us:.0f}"
    return f"{us:.1f}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}" if r < 10 else f"{r:.1f}"


COMPACT_BELOW = 110  # console columns under which tables drop to the compact layout


def table(inv: Invocation, stats: Sequence[str] = LATENCY_STATS, title: str | None = None,
          extra_columns: Sequence[tuple[str, str]] = (("lost", "lost"),), compact: bool = False) -> Any:
    """The invocation as a rich Table: one row per series, latency columns in microseconds,
    then ratios to the baseline series (same invocation only), then ratios to the
    invocation's reference series (`x<tag>`: all of RATIO_STATS for the first, p50 for
    the others; in compact layout p50 of the first only), then `extra_columns`
    ((info key, header) pairs, '-' when absent).  `compact` (fits 80 columns): series
    names instead of labels, the count in the caption when every series has the same,
    only the first extra column."""
    from rich import box
    from rich.table import Table

    ratios = inv.ratios(stats=RATIO_STATS)
    base = None
    if inv.baseline is not None and ratios:
        with contextlib.suppress(KeyError):
            base = inv.get(inv.baseline)
    refs: list[tuple[Series, str, tuple[str, ...], dict[str, dict[str, float]]]] = []
    for k, (ref_name, tag) in enumerate(inv.references.items()):
        with contextlib.suppress(KeyError):
            ref = inv.get(ref_name)
            if ref.ok and ref is not base and (k == 0 or not compact):
                shown = tuple(RATIO_STATS) if k == 0 and not compact else ("p50",)
                refs.append((ref, tag, shown, inv.ratios(ref_name, stats=shown)))
    counts = {s.summary.count for s in inv.series if s.summary}
    show_n = not compact or len(counts) > 1
    if compact:
        extra_columns = list(extra_columns)[:1]
    caption = ["latencies in microseconds" + ("" if show_n else f", {counts.pop() if counts else 0:,} per series")
               + f"; invocation {inv.id[:8]}, {inv.started}"]
    m = inv.machine
    if m:
        caption.append(f"kernel {m.get('kernel')}, {m.get('cpus')} CPUs, Python {m.get('python')}"
                       + (f", load {m['loadavg'][0]:.2f}" if m.get("loadavg") else ""))
    if base is not None:
        caption.append(f"x: ratio to {base.name if compact else base.label}, same invocation")
    for ref, tag, _, _ in refs:
        caption.append(f"x{tag}: ratio to {ref.name if compact else ref.label}")
    t = Table(box=box.SIMPLE_HEAD, title=title or f"etran bench {inv.benchmark}", caption="\n".join(caption),
              pad_edge=False)
    t.add_column("series", ratio=1, min_width=12)
    if show_n:
        t.add_column("n", justify="right", no_wrap=True)
    for st in stats:
        t.add_column(st, justify="right", no_wrap=True)
    if base is not None:
        for st in RATIO_STATS:
            t.add_column(f"x {st}", justify="right", no_wrap=True)
    for _, tag, shown, _ in refs:
        for st in shown:
            t.add_column(f"x{tag} {st}", justify="right", no_wrap=True)
    for key, header in extra_columns:
        t.add_column(header, justify="right", no_wrap=True)
    for s in inv.series:
        label = s.name if compact else s.label
        row = [label] + ([f"{s.summary.count:,}" if s.summary else "-"] if show_n else [])
        row += [fmt_us(s.summary.get(st)) if s.summary else "-" for st in stats]
        if base is not None:
            r = ratios.get(s.name, {})
            row += [("[bold]1.00[/bold]" if s is base else fmt_ratio(r.get(st))) for st in RATIO_STATS]
        for ref, _, shown, rr in refs:
            row += [("[bold]1.00[/bold]" if s is ref else fmt_ratio(rr.get(s.name, {}).get(st))) for st in shown]
        row += [_fmt_info(s, key) for key, _ in extra_columns]
        if s.error:
            row[0] = f"{label} [red]({s.error})[/red]"
        t.add_row(*row)
    return t


def _fmt_info(s: Series, key: str) -> str:
    v = s.info.get(key)
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def print_invocation(inv: Invocation, con: Any = None, **kwargs: Any) -> None:
    con = con or console()
    kwargs.setdefault("compact", con.width < COMPACT_BELOW)
    con.print(table(inv, **kwargs))


class Progress:
    """Progress bars for long runs (rich), or nothing when disabled / not on a terminal.

    with Progress(enabled) as p:
        task = p.add("AF_XDP busy-poll", total=20000)
        p.update(task, completed=500)
    """

    def __init__(self, enabled: bool = True, con: Any = None) -> None:
        self._con = con
        self.enabled = enabled
        self._p: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            con = self._con or console(stderr=True)
            if con.is_terminal:
                self._p = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                       TimeElapsedColumn(), console=con, transient=False)
                self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
            self._p = None

    def add(self, description: str, total: int | None = None) -> int | None:
        if self._p is None:
            return None
        return self._p.add_task(description, total=total)

    def update(self, task: int | None, **kwargs: Any) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, **kwargs)

    def log(self, message: str) -> None:
        if self._p is not None:
            self._p.console.print(message)


@contextlib.contextmanager
def no_progress() -> Iterator[Progress]:
    with Progress(enabled=False) as p:
        yield p
