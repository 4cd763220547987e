"""The congestion-control interface and the registry of algorithms by name.

Modelled on aioquic's `quic/congestion/base.py` (a base class and a name -> factory
registry) and on Linux's `struct tcp_congestion_ops`, but shaped for eTran: the data path
(eBPF) counts, the control path (the daemon) decides.  The daemon reads aggregated
counters from kernel maps once per RTT (or per ACK batch) and calls `on_round`; losses
detected by the data path or by timers arrive as `on_loss`.  The algorithm sets `cwnd`
and `ssthresh` (bytes) and may set a pacing `rate` (bytes per second), which the daemon
writes back to the map the data path enforces and the library paces from.

Adding an algorithm is one small class::

    from etran.tcp.cc import CongestionControl, LossKind, create, register_congestion_control

    class Halfway(CongestionControl):
        '''Slow start, then +1 MSS per round; loss keeps 3/4 of the window.'''
        name = "halfway"

        def on_round(self, acked_bytes, ecn_marked_bytes=0, loss_events=0,
                     rtt_sample_us=None, now=0.0, *, round_complete=True):
            self.begin_round(acked_bytes, ecn_marked_bytes, loss_events, rtt_sample_us, now)
            reduced = self.ecn_reaction(ecn_marked_bytes, now)    # calls on_ecn at most once a window
            if not (reduced or self.in_recovery) and self.slow_start(acked_bytes) and round_complete:
                self.cwnd += self.mss                               # leftover after slow start
            self.end_round(round_complete)
            return reduced

        def on_loss(self, kind=LossKind.FAST_RETRANSMIT, now=0.0):
            self.ssthresh = max(self.cwnd * 3 // 4, 2 * self.mss)
            self.cwnd = self.mss if kind is LossKind.RTO else self.ssthresh

    register_congestion_control("halfway", Halfway)
    cc = create("halfway", mss=1448)

A live connection switches with `swap(old, "cubic")` (or TcpConnection.set_congestion_control),
which carries cwnd, ssthresh, the recovery flag and the RTT knowledge across.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar

INFINITE_SSTHRESH = 1 << 62


class LossKind(enum.Enum):
    FAST_RETRANSMIT = "fast"    # dupacks / SACK evidence: enter fast recovery
    RTO = "rto"                 # retransmission timeout: back to one segment


class CongestionControl:
    """Base class: Reno-like slow start helpers, pacing, state carried across a swap.

    Subclasses override `on_round` and `on_loss` (and optionally `on_init`,
    `on_recovery_end`, `adopt`).  All sizes are bytes, times seconds, RTTs microseconds.
    """

    name: ClassVar[str] = "base"
    #: "dctcp": the receiver echoes CE per segment (RFC 8257 section 3.2);
    #: "classic": RFC 3168 (ECE latched until CWR).
    ecn_echo: ClassVar[str] = "classic"
    #: whether the connection should negotiate ECN when this algorithm is chosen at open
    wants_ecn: ClassVar[bool] = False

    def __init__(self, *, mss: int = 1448, initial_window: int | None = None, min_window: int | None = None,
                 pacing_gain_ss: float = 2.0, pacing_gain_ca: float = 1.2) -> None:
        if mss <= 0:
            raise ValueError("mss must be positive")
        self.mss = mss
        self.initial_window = initial_window if initial_window is not None else 10 * mss   # RFC 6928
        self.min_window = min_window if min_window is not None else 2 * mss
        self.cwnd = self.initial_window
        self.ssthresh = INFINITE_SSTHRESH
        self.in_recovery = False
        self.rate: float | None = None            # pacing rate, bytes/s
        self.pacing_gain_ss = pacing_gain_ss
        self.pacing_gain_ca = pacing_gain_ca
        self.min_rtt_us: float | None = None
        self.latest_rtt_us: float | None = None
        self.srtt_us: float | None = None
        self.rounds = 0            # completed windows of data (round_complete batches)
        self.reductions = 0        # ECN-triggered window reductions
        self._ecn_cut_round = -2   # self.rounds when the last ECN reduction happened

    # --- the interface the daemon drives ---
    def on_init(self, now: float = 0.0) -> None:
        """The connection is established (or this algorithm was just swapped in)."""

    def on_round(self, acked_bytes: int, ecn_marked_bytes: int = 0, loss_events: int = 0,
                 rtt_sample_us: float | None = None, now: float = 0.0, *, round_complete: bool = True) -> bool:
        """Aggregated feedback since the last call.

        acked_bytes: newly (cumulatively or selectively) acknowledged bytes; ecn_marked_bytes:
        of those, bytes acknowledged by ACKs carrying ECE; loss_events: new loss episodes the
        data path saw (each is treated as one `on_loss(FAST_RETRANSMIT)` unless already in
        recovery); rtt_sample_us: an RTT sample from this batch; round_complete: this batch
        completes a window of data (snd_una passed the snd_nxt recorded at the round's start).
        Returns True if the window was reduced in response to ECN (the sender then sets CWR).
        """
        raise NotImplementedError

    def on_loss(self, kind: LossKind = LossKind.FAST_RETRANSMIT, now: float = 0.0) -> None:
        """Loss detected: reduce. For FAST_RETRANSMIT the caller then sets in_recovery."""
        raise NotImplementedError

    def on_recovery_end(self, now: float = 0.0) -> None:
        """snd_una passed the recovery point."""
        self.in_recovery = False

    # --- helpers for subclasses ---
    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def begin_round(self, acked_bytes: int, ecn_marked_bytes: int, loss_events: int,
                    rtt_sample_us: float | None, now: float) -> None:
        """Common bookkeeping: RTT tracking, loss events -> on_loss."""
        if rtt_sample_us is not None and rtt_sample_us > 0:
            self.latest_rtt_us = rtt_sample_us
            self.min_rtt_us = rtt_sample_us if self.min_rtt_us is None else min(self.min_rtt_us, rtt_sample_us)
            self.srtt_us = rtt_sample_us if self.srtt_us is None else 0.875 * self.srtt_us + 0.125 * rtt_sample_us
        if loss_events and not self.in_recovery:
            self.on_loss(LossKind.FAST_RETRANSMIT, now)
            self.in_recovery = True

    def end_round(self, round_complete: bool) -> None:
        if round_complete:
            self.rounds += 1

    def ecn_reaction(self, ecn_marked_bytes: int, now: float) -> bool:
        """Call `on_ecn` for ECE feedback at most once per window of data.

        The window starts at the reduction: ACKs in the round after it still cover data sent
        before it (Linux's CWR state until high_seq), so the next eligible round is two on.
        """
        if ecn_marked_bytes <= 0 or self.in_recovery or self.rounds < self._ecn_cut_round + 2:
            return False
        self._ecn_cut_round = self.rounds
        self.reductions += 1
        self.on_ecn(now)
        return True

    def on_ecn(self, now: float = 0.0) -> None:
        """React to ECN congestion experienced (RFC 3168: as for a loss, without retransmitting)."""
        self.ssthresh = self.reno_ssthresh()
        self.cwnd = self.ssthresh

    def slow_start(self, acked_bytes: int) -> int:
        """Grow by acked bytes up to ssthresh (RFC 5681 with byte counting); returns the leftover."""
        if self.cwnd >= self.ssthresh:
            return acked_bytes
        room = self.ssthresh - self.cwnd
        grow = min(acked_bytes, room)
        self.cwnd += grow
        return acked_bytes - grow

    def reno_ssthresh(self) -> int:
        return max(self.cwnd // 2, self.min_window)

    def update_pacing(self) -> None:
        """rate = gain * cwnd / srtt (Linux's tcp_update_pacing_rate gains: 2 in slow start, 1.2 after)."""
        if self.srtt_us:
            gain = self.pacing_gain_ss if self.in_slow_start else self.pacing_gain_ca
            self.rate = gain * self.cwnd / (self.srtt_us / 1e6)

    # --- swapping ---
    def export_state(self) -> dict[str, Any]:
        return {
            "cwnd": self.cwnd, "ssthresh": self.ssthresh, "in_recovery": self.in_recovery,
            "min_rtt_us": self.min_rtt_us, "latest_rtt_us": self.latest_rtt_us, "srtt_us": self.srtt_us,
            "rate": self.rate,
        }

    def adopt(self, state: dict[str, Any], now: float = 0.0) -> None:
        """Take over a live connection from another algorithm (see `swap`)."""
        self.cwnd = max(int(state["cwnd"]), self.min_window)
        self.ssthresh = int(state["ssthresh"])
        self.in_recovery = bool(state["in_recovery"])
        self.min_rtt_us = state.get("min_rtt_us")
        self.latest_rtt_us = state.get("latest_rtt_us")
        self.srtt_us = state.get("srtt_us")
        self.rate = state.get("rate")

    def __repr__(self) -> str:
        ss = "inf" if self.ssthresh >= INFINITE_SSTHRESH else str(self.ssthresh)
        return f"<{type(self).__name__} cwnd={self.cwnd} ssthresh={ss} recovery={self.in_recovery}>"


# ---- registry ----------------------------------------------------------------------------------
_factories: dict[str, Callable[..., CongestionControl]] = {}


def register_congestion_control(name: str, factory: Callable[..., CongestionControl]) -> None:
    """Make `factory` (usually a CongestionControl subclass) available as `name`; re-registering replaces."""
    if not name or not isinstance(name, str):
        raise ValueError("a congestion control needs a non-empty name")
    _factories[name] = factory


def unregister_congestion_control(name: str) -> None:
    _factories.pop(name, None)


def available() -> list[str]:
    return sorted(_factories)


def create(name: str, *, mss: int = 1448, **params: Any) -> CongestionControl:
    """A fresh instance of the algorithm registered as `name`."""
    try:
        factory = _factories[name]
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}; available: {', '.join(available())}") from None
    return factory(mss=mss, **params)


def swap(old: CongestionControl, name: str, now: float = 0.0, **params: Any) -> CongestionControl:
    """A new algorithm `name` that continues where `old` is: same cwnd, ssthresh, recovery state."""
    new = create(name, mss=old.mss, **params)
    new.adopt(old.export_state(), now)
    new.on_init(now)
    return new
