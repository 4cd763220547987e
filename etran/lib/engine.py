"""The RX/TX engine every transport's sockets run on.

One engine per process (per Session), one thread at a time. Receiving is a batch from the
RX ring, a dispatch by IP protocol to the transports' handlers (which read frames in place
in the UMEM), and the whole batch back to the fill ring. After each RX batch the engine
hands the kernel blank frames for the control packets it has pending (ACKs, GRANTs): the
kernel fills them in the egress hook (XDP_GEN). Sending writes frames straight into
reserved UMEM frames and submits them in batches.

Waiting is busy-poll (spin on the ring: lowest latency, one core) or blocking (poll(2) on
the socket); asyncio runs the same engine from the loop's reader callback.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Callable

from ..errors import EtranError
from ..kernel.structs import Limits
from .session import Session

# handler(addr, length): a received frame at umem offset addr; return nothing
Handler = Callable[[int, int], None]

BLANK_LEN = 256
BLANK_ETHERTYPE = int(Limits.ETRAN_BLANK_ETHERTYPE).to_bytes(2, "big")
MAX_BLANKS_PER_BATCH = 64


class Engine:
    """Batch RX/TX over the session's AF_XDP socket, shared by all transports of a process."""

    def __init__(self, session: Session, busy_poll: bool = False) -> None:
        self.session = session
        self.xsk = session.xsk
        self.umem = session.umem
        self.buf = self.umem.buf
        self.busy_poll = busy_poll
        self.handlers: dict[int, Handler] = {}
        self.transport_state: dict[str, object] = {}  # each transport's per-engine demultiplexer
        self._tx = self.xsk.tx_batch
        self._tx_n = 0  # reserved
        self._tx_i = 0  # written
        self._tx_want = 1  # frames to reserve at a time (adapts to the batch sizes seen)
        self._blank = session.host_mac_bytes * 2 + BLANK_ETHERTYPE + bytes(BLANK_LEN - 14)
        self._host_pub = session.host_pub[0]
        self.rx_frames = 0
        self.tx_frames = 0
        self.blank_frames = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future] = []
        self.lock = threading.RLock()  # for programs that share sockets across threads

    # ---- receive ------------------------------------------------------------------------
    def register(self, proto: int, handler: Handler) -> None:
        self.handlers[proto] = handler

    def poll(self, timeout: float | None = 0.0) -> int:
        """Receive and dispatch one batch; wait up to `timeout` seconds for it (None: forever).

        Returns the number of frames handled.
        """
        xsk = self.xsk
        n = xsk.recv_batch()
        if not n and timeout != 0:
            n = self._wait_rx(timeout)
        if n:
            b = xsk.rx_batch
            buf = self.buf
            handlers = self.handlers
            for a, ln in zip(b.addr[:n], b.len[:n]):
                if ln < 34:
                    continue
                h = handlers.get(buf[a + 23])
                if h is not None:
                    h(a, ln)
            xsk.release()
            self.rx_frames += n
            self._send_blanks(n)
        self.flush()
        return n

    def _wait_rx(self, timeout: float | None) -> int:
        xsk = self.xsk
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.busy_poll:
            spins = 0
            while True:
                n = xsk.recv_batch()
                if n:
                    return n
                spins += 1
                if spins & 0x3FF == 0:
                    self.flush()
                    if deadline is not None and time.monotonic() >= deadline:
                        return 0
        while True:
            self.flush()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            xsk.poll(left)
            n = xsk.recv_batch()
            if n or (deadline is not None and time.monotonic() >= deadline):
                return n

    def _send_blanks(self, received: int) -> None:
        """XDP_GEN: one blank frame per pending control packet, bounded per batch."""
        pending = self._host_pub.gen_pending
        if not pending:
            return
        n = min(pending, received * 2, MAX_BLANKS_PER_BATCH)
        blank = self._blank
        for _ in range(n):
            addr = self.tx_frame()
            if addr < 0:
                break
            self.buf[addr:addr + BLANK_LEN] = blank
            self.commit(BLANK_LEN)
        self.blank_frames += n

    # ---- transmit ----------------------------------------------------------------------
    def tx_frame(self) -> int:
        """A UMEM offset to write one outgoing frame at (commit() it), or -1 if none is free now."""
        if self._tx_i >= self._tx_n:
            if self._tx_i:  # a batch outgrew its reservation: submit it, reserve more next time
                self.flush()
                self._tx_want = min(self._tx_want * 2, self._tx.capacity)
            n = self.xsk.reserve(self._tx_want)
            if not n:
                self.xsk.complete()
                n = self.xsk.reserve(self._tx_want)
                if not n:
                    return -1
            self._tx_n = n
            self._tx_i = 0
        return self._tx.addr[self._tx_i]

    def commit(self, length: int) -> None:
        self._tx.len[self._tx_i] = length
        self._tx_i += 1

    def tx_frame_wait(self, timeout: float | None = None) -> int:
        """tx_frame(), waiting (by the engine's wait mode) for the kernel to free a frame."""
        addr = self.tx_frame()
        if addr >= 0:
            return addr
        deadline = None if timeout is None else time.monotonic() + timeout
        while addr < 0:
            self.xsk.kick()
            if deadline is not None and time.monotonic() >= deadline:
                raise BlockingIOError("no free transmit frame (the TX ring is full)")
            if not self.busy_poll:
                self.xsk.poll(0.001, select.POLLOUT)
            self.xsk.complete()
            addr = self.tx_frame()
        return addr

    def flush(self) -> int:
        """Submit what was written since the last flush."""
        i = self._tx_i
        if not i and not self._tx_n:
            return 0
        self.xsk.submit(i)
        # reserve about what the last batch needed: a frame at a time for request/response,
        # up to a whole batch for bulk senders (unused reserved frames cost a free each)
        self._tx_want = min(max(i, 1), self._tx.capacity)
        self._tx_n = self._tx_i = 0
        self.tx_frames += i
        return i

    # ---- asyncio ------------------------------------------------------------------------
    def attach_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run RX from `loop` whenever the socket is readable."""
        loop = loop or asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            raise EtranError("this engine already runs on another event loop")
        self._loop = loop
        loop.add_reader(self.xsk.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        while self.poll(0):
            pass
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_async(self, timeout: float | None = None) -> None:
        """Wait until the next RX batch (or the timeout) in a coroutine."""
        self.attach_loop()
        fut = self._loop.create_future()
        self._waiters.append(fut)
        if timeout is None:
            await fut
        else:
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.xsk.fileno())
            except Exception:
                pass
            self._loop = None
        self.flush()


_default: Engine | None = None
_default_lock = threading.Lock()


def default_engine(busy_poll: bool | None = None) -> Engine:
    """The process's engine, registering with the daemon on first use."""
    global _default
    with _default_lock:
        if _default is None or _default.session.closed:
            import os

            mode = os.environ.get("ETRAN_POLL", "block")
            _default = Engine(Session(), busy_poll=(mode == "busy") if busy_poll is None else busy_poll)
        elif busy_poll is not None:
            _default.busy_poll = busy_poll
        return _default
