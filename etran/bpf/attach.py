"""Attaching programs to interfaces (XDP native/generic, tc clsact) through pyroute2.

Every call takes an optional network namespace; the netlink socket is opened by this
thread inside that namespace, so program fds stay valid (they are this process's fds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .. import netns as netns_mod
from ..errors import EtranError, PrivilegeError
from .objects import Program

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_MODES = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE, "any": 0}

TC_H_CLSACT = 0xFFFFFFF1
TC_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}


@contextlib.contextmanager
def ipr_in(netns: str | None) -> Iterator[IPRoute]:
    with netns_mod.enter(netns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _ifindex(ipr: IPRoute, iface: int | str) -> int:
    if isinstance(iface, int):
        return iface
    found = ipr.link_lookup(ifname=iface)
    if not found:
        raise EtranError(f"no interface {iface!r} here; check the name with `ip link` (in the right namespace)")
    return found[0]


def _netlink_error(e: NetlinkError, what: str) -> Exception:
    if e.code in (1, 13):
        return PrivilegeError(what, "CAP_NET_ADMIN (root)")
    return EtranError(f"{what} failed: {e}")


def attach_xdp(iface: int | str, prog: Program, mode: str = "native", netns: str | None = None,
               replace: bool = True) -> int:
    """Attach `prog` as the XDP program of `iface`; returns the ifindex."""
    if mode not in XDP_MODES:
        raise EtranError(f"unknown XDP mode {mode!r}; use one of {', '.join(XDP_MODES)}")
    flags = XDP_MODES[mode] | (0 if replace else XDP_FLAGS_UPDATE_IF_NOEXIST)
    with ipr_in(netns) as ipr:
        index = _ifindex(ipr, iface)
        try:
            ipr.link("set", index=index, xdp={"attrs": [("IFLA_XDP_FD", prog.fd), ("IFLA_XDP_FLAGS", flags)]})
        except NetlinkError as e:
            raise _netlink_error(e, f"attaching XDP program {prog.name} ({mode}) to ifindex {index}") from e
    return index


def detach_xdp(iface: int | str, mode: str = "native", netns: str | None = None) -> None:
    """Remove the XDP program of `iface` in `mode`; a missing program or interface is fine."""
    with ipr_in(netns) as ipr:
        try:
            index = _ifindex(ipr, iface)
            ipr.link("set", index=index, xdp={"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", XDP_MODES[mode])]})
        except (NetlinkError, EtranError):
            pass


def xdp_program_id(iface: int | str, netns: str | None = None) -> int:
    """The id of the XDP program attached to `iface` (0 if none)."""
    with ipr_in(netns) as ipr:
        index = _ifindex(ipr, iface)
        link = ipr.get_links(index)[0]
        xdp = link.get_attr("IFLA_XDP")
        return (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp else 0


def attach_tc(iface: int | str, prog: Program, direction: str = "egress", netns: str | None = None,
              priority: int = 1) -> int:
    """Attach `prog` as a direct-action cls_bpf filter on the clsact hook; returns the ifindex."""
    if direction not in TC_PARENTS:
        raise EtranError(f"unknown tc direction {direction!r}; use 'ingress' or 'egress'")
    with ipr_in(netns) as ipr:
        index = _ifindex(ipr, iface)
        try:
            with contextlib.suppress(NetlinkError):
                ipr.tc("add", "clsact", index)
            with contextlib.suppress(NetlinkError):
                ipr.tc("del-filter", "bpf", index, parent=TC_PARENTS[direction], prio=priority)
            ipr.tc("add-filter", "bpf", index, fd=prog.fd, name=prog.name, parent=TC_PARENTS[direction],
                   prio=priority, direct_action=True, classid=1)
        except NetlinkError as e:
            raise _netlink_error(e, f"attaching tc program {prog.name} ({direction}) to ifindex {index}") from e
    return index


def detach_tc(iface: int | str, direction: str | None = None, netns: str | None = None) -> None:
    """Remove clsact (direction=None: both hooks) or the filters of one direction."""
    with ipr_in(netns) as ipr:
        try:
            index = _ifindex(ipr, iface)
            if direction is None:
                ipr.tc("del", "clsact", index)
            else:
                ipr.tc("del-filter", "bpf", index, parent=TC_PARENTS[direction])
        except (NetlinkError, EtranError):
            pass
