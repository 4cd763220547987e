"""Transparent mode: an unmodified Python program's TCP carried by etran (`etran run -- CMD`).

What eTran's LD_PRELOAD does for C programs, done for Python: `etran run` puts a directory
with a `sitecustomize` module first on PYTHONPATH; it replaces `socket.socket` with
`EtranSocket`, a subclass that carries IPv4 stream sockets over etran when it can and is a
plain kernel socket otherwise:

  connect(addr)       to a non-loopback IPv4 address, with a daemon on this host: an etran
                      connection (a refused or timed-out connect raises as the kernel would);
                      if etran cannot carry it (no daemon, not routable): the kernel's.
  bind + listen       on the host's address or the wildcard: an etran listening port; loopback
                      or anything etran refuses: the kernel's.
  accept, send, sendall, recv, recv_into, makefile, shutdown, close, settimeout, setblocking,
  getpeername, getsockname, fileno (the engine's AF_XDP socket, for selectors) follow the
  etran connection once there is one.

`socket.create_connection`, `http.client`, `urllib`, `socketserver` and `http.server` build
their sockets through `socket.socket`, so they are carried without a change.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket as _socket_mod
import sys
from typing import Any

_KernelSocket = _socket_mod.socket
_installed = False


def _etran_available() -> bool:
    from .. import ipc

    return os.path.exists(ipc.default_socket_path())


def _carry_connect(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.version == 4 and not ip.is_loopback and not ip.is_unspecified and _etran_available()


def _carry_listen(host: str) -> bool:
    if host in ("", "0.0.0.0"):
        return _etran_available()
    return _carry_connect(host)


class EtranSocket(_KernelSocket):
    """socket.socket whose IPv4 stream connections go over etran when they can."""

    __slots__ = ("_et", "_et_bind")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._et = None
        self._et_bind = None

    def _eligible(self) -> bool:
        return self.family == _socket_mod.AF_INET and (self.type & 0xF) == _socket_mod.SOCK_STREAM and self._et is None

    def _adopt(self, conn: Any) -> None:
        self._et = conn
        conn.settimeout(_KernelSocket.gettimeout(self))

    # ---- opening ------------------------------------------------------------------------------
    def connect(self, address: Any) -> None:
        if self._eligible() and isinstance(address, tuple):
            try:
                host = _socket_mod.gethostbyname(address[0])
            except OSError:
                host = ""
            if _carry_connect(host):
                from ..errors import EtranError
                from . import socket as etcp

                try:
                    timeout = _KernelSocket.gettimeout(self)
                    self._adopt(etcp.create_connection((host, int(address[1])), timeout=timeout or 30.0))
                    self._et.settimeout(timeout)
                    return
                except EtranError as e:  # etran cannot carry it: the kernel's
                    print(f"etran run: {host}:{address[1]} over the kernel ({e})", file=sys.stderr)
        return super().connect(address)

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
            return 0
        except OSError as e:
            return e.errno or errno.ECONNREFUSED

    def bind(self, address: Any) -> None:
        if self._eligible() and isinstance(address, tuple) and _carry_listen(str(address[0])):
            self._et_bind = (str(address[0]), int(address[1]))
            return
        return super().bind(address)

    def listen(self, backlog: int = 128) -> None:
        if self._et_bind is not None and self._et is None:
            from ..errors import EtranError
            from . import socket as etcp

            try:
                self._adopt(etcp.create_server(self._et_bind, backlog=max(int(backlog), 1)))
                return
            except EtranError as e:
                print(f"etran run: listening on the kernel ({e})", file=sys.stderr)
                super().bind(self._et_bind)
                self._et_bind = None
        return super().listen(backlog)

    def accept(self) -> tuple[EtranSocket, Any]:
        if self._et is None:
            return super().accept()
        conn, addr = self._et.accept()
        s = EtranSocket(_socket_mod.AF_INET, _socket_mod.SOCK_STREAM)
        s._adopt(conn)
        s._et.settimeout(None if _socket_mod.getdefaulttimeout() is None else _socket_mod.getdefaulttimeout())
        return s, addr

    # ---- I/O ---------------------------------------------------------------------------------
    def send(self, data: Any, flags: int = 0) -> int:
        return self._et.send(data) if self._et is not None else super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        return self._et.sendall(data) if self._et is not None else super().sendall(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._et.recv(bufsize, flags) if self._et is not None else super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._et is not None:
            return self._et.recv_into(buffer, nbytes, flags)
        return super().recv_into(buffer, nbytes, flags)

    def shutdown(self, how: int) -> None:
        if self._et is not None:
            try:
                self._et.shutdown(how)
            except OSError:
                pass
            return
        return super().shutdown(how)

    def _real_close(self, _ss: Any = _KernelSocket) -> None:
        et, self._et = self._et, None
        if et is not None:
            try:
                et.close()
            except Exception:  # noqa: BLE001 (never let one failure stop the loop)
                pass
        super()._real_close()

    # ---- the rest of the socket API ----------------------------------------------------------------
    def settimeout(self, timeout: float | None) -> None:
        super().settimeout(timeout)
        if self._et is not None:
            self._et.settimeout(timeout)

    def setblocking(self, flag: bool) -> None:
        super().setblocking(flag)
        if self._et is not None:
            self._et.setblocking(flag)

    def gettimeout(self) -> float | None:
        return self._et.gettimeout() if self._et is not None else super().gettimeout()

    def getpeername(self) -> Any:
        return self._et.getpeername() if self._et is not None else super().getpeername()

    def getsockname(self) -> Any:
        if self._et is not None:
            return self._et.getsockname()
        if self._et_bind is not None:
            return self._et_bind
        return super().getsockname()

    def fileno(self) -> int:
        return self._et.fileno() if self._et is not None else super().fileno()

    def __repr__(self) -> str:
        if self._et is not None:
            return f"<etran {self._et!r}>"
        return super().__repr__()


def install() -> None:
    """Replace socket.socket (idempotent)."""
    global _installed
    if _installed:
        return
    _socket_mod.socket = EtranSocket  # type: ignore[misc]
    _installed = True


def uninstall() -> None:
    global _installed
    _socket_mod.socket = _KernelSocket  # type: ignore[misc]
    _installed = False


def site_dir() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_site")


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `etran run` gives its command."""
    env = dict(os.environ if base is None else base)
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parts = [site_dir(), package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["ETRAN_TRANSPARENT"] = "1"
    return env


def run(argv: list[str]) -> int:
    """exec the command with etran carrying its TCP."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: etran run -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        os.execvpe(argv[0], argv, environment())
    except OSError as e:
        print(f"etran run: cannot run {argv[0]!r}: {e}", file=sys.stderr)
        return 127
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
