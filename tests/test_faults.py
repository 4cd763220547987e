"""The switch's fault injector and ECN marker, measured end to end with UDP.

10,000 numbered datagrams go from h1 to h2 through the switch port p2 (whose eBPF program
injects the fault). Pacing keeps every other drop away: the checks below also demand that
the switch saw every packet, that the HTB qdisc dropped none and that the receiving socket
overflowed never, so every missing, duplicated or reordered packet is an injected one.

Tolerance: the count of an injected fault is binomial(n, p); we accept 5 standard
deviations, sqrt(n p (1 - p)) (for p = 0.05, n = 10,000: 500 +- 109). A false failure has a
probability below 1e-6 per check. Reordering holds a packet back only when none is held, and
the packet after a held one releases it instead of being held itself, so the expected count
of reordered packets is n p / (1 + p).
"""

from __future__ import annotations

import math

import pytest

from etran.testbed.traffic import ECT0, udp_counters, udp_flow

N = 10_000
P = 0.05


def within_5_sigma(observed: int, n: int, p: float) -> bool:
    mean = n * p
    sigma = math.sqrt(n * p * (1 - p))
    return abs(observed - mean) <= 5 * sigma


def run_flow(bed, **kwargs):
    h1, h2 = bed.hosts[:2]
    bed.reset_stats()
    before = udp_counters(h2)
    flow = udp_flow(h1, h2, n=N, **kwargs)
    after = udp_counters(h2)
    udp = {k: after[k] - before[k] for k in after}
    port = bed.switch_stats()["h2"]
    # nothing but the injector may lose packets
    assert flow.sent == N + flow.extra
    assert port["packets"] == flow.sent, (port, flow.sent)
    assert port["qdisc_drops"] == 0, port
    assert udp["RcvbufErrors"] == 0 and udp["MemErrors"] == 0, udp
    assert port["errors"] == 0, port
    return flow, port, udp


@pytest.mark.kernel
def test_no_faults_delivers_everything_in_order(testbed):
    bed = testbed(hosts=2)
    flow, port, udp = run_flow(bed)
    assert flow.missing == 0 and flow.duplicates == 0 and flow.out_of_order == 0
    assert (port["dropped"], port["duplicated"], port["reordered"], port["corrupted"]) == (0, 0, 0, 0)
    assert udp["InErrors"] == 0


@pytest.mark.kernel
def test_loss(testbed):
    bed = testbed(hosts=2, loss=P)
    flow, port, udp = run_flow(bed)
    assert flow.missing == port["dropped"], (flow.missing, port)
    assert within_5_sigma(flow.missing, flow.sent, P), f"lost {flow.missing} of {flow.sent}, expected {N * P:.0f}"
    assert flow.duplicates == 0 and flow.out_of_order == 0


@pytest.mark.kernel
def test_duplicate(testbed):
    bed = testbed(hosts=2, duplicate=P)
    flow, port, udp = run_flow(bed)
    assert flow.missing == 0
    assert flow.duplicates == port["duplicated"], (flow.duplicates, port)
    assert within_5_sigma(flow.duplicates, flow.sent, P), \
        f"duplicated {flow.duplicates} of {flow.sent}, expected {N * P:.0f}"


@pytest.mark.kernel
def test_reorder(testbed):
    bed = testbed(hosts=2, reorder=P)
    flow, port, udp = run_flow(bed)
    # the trailing packets release a packet held at the end of the flow: nothing is lost or
    # doubled, except that the very last packet may still be held
    held_at_end = flow.missing
    assert held_at_end in (0, 1) and flow.duplicates == 0
    if held_at_end:
        assert flow.sent - 1 not in flow.unique
    assert flow.out_of_order + held_at_end == port["reordered"], (flow.out_of_order, port)
    p_eff = P / (1 + P)
    assert within_5_sigma(port["reordered"], flow.sent, p_eff), \
        f"reordered {port['reordered']} of {flow.sent}, expected {N * p_eff:.0f}"
    # each reordered packet is swapped with exactly the next one
    for i, seq in enumerate(flow.received[1:], 1):
        if seq < flow.received[i - 1]:
            assert seq == flow.received[i - 1] - 1


@pytest.mark.kernel
def test_corrupt(testbed):
    bed = testbed(hosts=2, corrupt=P)
    flow, port, udp = run_flow(bed)
    # a flipped bit after the IP header fails the UDP checksum (or length): the kernel drops it
    assert flow.missing == port["corrupted"], (flow.missing, port)
    assert udp["InErrors"] == port["corrupted"], (udp, port)
    assert udp["InCsumErrors"] >= port["corrupted"] * 0.8, udp
    assert within_5_sigma(flow.missing, flow.sent, P), \
        f"corrupted {flow.missing} of {flow.sent}, expected {N * P:.0f}"
    assert flow.duplicates == 0


@pytest.mark.kernel
def test_probability_one(testbed):
    """1.0 means every packet (0xffffffff is 'always', not 1 - 2^-32)."""
    bed = testbed(hosts=2, duplicate=1.0)
    h1, h2 = bed.hosts
    flow = udp_flow(h1, h2, n=200, extra=0)
    assert len(flow.received) == 400 and flow.missing == 0
    bed.configure(duplicate=0.0, loss=1.0)
    flow = udp_flow(h1, h2, n=200, extra=0, idle_s=0.2)
    assert flow.received == []
    assert bed.switch_stats()["h2"]["dropped"] == 200


@pytest.mark.kernel
def test_ecn_marks_overload_not_light_load(testbed):
    # 10 Mbit/s ports, mark above 20 KB of phantom queue
    bed = testbed(hosts=2, rate_gbit=0.01, ecn_threshold_kb=20)
    h1, h2 = bed.hosts

    # light load: 200 x 242-byte frames, one per 2 ms = 0.97 Mbit/s, a tenth of the rate
    bed.reset_stats()
    light = udp_flow(h1, h2, n=200, size=200, burst=1, gap_s=0.002, tos=ECT0, extra=0)
    port = bed.switch_stats()["h2"]
    assert light.missing == 0 and len(light.tos) == 200
    assert all(t & 3 == ECT0 for t in light.tos)
    assert port["ce_marked"] == 0 and light.ce_marked == 0
    assert port["queue_max"] < 20_000

    # overload: 300 x 1042-byte frames back to back (~313 KB, 0.25 s of link time)
    bed.reset_stats()
    heavy = udp_flow(h1, h2, n=300, size=1000, burst=0, tos=ECT0, extra=0, idle_s=1.0)
    port = bed.switch_stats()["h2"]
    assert heavy.missing == 0 and port["qdisc_drops"] == 0
    # received CE packets passed the receiver's IPv4 header checksum check: the marker fixed it
    assert heavy.ce_marked == port["ce_marked"] > 0
    # the phantom queue crosses 20 KB after 20 frames at the latest: most of the rest are marked
    assert heavy.ce_marked >= 300 - 20 - 30, (heavy.ce_marked, port)
    assert port["queue_max"] > 200_000
    # not-ECT traffic is never marked
    bed.reset_stats()
    plain = udp_flow(h1, h2, n=100, size=1000, burst=0, tos=0, extra=0, idle_s=1.0)
    assert bed.switch_stats()["h2"]["ce_marked"] == 0 and plain.ce_marked == 0 and plain.missing == 0


@pytest.mark.kernel
def test_faults_change_on_a_live_bed(testbed):
    bed = testbed(hosts=2)
    h1, h2 = bed.hosts
    bed.configure(["h2"], loss=1.0)
    assert udp_flow(h1, h2, n=50, extra=0, idle_s=0.2).received == []
    # the other direction (port p1) is untouched
    assert len(udp_flow(h2, h1, n=50, extra=0, idle_s=0.2).received) == 50
    bed.configure(["h2"], loss=0.0)
    assert len(udp_flow(h1, h2, n=50, extra=0, idle_s=0.2).received) == 50
