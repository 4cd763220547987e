"""TCP's control path in the daemon: handshakes, teardown, timers, congestion control.

The data path (tcp.bpf.c) does the per-packet work of established connections. The daemon
does what is rare or slow, as eTran splits it:

  handshake   SYNs for a listening port and every packet of a connection being opened come
              here (slot 0, the slow path). A `TcpConnection` (etran.tcp.connection, the
              sans-I/O reference) negotiates MSS, window scaling, timestamps, SACK and ECN,
              retries SYN / SYN-ACK with backoff, and answers what needs a RST. The daemon then
              writes the connection into `tcp_flows`; the kernel completes a passive open itself
              when the ACK of our SYN-ACK arrives, and the application asks for the parameters
              (`tcp.accept`, `tcp.info`).
  congestion  the kernel queues a flow in `tcp_cc_q` when a round of data is acknowledged or a
              loss is seen; every tick the daemon reads the flow's counters (acked bytes,
              ECE-acked bytes, loss events, RTT) and runs the flow's algorithm (etran.tcp.cc:
              any registered name, swappable on a live connection), writing cwnd and the
              pacing rate (gain * cwnd / srtt) back (tcp_ctl) and asking for CWR after an ECN cut.
  timers      delayed ACKs (tcp_delack), RTO with exponential backoff (go-back-N from snd_una,
              published to the library), SYN/SYN-ACK retries, TIME_WAIT. None while the host
              has no TCP flow: the ticker sleeps until one appears.
  teardown    FINs are part of the byte stream (the data path tracks them); the daemon moves
              finished flows to TIME_WAIT or CLOSED, frees them when the application let go,
              and resets the connections of an application that dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import EtranError
from ..kernel.structs import TcpCtlCmd, TcpCtlOp, TcpFlow, TcpFlowKey
from ..kernel.structs import TcpFlowFlags as F
from ..kernel.structs import TcpKState as S
from ..tcp import cc as ccmod
from ..tcp.connection import (
    ConnectionFailed,
    Reset,
    TcpConfig,
    TcpConnection,
    TcpState,
    reset_for,
)
from ..tcp.rtt import RttEstimator
from ..tcp.seq import wire
from ..tcp.wire import ACK, RST, TcpSegment, build_packet, parse_packet
from .transports import TRANSPORTS, PortTable, Transport

if TYPE_CHECKING:
    from .daemon import App, Daemon

log = logging.getLogger("etran.daemon.tcp")

RCV_WND = 256 * 1024          # at most this much beyond what the application has read (its RX ring must hold it)
WSCALE = 7
MSS = 1460
MSL = 0.5                     # TIME_WAIT is 2 * MSL
TICK = 0.001
SCAN_EVERY = 0.01             # RTO, probe and teardown scan of every flow
MAX_RTO_RETRIES = 15
SCAN_PER_FLOW = 20e-6         # ... plus this per flow (the scan costs about that much each)
PROBE_MIN = 0.04              # a flow without progress for max(this, 2 * SRTT) gets a probe
ORPHAN_TIMEOUT = 10.0         # a closed application's half-closed flow waits this long for the peer's FIN
ETH_HDR = struct.Struct("!6s6sH")


def flow_key(raddr: str, rport: int, lport: int) -> TcpFlowKey:
    return TcpFlowKey(raddr=int.from_bytes(socket.inet_aton(raddr), "little"), rport=socket.htons(rport),
                      lport=socket.htons(lport))


@dataclass
class DFlow:
    """The daemon's record of one connection."""

    app: App
    raddr: str
    rport: int
    lport: int
    pub: int
    tag: int
    cc_name: str
    conn: TcpConnection | None = None        # during the handshake
    passive: bool = False
    own_port: bool = False                   # an ephemeral port of its own (client)
    cc: ccmod.CongestionControl | None = None
    mss: int = 1448
    established: bool = False
    accepted: bool = False
    app_closed: bool = False
    orphan_since: float | None = None
    tw_until: float | None = None
    done: bool = False                       # kernel state CLOSED (finished or reset)
    rtt: RttEstimator = field(default_factory=lambda: RttEstimator(initial_rto=1.0, min_rto=0.2, max_rto=60.0))
    seen_acked: int = 0
    seen_ecn: int = 0
    seen_loss: int = 0
    seen_rtt_samples: int = 0
    last_una: int = -1
    rto_count: int = 0
    probed_una: int = -1
    rate_sent: int = 0                       # the pacing rate last written to the kernel (bytes/s)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> TcpFlowKey:
        return flow_key(self.raddr, self.rport, self.lport)

    @property
    def ident(self) -> tuple[str, int, int]:
        return (self.raddr, self.rport, self.lport)


def load_cc_modules(spec: str | None = None) -> list[str]:
    """Import congestion-control plug-ins: $ETRAN_TCP_CC_MODULES, module names or .py paths
    separated by ':'. Each registers its algorithm(s) with etran.tcp.cc.register_congestion_control;
    no eBPF changes (the kernel only counts; the algorithm sets cwnd)."""
    import importlib
    import importlib.util

    loaded = []
    for item in filter(None, (spec if spec is not None else os.environ.get("ETRAN_TCP_CC_MODULES", "")).split(":")):
        try:
            if item.endswith(".py"):
                name = "etran_cc_" + os.path.basename(item)[:-3]
                mod_spec = importlib.util.spec_from_file_location(name, item)
                module = importlib.util.module_from_spec(mod_spec)
                mod_spec.loader.exec_module(module)
            else:
                importlib.import_module(item)
            loaded.append(item)
        except Exception as e:  # noqa: BLE001 (never let one failure stop the loop)
            log.error("congestion-control plug-in %s failed to load: %s", item, e)
    return loaded


class TcpTransport(Transport):
    name = "tcp"
    proto = socket.IPPROTO_TCP
    family = "tcp"
    ingress = "tcp_ingress"
    egress = "tcp_egress"
    gen = "tcp_gen"

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon)
        self.ports = PortTable(self, socket.SOCK_STREAM)
        self.listeners: dict[int, tuple[App, str, int]] = {}     # port -> (app, cc name, backlog)
        self.flows: dict[tuple[str, int, int], DFlow] = {}
        self.handshaking: set[tuple[str, int, int]] = set()
        self._tag = int.from_bytes(os.urandom(3), "big") << 16
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None      # set when the first flow appears (see _ticker)
        self._next_scan = 0.0
        self.cc_modules = load_cc_modules()
        self.stats = dict.fromkeys(("syn_in", "synack_out", "established", "rst_out", "rto", "cc_runs",
                                    "delack_runs", "closed", "refused", "probes"), 0)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self.obj.map("tcp_progs").update(0, self.obj.program("tcp_rx_data").fd)
        self.flows_map = self.obj.map("tcp_flows")
        self.cc_q = self.obj.map("tcp_cc_q")
        self._ctl = self.obj.program("tcp_ctl")
        self._delack = self.obj.program("tcp_delack")

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._ticker())

    def _kick(self) -> None:
        """Wake the ticker (a flow appeared); safe from any thread."""
        if self._loop is not None and self._wake is not None and not self._wake.is_set():
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        super().stop()

    # ---- kernel access ----------------------------------------------------------------------
    def ctl(self, op: int, key: TcpFlowKey | None = None, arg: int = 0, arg64: int = 0) -> bool:
        cmd = TcpCtlCmd(op=op, arg=arg & 0xFFFFFFFF, arg64=arg64)
        if key is not None:
            cmd.key = key
        return self._ctl.test_run(bytes(14) + bytes(cmd)).retval == 2  # XDP_PASS

    def kflow(self, d: DFlow) -> TcpFlow | None:
        raw = self.flows_map.lookup(d.key)
        return TcpFlow.from_buffer_copy(raw) if raw is not None else None

    def _send(self, packets: list[bytes]) -> None:
        if not packets:
            return
        mac = bytes.fromhex(self.daemon.mac.replace(":", ""))
        hdr = ETH_HDR.pack(b"\0" * 6, mac, 0x0800)
        self.daemon.send_frames([hdr + p for p in packets])

    def _new_tag(self) -> int:
        self._tag = (self._tag + 1) & 0xFFFFFFFFFFFF or 1
        return self._tag

    @staticmethod
    def _pubs(app: App) -> list[int]:
        free = app.resources.get("tcp.pub_free")
        if free is None:
            free = app.resources["tcp.pub_free"] = list(range(1023, -1, -1))
        return free

    def _config(self, cc_name: str) -> TcpConfig:
        return TcpConfig(mss=MSS, window_scale=WSCALE, receive_buffer=RCV_WND, congestion_control=cc_name,
                         ecn=True, msl=MSL)

    def _install(self, d: DFlow, conn: TcpConnection, state: int, now: float) -> None:
        """Write the connection into tcp_flows (new, or replacing a handshake entry nobody else writes)."""
        f = TcpFlow(slot=d.app.slot, pub=d.pub, tag=d.tag, state=state)
        flags = 0
        if conn.ts_ok:
            flags |= F.TCP_F_TS
        if conn.sack_ok:
            flags |= F.TCP_F_SACK
        if conn.ecn_ok:
            flags |= F.TCP_F_ECN
        mss = conn.send_mss
        d.mss = mss
        if d.cc is None or d.cc.mss != mss:
            d.cc = ccmod.create(d.cc_name, mss=mss, initial_window=10 * mss)
        if d.cc.ecn_echo == "dctcp":
            flags |= F.TCP_F_DCTCP_ECHO
        f.flags = int(flags)
        f.iss = wire(conn.iss)
        f.snd_una = wire(conn.snd_una)
        f.snd_nxt = wire(conn.snd_nxt)
        f.snd_wnd = conn.snd_wnd
        f.snd_wl1 = wire(conn.snd_wl1)
        f.snd_wl2 = wire(conn.snd_wl2)
        f.cwnd = d.cc.cwnd
        f.round_end = f.snd_nxt
        f.irs = wire(conn.irs)
        f.rcv_nxt = wire(conn.rcv_nxt)
        f.rcv_wnd = RCV_WND
        f.rcv_edge = (f.rcv_nxt + RCV_WND) & 0xFFFFFFFF
        f.rcv_adv = (conn.rcv_adv if conn.rcv_adv else conn.rcv_nxt) & 0xFFFFFFFF
        f.last_ack_sent = wire(conn.rcv_nxt)
        f.ts_recent = (conn.ts_recent or 0) & 0xFFFFFFFF
        f.ts_offset = conn._ts_offset & 0xFFFFFFFF
        f.mss = mss
        f.snd_wscale = conn.snd_wscale
        f.rcv_wscale = conn.rcv_wscale
        f.last_progress_ns = int(now * 1e9)
        self.flows_map.update(d.key, f)
        self.ctl(TcpCtlOp.TCP_CTL_PUBLISH, d.key)
        d.params = {"raddr": d.raddr, "rport": d.rport, "lport": d.lport, "pub": d.pub, "tag": d.tag,
                    "iss": f.iss, "irs": f.irs, "mss": mss, "ts": conn.ts_ok, "sack": conn.sack_ok,
                    "ecn": conn.ecn_ok, "snd_wscale": conn.snd_wscale, "rcv_wscale": conn.rcv_wscale,
                    "cc": d.cc_name, "rcv_wnd": RCV_WND}

    def _forget(self, d: DFlow) -> None:
        """Remove the flow everywhere: kernel entry, published slot, port, records."""
        with contextlib.suppress(OSError):
            self.flows_map.delete(d.key)
        if d.orphan_since is None:  # an orphan's application (and published slots) are gone
            self.ctl(TcpCtlOp.TCP_CTL_CLEAR_PUB, None, d.pub, d.app.slot)
            self._pubs(d.app).append(d.pub)
        flows = d.app.resources.get("tcp.flows")
        if flows is not None:
            flows.discard(d.ident)
        if d.own_port:
            owned = d.app.resources.get("tcp.ports", set())
            if d.lport in owned:
                self.ports.unbind(d.app, d.lport)
            else:  # kept past its application's end (an orphan)
                with contextlib.suppress(OSError):
                    self.kernel.map("ports").delete(self.ports._key(d.lport))
                sock = self.ports.reservations.pop(d.lport, None)
                if sock is not None:
                    sock.close()
        self.flows.pop(d.ident, None)
        self.handshaking.discard(d.ident)
        self.stats["closed"] += 1

    def _rst(self, d: DFlow, f: TcpFlow | None) -> None:
        """Tell the peer with a RST from the kernel's state of the flow."""
        if f is None or f.state in (S.TCP_S_CLOSED, S.TCP_S_SYN_SENT):
            return
        seg = TcpSegment(d.lport, d.rport, f.snd_nxt, f.rcv_nxt, RST | ACK, 0)
        self._send([build_packet(socket.inet_aton(self.daemon.ip), socket.inet_aton(d.raddr), seg)])
        self.stats["rst_out"] += 1

    def _alloc(self, app: App, raddr: str, rport: int, lport: int, cc_name: str, passive: bool) -> DFlow:
        quota = min(self.daemon.quotas.max_flows, 1024)
        flows = app.resources.setdefault("tcp.flows", set())
        free = self._pubs(app)
        if len(flows) >= quota or not free:
            raise EtranError(f"application {app.name} already has {len(flows)} TCP connections (its quota); close some")
        d = DFlow(app, raddr, rport, lport, free.pop(), self._new_tag(), cc_name, passive=passive)
        flows.add(d.ident)
        self.flows[d.ident] = d
        self._kick()
        return d

    # ---- requests from applications --------------------------------------------------------
    def request(self, app: App, op: str, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        if op == "listen":
            cc_name = self._cc_name(msg.get("cc"))
            port = self.ports.bind(app, int(msg.get("port") or 0), self.daemon.quotas.max_ports)
            self.listeners[port] = (app, cc_name, int(msg.get("backlog") or 128))
            return {"port": port}, []
        if op == "unlisten":
            port = int(msg.get("port") or 0)
            owner = self.listeners.get(port)
            if owner is None or owner[0] is not app:
                raise EtranError(f"TCP port {port} is not listening in this application")
            del self.listeners[port]
            if not any(d.lport == port and not d.own_port for d in self.flows.values() if d.app is app):
                self.ports.unbind(app, port)
            return {}, []
        if op == "connect":
            return self._connect(app, msg), []
        if op in ("accept", "info"):
            d = self._own(app, msg)
            if d.established and d.params:
                d.accepted = True
                self.handshaking.discard(d.ident)
                d.conn = None
                return {"flow": d.params}, []
            f = self.kflow(d)
            if f is None or f.state == S.TCP_S_SYN_RCVD or f.state == S.TCP_S_SYN_SENT:
                raise EtranError("the connection is not established")
            d.accepted = True
            d.established = True
            self.handshaking.discard(d.ident)
            d.conn = None
            return {"flow": d.params}, []
        if op == "close":
            d = self._own(app, msg)
            self._app_close(d, abort=bool(msg.get("abort")))
            return {}, []
        if op == "set_cc":
            d = self._own(app, msg)
            name = self._cc_name(msg.get("cc"))
            before = d.cc.cwnd if d.cc is not None else None
            if d.cc is None:
                d.cc_name = name
            else:
                d.cc = ccmod.swap(d.cc, name, time.monotonic())
                d.cc_name = name
                self.ctl(TcpCtlOp.TCP_CTL_SET_CWND, d.key, max(d.cc.cwnd, 2 * d.mss))
            return {"cc": name, "cwnd": d.cc.cwnd if d.cc else None, "cwnd_before": before}, []
        if op == "flow_stats":
            d = self._own(app, msg)
            f = self.kflow(d)
            out = {n: getattr(f, n) for n, _ in TcpFlow._fields_} if f else {}
            out.update(cc=d.cc_name, cc_state=repr(d.cc), alpha=getattr(d.cc, "alpha", None))
            return {"flow": out}, []
        return super().request(app, op, msg)

    @staticmethod
    def _cc_name(name: Any) -> str:
        name = str(name or "dctcp")
        if name not in ccmod.available():
            raise EtranError(f"unknown congestion control {name!r}; available: {', '.join(ccmod.available())}")
        return name

    def _own(self, app: App, msg: dict[str, Any]) -> DFlow:
        ident = (str(msg.get("raddr")), int(msg.get("rport") or 0), int(msg.get("lport") or 0))
        d = self.flows.get(ident)
        if d is None or d.app is not app:
            raise EtranError(f"no TCP connection {ident} in this application")
        return d

    def _connect(self, app: App, msg: dict[str, Any]) -> dict[str, Any]:
        raddr = str(msg.get("host"))
        try:
            socket.inet_aton(raddr)
        except OSError:
            raise EtranError(f"{raddr!r} is not an IPv4 address") from None
        rport = int(msg.get("port") or 0)
        if not 1 <= rport <= 65535:
            raise EtranError(f"port {rport} is out of range 1-65535")
        cc_name = self._cc_name(msg.get("cc"))
        lport = self.ports.bind(app, 0, 1 << 30)
        try:
            d = self._alloc(app, raddr, rport, lport, cc_name, passive=False)
        except BaseException:
            self.ports.unbind(app, lport)
            raise
        d.own_port = True
        now = time.monotonic()
        conn = TcpConnection(local=(self.daemon.ip, lport), remote=(raddr, rport), config=self._config(cc_name))
        d.conn = conn
        conn.connect(now)
        f = TcpFlow(slot=app.slot, pub=d.pub, tag=d.tag, state=S.TCP_S_SYN_SENT)
        self.flows_map.update(d.key, f)
        self.ctl(TcpCtlOp.TCP_CTL_PUBLISH, d.key)
        self.handshaking.add(d.ident)
        self._send(conn.datagrams_to_send(now))
        return {"lport": lport, "pub": d.pub, "tag": d.tag}

    def _app_close(self, d: DFlow, abort: bool) -> None:
        d.app_closed = True
        f = self.kflow(d)
        if abort or f is None or f.state in (S.TCP_S_SYN_SENT, S.TCP_S_SYN_RCVD):
            if f is not None and f.state not in (S.TCP_S_SYN_SENT,):
                if not (f.flags & F.TCP_F_RESET):
                    self._rst(d, f)
            self._forget(d)
            return
        self._progress(d, f, time.monotonic())

    # ---- the slow path ----------------------------------------------------------------------
    def slow_path(self, frame: bytes) -> None:
        parsed = parse_packet(bytes(frame[14:]))
        if parsed is None:
            return
        ip, seg = parsed
        raddr = socket.inet_ntoa(ip.src)
        ident = (raddr, seg.src_port, seg.dst_port)
        now = time.monotonic()
        d = self.flows.get(ident)
        if d is not None and d.conn is not None:
            self._handshake_input(d, bytes(frame[14:14 + ip.total_length]), now)
            return
        if d is not None:
            return  # an established flow's packet the kernel handed up (e.g. after a reset): ignore
        listener = self.listeners.get(seg.dst_port)
        if listener is not None and seg.flags & 0x02 and not seg.flags & (ACK | RST):
            self._on_syn(listener, raddr, seg, bytes(frame[14:14 + ip.total_length]), now)
            return
        r = reset_for(seg)
        if r is not None:
            self._send([build_packet(ip.dst, ip.src, r)])
            self.stats["rst_out"] += 1

    def _on_syn(self, listener: tuple[App, str, int], raddr: str, seg: TcpSegment, packet: bytes, now: float) -> None:
        app, cc_name, backlog = listener
        self.stats["syn_in"] += 1
        pending = sum(1 for i in self.handshaking if i[2] == seg.dst_port)
        try:
            if pending >= max(backlog, 1) * 4:
                raise EtranError("backlog full")
            d = self._alloc(app, raddr, seg.src_port, seg.dst_port, cc_name, passive=True)
        except EtranError:
            self.stats["refused"] += 1
            r = reset_for(seg)
            if r is not None:
                self._send([build_packet(socket.inet_aton(self.daemon.ip), socket.inet_aton(raddr), r)])
            return
        conn = TcpConnection(local=(self.daemon.ip, seg.dst_port), config=self._config(cc_name))
        conn.listen()
        conn.receive_datagram(packet, now)
        if conn.state is not TcpState.SYN_RECEIVED:
            self._forget(d)
            return
        d.conn = conn
        self._install(d, conn, S.TCP_S_SYN_RCVD, now)
        self.handshaking.add(d.ident)
        self._send(conn.datagrams_to_send(now))
        self.stats["synack_out"] += 1

    def _handshake_input(self, d: DFlow, packet: bytes, now: float) -> None:
        conn = d.conn
        before = conn.state
        conn.receive_datagram(packet, now)
        self._after_handshake_step(d, before, now)

    def _after_handshake_step(self, d: DFlow, before: TcpState, now: float) -> None:
        conn = d.conn
        if conn is None:
            return
        failed = None
        while (ev := conn.next_event()) is not None:
            if isinstance(ev, (Reset, ConnectionFailed)):
                failed = ev
        st = conn.state
        if not d.passive and st is TcpState.ESTABLISHED and before is TcpState.SYN_SENT:
            self._install(d, conn, S.TCP_S_ESTABLISHED, now)      # before the ACK goes out
            self._send(conn.datagrams_to_send(now))
            d.conn = None
            d.established = True
            self.handshaking.discard(d.ident)
            self.stats["established"] += 1
            return
        self._send(conn.datagrams_to_send(now))
        if st in (TcpState.CLOSED, TcpState.LISTEN) or failed is not None:
            if d.passive:
                self._forget(d)
            else:  # tell the application: the connection failed
                flags = int(F.TCP_F_RESET) if isinstance(failed, Reset) else 0
                self.ctl(TcpCtlOp.TCP_CTL_STATE, d.key, S.TCP_S_CLOSED, flags)
                d.conn = None
                d.done = True
                self.handshaking.discard(d.ident)

    # ---- timers -------------------------------------------------------------------------------
    async def _ticker(self) -> None:
        """Every TICK while the host has TCP flows; with none there is no timer work at all
        (delayed ACKs, congestion control, handshakes and RTOs all belong to a flow), so the
        ticker sleeps until `_alloc` wakes it: an idle daemon does not wake up for TCP."""
        while True:
            if not self.flows and self._wake is not None:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(TICK)
            try:
                self._tick()
            except Exception:  # noqa: BLE001 (never let one failure stop the loop)
                log.exception("TCP tick failed")

    def _tick(self) -> None:
        now = time.monotonic()
        # delayed ACKs the data did not take (tcp_delack leaves those owed for less than its delay)
        n = 128
        ran = 0
        while n == 128 and ran < 8:
            n = self._delack.test_run(bytes(64)).retval
            ran += 1
        if ran > 1 or n:
            self.stats["delack_runs"] += 1
            pending = self.kernel.host_pub().gen_pending
            if pending:
                with contextlib.suppress(OSError):
                    self.kernel.run_gen(min(int(pending), 256), self.daemon.nic_ifindex)
        # congestion control for the flows whose round ended
        keys = set()
        for _ in range(4096):
            raw = self.cc_q.pop()
            if raw is None:
                break
            keys.add(raw)
        for raw in keys:
            k = TcpFlowKey.from_buffer_copy(raw)
            ident = (socket.inet_ntoa(k.raddr.to_bytes(4, "little")), socket.ntohs(k.rport), socket.ntohs(k.lport))
            d = self.flows.get(ident)
            if d is not None:
                f = self.kflow(d)
                if f is not None:
                    self._congestion(d, f, now)
        # handshakes
        for ident in list(self.handshaking):
            d = self.flows.get(ident)
            if d is None or d.conn is None:
                self.handshaking.discard(ident)
                continue
            t = d.conn.get_timer()
            if t is not None and now >= t:
                if d.passive:
                    f = self.kflow(d)
                    if f is not None and f.state == S.TCP_S_ESTABLISHED:
                        d.conn = None          # the kernel completed it
                        d.established = True
                        self.handshaking.discard(ident)
                        self.stats["established"] += 1
                        continue
                before = d.conn.state
                d.conn.handle_timer(now)
                self._after_handshake_step(d, before, now)
        if now >= self._next_scan:
            self._next_scan = now + SCAN_EVERY + SCAN_PER_FLOW * len(self.flows)
            self._scan(now)

    def _congestion(self, d: DFlow, f: TcpFlow, now: float) -> None:
        if d.cc is None:
            return
        acked = f.acked_bytes - d.seen_acked
        marked = f.ecn_bytes - d.seen_ecn
        losses = f.loss_events - d.seen_loss
        d.seen_acked, d.seen_ecn, d.seen_loss = f.acked_bytes, f.ecn_bytes, f.loss_events
        rtt_us = None
        if f.rtt_samples != d.seen_rtt_samples:
            d.seen_rtt_samples = f.rtt_samples
            rtt_us = float(f.rtt_us)
            d.rtt.update(rtt_us / 1e6)
        cc = d.cc
        if cc.in_recovery and not f.flags & (F.TCP_F_RECOVERY | F.TCP_F_LOSS):
            cc.on_recovery_end(now)
        if acked <= 0 and losses <= 0:
            return
        self.stats["cc_runs"] += 1
        old = f.cwnd
        reduced = cc.on_round(max(acked, 0), max(marked, 0), max(losses, 0), rtt_us, now, round_complete=True)
        cwnd = max(int(cc.cwnd), 2 * d.mss)
        # the pacing bound the hook enforces (gain * cwnd / srtt); rewritten when it moved by 1/8
        rate = min(int(cc.rate or 0), 0xFFFFFFFF)
        rate_moved = rate and abs(rate - d.rate_sent) * 8 > d.rate_sent
        if cwnd != old or reduced or rate_moved:
            if rate_moved:
                d.rate_sent = rate
            self.ctl(TcpCtlOp.TCP_CTL_SET_CWND, d.key, min(cwnd, 0xFFFFFFFF),
                     (1 if reduced and f.flags & F.TCP_F_ECN else 0) | (rate << 32 if rate_moved else 0))

    def _scan(self, now: float) -> None:
        if not self.flows:
            return
        seen: dict[bytes, TcpFlow] = {}
        try:
            for k, v in self.flows_map.lookup_batch():
                seen[k] = TcpFlow.from_buffer_copy(v)
        except OSError as e:
            log.warning("scan of tcp_flows failed: %s", e)
            return
        for d in list(self.flows.values()):
            if d.conn is not None:
                continue
            f = seen.get(bytes(d.key))
            if f is None:
                if d.app_closed or d.orphan_since is not None:
                    self._forget(d)
                continue
            self._progress(d, f, now)

    def _progress(self, d: DFlow, f: TcpFlow, now: float) -> None:
        """RTO, teardown and freeing of one established (or finishing) flow."""
        fl = f.flags
        if f.state == S.TCP_S_ESTABLISHED:
            d.established = True
            if f.snd_una != d.last_una:
                d.last_una = f.snd_una
                d.rto_count = 0
                d.rtt.reset_backoff()
            stalled = now * 1e9 - f.last_progress_ns
            if (f.snd_una != f.snd_nxt and d.probed_una != f.snd_una and d.rto_count == 0
                    and stalled > max(PROBE_MIN, 2 * (d.rtt.srtt or 0.005)) * 1e9):
                # a probe (as Linux's tail loss probe): the ACK of a retransmission or of the
                # last segments may be lost; ask the library to resend from snd_una, cwnd kept
                d.probed_una = f.snd_una
                self.stats["probes"] += 1
                self.ctl(TcpCtlOp.TCP_CTL_PROBE, d.key)
                return
            if f.snd_una != f.snd_nxt and now * 1e9 - f.last_progress_ns > d.rtt.rto * 1e9:
                if d.rto_count >= MAX_RTO_RETRIES:
                    self._rst(d, f)
                    self.ctl(TcpCtlOp.TCP_CTL_STATE, d.key, S.TCP_S_CLOSED, int(F.TCP_F_RESET))
                    d.done = True
                    return
                self.stats["rto"] += 1
                if d.rto_count == 0 and d.cc is not None:
                    d.cc.in_recovery = False
                    d.cc.on_loss(ccmod.LossKind.RTO, now)
                d.rto_count += 1
                d.rtt.backoff()
                cwnd = max(int(d.cc.cwnd if d.cc else d.mss), d.mss)
                self.ctl(TcpCtlOp.TCP_CTL_RTO, d.key, cwnd)
                return
            if fl & F.TCP_F_FIN_ACKED and fl & F.TCP_F_FIN_RCVD:
                if fl & F.TCP_F_PASSIVE_CLOSE:
                    self.ctl(TcpCtlOp.TCP_CTL_STATE, d.key, S.TCP_S_CLOSED)
                    d.done = True
                else:
                    self.ctl(TcpCtlOp.TCP_CTL_STATE, d.key, S.TCP_S_TIME_WAIT)
                    d.tw_until = now + 2 * MSL
                return
        elif f.state == S.TCP_S_TIME_WAIT:
            if d.tw_until is None:
                d.tw_until = now + 2 * MSL
            if now >= d.tw_until:
                self.ctl(TcpCtlOp.TCP_CTL_STATE, d.key, S.TCP_S_CLOSED)
                d.done = True
        elif f.state == S.TCP_S_CLOSED:
            d.done = True
        if d.done and (d.app_closed or d.orphan_since is not None):
            self._forget(d)
            return
        if d.orphan_since is not None and now - d.orphan_since > ORPHAN_TIMEOUT:
            self._rst(d, f)
            self._forget(d)

    # ---- applications that go -----------------------------------------------------------------
    def reclaim(self, app: App, notify: bool = True) -> None:
        for port in [p for p, (a, _, _) in self.listeners.items() if a is app]:
            del self.listeners[port]
        now = time.monotonic()
        for d in [d for d in self.flows.values() if d.app is app]:
            f = self.kflow(d)
            if (notify and f is not None and f.state == S.TCP_S_ESTABLISHED and f.flags & F.TCP_F_FIN_ACKED
                    and not f.flags & F.TCP_F_RESET):
                # our side is closed and delivered: let the kernel finish the close without the application
                self.ctl(TcpCtlOp.TCP_CTL_STATE, d.key, f.state, int(F.TCP_F_ORPHAN))
                d.orphan_since = now
                d.app_closed = True
                if d.own_port:
                    app.resources.get("tcp.ports", set()).discard(d.lport)
                continue
            if notify and f is not None and not f.flags & F.TCP_F_RESET:
                self._rst(d, f)
            self._forget(d)
        self.ports.release_all(app)

    def app_summary(self, app: App) -> dict[str, Any] | None:
        flows = len(app.resources.get("tcp.flows", ()))
        listening = sorted(p for p, (a, _, _) in self.listeners.items() if a is app)
        if not flows and not listening:
            return None
        return {"connections": flows, "listening": listening, "host": dict(self.stats)}


TRANSPORTS["tcp"] = TcpTransport
