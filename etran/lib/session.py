"""One application's registration with its host's daemon.

The daemon (root) made the tenant port, the UMEM and the AF_XDP socket; we receive the
socket, the UMEM's memfd and the state maps as file descriptors and map them. Nothing here
needs a privilege: an unprivileged process can use an AF_XDP socket and mmap frozen maps.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from .. import ipc
from ..bpf import Map
from ..errors import EtranError
from ..kernel.structs import HostPub, PubSlot
from ..xsk.socket import XskSocket
from ..xsk.umem import Umem


class Session:
    """Registered with the daemon; owns the AF_XDP socket, the UMEM and the published state."""

    def __init__(self, name: str | None = None, frames: int = 4096, socket_path: str | None = None,
                 batch_size: int = 64) -> None:
        self.client = ipc.Client(socket_path)
        try:
            reply, fds = self.client.request("register", name=name or _default_name(), frames=frames)
        except BaseException:
            self.client.close()
            raise
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            self.client.close()
            raise EtranError(f"the daemon sent {len(fds)} descriptors at registration, expected 4")
        xsk_fd, memfd, host_pub_fd, pub_fd = fds
        self.slot: int = reply["slot"]
        host = reply["host"]
        self.host_ip: str = host["ip"]
        self.host_ip_bytes = socket.inet_aton(self.host_ip)
        self.host_mac: str = host["mac"]
        self.host_mac_bytes = bytes.fromhex(self.host_mac.replace(":", ""))
        self.mtu: int = host["mtu"]
        self.transports: list[str] = reply["transports"]
        u, r = reply["umem"], reply["rings"]
        self.umem = Umem(u["frames"], u["frame_size"], memfd=memfd)
        os.close(memfd)  # the mapping keeps the memory
        self.xsk = XskSocket.adopt(xsk_fd, self.umem, rx_size=r["rx"], tx_size=r["tx"], fill_size=r["fill"],
                                   comp_size=r["comp"], batch_size=batch_size)
        # stock the fill ring with half the frames; the other half are for sending
        self.xsk.refill(min(self.xsk.fill.size, self.umem.free_frames // 2))
        self._host_pub_map = Map.from_fd(host_pub_fd)
        self.host_pub = self._host_pub_map.mmap_array(HostPub, readonly=True)
        self._pub_map = Map.from_fd(pub_fd)
        self.pub = self._pub_map.mmap_array(PubSlot, readonly=True)
        self.closed = False

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """A transport request ("udp.bind", ...) to the daemon."""
        return self.client.call(op, **fields)

    def close(self) -> None:
        """Give everything back (the daemon also reclaims it if we just exit)."""
        if self.closed:
            return
        self.closed = True
        self.client.close()
        self.host_pub.close()
        self.pub.close()
        self._host_pub_map.close()
        self._pub_map.close()
        self.xsk.close()
        self.umem.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _default_name() -> str:
    import sys

    if os.environ.get("ETRAN_APP_NAME"):
        return os.environ["ETRAN_APP_NAME"]
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{prog}[{os.getpid()}]"
