"""The C echo (etran/bench/c/xdp_echo.c) as an echo worker: modes `c-afxdp` and `c-etran`.

etran.bench.echo dispatches these two modes here; the C program does the measuring and
this process only sets up what needs Python (or root), starts the program, relays its
READY/PROGRESS lines and adds facts to its RESULT.  The program is in the same network
namespace, pinned to the same CPU (it inherits both); this process sleeps in a read.

  c-afxdp   bare AF_XDP on the host's NIC (the path of the `afxdp-spin` series): this
            process loads etran's to_xsk program on the NIC, filtered to our UDP port,
            and passes its XSKMAP fd; the C program makes its own UMEM and socket (copy
            mode, need_wakeup) and puts it into the map.  The NIC must have no XDP program
            yet: with an etran daemon on the host use c-etran.
  c-etran   through etran's tenant ports (the path of the `etran-udp-*` series): this
            process registers with the host's daemon as an application, binds our UDP
            port, and passes the AF_XDP socket and the UMEM memfd the daemon made; frames
            go entrance -> UDP ingress -> tenant port -> XSK, and back through the egress
            hook, which checks them and writes the checksums.  Needs the daemon.

SIGTERM/SIGINT: passed on to the program, which stops and still reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

from .frames import ETH_P_IP, IPPROTO_UDP
from .worker import emit, stopped

ZERO_MAC = "00:00:00:00:00:00"  # etran's egress hook fills in the neighbour's MAC
FRAMES = 2048


@contextlib.contextmanager
def _nic_socket(args: argparse.Namespace, role: str) -> Iterator[tuple[list[str], list[int], dict[str, Any]]]:
    from ..bpf.attach import xdp_program_id
    from ..xsk import XskProgram

    current = xdp_program_id(args.ifname)
    if current:
        raise RuntimeError(f"{args.ifname} already has an XDP program (id {current}; an etran daemon's entrance?): "
                           "bare AF_XDP would replace it; run the c-etran mode on hosts with a daemon")
    prog = XskProgram(args.ifname)
    try:
        prog.set_filter(ethertype=ETH_P_IP, ip_proto=IPPROTO_UDP, dport=args.port)
        fd = prog.xsks_map.fd
        argv = ["--ifname", args.ifname, "--xskmap-fd", str(fd), "--frames", str(FRAMES), "--ring", "1024"]
        if role == "client":
            argv += ["--src-mac", args.mac, "--dst-mac", args.peer_mac, "--src-ip", args.ip]
        info: dict[str, Any] = {"path": "nic"}
        yield argv, [fd], info
        with contextlib.suppress(Exception):
            info["xdp"] = prog.stats()
    finally:
        prog.close()


@contextlib.contextmanager
def _etran_socket(args: argparse.Namespace, role: str) -> Iterator[tuple[list[str], list[int], dict[str, Any]]]:
    from .. import ipc

    client = ipc.Client()
    fds: list[int] = []
    try:
        reply, fds = client.request("register", name=f"c-echo-{role}[{os.getpid()}]", frames=FRAMES)
        if len(fds) != 4:
            raise RuntimeError(f"the daemon sent {len(fds)} descriptors at registration, expected 4")
        xsk_fd, memfd = fds[0], fds[1]
        port = client.call("udp.bind", port=args.port)["port"]
        host, umem, rings = reply["host"], reply["umem"], reply["rings"]
        argv = ["--xsk-fd", str(xsk_fd), "--umem-fd", str(memfd), "--frames", str(umem["frames"]),
                "--frame-size", str(umem["frame_size"]),
                "--rings", ",".join(str(rings[k]) for k in ("rx", "tx", "fill", "comp"))]
        if role == "client":
            argv += ["--src-mac", host["mac"], "--dst-mac", ZERO_MAC, "--src-ip", host["ip"]]
        info: dict[str, Any] = {"path": "etran", "slot": reply["slot"], "port": port}
        yield argv, [xsk_fd, memfd], info
        with contextlib.suppress(Exception):
            for app in client.call("stats").get("apps", []):
                if app.get("slot") == reply["slot"]:
                    info["etran_app"] = {k: app.get(k) for k in ("rx_packets", "tx_packets", "drops")}
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        client.close()  # the daemon reclaims the application: port, tenant port, socket


SOURCES = {"c-afxdp": _nic_socket, "c-etran": _etran_socket}


class _Relay:
    """Reads the program's lines: READY and PROGRESS go on to our parent, RESULT/ERROR are kept."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.result: dict[str, Any] | None = None
        self.error: str | None = None

    def handle(self, line: str) -> None:
        kind, _, payload = line.rstrip("\n").partition(" ")
        if kind == "READY":
            emit("READY")
        elif kind == "PROGRESS":
            emit("PROGRESS", payload)
        elif kind == "RESULT":
            self.result = json.loads(payload)
        elif kind == "ERROR":
            self.error = payload

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.handle(line)

    def finish(self, timeout: float = 10.0) -> None:
        """After a Stop: the program was told to stop; read what it still says."""
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        for line in (rest or "").splitlines():
            self.handle(line)


def run(args: argparse.Namespace, role: str) -> dict[str, Any]:
    """Run the C program as `role` (server|client) in mode args.mode; its RESULT, completed."""
    from .native import binary

    exe = binary("xdp_echo")
    with SOURCES[args.mode](args, role) as (argv, fds, info):
        argv = [str(exe), f"--{role}", *argv]
        if role == "client":
            argv += ["--dst-ip", args.peer_ip, "--sport", str(args.port), "--dport", str(args.peer_port),
                     "--payload", str(args.payload), "--count", str(args.count), "--warmup", str(args.warmup),
                     "--rtt-timeout", str(args.rtt_timeout)]
        argv += ["--time-limit", str(args.time_limit)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, pass_fds=fds)
        relay = _Relay(proc)
        try:
            if stopped(relay.run):
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                relay.finish()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if relay.result is None:
            if relay.error:
                raise RuntimeError(f"xdp_echo: {relay.error}")
            raise RuntimeError(f"xdp_echo exited with status {proc.returncode} without a result")
    result = relay.result
    result.update(info)
    result["binary"] = str(exe)
    return result


def server(args: argparse.Namespace) -> dict[str, Any]:
    return run(args, "server")


def client(args: argparse.Namespace) -> dict[str, Any]:
    return run(args, "client")
