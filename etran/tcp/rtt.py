"""Retransmission timeout estimation, RFC 6298.

SRTT/RTTVAR from samples (K = 4, alpha = 1/8, beta = 1/4), RTO = SRTT + max(G, 4*RTTVAR)
clamped to [min_rto, max_rto]; exponential backoff on each timeout, undone by the next
valid sample (RFC 6298 section 5, rule 5.5 and the note after 5.7).  Times in seconds.
"""

from __future__ import annotations


class RttEstimator:
    def __init__(self, *, initial_rto: float = 1.0, min_rto: float = 0.2, max_rto: float = 60.0,
                 granularity: float = 0.001) -> None:
        if not 0 < min_rto <= max_rto:
            raise ValueError("need 0 < min_rto <= max_rto")
        self.initial_rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.latest: float | None = None
        self.min_rtt: float | None = None
        self.samples = 0
        self.backoff_exponent = 0
        self._base_rto = initial_rto

    def update(self, rtt: float) -> None:
        """Take one RTT sample (seconds); resets the backoff."""
        if rtt < 0:
            return
        self.latest = rtt
        self.samples += 1
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        if self.srtt is None or self.rttvar is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self._base_rto = self.srtt + max(self.granularity, 4 * self.rttvar)
        self.backoff_exponent = 0

    @property
    def rto(self) -> float:
        """The current timeout, backoff included, clamped to [min_rto, max_rto]."""
        base = min(max(self._base_rto, self.min_rto), self.max_rto)
        return min(base * (1 << self.backoff_exponent), self.max_rto)

    def backoff(self) -> None:
        """A retransmission timer expired: double the RTO (RFC 6298 rule 5.5)."""
        if self.rto < self.max_rto:
            self.backoff_exponent += 1

    def reset_backoff(self) -> None:
        self.backoff_exponent = 0
