"""The per-host control-path daemon (`etran daemon --dev IFACE [--netns HOST]`).

It loads the core and the transports, attaches the entrance to the NIC, serves
applications over a Unix socket (registration, resources, fds by SCM_RIGHTS), reclaims
everything of an application whose socket closes, runs timers and the live-frame
generator, and manages the policy chain.  It removes all it made when it stops; a
restart after a crash first removes a predecessor's leftovers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute

from .. import ipc, netns, sysinfo
from ..bpf import Map
from ..bpf.attach import attach_xdp, detach_xdp
from ..bpf.objects import BPF_F_MMAPABLE, BPF_MAP_TYPE_ARRAY
from ..errors import EtranError
from ..kernel.structs import AppInfo, HostPub, Limits
from ..lib.sched import request_short_slice
from ..xsk.socket import XskSocket
from ..xsk.umem import Umem
from . import tenants
from .kernel import MAX_APPS, Kernel, drop_counts
from .neighbours import Neighbours
from .policy import PolicyManager
from .transports import TRANSPORTS, Transport

log = logging.getLogger("etran.daemon")

SO_PEERCRED = 17
DEFAULT_FRAMES = 4096
FRAME_SIZE = 2048
RING_SIZE = 2048
TICK_BUSY = 0.001  # seconds between looks at the generation queue while it is in use
TICK_DRAINED = 0.004  # ... at most this while applications' blank frames keep it drained
TICK_IDLE = 0.032  # ... and at most this when it is not in use
NEIGH_EVERY = 0.02


@dataclass
class Quotas:
    """Per-application limits, set by the daemon and enforced in the kernel where flows/RPCs are made."""

    max_flows: int = 1024
    max_rpcs: int = 4096
    max_ports: int = 64
    rate: str | None = None  # e.g. "1gbit": every application's egress is capped in the kernel


@dataclass
class App:
    slot: int
    name: str
    uid: int
    pid: int
    conn: socket.socket | None
    port: tenants.TenantPort
    umem: Umem | None = None
    xsk: XskSocket | None = None
    pub: Map | None = None
    memfd: int = -1
    resources: dict[str, Any] = field(default_factory=dict)  # transports keep theirs here
    registered_at: float = field(default_factory=time.monotonic)


class Daemon:
    def __init__(self, dev: str, host: str | None = None, socket_path: str | None = None,
                 xdp_mode: str = "native", quotas: Quotas | None = None,
                 transports: tuple[str, ...] | None = None) -> None:
        self.dev = dev
        self.host = host  # the network namespace's name, or None for the current one
        self.socket_path = socket_path or ipc.socket_path(host)
        self.xdp_mode = xdp_mode
        self.quotas = quotas or Quotas()
        self.transport_names = transports or tuple(TRANSPORTS)
        self.kernel: Kernel | None = None
        self.policies: PolicyManager | None = None
        self.transports: dict[str, Transport] = {}
        self._by_proto: dict[int, Transport] = {}
        self.apps: dict[int, App] = {}
        self.nic_ifindex = 0
        self.ip = ""
        self.mac = ""
        self.mtu = 1500
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listener: socket.socket | None = None
        self._stopping: asyncio.Event | None = None
        self.started = time.time()
        # pyroute2's synchronous API refuses to run inside a running event loop: netlink work
        # (tenant ports, XDP attach) happens on this worker thread, in the same namespace
        self._netlink = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="etran-netlink")

    def blocking(self, fn, *args):
        """Run fn(*args) off the event loop's thread when a loop is running there (and wait)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args)
        return self._netlink.submit(fn, *args).result()

    # ---- set-up and tear-down ---------------------------------------------------------
    def run(self) -> None:
        """Enter the host, set up, serve until SIGTERM/SIGINT, tear down."""
        if self.host:
            netns.enter_forever(self.host)  # this thread only: call before starting any thread
        sysinfo.ensure_bpffs()
        try:
            self.setup()
            asyncio.run(self._serve())
        finally:
            self.teardown()

    def _read_nic(self) -> None:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.dev)
            if not found:
                raise EtranError(f"no interface {self.dev!r} in {'namespace ' + self.host if self.host else 'this namespace'}; "
                                 "pass the NIC with --dev")
            self.nic_ifindex = found[0]
            link = ipr.get_links(self.nic_ifindex)[0]
            self.mac = link.get_attr("IFLA_ADDRESS")
            self.mtu = link.get_attr("IFLA_MTU") or 1500
            addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=self.nic_ifindex, family=socket.AF_INET)]
        if not addrs:
            raise EtranError(f"{self.dev} has no IPv4 address; etran serves the NIC's first IPv4 address")
        self.ip = addrs[0]

    def cleanup_leftovers(self) -> list[str]:
        """Remove what a crashed predecessor left: tenant ports, the entrance, the socket file."""
        removed = tenants.remove_leftovers()
        with contextlib.suppress(EtranError):
            detach_xdp(self.dev, mode=self.xdp_mode)
            removed.append(f"xdp on {self.dev}")
        if os.path.exists(self.socket_path):
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
                removed.append(self.socket_path)
        return removed

    def setup(self) -> None:
        self._read_nic()
        leftovers = self.cleanup_leftovers()
        if leftovers:
            log.warning("removed leftovers of an earlier daemon: %s", ", ".join(leftovers))
        self.kernel = Kernel()
        self.kernel.set_host(self.ip, self.mac, self.nic_ifindex, self.mtu)
        self.kernel.map("host_pub").freeze()  # applications map it; nobody in user space writes it
        self.neighbours = Neighbours(self.kernel, self.nic_ifindex)
        self.neighbours.refresh()
        self.policies = PolicyManager(self.kernel, app_slot_of=self.slot_of)
        for name in self.transport_names:
            t = TRANSPORTS[name](self)
            try:
                t.start()
            except Exception as e:  # one transport that will not load must not take the host down
                log.error("transport %s is not available: %s", name, e)
                with contextlib.suppress(Exception):
                    t.stop()
                continue
            self.transports[name] = t
        self._by_proto = {t.proto: t for t in self.transports.values()}
        # the daemon is application slot 0: its tenant port is the slow path
        self.apps[0] = self._make_app(0, "etran-daemon", 0, os.getpid(), None)
        attach_xdp(self.nic_ifindex, self.kernel.program("entrance"), mode=self.xdp_mode)
        os.makedirs(os.path.dirname(self.socket_path), exist_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o666)  # applications are unprivileged; SO_PEERCRED tells who they are
        self.listener.listen(128)
        self.listener.setblocking(False)
        log.info("etran daemon on %s (%s, %s) serving %s", self.dev, self.ip, self.mac, self.socket_path)

    def teardown(self) -> None:
        for slot in sorted(self.apps, reverse=True):
            with contextlib.suppress(Exception):
                self._reclaim(self.apps[slot], notify=slot != 0)
        self.apps.clear()
        for t in self.transports.values():
            with contextlib.suppress(Exception):
                t.stop()
        self.transports.clear()
        with contextlib.suppress(Exception):
            detach_xdp(self.nic_ifindex or self.dev, mode=self.xdp_mode)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None

    # ---- applications -----------------------------------------------------------------
    def slot_of(self, app: Any) -> int:
        """An application by slot number or name."""
        if isinstance(app, int) or (isinstance(app, str) and app.isdigit()):
            slot = int(app)
            if slot in self.apps:
                return slot
        else:
            for a in self.apps.values():
                if a.name == app:
                    return a.slot
        raise EtranError(f"no application {app!r} on this host; `etran stats` lists them")

    def _free_slot(self) -> int:
        for slot in range(1, MAX_APPS):
            if slot not in self.apps:
                return slot
        raise EtranError(f"this host already serves {MAX_APPS - 1} applications; stop one first")

    def _make_app(self, slot: int, name: str, uid: int, pid: int, conn: socket.socket | None,
                  frames: int = DEFAULT_FRAMES) -> App:
        k = self.kernel
        port = self.blocking(tenants.create, k, slot, self.xdp_mode)
        app = App(slot, name, uid, pid, conn, port)
        try:
            app.memfd = os.memfd_create(f"etran-umem-{slot}", os.MFD_CLOEXEC)
            os.ftruncate(app.memfd, frames * FRAME_SIZE)
            app.umem = Umem(frames, FRAME_SIZE, memfd=app.memfd)
            app.xsk = XskSocket(port.app_ifindex, 0, umem=app.umem, mode="copy", need_wakeup=True,
                                rx_size=RING_SIZE, tx_size=RING_SIZE, prefill=0 if slot else None)
            k.map("xsks").update(slot, app.xsk.fileno())
            app.pub = Map.create(BPF_MAP_TYPE_ARRAY, 4, struct.calcsize("8Q"), int(Limits.ETRAN_PUB_SLOTS),
                                 BPF_F_MMAPABLE, f"pub{slot}")
            app.pub.freeze()
            k.map("app_pub").update(slot, app.pub.fd)
            info = AppInfo(active=1, hook_ifindex=port.hook_ifindex, app_ifindex=port.app_ifindex, uid=uid,
                           max_flows=self.quotas.max_flows, max_rpcs=self.quotas.max_rpcs)
            k.map("apps").update(slot, info)
            k.clear_app_stats(slot)
        except BaseException:
            self._release(app)
            raise
        self.apps[slot] = app
        return app

    def _release(self, app: App) -> None:
        k = self.kernel
        if k is not None:
            with contextlib.suppress(OSError):
                k.map("apps").update(app.slot, AppInfo())
            with contextlib.suppress(OSError):
                k.map("app_pub").delete(app.slot)
        self.blocking(tenants.remove, k, app.port)
        if app.xsk is not None:
            app.xsk.close()
        if app.umem is not None:
            app.umem.close()
        if app.memfd >= 0:
            os.close(app.memfd)
            app.memfd = -1
        if app.pub is not None:
            app.pub.close()

    def _reclaim(self, app: App, notify: bool = True) -> None:
        """Everything of an application goes: transport state (peers told), limits, port, maps."""
        for t in self.transports.values():
            with contextlib.suppress(Exception):
                t.reclaim(app, notify=notify)
        if self.policies is not None:
            self.policies.drop_app(app.slot)
        self._release(app)
        if app.conn is not None:
            if self.loop is not None:
                with contextlib.suppress(Exception):
                    self.loop.remove_reader(app.conn.fileno())
            app.conn.close()
            app.conn = None
        self.apps.pop(app.slot, None)
        log.info("reclaimed application %s (slot %d)", app.name, app.slot)

    def register(self, conn: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, 12))
        frames = int(msg.get("frames") or DEFAULT_FRAMES)
        if frames < 64 or frames > 65536 or frames & (frames - 1):
            raise EtranError("frames must be a power of two between 64 and 65536")
        app = self._make_app(self._free_slot(), str(msg.get("name") or f"pid{pid}")[:64], uid, pid, conn, frames)
        reply = {
            "slot": app.slot,
            "host": {"ip": self.ip, "mac": self.mac, "mtu": self.mtu, "dev": self.dev, "name": self.host},
            "umem": {"frames": frames, "frame_size": FRAME_SIZE},
            "rings": {"rx": RING_SIZE, "tx": RING_SIZE, "fill": app.umem.fill_size, "comp": app.umem.comp_size},
            "pub_slots": int(Limits.ETRAN_PUB_SLOTS),
            "transports": sorted(self.transports),
        }
        host_pub = self.kernel.map("host_pub")
        return reply, [app.xsk.fileno(), app.memfd, host_pub.fd, app.pub.fd]

    # ---- serving ------------------------------------------------------------------------
    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        # the timers (delayed ACKs, congestion control every round, resends, live-frame
        # generation) are only useful on time: run at once on waking, even beside CPU hogs
        request_short_slice()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._stopping.set)
        self.loop.add_reader(self.listener.fileno(), self._accept)
        self.loop.add_reader(self.apps[0].xsk.fileno(), self._on_slow_path)
        for t in self.transports.values():
            t.on_loop(self.loop)
        ticker = asyncio.create_task(self._ticker())
        print(f"etran daemon ready on {self.dev} ({self.ip}) at {self.socket_path}", flush=True)
        await self._stopping.wait()
        ticker.cancel()

    async def _ticker(self) -> None:
        """The daemon's clock. Each tick: send the control packets no application's blank frame
        picked up since the last tick (the second XDP_GEN producer: live frames). Every
        NEIGH_EVERY: resolve neighbour misses; every second: refresh the neighbour map.

        The tick is TICK_BUSY while the daemon has to generate control packets itself, backs off
        to TICK_DRAINED while applications' blank frames drain the queue, and to TICK_IDLE when
        nothing was pushed for a while, so an idle daemon hardly wakes up."""
        pub = self.kernel.map("host_pub").mmap_array(HostPub, readonly=True)
        try:
            seen_popped = seen_pushed = 0
            interval = TICK_BUSY
            now = time.monotonic()
            next_neigh, next_refresh = now + NEIGH_EVERY, now + 1.0
            while True:
                await asyncio.sleep(interval)
                hp = pub[0]
                pending, popped, pushed = hp.gen_pending, hp.gen_popped, hp.gen_pushed
                if pending and popped == seen_popped:  # nobody drained the queue since the last look
                    try:
                        self.kernel.run_gen(min(pending, 256), self.nic_ifindex)
                    except OSError as e:
                        log.warning("live-frame generation failed: %s", e)
                    interval = TICK_BUSY
                else:  # back off; slower while applications drain what is pushed
                    interval = min(interval * 2, TICK_DRAINED if pushed != seen_pushed else TICK_IDLE)
                seen_popped, seen_pushed = hp.gen_popped, pushed
                now = time.monotonic()
                if now < next_neigh:
                    continue
                next_neigh = now + NEIGH_EVERY
                try:
                    misses = self.neighbours.pop_misses()
                    if misses:
                        self.blocking(self.neighbours.resolve, misses)
                    elif now >= next_refresh:
                        self.blocking(self.neighbours.refresh)
                        next_refresh = now + 1.0
                except Exception as e:  # never let a netlink hiccup stop the clock
                    log.warning("neighbour refresh failed: %s", e)
        finally:
            pub.close()

    def _on_slow_path(self) -> None:
        """Frames the data path handed up (slot 0): to their transport's slow_path()."""
        xsk = self.apps[0].xsk
        buf = xsk.umem.buf
        for _ in range(16):  # bounded: let the loop breathe between batches
            n = xsk.recv_batch()
            if not n:
                return
            b = xsk.rx_batch
            frames = [buf[a:a + ln] for a, ln in zip(b.addr[:n], b.len[:n])]
            xsk.release()
            for frame in frames:
                t = self._by_proto.get(frame[23]) if len(frame) > 23 else None
                if t is not None:
                    try:
                        t.slow_path(frame)
                    except Exception:
                        log.exception("%s slow path failed on a %d-byte frame", t.name, len(frame))

    def send_frames(self, frames: list[bytes]) -> int:
        """Send complete frames (with the host's MAC and address) from the daemon's own tenant
        port: SYN-ACKs, RSTs, RPC_UNKNOWNs. The egress hook trusts slot 0."""
        xsk = self.apps[0].xsk
        sent = xsk.send(frames)
        xsk.complete()
        return sent

    def stop(self) -> None:
        if self._stopping is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        session = {"app": None}
        self.loop.add_reader(conn.fileno(), self._on_message, conn, session)

    def _on_message(self, conn: socket.socket, session: dict[str, Any]) -> None:
        try:
            msg, fds = ipc.recv(conn)
        except BlockingIOError:
            return
        except (EtranError, OSError) as e:
            msg, fds = {"op": "?", "_error": str(e)}, []
        for fd in fds:  # applications never send us descriptors
            os.close(fd)
        if msg is None:  # the application exited or crashed
            self.loop.remove_reader(conn.fileno())
            app = session.get("app")
            if app is not None:
                self._reclaim(app)
            else:
                conn.close()
            return
        reply_fds: list[int] = []
        try:
            if "_error" in msg:
                raise EtranError(msg["_error"])
            reply, reply_fds = self.handle(conn, session, msg)
            reply = {"ok": True, **reply}
        except EtranError as e:
            reply = {"ok": False, "error": str(e)}
        except Exception as e:  # a bug must not take the host's daemon down
            log.exception("request %r failed", msg.get("op"))
            reply = {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        with contextlib.suppress(OSError):
            ipc.send(conn, reply, reply_fds)

    def handle(self, conn: socket.socket, session: dict[str, Any], msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        op = str(msg.get("op", ""))
        if op == "register":
            if session["app"] is not None:
                raise EtranError("this connection is already registered")
            reply, fds = self.register(conn, msg)
            session["app"] = self.apps[reply["slot"]]
            if self.quotas.rate:
                self.policies.add("ratelimit", rate=self.quotas.rate, app=reply["slot"])
            return reply, fds
        if op == "ping":
            return {"pong": True}, []
        if op in ("stats", "policy_add", "policy_del", "policy_list", "flows"):
            return self._admin(conn, op, msg), []
        transport_name, _, sub = op.partition(".")
        transport = self.transports.get(transport_name)
        if transport is None or not sub:
            raise EtranError(f"unknown request {op!r}")
        app = session["app"]
        if app is None:
            raise EtranError("register first")
        return transport.request(app, sub, msg)

    def _admin(self, conn: socket.socket, op: str, msg: dict[str, Any]) -> dict[str, Any]:
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, 12))
        if op != "stats" and uid != 0:
            raise EtranError("changing policies needs root")
        pm = self.policies
        if op == "policy_add":
            params = dict(msg.get("params") or {})
            return {"policy": pm.add(str(msg.get("kind")), **params).as_dict()}
        if op == "policy_del":
            return {"policy": pm.delete(str(msg.get("id"))).as_dict()}
        if op == "policy_list":
            return {"policies": pm.list()}
        if op == "flows":
            return {"flows": pm.flow_stats()}
        return self.stats()

    def stats(self) -> dict[str, Any]:
        k = self.kernel
        apps = []
        for slot, app in sorted(self.apps.items()):
            s = k.app_stats(slot)
            apps.append({"slot": slot, "name": app.name, "uid": app.uid, "pid": app.pid,
                         "rx_packets": s.rx_packets, "rx_bytes": s.rx_bytes, "tx_packets": s.tx_packets,
                         "tx_bytes": s.tx_bytes, "gen_packets": s.gen_packets, "drops": drop_counts(s),
                         **{f"{t.name}": t.app_summary(app) for t in self.transports.values() if t.app_summary(app)}})
        hp = k.host_pub()
        return {"host": self.host, "dev": self.dev, "ip": self.ip, "uptime_s": round(time.time() - self.started, 1),
                "apps": apps, "gen": {"pending": hp.gen_pending, "pushed": hp.gen_pushed, "popped": hp.gen_popped,
                                      "dropped": hp.gen_dropped},
                "policies": self.policies.list(), "transports": sorted(self.transports)}
