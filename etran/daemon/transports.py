"""Transports as the daemon sees them: a plug-in per IP protocol.

A transport names its eBPF object and programs (ingress, egress, generation), answers its
applications' requests ("<name>.<op>"), handles packets the data path hands up to the slow
path, runs its timers, and reclaims an application's state when it goes. Registering one
is a dict entry here; its programs are plugged into the core's prog arrays at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import socket
from typing import TYPE_CHECKING, Any

from ..errors import EtranError
from ..kernel.structs import PortKey, PortOwner

if TYPE_CHECKING:
    from .daemon import App, Daemon

EPHEMERAL = range(49152, 65536)


class Transport:
    name = ""
    proto = 0
    family = ""
    ingress: str | None = None
    egress: str | None = None
    gen: str | None = None

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.obj = None

    @property
    def kernel(self):
        return self.daemon.kernel

    def start(self) -> None:
        self.obj = self.kernel.register_transport(self.proto, self.family, self.ingress, self.egress, self.gen)

    def stop(self) -> None:
        if self.daemon.kernel is not None:
            self.kernel.unregister_transport(self.proto)

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The daemon's event loop is running: start timers here."""

    def request(self, app: App, op: str, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        raise EtranError(f"{self.name} has no request {op!r}")

    def slow_path(self, frame: bytes) -> None:
        """A frame the data path handed up to the daemon."""

    def reclaim(self, app: App, notify: bool = True) -> None:
        """`app` is gone: free its state and tell its peers as the protocol requires."""

    def app_summary(self, app: App) -> dict[str, Any] | None:
        return None


class PortTable:
    """(protocol, port) ownership in the kernel's `ports` map, with kernel sockets reserving each
    port so the host's own stack cannot take it from under an etran application."""

    def __init__(self, transport: Transport, kernel_type: int) -> None:
        self.t = transport
        self.kernel_type = kernel_type
        self.reservations: dict[int, socket.socket] = {}

    def _key(self, port: int) -> PortKey:
        return PortKey(proto=self.t.proto, port=socket.htons(port))

    def bind(self, app: App, port: int, quota: int) -> int:
        owned = app.resources.setdefault(f"{self.t.name}.ports", set())
        if len(owned) >= quota:
            raise EtranError(f"application {app.name} already has {quota} {self.t.name} ports (its quota)")
        if port == 0:
            for candidate in random.sample(EPHEMERAL, 256):
                with contextlib.suppress(EtranError):
                    return self.bind(app, candidate, quota)
            raise EtranError("no free ephemeral port; release some or name a port")
        if not 1 <= port <= 65535:
            raise EtranError(f"port {port} is out of range 1-65535")
        if port in self.reservations:
            raise EtranError(f"{self.t.name} port {port} is in use by another etran application")
        reservation = None
        if self.kernel_type:
            reservation = socket.socket(socket.AF_INET, self.kernel_type)
            try:
                reservation.bind((self.t.daemon.ip, port))
            except OSError as e:
                reservation.close()
                if e.errno == errno.EADDRINUSE:
                    raise EtranError(f"{self.t.name} port {port} is in use by a kernel socket on this host") from None
                raise
        self.t.kernel.map("ports").update(self._key(port), PortOwner(slot=app.slot))
        self.reservations[port] = reservation
        owned.add(port)
        return port

    def unbind(self, app: App, port: int) -> None:
        owned = app.resources.get(f"{self.t.name}.ports", set())
        if port not in owned:
            raise EtranError(f"{self.t.name} port {port} is not bound by this application")
        owned.discard(port)
        with contextlib.suppress(OSError):
            self.t.kernel.map("ports").delete(self._key(port))
        sock = self.reservations.pop(port, None)
        if sock is not None:
            sock.close()

    def release_all(self, app: App) -> None:
        for port in list(app.resources.get(f"{self.t.name}.ports", ())):
            self.unbind(app, port)

    def owned(self, app: App) -> list[int]:
        return sorted(app.resources.get(f"{self.t.name}.ports", ()))


class UdpTransport(Transport):
    """Datagrams on UDP ports bound through the daemon; the smallest etran transport."""

    name = "udp"
    proto = socket.IPPROTO_UDP
    family = "udp"
    ingress = "udp_ingress"
    egress = "udp_egress"

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon)
        self.ports = PortTable(self, socket.SOCK_DGRAM)

    def request(self, app: App, op: str, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        if op == "bind":
            return {"port": self.ports.bind(app, int(msg.get("port") or 0), self.daemon.quotas.max_ports)}, []
        if op == "unbind":
            self.ports.unbind(app, int(msg.get("port") or 0))
            return {}, []
        return super().request(app, op, msg)

    def reclaim(self, app: App, notify: bool = True) -> None:
        self.ports.release_all(app)

    def app_summary(self, app: App) -> dict[str, Any] | None:
        ports = self.ports.owned(app)
        return {"ports": ports} if ports else None


TRANSPORTS: dict[str, type[Transport]] = {
    "udp": UdpTransport,
}

from . import homa as _homa  # noqa: E402,F401  (last: it builds on this module, and registers "homa")

from . import tcp as _tcp  # noqa: E402,F401  (last: it builds on this module, and registers "tcp")
