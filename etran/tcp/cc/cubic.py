"""CUBIC, RFC 9438.

W_cubic(t) = C * (t - K)**3 + W_max, K = cbrt((W_max - cwnd_epoch) / C), in segments and
seconds, C = 0.4, beta_cubic = 0.7.  At each ACK batch in congestion avoidance the window
moves toward target = W_cubic(t + RTT) (clamped to [cwnd, 1.5 cwnd]) by
(target - cwnd) / cwnd per acknowledged segment; where the Reno-friendly estimate
W_est (grown by alpha_cubic = 3(1-beta)/(1+beta) per window, 1 once past cwnd_prior) is
larger, cwnd follows W_est (section 4.3).  Fast convergence (section 4.7) shrinks W_max
when losses come before the last W_max was reached.  Slow start is Reno's (no HyStart).
"""

from __future__ import annotations

from .base import CongestionControl, LossKind

C = 0.4
BETA = 0.7


class Cubic(CongestionControl):
    name = "cubic"

    def __init__(self, *, c: float = C, beta: float = BETA, fast_convergence: bool = True, **kw) -> None:
        super().__init__(**kw)
        self.c = c
        self.beta = beta
        self.fast_convergence = fast_convergence
        self.alpha_cubic = 3 * (1 - beta) / (1 + beta)
        self.w_max: float | None = None       # segments
        self.k = 0.0                          # seconds
        self.epoch_start: float | None = None
        self.cwnd_epoch = 0.0                 # segments
        self.cwnd_prior = 0.0                 # segments, cwnd when ssthresh was last set
        self.w_est = 0.0                      # segments
        self._seg = float(self.cwnd) / self.mss

    # the curve
    def w_cubic(self, t: float) -> float:
        """W_cubic(t) in segments (RFC 9438 eq. 1); t seconds since the epoch began."""
        w_max = self.w_max if self.w_max is not None else self.cwnd_epoch
        return self.c * (t - self.k) ** 3 + w_max

    def on_round(self, acked_bytes, ecn_marked_bytes=0, loss_events=0, rtt_sample_us=None, now=0.0,
                 *, round_complete=True) -> bool:
        self.begin_round(acked_bytes, ecn_marked_bytes, loss_events, rtt_sample_us, now)
        reduced = self.ecn_reaction(ecn_marked_bytes, now)
        if not (reduced or self.in_recovery) and acked_bytes > 0:
            leftover = self.slow_start(acked_bytes)
            if leftover:
                self._avoid(leftover, now)
        self.update_pacing()
        self.end_round(round_complete)
        return reduced

    def _cwnd_segments(self) -> float:
        """cwnd in (fractional) segments; the fraction survives only if nobody else changed cwnd."""
        return self._seg if int(self._seg * self.mss) == self.cwnd else self.cwnd / self.mss

    def _avoid(self, acked_bytes: int, now: float) -> None:
        cwnd = self._cwnd_segments()
        if self.epoch_start is None:
            self.epoch_start = now
            self.cwnd_epoch = cwnd
            if self.w_max is None or self.w_max <= cwnd:
                self.k = 0.0
                self.w_max = cwnd
            else:
                self.k = ((self.w_max - cwnd) / self.c) ** (1 / 3)
            self.w_est = cwnd
        acked_segs = acked_bytes / self.mss
        rtt = (self.srtt_us or self.latest_rtt_us or 100_000.0) / 1e6
        t = now - self.epoch_start
        # Reno-friendly estimate (section 4.3)
        alpha = 1.0 if self.w_est >= self.cwnd_prior else self.alpha_cubic
        self.w_est += alpha * acked_segs / cwnd
        if self.w_cubic(t) < self.w_est:
            new = self.w_est
        else:
            target = min(max(self.w_cubic(t + rtt), cwnd), 1.5 * cwnd)
            new = cwnd + (target - cwnd) / cwnd * acked_segs
        new = max(new, cwnd)
        self._seg = new
        self.cwnd = int(new * self.mss)

    def _reduce(self) -> None:
        cwnd = self.cwnd / self.mss
        if self.fast_convergence and self.w_max is not None and cwnd < self.w_max:
            self.w_max = cwnd * (1 + self.beta) / 2
        else:
            self.w_max = cwnd
        self.cwnd_prior = cwnd
        self.ssthresh = max(int(self.cwnd * self.beta), self.min_window)
        self.epoch_start = None

    def on_loss(self, kind: LossKind = LossKind.FAST_RETRANSMIT, now: float = 0.0) -> None:
        self._reduce()
        self.cwnd = self.mss if kind is LossKind.RTO else self.ssthresh
        self._seg = self.cwnd / self.mss

    def on_ecn(self, now: float = 0.0) -> None:
        self._reduce()
        self.cwnd = self.ssthresh
        self._seg = self.cwnd / self.mss

    def adopt(self, state, now=0.0) -> None:
        super().adopt(state, now)
        self._seg = self.cwnd / self.mss
        self.epoch_start = None
        self.w_max = None
