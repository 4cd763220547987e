"""Tenant ports: one veth pair per application (the stock-kernel XDP_EGRESS).

    hook side  etk<slot>  native XDP egress_hook: every frame the application sends lands
                          here as a private copy, is checked, and goes to the NIC or is dropped
    app side   eta<slot>  native XDP to_app_xsk: frames for the application go into its XSK

The application's AF_XDP socket is bound to the app side, so the hook is its only path to
the wire. Names carry the slot so a restarted daemon can find and remove leftovers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..bpf.attach import attach_xdp
from ..errors import EtranError
from .kernel import Kernel

HOOK_PREFIX = "etk"
# above the wire's 1500 so that oversized frames reach the egress hook, which drops and
# counts them, instead of vanishing in the veth
TENANT_MTU = 2000
APP_PREFIX = "eta"


@dataclass
class TenantPort:
    slot: int
    hook_ifname: str
    app_ifname: str
    hook_ifindex: int
    app_ifindex: int


def _disable_ipv6(ifname: str) -> None:
    """No link-local address, so the kernel sends nothing of its own into the port."""
    with contextlib.suppress(OSError):
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")


def create(kernel: Kernel, slot: int, xdp_mode: str = "native") -> TenantPort:
    """Create the veth pair of `slot`, attach the hook and to_app_xsk, and wire the maps.

    Runs in the daemon's (the host's) network namespace.
    """
    hook, app = f"{HOOK_PREFIX}{slot}", f"{APP_PREFIX}{slot}"
    with IPRoute() as ipr:
        for stale in (hook, app):
            for idx in ipr.link_lookup(ifname=stale):
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=idx)
        try:
            ipr.link("add", ifname=hook, kind="veth", peer={"ifname": app})
        except NetlinkError as e:
            raise EtranError(f"could not create the tenant port {hook}/{app}: {e}") from e
        hook_idx = ipr.link_lookup(ifname=hook)[0]
        app_idx = ipr.link_lookup(ifname=app)[0]
        for idx in (hook_idx, app_idx):
            ipr.link("set", index=idx, mtu=TENANT_MTU)
        _disable_ipv6(hook)
        _disable_ipv6(app)
    port = TenantPort(slot, hook, app, hook_idx, app_idx)
    try:
        attach_xdp(hook_idx, kernel.program("egress_hook"), mode=xdp_mode)
        attach_xdp(app_idx, kernel.program("to_app_xsk"), mode=xdp_mode)
        kernel.map("hook_slot").update(hook_idx, slot)
        kernel.map("app_port_slot").update(app_idx, slot)
        kernel.map("tx_ports").update(slot, hook_idx)
        with IPRoute() as ipr:
            for idx in (hook_idx, app_idx):
                ipr.link("set", index=idx, state="up")
    except BaseException:
        remove(kernel, port)
        raise
    return port


def remove(kernel: Kernel | None, port: TenantPort) -> None:
    """Unwire and delete a tenant port (deleting the veth detaches its programs)."""
    if kernel is not None:
        for name, key in (("hook_slot", port.hook_ifindex), ("app_port_slot", port.app_ifindex),
                          ("tx_ports", port.slot), ("xsks", port.slot)):
            with contextlib.suppress(OSError):
                kernel.map(name).delete(key)
    with IPRoute() as ipr:
        for idx in ipr.link_lookup(ifname=port.hook_ifname):
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=idx)


def remove_leftovers() -> list[str]:
    """Delete every tenant port in this namespace (a crashed daemon's); returns their names."""
    removed = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            if name.startswith(HOOK_PREFIX) and name[len(HOOK_PREFIX):].isdigit():
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=link["index"])
                    removed.append(name)
    return removed
