"""The namespace test bed: hosts, addresses, neighbours, the switch, up/down, exec, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from pyroute2 import IPRoute

from etran import netns
from etran import errors
from etran.testbed import LinkSettings, Testbed
from etran import cli as etran_cli
from etran.testbed import cli as tb_cli
from etran.testbed import offload, switch
from etran.testbed.traffic import ping, udp_flow

CLI = [sys.executable, "-m", "etran"]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def ipr_in(ns: str) -> IPRoute:
    with netns.enter(ns):
        return IPRoute()


def leftovers(name: str) -> list[str]:
    """Everything of bed `name` still on the machine."""
    found = [e for e in os.listdir(netns.NETNS_RUN_DIR) if e.startswith(name + "-")] \
        if os.path.isdir(netns.NETNS_RUN_DIR) else []
    if os.path.exists(switch.pin_dir(name)):
        found.append(switch.pin_dir(name))
    if os.path.isdir("/run/etran"):  # daemons' sockets and pid files
        found += [e for e in os.listdir("/run/etran") if e.startswith(name + "-")]
    return found


# ---- arguments (no kernel needed) ----------------------------------------------------------
@pytest.mark.parametrize("kwargs, words", [
    ({"hosts": 0}, "between 1 and 254 hosts"),
    ({"hosts": 255}, "between 1 and 254 hosts"),
    ({"hosts": True}, "between 1 and 254 hosts"),
    ({"loss": 1.5}, "--loss 1.5 is not a probability"),
    ({"duplicate": -0.1}, "--duplicate -0.1 is not a probability"),
    ({"reorder": float("nan")}, "--reorder nan is not a probability"),
    ({"corrupt": 2}, "--corrupt 2 is not a probability"),
    ({"rate_gbit": -1}, "out of range"),
    ({"rate_gbit": 5000}, "out of range"),
    ({"ecn_threshold_kb": 0, "rate_gbit": 1}, "out of range"),
    ({"ecn_threshold_kb": 30, "rate_gbit": None}, "needs a rate limit"),
])
def test_bad_arguments_are_clear_errors(kwargs, words):
    with pytest.raises(errors.TestbedError, match=words.replace("(", r"\(")):
        Testbed("tbad").up(**kwargs)


@pytest.mark.parametrize("name", ["", "1abc", "a b", "a/b", "x" * 25, "-x"])
def test_bad_names(name):
    with pytest.raises(errors.TestbedError, match="bad test bed name"):
        Testbed(name)


def run_cli_in_process(argv, capsys):
    rc = etran_cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_bad_arguments(capsys):
    rc, _, err = run_cli_in_process(["testbed", "up", "--name", "tbad", "--hosts", "0"], capsys)
    assert rc == 2 and "between 1 and 254 hosts" in err
    rc, _, err = run_cli_in_process(["testbed", "up", "--name", "tbad", "--loss", "7"], capsys)
    assert rc == 2 and "--loss 7.0 is not a probability" in err
    rc, _, err = run_cli_in_process(["testbed", "up", "--name", "tbad", "--rate", "-3"], capsys)
    assert rc == 2 and "--rate -3" in err
    rc, _, err = run_cli_in_process(["testbed", "up", "--name", "bad name"], capsys)
    assert rc == 2 and "bad test bed name" in err
    rc, _, err = run_cli_in_process(["exec", "--name", "tbadnothere", "h1", "--"], capsys)
    assert rc == 2 and "no command given" in err
    rc, _, err = run_cli_in_process(["exec", "--name", "tbadnothere", "h1", "--", "true"], capsys)
    assert rc == 2 and "has no host 'h1'" in err and "the bed is down" in err
    rc, _, err = run_cli_in_process(["testbed", "set", "--name", "tbadnothere"], capsys)
    assert rc == 2 and "nothing to change" in err
    with pytest.raises(SystemExit):
        etran_cli.main(["testbed", "up", "--hosts", "two"])


def test_cli_registers_subcommands():
    parser = argparse.ArgumentParser(prog="etran")
    tb_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["testbed", "up", "--hosts", "3", "--rate", "1", "--ecn-threshold", "30",
                              "--loss", "0.01", "--reorder", "0.02", "--duplicate", "0.03", "--corrupt", "0.04"])
    assert (args.hosts, args.rate, args.ecn_threshold, args.loss, args.reorder, args.duplicate, args.corrupt) == \
        (3, 1.0, 30.0, 0.01, 0.02, 0.03, 0.04)
    assert args.func is tb_cli.cmd_up and args.name
    args = parser.parse_args(["exec", "--name", "x", "h2", "--", "ip", "-br", "addr"])
    assert args.func is tb_cli.cmd_exec and args.host == "h2" and args.cmd[-3:] == ["ip", "-br", "addr"]
    for action in ("down", "status", "set", "set-faults", "stats"):
        assert callable(parser.parse_args(["testbed", action]).func)


def test_link_settings_round_trip():
    s = LinkSettings(rate_gbit=2.5, ecn_threshold_kb=30, loss=0.05, duplicate=1.0, reorder=0.0, corrupt=1e-6)
    cfg = s.to_config()
    assert (cfg.rate_kbps, cfg.ecn_threshold, cfg.duplicate, cfg.reorder) == (2_500_000, 30_000, 0xFFFFFFFF, 0)
    assert cfg.loss == round(0.05 * 2**32)
    back = LinkSettings.from_config(cfg)
    assert back.rate_gbit == 2.5 and back.ecn_threshold_kb == 30 and back.duplicate == 1.0
    assert abs(back.loss - 0.05) < 1e-9 and abs(back.corrupt - 1e-6) < 1e-9
    assert switch.prob_to_u32(0.0) == 0 and switch.prob_to_u32(1 - 1e-12) == 0xFFFFFFFE


# ---- a live bed -------------------------------------------------------------------------------
@pytest.mark.kernel
def test_up_creates_hosts_addresses_neighbours_and_no_way_out(testbed):
    bed = testbed(hosts=3, rate_gbit=1)
    hosts = bed.hosts
    assert [h.name for h in hosts] == ["h1", "h2", "h3"]
    assert [h.netns for h in hosts] == [f"{bed.name}-h{i}" for i in (1, 2, 3)]
    assert netns.exists(bed.switch_netns)
    for h in hosts:
        assert h.ip == f"198.18.0.{h.index}" and h.ifname == "eth0" and h.port == f"p{h.index}"
        assert h.mac == f"02:e7:00:00:00:{h.index:02x}"
        ipr = ipr_in(h.netns)
        try:
            link = ipr.get_links(h.ifindex)[0]
            assert link.get_attr("IFLA_IFNAME") == "eth0" and link.get_attr("IFLA_MTU") == 1500
            assert link.get_attr("IFLA_ADDRESS") == h.mac
            addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(family=socket.AF_INET)
                     if a["index"] == h.ifindex]
            assert addrs == [(h.ip, 15)]
            neigh = {n.get_attr("NDA_DST"): (n.get_attr("NDA_LLADDR"), n["state"])
                     for n in ipr.get_neighbours(family=socket.AF_INET)}
            assert neigh == {o.ip: (o.mac, 0x80) for o in hosts if o is not h}  # NUD_PERMANENT
            routes = ipr.get_routes(family=socket.AF_INET, table=254)
            assert all(r.get_attr("RTA_DST") is not None for r in routes), "a default route exists"
            assert {(r.get_attr("RTA_DST"), r["dst_len"]) for r in routes} == {("198.18.0.0", 15)}
        finally:
            ipr.close()
        with h.enter():
            assert not any(offload.offloads("eth0").values())
    # switch ports: HTB rate limit, the eBPF filter on egress, offloads off, MTU 1500
    ipr = ipr_in(bed.switch_netns)
    try:
        for h in hosts:
            qdiscs = [q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(h.port_ifindex)]
            assert "htb" in qdiscs and "clsact" in qdiscs, qdiscs
            filters = ipr.get_filters(h.port_ifindex, parent=0xFFFFFFF3)
            assert any(f.get_attr("TCA_KIND") == "bpf" for f in filters)
            assert ipr.get_links(h.port_ifindex)[0].get_attr("IFLA_MTU") == 1500
    finally:
        ipr.close()
    with netns.enter(bed.switch_netns):
        for h in hosts:
            assert not any(offload.offloads(h.port).values())
    for pin in (*switch.MAPS, switch.PROGRAM):
        assert os.path.exists(os.path.join(bed.pin_dir, pin))
    assert bed.name in [b.name for b in Testbed.list_existing()]


@pytest.mark.kernel
def test_hosts_reach_each_other(testbed):
    bed = testbed(hosts=3)
    hosts = bed.hosts
    for a in hosts:
        for b in hosts:
            if a is not b:
                flow = udp_flow(a, b, n=20, extra=0, idle_s=0.2, port=7000 + a.index)
                assert sorted(flow.received) == list(range(20)), (a.name, b.name)
    assert len(ping(hosts[0], hosts[2].ip, count=3)) == 3
    # a TCP connection across the switch
    srv = hosts[1].socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((hosts[1].ip, 7100))
    srv.listen(1)
    result = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            result.append(conn.recv(100))
            conn.sendall(b"pong")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with hosts[0].socket(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect((hosts[1].ip, 7100))
        c.sendall(b"ping")
        assert c.recv(100) == b"pong"
    t.join(5)
    srv.close()
    assert result == [b"ping"]
    # nothing outside the bed is reachable: the kernel has no route (asked, nothing sent)
    from pyroute2.netlink.exceptions import NetlinkError

    ipr = ipr_in(hosts[0].netns)
    try:
        with pytest.raises(NetlinkError) as e:
            ipr.route("get", dst="198.51.100.1")
        assert e.value.code == 101  # ENETUNREACH
    finally:
        ipr.close()


@pytest.mark.kernel
def test_up_twice_and_down_twice(unique_name):
    bed = Testbed(unique_name)
    try:
        bed.up(hosts=2)
        ino = os.stat(netns.path_of(bed.switch_netns)).st_ino
        Testbed(unique_name).up(hosts=2, loss=0.25)           # same shape: no rebuild, new settings
        assert os.stat(netns.path_of(bed.switch_netns)).st_ino == ino
        assert bed.link_settings()["h2"].loss == 0.25
        Testbed(unique_name).up(hosts=3)                       # other shape: rebuilt
        assert [h.name for h in Testbed(unique_name).hosts] == ["h1", "h2", "h3"]
        assert Testbed(unique_name).link_settings()["h2"].loss == 0.0
        Testbed(unique_name).up(hosts=1)
        assert [h.name for h in Testbed(unique_name).hosts] == ["h1"]
    finally:
        bed.down()
        bed.down()
    assert leftovers(unique_name) == []
    assert not Testbed(unique_name).exists()


@pytest.mark.kernel
def test_down_leaves_nothing_behind(unique_name):
    bed = Testbed(unique_name).up(hosts=2)
    h1, h2 = bed.hosts
    procs = [h1.popen(["sleep", "60"]),
             subprocess.Popen([*CLI, "exec", "--name", unique_name, "h2", "--", "sleep", "60"])]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(len(bed_pids) for bed_pids in
                                              [_pids(bed, h) for h in (h1, h2)]) < 2:
        time.sleep(0.05)
    assert _pids(bed, h1) == [procs[0].pid]
    assert _pids(bed, h2) == [procs[1].pid]
    Testbed(unique_name).down()     # another object, as another process would
    for p in procs:
        assert p.wait(timeout=10) is not None
    assert leftovers(unique_name) == []
    assert unique_name not in [b.name for b in Testbed.list_existing()]
    rc = cli("testbed", "down", "--name", unique_name)
    assert rc.returncode == 0 and "nothing to remove" in rc.stdout


def _pids(bed, host):
    from etran.testbed.bed import pids_in_netns

    return pids_in_netns(host.netns)


@pytest.mark.kernel
def test_failed_up_leaves_nothing_behind(unique_name, monkeypatch):
    def broken(*args, **kwargs):
        raise errors.TestbedError("injected failure")

    monkeypatch.setattr(switch, "load_and_pin", broken)
    with pytest.raises(errors.TestbedError, match="injected failure"):
        Testbed(unique_name).up(hosts=2)
    assert leftovers(unique_name) == []


@pytest.mark.kernel
def test_exec_runs_in_the_host_namespace_and_sees_pins(testbed):
    bed = testbed(hosts=2)
    h1 = bed.hosts[0]
    r = cli("exec", "--name", bed.name, "h1", "--", "ls", bed.pin_dir)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) >= {*switch.MAPS, switch.PROGRAM}
    probe = "import os; print(os.stat('/proc/self/ns/net').st_ino, os.stat('/proc/self/ns/mnt').st_ino)"
    r = cli("exec", "--name", bed.name, "h1", "--", sys.executable, "-c", probe)
    assert r.returncode == 0, r.stderr
    net_ino, mnt_ino = map(int, r.stdout.split())
    assert net_ino == os.stat(netns.path_of(h1.netns)).st_ino
    assert mnt_ino == os.stat("/proc/self/ns/mnt").st_ino          # no new mount namespace
    r = cli("exec", "--name", bed.name, "sw", "--", sys.executable, "-c", probe)
    assert int(r.stdout.split()[0]) == os.stat(netns.path_of(bed.switch_netns)).st_ino
    r = cli("exec", "--name", bed.name, "h1", "--", "ip", "-br", "addr", "show", "eth0")
    assert "198.18.0.1/15" in r.stdout
    r = cli("exec", "--name", bed.name, "h1", "--", "false")
    assert r.returncode == 1                                          # the command's own status
    r = cli("exec", "--name", bed.name, "h9", "--", "true")
    assert r.returncode == 2 and "has no host 'h9'" in r.stderr
    r = cli("exec", "--name", bed.name, "h1", "--", "no-such-command-xyz")
    assert r.returncode == 2 and "cannot run" in r.stderr


@pytest.mark.kernel
def test_cli_up_status_set_stats_down(unique_name):
    try:
        r = cli("testbed", "up", "--name", unique_name, "--hosts", "2", "--rate", "0.5", "--ecn-threshold", "40",
                "--loss", "0.01")
        assert r.returncode == 0, r.stderr
        assert f"test bed '{unique_name}' is up" in r.stdout
        from etran.daemon import launcher

        daemons = [launcher.running(f"{unique_name}-h{i}") for i in (1, 2)]
        assert all(daemons), "`testbed up` starts a daemon on every host"
        r = cli("testbed", "up", "--name", unique_name, "--hosts", "2", "--rate", "0.5", "--ecn-threshold", "40",
                "--loss", "0.01")
        assert r.returncode == 0, r.stderr
        assert [launcher.running(f"{unique_name}-h{i}") for i in (1, 2)] == daemons  # the same ones
        r = cli("testbed", "set", "--name", unique_name, "--host", "h2", "--reorder", "0.1", "--rate", "2")
        assert r.returncode == 0, r.stderr
        r = cli("testbed", "status", "--name", unique_name, "--json")
        assert r.returncode == 0, r.stderr
        (bed,) = json.loads(r.stdout)
        assert bed["complete"] and [h["host"] for h in bed["hosts"]] == ["h1", "h2"]
        h1, h2 = bed["hosts"]
        assert (h1["rate_gbit"], h1["ecn_threshold_kb"], h1["loss"], h1["reorder"]) == (0.5, 40, 0.01, 0)
        assert (h2["rate_gbit"], h2["ecn_threshold_kb"], h2["loss"], h2["reorder"]) == (2, 40, 0.01, 0.1)
        # the HTB class follows the rate
        ipr = ipr_in(f"{unique_name}-sw")
        try:
            classes = ipr.get_classes(Testbed(unique_name).hosts[1].port_ifindex)
            rates = [c.get_attr("TCA_OPTIONS").get_attr("TCA_HTB_PARMS")["rate"] for c in classes]
            assert rates == [2_000_000_000 // 8]
        finally:
            ipr.close()
        r = cli("testbed", "status")
        assert r.returncode == 0 and unique_name in r.stdout
        r = cli("testbed", "stats", "--name", unique_name, "--json")
        assert r.returncode == 0 and set(json.loads(r.stdout)) == {"h1", "h2"}
        r = cli("testbed", "stats", "--name", unique_name)
        assert r.returncode == 0 and "CE" in r.stdout and "p2 → h2" in r.stdout, r.stdout
        r = cli("testbed", "set", "--name", unique_name, "--rate", "0", "--ecn-threshold", "0")
        assert r.returncode == 0, r.stderr
        assert Testbed(unique_name).link_settings()["h1"].rate_gbit is None
        r = cli("testbed", "set", "--name", unique_name, "--loss", "3")
        assert r.returncode == 2 and "not a probability" in r.stderr
    finally:
        r = cli("testbed", "down", "--name", unique_name)
    assert r.returncode == 0 and "removed" in r.stdout
    assert leftovers(unique_name) == []


@pytest.mark.kernel
def test_switch_stats_count_per_port(testbed):
    bed = testbed(hosts=3)
    h1, h2, h3 = bed.hosts
    udp_flow(h1, h2, n=30, size=100, extra=0, idle_s=0.2)
    udp_flow(h1, h3, n=10, size=100, extra=0, idle_s=0.2)
    stats = bed.switch_stats()
    assert stats["h2"]["packets"] == 30 and stats["h2"]["bytes"] == 30 * (14 + 20 + 8 + 100)
    assert stats["h3"]["packets"] == 10
    assert stats["h1"]["packets"] == 0          # static FDB: nothing flooded, no IPv6 chatter
    assert stats["h2"]["qdisc_packets"] == 30
    bed.reset_stats()
    assert bed.switch_stats()["h2"]["packets"] == 0
    with pytest.raises(errors.TestbedError, match="no host 'h4'"):
        bed.host("h4")
    assert bed.host(2) == bed.host("h2") == bed.host(f"{bed.name}-h2") == h2
