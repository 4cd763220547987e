"""What the daemon loads into the kernel: the core object, transports and policies.

The core object creates the shared maps (core.h); every other object is loaded with those
maps reused by name, so the entrance, the egress hooks, the transports and the policies
all see one set of state.  Transports and policies are plugged in through prog arrays, at
run time, without touching anything already attached.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterable

from ..bpf import BpfObject, Map, Program
from ..kernel.structs import AppStats, DropReason, GenDesc, HostConfig, HostPub, Limits

MAX_APPS = int(Limits.ETRAN_MAX_APPS)
NIC_SLOT = int(Limits.ETRAN_NIC_SLOT)
CHAIN_CONTINUE = int(Limits.ETRAN_MAX_POLICIES)
XDP_PASS = 2


class Kernel:
    """The daemon's handle on everything it loaded; closing it unloads what is not attached."""

    def __init__(self) -> None:
        self.core = BpfObject.load("core")
        self.objects: dict[str, BpfObject] = {"core": self.core}
        self.shared_maps = self.core.maps
        self.core.map("chain_in").update(CHAIN_CONTINUE, self.core.program("in_continue").fd)
        self.core.map("chain_out").update(CHAIN_CONTINUE, self.core.program("out_continue").fd)
        self.core.map("core_progs").update(0, self.core.program("gen").fd)

    def map(self, name: str) -> Map:
        return self.shared_maps[name]

    def program(self, name: str) -> Program:
        return self.core.program(name)

    def load(self, family: str) -> BpfObject:
        """Load a transport or policy object (once) sharing the core's maps."""
        if family not in self.objects:
            probe = BpfObject.open(family)
            names = set(probe.map_names())
            probe.close()
            reuse = {n: m for n, m in self.shared_maps.items() if n in names}
            self.objects[family] = BpfObject.load(family, reuse_maps=reuse)
        return self.objects[family]

    def register_transport(self, proto: int, family: str, ingress: str | None, egress: str | None,
                           gen: str | None = None) -> BpfObject:
        """Plug a transport's programs in for IP protocol `proto`."""
        obj = self.load(family)
        for array, name in (("ingress_progs", ingress), ("egress_progs", egress), ("gen_progs", gen)):
            if name:
                self.map(array).update(proto, obj.program(name).fd)
        return obj

    def unregister_transport(self, proto: int) -> None:
        for array in ("ingress_progs", "egress_progs", "gen_progs"):
            self.map(array).delete(proto)

    # ---- host state --------------------------------------------------------------------
    def set_host(self, ip: str, mac: str, nic_ifindex: int, mtu: int) -> None:
        cfg = HostConfig(ip=int.from_bytes(socket.inet_aton(ip), "little"), nic_ifindex=nic_ifindex, mtu=mtu)
        cfg.mac[:] = bytes.fromhex(mac.replace(":", ""))
        self.map("host_cfg").update(0, cfg)
        self.map("tx_ports").update(NIC_SLOT, nic_ifindex)

    def app_stats(self, slot: int) -> AppStats:
        """Per-CPU counters of one slot, summed."""
        total = AppStats()
        for raw in self.map("app_stats").lookup_percpu(slot) or []:
            s = AppStats.from_buffer_copy(raw)
            for name, _ in AppStats._fields_:
                if name == "drops":
                    for i in range(len(total.drops)):
                        total.drops[i] += s.drops[i]
                else:
                    setattr(total, name, getattr(total, name) + getattr(s, name))
        return total

    def clear_app_stats(self, slot: int) -> None:
        self.map("app_stats").update(slot, bytes(ctypes.sizeof(AppStats)))

    def host_pub(self) -> HostPub:
        return HostPub.from_buffer_copy(self.map("host_pub").lookup(0))

    def push_gen(self, descs: Iterable[GenDesc]) -> int:
        """Queue control packets from user space (timer-driven ones); returns how many fit.

        Each goes through the gen_enqueue program, so the kernel's published pending count
        stays exact; then `run_gen` sends them.
        """
        prog = self.core.program("gen_enqueue")
        n = 0
        for d in descs:
            if prog.test_run(bytes(14) + bytes(d)).retval != XDP_PASS:
                break
            n += 1
        return n

    def run_gen(self, count: int, ifindex: int) -> None:
        """XDP_GEN from the daemon: build and send `count` pending control packets (live frames).

        Call from a thread in the host's namespace; `ifindex` is any device there (the frames'
        notional ingress; they leave through tx_ports like every generated frame).
        """
        if count > 0:
            blank = bytes(12) + int(Limits.ETRAN_BLANK_ETHERTYPE).to_bytes(2, "big") + bytes(int(Limits.ETRAN_MAX_FRAME) - 14)
            prog = self.core.program("gen")
            # A run with repeat > 1 costs 20-50 ms on a loaded machine (it yields the CPU between
            # frames), one frame about 0.1 ms: a few frames go one run each.
            if count <= 32:
                for _ in range(count):
                    prog.run_live_frames(blank, repeat=1, ingress_ifindex=ifindex)
            else:
                prog.run_live_frames(blank, repeat=count, ingress_ifindex=ifindex)

    def close(self) -> None:
        for obj in reversed(list(self.objects.values())):
            obj.close()
        self.objects.clear()


def drop_counts(stats: AppStats) -> dict[str, int]:
    """Non-zero drops by reason name."""
    out = {}
    for reason in DropReason:
        if reason.value < len(stats.drops) and stats.drops[reason.value] and reason != DropReason.ETRAN_DROP_NR:
            out[reason.label] = int(stats.drops[reason.value])
    return out
