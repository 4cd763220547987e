"""Latency samples and their exact summary.

A LatencyRecorder collects integer nanoseconds (`time.perf_counter_ns` differences) in
an array('q'); appending costs one C call, so the recorder can sit inside a measured
loop (`append = rec.append` once, then `append(t1 - t0)`).

Percentiles are exact, by the nearest-rank definition on the sorted samples: the p-th
percentile of n samples is the sample of rank ceil(p * n) (1-based), i.e. the smallest
value that at least a fraction p of the samples do not exceed.  No interpolation, so
every reported percentile is a latency that was really measured.  The rank is computed
with integer arithmetic (p as a Fraction), so 99.9 % of 2,000 is rank 1,998, not a float
that rounds either way.  With fewer than 1/(1-p) samples the p-th percentile is the
maximum (p999 of 300 samples is the largest of them): the summary keeps `count` so a
reader can tell.
"""

from __future__ import annotations

import array
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

# Name -> fraction, in the order tables and JSON show them.
PERCENTILES: dict[str, Fraction] = {
    "p50": Fraction(1, 2),
    "p90": Fraction(9, 10),
    "p99": Fraction(99, 100),
    "p999": Fraction(999, 1000),
}


def _fraction(p: Fraction | float | int | str) -> Fraction:
    """A percentile as a fraction of 1: Fraction(99, 100), 0.99, "99%" or "p99"/"p999" names."""
    if isinstance(p, str) and p in PERCENTILES:
        return PERCENTILES[p]
    if isinstance(p, str) and p.endswith("%"):
        f = Fraction(p[:-1]) / 100
    else:
        f = Fraction(p) if not isinstance(p, float) else Fraction(str(p))
    if not 0 < f <= 1:
        raise ValueError(f"a percentile must be in (0, 1] (or a name like 'p99'), got {p!r}")
    return f


def rank(n: int, p: Fraction | float | str) -> int:
    """The 1-based nearest rank of percentile `p` among `n` samples: ceil(p * n), at least 1."""
    if n <= 0:
        raise ValueError("no samples")
    f = _fraction(p)
    return max(1, -(-f.numerator * n // f.denominator))


def percentile(sorted_samples: Sequence[int], p: Fraction | float | str) -> int:
    """Nearest-rank percentile of already sorted samples (see the module docstring)."""
    return sorted_samples[rank(len(sorted_samples), p) - 1]


@dataclass(frozen=True)
class LatencySummary:
    """count, min, max, mean, standard deviation and the PERCENTILES of a set of samples (ns)."""

    count: int
    min: int
    max: int
    mean: float
    stdev: float
    p50: int
    p90: int
    p99: int
    p999: int

    @classmethod
    def of(cls, samples: Iterable[int]) -> LatencySummary:
        s = sorted(samples)
        n = len(s)
        if n == 0:
            raise ValueError("cannot summarise zero samples")
        mean = math.fsum(s) / n
        var = math.fsum((x - mean) ** 2 for x in s) / (n - 1) if n > 1 else 0.0
        return cls(count=n, min=s[0], max=s[-1], mean=mean, stdev=math.sqrt(var),
                   **{name: percentile(s, f) for name, f in PERCENTILES.items()})

    def get(self, stat: str) -> float:
        """A statistic by name: 'p50', 'p99', 'p999', 'mean', 'min', ..."""
        if stat not in self.__dataclass_fields__:
            raise KeyError(f"unknown statistic {stat!r}; use one of {', '.join(self.__dataclass_fields__)}")
        return getattr(self, stat)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LatencySummary:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class LatencyRecorder:
    """Integer nanosecond samples; `summary()` is exact (see the module docstring).

    rec = LatencyRecorder()
    append = rec.append            # bind once, outside the loop
    t0 = perf_counter_ns(); ...; append(perf_counter_ns() - t0)
    """

    __slots__ = ("samples", "append")

    def __init__(self, samples: Iterable[int] = ()) -> None:
        self.samples = array.array("q", samples)
        self.append = self.samples.append

    def record(self, ns: int) -> None:
        self.samples.append(ns)

    def extend(self, samples: Iterable[int]) -> None:
        self.samples.extend(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> LatencySummary:
        return LatencySummary.of(self.samples)

    def tolist(self) -> list[int]:
        return self.samples.tolist()
