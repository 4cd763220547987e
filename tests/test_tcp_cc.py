"""Congestion control: DCTCP (RFC 8257), Reno, CUBIC (RFC 9438), the registry and live swaps."""

from __future__ import annotations

import textwrap

import pytest

from etran.tcp import cc
from etran.tcp.cc import INFINITE_SSTHRESH, CongestionControl, LossKind

MSS = 1000


def rounds(c: CongestionControl, n: int, *, marked_fraction: float = 0.0, rtt_us: float = 100.0,
           t0: float = 0.0, rtt_s: float | None = None) -> float:
    """Feed n full rounds (acked = cwnd) to c; returns the time after them."""
    step = rtt_s if rtt_s is not None else rtt_us / 1e6
    t = t0
    for _ in range(n):
        t += step
        acked = c.cwnd
        c.on_round(acked, int(acked * marked_fraction), 0, rtt_us, t)
    return t


# ---- registry ------------------------------------------------------------------------------
def test_registry_has_the_three_and_rejects_unknown():
    assert {"reno", "dctcp", "cubic"} <= set(cc.available())
    assert isinstance(cc.create("dctcp", mss=MSS), cc.Dctcp)
    assert cc.create("cubic", mss=MSS).mss == MSS
    with pytest.raises(ValueError, match="unknown congestion control"):
        cc.create("vegas")


def test_registering_a_custom_algorithm():
    class Halfway(CongestionControl):
        name = "halfway"

        def on_round(self, acked_bytes, ecn_marked_bytes=0, loss_events=0, rtt_sample_us=None, now=0.0,
                     *, round_complete=True):
            self.begin_round(acked_bytes, ecn_marked_bytes, loss_events, rtt_sample_us, now)
            reduced = self.ecn_reaction(ecn_marked_bytes, now)
            if not (reduced or self.in_recovery) and self.slow_start(acked_bytes) and round_complete:
                self.cwnd += self.mss
            self.end_round(round_complete)
            return reduced

        def on_loss(self, kind=LossKind.FAST_RETRANSMIT, now=0.0):
            self.ssthresh = max(self.cwnd * 3 // 4, 2 * self.mss)
            self.cwnd = self.mss if kind is LossKind.RTO else self.ssthresh

    cc.register_congestion_control("halfway", Halfway)
    try:
        assert "halfway" in cc.available()
        c = cc.create("halfway", mss=MSS)
        assert c.cwnd == 10 * MSS
        c.on_loss()
        assert c.cwnd == 7500 and c.ssthresh == 7500
        rounds(c, 3)
        assert c.cwnd == 7500 + 3 * MSS
        d = cc.swap(c, "dctcp")
        assert d.cwnd == c.cwnd and d.ssthresh == c.ssthresh
    finally:
        cc.unregister_congestion_control("halfway")
    assert "halfway" not in cc.available()


def test_docstring_example_runs():
    ns: dict = {}
    doc = cc.base.__doc__
    assert doc is not None
    start = doc.rindex("\n", 0, doc.index("from etran.tcp.cc import")) + 1
    code = textwrap.dedent(doc[start:doc.index("A live connection")])
    exec(code, ns)
    try:
        assert ns["cc"].name == "halfway" and ns["cc"].mss == 1448
    finally:
        cc.unregister_congestion_control("halfway")


# ---- DCTCP ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.6, 1.0])
def test_dctcp_alpha_converges_to_marked_fraction(fraction):
    c = cc.create("dctcp", mss=MSS)
    for _ in range(300):
        c.on_round(100_000, int(100_000 * fraction), round_complete=True)
    assert c.alpha == pytest.approx(fraction, abs=1e-6)
    assert c.last_fraction == pytest.approx(fraction)


def test_dctcp_alpha_update_rule_and_gain():
    c = cc.create("dctcp", mss=MSS)
    assert c.alpha == 1.0 and c.g == 1 / 16
    c.on_round(10_000, 0)
    assert c.alpha == pytest.approx(15 / 16)
    c.on_round(10_000, 5_000)
    assert c.alpha == pytest.approx((15 / 16) ** 2 + 0.5 / 16)
    # within a window (round not complete) alpha does not move; the window's bytes are pooled
    a = c.alpha
    c.on_round(5_000, 5_000, round_complete=False)
    assert c.alpha == a
    c.on_round(15_000, 0, round_complete=True)
    assert c.alpha == pytest.approx(15 / 16 * a + (5_000 / 20_000) / 16)


def test_dctcp_cut_is_alpha_over_two():
    c = cc.create("dctcp", mss=MSS, initial_alpha=0.5)
    c.cwnd, c.ssthresh = 100 * MSS, 50 * MSS
    c.on_round(10_000, 1_000, round_complete=False)      # alpha unchanged in mid-window
    assert c.cwnd == int(100 * MSS * (1 - 0.25))
    assert c.ssthresh == c.cwnd
    # with the window complete, alpha is updated first and the cut uses the new value
    c2 = cc.create("dctcp", mss=MSS, initial_alpha=0.5)
    c2.cwnd, c2.ssthresh = 100 * MSS, 50 * MSS
    c2.on_round(10_000, 10_000, round_complete=True)
    new_alpha = 15 / 16 * 0.5 + 1 / 16
    assert c2.alpha == pytest.approx(new_alpha)
    assert c2.cwnd == int(100 * MSS * (1 - new_alpha / 2))


def test_dctcp_cuts_at_most_once_per_window():
    c = cc.create("dctcp", mss=MSS, initial_alpha=1.0)
    c.cwnd = c.ssthresh = 64 * MSS
    assert c.on_round(1_000, 1_000, round_complete=False) is True
    assert c.cwnd == 32 * MSS
    for _ in range(5):
        assert c.on_round(1_000, 1_000, round_complete=False) is False
    assert c.cwnd == 32 * MSS
    # the round after the cut still acknowledges data sent before it: no new cut
    assert c.on_round(1_000, 1_000, round_complete=True) is False
    assert c.on_round(1_000, 1_000, round_complete=True) is False
    assert c.on_round(1_000, 1_000, round_complete=True) is True
    assert c.reductions == 2


def test_dctcp_slow_start_then_linear_without_marks():
    c = cc.create("dctcp", mss=MSS)
    assert c.cwnd == 10 * MSS and c.ssthresh == INFINITE_SSTHRESH and c.in_slow_start
    rounds(c, 4)
    assert c.cwnd == 160 * MSS                          # doubling per round
    c.on_round(c.cwnd, 1)                               # first mark: cut and leave slow start
    assert not c.in_slow_start
    w = c.cwnd
    rounds(c, 2)                                        # the round after the cut ignores marks anyway
    rounds(c, 5)
    assert c.cwnd == w + 7 * MSS                        # +1 MSS per round


def test_dctcp_loss_is_reno_like():
    c = cc.create("dctcp", mss=MSS, initial_alpha=0.1)
    c.cwnd = 100 * MSS
    c.on_loss(LossKind.FAST_RETRANSMIT)
    assert c.cwnd == c.ssthresh == 50 * MSS
    c.on_loss(LossKind.RTO)
    assert c.cwnd == MSS and c.ssthresh == 25 * MSS


def test_dctcp_steady_state_keeps_window_near_fixed_point():
    # with a constant marked fraction F, alpha -> F and the window settles to a sawtooth
    c = cc.create("dctcp", mss=MSS)
    c.cwnd = c.ssthresh = 200 * MSS
    for _ in range(400):
        c.on_round(c.cwnd, int(c.cwnd * 0.2))
    assert c.alpha == pytest.approx(0.2, abs=0.01)
    assert c.cwnd >= c.min_window


# ---- Reno ----------------------------------------------------------------------------------
def test_reno_halves_on_loss_and_collapses_on_rto():
    c = cc.create("reno", mss=MSS)
    rounds(c, 3)
    assert c.cwnd == 80 * MSS
    c.on_loss(LossKind.FAST_RETRANSMIT)
    assert c.cwnd == c.ssthresh == 40 * MSS
    rounds(c, 10)
    assert c.cwnd == 50 * MSS
    c.on_loss(LossKind.RTO)
    assert c.cwnd == MSS and c.ssthresh == 25 * MSS
    rounds(c, 5)                                       # 1, 2, 4, 8, 16, then capped at ssthresh
    assert c.cwnd == 25 * MSS
    rounds(c, 1)
    assert c.cwnd == 26 * MSS


def test_reno_min_window_and_loss_events_in_round():
    c = cc.create("reno", mss=MSS)
    c.cwnd = 3 * MSS
    c.on_loss()
    assert c.cwnd == 2 * MSS                          # never below two segments
    c = cc.create("reno", mss=MSS)
    c.cwnd = 40 * MSS
    c.on_round(5 * MSS, 0, loss_events=3)             # several losses in one round: one reduction
    assert c.cwnd == 20 * MSS and c.in_recovery
    c.on_round(5 * MSS, 0, loss_events=1)
    assert c.cwnd == 20 * MSS                         # no growth and no new cut in recovery
    c.on_recovery_end()
    c.on_round(20 * MSS, 0)
    assert c.cwnd == 21 * MSS


def test_reno_classic_ecn_halves_once_per_window():
    c = cc.create("reno", mss=MSS)
    c.cwnd = 40 * MSS
    assert c.on_round(MSS, MSS) is True
    assert c.cwnd == 20 * MSS
    assert c.on_round(MSS, MSS) is False


def test_pacing_rate_follows_cwnd_over_srtt():
    c = cc.create("reno", mss=MSS)
    c.on_round(MSS, 0, rtt_sample_us=1000.0)
    assert c.rate == pytest.approx(2.0 * c.cwnd / 1e-3)        # slow start gain 2
    c.on_loss()
    c.on_round(MSS, 0, rtt_sample_us=1000.0)
    assert c.rate == pytest.approx(1.2 * c.cwnd / c.srtt_us * 1e6)


# ---- CUBIC ---------------------------------------------------------------------------------
def rfc_w_cubic(t, w_max, cwnd_epoch, c=0.4):
    k = ((w_max - cwnd_epoch) / c) ** (1 / 3)
    return c * (t - k) ** 3 + w_max


def test_cubic_reduction_and_k():
    c = cc.create("cubic", mss=MSS)
    c.cwnd = 100 * MSS
    c.on_loss()
    assert c.cwnd == c.ssthresh == 70 * MSS               # beta_cubic = 0.7
    c.on_recovery_end(1.0)
    c.on_round(MSS, 0, rtt_sample_us=100_000, now=1.0)
    assert c.w_max == pytest.approx(100)
    assert c.k == pytest.approx((100 * 0.3 / 0.4) ** (1 / 3))        # RFC 9438 eq. 2
    assert c.w_cubic(0) == pytest.approx(70)
    assert c.w_cubic(c.k) == pytest.approx(100)


def test_cubic_follows_the_rfc_curve():
    rtt = 0.1
    c = cc.create("cubic", mss=MSS)
    c.cwnd = 100 * MSS
    c.on_loss()
    c.on_round(1, 0, rtt_sample_us=rtt * 1e6, now=0.0)   # starts the epoch at t = 0
    t, w_est, alpha = 0.0, 70.0, 3 * 0.3 / 1.7
    checked = 0
    for i in range(1, 81):
        t = i * rtt
        c.on_round(c.cwnd, 0, rtt_sample_us=rtt * 1e6, now=t)
        w_est += 1.0 if w_est >= 100 else alpha            # Reno-friendly estimate, one window per round
        if i % 10:
            continue
        curve = rfc_w_cubic(t + rtt, 100, 70)               # target: W_cubic(t + RTT)
        if t <= 5.0:                                        # concave up to and past K = 4.2 s: the curve rules
            assert w_est < rfc_w_cubic(t, 100, 70)
            assert c.cwnd / MSS == pytest.approx(curve, abs=0.5), t
        else:                                               # the larger of the curve and W_est (section 4.3)
            assert c.cwnd / MSS == pytest.approx(max(curve, w_est), abs=0.5), t
        checked += 1
    assert checked == 8
    assert c.cwnd > 100 * MSS                            # past W_max: convex probing


def test_cubic_reno_friendly_region():
    rtt = 0.001                                          # short RTT: Reno's line beats the cubic curve
    c = cc.create("cubic", mss=MSS)
    c.cwnd = 100 * MSS
    c.on_loss()
    c.on_round(1, 0, rtt_sample_us=rtt * 1e6, now=0.0)
    w_est, alpha = 70.0, 3 * 0.3 / 1.7
    t = 0.0
    for _ in range(100):
        t += rtt
        w_before = c.cwnd / MSS
        c.on_round(c.cwnd, 0, rtt_sample_us=rtt * 1e6, now=t)
        w_est += (1.0 if w_est >= 100 else alpha) * w_before / w_before
    assert rfc_w_cubic(t, 100, 70) < w_est
    assert c.cwnd / MSS == pytest.approx(w_est, abs=1.0)


def test_cubic_fast_convergence():
    c = cc.create("cubic", mss=MSS)
    c.cwnd = 100 * MSS
    c.on_loss()
    c.on_recovery_end()
    c.on_round(MSS, 0, rtt_sample_us=1e5, now=0.0)
    c.on_loss()                                          # before regaining W_max = 100
    assert c.w_max == pytest.approx(c.cwnd / 0.7 * (1 + 0.7) / 2 / MSS, rel=0.01)


def test_cubic_rto_slow_starts_to_ssthresh():
    c = cc.create("cubic", mss=MSS)
    c.cwnd = 100 * MSS
    c.on_loss(LossKind.RTO)
    assert c.cwnd == MSS and c.ssthresh == 70 * MSS
    rounds(c, 6, rtt_s=0.01)
    assert c.cwnd >= 64 * MSS


# ---- swap ----------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [("dctcp", "cubic"), ("cubic", "reno"), ("reno", "dctcp"), ("dctcp", "reno")])
def test_swap_keeps_window(src, dst):
    a = cc.create(src, mss=MSS)
    rounds(a, 3, rtt_us=500)
    a.on_loss()
    w, s = a.cwnd, a.ssthresh
    b = cc.swap(a, dst, now=1.0)
    assert type(b) is type(cc.create(dst, mss=MSS))
    assert (b.cwnd, b.ssthresh, b.in_recovery, b.mss) == (w, s, a.in_recovery, MSS)
    assert b.min_rtt_us == a.min_rtt_us
    b.on_recovery_end()
    rounds(b, 2, rtt_us=500, t0=1.0)
    assert b.cwnd >= w                                  # keeps going from where it was


def test_swap_carries_dctcp_alpha_between_dctcp_instances():
    a = cc.create("dctcp", mss=MSS)
    for _ in range(50):
        a.on_round(10_000, 3_000)
    b = cc.swap(a, "dctcp")
    assert b.alpha == a.alpha
