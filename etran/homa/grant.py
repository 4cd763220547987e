"""Receiver-side grant scheduling (HomaModule homa_grant.c): SRPT with overcommitment.

What it does, per HomaModule's protocol.md:

* Messages longer than their unscheduled bytes need GRANTs. The scheduler ranks them by
  SRPT: fewest ungranted bytes (``length - granted``) first, older (smaller ``birth``)
  first on ties.
* It grants to at most ``max_overcommit`` messages at once, at most one per sending peer
  (a sender only transmits its own highest-priority message anyway).
* Each granted message is kept ``rtt_bytes`` ahead: target = min(length, received + rtt_bytes).
* ``total_incoming`` = sum over all incoming messages of (granted - received), counting
  unscheduled bytes too. New grants are issued only while it is below ``max_incoming``
  (default ``max_overcommit * rtt_bytes``); a grant is cut short to fit.
* Priorities: rank r of n active messages gets ``max_sched_prio - r``, shifted down so the
  lowest-ranked active message uses level 0 (leaving higher levels free for shorter
  messages that arrive later); more messages than levels share level 0.
* Starvation: after every ``grant_nonfifo`` SRPT-granted bytes (derived from
  ``grant_fifo_fraction`` per mille and ``fifo_grant_increment``), the oldest message that
  is not in the active set gets ``fifo_grant_increment`` bytes at ``max_sched_prio``.

Mirroring it in eBPF (the data path issues grants after each RX batch):

* ``table`` is a BPF array of ``max_grantable`` (64) slots ``{rpc key, peer, length,
  granted, received, birth}`` kept sorted by (ungranted, birth). :meth:`update` moves one
  entry by adjacent swaps: at most 64 iterations, no nested loops. The per-message state
  (``granted``, ``received``, ``charged``) lives in the RPC's hash-map value.
* :meth:`schedule` is one pass over the table (``bpf_loop``/bounded ``for`` of 64) that
  picks up to ``max_overcommit`` (8) entries with distinct peers (an inner check of at most
  8 chosen peers), then grants to them in rank order; the FIFO step is one more pass of 64
  to find the smallest ``birth`` outside the active set.
* ``total_incoming`` and ``nonfifo_left`` are single counters in a global array map,
  updated under a ``bpf_spin_lock`` (or per-CPU shards summed by the daemon).
* Everything is integer add/sub/compare/min; no division on the hot path
  (``grant_nonfifo`` is precomputed by the control path).
* ``overflow`` is not in the kernel: a message that does not fit the table (65th and
  worse) is handed to the daemon (ring buffer), which re-inserts the best waiting message
  when a slot frees up (reported as ``slot_freed``). In this model it is a plain list.
"""

from __future__ import annotations

from .config import HomaConfig
from .incoming import MessageIn

_UNTRACKED, _TABLE, _OVERFLOW = 0, 1, 2


def _key(m: MessageIn) -> tuple[int, int]:
    return (m.length - m.granted, m.birth)


class GrantScheduler:
    def __init__(self, config: HomaConfig) -> None:
        self.config = config
        self.table: list[MessageIn] = []      # sorted by _key, at most max_grantable
        self.overflow: list[MessageIn] = []   # control path: waiting for a table slot
        self.total_incoming = 0
        self.max_sched_prio = config.max_sched_prio
        self.nonfifo_left = config.grant_nonfifo
        self.fifo_grants = 0
        self.srpt_grants = 0

    # ---- accounting ---------------------------------------------------------------------
    def _charge(self, m: MessageIn) -> None:
        owed = m.granted - m.received
        if owed < 0:
            owed = 0
        self.total_incoming += owed - m.charged
        m.charged = owed

    def update(self, m: MessageIn) -> None:
        """Call after a message is created or its received/granted bytes change."""
        self._charge(m)
        needs = m.granted < m.length
        if m.sched_state == _UNTRACKED:
            if needs:
                self._insert(m)
        elif not needs:
            self._remove(m)
        elif m.sched_state == _TABLE:
            self._reposition(m)

    def forget(self, m: MessageIn) -> None:
        """The message is complete or its RPC is gone."""
        self.total_incoming -= m.charged
        m.charged = 0
        if m.sched_state != _UNTRACKED:
            self._remove(m)

    # ---- the sorted table ---------------------------------------------------------------
    def _insert(self, m: MessageIn) -> None:
        table = self.table
        if len(table) >= self.config.max_grantable:
            worst = table[-1]
            if _key(m) >= _key(worst):
                m.sched_state = _OVERFLOW
                self.overflow.append(m)
                return
            table.pop()
            worst.sched_state = _OVERFLOW
            self.overflow.append(worst)
        m.sched_state = _TABLE
        table.append(m)
        self._bubble(len(table) - 1)

    def _bubble(self, i: int) -> None:
        """Move table[i] to its sorted place by adjacent swaps (bounded by the table size)."""
        table = self.table
        k = _key(table[i])
        while i > 0 and _key(table[i - 1]) > k:
            table[i - 1], table[i] = table[i], table[i - 1]
            i -= 1
        while i + 1 < len(table) and _key(table[i + 1]) < k:
            table[i + 1], table[i] = table[i], table[i + 1]
            i += 1

    def _reposition(self, m: MessageIn) -> None:
        self._bubble(self.table.index(m))

    def _remove(self, m: MessageIn) -> None:
        if m.sched_state == _TABLE:
            self.table.remove(m)
            m.sched_state = _UNTRACKED
            self._slot_freed()
        else:
            self.overflow.remove(m)
            m.sched_state = _UNTRACKED

    def _slot_freed(self) -> None:
        """Control path: move the best waiting message into the freed table slot."""
        if not self.overflow or len(self.table) >= self.config.max_grantable:
            return
        best = min(self.overflow, key=_key)
        self.overflow.remove(best)
        best.sched_state = _UNTRACKED
        self._insert(best)

    # ---- scheduling ---------------------------------------------------------------------
    def active(self) -> list[MessageIn]:
        """The messages being granted to: SRPT order, one per peer, at most max_overcommit."""
        chosen: list[MessageIn] = []
        peers: list[object] = []
        limit = self.config.max_overcommit
        for m in self.table:
            if len(chosen) >= limit:
                break
            if m.peer in peers:
                continue
            chosen.append(m)
            peers.append(m.peer)
        return chosen

    def priority(self, rank: int, n_active: int) -> int:
        prio = self.max_sched_prio - rank
        extra = self.max_sched_prio + 1 - n_active
        if extra > 0:
            prio -= extra
        return prio if prio > 0 else 0

    def schedule(self) -> list[tuple[MessageIn, int]]:
        """Issue grants: returns (message, priority) for each message whose ``granted`` grew
        (the new offset is ``message.granted``)."""
        cfg = self.config
        limit = cfg.incoming_limit
        rtt = cfg.rtt_bytes
        active = self.active()
        n = len(active)
        grants: list[tuple[MessageIn, int]] = []
        srpt_bytes = 0
        for rank, m in enumerate(active):
            target = m.received + rtt
            if target > m.length:
                target = m.length
            if target <= m.granted:
                continue
            room = limit - self.total_incoming
            if room <= 0:
                break
            inc = target - m.granted
            if inc > room:
                inc = room
            m.granted += inc
            self._charge(m)
            srpt_bytes += inc
            m.priority = self.priority(rank, n)
            m.grant_sent = True
            grants.append((m, m.priority))
        self.srpt_grants += len(grants)
        nonfifo = cfg.grant_nonfifo
        if nonfifo > 0 and srpt_bytes:
            self.nonfifo_left -= srpt_bytes
            if self.nonfifo_left <= 0:
                self.nonfifo_left += nonfifo
                oldest = None
                for m in self.table:
                    if m in active:
                        continue
                    if oldest is None or m.birth < oldest.birth:
                        oldest = m
                if oldest is not None:
                    inc = min(cfg.fifo_grant_increment, oldest.length - oldest.granted)
                    oldest.granted += inc
                    self._charge(oldest)
                    oldest.priority = self.max_sched_prio
                    oldest.grant_sent = True
                    grants.append((oldest, oldest.priority))
                    self.fifo_grants += 1
        for m, _ in grants:
            if m.granted >= m.length:
                self._remove(m)
            elif m.sched_state == _TABLE:
                self._reposition(m)
        return grants
