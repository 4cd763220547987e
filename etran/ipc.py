"""The daemon <-> application protocol: JSON messages on a SOCK_SEQPACKET Unix socket.

One message per datagram; file descriptors (AF_XDP socket, UMEM memfd, state maps) ride
along with SCM_RIGHTS.  Requests carry "op"; replies carry "ok" and either the result or
"error" (a sentence saying what to do).  The socket's path is per host:
/run/etran/<netns name>.sock, or /run/etran/default.sock outside any named namespace.
"""

from __future__ import annotations

import array
import json
import os
import socket
from typing import Any

from .errors import EtranError

RUN_DIR = "/run/etran"
MAX_MESSAGE = 64 * 1024
MAX_FDS = 16


def socket_path(host: str | None) -> str:
    return os.path.join(RUN_DIR, f"{host or 'default'}.sock")


def current_netns_name() -> str | None:
    """The name (under /run/netns) of the network namespace this thread is in, or None."""
    try:
        me = os.stat("/proc/thread-self/ns/net")
    except OSError:
        return None
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(os.path.join("/run/netns", name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
            return name
    return None


def default_socket_path() -> str:
    """$ETRAN_SOCKET, else the socket of the daemon of this thread's network namespace."""
    return os.environ.get("ETRAN_SOCKET") or socket_path(current_netns_name())


class RemoteError(EtranError):
    """The daemon refused a request; the message says why and what to do."""


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise EtranError(f"control message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendmsg([data])


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the fds that came with it; (None, []) when the peer closed."""
    fds = array.array("i")
    data, ancdata, flags, _ = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise EtranError("control message carried more file descriptors than expected")
    try:
        message = json.loads(data)
    except ValueError as e:
        for fd in fds:
            os.close(fd)
        raise EtranError(f"malformed control message: {e}") from e
    if not isinstance(message, dict):
        raise EtranError("malformed control message: not a JSON object")
    return message, list(fds)


class Client:
    """A blocking request/reply connection to the daemon of this host."""

    def __init__(self, path: str | None = None, timeout: float = 10.0) -> None:
        self.path = path or default_socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except FileNotFoundError:
            self.sock.close()
            raise EtranError(f"no etran daemon at {self.path}; start one (etran daemon --dev IFACE, or "
                             "etran testbed up) or set ETRAN_SOCKET") from None
        except PermissionError:
            self.sock.close()
            raise EtranError(f"not allowed to connect to the etran daemon at {self.path}") from None
        except ConnectionRefusedError:
            self.sock.close()
            raise EtranError(f"the etran daemon at {self.path} is not running (stale socket); restart it") from None

    def request(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[int]]:
        send(self.sock, {"op": op, **fields})
        reply, fds = recv(self.sock)
        if reply is None:
            raise EtranError("the etran daemon closed the connection")
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            raise RemoteError(reply.get("error") or f"the daemon refused {op!r}")
        return reply, fds

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        reply, fds = self.request(op, **fields)
        for fd in fds:
            os.close(fd)
        return reply

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
