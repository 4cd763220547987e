"""The egress path's neighbour map, kept in step with the kernel's neighbour table.

The egress hook needs each destination's next-hop MAC. bpf_fib_lookup would give it but
insists on IP forwarding being enabled on the NIC, which would make every host a router;
so the daemon copies the kernel's (reachable or permanent) IPv4 neighbours of its NIC into
the `neigh` map, and resolves destinations the hook reports missing (`neigh_miss`) by
asking the kernel for the route and nudging ARP with a datagram to the discard port.
"""

from __future__ import annotations

import contextlib
import socket

from pyroute2 import IPRoute

from ..kernel.structs import NeighEntry
from .kernel import Kernel

NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT


def _key(ip: str) -> int:
    return int.from_bytes(socket.inet_aton(ip), "little")


class Neighbours:
    def __init__(self, kernel: Kernel, nic_ifindex: int) -> None:
        self.kernel = kernel
        self.ifindex = nic_ifindex
        self.known: dict[str, str] = {}  # ip -> mac, as written into the map
        self.via: dict[str, str] = {}  # destination -> gateway, for off-link destinations

    def refresh(self) -> int:
        """Copy usable neighbours of the NIC into the map; returns how many changed."""
        table: dict[str, str] = {}
        with IPRoute() as ipr:
            for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=self.ifindex):
                ip, mac = n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")
                if ip and mac and n["state"] & NUD_USABLE:
                    table[ip] = mac
        for dst, gw in self.via.items():
            if gw in table:
                table[dst] = table[gw]
        changed = 0
        m = self.kernel.map("neigh")
        for ip, mac in table.items():
            if self.known.get(ip) != mac:
                entry = NeighEntry()
                entry.mac[:] = bytes.fromhex(mac.replace(":", ""))
                m.update(_key(ip), entry)
                changed += 1
        for ip in set(self.known) - set(table):
            m.delete(_key(ip))
            changed += 1
        self.known = table
        return changed

    def pop_misses(self) -> set[str]:
        """Destinations the hook found no neighbour for since the last call (one syscall when none)."""
        q = self.kernel.map("neigh_miss")
        misses = set()
        for _ in range(256):
            raw = q.pop()
            if raw is None:
                break
            misses.add(socket.inet_ntoa(raw[:4]))
        return misses

    def resolve(self, misses: set[str]) -> None:
        """Find the next hop of each destination and nudge the kernel to ARP for it."""
        with IPRoute() as ipr:
            for dst in misses:
                with contextlib.suppress(Exception):
                    route = ipr.route("get", dst=dst)[0]
                    gw = route.get_attr("RTA_GATEWAY")
                    if gw:
                        self.via[dst] = gw
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # makes the kernel ARP
                        s.setblocking(False)
                        s.sendto(b"", (gw or dst, 9))
        self.refresh()
