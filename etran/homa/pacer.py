"""Sender-side pacing and SRPT (HomaModule homa_pacer.c, the throttled list).

The pacer keeps an estimate of the bytes queued in the NIC (drained at ``link_mbps``) and
never lets it exceed ``max_nic_backlog_bytes`` (one packet may always go when the queue is
empty). Among the messages that have sendable data it picks the one with the fewest bytes
left to transmit (SRPT; older first on ties), except that after every ``pacer_nonfifo``
SRPT bytes one packet goes to the oldest message instead (``pacer_fifo_fraction``), so a
long message cannot starve.

In etran the application library runs this (it queues in its own UMEM and paces from
kernel-published state); the egress hook only enforces grants. Integer nanoseconds.
"""

from __future__ import annotations

from . import wire
from .config import HomaConfig
from .outgoing import MessageOut


class Pacer:
    def __init__(self, config: HomaConfig) -> None:
        self.config = config
        self.queue: list[MessageOut] = []
        self.backlog = 0                 # bytes estimated queued in the NIC
        self.last_ns = 0                 # time of the last drain
        self.wire_overhead = config.ip_header_bytes + wire.HOMA_ETH_OVERHEAD
        seg = config.seg_payload
        frac = config.pacer_fifo_fraction
        self.nonfifo = seg * 1000 // frac - seg if frac > 0 else 0
        self.nonfifo_left = self.nonfifo
        self.fifo_packets = 0

    # ---- the throttled list ---------------------------------------------------------------
    def add(self, m: MessageOut) -> None:
        if not m.in_pacer and m.has_sendable():
            m.in_pacer = True
            self.queue.append(m)

    def discard(self, m: MessageOut) -> None:
        if m.in_pacer:
            m.in_pacer = False
            self.queue.remove(m)

    def pick(self) -> MessageOut | None:
        """The message whose next packet should go out (SRPT, or FIFO when due)."""
        queue = self.queue
        for m in [m for m in queue if not m.has_sendable()]:
            self.discard(m)
        if not queue:
            return None
        if self.nonfifo and self.nonfifo_left <= 0:
            self.nonfifo_left += self.nonfifo
            self.fifo_packets += 1
            return min(queue, key=lambda m: m.birth)
        return min(queue, key=lambda m: (m.bytes_left(), m.birth))

    def sent(self, nbytes: int) -> None:
        """Count message bytes sent by SRPT towards the next FIFO packet."""
        if self.nonfifo:
            self.nonfifo_left -= nbytes

    # ---- the NIC backlog -------------------------------------------------------------------
    def wire_bytes(self, homa_bytes: int) -> int:
        return homa_bytes + self.wire_overhead

    def drain(self, now: int) -> None:
        if now > self.last_ns:
            drained = (now - self.last_ns) * self.config.link_mbps // 8000
            self.backlog = self.backlog - drained if self.backlog > drained else 0
            self.last_ns = now

    def can_send(self, now: int, wire_bytes: int) -> bool:
        self.drain(now)
        return self.backlog == 0 or self.backlog + wire_bytes <= self.config.max_nic_backlog_bytes

    def charge(self, wire_bytes: int) -> None:
        self.backlog += wire_bytes

    def next_ready(self) -> int | None:
        """When a full packet fits again (None if nothing is waiting)."""
        if not any(m.has_sendable() for m in self.queue):
            return None
        full = self.wire_bytes(wire.DATA_HDR_LEN + self.config.seg_payload)
        excess = self.backlog + full - self.config.max_nic_backlog_bytes
        if excess <= 0 or self.backlog == 0:
            return self.last_ns
        need = excess if excess < self.backlog else self.backlog
        wait = -(-need * 8000 // self.config.link_mbps)
        return self.last_ns + wait
