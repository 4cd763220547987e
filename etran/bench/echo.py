"""Echo worker: `python -m etran.bench.echo {server|client} --mode MODE ...` in a test-bed host.

Modes (the same on both sides):
  afxdp     raw Ethernet/IPv4/UDP frames on an AF_XDP socket (to_xsk on the host's NIC,
            filtered to our UDP port so everything else still reaches the kernel).  The
            client spins on the RX ring; the server spins too, and echoes each frame with
            MACs, IPs and ports swapped (a copy into a TX frame of the same UMEM).
  udp       kernel UDP, blocking recv on both sides.
  tcp       kernel TCP with TCP_NODELAY, blocking recv on both sides.
  tcp-spin  kernel TCP with TCP_NODELAY, non-blocking sockets spinning on recv on both sides.
  etran-udp, etran-udp-spin
            etran's own UDP transport (etran.udp.UdpSocket) through the host's daemon and
            tenant ports: blocking in poll(2) (ETRAN_POLL=block), or spinning on the rings
            (ETRAN_POLL=busy).  Needs an etran daemon on both hosts.
  c-afxdp, c-etran
            the C echo (etran/bench/c/xdp_echo.c, busy-poll on both sides), on the NIC like
            `afxdp` or through tenant ports like `etran-udp`: see etran.bench.cecho.

The client does `--warmup` unmeasured round trips, then `--count` measured ones (stopping
early at `--time-limit` seconds, reported as `truncated`).  A round trip is timed with
time.perf_counter_ns from just before the send call to just after the matching reply is
received and checked; the payload (`--payload` bytes, an 8-byte sequence number first)
must come back unchanged.  Preparing the next message happens outside the timed part.
A reply that does not arrive within `--rtt-timeout` seconds counts as lost (UDP and
AF_XDP) and is not a sample; for TCP it ends the run with an error.

Lines on stdout follow etran.bench.worker's protocol (READY, PROGRESS, RESULT, ERROR).
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from .frames import ETH_P_IP, IPPROTO_UDP, UDP_PAYLOAD_OFFSET, pattern_payload, udp_frame
from .worker import ClientRun, Counter, Switches, emit, run_worker_main, stopped, tcp_connect, tcp_serve_one

MODES = ("afxdp", "udp", "tcp", "tcp-spin", "etran-udp", "etran-udp-spin", "c-afxdp", "c-etran")
SEQ = struct.Struct("!Q")
SO_RCVTIMEO = socket.SO_RCVTIMEO


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))


# ---- AF_XDP ------------------------------------------------------------------------------

def _open_xsk(args: argparse.Namespace) -> tuple[Any, Any]:
    from ..xsk import XskProgram, XskSocket

    prog = XskProgram(args.ifname)  # this process is already in the host's namespace
    try:
        prog.set_filter(ethertype=ETH_P_IP, ip_proto=IPPROTO_UDP, dport=args.port)
        # need_wakeup off: spinning on the RX ring must not make a syscall per empty poll
        # (in copy mode the kernel keeps asking for a wake-up on the fill ring, which costs
        # a recvfrom, ~1 us, per poll); TX is kicked with sendto either way (copy mode).
        xsk = XskSocket(args.ifname, mode=args.xsk_mode, rx_size=1024, tx_size=1024, batch_size=64,
                        need_wakeup=False)
        try:
            prog.add(xsk)
        except BaseException:
            xsk.close()
            raise
    except BaseException:
        prog.close()
        raise
    return prog, xsk


def _xsk_info(prog: Any, xsk: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"xsk_mode": xsk.mode}
    try:
        info["xsk_stats"] = xsk.statistics()._asdict()
        info["xdp"] = prog.stats()
    except Exception as e:  # informational only
        info["xsk_stats_error"] = str(e)
    return info


def afxdp_server(args: argparse.Namespace) -> dict[str, Any]:
    prog, xsk = _open_xsk(args)
    done = Counter()
    try:
        emit("READY")
        sw = Switches()
        stopped(_afxdp_echo_loop, xsk, time.monotonic() + args.time_limit, done)
        return {"echoed": done.n, **sw.since(), **_xsk_info(prog, xsk)}
    finally:
        xsk.close()
        prog.close()


def _afxdp_echo_loop(xsk: Any, deadline: float, done: Counter) -> None:
    buf = xsk.umem.buf
    rxb, txb = xsk.rx_batch, xsk.tx_batch
    raddr, rlen, taddr, tlen = rxb.addr, rxb.len, txb.addr, txb.len
    recv_batch, release, reserve, submit = xsk.recv_batch, xsk.release, xsk.reserve, xsk.submit
    spins = 0
    while True:
        n = recv_batch()
        if not n:
            spins += 1
            if not spins & 0xFFFF and time.monotonic() > deadline:
                return
            continue
        m = reserve(n)
        for i in range(m):
            a = raddr[i]
            ln = rlen[i]
            t = taddr[i]
            f = buf[a:a + ln]
            # etran.bench.frames.echo_reply, inlined
            buf[t:t + ln] = f[6:12] + f[0:6] + f[12:26] + f[30:34] + f[26:30] + f[36:38] + f[34:36] + f[38:]
            tlen[i] = ln
        submit(m)
        release()
        done.n += m


def afxdp_client(args: argparse.Namespace) -> dict[str, Any]:
    prog, xsk = _open_xsk(args)
    run = ClientRun(args.count, args.warmup, args.time_limit, args.rtt_timeout)
    try:
        emit("READY")
        payload = pattern_payload(args.payload)
        frame = bytearray(udp_frame(args.mac, args.peer_mac, args.ip, args.peer_ip, args.port, args.peer_port,
                                    bytes(payload)))
        run.interrupted = stopped(_afxdp_client_loop, xsk, run, frame)
        return run.result(**_xsk_info(prog, xsk))
    finally:
        xsk.close()
        prog.close()


def _afxdp_client_loop(xsk: Any, run: ClientRun, frame: bytearray) -> None:
    flen = len(frame)
    off = UDP_PAYLOAD_OFFSET
    buf = xsk.umem.buf
    rxb, txb = xsk.rx_batch, xsk.tx_batch
    raddr, rlen, taddr, tlen = rxb.addr, rxb.len, txb.addr, txb.len
    recv_batch, release, reserve, submit, complete = xsk.recv_batch, xsk.release, xsk.reserve, xsk.submit, xsk.complete
    pack_into, unpack_from = SEQ.pack_into, SEQ.unpack_from
    pc = time.perf_counter_ns
    record, timeout_ns = run.record, run.timeout_ns
    for i in range(run.total):
        pack_into(frame, off, i)
        expect = bytes(frame[off:])
        if not reserve(1):
            complete()
            if not reserve(1):
                raise RuntimeError("no free UMEM frame or TX slot for the next request")
        a = taddr[0]
        buf[a:a + flen] = frame
        tlen[0] = flen
        ok = False
        t0 = pc()
        submit(1)
        while True:
            n = recv_batch()
            if n:
                for j in range(n):
                    a = raddr[j]
                    if rlen[j] == flen and buf[a + off:a + flen] == expect:
                        ok = True
                    elif rlen[j] >= off + 8 and unpack_from(buf, a + off)[0] == i:
                        run.corrupt += 1
                        ok = True
                release()
                if ok:
                    break
            elif pc() - t0 > timeout_ns:
                break
        if record(i, t0, pc(), ok):
            return


# ---- kernel UDP --------------------------------------------------------------------------

def udp_server(args: argparse.Namespace) -> dict[str, Any]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    done = Counter()
    try:
        s.bind((args.ip, args.port))
        s.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, _timeval(1.0))  # wake up to check the deadline
        emit("READY")
        sw = Switches()
        stopped(_udp_echo_loop, s, time.monotonic() + args.time_limit, done)
        return {"echoed": done.n, **sw.since()}
    finally:
        s.close()


def _udp_echo_loop(s: socket.socket, deadline: float, done: Counter) -> None:
    buf = bytearray(65536)
    view = memoryview(buf)
    recvfrom_into, sendto = s.recvfrom_into, s.sendto
    while True:
        try:
            n, addr = recvfrom_into(buf)
        except BlockingIOError:  # SO_RCVTIMEO
            if time.monotonic() > deadline:
                return
            continue
        sendto(view[:n], addr)
        done.n += 1


def udp_client(args: argparse.Namespace) -> dict[str, Any]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    run = ClientRun(args.count, args.warmup, args.time_limit, args.rtt_timeout)
    try:
        s.bind((args.ip, args.port))
        s.connect((args.peer_ip, args.peer_port))
        s.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, _timeval(args.rtt_timeout))
        emit("READY")
        run.interrupted = stopped(_udp_client_loop, s, run, pattern_payload(args.payload))
        return run.result()
    finally:
        s.close()


def _udp_client_loop(s: socket.socket, run: ClientRun, payload: bytearray) -> None:
    rbuf = bytearray(65536)
    rview = memoryview(rbuf)
    recv_into = s.recv_into

    def recv() -> memoryview | None:
        try:
            return rview[:recv_into(rbuf)]
        except BlockingIOError:  # SO_RCVTIMEO: lost
            return None

    datagram_echo_loop(run, payload, partial(s.send, payload), recv)


def datagram_echo_loop(run: ClientRun, payload: bytearray, send: Callable[[], Any],
                       recv: Callable[[], Any]) -> None:
    """The timed loop of every datagram echo series: number the payload, send() it, recv()
    replies (None: lost) until its own echo, skipping late replies to earlier requests."""
    plen = len(payload)
    pack_into, unpack_from = SEQ.pack_into, SEQ.unpack_from
    pc = time.perf_counter_ns
    record = run.record
    for i in range(run.total):
        pack_into(payload, 0, i)
        ok = False
        t0 = pc()
        send()
        while True:
            data = recv()
            if data is None:
                break
            if len(data) == plen and data == payload:
                ok = True
                break
            if len(data) >= 8 and unpack_from(data)[0] == i:
                run.corrupt += 1
                ok = True
                break
            # a late reply to an earlier (lost) request: keep waiting for ours
        if record(i, t0, pc(), ok):
            return


# ---- kernel TCP --------------------------------------------------------------------------

def tcp_server(args: argparse.Namespace) -> dict[str, Any]:
    done = Counter()
    sw = tcp_serve_one(args.ip, args.port, args.time_limit,
                       partial(_tcp_serve, spin=args.mode == "tcp-spin",
                               deadline=time.monotonic() + args.time_limit, done=done))
    return {"echoed_bytes": done.n, **sw}


def _tcp_serve(c: socket.socket, spin: bool, deadline: float, done: Counter) -> None:
    c.settimeout(None)
    if spin:
        c.setblocking(False)
        _tcp_echo_spin(c, deadline, done)
    else:
        c.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, _timeval(1.0))  # wake up to check the deadline
        _tcp_echo_blocking(c, deadline, done)


def _tcp_echo_blocking(c: socket.socket, deadline: float, done: Counter) -> None:
    buf = bytearray(65536)
    view = memoryview(buf)
    recv_into, sendall = c.recv_into, c.sendall
    while True:
        try:
            n = recv_into(buf)
        except BlockingIOError:
            if time.monotonic() > deadline:
                return
            continue
        if not n:
            return  # the client closed: done
        sendall(view[:n])
        done.n += n


def _tcp_echo_spin(c: socket.socket, deadline: float, done: Counter) -> None:
    buf = bytearray(65536)
    view = memoryview(buf)
    recv_into, send = c.recv_into, c.send
    spins = 0
    while True:
        try:
            n = recv_into(buf)
        except BlockingIOError:
            spins += 1
            if not spins & 0xFFFF and time.monotonic() > deadline:
                return
            continue
        if not n:
            return
        data = view[:n]
        while data:
            try:
                data = data[send(data):]
            except BlockingIOError:
                pass
        done.n += n


def tcp_client(args: argparse.Namespace) -> dict[str, Any]:
    spin = args.mode == "tcp-spin"
    s = tcp_connect(args.ip, (args.peer_ip, args.peer_port))
    run = ClientRun(args.count, args.warmup, args.time_limit, args.rtt_timeout)
    try:
        if spin:
            s.setblocking(False)
        else:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, _timeval(args.rtt_timeout))
        emit("READY")
        run.interrupted = stopped(_tcp_client_loop, s, run, pattern_payload(args.payload), spin, args.rtt_timeout)
        return run.result()
    finally:
        s.close()


def _tcp_client_loop(s: socket.socket, run: ClientRun, payload: bytearray, spin: bool, rtt_timeout: float) -> None:
    plen = len(payload)
    rbuf = bytearray(plen)
    rview = memoryview(rbuf)
    send, recv_into = s.send, s.recv_into
    pack_into = SEQ.pack_into
    pc = time.perf_counter_ns
    record, timeout_ns = run.record, run.timeout_ns
    for i in range(run.total):
        pack_into(payload, 0, i)
        t0 = pc()
        if send(payload) != plen:
            raise RuntimeError("a short message was split by send()")  # never with an empty socket buffer
        got = 0
        while got < plen:
            try:
                n = recv_into(rview[got:], plen - got)
            except BlockingIOError:  # spinning: no data yet; blocking: SO_RCVTIMEO expired
                if not spin or pc() - t0 > timeout_ns:
                    raise TimeoutError(f"no reply to round trip {i} within {rtt_timeout} s") from None
                continue
            if not n:
                raise ConnectionError("the server closed the connection")
            got += n
        t1 = pc()
        if rbuf != payload:
            run.corrupt += 1
        if record(i, t0, t1):
            return


# ---- etran UDP (etran.udp.UdpSocket through the daemon's tenant ports) --------------------

def _etran_udp_socket(args: argparse.Namespace) -> Any:
    """A bound etran UDP socket; the engine waits the way ETRAN_POLL says (set here from the mode)."""
    import os

    os.environ["ETRAN_POLL"] = "busy" if args.mode == "etran-udp-spin" else "block"
    os.environ.setdefault("ETRAN_APP_NAME", f"bench-{args.mode}[{os.getpid()}]")
    from ..udp import UdpSocket

    sock = UdpSocket()
    try:
        sock.bind(args.port)
    except BaseException:
        _etran_udp_close(sock)
        raise
    return sock


def _etran_udp_close(sock: Any) -> None:
    try:
        sock.close()
    finally:
        sock.engine.close()
        sock.engine.session.close()


def _etran_udp_info(sock: Any) -> dict[str, Any]:
    e = sock.engine
    return {"poll": "busy" if e.busy_poll else "block", "engine": {"rx_frames": e.rx_frames, "tx_frames": e.tx_frames,
                                                                    "blank_frames": e.blank_frames},
            "slot": e.session.slot}


def etran_udp_server(args: argparse.Namespace) -> dict[str, Any]:
    sock = _etran_udp_socket(args)
    done = Counter()
    try:
        emit("READY")
        sw = Switches()
        stopped(_etran_udp_echo_loop, sock, time.monotonic() + args.time_limit, done)
        return {"echoed": done.n, **sw.since(), **_etran_udp_info(sock)}
    finally:
        _etran_udp_close(sock)


def _etran_udp_echo_loop(sock: Any, deadline: float, done: Counter) -> None:
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        try:
            data, addr = recvfrom(65536, 1.0)  # wake up to check the deadline
        except TimeoutError:
            if time.monotonic() > deadline:
                return
            continue
        sendto(data, addr)
        done.n += 1


def etran_udp_client(args: argparse.Namespace) -> dict[str, Any]:
    sock = _etran_udp_socket(args)
    run = ClientRun(args.count, args.warmup, args.time_limit, args.rtt_timeout)
    try:
        emit("READY")
        run.interrupted = stopped(_etran_udp_client_loop, sock, run, pattern_payload(args.payload),
                                  (args.peer_ip, args.peer_port), args.rtt_timeout)
        return run.result(**_etran_udp_info(sock))
    finally:
        _etran_udp_close(sock)


def _etran_udp_client_loop(sock: Any, run: ClientRun, payload: bytearray, peer: tuple[str, int],
                           rtt_timeout: float) -> None:
    recvfrom = sock.recvfrom

    def recv() -> bytes | None:
        try:
            return recvfrom(65536, rtt_timeout)[0]
        except TimeoutError:  # lost
            return None

    datagram_echo_loop(run, payload, partial(sock.sendto, payload, peer), recv)


# ---- C (etran.bench.cecho) -------------------------------------------------------------

def c_server(args: argparse.Namespace) -> dict[str, Any]:
    from . import cecho

    return cecho.server(args)


def c_client(args: argparse.Namespace) -> dict[str, Any]:
    from . import cecho

    return cecho.client(args)


ROLES = {
    ("server", "afxdp"): afxdp_server, ("client", "afxdp"): afxdp_client,
    ("server", "udp"): udp_server, ("client", "udp"): udp_client,
    ("server", "tcp"): tcp_server, ("client", "tcp"): tcp_client,
    ("server", "tcp-spin"): tcp_server, ("client", "tcp-spin"): tcp_client,
    ("server", "etran-udp"): etran_udp_server, ("client", "etran-udp"): etran_udp_client,
    ("server", "etran-udp-spin"): etran_udp_server, ("client", "etran-udp-spin"): etran_udp_client,
    ("server", "c-afxdp"): c_server, ("client", "c-afxdp"): c_client,
    ("server", "c-etran"): c_server, ("client", "c-etran"): c_client,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m etran.bench.echo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--ifname", default="eth0", help="the NIC (AF_XDP mode)")
    ap.add_argument("--ip", required=True, help="this host's address")
    ap.add_argument("--mac", help="this host's MAC (AF_XDP client)")
    ap.add_argument("--port", type=int, required=True, help="this side's UDP/TCP port")
    ap.add_argument("--peer-ip", help="the server's address (client)")
    ap.add_argument("--peer-mac", help="the server's MAC (AF_XDP client)")
    ap.add_argument("--peer-port", type=int, help="the server's port (client)")
    ap.add_argument("--count", type=int, default=20_000, help="measured round trips")
    ap.add_argument("--warmup", type=int, default=1_000, help="unmeasured round trips first")
    ap.add_argument("--payload", type=int, default=64, help="payload bytes (at least 8)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds before the run stops")
    ap.add_argument("--rtt-timeout", type=float, default=0.2, help="seconds before a reply counts as lost")
    ap.add_argument("--xsk-mode", choices=("auto", "copy", "zerocopy"), default="auto")
    ap.add_argument("--cpu", type=int, help="pin this process to CPU N")
    args = ap.parse_args(argv)
    if args.role == "client" and (args.peer_ip is None or args.peer_port is None):
        ap.error("the client needs --peer-ip and --peer-port")
    if args.role == "client" and args.mode in ("afxdp", "c-afxdp") and (args.mac is None or args.peer_mac is None):
        ap.error("the AF_XDP client needs --mac and --peer-mac")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_worker_main(lambda: ROLES[(args.role, args.mode)](args), args.cpu, mode=args.mode)


if __name__ == "__main__":
    sys.exit(main())
