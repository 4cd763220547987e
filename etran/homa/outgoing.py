"""An outgoing message cut into DATA packets (HomaModule homa_outgoing.c).

:class:`MessageOut` holds the message, how much of it the receiver has granted, how far it
has been transmitted (``next_xmit``: packets go out in order, one segment of
``config.seg_payload`` bytes each) and the priorities to use: the unscheduled priority
(chosen from the receiver's cutoffs by message length) for bytes below ``unsched``, and the
priority of the latest GRANT for the rest. A packet may go out when its offset is below
``granted``, so grants are in effect rounded up to whole packets, and the DATA header's
``incoming`` says so.
"""

from __future__ import annotations

from . import wire


class MessageOut:
    __slots__ = ("payload", "length", "seg", "granted", "unsched", "next_xmit", "sent_any",
                 "unsched_priority", "sched_priority", "birth", "rpc", "in_pacer")

    def __init__(self, payload: bytes, seg_payload: int, unsched_limit: int,
                 unsched_priority: int = 0, birth: int = 0, rpc=None) -> None:
        self.payload = bytes(payload)
        self.length = len(self.payload)
        self.seg = seg_payload
        self.unsched = min(self.length, unsched_limit)
        self.granted = self.unsched
        self.next_xmit = 0            # offset of the next new packet (tx_end)
        self.sent_any = False         # a zero-length message is one empty packet
        self.unsched_priority = unsched_priority
        self.sched_priority = 0
        self.birth = birth
        self.rpc = rpc
        self.in_pacer = False

    # ---- state ---------------------------------------------------------------------------
    @property
    def tx_end(self) -> int:
        return self.next_xmit

    def has_sendable(self) -> bool:
        """A new (never sent) packet may go out now."""
        if self.length == 0:
            return not self.sent_any
        return self.next_xmit < self.granted

    def fully_sent(self) -> bool:
        return self.sent_any and self.next_xmit >= self.length

    def bytes_left(self) -> int:
        """Bytes not yet transmitted: the sender-side SRPT key."""
        return self.length - self.next_xmit

    def grant(self, offset: int, priority: int) -> bool:
        """Apply a GRANT; True if more data became sendable."""
        self.sched_priority = priority
        offset = min(offset, self.length)
        if offset > self.granted:
            self.granted = offset
            return True
        return False

    def incoming(self) -> int:
        """DATA header ``incoming``: every byte below it will be sent without more grants."""
        seg = self.seg
        return min(self.length, -(-self.granted // seg) * seg)

    def priority_at(self, offset: int) -> int:
        return self.unsched_priority if offset < self.unsched else self.sched_priority

    # ---- segmentation -------------------------------------------------------------------
    def take_next(self) -> int:
        """Offset of the next new packet; advances next_xmit past it."""
        offset = self.next_xmit
        self.next_xmit = min(offset + self.seg, self.length)
        self.sent_any = True
        return offset

    def segment(self, offset: int) -> bytes:
        return self.payload[offset:offset + self.seg]

    def resend_offsets(self, start: int, end: int) -> list[int]:
        """Offsets of already-sent packets overlapping [start, end) (clipped to tx_end)."""
        if self.length == 0:
            return [0] if self.sent_any and start == 0 else []
        end = min(end, self.next_xmit)
        if start >= end:
            return []
        first = (start // self.seg) * self.seg
        return list(range(first, end, self.seg))

    def header(self, sport: int, dport: int, sender_id: int, offset: int, ack_id: int = 0,
               ack_port: int = 0, cutoff_version: int = 0, retransmit: int = 0) -> bytes:
        return wire.pack_data(sport, dport, sender_id, self.length, self.incoming(), offset,
                              ack_id, ack_port, cutoff_version, retransmit)

    def __repr__(self) -> str:
        return (f"<MessageOut sent {self.next_xmit}/{self.length} granted={self.granted} "
                f"birth={self.birth}>")
