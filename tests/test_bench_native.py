"""The C floor (etran/bench/c/xdp_echo.c, etran.bench.native) and the etran UDP series of `etran bench afxdp`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etran.bench import native
from etran.bench.registry import get
from etran.bench.results import Invocation
from etran.errors import BuildError

ROOT = Path(__file__).resolve().parents[1]


def _leftovers(name: str) -> list[str]:
    found = [e for e in os.listdir("/run/netns") if e.startswith(name + "-")] if os.path.isdir("/run/netns") else []
    if os.path.exists(f"/sys/fs/bpf/etran/{name}"):
        found.append(f"/sys/fs/bpf/etran/{name}")
    if os.path.isdir("/run/etran"):
        found += [f"/run/etran/{e}" for e in os.listdir("/run/etran") if e.startswith(name + "-")]
    return found


# ---- building ----------------------------------------------------------------------------

def test_c_program_builds_and_rebuilds_when_its_source_changes(tmp_path):
    src = tmp_path / "src" / "xdp_echo.c"
    src.parent.mkdir()
    shutil.copy(native.source_path("xdp_echo"), src)
    cache = tmp_path / "cache"
    first = native.compile_program(src, cache=cache)
    assert first.parent == cache and first.name.startswith("xdp_echo-") and os.access(first, os.X_OK)
    out = subprocess.run([str(first), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--server|--client" in out.stdout
    mtime = first.stat().st_mtime_ns
    assert native.compile_program(src, cache=cache) == first and first.stat().st_mtime_ns == mtime  # cached
    src.write_text(src.read_text() + "\n/* changed */\n")
    second = native.compile_program(src, cache=cache)
    assert second != first and second.exists() and first.exists()
    # a header beside the source is part of the key too
    (src.parent / "extra.h").write_text("/* a header */\n")
    assert native.compile_program(src, cache=cache) not in (first, second)
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*.tmp"))
    # the real one, as `etran build` makes it
    built = native.build_all()
    assert [p.name.split("-")[0] for p in built] == ["xdp_echo"] and all(os.access(p, os.X_OK) for p in built)
    assert native.binary("xdp_echo") == built[0]


def test_build_errors_say_what_to_install(tmp_path, monkeypatch):
    bad = tmp_path / "needs_header.c"
    bad.write_text("#include <linux/no_such_header_etran.h>\nint main(void) { return 0; }\n")
    with pytest.raises(BuildError, match="linux-libc-dev"):
        native.compile_program(bad, cache=tmp_path / "c")
    with pytest.raises(BuildError, match="known programs: .*xdp_echo"):
        native.source_path("nope")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(BuildError, match="apt-get install gcc"):
        native.compile_program(native.source_path("xdp_echo"), cache=tmp_path / "c")


def test_c_program_rejects_bad_arguments():
    exe = native.binary("xdp_echo")
    for argv in ([], ["--client", "--xsk-fd", "3"], ["--server", "--ifname", "lo"],
                 ["--client", "--ifname", "lo", "--xskmap-fd", "99", "--payload", "4"]):
        p = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=10)
        assert p.returncode == 1, argv
        assert p.stdout.startswith("ERROR "), (argv, p.stdout)


# ---- on a test bed -----------------------------------------------------------------------

@pytest.mark.kernel
@pytest.mark.timeout(90)
def test_c_echo_end_to_end_leaves_nothing_behind(unique_name):
    from etran.bench.afxdp import C_AFXDP, run_echo_series
    from etran.bench.bed import own_testbed
    from etran.bpf.attach import xdp_program_id
    from etran.testbed.bed import pids_in_netns

    inv = Invocation(benchmark="unit-c")
    with own_testbed(unique_name) as bed:
        s = run_echo_series(bed, C_AFXDP, inv, count=300, warmup=50, time_limit=20, rtt_timeout=0.5)
        assert s.ok, (s.error, s.info)
        assert s.summary.count == 300 and 0 < s.summary.p50 <= s.summary.p99 <= s.summary.max < 10**9
        assert s.info["lost"] == 0 and not s.info["truncated"] and s.info["corrupt"] == 0
        assert s.info["server_echoed"] == 350  # every request, warm-up included, and the server ended cleanly
        assert s.info["client_xsk_mode"] == "copy" and s.info["client_path"] == "nic"
        assert s.info["client_xdp"]["redirected"] == 350 and s.info["server_xdp"]["redirected"] == 350
        assert s.params["binary"].endswith(native.binary("xdp_echo").name)
        # nothing of the series stays: no process in the hosts, no XDP program on the NICs
        for h in bed.hosts:
            assert pids_in_netns(h.netns) == []
            assert xdp_program_id(h.ifname, netns=h.netns) == 0
    assert _leftovers(unique_name) == []


@pytest.mark.kernel
@pytest.mark.timeout(120)
def test_etran_udp_series_quick(tmp_path, unique_name):
    """`etran bench afxdp --quick` with the series that need daemons: etran UDP both ways and the C
    floor of the tenant-port path; the bare C floor cannot take a NIC from a daemon."""
    out = tmp_path / "etran-udp.json"
    p = subprocess.run([sys.executable, "-m", "etran", "bench", "afxdp", "--quick", "--series", "etran-udp-spin",
                        "--series", "etran-udp-blocking", "--series", "c-etran", "--name", unique_name,
                        "--json", str(out), "--no-progress"], capture_output=True, text=True, timeout=100, cwd=ROOT,
                       env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert _leftovers(unique_name) == []
    inv = Invocation.load(out)
    data = json.loads(out.read_text())
    quick = get("afxdp")
    assert inv.status == "complete" and data["params"]["testbed"]["daemons"] is True
    assert [s.name for s in inv.series] == ["etran-udp-spin", "etran-udp-blocking", "c-etran"]
    for s in inv.series:
        assert s.ok, (s.name, s.error, s.info)
        assert s.summary.count == quick.quick_count and s.info["lost"] == 0 and not s.info["truncated"]
        assert s.info["server_echoed"] == quick.quick_count + quick.quick_warmup
    spin, blocking, c = inv.get("etran-udp-spin"), inv.get("etran-udp-blocking"), inv.get("c-etran")
    assert spin.info["client_poll"] == "busy" and blocking.info["client_poll"] == "block"
    assert spin.info["client_engine"]["rx_frames"] >= quick.quick_count + quick.quick_warmup
    assert c.info["client_path"] == "etran"
    assert c.info["client_etran_app"]["tx_packets"] == quick.quick_count + quick.quick_warmup
    assert c.info["client_etran_app"]["drops"] == {}  # the egress hook took every frame
    assert data["references"]["c-etran"] == "Ce" and data["ratios_to"]["c-etran"]["c-etran"]["p50"] == 1.0
    assert "etran UDP busy-poll" in p.stdout and "xCe p50" in p.stdout
    assert "etran-udp-spin / c-etran" in p.stdout


@pytest.mark.kernel
@pytest.mark.timeout(90)
def test_add_c_floor_picks_the_path_and_never_takes_a_daemons_nic(unique_name):
    from etran.bench.afxdp import add_c_floor
    from etran.bench.bed import own_testbed
    from etran.bpf.attach import xdp_program_id

    inv = Invocation(benchmark="unit-floor")
    with own_testbed(unique_name, daemons=True) as bed:
        h1 = bed.hosts[0]
        entrance = xdp_program_id(h1.ifname, netns=h1.netns)
        assert entrance
        refused = add_c_floor(bed, inv, path="nic", count=50, warmup=10, time_limit=10, reference=None)
        assert not refused.ok and "already has an XDP program" in refused.info["error_detail"]
        assert xdp_program_id(h1.ifname, netns=h1.netns) == entrance  # the daemon's entrance is untouched
        s = add_c_floor(bed, inv, count=300, warmup=50, time_limit=20)
        assert s.ok and s.name == "c-etran", (s.error, s.info)
        assert s.summary.count == 300 and s.info["lost"] == 0
        assert inv.references == {"c-etran": "C"}
    assert _leftovers(unique_name) == []
