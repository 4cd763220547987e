"""SACK on both sides: the sender's scoreboard (RFC 6675) and the receiver's reassembly (RFC 2018).

Sender: `Scoreboard` keeps every segment sent and not yet cumulatively acknowledged, with
which ones the peer SACKed, which are presumed lost (RFC 6675 IsLost: DupThresh SACKed
segments, or more than (DupThresh-1)*SMSS SACKed bytes, above it) and which lost ones were
retransmitted.  `pipe()` is RFC 6675's estimate of bytes in the network; `next_retransmit()`
is NextSeg() rule 1 (the first lost, un-SACKed, not yet retransmitted segment).  A peer
without SACK is handled the way Linux does NewReno: each duplicate ACK counts as one
segment that left the network (`reno_dupacks`).

Receiver: `Reassembly` holds out-of-order data as ranges, delivers what becomes contiguous,
and builds SACK blocks, the first covering the most recently received segment and the rest
the most recently reported others (RFC 2018 section 4).

Sequence numbers here are unwrapped ints (see etran.tcp.seq).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .seq import RangeSet


@dataclass(slots=True)
class SentSegment:
    start: int
    end: int                  # exclusive; a FIN takes one number
    sent_at: float            # last transmission
    first_sent_at: float
    fin: bool = False
    xmits: int = 1
    sacked: bool = False
    lost: bool = False
    retrans_in_flight: bool = False   # retransmitted since it was marked lost

    @property
    def length(self) -> int:
        return self.end - self.start


class Scoreboard:
    def __init__(self, mss: int, dupthresh: int = 3) -> None:
        self.mss = mss
        self.dupthresh = dupthresh
        self.segments: deque[SentSegment] = deque()
        self.sacked = RangeSet()
        self.reno_dupacks = 0
        #: after apply_sack: send time of the newest segment it SACKed that was sent only once
        self.sack_rtt_sent_at: float | None = None

    # --- sending ---
    def on_sent(self, start: int, end: int, now: float, fin: bool = False) -> SentSegment:
        seg = SentSegment(start, end, now, now, fin)
        self.segments.append(seg)
        return seg

    @staticmethod
    def on_retransmit(seg: SentSegment, now: float) -> None:
        seg.xmits += 1
        seg.sent_at = now
        if seg.lost:
            seg.retrans_in_flight = True

    # --- acknowledgements ---
    def ack(self, snd_una: int) -> list[SentSegment]:
        """Cumulative ACK up to snd_una: drop covered segments (returned), trim a partial one."""
        done = []
        segs = self.segments
        while segs and segs[0].end <= snd_una:
            done.append(segs.popleft())
        if segs and segs[0].start < snd_una:
            segs[0].start = snd_una
        self.sacked.remove_below(snd_una)
        return done

    def apply_sack(self, blocks: list[tuple[int, int]], snd_una: int, snd_max: int) -> int:
        """Record SACK blocks (unwrapped); returns newly SACKed bytes. Invalid/D-SACK blocks are ignored."""
        new = 0
        self.sack_rtt_sent_at = None
        for left, right in blocks:
            if left >= right or left < snd_una or right > snd_max:
                continue
            new += self.sacked.add(left, right)
        if new:
            for seg in self.segments:
                if not seg.sacked and self.sacked.covers(seg.start, seg.end):
                    seg.sacked = True
                    seg.lost = False
                    seg.retrans_in_flight = False
                    if seg.xmits == 1:      # an RTT sample (Karn: never from a retransmitted one)
                        self.sack_rtt_sent_at = seg.sent_at
        return new

    def update_lost(self) -> int:
        """Mark segments that IsLost() now says are lost; returns how many became lost."""
        count = 0
        sacked_segs = 0
        sacked_bytes = 0
        limit = (self.dupthresh - 1) * self.mss
        for seg in reversed(self.segments):
            if seg.sacked:
                sacked_segs += 1
                sacked_bytes += seg.length
            elif not seg.lost and (sacked_segs >= self.dupthresh or sacked_bytes > limit):
                seg.lost = True
                count += 1
        return count

    def is_lost(self, seg: SentSegment) -> bool:
        sacked_segs = 0
        sacked_bytes = 0
        for s in reversed(self.segments):
            if s is seg:
                break
            if s.sacked:
                sacked_segs += 1
                sacked_bytes += s.length
        return sacked_segs >= self.dupthresh or sacked_bytes > (self.dupthresh - 1) * self.mss

    def first_unsacked(self) -> SentSegment | None:
        for seg in self.segments:
            if not seg.sacked:
                return seg
        return None

    def mark_all_lost(self) -> None:
        """After an RTO: everything not SACKed is lost and nothing retransmitted is in flight."""
        for seg in self.segments:
            if not seg.sacked:
                seg.lost = True
                seg.retrans_in_flight = False
        self.reno_dupacks = 0

    def clear_sacks(self) -> None:
        """Forget SACK information (RFC 2018 allows the receiver to renege; RTO fallback)."""
        self.sacked.clear()
        for seg in self.segments:
            seg.sacked = False

    # --- estimates ---
    def pipe(self) -> int:
        """RFC 6675 SetPipe(), in bytes, minus NewReno duplicate-ACK credit when SACK is off."""
        p = 0
        for seg in self.segments:
            if seg.sacked:
                continue
            if not seg.lost:
                p += seg.length
            if seg.retrans_in_flight:
                p += seg.length
        if self.reno_dupacks:
            p = max(0, p - self.reno_dupacks * self.mss)
        return p

    def next_retransmit(self) -> SentSegment | None:
        """NextSeg() rule 1: the first lost, un-SACKed segment not retransmitted since."""
        for seg in self.segments:
            if seg.lost and not seg.sacked and not seg.retrans_in_flight:
                return seg
        return None

    @property
    def highest_sacked(self) -> int | None:
        return self.sacked.highest

    @property
    def sacked_bytes(self) -> int:
        return self.sacked.total()

    @property
    def lost_segments(self) -> int:
        return sum(1 for s in self.segments if s.lost and not s.sacked)

    def __len__(self) -> int:
        return len(self.segments)


class Reassembly:
    """Receive side: in-order delivery from out-of-order arrivals, and SACK blocks."""

    MAX_RECENT = 8

    def __init__(self, rcv_nxt: int) -> None:
        self.rcv_nxt = rcv_nxt
        self.ooo = RangeSet()
        self._chunks: dict[int, bytes] = {}
        self._recent: list[int] = []    # start seqs of recent out-of-order arrivals, newest first
        self.duplicate_bytes = 0

    def add(self, seq: int, data: bytes) -> bytes:
        """Take a segment's payload at unwrapped `seq`; returns the bytes now deliverable in order."""
        end = seq + len(data)
        if end <= self.rcv_nxt:
            self.duplicate_bytes += len(data)
            return b""
        if seq < self.rcv_nxt:
            self.duplicate_bytes += self.rcv_nxt - seq
            data = data[self.rcv_nxt - seq:]
            seq = self.rcv_nxt
        if seq == self.rcv_nxt and not self.ooo:
            self.rcv_nxt = end
            return bytes(data)
        # store the parts not held yet
        pos = seq
        for s, e in self.ooo:
            if e <= pos:
                continue
            if s >= end:
                break
            if s > pos:
                self._chunks[pos] = bytes(data[pos - seq:s - seq])
            self.duplicate_bytes += min(e, end) - max(s, pos)
            pos = max(pos, e)
            if pos >= end:
                break
        if pos < end:
            self._chunks[pos] = bytes(data[pos - seq:])
        self.ooo.add(seq, end)
        if seq > self.rcv_nxt:
            if seq in self._recent:
                self._recent.remove(seq)
            self._recent.insert(0, seq)
            del self._recent[self.MAX_RECENT:]
        # deliver what is contiguous
        out = []
        while self.rcv_nxt in self._chunks:
            chunk = self._chunks.pop(self.rcv_nxt)
            out.append(chunk)
            self.rcv_nxt += len(chunk)
        if out:
            self.ooo.remove_below(self.rcv_nxt)
            self._recent = [s for s in self._recent if s >= self.rcv_nxt]
        return b"".join(out)

    def sack_blocks(self, max_blocks: int = 4) -> list[tuple[int, int]]:
        blocks: list[tuple[int, int]] = []
        for s in self._recent:
            r = self.ooo.find(s)
            if r is not None and r not in blocks:
                blocks.append(r)
                if len(blocks) >= max_blocks:
                    return blocks
        for r in self.ooo:    # anything else held, lowest first
            if len(blocks) >= max_blocks:
                break
            if r not in blocks:
                blocks.append(r)
        return blocks

    @property
    def ooo_bytes(self) -> int:
        return self.ooo.total()

    @property
    def has_gap(self) -> bool:
        return bool(self.ooo)
