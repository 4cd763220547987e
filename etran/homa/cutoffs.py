"""Priority allocation from the observed message-size distribution (HomaModule
util/homa_prio.cc and protocol.md "Priorities"); runs in the control path.

1. Split the levels between unscheduled and scheduled traffic in proportion to their bytes:
   ``n_unsched = round(num_priorities * unsched_bytes / total_bytes)``, clamped to
   1..num_priorities-1. The highest levels are unscheduled; ``max_sched_prio`` is the top
   scheduled level.
2. Split the unscheduled levels by message length so each carries about the same number of
   unscheduled bytes, shorter messages at higher levels. ``unsched_cutoffs[i]`` is the
   largest length that uses level i; the lowest unscheduled level takes everything up to
   HOMA_MAX_MESSAGE_LENGTH; scheduled levels get 0.

Integer arithmetic; the result goes out in CUTOFFS packets with a new ``cutoff_version``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from . import wire


class SizeDistribution:
    """Counts of incoming message lengths (what the receiver observes)."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    def record(self, length: int) -> None:
        self.counts[length] += 1

    def __len__(self) -> int:
        return sum(self.counts.values())

    def clear(self) -> None:
        self.counts.clear()


def compute_cutoffs(sizes: Mapping[int, int] | Iterable[int], unsched_limit: int,
                    num_priorities: int = wire.HOMA_MAX_PRIORITIES) -> tuple[int, tuple[int, ...]]:
    """Return ``(max_sched_prio, unsched_cutoffs)`` (8 entries) for a size distribution,
    given as {length: count} or as an iterable of lengths. ``unsched_limit`` is the number of
    bytes a message sends unscheduled (HomaConfig.unsched_limit)."""
    if isinstance(sizes, Mapping):
        counts = {int(k): int(v) for k, v in sizes.items() if v > 0}
    else:
        counts = Counter(int(s) for s in sizes)
    cutoffs = [0] * wire.HOMA_MAX_PRIORITIES
    if num_priorities <= 1 or not counts:
        cutoffs[0] = wire.HOMA_MAX_MESSAGE_LENGTH
        if num_priorities <= 1:
            return 0, tuple(cutoffs)
        top = num_priorities - 1
        cutoffs[top] = wire.HOMA_MAX_MESSAGE_LENGTH
        return top - 1, tuple(cutoffs)
    # A zero-length message still costs a packet: count it as one byte.
    total = sum(max(s, 1) * c for s, c in counts.items())
    unsched = sum(max(min(s, unsched_limit), 1) * c for s, c in counts.items())
    n_unsched = (2 * num_priorities * unsched + total) // (2 * total)
    n_unsched = max(1, min(num_priorities - 1, n_unsched))
    max_sched_prio = num_priorities - 1 - n_unsched
    lowest_unsched = max_sched_prio + 1
    cutoffs[lowest_unsched] = wire.HOMA_MAX_MESSAGE_LENGTH
    # Walk lengths upwards; level top-k ends where the cumulative unscheduled bytes reach
    # (k+1)/n_unsched of the total.
    level = num_priorities - 1
    k = 1
    cumulative = 0
    for s in sorted(counts):
        if level < lowest_unsched + 1:
            break
        cumulative += max(min(s, unsched_limit), 1) * counts[s]
        while level >= lowest_unsched + 1 and cumulative * n_unsched >= k * unsched:
            cutoffs[level] = s
            level -= 1
            k += 1
    # Levels not reached (one length holds most bytes) repeat the cutoff above them, so
    # the array stays non-increasing; they are then simply unused.
    while level >= lowest_unsched + 1:
        cutoffs[level] = cutoffs[level + 1] if level + 1 < num_priorities else wire.HOMA_MAX_MESSAGE_LENGTH
        level -= 1
    return max_sched_prio, tuple(cutoffs)
