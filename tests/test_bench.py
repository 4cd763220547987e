"""The benchmark framework (etran.bench) and `etran bench afxdp` (`etran demo`: test_demo.py).

Unit tests: exact percentiles, the result model's JSON round trip, the ratio guard that
refuses series of different invocations, the shared runner (with a pure-Python fake
benchmark), frames.  Kernel tests run the real commands in a subprocess, as a user
would, with small counts, and check their JSON and that no namespace is left behind
(also after Ctrl-C).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from etran.bench import (
    BenchError,
    CrossInvocationRatioError,
    Invocation,
    LatencyRecorder,
    LatencySummary,
    Series,
    percentile,
    ratio,
)
from etran.bench.frames import echo_reply, ip_checksum, pattern_payload, udp_frame
from etran.bench.stats import rank

ROOT = Path(__file__).resolve().parents[1]
AFXDP_SERIES = ["afxdp-spin", "c-afxdp", "udp-blocking", "tcp-blocking", "tcp-spin",  # then daemons start
                "c-etran", "etran-udp-spin", "etran-udp-blocking"]


# ---- percentiles --------------------------------------------------------------------------

def test_percentiles_on_known_data():
    data = list(range(1, 1001))  # 1..1000
    random.Random(1).shuffle(data)
    s = LatencySummary.of(data)
    assert (s.count, s.min, s.max) == (1000, 1, 1000)
    assert (s.p50, s.p90, s.p99, s.p999) == (500, 900, 990, 999)
    assert s.mean == 500.5
    assert s.stdev == pytest.approx(288.8194360957494)


def test_percentile_ranks_are_exact_integers():
    # 99.9 % of 2,000 is rank 1,998 exactly; a float computation can land on either side
    assert rank(2000, "p999") == 1998
    assert rank(2000, Fraction(999, 1000)) == 1998
    assert rank(2000, 0.999) == 1998
    assert rank(2000, "99.9%") == 1998
    assert rank(1000, "p50") == 500 and rank(1001, "p50") == 501
    assert rank(1, "p999") == 1
    s = sorted(range(2000))
    assert percentile(s, "p999") == 1997 and percentile(s, "p50") == 999
    # fewer samples than 1/(1-p): the percentile is the maximum
    assert LatencySummary.of(range(300)).p999 == 299
    assert LatencySummary.of([7]).p50 == LatencySummary.of([7]).p999 == 7
    with pytest.raises(ValueError):
        LatencySummary.of([])
    with pytest.raises(ValueError):
        rank(10, 1.5)


@pytest.mark.parametrize("seed", range(5))
def test_percentile_matches_nearest_rank_definition(seed):
    """The p-th percentile is the smallest sample x with #(samples <= x) >= p * n."""
    rng = random.Random(seed)
    data = [rng.randint(1, 10**6) for _ in range(rng.randint(1, 3000))]
    s = sorted(data)
    for p in (Fraction(1, 2), Fraction(9, 10), Fraction(99, 100), Fraction(999, 1000)):
        want = min(x for x in s if sum(1 for y in s if y <= x) >= p * len(s)) if len(s) < 300 else \
            next(x for i, x in enumerate(s) if (i + 1) >= p * len(s))
        assert percentile(s, p) == want


def test_recorder():
    rec = LatencyRecorder()
    append = rec.append
    for v in (30, 10, 20):
        append(v)
    rec.record(40)
    assert len(rec) == 4 and rec.tolist() == [30, 10, 20, 40]
    assert rec.summary().p50 == 20 and rec.summary().max == 40
    t0 = time.perf_counter_ns()
    append(time.perf_counter_ns() - t0)
    assert rec.samples[-1] >= 0


# ---- results, JSON, ratio guard ---------------------------------------------------------

def _invocation(values: dict[str, list[int]], baseline: str | None = None) -> Invocation:
    inv = Invocation(benchmark="unit", params={"count": 3}, baseline=baseline, machine={"kernel": "x", "cpus": 2})
    for name, samples in values.items():
        inv.new_series(name, name.upper(), samples=samples, info={"lost": 0}, keep_samples=True)
    return inv


def test_ratio_within_one_invocation():
    inv = _invocation({"fast": [10, 20, 30], "slow": [100, 200, 300]}, baseline="slow")
    assert ratio(inv.get("fast"), inv.get("slow")) == pytest.approx(0.1)
    assert ratio(inv.get("fast"), inv.get("slow"), "p999") == pytest.approx(0.1)
    r = inv.ratios()
    assert r["slow"] == {"p50": 1.0, "p99": 1.0, "p999": 1.0}
    assert r["fast"]["p50"] == pytest.approx(0.1)


def test_ratio_refuses_series_of_different_invocations(tmp_path):
    a = _invocation({"afxdp": [10, 20, 30], "tcp": [100, 200, 300]})
    b = _invocation({"afxdp": [11, 21, 31], "tcp": [110, 210, 310]})
    with pytest.raises(CrossInvocationRatioError, match="same invocation"):
        ratio(a.get("afxdp"), b.get("tcp"))
    with pytest.raises(CrossInvocationRatioError):
        ratio(b.get("tcp"), a.get("tcp"))
    # the same after a trip through JSON files: ids travel with the series
    pa, pb = a.write(tmp_path / "a.json"), b.write(tmp_path / "b.json")
    la, lb = Invocation.load(pa), Invocation.load(pb)
    assert ratio(la.get("afxdp"), la.get("tcp")) == pytest.approx(0.1)
    with pytest.raises(CrossInvocationRatioError):
        ratio(la.get("afxdp"), lb.get("tcp"))
    # a series without an invocation id is never compared either
    orphan = Series("x", "x", "", summary=LatencySummary.of([1, 2, 3]))
    with pytest.raises(CrossInvocationRatioError):
        ratio(orphan, Series("y", "y", "", summary=LatencySummary.of([1, 2, 3])))
    # and an invocation does not take in another's series
    with pytest.raises(BenchError, match="never merged"):
        a.add(b.get("afxdp"))
    assert issubclass(CrossInvocationRatioError, BenchError)


def test_json_round_trip(tmp_path):
    inv = _invocation({"a": [5, 1, 3, 2, 4], "b": [50, 10, 30, 20, 40]}, baseline="b")
    inv.new_series("broken", "Broken", samples=[], error="server did not start")
    inv.notes.append("a note")
    inv.finish("complete")
    path = inv.write(out_dir=tmp_path)
    assert path.parent == tmp_path and path.name.startswith("unit-") and inv.id[:8] in path.name
    data = json.loads(path.read_text())
    assert data["schema"] == "etran.bench/1" and data["invocation_id"] == inv.id
    assert {s["invocation_id"] for s in data["series"]} == {inv.id}
    assert data["series"][0]["summary"]["p50"] == 3 and data["series"][0]["samples"] == [5, 1, 3, 2, 4]
    assert data["ratios"]["a"]["p50"] == pytest.approx(0.1) and "broken" not in data["ratios"]
    back = Invocation.load(path)
    assert back.to_dict() == inv.to_dict()
    assert back.get("broken").error == "server did not start" and not back.get("broken").ok
    with pytest.raises(BenchError):
        back.get("broken").stat("p50")
    # without raw samples the summary stays
    slim = json.loads(inv.to_json(with_samples=False))
    assert "samples" not in slim["series"][0] and slim["series"][0]["summary"]["count"] == 5
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    with pytest.raises(BenchError, match="not an etran benchmark result"):
        Invocation.load(tmp_path / "bad.json")


def test_machine_info_has_kernel_cpus_python():
    from etran.bench.results import machine_info

    m = machine_info()
    assert m["kernel"] == os.uname().release and m["cpus"] == os.cpu_count()
    assert m["python"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")


def test_table_shows_ratios_to_the_baseline():
    from rich.console import Console

    from etran.bench.report import table

    inv = _invocation({"afxdp": [16_000] * 10, "tcp": [128_000] * 10}, baseline="tcp")
    con = Console(record=True, width=200)
    con.print(table(inv))
    text = con.export_text()
    assert "AFXDP" in text and "16.0" in text and "128" in text
    assert "0.12" in text and "1.00" in text and "ratio to TCP" in text
    con = Console(record=True, width=80)
    con.print(table(inv, compact=True))
    text = con.export_text()
    assert "afxdp" in text and "0.12" in text and "…" not in text


def test_table_and_json_show_ratios_to_reference_series(tmp_path):
    from rich.console import Console

    from etran.bench.report import table

    inv = _invocation({"py": [20_000] * 10, "c": [10_000] * 10, "ce": [16_000] * 10, "tcp": [128_000] * 10},
                      baseline="tcp")
    inv.references = {"c": "C", "ce": "Ce", "missing": "M"}
    con = Console(record=True, width=200)
    con.print(table(inv))
    text = con.export_text()
    assert "xC p50" in text and "xC p999" in text and "xCe p50" in text and "xCe p99" not in text
    assert "xM" not in text  # a reference that did not run has no columns
    assert "2.00" in text and "1.25" in text and "ratio to C" in text
    con = Console(record=True, width=80)
    con.print(table(inv, compact=True))
    text = con.export_text()
    assert "xC p50" in text and "xC p99" not in text and "xCe" not in text
    data = json.loads(inv.to_json())
    assert data["references"] == {"c": "C", "ce": "Ce", "missing": "M"}
    assert data["ratios_to"]["c"]["py"]["p50"] == pytest.approx(2.0) and data["ratios_to"]["missing"] == {}
    back = Invocation.load(inv.write(tmp_path / "r.json"))
    assert back.references == inv.references and back.to_dict() == inv.to_dict()


# ---- the shared runner, with a fake benchmark ------------------------------------------

def test_run_benchmark_quick_json_and_registry(tmp_path, capsys):
    import argparse

    from etran.bench import registry

    runs = []

    @registry.register_benchmark
    class Fake(registry.Benchmark):
        name = "unit-fake"
        help = "pure Python"
        baseline = "slow"
        count, quick_count, warmup, quick_warmup = 1000, 10, 100, 1

        def run(self, ctx):
            runs.append((ctx.count, ctx.warmup, ctx.quick))
            ctx.invocation.new_series("fast", "fast", samples=range(1, ctx.count + 1))
            ctx.invocation.new_series("slow", "slow", samples=range(10, 10 * ctx.count + 1, 10))

    try:
        parser = argparse.ArgumentParser()
        registry.add_common_arguments(parser, Fake)
        args = parser.parse_args(["--quick", "--out", str(tmp_path), "--no-progress"])
        inv, path = registry.run_benchmark(Fake, args)
        assert runs == [(10, 1, True)]
        assert inv.status == "complete" and path.parent == tmp_path
        data = json.loads(path.read_text())
        assert data["params"]["count"] == 10 and data["params"]["quick"] is True
        assert data["series"][0]["summary"]["count"] == 10
        assert data["ratios"]["fast"]["p50"] == pytest.approx(0.1)
        assert "wrote" in capsys.readouterr().out
        args = parser.parse_args(["--count", "7", "--json", str(tmp_path / "x.json"), "--no-progress"])
        registry.run_benchmark(Fake, args)
        assert runs[-1] == (7, 100, False)
        assert json.loads((tmp_path / "x.json").read_text())["series"][1]["summary"]["count"] == 7
        with pytest.raises(ValueError):
            registry.register_benchmark(type("Dup", (registry.Benchmark,), {"name": "unit-fake"}))
    finally:
        registry.BENCHMARKS.pop("unit-fake", None)


def test_cli_list_and_show(tmp_path):
    inv = _invocation({"afxdp-spin": [16_000] * 3, "tcp-blocking": [128_000] * 3}, baseline="tcp-blocking")
    inv.benchmark = "afxdp"
    path = inv.write(tmp_path / "r.json")
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "etran", "bench", "list"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=env)
    assert out.returncode == 0 and "afxdp" in out.stdout
    out = subprocess.run([sys.executable, "-m", "etran", "bench", "show", str(path)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert "AFXDP-SPIN" in out.stdout and "0.12" in out.stdout


# ---- frames ----------------------------------------------------------------------------

def test_isolation_summary_compares_each_victim_with_itself_alone():
    from etran.bench.isolation import VICTIMS, summary_lines

    assert {"etran-udp", "homa", "etran-tcp"} <= set(VICTIMS)
    inv = Invocation(benchmark="isolation", baseline="alone", params={"link_rate_gbit": 0.1, "flood_limit": "25mbit"})
    base = [1000 + i for i in range(100)]
    for pre, group, limited, _ in VICTIMS.values():
        inv.new_series(f"{pre}alone", f"{group} alone", samples=base, params={"group": group})
        for flood, factor in (("flood", 10), ("flood-limited", 2)) if limited else (("flood", 10),):
            inv.new_series(f"{pre}{flood}", f"{group} {flood}", samples=[x * factor for x in base],
                           params={"group": group}, info={"flood_gbit_s": 0.3, "hook_drops": 0})
    lines = summary_lines(inv)
    assert len(lines) == sum(2 if v.limited else 1 for v in VICTIMS.values())
    tcp = [ln for ln in lines if ln.startswith("etran TCP victim")]
    assert len(tcp) == 2 and "p50 10.0x" in tcp[0] and "limited to 25mbit, vs alone: p50 2.00x" in tcp[1]


def test_a_starved_victim_is_a_result_not_a_failure():
    """A flood can starve a victim outright (etran TCP at 1,000 requests/s behind a 3x overloaded
    drop-tail port: every request waits past the timeout). That is what the isolation bench
    measures, so the series is settled, the line under the table says so, and the
    invocation is complete; a point that measured nothing for any other reason stays a failure."""
    from etran.bench.isolation import summary_lines

    inv = Invocation(benchmark="isolation", baseline="alone", params={"link_rate_gbit": 0.1, "flood_limit": "25mbit"})
    inv.new_series("tcp-alone", "TCP alone", samples=[1000 + i for i in range(100)], params={"group": "etran TCP"})
    starved = inv.new_series("tcp-flood", "TCP flood", samples=[], params={"group": "etran TCP"},
                             info={"starved": True, "switch_drops": 1234},
                             error="starved: none of 964 requests completed within 3 s")
    broken = inv.new_series("x", "x", samples=[], error="no request completed (5 lost)")
    assert starved.settled and not starved.ok and not broken.settled
    assert summary_lines(inv) == ["etran TCP victim while a neighbour is flooding: starved: none of 964 requests "
                                  "completed within 3 s (the switch port dropped 1234 packets)"]


def test_benchmarks_use_the_sockets_public_api():
    """No reaching into etran sockets' private state (sock._h, ._d, ._inbox ...): the benches
    use `stats`, `fileno()`, `UdpSocket(queue=...)` and `etran.tcp.ready_connections`."""
    import re

    private = re.compile(r"\b(?:sock|socks\[\w*\]|s|self\.sock|c|conn)\._[a-z]\w*")
    found = [f"{f.name}:{i}: {line.strip()}" for f in sorted((ROOT / "etran" / "bench").glob("*.py"))
             for i, line in enumerate(f.read_text().splitlines(), 1) if private.search(line)]
    assert found == []


def test_udp_frame_and_echo_reply():
    payload = bytes(pattern_payload(64, seq=7))
    f = udp_frame("02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.1", "198.18.0.2", 9001, 9000, payload)
    assert len(f) == 106 and f[12:14] == b"\x08\x00"
    assert ip_checksum(f[14:34]) == 0  # a valid header sums to 0xffff
    assert struct.unpack_from("!Q", f, 42)[0] == 7
    r = echo_reply(f)
    assert len(r) == len(f) and ip_checksum(r[14:34]) == 0
    assert r[0:6] == f[6:12] and r[6:12] == f[0:6]
    assert r[26:30] == f[30:34] and r[30:34] == f[26:30]
    assert struct.unpack_from("!HH", r, 34) == (9000, 9001)
    assert r[42:] == payload and echo_reply(r) == f
    assert socket.inet_ntoa(r[26:30]) == "198.18.0.2"


# ---- kernel: the real commands ----------------------------------------------------------

def _leftovers(name: str) -> list[str]:
    found = [e for e in os.listdir("/run/netns") if e.startswith(name + "-")] if os.path.isdir("/run/netns") else []
    if os.path.exists(f"/sys/fs/bpf/etran/{name}"):
        found.append(f"/sys/fs/bpf/etran/{name}")
    return found


def _etran(*argv: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etran", *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.kernel
@pytest.mark.timeout(180)
def test_bench_afxdp_quick_end_to_end(tmp_path, unique_name):
    out = tmp_path / "afxdp.json"
    p = _etran("bench", "afxdp", "--quick", "--count", "300", "--warmup", "50", "--name", unique_name,
               "--json", str(out), "--no-progress", timeout=150)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _leftovers(unique_name) == []
    data = json.loads(out.read_text())
    inv = Invocation.load(out)
    assert inv.status == "complete" and inv.benchmark == "afxdp" and inv.baseline == "tcp-blocking"
    assert data["params"]["count"] == 300 and data["params"]["testbed"]["name"] == unique_name
    assert data["machine"]["kernel"] == os.uname().release and data["machine"]["python"]
    assert [s.name for s in inv.series] == AFXDP_SERIES
    for s in inv.series:
        assert s.ok, (s.name, s.error, s.info)
        assert s.invocation_id == inv.id
        assert s.summary.count == 300 and 0 < s.summary.p50 <= s.summary.p99 <= s.summary.p999 <= s.summary.max
        assert s.info["lost"] == 0 and not s.info["truncated"]
        assert s.info["server_echoed"], s.info  # the server reported too: it ended cleanly
    assert inv.get("afxdp-spin").info["client_xsk_mode"] in ("copy", "zerocopy")
    assert data["ratios"]["tcp-blocking"] == {"p50": 1.0, "p99": 1.0, "p999": 1.0}
    assert set(data["ratios"]) == set(AFXDP_SERIES)
    for line in ("AF_XDP busy-poll", "kernel UDP blocking", "kernel TCP blocking", "kernel TCP non-blocking",
                 "C AF_XDP busy-poll (the C floor)", "etran UDP busy-poll", "etran UDP blocking"):
        assert line in p.stdout
    assert "x p50" in p.stdout and "xC p50" in p.stdout and str(out) in p.stdout.replace("\n", "")
    assert data["params"]["testbed"]["daemons"] is True
    assert data["references"] == {"c-afxdp": "C", "c-etran": "Ce"}
    assert data["ratios_to"]["c-afxdp"]["c-afxdp"] == {"p50": 1.0, "p99": 1.0, "p999": 1.0}
    assert set(data["ratios_to"]["c-afxdp"]) == set(AFXDP_SERIES)
    assert inv.get("c-afxdp").info["client_path"] == "nic" and inv.get("c-etran").info["client_path"] == "etran"
    assert "afxdp-spin / c-afxdp" in p.stdout and "etran-udp-spin / afxdp-spin" in p.stdout


@pytest.mark.kernel
@pytest.mark.timeout(120)
def test_bench_afxdp_ctrl_c_tears_the_bed_down(tmp_path, unique_name):
    """Ctrl-C in the middle of a series: the workers stop, the bed goes, the partial result is written."""
    out = tmp_path / "partial.json"
    proc = subprocess.Popen([sys.executable, "-m", "etran", "bench", "afxdp", "--series", "tcp-blocking",
                             "--count", "1000000", "--time-limit", "60", "--name", unique_name, "--json", str(out),
                             "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        from etran.testbed.bed import pids_in_netns

        # wait until the client runs in h1
        while time.monotonic() < deadline and not (os.path.exists(f"/run/netns/{unique_name}-h1")
                                                   and pids_in_netns(f"{unique_name}-h1")):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert _leftovers(unique_name) == []
    data = json.loads(out.read_text())
    assert data["status"] == "interrupted"
