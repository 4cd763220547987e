"""NewReno-style congestion control (RFC 5681 / RFC 6582 window rules, byte counting RFC 3465).

Slow start adds the acknowledged bytes until ssthresh; congestion avoidance adds one MSS
per cwnd bytes acknowledged; a fast-retransmit loss halves the window, an RTO collapses it
to one MSS; ECN-Echo halves it at most once per window (RFC 3168).  Recovery itself
(which segments to resend, the pipe) is the connection's business (RFC 6675 / 6582).
"""

from __future__ import annotations

from .base import CongestionControl, LossKind


class Reno(CongestionControl):
    name = "reno"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._ca_acked = 0

    def on_round(self, acked_bytes, ecn_marked_bytes=0, loss_events=0, rtt_sample_us=None, now=0.0,
                 *, round_complete=True) -> bool:
        self.begin_round(acked_bytes, ecn_marked_bytes, loss_events, rtt_sample_us, now)
        reduced = self.ecn_reaction(ecn_marked_bytes, now)
        if not (reduced or self.in_recovery) and acked_bytes > 0:
            self.additive_increase(self.slow_start(acked_bytes))
        self.update_pacing()
        self.end_round(round_complete)
        return reduced

    def additive_increase(self, acked_bytes: int) -> None:
        """+1 MSS for every cwnd bytes acknowledged (appropriate byte counting)."""
        self._ca_acked += acked_bytes
        while self._ca_acked >= self.cwnd:
            self._ca_acked -= self.cwnd
            self.cwnd += self.mss

    def on_loss(self, kind: LossKind = LossKind.FAST_RETRANSMIT, now: float = 0.0) -> None:
        self.ssthresh = self.reno_ssthresh()
        self.cwnd = self.mss if kind is LossKind.RTO else self.ssthresh
        self._ca_acked = 0

    def on_ecn(self, now: float = 0.0) -> None:
        super().on_ecn(now)
        self._ca_acked = 0
