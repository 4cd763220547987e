"""The RX/TX engine every transport's sockets run on.

One engine per process (per Session), one thread at a time. Receiving is a batch from the
RX ring, a dispatch by IP protocol to the transports' handlers (which read frames in place
in the UMEM), and the whole batch back to the fill ring. After each RX batch the engine
hands the kernel blank frames for the control packets it has pending (ACKs, GRANTs): the
kernel fills them in the egress hook (XDP_GEN). Sending writes frames straight into UMEM
frames and their descriptors straight into the TX ring; flush() publishes them with one
producer store and kicks the kernel only when the ring asks (need_wakeup).

Waiting is busy-poll (spin on the ring's producer index: lowest latency, one core) or
blocking (poll(2) on the socket); asyncio runs the same engine from the loop's reader
callback.  What no round trip waits for (reclaiming TX completions) is done while waiting.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Callable

from ..errors import EtranError
from ..kernel.structs import Limits
from ..xsk.abi import XDP_RING_NEED_WAKEUP
from .sched import request_short_slice
from .session import Session

# handler(addr, length): a received frame at umem offset addr; return nothing
Handler = Callable[[int, int], None]

BLANK_LEN = 256
BLANK_ETHERTYPE = int(Limits.ETRAN_BLANK_ETHERTYPE).to_bytes(2, "big")
MAX_BLANKS_PER_BATCH = 64
BLANKS_DEFER_MAX = 8  # single-frame polls whose blank frames may wait for the next idle moment
M32 = 0xFFFFFFFF


class Engine:
    """Batch RX/TX over the session's AF_XDP socket, shared by all transports of a process.

    The hot path works on the rings directly (the same index arithmetic as XskDatapath,
    without a call per step): a received frame is dispatched straight from its RX
    descriptor, and a frame to send is written into the next TX descriptor, published by
    flush() with one producer store and one kick.  Housekeeping that no round trip waits
    for (reclaiming TX completions) runs while the engine waits for frames.
    """

    def __init__(self, session: Session, busy_poll: bool = False) -> None:
        self.session = session
        self.xsk = xsk = session.xsk
        self.umem = session.umem
        self.buf = self.umem.buf
        self.busy_poll = busy_poll
        self.short_slice = request_short_slice()   # this thread clocks the process's flows
        self.handlers: dict[int, Handler] = {}
        self.transport_state: dict[str, object] = {}  # each transport's per-engine demultiplexer
        # rings and the frame allocator, bound once (see XskDatapath for the protocol)
        self._rxr = rx = xsk.rx
        self._r_idx, self._r_p, self._r_q, self._r_mask = rx._idx, rx._p, rx._q, rx.mask
        self._fill = fill = xsk.fill
        self._f_idx, self._f_f, self._f_p, self._f_q, self._f_mask = fill._idx, fill._f, fill._p, fill._q, fill.mask
        self._txr = tx = xsk.tx
        self._t_idx, self._t_p, self._t_f, self._t_q, self._t_mask = tx._idx, tx._p, tx._f, tx._q, tx.mask
        self._c_idx, self._c_p = xsk.comp._idx, xsk.comp._p
        self._comp = xsk.comp
        self._frames = self.umem.frames
        self._rx_max = xsk.rx_batch.capacity
        self._tx_max = xsk.tx_batch.capacity  # publish at least this often while writing
        self._comp_hi = max(1, xsk.comp.size // 2)  # reclaim when this many frames are in flight
        self._tx_addr = -1  # frame handed out by tx_frame() and not committed yet
        self._tx_i = 0  # committed, not yet published
        self._tx_prod = tx.cached_prod  # producer index including committed frames
        self._blank = session.host_mac_bytes * 2 + BLANK_ETHERTYPE + bytes(BLANK_LEN - 14)
        self._host_pub = session.host_pub[0]
        self.rx_frames = 0
        self.tx_frames = 0
        self.blank_frames = 0
        self._blanks_owed = 0  # blank frames deferred past the application's own reply
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
        rx = self._rxr
        cons = rx.cached_cons
        prod = self._r_idx[self._r_p]
        if prod == cons:
            if timeout == 0:
                if self._f_idx[self._f_f] & XDP_RING_NEED_WAKEUP and self.xsk.need_wakeup:
                    self.xsk._wakeup_rx()
                if self._blanks_owed:
                    self._pay_blanks()
                if self._tx_i:
                    self.flush()
                return 0
            prod = self._wait_rx(timeout, cons)
            if prod == cons:
                return 0
        n = (prod - cons) & M32
        if n == 1:
            # one frame (request/response): dispatch from the descriptor, no batch copy
            q = self._r_q
            d = (cons & self._r_mask) << 1
            a = q[d]
            ln = q[d + 1] & M32
            rx.cached_prod = prod
            rx.cached_cons = cons = (cons + 1) & M32
            self._r_idx[rx._c] = cons  # after reading the descriptor; the frame stays ours
            try:
                if ln >= 34:
                    h = self.handlers.get(self.buf[a + 23])
                    if h is not None:
                        h(a, ln)
            finally:  # the frame back to the fill ring
                fill = self._fill
                fprod = fill.cached_prod
                if fill.size - ((fprod - fill.cached_cons) & M32) < 1:
                    fill.cached_cons = fill._idx[fill._c]
                if fill.size - ((fprod - fill.cached_cons) & M32) >= 1:
                    self._f_q[fprod & self._f_mask] = a
                    fprod = fill.cached_prod = (fprod + 1) & M32
                    self._f_idx[self._f_p] = fprod  # after the entry
                else:  # more frames out than the fill ring holds: keep it
                    self._frames.free(a)
        else:
            xsk = self.xsk
            n = xsk.recv_batch(self._rx_max)
            b = xsk.rx_batch
            buf = self.buf
            get = self.handlers.get
            for a, ln in zip(b.addr[:n], b.len[:n]):
                if ln < 34:
                    continue
                h = get(buf[a + 23])
                if h is not None:
                    h(a, ln)
            xsk.release()
        self.rx_frames += n
        if self._host_pub.gen_pending:
            if n == 1 and self._loop is None and self._blanks_owed < BLANKS_DEFER_MAX:
                # a request or a reply: the application answers it first (the blanks carry
                # the host's control packets, often for other flows), they go when it waits
                self._blanks_owed += 1
            else:
                self._send_blanks(n + self._blanks_owed)
                self._blanks_owed = 0
        if self._tx_i:
            self.flush()
        return n

    def _pay_blanks(self) -> None:
        """Send the blank frames deferred by single-frame polls, now that the engine is idle."""
        owed, self._blanks_owed = self._blanks_owed, 0
        if self._host_pub.gen_pending:
            self._send_blanks(owed)
            if self._tx_i:
                self.flush()

    def _wait_rx(self, timeout: float | None, cons: int) -> int:
        """Wait for the RX producer to move past `cons`; return it (== cons on timeout)."""
        xsk = self.xsk
        idx, p = self._r_idx, self._r_p
        if self._tx_i:
            self.flush()
        if self._blanks_owed:
            self._pay_blanks()
        if self._c_idx[self._c_p] != self._comp.cached_cons:
            xsk.complete()  # idle now: reclaim sent frames off the round trip's path
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.busy_poll:
            fidx, ff = self._f_idx, self._f_f
            wake = xsk.need_wakeup
            spins = 0
            while True:
                prod = idx[p]
                if prod != cons:
                    return prod
                spins += 1
                if not spins & 0x3F:
                    # only when the kernel asks (zero-copy drivers out of fill entries)
                    if wake and fidx[ff] & XDP_RING_NEED_WAKEUP:
                        xsk._wakeup_rx()
                    if not spins & 0x3FF:
                        if self._tx_i:
                            self.flush()
                        if deadline is not None and time.monotonic() >= deadline:
                            return idx[p]
        while True:
            if self._tx_i:
                self.flush()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            xsk.poll(left)
            prod = idx[p]
            if prod != cons or (deadline is not None and time.monotonic() >= deadline):
                return prod

    def _send_blanks(self, received: int) -> None:
        """XDP_GEN: one blank frame per pending control packet, bounded per batch.

        Frames straight from the allocator into TX descriptors: one slice copy per blank,
        no call per blank; flush() (at the end of the poll) publishes them."""
        pending = self._host_pub.gen_pending
        if not pending:
            return
        n = min(pending, received * 2, MAX_BLANKS_PER_BATCH)
        t = self._txr
        prod = self._tx_prod
        free = t.size - ((prod - t.cached_cons) & M32)
        if free < n:
            t.cached_cons = t._idx[t._c]
            free = t.size - ((prod - t.cached_cons) & M32)
        fr = self._frames
        top = fr.top
        if top < n:
            self.xsk.complete()
            top = fr.top
        n = min(n, free, top)
        if n <= 0:
            return
        blank = self._blank
        buf = self.buf
        stack = fr._stack
        q = self._t_q
        mask = self._t_mask
        for _ in range(n):
            top -= 1
            a = stack[top]
            buf[a:a + BLANK_LEN] = blank
            d = (prod & mask) << 1
            q[d] = a
            q[d + 1] = BLANK_LEN
            prod = (prod + 1) & M32
        fr.top = top
        self._tx_prod = prod
        self._tx_i += n
        self.blank_frames += n

    # ---- transmit ----------------------------------------------------------------------
    def tx_frame(self) -> int:
        """A UMEM offset to write one outgoing frame at (commit() it), or -1 if none is free now."""
        a = self._tx_addr
        if a >= 0:
            return a
        t = self._txr
        fr = self._frames
        top = fr.top
        if (not top or self._tx_i >= self._tx_max
                or t.size - ((self._tx_prod - t.cached_cons) & M32) <= 0):
            return self._tx_frame_slow()
        top -= 1
        fr.top = top
        a = self._tx_addr = fr._stack[top]
        return a

    def _tx_frame_slow(self) -> int:
        if self._tx_i >= self._tx_max:
            self.flush()  # a long batch: let the kernel start on it
        t = self._txr
        if t.size - ((self._tx_prod - t.cached_cons) & M32) <= 0:
            t.cached_cons = t._idx[t._c]
            if t.size - ((self._tx_prod - t.cached_cons) & M32) <= 0:
                if self._tx_i:
                    self.flush()
                self.xsk.complete()
                return -1
        fr = self._frames
        if not fr.top:
            if self._tx_i:
                self.flush()
            self.xsk.complete()
            if not fr.top:
                return -1
        fr.top -= 1
        a = self._tx_addr = fr._stack[fr.top]
        return a

    def commit(self, length: int) -> None:
        """Queue the frame tx_frame() gave, `length` bytes long; flush() sends it."""
        a = self._tx_addr
        if a < 0:
            raise EtranError("commit() without a frame from tx_frame()")
        prod = self._tx_prod
        d = (prod & self._t_mask) << 1
        q = self._t_q
        q[d] = a
        q[d + 1] = length  # len | options (0) << 32
        self._tx_prod = (prod + 1) & M32
        self._tx_i += 1
        self._tx_addr = -1

    def send(self, header: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview = b"",
             timeout: float | None = None) -> int:
        """Send one frame made of `header` and `data` now (tx_frame, copy, commit, flush in
        one call: the request/response path); waits up to `timeout` for a free frame
        like tx_frame_wait().  Returns the frame's length."""
        a = self._tx_addr
        if a < 0:
            fr = self._frames
            top = fr.top
            t = self._txr
            if top and self._tx_i < self._tx_max and t.size - ((self._tx_prod - t.cached_cons) & M32) > 0:
                top -= 1
                fr.top = top
                a = fr._stack[top]
            else:
                a = self.tx_frame_wait(timeout)
        h = len(header)
        n = h + len(data)
        buf = self.buf
        buf[a:a + h] = header
        buf[a + h:a + n] = data
        prod = self._tx_prod
        d = (prod & self._t_mask) << 1
        q = self._t_q
        q[d] = a
        q[d + 1] = n
        self._tx_prod = (prod + 1) & M32
        self._tx_i += 1
        self._tx_addr = -1
        self.flush()
        return n

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
        """Submit what was committed since the last flush: one producer store, one kick."""
        i = self._tx_i
        if not i:
            return 0
        prod = self._tx_prod
        self._txr.cached_prod = prod
        idx = self._t_idx
        idx[self._t_p] = prod  # after the descriptors (x86: stores stay in order)
        self._tx_i = 0
        xsk = self.xsk
        xsk.tx_inflight += i
        self.tx_frames += i
        if idx[self._t_f] & XDP_RING_NEED_WAKEUP or not xsk.need_wakeup:
            xsk._kick_tx()
        if xsk.tx_inflight >= self._comp_hi:
            xsk.complete()
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
        if self._tx_addr >= 0:  # a frame handed out and never committed
            self._frames.free(self._tx_addr)
            self._tx_addr = -1


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
