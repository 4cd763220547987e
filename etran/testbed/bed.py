"""A test bed: N hosts, each a network namespace, joined by a switch namespace.

```
  <name>-h1: eth0 198.18.0.1/15 ==veth== p1 ┐
  <name>-h2: eth0 198.18.0.2/15 ==veth== p2 ┤ br0 (Linux bridge) in <name>-sw
  ...                                       ┘
```

Every host has permanent neighbour entries for every other host and no route out of the
test bed; the bridge has a static FDB entry per host, so nothing is ever flooded. Each
switch port p<i> (the switch's egress towards host i) has an HTB rate limit (with strict
priority queues under it on request: one per Homa DSCP level, one for the rest) and the
eBPF ECN marker / fault injector of switch.py; offloads are off everywhere, MTU 1500.
Everything a bed owns is named after it: namespaces `<name>-sw`, `<name>-h<i>`, BPF pins
under /sys/fs/bpf/etran/<name>/. We never create mount namespaces, so the pins are visible
from every network namespace (enter one with setns, as `etran exec` and `Host.enter` do;
never with `ip netns exec`, which hides them).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .. import netns, sysinfo
from ..errors import EtranError, PrivilegeError, TestbedError
from . import offload, switch
from ..ipc import RUN_DIR
from .hooks import HostHook
from ..kernel.structs import SwitchPortConfig
from .switch import LinkSettings, SwitchMaps

DEFAULT_NAME = "etran"
DEFAULT_RATE_GBIT = 10.0
SUBNET = "198.18.0.0/15"   # RFC 2544 benchmarking range
PREFIXLEN = 15
MAX_HOSTS = 254            # host i is 198.18.0.i
HOST_IFNAME = "eth0"
BRIDGE = "br0"
MTU = 1500
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,23}$")
LOCK_PATH = "/run/lock/etran-testbed.lock"
UP_TIMEOUT_S = 10.0

NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_MASTER = 0x04
IF_OPER_UP = 6
TC_H_ROOT = 0xFFFFFFFF
HTB_ROOT = 0x10000         # 1:
HTB_CLASS = 0x10001        # 1:1, the default class
# Strict priority queues under a port's HTB class, as a datacenter switch has (this kernel has
# no `prio` qdisc: HTB's own class priorities do it), on request (Testbed.set_priorities).
# Leaf 1:(0x10 + b) holds band b: bands 0..7 carry Homa's levels 7..0 (DSCP high bits), band 8
# everything else (HTB cannot change its default class: the switch program, which every packet
# passes, classifies every packet itself). A leaf has a token rate of its own too small to
# matter and borrows the port rate from 1:1, and HTB lends to the lowest `prio` first.
# switch.bpf.c picks the leaf by setting skb->priority to its class id (without leaves HTB
# finds no such class and uses 1:1); keep these in step with its PRIO_* constants.
PRIO_BANDS = 9
PRIO_DEFAULT_BAND = PRIO_BANDS - 1
PRIO_CLASS_BASE = 0x10010  # 1:10, band 0
PRIO_LEAF_RATE = 125       # bytes/s (1 kbit/s) of a leaf's own


def host_ip(i: int) -> str:
    return f"198.18.0.{i}"


def host_mac(i: int) -> str:
    return f"02:e7:00:00:{i >> 8:02x}:{i & 0xFF:02x}"


def port_mac(i: int) -> str:
    return f"02:e7:00:01:{i >> 8:02x}:{i & 0xFF:02x}"


BRIDGE_MAC = "02:e7:00:02:00:00"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TestbedError(f"bad test bed name {name!r}: use 1-24 letters, digits, '_' or '-', starting with a letter "
                           f"(e.g. --name etran)")
    return name


def _check_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PrivilegeError(what, "root (CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_BPF)")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise up/down/configure between processes (one short global lock)."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ipr(ns: str | None) -> Any:
    """An IPRoute whose netlink socket lives in namespace `ns` (created by this thread inside it)."""
    from pyroute2 import IPRoute

    with netns.enter(ns):
        return IPRoute()


def _write_sysctl(key: str, value: str) -> None:
    """Write /proc/sys/<key> in the current thread's network namespace."""
    with open(os.path.join("/proc/sys", key.replace(".", "/")), "w") as f:
        f.write(value)


def _ns_inode(ns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(netns.path_of(ns))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(ns: str) -> list[int]:
    """Processes whose network namespace is `ns` (this process excluded)."""
    ident = _ns_inode(ns)
    if ident is None:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == ident:
            pids.append(int(entry))
    return pids


def _kill_all(pids: list[int], timeout: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                alive.append(pid)
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if os.path.exists(f"/proc/{p}") and _state(p) != "Z"]
            if alive:
                time.sleep(0.02)
        if not alive:
            return
        pids = alive


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


@dataclass(frozen=True)
class Host:
    """One host of a test bed: a network namespace with one NIC (eth0) to the switch."""

    bed: str
    index: int
    netns: str
    ip: str
    mac: str
    ifname: str
    ifindex: int          # of eth0, inside the host's namespace
    port: str             # the switch port facing this host (p<i>)
    port_ifindex: int     # its ifindex, inside the switch namespace

    @property
    def name(self) -> str:
        return f"h{self.index}"

    def enter(self) -> contextlib.AbstractContextManager[None]:
        """`with host.enter(): ...` runs the body in this host's network namespace (this thread only)."""
        return netns.enter(self.netns)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM, proto: int = 0) -> socket.socket:
        """A kernel socket that belongs to this host's network namespace."""
        with self.enter():
            return socket.socket(family, type, proto)

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """subprocess.run inside the host's namespace (the network namespace only: pins stay visible)."""
        with self.enter():
            return subprocess.run(list(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """subprocess.Popen inside the host's namespace; `down` ends whatever is still running there."""
        with self.enter():
            return subprocess.Popen(list(argv), **kwargs)


class Testbed:
    """A named test bed. `Testbed("etran").up(hosts=2)`, `.hosts`, `.switch_stats()`, `.down()`."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = DEFAULT_NAME) -> None:
        self.name = check_name(name)
        self._hooks: list[HostHook] = []

    def __repr__(self) -> str:
        return f"Testbed({self.name!r})"

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        """`with Testbed("x").up(hosts=2) as bed: ...` takes the bed down at the end."""
        self.down()

    # ---- names ----------------------------------------------------------------------
    @property
    def switch_netns(self) -> str:
        return f"{self.name}-sw"

    def host_netns(self, i: int) -> str:
        return f"{self.name}-h{i}"

    @property
    def pin_dir(self) -> str:
        return switch.pin_dir(self.name)

    def _host_indexes(self) -> list[int]:
        pattern = re.compile(re.escape(self.name) + r"-h([1-9][0-9]*)$")
        try:
            entries = os.listdir(netns.NETNS_RUN_DIR)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for e in entries if (m := pattern.match(e)))

    def exists(self) -> bool:
        """Anything of this bed exists (namespaces or pins)."""
        return netns.exists(self.switch_netns) or bool(self._host_indexes()) or os.path.isdir(self.pin_dir)

    def is_complete(self, hosts: int | None = None) -> bool:
        """Up and whole: switch, hosts 1..N (N=`hosts` if given) and the pins all there."""
        idx = self._host_indexes()
        if not idx or idx != list(range(1, len(idx) + 1)) or (hosts is not None and len(idx) != hosts):
            return False
        return netns.exists(self.switch_netns) and SwitchMaps.pinned(self.name)

    # ---- hosts ----------------------------------------------------------------------
    @property
    def hosts(self) -> list[Host]:
        """The bed's hosts, h1 first (empty if the bed is down). Looked up afresh on every
        call (a few microseconds per host), so it never goes stale when the bed is rebuilt."""
        return [self._describe_host(i) for i in self._host_indexes()]

    def _describe_host(self, i: int) -> Host:
        ns = self.host_netns(i)
        try:
            with netns.enter(ns):
                ifindex = socket.if_nametoindex(HOST_IFNAME)
        except (OSError, EtranError):
            ifindex = 0
        try:
            with netns.enter(self.switch_netns):
                port_ifindex = socket.if_nametoindex(f"p{i}")
        except (OSError, EtranError):
            port_ifindex = 0
        return Host(bed=self.name, index=i, netns=ns, ip=host_ip(i), mac=host_mac(i), ifname=HOST_IFNAME,
                    ifindex=ifindex, port=f"p{i}", port_ifindex=port_ifindex)

    def host(self, which: str | int) -> Host:
        """A host by name ("h1"), index (1) or namespace name ("<bed>-h1")."""
        s = str(which)
        if s.startswith(self.name + "-"):
            s = s[len(self.name) + 1:]
        m = re.fullmatch(r"h?([0-9]+)", s)
        hosts = self.hosts
        if m:
            for h in hosts:
                if h.index == int(m.group(1)):
                    return h
        names = ", ".join(h.name for h in hosts) or "none: the bed is down"
        raise TestbedError(f"test bed {self.name!r} has no host {which!r} (hosts: {names}); "
                           f"see `etran testbed status --name {self.name}`")

    # ---- up ---------------------------------------------------------------------------
    def up(self, hosts: int = 2, rate_gbit: float | None = DEFAULT_RATE_GBIT, ecn_threshold_kb: float | None = None,
           loss: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0, corrupt: float = 0.0,
           hooks: Sequence[HostHook] = ()) -> Testbed:
        """Create the bed (or, if a complete bed of this size exists, apply these settings to
        it and zero its counters). Every switch port gets the same link settings; change
        them per port later with `configure`. `hooks` run per host once the network is up
        (the per-host daemon plugs in here). On failure nothing is left behind."""
        if isinstance(hosts, bool) or not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
            raise TestbedError(f"--hosts {hosts!r}: a test bed needs between 1 and {MAX_HOSTS} hosts (e.g. --hosts 2)")
        settings = LinkSettings(rate_gbit=rate_gbit, ecn_threshold_kb=ecn_threshold_kb, loss=loss,
                                duplicate=duplicate, reorder=reorder, corrupt=corrupt).validate()
        _check_root(f"bringing up test bed {self.name!r}")
        with _locked():
            if self.is_complete(hosts):
                self._configure_locked(None, settings.as_dict())
                self.reset_stats()
            else:
                if self.exists():
                    self._down_locked()
                try:
                    self._build(hosts, settings)
                except BaseException:
                    self._down_locked()
                    raise
        self._hooks = list(hooks)
        try:
            for hook in self._hooks:
                for h in self.hosts:
                    hook.start(self, h)
        except BaseException:
            self.down()
            raise
        return self

    def _build(self, n: int, settings: LinkSettings) -> None:
        from pyroute2 import netns as pyroute2_netns
        from pyroute2.netlink.exceptions import NetlinkError

        sw = self.switch_netns
        try:
            sysinfo.ensure_bpffs()
        except (OSError, subprocess.CalledProcessError) as e:
            raise TestbedError(f"bpffs is not mounted at /sys/fs/bpf and mounting it failed ({e}); "
                               "mount it: mount -t bpf bpf /sys/fs/bpf") from e
        try:
            pyroute2_netns.create(sw)
            for i in range(1, n + 1):
                pyroute2_netns.create(self.host_netns(i))
        except OSError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                raise PrivilegeError("creating network namespaces", "root (CAP_SYS_ADMIN)") from e
            raise TestbedError(f"creating the namespaces of test bed {self.name!r} failed: {e}") from e

        # No IPv6 anywhere: no router solicitations, MLD or DAD frames in the counters.
        for ns in [sw] + [self.host_netns(i) for i in range(1, n + 1)]:
            with netns.enter(ns):
                for conf in ("all", "default"):
                    _write_sysctl(f"net.ipv6.conf.{conf}.disable_ipv6", "1")

        ipr = _ipr(sw)
        try:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname=BRIDGE, kind="bridge", address=BRIDGE_MAC, br_stp_state=0, br_forward_delay=0,
                     br_mcast_snooping=0)
            br = ipr.link_lookup(ifname=BRIDGE)[0]
            ports: dict[int, LinkSettings] = {}
            for i in range(1, n + 1):
                fd = os.open(netns.path_of(self.host_netns(i)), os.O_RDONLY)
                try:
                    ipr.link("add", ifname=f"p{i}", kind="veth", address=port_mac(i), mtu=MTU,
                             peer={"ifname": HOST_IFNAME, "net_ns_fd": fd, "address": host_mac(i), "mtu": MTU})
                finally:
                    os.close(fd)
                p = ipr.link_lookup(ifname=f"p{i}")[0]
                ports[p] = settings
                with netns.enter(sw):
                    offload.disable_offloads(f"p{i}")
                ipr.link("set", index=p, master=br)
                # hairpin: a host's frame to its own MAC comes back out of its port, which is how
                # two applications on one host reach each other through the wire path
                ipr.brport("set", index=p, mode=1)
                ipr.fdb("add", ifindex=p, lladdr=host_mac(i), flags=NTF_MASTER, state=NUD_NOARP)
                _set_rate(ipr, p, settings.rate_kbps)
            # the eBPF marker / fault injector on every port's egress, maps pinned
            switch.load_and_pin(self.name, ports, sw)
            for p in ports:
                ipr.link("set", index=p, state="up")
            ipr.link("set", index=br, state="up")
        except NetlinkError as e:
            raise TestbedError(f"building the switch of test bed {self.name!r} failed: {e}") from e
        finally:
            ipr.close()

        for i in range(1, n + 1):
            with netns.enter(self.host_netns(i)):
                offload.disable_offloads(HOST_IFNAME)
            hipr = _ipr(self.host_netns(i))
            try:
                hipr.link("set", index=hipr.link_lookup(ifname="lo")[0], state="up")
                eth = hipr.link_lookup(ifname=HOST_IFNAME)[0]
                hipr.addr("add", index=eth, address=host_ip(i), prefixlen=PREFIXLEN)
                for j in range(1, n + 1):
                    if j != i:
                        hipr.neigh("add", dst=host_ip(j), lladdr=host_mac(j), ifindex=eth, state=NUD_PERMANENT)
                hipr.link("set", index=eth, state="up")
            except NetlinkError as e:
                raise TestbedError(f"configuring host h{i} of test bed {self.name!r} failed: {e}") from e
            finally:
                hipr.close()
        self._wait_operational(n)

    def _wait_operational(self, n: int) -> None:
        """Wait until every link is operationally up (its qdisc is attached, so frames go through)."""
        deadline = time.monotonic() + UP_TIMEOUT_S
        pending = [(self.host_netns(i), HOST_IFNAME) for i in range(1, n + 1)] + \
                  [(self.switch_netns, f"p{i}") for i in range(1, n + 1)]
        while pending:
            still = []
            for ns, ifname in pending:
                ipr = _ipr(ns)
                try:
                    link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
                    if link.get_attr("IFLA_OPERSTATE") != "UP" and link.get_attr("IFLA_OPERSTATE") != IF_OPER_UP:
                        still.append((ns, ifname))
                finally:
                    ipr.close()
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    raise TestbedError(f"links of test bed {self.name!r} did not come up within {UP_TIMEOUT_S:.0f} s: "
                                       + ", ".join(f"{ifname} in {ns}" for ns, ifname in pending))
                time.sleep(0.01)

    # ---- down -------------------------------------------------------------------------
    def down(self) -> None:
        """Remove everything of this bed: processes in its namespaces, the namespaces, the pins.
        Fine to call when (part of) the bed does not exist."""
        _check_root(f"taking down test bed {self.name!r}")
        for hook in reversed(self._hooks):
            for h in self.hosts:
                with contextlib.suppress(Exception):
                    hook.stop(self, h)
        self._hooks = []
        with _locked():
            self._down_locked()

    def _down_locked(self) -> None:
        from pyroute2 import netns as pyroute2_netns

        names = [self.host_netns(i) for i in self._host_indexes()]
        if netns.exists(self.switch_netns):
            names.append(self.switch_netns)
        pids = [pid for ns in names for pid in pids_in_netns(ns)]
        if pids:
            _kill_all(pids)
        switch.unpin(self.name)
        for ns in names:  # what per-host daemons keep beside their namespace
            for path in (f"{ns}.sock", f"{ns}.pid", os.path.join("log", f"{ns}.log")):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(RUN_DIR, path))
        for ns in names:
            try:
                pyroute2_netns.remove(ns)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise TestbedError(f"removing network namespace {ns} failed: {e}") from e

    # ---- live changes -------------------------------------------------------------------
    _UNSET: Any = object()

    def configure(self, hosts: Sequence[str | int] | None = None, *, rate_gbit: float | None = _UNSET,
                  ecn_threshold_kb: float | None = _UNSET, loss: float = _UNSET, duplicate: float = _UNSET,
                  reorder: float = _UNSET, corrupt: float = _UNSET) -> None:
        """Change the link settings of the switch ports towards `hosts` (None: all) on a live
        bed; settings not given stay as they are. rate_gbit=None removes the rate limit."""
        changes = {k: v for k, v in dict(rate_gbit=rate_gbit, ecn_threshold_kb=ecn_threshold_kb, loss=loss,
                                         duplicate=duplicate, reorder=reorder, corrupt=corrupt).items()
                   if v is not self._UNSET}
        _check_root(f"changing test bed {self.name!r}")
        with _locked():
            self._configure_locked(hosts, changes)

    set_faults = configure

    def set_priorities(self, hosts: Sequence[str | int] | None = None, on: bool = True) -> None:
        """Give the switch ports towards `hosts` (None: all) strict priority queues keyed on
        Homa's DSCP levels (on=False: take them away). Needs a rate limit on those ports (the
        queues live in its HTB class); they stay while the rate changes, and go with it."""
        _check_root(f"changing test bed {self.name!r}")
        with _locked():
            if not self.is_complete():
                raise TestbedError(f"test bed {self.name!r} is not up; bring it up first: "
                                   f"etran testbed up --name {self.name}")
            targets = self.hosts if hosts is None else [self.host(h) for h in hosts]
            with SwitchMaps(self.name) as maps:
                rates = {h: (maps.config(h.port_ifindex) or SwitchPortConfig()).rate_kbps for h in targets}
            missing = [h.name for h, r in rates.items() if not r]
            if on and missing:
                raise TestbedError(f"priority queues need a rate limit on the port (they live in its HTB class); "
                                   f"set one first: etran testbed set --name {self.name} --host {missing[0]} --rate 0.1")
            ipr = _ipr(self.switch_netns)
            try:
                for h, rate in rates.items():
                    if rate:
                        _set_priorities(ipr, h.port_ifindex, rate, on)
            finally:
                ipr.close()

    def _configure_locked(self, hosts: Sequence[str | int] | None, changes: dict[str, Any]) -> None:
        if not self.is_complete():
            raise TestbedError(f"test bed {self.name!r} is not up; bring it up first: etran testbed up --name {self.name}")
        targets = self.hosts if hosts is None else [self.host(h) for h in hosts]
        with SwitchMaps(self.name) as maps:
            new = {}
            for h in targets:  # validate everything before changing anything
                cfg = maps.config(h.port_ifindex)
                current = LinkSettings.from_config(cfg) if cfg is not None else LinkSettings()
                new[h] = (current, current.replace(**changes))
            ipr = _ipr(self.switch_netns)
            try:
                for h, (old, settings) in new.items():
                    if settings.rate_kbps != old.rate_kbps:
                        _set_rate(ipr, h.port_ifindex, settings.rate_kbps)
                    maps.set_config(h.port_ifindex, settings.to_config())
            finally:
                ipr.close()

    def link_settings(self) -> dict[str, LinkSettings]:
        """Per host name: the settings of the switch port towards it."""
        out = {}
        with SwitchMaps(self.name) as maps:
            for h in self.hosts:
                cfg = maps.config(h.port_ifindex)
                if cfg is not None:
                    out[h.name] = LinkSettings.from_config(cfg)
        return out

    # ---- counters -------------------------------------------------------------------------
    def switch_stats(self) -> dict[str, dict[str, int]]:
        """Per host name: counters of the switch port towards it (the eBPF program's, plus the
        HTB qdisc's `qdisc_packets`, `qdisc_drops`, `qdisc_backlog`, `qdisc_qlen`)."""
        out: dict[str, dict[str, int]] = {}
        hosts = self.hosts
        qdiscs = self._qdisc_stats()
        with SwitchMaps(self.name) as maps:
            for h in hosts:
                st = maps.stats(h.port_ifindex)
                cfg = maps.config(h.port_ifindex)
                if st is None:
                    continue
                d = switch.stats_dict(st, cfg.rate_kbps if cfg is not None else 0)
                d.update(qdiscs.get(h.port_ifindex, {"qdisc_packets": 0, "qdisc_drops": 0, "qdisc_backlog": 0,
                                                     "qdisc_qlen": 0}))
                d["ifindex"] = h.port_ifindex
                out[h.name] = d
        return out

    def _qdisc_stats(self) -> dict[int, dict[str, int]]:
        out = {}
        ipr = _ipr(self.switch_netns)
        try:
            for msg in ipr.get_qdiscs():
                if msg["parent"] != TC_H_ROOT or msg.get_attr("TCA_KIND") != "htb":
                    continue
                s2 = msg.get_attr("TCA_STATS2")
                basic = s2.get_attr("TCA_STATS_BASIC") if s2 else None
                queue = s2.get_attr("TCA_STATS_QUEUE") if s2 else None
                out[msg["index"]] = {
                    "qdisc_packets": int(basic["packets"]) if basic else 0,
                    "qdisc_drops": int(queue["drops"]) if queue else 0,
                    "qdisc_backlog": int(queue["backlog"]) if queue else 0,
                    "qdisc_qlen": int(queue["qlen"]) if queue else 0,
                }
        finally:
            ipr.close()
        return out

    def priority_stats(self) -> dict[str, list[int]]:
        """Per host name whose switch port has a rate limit: packets sent from each band of its
        strict priority queue (band b < 8 is Homa level 7 - b; band 8 is everything else)."""
        out: dict[str, list[int]] = {}
        ipr = _ipr(self.switch_netns)
        try:
            for h in self.hosts:
                bands = [0] * PRIO_BANDS
                found = False
                for msg in ipr.get_classes(index=h.port_ifindex):
                    band = msg["handle"] - PRIO_CLASS_BASE
                    s2 = msg.get_attr("TCA_STATS2")
                    basic = s2.get_attr("TCA_STATS_BASIC") if s2 else None
                    if 0 <= band < PRIO_BANDS and basic:
                        bands[band] = int(basic["packets"])
                        found = True
                if found:
                    out[h.name] = bands
        finally:
            ipr.close()
        return out

    def reset_stats(self) -> None:
        """Zero the switch's eBPF counters (qdisc counters keep counting)."""
        with SwitchMaps(self.name) as maps:
            for h in self.hosts:
                maps.reset_stats(h.port_ifindex)

    # ---- listing --------------------------------------------------------------------------
    @classmethod
    def list_existing(cls) -> list[Testbed]:
        """Every bed with a switch namespace or switch pins on this machine, by name."""
        names = set()
        with contextlib.suppress(FileNotFoundError):
            for e in os.listdir(netns.NETNS_RUN_DIR):
                if e.endswith("-sw") and NAME_RE.match(e[:-3]):
                    names.add(e[:-3])
        with contextlib.suppress(FileNotFoundError):
            for e in os.listdir(switch.PIN_ROOT):
                d = os.path.join(switch.PIN_ROOT, e)
                if NAME_RE.match(e) and os.path.isdir(d) and \
                        any(os.path.exists(os.path.join(d, p)) for p in (*switch.MAPS, switch.PROGRAM)):
                    names.add(e)
        return [cls(n) for n in sorted(names)]


def _set_rate(ipr: Any, ifindex: int, rate_kbps: int) -> None:
    """HTB root qdisc with one default class at `rate_kbps` (0: no rate limit, no qdisc); the
    priority leaves, where the port has them, follow the rate."""
    from pyroute2.netlink.exceptions import NetlinkError

    if rate_kbps == 0:
        with contextlib.suppress(NetlinkError):
            ipr.tc("del", index=ifindex, handle=HTB_ROOT, parent=TC_H_ROOT)
        return
    rate = rate_kbps * 1000 // 8                       # bytes/s
    burst = max(2 * (MTU + 14), rate // 1000)          # 1 ms at the rate, at least two frames
    quantum = min(max(MTU + 14, rate // 10_000), 200_000)
    params = dict(parent=HTB_ROOT, rate=rate, ceil=rate, burst=burst, cburst=burst, quantum=quantum)
    try:
        ipr.tc("change-class", "htb", ifindex, HTB_CLASS, **params)
    except NetlinkError:
        ipr.tc("add", "htb", ifindex, HTB_ROOT, default=HTB_CLASS & 0xFFFF)
        ipr.tc("add-class", "htb", ifindex, HTB_CLASS, **params)
    if _has_priorities(ipr, ifindex):
        _set_priorities(ipr, ifindex, rate_kbps, True)


def _has_priorities(ipr: Any, ifindex: int) -> bool:
    return any(msg["handle"] == PRIO_CLASS_BASE for msg in ipr.get_classes(index=ifindex))


def _set_priorities(ipr: Any, ifindex: int, rate_kbps: int, on: bool) -> None:
    """Add (or update) or remove the strict priority leaves under the port's HTB class."""
    from pyroute2.netlink.exceptions import NetlinkError

    rate = rate_kbps * 1000 // 8
    if not on:
        for b in range(PRIO_BANDS):
            with contextlib.suppress(NetlinkError):
                ipr.tc("del-class", index=ifindex, handle=PRIO_CLASS_BASE + b, parent=HTB_CLASS)
        return
    leaf = dict(parent=HTB_CLASS, rate=min(PRIO_LEAF_RATE, rate), ceil=rate, burst=2 * (MTU + 14),
                cburst=max(2 * (MTU + 14), rate // 1000), quantum=MTU + 14)
    for b in range(PRIO_BANDS):
        classid, prio = PRIO_CLASS_BASE + b, min(b, 7)     # HTB has prio 0..7
        try:
            ipr.tc("change-class", "htb", ifindex, classid, prio=prio, **leaf)
        except NetlinkError:
            ipr.tc("add-class", "htb", ifindex, classid, prio=prio, **leaf)
