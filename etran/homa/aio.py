"""Homa RPCs with asyncio: the names of etran.homa.HomaSocket, as coroutines.

    from etran.homa.aio import HomaSocket

    async def main():
        srv = HomaSocket(4000)
        asyncio.create_task(srv.serve(handler))        # handler(request) -> bytes, or a coroutine
        cli = HomaSocket()
        answers = await asyncio.gather(*(cli.call(("198.18.0.2", 4000), b"q", timeout=1) for _ in range(100)))

The engine runs from the event loop's reader callback on the AF_XDP socket; every coroutine
waits for its own condition (its response, a request) between RX batches. One event loop
per process engine.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..lib.engine import Engine
from . import socket as _sync
from .errors import HomaTimeoutError
from .socket import Address, Request, Response

Handler = Callable[[Request], "bytes | None | Awaitable[bytes | None]"]


class HomaSocket:
    """A Homa socket for coroutines; `port=None` binds an ephemeral port."""

    def __init__(self, port: int | None = None, engine: Engine | None = None) -> None:
        self._s = _sync.HomaSocket(port, engine)
        self.engine = self._s.engine
        self._h = self._s._h
        self.port = self._s.port

    @property
    def address(self) -> Address:
        return self._s.address

    @property
    def config(self) -> dict[str, Any]:
        return self._s.config

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of this process's Homa library counters (etran.homa.HomaSocket.stats)."""
        return self._s.stats

    def fileno(self) -> int:
        """The engine's AF_XDP socket (the event loop already watches it)."""
        return self._s.fileno()

    async def _wait(self, done: Callable[[], bool], timeout: float | None) -> bool:
        eng, step = self.engine, self._h.wait_step
        eng.attach_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            eng.poll(0)
            left = step(done, deadline)
            if left is not None and left < 0:
                return left == _sync.WAIT_DONE
            await eng.wait_async(left)

    # ---- client ---------------------------------------------------------------------------
    async def send_request(self, addr: Address, payload: bytes | bytearray | memoryview) -> int:
        return self._s.send_request(addr, payload)

    async def recv_response(self, rpc_id: int | None = None, timeout: float | None = None) -> Response:
        s = self._s
        if rpc_id is None:
            while True:
                rpc = s._next_ready()
                if rpc is not None:
                    return s._finish(rpc)
                if not await self._wait(lambda: bool(s._ready), timeout):
                    raise HomaTimeoutError(f"no response within {timeout} s")
        rpc = s._client.get(rpc_id)
        if rpc is None:
            return s.recv_response(rpc_id, 0)   # raises the right error
        if not rpc.done and not await self._wait(lambda: rpc.done, timeout):
            raise HomaTimeoutError(f"no response to RPC {rpc_id} from {rpc.peer[0]}:{rpc.peer[1]} within {timeout} s",
                                   rpc_id)
        return s._finish(rpc)

    async def call(self, addr: Address, payload: bytes | bytearray | memoryview,
                   timeout: float | None = None) -> Response:
        rpc_id = self._s.send_request(addr, payload)
        try:
            return await self.recv_response(rpc_id, timeout)
        except (HomaTimeoutError, asyncio.CancelledError):
            self._s.cancel(rpc_id)
            raise

    def cancel(self, rpc_id: int) -> None:
        self._s.cancel(rpc_id)

    # ---- server ---------------------------------------------------------------------------
    async def recv_request(self, timeout: float | None = None) -> Request:
        s = self._s
        if not s._requests and not await self._wait(lambda: bool(s._requests), timeout):
            raise HomaTimeoutError(f"no request within {timeout} s")
        return s._requests.popleft()

    async def reply(self, request: Request, payload: bytes | bytearray | memoryview) -> None:
        self._s.reply(request, payload)

    async def serve(self, handler: Handler, count: int | None = None, timeout: float | None = None) -> int:
        """Answer requests with handler(request) until `count` are served or none comes for
        `timeout` seconds. A coroutine handler serves each request in its own task (so slow
        requests do not hold up the others)."""
        served = 0
        tasks: set[asyncio.Task] = set()

        async def answer(req: Request, pending: Awaitable[Any]) -> None:
            resp = await pending
            self._s.reply(req, b"" if resp is None else resp)

        try:
            while count is None or served < count:
                try:
                    req = await self.recv_request(timeout)
                except HomaTimeoutError:
                    break
                resp = handler(req)
                if inspect.isawaitable(resp):
                    t = asyncio.ensure_future(answer(req, resp))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                else:
                    self._s.reply(req, b"" if resp is None else resp)
                served += 1
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        await self._wait(lambda: not self._h.queue, 0.5)
        return served

    # ---- end ------------------------------------------------------------------------------
    def close(self) -> None:
        self._s.close()

    async def __aenter__(self) -> HomaSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<aio.HomaSocket {self._s.engine.session.host_ip}:{self.port}>"
