"""DCTCP, RFC 8257.

The sender estimates the fraction of its bytes that met congestion, once per window of
data (a round): alpha = (1 - g) * alpha + g * F, F = marked bytes / acknowledged bytes,
g = 1/16.  On ECN-Echo it cuts cwnd by alpha/2 (cwnd *= 1 - alpha/2), at most once per
window.  Without marks it behaves like Reno: slow start until the first mark or loss, then
+1 MSS per round.  Loss is handled exactly like Reno (RFC 8257 section 3.5).

The receiver must echo CE per segment (RFC 8257 section 3.2, `ecn_echo = "dctcp"`), which
the connection does when this algorithm is active.
"""

from __future__ import annotations

from .reno import Reno


class Dctcp(Reno):
    name = "dctcp"
    ecn_echo = "dctcp"
    wants_ecn = True

    def __init__(self, *, g: float = 1 / 16, initial_alpha: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        if not 0 < g <= 1:
            raise ValueError("DCTCP's gain g must be in (0, 1]")
        self.g = g
        self.initial_alpha = initial_alpha
        self.alpha = initial_alpha
        self._win_acked = 0
        self._win_marked = 0
        self.last_fraction: float | None = None

    def on_round(self, acked_bytes, ecn_marked_bytes=0, loss_events=0, rtt_sample_us=None, now=0.0,
                 *, round_complete=True) -> bool:
        self.begin_round(acked_bytes, ecn_marked_bytes, loss_events, rtt_sample_us, now)
        self._win_acked += acked_bytes
        self._win_marked += min(ecn_marked_bytes, acked_bytes) if acked_bytes else 0
        if round_complete:
            self.update_alpha()
        reduced = self.ecn_reaction(ecn_marked_bytes, now)
        if not (reduced or self.in_recovery) and acked_bytes > 0:
            self.additive_increase(self.slow_start(acked_bytes))
        self.update_pacing()
        self.end_round(round_complete)
        return reduced

    def update_alpha(self) -> None:
        """End of a window of data: fold its marked fraction into alpha (RFC 8257 section 3.3 steps 7-9)."""
        if self._win_acked > 0:
            f = self._win_marked / self._win_acked
            self.last_fraction = f
            self.alpha = (1 - self.g) * self.alpha + self.g * f
        self._win_acked = 0
        self._win_marked = 0

    def on_ecn(self, now: float = 0.0) -> None:
        self.ssthresh = max(int(self.cwnd * (1 - self.alpha / 2)), self.min_window)
        self.cwnd = self.ssthresh
        self._ca_acked = 0

    def export_state(self):
        st = super().export_state()
        st["alpha"] = self.alpha
        return st

    def adopt(self, state, now=0.0) -> None:
        super().adopt(state, now)
        if "alpha" in state:
            self.alpha = state["alpha"]
