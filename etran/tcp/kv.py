"""A key-value store speaking RESP (the Redis protocol) over etran TCP: `etran kv-server`.

Commands: PING [msg], ECHO msg, GET key, SET key value, DEL key [key ...], EXISTS key [...],
DBSIZE, FLUSHALL, COMMAND (empty), QUIT. Requests are RESP arrays of bulk strings (what every
Redis client sends) or inline commands; pipelined requests are answered in order.

One thread serves every connection: over etran it runs the engine and answers the connections
that heard something in each RX batch; over the kernel (`--kernel`, the comparison) it uses
selectors with non-blocking sockets. The same parser and store serve both.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from typing import Any

__all__ = ["KvStore", "RespParser", "resp_command", "serve"]

CRLF = b"\r\n"


class RespError(Exception):
    pass


class RespParser:
    """Incremental RESP request parser: feed bytes, take complete commands (lists of bytes)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def feed(self, data: bytes) -> None:
        if self.pos and self.pos == len(self.buf):
            self.buf = bytearray()
            self.pos = 0
        self.buf += data

    def commands(self) -> list[list[bytes]]:
        out = self._fast()
        while True:
            cmd = self._one()
            if cmd is None:
                break
            out.append(cmd)
        if self.pos > 65536:
            del self.buf[:self.pos]
            self.pos = 0
        return out

    def _fast(self) -> list[list[bytes]]:
        """The complete commands at the front, split at every CRLF in one C call (a pipelined
        batch costs a few calls, not several per argument). Stops at the first thing it does not
        expect (an inline command, a value holding CRLF, an incomplete command); _one goes on."""
        buf, p = self.buf, self.pos
        out: list[list[bytes]] = []
        if p >= len(buf) or buf[p] != 0x2A:
            return out
        parts = bytes(buf[p:] if p else buf).split(CRLF)
        last = len(parts) - 1                   # parts[last] has no CRLF after it: incomplete
        i = 0
        while i < last:
            head = parts[i]
            if head[:1] != b"*":
                break
            try:
                n = int(head[1:])
            except ValueError:
                break
            j = i + 1 + 2 * n
            if n < 0 or j > last:
                break
            vals = parts[i + 2:j:2]
            if [b"$%d" % len(v) for v in vals] != parts[i + 1:j:2]:
                break  # not "$<length>" before each value (a value holding CRLF, say)
            out.append(vals)
            i = j
        if i:
            p += sum(map(len, parts[:i])) + 2 * i
        self.pos = p
        return out

    def _line(self, start: int) -> tuple[bytes, int] | None:
        end = self.buf.find(CRLF, start)
        if end < 0:
            return None
        return bytes(self.buf[start:end]), end + 2

    def _one(self) -> list[bytes] | None:
        buf, p = self.buf, self.pos
        if p >= len(buf):
            return None
        if buf[p] != 0x2A:  # '*': else an inline command
            r = self._line(p)
            if r is None:
                return None
            line, self.pos = r
            return line.split()
        r = self._line(p + 1)
        if r is None:
            return None
        head, p = r
        n = int(head)
        args = []
        for _ in range(max(n, 0)):
            if p >= len(buf):
                return None
            if buf[p] != 0x24:  # '$'
                raise RespError("expected a bulk string")
            r = self._line(p + 1)
            if r is None:
                return None
            ln, p = r
            size = int(ln)
            if len(buf) < p + size + 2:
                return None
            args.append(bytes(buf[p:p + size]))
            p += size + 2
        self.pos = p
        return args


def resp_command(*args: bytes | str) -> bytes:
    """Encode a command as a RESP array of bulk strings (what a client sends)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def bulk(v: bytes | None) -> bytes:
    return b"$-1\r\n" if v is None else b"$%d\r\n%s\r\n" % (len(v), v)


class KvStore:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.requests = 0

    def execute(self, cmd: list[bytes]) -> bytes:
        self.requests += 1
        if not cmd:
            return b"-ERR empty command\r\n"
        name = cmd[0].upper()
        d = self.data
        if name == b"GET" and len(cmd) == 2:
            v = d.get(cmd[1])
            return b"$-1\r\n" if v is None else b"$%d\r\n%s\r\n" % (len(v), v)
        if name == b"SET" and len(cmd) >= 3:
            d[cmd[1]] = cmd[2]
            return b"+OK\r\n"
        if name == b"PING":
            return bulk(cmd[1]) if len(cmd) > 1 else b"+PONG\r\n"
        if name == b"DEL" and len(cmd) >= 2:
            return b":%d\r\n" % sum(d.pop(k, None) is not None for k in cmd[1:])
        if name == b"EXISTS" and len(cmd) >= 2:
            return b":%d\r\n" % sum(k in d for k in cmd[1:])
        if name == b"ECHO" and len(cmd) == 2:
            return bulk(cmd[1])
        if name == b"DBSIZE":
            return b":%d\r\n" % len(d)
        if name == b"FLUSHALL":
            d.clear()
            return b"+OK\r\n"
        if name == b"COMMAND":
            return b"*0\r\n"
        if name == b"QUIT":
            return b"+OK\r\n"
        return b"-ERR unknown command or wrong number of arguments for '%s'\r\n" % cmd[0][:64]


def _answer(store: KvStore, parser: RespParser, data: bytes) -> tuple[bytes, bool]:
    parser.feed(data)
    try:
        cmds = parser.commands()
    except (RespError, ValueError):
        return b"-ERR protocol error\r\n", True
    ex = store.execute
    out = b"".join([ex(c) for c in cmds])
    quit_ = False
    for c in cmds:
        if c and len(c[0]) == 4 and c[0].upper() == b"QUIT":
            quit_ = True
    return out, quit_


def serve(bind: str = "", port: int = 6379, *, kernel: bool = False, max_requests: int = 0,
          ready: Any = None) -> int:
    """Serve until interrupted (or max_requests). `ready(port)` is called once listening."""
    store = KvStore()
    if kernel:
        return _serve_kernel(store, bind, port, max_requests, ready)
    return _serve_etran(store, bind, port, max_requests, ready)


def _serve_kernel(store: KvStore, bind: str, port: int, max_requests: int, ready: Any) -> int:
    ls = socket.create_server((bind, port), backlog=1024, reuse_port=False)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    if ready:
        ready(ls.getsockname()[1])
    try:
        while not max_requests or store.requests < max_requests:
            for key, _ in sel.select(1.0):
                if key.data is None:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(c, selectors.EVENT_READ, RespParser())
                    continue
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(c)
                    c.close()
                    continue
                out, quit_ = _answer(store, key.data, data)
                if out:
                    c.setblocking(True)
                    c.sendall(out)
                    c.setblocking(False)
                if quit_:
                    sel.unregister(c)
                    c.close()
    except KeyboardInterrupt:
        pass
    finally:
        ls.close()
    return 0


def _serve_etran(store: KvStore, bind: str, port: int, max_requests: int, ready: Any) -> int:
    from . import socket as tsock

    srv = tsock.create_server((bind or "", port), backlog=1024)
    eng = srv.engine
    d = srv._d
    parsers: dict[tsock.TcpSocket, RespParser] = {}
    if ready:
        ready(srv.getsockname()[1])
    closing: dict[tsock.TcpSocket, float] = {}
    try:
        while not max_requests or store.requests < max_requests:
            with eng.lock:
                d.poll(0.002 if closing else 0.05)
                q = srv._accept_q
                while q:
                    c = q.pop(0)
                    parsers[c] = RespParser()
                heard, d.heard = d.heard, set()
                for c in heard:
                    p = parsers.get(c)
                    if p is None:
                        continue
                    avail = len(c._rbuf) - c._roff
                    if avail:
                        data = bytes(c._rbuf[c._roff:] if c._roff else c._rbuf)
                        c._rbuf = bytearray()
                        c._roff = 0
                        out, quit_ = _answer(store, p, data)
                        if out:
                            c._sbuf += out
                            c._push()
                        if c._rcv_nxt + c._rcv_wnd - c._edge_sent >= c._rcv_wnd // 4 and c._peer_fin is None:
                            c._send_window_update()
                        if quit_:
                            c._fin_wanted = True
                            c._push()
                    if c._eof or c._reset:
                        parsers.pop(c, None)
                        c._fin_wanted = True
                        c._push()
                        closing[c] = time.monotonic() + 10.0
                # finished connections: ours are closed once our replies and FIN are acknowledged
                for c, deadline in list(closing.items()):
                    if c._all_acked() or time.monotonic() > deadline:
                        del closing[c]
                        c._drop_conn(abort=not c._all_acked())
                eng.flush()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
    return 0


def main() -> None:  # python -m etran.tcp.kv [--kernel] [port]
    import sys

    kernel = "--kernel" in sys.argv
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    port = int(args[0]) if args else int(os.environ.get("ETRAN_KV_PORT", "6379"))
    serve("", port, kernel=kernel, ready=lambda p: print(f"kv-server on port {p}", flush=True))


if __name__ == "__main__":
    main()
