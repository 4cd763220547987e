"""`etran demo`, the README's main job: a short run as a user would start it.

It must bring up its own bed, measure Homa and TCP over etran beside kernel TCP and the bare
AF_XDP floor in one invocation, print the comparison table, write the same table as JSON,
and leave nothing behind.  Small counts keep it well under a minute; no timing is asserted.
"""

from __future__ import annotations

import json

import pytest
from test_bench_all import leftovers, run_etran

from etran.bench import Invocation

EXPECTED = ("afxdp-spin", "tcp-blocking", "etran-udp-spin", "homa-spin", "homa-blocking", "etran-tcp-spin",
            "etran-tcp-blocking")


@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_demo_prints_and_writes_the_comparison(tmp_path, unique_name):
    out = tmp_path / "demo.json"
    p = run_etran(["demo", "--quick", "--count", "100", "--frames", "200", "--name", unique_name, "--json", str(out),
                   "--no-progress"], 180, "etran demo --quick")
    stdout, stderr = p.stdout, p.stderr
    assert leftovers(unique_name) == []
    assert "removed" in stdout and "(NOT fully)" not in stdout
    assert p.returncode == 0, (stdout[-4000:], stderr[-3000:])
    assert "64-byte round trips h1 <-> h2, measured in this run" in stdout
    inv = Invocation.load(out)
    assert inv.benchmark == "demo" and inv.status == "complete" and inv.baseline == "tcp-blocking"
    assert all(inv.get(name).ok for name in EXPECTED), [(s.name, s.error) for s in inv.series]
    rows = inv.params["comparison"]
    for name in EXPECTED:
        row = rows[name]
        assert row["p50_us"] > 0 and row["p99_us"] >= row["p50_us"]
        assert row["tcp_over_p50"] > 0 and row["over_floor_p50"] > 0
    assert rows["tcp-blocking"]["tcp_over_p50"] == 1.0 and rows["afxdp-spin"]["over_floor_p50"] == 1.0
    # the table's ratios are the invocation's own
    own = inv.get("tcp-blocking").stat("p50") / inv.get("homa-spin").stat("p50")
    assert abs(rows["homa-spin"]["tcp_over_p50"] - own) < 0.01
    steps = inv.params["step_results"]
    assert list(steps) == ["afxdp-burst", "kernel", "etran-udp", "homa", "tcp"] and all(r["ok"] for r in steps.values())
    assert steps["afxdp-burst"]["received"] == 200 and steps["afxdp-burst"]["mismatched"] == 0
    assert "identical and in order" in stdout
    json.dumps(inv.params)  # plain data
