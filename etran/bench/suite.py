"""`etran bench all [--quick] [--out DIR]`: every registered benchmark, then the report and figures.

Each benchmark runs as its own invocation (`etran bench NAME --json DIR/NAME.json`, a child
process, so a crash or a hang of one cannot take the others down) on its own fresh test bed;
ratios are only ever stated inside one invocation.  A benchmark that fails (or passes its
`--timeout`, when it is interrupted like Ctrl-C and keeps its partial result) is reported
as failed and the rest still run.  Then, in DIR (default results/all-<time>-<id>/):

  NAME.json      each invocation (the raw samples too where a benchmark keeps them: the
                 CDFs are then exact)
  NAME.log       its output, when this command's output is not a terminal
  plots/*.png    the figures (etran.bench.plots), `etran bench plot DIR` redraws them
  report.md      machine, overview, a table per benchmark with its ratios and comparisons,
                 notes (where the 2-core machine limits a figure), figures
  suite.json     the manifest: the command, the machine, every benchmark's status and file

Progress: a line per benchmark ([2/5] ...) and, on a terminal, the benchmark's own bars.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .results import DEFAULT_OUT_DIR, BenchError, Invocation, machine_info

MANIFEST = "suite.json"
REPORT = "report.md"
SCHEMA = "etran.bench.suite/1"
QUICK_TIMEOUT = 240.0
FULL_TIMEOUT = 3600.0
_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    name: str
    status: str                      # complete | failed | interrupted | timeout | error
    json: str | None = None          # relative to the suite folder
    log: str | None = None
    invocation_id: str | None = None
    duration_s: float | None = None
    returncode: int | None = None
    error: str | None = None
    series: int = 0


@dataclass
class Suite:
    out: Path
    quick: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    finished: str | None = None
    duration_s: float | None = None
    command: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    machine_end: dict[str, Any] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    figures: list[dict[str, str]] = field(default_factory=list)
    figures_skipped: list[str] = field(default_factory=list)
    status: str = "running"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "suite_id": self.id, "status": self.status, "started": self.started,
                "finished": self.finished, "duration_s": self.duration_s, "quick": self.quick,
                "command": self.command, "machine": self.machine, "machine_end": self.machine_end,
                "benchmarks": [asdict(o) for o in self.outcomes], "figures": self.figures,
                "figures_skipped": self.figures_skipped, "report": REPORT}

    def write(self) -> Path:
        p = self.out / MANIFEST
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, p)
        return p


def manifest_files(path: str | os.PathLike) -> list[Path]:
    """The invocation files a suite manifest lists (those that exist)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot read {p}: {e}") from e
    if data.get("schema") != SCHEMA:
        raise BenchError(f"{p} is not an `etran bench all` manifest")
    out = []
    for b in data.get("benchmarks", []):
        if b.get("json") and (p.parent / b["json"]).exists():
            out.append(p.parent / b["json"])
    return out


def latest_suite_dir(root: str | os.PathLike = DEFAULT_OUT_DIR) -> Path | None:
    dirs = [d for d in Path(root).glob("all-*") if (d / MANIFEST).exists()] if Path(root).is_dir() else []
    return max(dirs, key=lambda d: (d / MANIFEST).stat().st_mtime) if dirs else None


# ---- running one benchmark -----------------------------------------------------------------

def _benchmark_parser(name: str) -> argparse.ArgumentParser:
    from .registry import add_common_arguments, get

    cls = get(name)
    p = argparse.ArgumentParser(prog=f"etran bench {name}", add_help=False)
    add_common_arguments(p, cls)
    cls().add_arguments(p)
    return p


def benchmark_argv(name: str, out: Path, *, quick: bool, samples: bool, bed_name: str | None,
                   extra: Sequence[str] = ()) -> list[str]:
    """The `etran bench NAME ...` arguments the suite runs (options a benchmark lacks are left out)."""
    options = {s for a in _benchmark_parser(name)._actions for s in a.option_strings}
    argv = [name, "--json", str(out / f"{name}.json"), "--out", str(out)]
    if quick:
        argv.append("--quick")
    if samples and "--samples" in options:
        argv.append("--samples")
    if bed_name and "--name" in options:
        argv += ["--name", bed_name]
    return argv + list(extra)


Runner = Callable[[str, list[str], Path, float, bool], tuple[int, str | None]]


def subprocess_runner(name: str, argv: list[str], out: Path, timeout: float, to_terminal: bool) -> tuple[int, str | None]:
    """Run `etran bench ARGV` as a child; returns (exit status, log file name or None).
    Past `timeout` s (or on Ctrl-C/SIGTERM here) the child gets SIGINT: it stops, writes
    its partial result and takes its bed down; SIGKILL if it does not end within 90 s."""
    cmd = [sys.executable, "-m", "etran", "bench", *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log_name = None
    log = None
    if not to_terminal:
        log_name = f"{name}.log"
        log = open(out / log_name, "w")
    try:
        proc = subprocess.Popen(cmd, stdout=log or None, stderr=subprocess.STDOUT if log else None,
                                stdin=subprocess.DEVNULL, cwd=str(_ROOT), env=env)
    except BaseException:
        if log:
            log.close()
        raise
    try:
        try:
            return proc.wait(timeout=timeout), log_name
        except subprocess.TimeoutExpired:
            _stop(proc)
            return -999, log_name
        except KeyboardInterrupt:
            _stop(proc, grace=2.0)
            raise
    finally:
        if log:
            log.close()


def _stop(proc: subprocess.Popen, grace: float = 0.0) -> None:
    """SIGINT (after `grace` s, in case the terminal's Ctrl-C already reached it), then SIGKILL."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        if grace:
            proc.wait(timeout=grace)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _outcome(name: str, out: Path, rc: int, log: str | None, elapsed: float) -> Outcome:
    o = Outcome(name=name, status="failed", log=log, duration_s=round(elapsed, 1), returncode=rc)
    path = out / f"{name}.json"
    if path.exists():
        try:
            inv = Invocation.load(path)
        except BenchError as e:
            o.error = str(e)
        else:
            o.json = path.name
            o.invocation_id = inv.id
            o.series = len(inv.series)
            o.status = inv.status
            errors = [n for n in inv.notes if n.startswith("error:")]
            bad = [f"{s.name}: {s.error}" for s in inv.series if not s.ok]
            if inv.status != "complete":
                o.error = "; ".join(errors + bad[:3]) or None
    else:
        o.error = f"no result file (exit status {rc})"
    if rc == -999:
        o.status = "timeout"
        o.error = "stopped at the time limit" + (f"; {o.error}" if o.error else "")
    elif o.status == "complete" and rc != 0:
        o.status = "failed"
        o.error = f"exit status {rc}"
    if o.status != "complete" and o.error is None:
        o.error = _log_tail(out / log) if log else f"exit status {rc}"
    return o


def _log_tail(path: Path, lines: int = 3) -> str | None:
    with contextlib.suppress(OSError):
        tail = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return " / ".join(tail[-lines:]) or None
    return None


# ---- the suite ---------------------------------------------------------------------------

def default_out(root: str = DEFAULT_OUT_DIR) -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"all-{stamp}-{uuid.uuid4().hex[:6]}"


def run_suite(names: Sequence[str], out: Path, *, quick: bool, timeout: float | None = None,
              samples: bool = True, bed_prefix: str | None = None, runner: Runner | None = None,
              command: str = "", con: Any = None, plots: bool = True,
              extra_args: dict[str, Sequence[str]] | None = None) -> Suite:
    """Run the benchmarks `names` one after another into `out`, then write the figures, the
    report and the manifest (also after Ctrl-C, with what ran)."""
    from .report import console

    con = con or console()
    out.mkdir(parents=True, exist_ok=True)
    runner = runner or subprocess_runner
    timeout = timeout or (QUICK_TIMEOUT if quick else FULL_TIMEOUT)
    to_terminal = bool(getattr(sys.stdout, "isatty", lambda: False)())
    suite = Suite(out=out, quick=quick, command=command, machine=machine_info())
    t_start = time.monotonic()
    try:
        for i, name in enumerate(names, 1):
            con.rule(f"[bold][{i}/{len(names)}] etran bench {name}[/bold]")
            argv = benchmark_argv(name, out, quick=quick, samples=samples,
                                  bed_name=f"{bed_prefix}{i}" if bed_prefix else None,
                                  extra=(extra_args or {}).get(name, ()))
            with contextlib.suppress(FileNotFoundError):
                (out / f"{name}.json").unlink()  # never report a stale file as this run's
            t0 = time.monotonic()
            rc, log = runner(name, argv, out, timeout, to_terminal)
            o = _outcome(name, out, rc, log, time.monotonic() - t0)
            suite.outcomes.append(o)
            style = "green" if o.status == "complete" else "red"
            con.print(f"[{style}]{name}: {o.status}[/{style}] in {o.duration_s:.0f} s"
                      + (f" ({o.error})" if o.error and o.status != "complete" else ""))
            suite.write()
        suite.status = "complete" if all(o.status == "complete" for o in suite.outcomes) else "failed"
    except KeyboardInterrupt:
        suite.status = "interrupted"
        raise
    finally:
        suite.duration_s = round(time.monotonic() - t_start, 1)
        suite.finished = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        with contextlib.suppress(OSError):
            suite.machine_end = {"loadavg": list(os.getloadavg())}
        finish(suite, plots=plots, con=con)
    return suite


def finish(suite: Suite, *, plots: bool = True, con: Any = None) -> None:
    """Figures, report.md and suite.json from what the suite's invocations wrote."""
    from .markdown import relpath, render
    from .plots import plot_all
    from .registry import load_benchmarks

    out = suite.out
    invs: list[tuple[Invocation, Outcome]] = []
    for o in suite.outcomes:
        if o.json:
            with contextlib.suppress(BenchError):
                invs.append((Invocation.load(out / o.json), o))
    figures_by_inv: dict[str, list[tuple[str, str]]] = {}
    if plots and invs:
        try:
            ps = plot_all([inv for inv, _ in invs], out / "plots")
        except Exception as e:  # the report must still be written
            suite.figures_skipped = [f"figures failed: {type(e).__name__}: {e}"]
        else:
            suite.figures = [{"kind": f.kind, "file": relpath(f.path, out), "benchmark": f.benchmark,
                              "invocation_id": f.invocation_id} for f in ps.figures]
            suite.figures_skipped = ps.skipped
            for f in ps.figures:
                figures_by_inv.setdefault(f.invocation_id, []).append((f.title, relpath(f.path, out)))
    classes = load_benchmarks()
    sections = []
    for inv, o in invs:
        sections.append((inv, {"bench_cls": classes.get(inv.benchmark), "figures": figures_by_inv.get(inv.id, []),
                               "result_file": o.json,
                               "failure": o.error if o.status != "complete" else None}))
    done = [o for o in suite.outcomes if o.status == "complete"]
    intro = [f"`{suite.command or 'etran bench all'}`: run `{suite.id[:8]}`, {suite.started}, "
             f"{suite.duration_s or 0:,.0f} s; {len(done)} of {len(suite.outcomes)} benchmarks complete"
             + (" (quick counts: a smoke run, not a measurement)" if suite.quick else "") + "."]
    if suite.status == "interrupted":
        intro.append("**Interrupted**: the benchmarks that had not run are missing.")
    overview = [asdict(o) for o in suite.outcomes]
    text = render(sections, intro=intro, machine=suite.machine, machine_end=suite.machine_end, overview=overview,
                  figures_skipped=suite.figures_skipped)
    (out / REPORT).write_text(text)
    suite.write()
    if con is not None:
        from rich.table import Table

        t = Table(title=f"etran bench all: {out}", show_edge=False)
        for col in ("benchmark", "status", "duration", "series", "result"):
            t.add_column(col)
        for o in suite.outcomes:
            style = "green" if o.status == "complete" else "red"
            t.add_row(o.name, f"[{style}]{o.status}[/{style}]", f"{o.duration_s or 0:.0f} s", str(o.series),
                      o.json or (o.error or "-"))
        con.print(t)
        con.print(f"report: {out / REPORT}; {len(suite.figures)} figures in {out / 'plots'}; manifest {out / MANIFEST}")


# ---- publishing the report into the docs -------------------------------------------------

BEGIN_MARK = "<!-- etran bench all: report begins -->"
END_MARK = "<!-- etran bench all: report ends -->"


def publish(suite_dir: str | os.PathLike, doc: str | os.PathLike, assets: str | os.PathLike | None = None) -> Path:
    """Put a suite's report into a Markdown document between BEGIN_MARK and END_MARK (the
    rest of the document stays as written), its figures and its result files (without raw
    samples) into `assets` (default: a folder named after the document, beside it), with
    the links rewritten.  Returns the assets folder."""
    import re
    import shutil

    src, doc = Path(suite_dir), Path(doc)
    assets = Path(assets) if assets is not None else doc.with_suffix("").parent / doc.stem.lower()
    report = (src / REPORT).read_text()
    data = json.loads((src / MANIFEST).read_text())
    assets.mkdir(parents=True, exist_ok=True)
    for old in assets.glob("*"):
        if old.suffix in (".png", ".json"):
            old.unlink()
    for f in data.get("figures", []):
        shutil.copy2(src / f["file"], assets / Path(f["file"]).name)
    for b in data.get("benchmarks", []):
        if b.get("json"):
            inv = Invocation.load(src / b["json"])
            (assets / b["json"]).write_text(inv.to_json(with_samples=False))
    rel = os.path.relpath(assets, doc.parent).replace(os.sep, "/")
    report = re.sub(r"\]\(plots/([^)]+)\)", lambda m: f"]({rel}/{m.group(1)})", report)
    report = re.sub(r"\]\(([A-Za-z0-9_.-]+\.json)\)", lambda m: f"]({rel}/{m.group(1)})", report)
    report = re.sub(r"(?m)^(#{1,5}) ", r"#\1 ", report)  # one level down: the document has its own title
    report = report.replace("## etran benchmark report", "## The latest report", 1)
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{BEGIN_MARK}\n{END_MARK}\n"
    if BEGIN_MARK not in text or END_MARK not in text:
        text = text.rstrip() + f"\n\n{BEGIN_MARK}\n{END_MARK}\n"
    head, rest = text.split(BEGIN_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    doc.write_text(f"{head}{BEGIN_MARK}\n\n{report.strip()}\n\n{END_MARK}{tail}")
    return assets


# ---- CLI ------------------------------------------------------------------------------------

def add_parser(bsub: Any) -> None:
    p = bsub.add_parser("all", help="run every benchmark, then write the report (Markdown) and the figures",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="each benchmark's quick counts (a smoke run)")
    p.add_argument("--out", metavar="DIR", help=f"the run's folder (default {DEFAULT_OUT_DIR}/all-<time>-<id>/)")
    p.add_argument("--only", action="append", metavar="NAME", help="only this benchmark (repeatable)")
    p.add_argument("--skip", action="append", metavar="NAME", help="not this benchmark (repeatable)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help=f"seconds per benchmark before it is stopped (default {FULL_TIMEOUT:g}, quick {QUICK_TIMEOUT:g})")
    p.add_argument("--no-samples", action="store_true", help="do not keep raw samples (CDFs from quantiles)")
    p.add_argument("--no-plots", action="store_true", help="no figures")
    p.add_argument("--bed-prefix", metavar="P", help="test beds are named P1, P2, ... (default: each benchmark's own)")
    p.add_argument("--publish", metavar="DOC", help="also put the report into this Markdown file (between its "
                                                    "report markers) and its figures and data beside it, e.g. "
                                                    "docs/BENCHMARKS.md")
    p.set_defaults(func=cmd_all)


def cmd_all(args: argparse.Namespace) -> int:
    from .registry import load_benchmarks

    known = sorted(load_benchmarks())
    names = list(known)
    for n in (args.only or []) + (args.skip or []):
        if n not in known:
            raise BenchError(f"no benchmark named {n!r}; registered: {', '.join(known)}")
    if args.only:
        names = [n for n in names if n in args.only]
    if args.skip:
        names = [n for n in names if n not in args.skip]
    if not names:
        raise BenchError("no benchmark left to run")
    if args.bed_prefix and (len(args.bed_prefix) > 20 or not args.bed_prefix[0].isalpha()):
        raise BenchError("--bed-prefix: a letter first, at most 20 characters")
    out = Path(args.out) if args.out else default_out()
    command = "etran bench all" + "".join(f" {shlex.quote(a)}" for a in sys.argv[3:]) if sys.argv[1:3] == [
        "bench", "all"] else "etran bench all" + (" --quick" if args.quick else "")
    suite = run_suite(names, out, quick=args.quick, timeout=args.timeout, samples=not args.no_samples,
                      bed_prefix=args.bed_prefix, command=command, plots=not args.no_plots)
    if args.publish:
        assets = publish(out, args.publish)
        print(f"published the report in {args.publish} (figures and data in {assets})")
    return 0 if suite.status == "complete" else 1
