"""XskProgram: the to_xsk XDP program on one interface, and its XSKMAP.

    with XskProgram("eth0", netns="bed-h2") as prog:
        prog.set_filter(ethertype=0x88B5)       # only these frames; the rest to the stack
        with XskSocket("eth0", netns="bed-h2") as xsk:
            prog.add(xsk)                       # xsks_map[xsk.queue_id] = xsk
            ...

The XSKMAP entry is written from a thread inside the interface's namespace (the kernel
ties an XSKMAP slot to the socket's device there).  close() detaches the program.
"""

from __future__ import annotations

import struct

from .. import netns as _netns

# struct to_xsk_filter in to_xsk.bpf.c
FILTER = struct.Struct("=HBBHH")
STAT_REDIRECTED, STAT_PASSED = 0, 1


class XskProgram:
    """to_xsk loaded and attached (native XDP by default) to `interface` in `netns`."""

    def __init__(self, interface: str | int, netns: str | None = None, mode: str = "native") -> None:
        from ..bpf import BpfObject
        from ..bpf.attach import attach_xdp

        self.interface = interface
        self.netns = netns
        self.mode = mode
        self.obj = BpfObject.load("to_xsk")
        self.attached = False
        try:
            self.ifindex = attach_xdp(interface, self.obj.program("to_xsk"), mode=mode, netns=netns)
            self.attached = True
        except BaseException:
            self.obj.close()
            raise
        self.xsks_map = self.obj.map("xsks_map")
        self.filter_map = self.obj.map("to_xsk_filter")
        self.stats_map = self.obj.map("to_xsk_stats")

    def add(self, xsk, queue_id: int | None = None) -> None:
        """Steer frames of RX queue `queue_id` (default: the socket's) to `xsk`."""
        q = xsk.queue_id if queue_id is None else queue_id
        with _netns.enter(self.netns):
            self.xsks_map.update(q, xsk.fileno())

    def remove(self, queue_id: int = 0) -> None:
        """Stop steering queue `queue_id` (its frames go to the kernel stack again)."""
        with _netns.enter(self.netns):
            self.xsks_map.delete(queue_id)

    def set_filter(self, ethertype: int = 0, ip_proto: int = 0, dport: int = 0) -> None:
        """Steer only frames of this EtherType (0: all frames), IPv4 protocol (0: any) and
        TCP/UDP destination port (0: any); the others get XDP_PASS."""
        self.filter_map.update(0, FILTER.pack(ethertype, ip_proto, 0, dport, 0))

    def stats(self) -> dict[str, int]:
        """Frames redirected to sockets and passed to the stack (summed over CPUs)."""
        out = {}
        for key, name in ((STAT_REDIRECTED, "redirected"), (STAT_PASSED, "passed")):
            vals = self.stats_map.lookup_percpu(key) or []
            out[name] = sum(int.from_bytes(v[:8], "little") for v in vals)
        return out

    def close(self) -> None:
        """Detach the program and release the object."""
        if self.attached:
            from ..bpf.attach import detach_xdp

            detach_xdp(self.ifindex, mode=self.mode, netns=self.netns)
            self.attached = False
        if self.obj is not None:
            self.obj.close()
            self.obj = None

    def __enter__(self) -> "XskProgram":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
