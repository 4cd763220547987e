"""Load worker: `python -m etran.bench.loadworker {server|client|flood} --endpoint NAME ...`
inside a test-bed host; the etran.bench.load generator over real transports.

Roles:
  server   answer requests on --port until stopped (SIGTERM) or --time-limit
  client   run the load generator (etran.bench.load) against --peer IP:PORT: closed loop
           (--outstanding N) or open loop (--rate R, Poisson), over --conns connections;
           with --go, wait for SIGUSR1 after READY (so several clients start together)
  flood    send --size-byte datagrams to --peer as fast as possible until stopped or
           --time-limit (after --delay seconds): the noisy neighbour of `etran bench isolation`

Wire format of a request: an 8-byte tag, the 4-byte size of the wanted response, padding to
the request size (at least 12 bytes); the response starts with the tag (an echo when the two
sizes are equal).

Endpoints are registered by name (`@register_endpoint`); modules in ENDPOINT_MODULES are
imported to find them, so a transport adds its own (Homa, TCP) in its own module:

    @register_endpoint
    class HomaEndpoint(EndpointKind):
        name = "homa"
        def client(self, args): ...   # an object with send(conn, tag, size, response_size),
                                      # poll(timeout) -> tags, close(), info() -> dict
        def prepare(self, args): ...       # server/flood: bind before READY
        def serve(self, args, done): ...   # answer until Stop; count answers in done.n

Lines on stdout follow etran.bench.worker's protocol (READY, PROGRESS, RESULT, ERROR).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from typing import Any, ClassVar

from .load import LoadSpec, run_load
from .worker import Counter, Stop, Switches, emit, run_worker_main, stopped

REQ = struct.Struct("!QI")  # tag, response size
MIN_SIZE = REQ.size
MAX_UDP_PAYLOAD = 1472
ENDPOINT_MODULES: list[str] = []  # modules that register further endpoints (imported on demand)


class EndpointKind:
    """A transport the load worker can drive: see the module docstring."""

    name: ClassVar[str] = ""
    max_size: ClassVar[int] = MAX_UDP_PAYLOAD

    def client(self, args: argparse.Namespace) -> Any:
        raise NotImplementedError

    def prepare(self, args: argparse.Namespace) -> None:
        """Server and flood roles: set up (bind, register) before READY."""

    def serve(self, args: argparse.Namespace, done: Counter) -> None:
        raise NotImplementedError

    def flood(self, args: argparse.Namespace, sent: Counter) -> None:
        raise NotImplementedError(f"endpoint {self.name} cannot flood")

    def close(self) -> None:
        """Release what serve()/flood() opened (called after them, also after a Stop)."""

    def info(self) -> dict[str, Any]:
        return {}


ENDPOINTS: dict[str, type[EndpointKind]] = {}


def register_endpoint(cls: type[EndpointKind]) -> type[EndpointKind]:
    if not cls.name:
        raise ValueError("an endpoint needs a name")
    ENDPOINTS[cls.name] = cls
    return cls


def endpoint(name: str) -> EndpointKind:
    for module in ENDPOINT_MODULES:
        importlib.import_module(module)
    try:
        return ENDPOINTS[name]()
    except KeyError:
        raise SystemExit(f"unknown endpoint {name!r}; known: {', '.join(sorted(ENDPOINTS))}") from None


def response_for(data: bytes | memoryview) -> bytes | memoryview:
    """The response to a request: an echo, or the tag padded to the asked size."""
    if len(data) < MIN_SIZE:
        return data
    _, want = REQ.unpack_from(data)
    if want == len(data):
        return data
    return bytes(data[:8]) + bytes(max(0, min(want, MAX_UDP_PAYLOAD) - 8))


# ---- etran UDP ------------------------------------------------------------------------

def _etran_poll_env(args: argparse.Namespace) -> None:
    os.environ["ETRAN_POLL"] = "busy" if args.poll == "busy" else "block"
    if args.app_name:
        os.environ["ETRAN_APP_NAME"] = args.app_name
    else:
        os.environ.setdefault("ETRAN_APP_NAME", f"load-{args.role}[{os.getpid()}]")


def _udp_info(sock: Any) -> dict[str, Any]:
    """How an etran UDP socket's process waited, and its engine's frame counters."""
    st = sock.stats
    return {"poll": "busy" if sock.engine.busy_poll else "block",
            "engine": {k: st[k] for k in ("rx_frames", "tx_frames", "blank_frames")}}


class EtranUdpClient:
    """`conns` etran UDP sockets of one application (one engine); their datagrams land in
    one shared inbox, so a poll costs the same with 1 or 1,000 sockets."""

    def __init__(self, conns: int, peer: tuple[str, int]) -> None:
        from ..udp import UdpSocket

        self.peer = peer
        self.socks: list[Any] = []
        self.inbox: deque = deque()  # every socket's receive queue: (data, addr) of any of them
        try:
            for _ in range(conns):
                s = UdpSocket(queue=self.inbox)
                s.bind(0)
                self.socks.append(s)
        except BaseException:
            self.close()
            raise
        self.engine = self.socks[0].engine
        self.buf = bytearray(MAX_UDP_PAYLOAD)
        self.view = memoryview(self.buf)

    def send(self, conn: int, tag: int, size: int, response_size: int) -> None:
        REQ.pack_into(self.buf, 0, tag, response_size)
        self.socks[conn].sendto(self.view[:size], self.peer)

    def poll(self, timeout: float) -> list[int]:
        inbox = self.inbox
        if not inbox:
            self.engine.poll(timeout)   # short waits are timed to the microsecond (XskSocket.poll)
            if not inbox:
                return []
        unpack = REQ.unpack_from
        out = [unpack(d)[0] for d, _ in inbox if len(d) >= 8]
        inbox.clear()
        return out

    def info(self) -> dict[str, Any]:
        return {**_udp_info(self.socks[0]), "sockets": len(self.socks)}

    def close(self) -> None:
        if not self.socks:
            return
        engine = self.socks[0].engine
        for s in self.socks:
            with contextlib.suppress(Exception):  # closing the rest matters more
                s.close()
        self.socks = []
        engine.close()
        engine.session.close()


@register_endpoint
class EtranUdp(EndpointKind):
    """etran's UDP (etran.udp.UdpSocket) through the host's daemon and tenant ports."""

    name = "etran-udp"

    def __init__(self) -> None:
        self.sock: Any = None

    def client(self, args: argparse.Namespace) -> EtranUdpClient:
        _etran_poll_env(args)
        return EtranUdpClient(args.conns, _peer(args.peer))

    def prepare(self, args: argparse.Namespace) -> None:
        _etran_poll_env(args)
        from ..udp import UdpSocket

        self.sock = UdpSocket()
        self.sock.bind(args.port if args.role == "server" else 0)

    def serve(self, args: argparse.Namespace, done: Counter) -> None:
        sock = self.sock
        recvfrom, sendto = sock.recvfrom, sock.sendto
        while True:
            try:
                data, addr = recvfrom(65536, 1.0)
            except TimeoutError:
                continue
            sendto(response_for(data), addr)
            done.n += 1

    def flood(self, args: argparse.Namespace, sent: Counter) -> None:
        """Frames written straight into the engine's TX ring, 64 to a batch (one kick each):
        about twice what a sendto() per datagram reaches.  The egress hook checks each one
        like any other (the source port is this socket's)."""
        from .frames import udp_frame

        sock = self.sock
        eng = sock.engine
        s = eng.session
        ip, port = _peer(args.peer)
        frame = udp_frame(s.host_mac, "00:00:00:00:00:00", s.host_ip, ip, sock.port, port, bytes(args.size))
        length = len(frame)
        buf = eng.buf
        tx_frame, commit, flush = eng.tx_frame, eng.commit, eng.flush
        while True:
            k = 0
            for _ in range(64):
                a = tx_frame()
                if a < 0:
                    break
                buf[a:a + length] = frame
                commit(length)
                k += 1
            flush()
            if not k:
                eng.xsk.kick()
                eng.xsk.complete()
            sent.n += k

    def info(self) -> dict[str, Any]:
        if self.sock is None:
            return {}
        return {**_udp_info(self.sock), "port": self.sock.port}

    def close(self) -> None:
        if self.sock is not None:
            engine = self.sock.engine
            try:
                self.sock.close()
            finally:
                engine.close()
                engine.session.close()
            self.sock = None


# ---- kernel UDP ----------------------------------------------------------------------

class KernelUdpClient:
    def __init__(self, conns: int, peer: tuple[str, int], busy: bool) -> None:
        self.peer = peer
        self.busy = busy
        self.socks: list[socket.socket] = []
        self.ep = select.epoll()
        for _ in range(conns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect(peer)
            self.socks.append(s)
            self.ep.register(s.fileno(), select.EPOLLIN)
        self.by_fd = {s.fileno(): s for s in self.socks}
        self.buf = bytearray(MAX_UDP_PAYLOAD)
        self.view = memoryview(self.buf)

    def send(self, conn: int, tag: int, size: int, response_size: int) -> None:
        REQ.pack_into(self.buf, 0, tag, response_size)
        self.socks[conn].send(self.view[:size])

    def poll(self, timeout: float) -> list[int]:
        out = []
        unpack = REQ.unpack_from
        for fd, _ in self.ep.poll(0 if self.busy else timeout):
            s = self.by_fd[fd]
            while True:
                try:
                    d = s.recv(65536)
                except BlockingIOError:
                    break
                if len(d) >= 8:
                    out.append(unpack(d)[0])
        return out

    def info(self) -> dict[str, Any]:
        return {"poll": "busy" if self.busy else "block", "sockets": len(self.socks)}

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []
        self.ep.close()


@register_endpoint
class KernelUdp(EndpointKind):
    """The host kernel's UDP sockets (a reference beside etran's)."""

    name = "kernel-udp"

    def __init__(self) -> None:
        self.sock: socket.socket | None = None

    def client(self, args: argparse.Namespace) -> KernelUdpClient:
        return KernelUdpClient(args.conns, _peer(args.peer), args.poll == "busy")

    def prepare(self, args: argparse.Namespace) -> None:
        self.sock = s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if args.role == "server":
            s.bind(("0.0.0.0", args.port))
            s.settimeout(1.0)
        else:
            s.connect(_peer(args.peer))

    def serve(self, args: argparse.Namespace, done: Counter) -> None:
        s = self.sock
        recvfrom, sendto = s.recvfrom, s.sendto
        while True:
            try:
                data, addr = recvfrom(65536)
            except TimeoutError:
                continue
            sendto(response_for(data), addr)
            done.n += 1

    def flood(self, args: argparse.Namespace, sent: Counter) -> None:
        s = self.sock
        payload = bytes(args.size)
        send = s.send
        while True:
            for _ in range(64):
                try:
                    send(payload)
                except (BlockingIOError, ConnectionRefusedError):
                    continue
            sent.n += 64

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# ---- etran Homa ----------------------------------------------------------------------

class HomaClient:
    """RPCs over one etran Homa socket.  Homa has no connections: `conns` is only how the
    generator spreads its requests; N concurrent clients are N RPCs outstanding on the socket
    (its RPC ids tell their responses apart)."""

    def __init__(self, peer: tuple[str, int]) -> None:
        from ..homa import HomaSocket

        self.peer = peer
        self.sock = HomaSocket()
        self.tags: dict[int, int] = {}
        self.buf = bytearray(MAX_UDP_PAYLOAD)

    def send(self, conn: int, tag: int, size: int, response_size: int) -> None:
        REQ.pack_into(self.buf, 0, tag, response_size)
        self.tags[self.sock.send_request(self.peer, self.buf[:size])] = tag

    def poll(self, timeout: float) -> list[int]:
        from ..homa import HomaError

        out: list[int] = []
        recv, tags = self.sock.recv_response, self.tags
        wait = timeout
        while True:
            try:
                r = recv(None, wait)
            except HomaError:  # a timeout (nothing more now) or an aborted RPC (the generator counts it lost)
                break
            tag = tags.pop(r.id, None)
            if tag is not None:
                out.append(tag)
            wait = 0.0
        return out

    def info(self) -> dict[str, Any]:
        return {"poll": os.environ.get("ETRAN_POLL", "block"), "sockets": 1, "outstanding_at_end": len(self.tags),
                "lib": self.sock.stats}

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                self.sock.close()
            self.sock = None


@register_endpoint
class EtranHoma(EndpointKind):
    """etran's Homa (etran.homa.HomaSocket): requests are RPCs, the server replies to each."""

    name = "homa"

    def __init__(self) -> None:
        self.sock: Any = None

    def client(self, args: argparse.Namespace) -> HomaClient:
        _etran_poll_env(args)
        return HomaClient(_peer(args.peer))

    def prepare(self, args: argparse.Namespace) -> None:
        _etran_poll_env(args)
        from ..homa import HomaSocket

        self.sock = HomaSocket(args.port if args.role == "server" else None)

    def serve(self, args: argparse.Namespace, done: Counter) -> None:
        from ..homa import HomaTimeoutError

        recv, answer = self.sock.recv_request, self.sock.reply
        while True:
            try:
                req = recv(timeout=1.0)
            except HomaTimeoutError:
                continue
            answer(req, response_for(req.payload))
            done.n += 1

    def info(self) -> dict[str, Any]:
        return {"lib": self.sock.stats} if self.sock is not None else {}

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                self.sock.close()
            self.sock = None


# ---- etran TCP -----------------------------------------------------------------------

LEN = struct.Struct("!I")  # TCP carries a byte stream: each request and response is length-prefixed


def _frames(buf: bytearray) -> list[bytes]:
    """The whole length-prefixed messages at the front of `buf` (removed from it)."""
    out = []
    off, n = 0, len(buf)
    while n - off >= 4:
        ln = LEN.unpack_from(buf, off)[0]
        if n - off - 4 < ln:
            break
        out.append(bytes(buf[off + 4:off + 4 + ln]))
        off += 4 + ln
    if off:
        del buf[:off]
    return out


class EtranTcpClient:
    """`conns` etran TCP connections of one application (one engine), each a client with its
    own requests; after each RX batch only the connections that heard something are read."""

    def __init__(self, conns: int, peer: tuple[str, int]) -> None:
        import etran.tcp

        self.socks: list[Any] = []
        self.retried = 0
        try:
            for _ in range(conns):
                s = self._connect(etran.tcp, peer)
                s.setblocking(False)
                self.socks.append(s)
        except BaseException:
            self.close()
            raise
        self.engine = self.socks[0].engine
        self.ready = etran.tcp.ready_connections  # which connections heard something in a batch
        self.index = {s: i for i, s in enumerate(self.socks)}
        self.bufs = [bytearray() for _ in self.socks]
        self.out = bytearray(4 + MAX_UDP_PAYLOAD)

    def _connect(self, tcp: Any, peer: tuple[str, int], attempts: int = 3) -> Any:
        """A connection; a handshake that times out (a SYN lost on a busy machine while
        hundreds open) is tried again, up to `attempts` times."""
        for i in range(attempts):
            try:
                return tcp.create_connection(peer, timeout=15)
            except TimeoutError:
                if i == attempts - 1:
                    raise
                self.retried += 1
        raise AssertionError("unreachable")

    def send(self, conn: int, tag: int, size: int, response_size: int) -> None:
        LEN.pack_into(self.out, 0, size)
        REQ.pack_into(self.out, 4, tag, response_size)
        s = self.socks[conn]
        s.settimeout(5.0)  # room in the send buffer (4 MB) is all it may wait for
        s.sendall(memoryview(self.out)[:4 + size])
        s.setblocking(False)

    def poll(self, timeout: float) -> list[int]:
        out = []
        unpack = REQ.unpack_from
        for s in self.ready(timeout, self.engine):
            i = self.index.get(s)
            if i is None:
                continue
            while True:
                try:
                    data = s.recv(1 << 16)
                except BlockingIOError:
                    break
                if not data:
                    break
                self.bufs[i] += data
            out += [unpack(m)[0] for m in _frames(self.bufs[i]) if len(m) >= 8]
        return out

    def info(self) -> dict[str, Any]:
        lib: dict[str, int] = {}
        for s in self.socks:  # the connections' library counters, added up
            for k, v in s.stats.items():
                lib[k] = lib.get(k, 0) + v
        return {"poll": "busy" if self.engine.busy_poll else "block", "sockets": len(self.socks),
                "connect_retries": self.retried, "lib": lib}

    def close(self) -> None:
        for s in self.socks:
            with contextlib.suppress(Exception):
                s.abort()
        self.socks = []


@register_endpoint
class EtranTcp(EndpointKind):
    """etran's TCP: the server is `etran.tcp.start_server` (asyncio streams), the client N
    connections; requests and responses are length-prefixed on the byte stream."""

    name = "etran-tcp"

    def __init__(self) -> None:
        self.conns = 0

    def client(self, args: argparse.Namespace) -> EtranTcpClient:
        _etran_poll_env(args)
        return EtranTcpClient(args.conns, _peer(args.peer))

    def prepare(self, args: argparse.Namespace) -> None:
        _etran_poll_env(args)
        import asyncio

        import etran.tcp

        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            etran.tcp.start_server(self._handle, "", args.port, backlog=1024))
        self.done: Counter | None = None

    async def _handle(self, reader: Any, writer: Any) -> None:
        self.conns += 1
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(LEN.unpack(head)[0])
                resp = response_for(body)
                writer.write(LEN.pack(len(resp)) + bytes(resp))
                if self.done is not None:
                    self.done.n += 1
        except (EOFError, ConnectionError, OSError, Exception):  # noqa: BLE001 (a client went away)
            pass
        finally:
            writer.close()

    def serve(self, args: argparse.Namespace, done: Counter) -> None:
        """The event loop until SIGTERM/SIGINT or the time limit (SIGALRM): they set an event
        here (a Stop raised inside a task would be kept by the task), then Stop as usual."""
        import asyncio

        self.done = done
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            self.loop.add_signal_handler(sig, stop.set)
        self.loop.run_until_complete(stop.wait())
        raise Stop("signal")

    def info(self) -> dict[str, Any]:
        return {"connections": self.conns}

    def close(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            with contextlib.suppress(Exception):
                self.server.close()
            with contextlib.suppress(Exception):
                loop.close()
            self.loop = None


# ---- roles ---------------------------------------------------------------------------

def _peer(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class _Cpu:
    def __init__(self) -> None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.t0, self.u0, self.s0 = time.monotonic(), r.ru_utime, r.ru_stime

    def since(self) -> dict[str, float]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - self.t0
        cpu = (r.ru_utime - self.u0) + (r.ru_stime - self.s0)
        return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "cpu_util": round(cpu / wall, 3) if wall > 0 else None}


def _alarm(signum: int, frame: Any) -> None:
    raise Stop("time limit")


def _timed(loop: Any, limit: float, *args: Any) -> bool:
    """Run `loop(*args)` through stopped(); a SIGALRM after `limit` s ends it like SIGTERM.
    True if it was stopped (by either)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, limit))
    try:
        return stopped(loop, *args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def role_server(args: argparse.Namespace) -> dict[str, Any]:
    kind = endpoint(args.endpoint)
    done = Counter()
    try:
        kind.prepare(args)  # bound before READY
        emit("READY")
        sw, cpu = Switches(), _Cpu()
        _timed(kind.serve, args.time_limit, args, done)
        return {"served": done.n, **sw.since(), **cpu.since(), **kind.info()}
    finally:
        kind.close()


def role_flood(args: argparse.Namespace) -> dict[str, Any]:
    kind = endpoint(args.endpoint)
    sent = Counter()
    try:
        kind.prepare(args)  # registered (and named) before READY: policies can name it
        emit("READY")
        if args.delay > 0:
            time.sleep(args.delay)
        cpu = _Cpu()
        _timed(kind.flood, args.time_limit, args, sent)
        c = cpu.since()
        wall = c["wall_s"] or 1e-9
        frame = args.size + 42
        return {"sent": sent.n, "sent_bytes": sent.n * frame, "pps": round(sent.n / wall),
                "gbit_s": round(sent.n * frame * 8 / wall / 1e9, 4), "frame_bytes": frame, **c, **kind.info()}
    finally:
        kind.close()


def role_client(args: argparse.Namespace) -> dict[str, Any]:
    kind = endpoint(args.endpoint)
    if args.size > kind.max_size or (args.response_size or 0) > kind.max_size:
        raise ValueError(f"{args.endpoint}: messages of at most {kind.max_size} bytes")
    spec = LoadSpec(mode=args.mode, rate=args.rate, outstanding=args.outstanding, conns=args.conns,
                    duration=args.duration, warmup=args.warmup, drain=args.drain, timeout=args.timeout,
                    size=args.size, response_size=args.response_size, max_outstanding=args.max_outstanding,
                    seed=args.seed).validate()
    if args.go:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    ep = kind.client(args)
    try:
        emit("READY")
        if args.go and signal.sigtimedwait([signal.SIGUSR1], 120) is None:
            raise TimeoutError("no start signal (SIGUSR1) within 120 s")
        sw, cpu = Switches(), _Cpu()
        state: dict[str, Any] = {}

        def progress(frac: float) -> None:
            emit("PROGRESS", f"{int(frac * 1000)} 1000")

        def go() -> None:
            state["result"] = run_load(ep, spec, on_progress=progress)

        interrupted = stopped(go)
        res = state.get("result")
        if res is None:
            return {"interrupted": True, "samples": [], **cpu.since()}
        out = res.to_dict(with_samples=True)
        out["interrupted"] = out["interrupted"] or interrupted
        out.update(sw.since())
        out.update(cpu.since())
        out["spec"] = spec.describe()
        out.update(ep.info())
        return out
    finally:
        ep.close()


ROLES = {"server": role_server, "client": role_client, "flood": role_flood}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m etran.bench.loadworker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=tuple(ROLES))
    ap.add_argument("--endpoint", default="etran-udp", help="transport (default etran-udp)")
    ap.add_argument("--poll", choices=("block", "busy"), default="block", help="wait by poll(2) or by spinning")
    ap.add_argument("--app-name", help="the etran application name (default load-ROLE[pid])")
    ap.add_argument("--port", type=int, default=9500, help="server: the port to answer on")
    ap.add_argument("--peer", help="client/flood: the server, IP:PORT")
    ap.add_argument("--mode", choices=("open", "closed"), default="closed")
    ap.add_argument("--rate", type=float, help="open loop: offered requests per second")
    ap.add_argument("--outstanding", type=int, default=1, help="closed loop: requests outstanding")
    ap.add_argument("--conns", type=int, default=1, help="connections (sockets) to spread requests over")
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=0.2, help="unmeasured seconds first")
    ap.add_argument("--drain", type=float, default=0.5, help="seconds to wait for outstanding requests at the end")
    ap.add_argument("--timeout", type=float, default=0.5, help="seconds after which a request is lost")
    ap.add_argument("--size", type=int, default=64, help="request bytes (client; at least 12), datagram bytes (flood)")
    ap.add_argument("--response-size", type=int, help="response bytes (default: as the request)")
    ap.add_argument("--max-outstanding", type=int, default=1024,
                    help="open loop: in-flight cap (default 1024: half an etran socket's 2048-frame RX ring)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--go", action="store_true", help="client: after READY wait for SIGUSR1 to start")
    ap.add_argument("--delay", type=float, default=0.0, help="flood: seconds between READY and the flood")
    ap.add_argument("--time-limit", type=float, default=60.0, help="server/flood: seconds before it stops")
    ap.add_argument("--cpu", type=int, help="pin this process to CPU N")
    args = ap.parse_args(argv)
    if args.role in ("client", "flood") and not args.peer:
        ap.error(f"the {args.role} needs --peer IP:PORT")
    if args.role == "client" and args.size < MIN_SIZE:
        ap.error(f"--size {args.size}: a request needs at least {MIN_SIZE} bytes")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_worker_main(lambda: ROLES[args.role](args), args.cpu, role=args.role, endpoint=args.endpoint)


if __name__ == "__main__":
    sys.exit(main())
