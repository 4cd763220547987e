"""Sequence-number arithmetic and a set of half-open integer ranges.

The control logic keeps sequence numbers *unwrapped*: plain Python ints that only grow
(the ISN plus bytes sent), so comparisons are ordinary `<`.  `wire(x)` gives the 32-bit
value for a header; `unwrap(v, ref)` maps a 32-bit value from a header back to the int
closest to a reference (RFC 9293's modular comparisons, done once at the edge).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def wire(x: int) -> int:
    return x & MASK


def unwrap(v: int, ref: int) -> int:
    """The unwrapped number congruent to `v` (mod 2**32) nearest to `ref`."""
    d = (v - ref) & MASK
    if d >= HALF:
        d -= MOD
    return ref + d


def seq_lt(a: int, b: int) -> bool:
    """RFC 9293 modular a < b for 32-bit wire values."""
    return ((a - b) & MASK) >= HALF


def seq_leq(a: int, b: int) -> bool:
    return a == b or seq_lt(a, b)


class RangeSet:
    """Disjoint, sorted half-open ranges [start, end) of ints; adjacent ranges merge."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: list[tuple[int, int]] | None = None) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for s, e in ranges or ():
            self.add(s, e)

    def add(self, start: int, end: int) -> int:
        """Add [start, end); returns how many of its ints were not yet in the set."""
        if end <= start:
            return 0
        i = bisect.bisect_left(self._ends, start)          # first range ending at/after start
        j = bisect.bisect_right(self._starts, end)          # ranges starting at/before end merge
        covered = 0
        new_s, new_e = start, end
        for k in range(i, j):
            s, e = self._starts[k], self._ends[k]
            covered += max(0, min(e, end) - max(s, start))
            new_s = min(new_s, s)
            new_e = max(new_e, e)
        self._starts[i:j] = [new_s]
        self._ends[i:j] = [new_e]
        return (end - start) - covered

    def remove_below(self, x: int) -> None:
        """Drop everything < x."""
        i = bisect.bisect_right(self._ends, x)
        del self._starts[:i]
        del self._ends[:i]
        if self._starts and self._starts[0] < x:
            self._starts[0] = x

    def find(self, x: int) -> tuple[int, int] | None:
        """The range containing x, if any."""
        i = bisect.bisect_right(self._starts, x) - 1
        if i >= 0 and x < self._ends[i]:
            return self._starts[i], self._ends[i]
        return None

    def covers(self, start: int, end: int) -> bool:
        r = self.find(start)
        return r is not None and end <= r[1]

    def overlap(self, start: int, end: int) -> int:
        """How many ints of [start, end) are in the set."""
        total = 0
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self._starts) and self._starts[i] < end:
            total += max(0, min(self._ends[i], end) - max(self._starts[i], start))
            i += 1
        return total

    def total(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    @property
    def first(self) -> tuple[int, int] | None:
        return (self._starts[0], self._ends[0]) if self._starts else None

    @property
    def highest(self) -> int | None:
        """The end of the last range (one past the highest int), or None if empty."""
        return self._ends[-1] if self._ends else None

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(zip(self._starts, self._ends, strict=True)))

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __repr__(self) -> str:
        return "RangeSet(" + ", ".join(f"[{s},{e})" for s, e in self) + ")"
