"""The eBPF build and the libbpf loader: compile cache, maps, mmap, pins, attach, BPF_PROG_RUN, errors."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from etran import netns
from etran.bpf import BpfObject, Map
from etran.bpf.attach import attach_tc, attach_xdp, detach_tc, detach_xdp, xdp_program_id
from etran.errors import BuildError, VerifierError
from etran.kernel import build
from etran.kernel.structs import PktCounter

HERE = Path(__file__).parent
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3

pytestmark = pytest.mark.kernel


# ---- build ---------------------------------------------------------------------------

def test_build_is_cached_by_content_and_rebuilt_on_header_change(tmp_path, monkeypatch):
    monkeypatch.setenv("ETRAN_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "prog.bpf.c"
    header = tmp_path / "defs.h"
    header.write_text("#define VERDICT 2\n")
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include "defs.h"\n'
                   'SEC("xdp") int p(struct xdp_md *c) { return VERDICT; }\nchar LICENSE[] SEC("license") = "GPL";\n')
    first = build.compile_source(src)
    mtime = first.stat().st_mtime_ns
    assert build.compile_source(src) == first and first.stat().st_mtime_ns == mtime  # cached
    header.write_text("#define VERDICT 1\n")
    second = build.compile_source(src)
    assert second != first and second.exists()
    with BpfObject.load(second) as obj:
        assert obj.program("p").test_run(bytes(64)).retval == XDP_DROP


def test_build_error_shows_clang_output(tmp_path, monkeypatch):
    monkeypatch.setenv("ETRAN_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "broken.bpf.c"
    src.write_text("int f( {\n")
    with pytest.raises(BuildError, match="broken.bpf.c"):
        build.compile_source(src)


def test_unknown_program_family_lists_known_ones():
    with pytest.raises(BuildError, match="counter"):
        build.compile_object("no_such_program")


# ---- loading, maps --------------------------------------------------------------------

def test_programs_and_maps_by_name():
    with BpfObject.load("counter") as obj:
        assert {"count_packets", "count_skb"} <= set(obj.program_names())
        counters = obj.map("counters")
        assert (counters.key_size, counters.value_size, counters.max_entries) == (4, 16, 1)
        assert obj.program("count_packets").fd >= 0
        with pytest.raises(Exception, match="no map"):
            obj.map("nope")


def test_map_operations_and_batches(tmp_path):
    src = tmp_path / "hash.bpf.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096); __type(key, __u32); __type(value, __u64); } h SEC(".maps");\n'
                   'struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 2); __type(key, __u32); __type(value, __u64); } pc SEC(".maps");\n'
                   'SEC("xdp") int p(struct xdp_md *c) { __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&pc, &k); if (v) *v += 1; return XDP_PASS; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    with BpfObject.load(src) as obj:
        h = obj.map("h")
        h.update(1, 100)
        assert int.from_bytes(h.lookup(1), "little") == 100
        assert h.lookup(2) is None
        assert h.delete(1) and not h.delete(1)
        n = h.update_batch([(i, i * 10) for i in range(1000)])
        assert n == 1000
        items = dict(h.lookup_batch(chunk=64))
        assert len(items) == 1000
        assert int.from_bytes(items[(999).to_bytes(4, "little")], "little") == 9990
        assert sorted(int.from_bytes(k, "little") for k in h.keys()) == list(range(1000))
        assert h.delete_batch(list(range(500))) == 500
        assert len(list(h.items())) == 500
        pc = obj.map("pc")
        obj.program("p").test_run(bytes(64), repeat=3)
        per_cpu = pc.lookup_percpu(0)
        assert len(per_cpu) == pc.ncpus and sum(int.from_bytes(v, "little") for v in per_cpu) == 3


def test_pinning_and_reopen(tmp_path):
    pin = Path("/sys/fs/bpf") / f"etran-test-{os.getpid()}" / "counters"
    try:
        with BpfObject.load("counter") as obj:
            obj.map("counters").update(0, PktCounter(packets=7, bytes=70))
            obj.map("counters").pin(pin)
        # the object is closed: the pin alone keeps the map
        with Map.from_pin(pin) as m:
            assert PktCounter.from_buffer_copy(m.lookup(0)).packets == 7
            ro = m.reopen(readonly=True)
            assert PktCounter.from_buffer_copy(ro.lookup(0)).bytes == 70
            with pytest.raises(OSError):
                ro.update(0, bytes(16))
            ro.close()
    finally:
        shutil.rmtree(pin.parent, ignore_errors=True)
    assert not pin.parent.exists()


# ---- the test: an XDP program counts, Python reads the count through mmap ----------

def test_xdp_counter_read_through_readonly_mmap(veth_ns):
    with BpfObject.load("counter") as obj:
        prog = obj.program("count_packets")
        attach_xdp("vb", prog, mode="native", netns=veth_ns)
        try:
            assert xdp_program_id("vb", netns=veth_ns) == prog.id
            shared = obj.map("counters").reopen()
            shared.freeze()  # what the daemon hands to applications: read-only for user space
            counters = shared.mmap_array(PktCounter, readonly=True)
            with pytest.raises(OSError):
                shared.update(0, bytes(16))
            with pytest.raises(OSError):
                shared.mmap(readonly=False)
            frame = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / IP(dst="198.18.200.2") /
                          UDP(dport=9) / (b"x" * 18))
            with netns.enter(veth_ns):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                s.bind(("va", 0))
                for _ in range(500):
                    s.send(frame)
                s.close()
            counter = counters[0]  # a live view into the kernel's map, no syscalls
            deadline = time.monotonic() + 2
            while counter.packets < 500 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert counter.packets >= 500  # the kernel may add its own (IPv6 DAD etc.)
            assert counter.bytes >= 500 * len(frame)
            del counter
            counters.close()
            shared.close()
        finally:
            detach_xdp("vb", netns=veth_ns)
    assert xdp_program_id("vb", netns=veth_ns) == 0


def test_tc_attach_counts_egress(veth_ns):
    with BpfObject.load("counter") as obj:
        attach_tc("va", obj.program("count_skb"), direction="egress", netns=veth_ns)
        try:
            with netns.enter(veth_ns):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                s.bind(("va", 0))
                for _ in range(25):
                    s.send(b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00" + bytes(46))
                s.close()
            assert PktCounter.from_buffer_copy(obj.map("counters").lookup(0)).packets >= 25
        finally:
            detach_tc("va", netns=veth_ns)
    out = subprocess.run(["nsenter", f"--net=/run/netns/{veth_ns}", "tc", "qdisc", "show", "dev", "va"],
                         capture_output=True, text=True).stdout
    assert "clsact" not in out


# ---- BPF_PROG_RUN ---------------------------------------------------------------------------

def test_prog_run_verdicts_and_output_packets():
    with BpfObject.load(HERE / "bpf" / "mac_swap.bpf.c") as obj:
        prog = obj.program("mac_swap")
        base = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / IP(src="198.18.0.1", dst="198.18.0.2")
        echo = bytes(base / UDP(sport=1234, dport=7) / b"hello")
        r = prog.test_run(echo)
        assert r.retval == XDP_TX
        out = Ether(r.data)
        assert (out.dst, out.src) == ("02:00:00:00:00:01", "02:00:00:00:00:02")
        assert bytes(out[UDP].payload) == b"hello" and r.data[12:] == echo[12:]
        assert prog.test_run(bytes(base / UDP(dport=9) / b"x")).retval == XDP_DROP
        tcp = bytes(base / TCP(dport=7))
        r = prog.test_run(tcp)
        assert r.retval == XDP_PASS and r.data == tcp
        assert prog.test_run(bytes(14)).retval == XDP_PASS  # not IPv4
        with pytest.raises(OSError):  # the kernel refuses runs on less than an Ethernet header
            prog.test_run(bytes(10))


def test_live_frames_transmit(veth_ns):
    """BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES really sends XDP_TX frames out."""
    with BpfObject.load("counter") as gen, BpfObject.load("counter") as sink:
        gen.map("verdict").update(0, XDP_TX)
        attach_xdp("va", sink.program("count_packets"), netns=veth_ns)
        try:
            with netns.enter(veth_ns):
                ifindex = socket.if_nametoindex("vb")
                gen.program("count_packets").run_live_frames(bytes(Ether() / IP() / UDP()), repeat=40,
                                                             ingress_ifindex=ifindex)
            deadline = time.monotonic() + 2
            got = 0
            while got < 40 and time.monotonic() < deadline:
                got = PktCounter.from_buffer_copy(sink.map("counters").lookup(0)).packets
                time.sleep(0.01)
            assert got >= 40
            assert PktCounter.from_buffer_copy(gen.map("counters").lookup(0)).packets == 40
        finally:
            detach_xdp("va", netns=veth_ns)


# ---- errors ---------------------------------------------------------------------------------

def test_verifier_rejection_carries_the_log():
    with pytest.raises(VerifierError) as info:
        BpfObject.load(HERE / "bpf" / "unsafe.bpf.c")
    err = info.value
    assert err.program == "reads_past_end"
    assert "invalid access to packet" in err.log
    assert "invalid access to packet" in str(err)


def test_missing_privilege_is_named():
    """Without capabilities (root's bounding set emptied) loading says which privilege is missing."""
    obj_path = build.compile_object("counter")
    code = ("import sys\nfrom etran.bpf import BpfObject\nfrom etran.errors import PrivilegeError\n"
            f"try:\n    BpfObject.load({str(obj_path)!r})\nexcept PrivilegeError as e:\n    print(e); sys.exit(3)\n")
    proc = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "CAP_BPF" in proc.stdout and "root" in proc.stdout
