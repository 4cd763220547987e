"""Reassembly of an incoming message (HomaModule homa_incoming.c: homa_add_packet, gaps).

:class:`MessageIn` tracks which bytes of a message have arrived the way HomaModule does:
``recv_end`` (one past the highest byte received) and a list of gaps below it, plus
``bytes_remaining`` and ``granted`` (the receiver knows the sender will send every byte
before this offset). It is the reference model for the eBPF data path, so the gap list is
bounded (``config.max_gaps``): a packet that would open one gap too many is dropped, and
the sender retransmits it later on a RESEND. Integer arithmetic only.

The model also keeps the message's bytes (``buf``) so tests can check payloads; in etran
the payload lands in the application's UMEM and only the bookkeeping runs in the kernel.
"""

from __future__ import annotations


class MessageIn:
    __slots__ = ("length", "buf", "recv_end", "gaps", "bytes_remaining", "granted", "unsched",
                 "priority", "grant_sent", "birth", "peer", "charged", "sched_state", "max_gaps",
                 "dropped", "owner")

    def __init__(self, length: int, incoming: int, birth: int = 0, peer=None, max_gaps: int = 16,
                 keep_payload: bool = True) -> None:
        self.length = length
        self.buf = bytearray(length) if keep_payload else None
        self.recv_end = 0                   # one past the highest byte received
        self.gaps: list[list[int]] = []     # [start, end) holes below recv_end, in order
        self.bytes_remaining = length
        self.granted = min(length, incoming)   # the sender will send all bytes before this
        self.unsched = self.granted         # what the sender sent unilaterally
        self.priority = 0                   # priority of our latest GRANT
        self.grant_sent = False
        self.birth = birth                  # arrival order (FIFO grants)
        self.peer = peer                    # sender address (one message per peer is granted)
        self.charged = 0                    # this message's share of GrantScheduler.total_incoming
        self.sched_state = 0                # GrantScheduler: 0 untracked, 1 table, 2 overflow
        self.max_gaps = max_gaps
        self.dropped = 0                    # packets dropped for lack of gap slots
        self.owner = None                   # the RPC this message belongs to

    @property
    def received(self) -> int:
        return self.length - self.bytes_remaining

    @property
    def complete(self) -> bool:
        return self.bytes_remaining == 0

    def has_all_granted(self) -> bool:
        """Everything granted so far has arrived: silence is the receiver's doing."""
        return not self.gaps and self.recv_end >= self.granted

    def add_packet(self, offset: int, payload) -> int:
        """Account for one DATA segment; return the number of new bytes (0 for duplicates,
        packets beyond the message and packets dropped for lack of gap slots)."""
        end = offset + len(payload)
        if end > self.length:
            end = self.length
        if offset >= end:
            return 0
        new = 0
        if offset >= self.recv_end:
            if offset > self.recv_end:
                if len(self.gaps) >= self.max_gaps:
                    self.dropped += 1
                    return 0
                self.gaps.append([self.recv_end, offset])
            new = end - offset
            self.recv_end = end
        else:
            old_end = self.recv_end
            gaps = self.gaps
            # A segment strictly inside a gap splits it: one more gap slot.
            splits = sum(1 for g in gaps if g[0] < offset and end < g[1])
            if splits and len(gaps) + splits > self.max_gaps:
                self.dropped += 1
                return 0
            i = 0
            while i < len(gaps):
                g = gaps[i]
                s = offset if offset > g[0] else g[0]
                e = end if end < g[1] else g[1]
                if s >= e:
                    i += 1
                    continue
                new += e - s
                if s == g[0] and e == g[1]:
                    del gaps[i]
                    continue
                if s == g[0]:
                    g[0] = e
                elif e == g[1]:
                    g[1] = s
                else:
                    gaps.insert(i + 1, [e, g[1]])
                    g[1] = s
                    i += 1
                i += 1
            if end > old_end:
                new += end - old_end
                self.recv_end = end
        if new == 0:
            return 0
        if self.buf is not None:
            self.buf[offset:end] = payload[:end - offset]
        self.bytes_remaining -= new
        return new

    def resend_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of each RESEND to issue: every gap, then granted data after
        recv_end (homa_request_retrans)."""
        ranges = [(g[0], g[1] - g[0]) for g in self.gaps]
        tail = min(self.granted, self.length)
        if tail > self.recv_end:
            ranges.append((self.recv_end, tail - self.recv_end))
        return ranges

    def payload(self) -> bytes:
        return bytes(self.buf) if self.buf is not None else b""

    def __repr__(self) -> str:
        return (f"<MessageIn {self.received}/{self.length} granted={self.granted} "
                f"gaps={self.gaps} birth={self.birth}>")
