"""The result model of a benchmark invocation, its JSON file, and the ratio guard.

One invocation of a benchmark (`etran bench NAME ...`) is one `Invocation`: an id, when
it ran, the machine (kernel, CPUs, Python, load), its parameters and its `Series`, one
per measured configuration (each with an exact LatencySummary, and the raw samples when
asked for).  It is written as one JSON file per invocation.

Ratios.  This machine is noisy: two runs minutes apart differ by more than the effects we
measure.  So a ratio is only ever stated between two series of the same invocation:
`ratio(a, b)` raises CrossInvocationRatioError when their invocation ids differ, and the
JSON file carries only ratios computed inside it.

Besides the baseline (`ratios`), an invocation may name reference series (`references`,
{series name: short tag}, e.g. the C floor as "C"): the file then also carries the ratios
of every series to each of them (`ratios_to`), and tables show them as `x<tag>` columns.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EtranError
from .stats import LatencySummary

SCHEMA = "etran.bench/1"
DEFAULT_OUT_DIR = "results"
RATIO_STATS = ("p50", "p99", "p999")


class BenchError(EtranError):
    """A benchmark could not run or its results are unusable."""


class CrossInvocationRatioError(BenchError):
    """Refused: a ratio between series measured in different invocations."""

    def __init__(self, a: Series, b: Series) -> None:
        self.a, self.b = a, b
        super().__init__(
            f"refusing to state a ratio between {a.name!r} (invocation {a.invocation_id or 'none'}) and "
            f"{b.name!r} (invocation {b.invocation_id or 'none'}): they did not run in the same invocation, and "
            "on this noisy machine numbers from different runs are not comparable. Measure both in one run "
            "(e.g. one `etran bench ...` with both series) and compare within it.")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Series:
    """One measured configuration of an invocation: a latency summary (ns) and facts about it.

    `info` holds whatever the benchmark knows beyond latency (lost round trips, whether
    the time limit cut the run short, socket statistics, CPU placement, ...).
    `error` is set, and `summary` None, when the series could not be measured.
    """

    name: str
    label: str
    invocation_id: str
    summary: LatencySummary | None = None
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    samples: list[int] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.summary is not None and self.error is None

    @property
    def settled(self) -> bool:
        """Measured, or an outcome with no latency to show that is itself the result (a victim
        that a flood starved: `info["starved"]`); not a failure of the benchmark."""
        return self.ok or bool(self.info.get("starved"))

    def stat(self, stat: str) -> float:
        if self.summary is None:
            raise BenchError(f"series {self.name!r} has no measurements" + (f" ({self.error})" if self.error else ""))
        return self.summary.get(stat)

    def to_dict(self, with_samples: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "label": self.label, "invocation_id": self.invocation_id,
                             "unit": "ns", "summary": self.summary.to_dict() if self.summary else None,
                             "params": self.params, "info": self.info, "error": self.error}
        if with_samples and self.samples is not None:
            d["samples"] = list(self.samples)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Series:
        return cls(name=d["name"], label=d.get("label", d["name"]), invocation_id=d["invocation_id"],
                   summary=LatencySummary.from_dict(d["summary"]) if d.get("summary") else None,
                   params=dict(d.get("params") or {}), info=dict(d.get("info") or {}),
                   samples=d.get("samples"), error=d.get("error"))


def ratio(a: Series, b: Series, stat: str = "p50") -> float:
    """a.stat / b.stat, only for two series of the same invocation (else CrossInvocationRatioError)."""
    if not a.invocation_id or a.invocation_id != b.invocation_id:
        raise CrossInvocationRatioError(a, b)
    denom = b.stat(stat)
    if denom == 0:
        raise BenchError(f"{stat} of {b.name!r} is 0: no ratio")
    return a.stat(stat) / denom


@dataclass
class Invocation:
    """One run of one benchmark; `series` all carry this invocation's id."""

    benchmark: str
    params: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: str = field(default_factory=_now)
    finished: str | None = None
    duration_s: float | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    references: dict[str, str] = field(default_factory=dict)  # further series ratios are stated against
    series: list[Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "running"   # running | complete | interrupted | failed

    # ---- series ----------------------------------------------------------------------
    def new_series(self, name: str, label: str | None = None, samples: Iterable[int] | None = None,
                   params: dict[str, Any] | None = None, info: dict[str, Any] | None = None,
                   error: str | None = None, keep_samples: bool = False) -> Series:
        """Make a series of this invocation from raw samples (ns) and add it."""
        data = list(samples) if samples is not None else []
        summary = LatencySummary.of(data) if data else None
        if summary is None and error is None:
            error = "no samples"
        s = Series(name=name, label=label or name, invocation_id=self.id, summary=summary,
                   params=dict(params or {}), info=dict(info or {}), samples=data if keep_samples else None,
                   error=error)
        self.add(s)
        return s

    def failed_series(self, name: str, label: str | None, error: BaseException | str,
                      params: dict[str, Any] | None = None) -> Series:
        """A series that could not be measured: the error's first line, the whole of it in info."""
        text = str(error)
        return self.new_series(name, label, params=params, error=text.splitlines()[0] if text else type(error).__name__,
                               info={"error_detail": text})

    def add(self, series: Series) -> None:
        if series.invocation_id != self.id:
            raise BenchError(f"series {series.name!r} belongs to invocation {series.invocation_id}, not {self.id}: "
                             "results of different invocations are never merged")
        if any(s.name == series.name for s in self.series):
            raise BenchError(f"invocation {self.id} already has a series named {series.name!r}")
        self.series.append(series)

    def get(self, name: str) -> Series:
        for s in self.series:
            if s.name == name:
                return s
        raise KeyError(f"no series {name!r} in invocation {self.id} (has: {', '.join(s.name for s in self.series)})")

    def measured(self, name: str) -> Series | None:
        """The series if it ran and measured something (what a comparison may use), else None."""
        for s in self.series:
            if s.name == name:
                return s if s.ok else None
        return None

    def ratios(self, baseline: str | None = None, stats: Iterable[str] = RATIO_STATS) -> dict[str, dict[str, float]]:
        """{series name: {stat: series.stat / baseline.stat}} for every measured series."""
        base_name = baseline or self.baseline
        if base_name is None:
            return {}
        try:
            base = self.get(base_name)
        except KeyError:
            return {}
        if not base.ok:
            return {}
        out: dict[str, dict[str, float]] = {}
        for s in self.series:
            if s.ok:
                out[s.name] = {st: ratio(s, base, st) for st in stats}
        return out

    # ---- life cycle ------------------------------------------------------------------
    def finish(self, status: str = "complete") -> None:
        self.finished = _now()
        if self.machine:
            try:
                self.machine["loadavg_end"] = list(os.getloadavg())
            except OSError:
                pass
        start = _dt.datetime.fromisoformat(self.started.replace("Z", "+00:00"))
        end = _dt.datetime.fromisoformat(self.finished.replace("Z", "+00:00"))
        self.duration_s = round((end - start).total_seconds(), 3)
        self.status = status

    # ---- JSON ------------------------------------------------------------------------
    def to_dict(self, with_samples: bool = True) -> dict[str, Any]:
        return {"schema": SCHEMA, "benchmark": self.benchmark, "invocation_id": self.id, "status": self.status,
                "started": self.started, "finished": self.finished, "duration_s": self.duration_s,
                "machine": self.machine, "params": self.params, "baseline": self.baseline,
                "ratios": self.ratios(), "references": dict(self.references),
                "ratios_to": {ref: self.ratios(ref) for ref in self.references}, "notes": self.notes,
                "series": [s.to_dict(with_samples) for s in self.series]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Invocation:
        if d.get("schema") != SCHEMA:
            raise BenchError(f"not an etran benchmark result (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        inv = cls(benchmark=d["benchmark"], params=dict(d.get("params") or {}), id=d["invocation_id"],
                  started=d["started"], finished=d.get("finished"), duration_s=d.get("duration_s"),
                  machine=dict(d.get("machine") or {}), baseline=d.get("baseline"),
                  references=dict(d.get("references") or {}), notes=list(d.get("notes") or []),
                  status=d.get("status", "complete"))
        for s in d.get("series", []):
            inv.add(Series.from_dict(s))
        return inv

    def to_json(self, with_samples: bool = True) -> str:
        return json.dumps(self.to_dict(with_samples), indent=2) + "\n"

    def default_path(self, out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> Path:
        stamp = self.started.replace("-", "").replace(":", "").split(".")[0] + "Z"
        return Path(out_dir) / f"{self.benchmark}-{stamp}-{self.id[:8]}.json"

    def write(self, path: str | os.PathLike | None = None, out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> Path:
        """Write the JSON file (atomically); `path` None: `<out_dir>/<benchmark>-<time>-<id>.json`."""
        p = Path(path) if path is not None else self.default_path(out_dir)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> Invocation:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise BenchError(f"cannot read benchmark result {path}: {e}") from e
        return cls.from_dict(data)


# ---- machine ----------------------------------------------------------------------------

def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> dict[str, Any] | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=2).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=2).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head or None, "dirty": dirty}


def machine_info() -> dict[str, Any]:
    """Kernel, CPUs, Python and load: what a reader needs to judge a result file."""
    u = platform.uname()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    from .. import __version__ as etran_version  # noqa: PLC0415

    return {
        "hostname": socket.gethostname(),
        "kernel": u.release,
        "kernel_version": u.version,
        "arch": u.machine,
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "affinity": affinity,
        "loadavg": load,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "etran": etran_version,
        "git": _git_commit(),
    }
