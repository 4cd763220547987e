"""asyncio streams over etran TCP, mirroring `asyncio.open_connection` / `asyncio.start_server`.

    reader, writer = await etran.tcp.open_connection("198.18.0.2", 8080)
    writer.write(b"ping"); await writer.drain()
    data = await reader.read(100)
    writer.close(); await writer.wait_closed()

    server = await etran.tcp.start_server(handle, "", 8080)
    async with server:
        await server.serve_forever()

The readers and writers are asyncio's own `StreamReader` / `StreamWriter`; underneath, an
asyncio `Transport` per connection moves bytes between them and the TCP socket. One pump task
per event loop drives the engine: it wakes on the AF_XDP socket's readability (the engine's
reader callback), lets every connection send what the kernel now allows, and hands received
bytes, EOF and resets to the protocols. Closing is graceful and never blocks the loop: the FIN
goes after the queued data, and the daemon gets the connection once the FIN is acknowledged.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..lib.engine import Engine, default_engine
from . import socket as tsock

__all__ = ["EtranServer", "open_connection", "start_server"]

LINGER = 10.0


class _Pump:
    """The per-(engine, loop) task that runs etran TCP for asyncio."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.demux = tsock._demux(engine)
        self.transports: set[_EtranTransport] = set()
        self.servers: set[EtranServer] = set()
        self.connecting: list[tuple[tsock.TcpSocket, asyncio.Future, float | None]] = []
        self.touched: set[_EtranTransport] = set()
        self.task = loop.create_task(self._run())

    async def _run(self) -> None:
        eng = self.engine
        sweep_at = 0.0
        busy = False
        while True:
            await eng.wait_async(0.002 if busy or self.connecting else 0.05)
            try:
                with eng.lock:
                    self.demux.poll(0)
                    now = time.monotonic()
                    if now >= sweep_at:
                        # every transport now and then: retransmission requests, cwnd changes and
                        # closes are published without a frame to wake us
                        sweep_at = now + 0.004
                        self.service(None)
                        busy = any(t._needs_timer() for t in self.transports)
                    else:
                        self.service(self._heard())
            except Exception as e:  # noqa: BLE001 (never let one failure stop the loop)
                self.loop.call_exception_handler({"message": "etran TCP pump failed", "exception": e})

    def _heard(self) -> list:
        heard, self.demux.heard = self.demux.heard, set()
        out = [c._transport for c in heard if getattr(c, "_transport", None) is not None]
        out.extend(self.touched)
        self.touched = set()
        return out

    def kick(self, t: _EtranTransport | None = None) -> None:
        """Run the service soon (a write or close happened)."""
        if t is not None:
            if t in self.touched:
                return
            self.touched.add(t)
        self.loop.call_soon(self._kick)

    def _kick(self) -> None:
        with self.engine.lock:
            self.service(self._heard())

    def service(self, which: list | None) -> None:
        now = time.monotonic()
        if self.connecting:
            still = []
            for sock, fut, deadline in self.connecting:
                if fut.done():
                    continue
                try:
                    if sock._connect_poll():
                        fut.set_result(sock)
                        continue
                except OSError as e:
                    fut.set_exception(e)
                    continue
                if deadline is not None and now >= deadline:
                    sock._abort_request()
                    fut.set_exception(TimeoutError(errno.ETIMEDOUT, f"connection to {sock.remote} timed out"))
                    continue
                still.append((sock, fut, deadline))
            self.connecting = still
        for srv in list(self.servers):
            srv._accept_pending()
        for t in (list(self.transports) if which is None else which):
            t._service(now)
        self.engine.flush()


_pumps: dict[tuple[int, int], _Pump] = {}


def _pump(engine: Engine | None = None) -> _Pump:
    engine = engine or default_engine()
    loop = asyncio.get_running_loop()
    key = (id(engine), id(loop))
    p = _pumps.get(key)
    if p is None or p.task.done():
        engine.attach_loop(loop)
        p = _pumps[key] = _Pump(engine, loop)
    return p


class _EtranTransport(asyncio.Transport):
    def __init__(self, pump: _Pump, sock: tsock.TcpSocket, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._pump = pump
        self._sock = sock
        self._protocol = protocol
        self._pending: deque[bytes] = deque()     # written but not yet in the socket's send buffer
        self._pending_size = 0
        self._high = 1 << 20
        self._low = 256 << 10
        self._paused_writing = False
        self._paused_reading = False
        self._closing = False
        self._close_deadline: float | None = None
        self._eof_written = False
        self._eof_delivered = False
        self._lost = False
        pump.transports.add(self)
        sock._transport = self
        protocol.connection_made(self)

    # ---- reading ------------------------------------------------------------------------------------
    def pause_reading(self) -> None:
        self._paused_reading = True

    def resume_reading(self) -> None:
        if self._paused_reading:
            self._paused_reading = False
            self._pump.kick(self)

    def is_reading(self) -> bool:
        return not self._paused_reading and not self._lost

    # ---- writing ------------------------------------------------------------------------------------
    def write(self, data: Any) -> None:
        if self._eof_written or self._closing:
            raise RuntimeError("write after close or write_eof")
        if not data:
            return
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        self._fill()
        if self._pending_size > self._high and not self._paused_writing:
            self._paused_writing = True
            self._protocol.pause_writing()
        self._pump.kick(self)

    def _fill(self) -> None:
        s = self._sock
        while self._pending:
            room = tsock.SNDBUF - (len(s._sbuf) - s._soff)
            if room <= 0:
                break
            d = self._pending[0]
            if len(d) <= room:
                s._sbuf += d
                self._pending.popleft()
                self._pending_size -= len(d)
            else:
                s._sbuf += d[:room]
                self._pending[0] = d[room:]
                self._pending_size -= room
        s._push()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self._eof_written:
            self._eof_written = True
            self._pump.kick(self)

    def get_write_buffer_size(self) -> int:
        return self._pending_size + len(self._sock._sbuf) - self._sock._soff

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = 1 << 20 if high is None else high
        self._low = self._high // 4 if low is None else low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    # ---- closing ------------------------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._eof_written = True
        self._close_deadline = time.monotonic() + LINGER
        self._pump.kick(self)

    def abort(self) -> None:
        if self._lost:
            return
        self._sock.abort()
        self._lose(None)

    def _lose(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._pump.transports.discard(self)
        self._pump.loop.call_soon(self._protocol.connection_lost, exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        s = self._sock
        return {"peername": s.remote, "sockname": s.local, "socket": s, "etran": True}.get(name, default)

    # ---- the pump's work ----------------------------------------------------------------------------
    def _needs_timer(self) -> bool:
        s = self._sock
        # unacknowledged data, or data the pacing bucket holds back
        return bool(self._pending) or self._closing or (s._connected and (
            s._sent_hi > s._snd_base or s._snd_base + len(s._sbuf) - s._soff > s._snd_nxt))

    def _service(self, now: float) -> None:
        s = self._sock
        if self._lost:
            return
        if self._pending:
            self._fill()
        else:
            s._push()
        if self._paused_writing and self._pending_size <= self._low:
            self._paused_writing = False
            self._protocol.resume_writing()
        if self._eof_written and not self._pending and not s._fin_wanted and not s._reset:
            s._fin_wanted = True
            s._push()
        # received bytes, EOF, reset
        if not self._paused_reading and len(s._rbuf) > s._roff:
            data = bytes(s._rbuf[s._roff:])
            s._rbuf = bytearray()
            s._roff = 0
            self._protocol.data_received(data)
            edge = s._rcv_nxt + s._rcv_wnd
            if edge - s._edge_sent >= s._rcv_wnd // 4 and not s._reset and s._peer_fin is None:
                s._send_window_update()
        if s._reset and not s._eof:
            s._drop_conn(abort=False)
            self._lose(ConnectionResetError(errno.ECONNRESET, "connection reset by peer"))
            return
        if s._eof and not self._eof_delivered and len(s._rbuf) <= s._roff:
            self._eof_delivered = True
            keep_open = self._protocol.eof_received()
            if not keep_open and not self._closing:
                self.close()
        if self._closing and not self._pending:
            if s._all_acked() or (self._close_deadline is not None and now >= self._close_deadline):
                abort = not s._all_acked()
                s._drop_conn(abort=abort)
                self._lose(None)


async def open_connection(host: str, port: int, *, limit: int = 2 ** 16, timeout: float | None = 30.0,
                          cc: str = "dctcp", engine: Engine | None = None, **kw: Any
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection over etran: (StreamReader, StreamWriter)."""
    pump = _pump(engine)
    loop = pump.loop
    sock = tsock.TcpSocket(pump.engine)
    sock._connect_start(host, int(port), cc)
    fut = loop.create_future()
    pump.connecting.append((sock, fut, None if timeout is None else time.monotonic() + timeout))
    pump.kick()
    await fut
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = _EtranTransport(pump, sock, protocol)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


class EtranServer:
    """What start_server returns: asyncio.Server's interface for an etran listening socket."""

    def __init__(self, pump: _Pump, sock: tsock.TcpSocket,
                 factory: Callable[[], asyncio.Protocol]) -> None:
        self._pump = pump
        self._sock = sock
        self._factory = factory
        self._serving = True
        self._closed = asyncio.Event()
        pump.servers.add(self)

    @property
    def sockets(self) -> tuple[tsock.TcpSocket, ...]:
        return (self._sock,) if self._serving else ()

    def _accept_pending(self) -> None:
        q = self._sock._accept_q
        while q:
            conn = q.pop(0)
            _EtranTransport(self._pump, conn, self._factory())

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        if self._serving:
            self._serving = False
            self._pump.servers.discard(self)
            self._sock.close()
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        try:
            await self._closed.wait()
        finally:
            self.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._pump.loop

    async def __aenter__(self) -> EtranServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def start_server(client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None],
                       host: str | None = None, port: int = 0, *, limit: int = 2 ** 16, backlog: int = 128,
                       cc: str = "dctcp", engine: Engine | None = None, **kw: Any) -> EtranServer:
    """asyncio.start_server over etran; the callback gets asyncio's StreamReader and StreamWriter."""
    pump = _pump(engine)
    loop = pump.loop
    sock = tsock.create_server((host or "", port), backlog=backlog, cc=cc, engine=pump.engine)

    def factory() -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return EtranServer(pump, sock, factory)
