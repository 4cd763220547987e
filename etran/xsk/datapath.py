"""The hot path of an AF_XDP socket, without the socket: four rings, a UMEM, two batches.

XskDatapath is everything XskSocket does per packet, written against Ring objects and a
Umem only, so it runs the same over the kernel's mmaps (XskSocket) and over bytearrays
(etran.xsk.loopback, for unit tests and benchmarks).  The only kernel contact is the
`_kick_tx` / `_wakeup_rx` hooks, which XskSocket implements with syscalls.

Receive::

    n = xsk.recv_batch()                 # up to batch_size descriptors, one ring access
    rx = xsk.rx_batch                    # DescBatch: rx.addr[i], rx.len[i]
    for addr, length in zip(rx.addr[:n], rx.len[:n]):
        handle(umem.view[addr:addr + length])    # zero-copy view, or parse in place with
                                                 # struct.unpack_from(fmt, umem.buf, addr)
    xsk.release()                        # the whole batch back to the fill ring, one store

Send::

    n = xsk.reserve(64)                  # frames from the allocator + room in the TX ring
    tx = xsk.tx_batch
    for i in range(n):
        tx.len[i] = umem.write(tx.addr[i], frame_bytes)      # or build the frame in place
    xsk.submit(n)                        # into the TX ring in one copy, kick if asked

Completed TX frames go back to the allocator in batches by complete(), which reserve()
calls whenever the completion ring has entries (a full completion ring stops TX).
`send(frames)` and `recv_frames()` are the convenient, allocating forms.  Per batch the
hot path costs O(1) Python operations plus memcpy; per packet, only what the caller
does with the frame (see etran.xsk.bench for the figures).
"""

from __future__ import annotations

import time

from .abi import XDP_RING_NEED_WAKEUP
from .ring import ConsumerRing, DescBatch, ProducerRing
from .umem import Umem

M32 = 0xFFFFFFFF


class XskDatapath:
    """Batch receive and send over an AF_XDP socket's rings.

    rx / tx: the RX and TX rings (either may be None); fill / comp: the UMEM's fill and
    completion rings as this socket sees them; need_wakeup: only make syscalls when a
    ring's XDP_RING_NEED_WAKEUP flag asks for one.
    """

    def __init__(self, umem: Umem, rx: ConsumerRing | None, tx: ProducerRing | None, fill: ProducerRing,
                 comp: ConsumerRing, batch_size: int = 64, need_wakeup: bool = True) -> None:
        self._init_datapath(umem, rx, tx, fill, comp, batch_size, need_wakeup)

    def _init_datapath(self, umem, rx, tx, fill, comp, batch_size, need_wakeup) -> None:
        self.umem = umem
        self.rx = rx
        self.tx = tx
        self.fill = fill
        self.comp = comp
        self.need_wakeup = need_wakeup
        self.batch_size = batch_size
        if not hasattr(self, "rx_batch"):
            self.rx_batch = DescBatch(batch_size)
            self.tx_batch = DescBatch(batch_size)
        self.tx_inflight = 0  # submitted and not yet reclaimed from the completion ring
        self.tx_dropped = 0  # frames the kernel consumed but the device dropped (copy mode)

    # -- kernel hooks (XskSocket overrides) -----------------------------------------------

    def _kick_tx(self) -> None:
        """Make the kernel look at the TX ring (sendto)."""

    def _wakeup_rx(self) -> None:
        """Make the kernel look at the fill ring (recvfrom/poll)."""

    # -- receive --------------------------------------------------------------------------

    # The five hot methods below (recv_batch, release, reserve, submit, complete) inline
    # Ring.consume / Ring.produce / FrameAllocator: the same index arithmetic, without the
    # nested Python calls (a call costs ~40 ns, a batch is a few hundred ns of work).
    # Each reads the other side's index once per batch and writes its own once.

    def recv_batch(self, max_frames: int | None = None) -> int:
        """Take up to `max_frames` (default batch_size) received descriptors into rx_batch;
        return how many.  Call release() when done with their frames."""
        b = self.rx_batch
        n = b.capacity
        if max_frames is not None and max_frames < n:
            n = max_frames
        r = self.rx
        if r is None:
            raise ValueError("this socket has no RX ring (rx_size=0)")
        cons = r.cached_cons
        if (r.cached_prod - cons) & M32 < n:
            prod = r._idx[r._p]  # the kernel's producer, once per batch
            r.cached_prod = prod
            avail = (prod - cons) & M32
            if avail < n:
                n = avail
                if not n:
                    b.count = 0
                    f = self.fill
                    if self.need_wakeup and f._idx[f._f] & XDP_RING_NEED_WAKEUP:
                        self._wakeup_rx()
                    return 0
        pos = cons & r.mask
        end = pos + n
        q = r._q
        raw = b.raw
        if end <= r.size:
            raw[0:2 * n] = q[2 * pos:2 * end]
        else:
            first = r.size - pos
            raw[0:2 * first] = q[2 * pos:]
            raw[2 * first:2 * n] = q[0:2 * (n - first)]
        cons = (cons + n) & M32
        r.cached_cons = cons
        r._idx[r._c] = cons  # after reading the descriptors (x86: loads before the store)
        b.count = n
        return n

    def release(self) -> int:
        """Give every frame of the last rx_batch back to the fill ring (one producer store)."""
        b = self.rx_batch
        n = b.count
        if not n:
            return 0
        f = self.fill
        prod = f.cached_prod
        if f.size - ((prod - f.cached_cons) & M32) < n:
            f.cached_cons = f._idx[f._c]
            if f.size - ((prod - f.cached_cons) & M32) < n:
                return self._release_slow(n)
        pos = prod & f.mask
        end = pos + n
        q = f._q
        buf = b.buf
        if end <= f.size:
            q[pos:end] = buf[0:2 * n:2]  # the addresses of the descriptors
        else:
            first = f.size - pos
            q[pos:] = buf[0:2 * first:2]
            q[0:n - first] = buf[2 * first:2 * n:2]
        prod = (prod + n) & M32
        f.cached_prod = prod
        f._idx[f._p] = prod  # after the entries (x86: stores stay in order)
        b.count = 0
        return n

    def _release_slow(self, n: int) -> int:
        # The fill ring cannot take them all (more frames in flight than it holds): what
        # does not fit goes to the allocator.
        b = self.rx_batch
        done = self.fill.produce(b.addr, n)
        frames = self.umem.frames
        for i in range(done, n):
            frames.free(b.addr[i])
        b.count = 0
        return n

    def refill(self, n: int | None = None) -> int:
        """Move up to `n` free frames (default: as many as fit) from the allocator into the
        fill ring, e.g. after received frames were kept or forwarded instead of released."""
        if n is None:
            n = self.fill.size
        return self.umem.frames.to_ring(self.fill, n)

    def recv_into(self, buffer, lengths, stride: int | None = None, max_frames: int | None = None) -> int:
        """Receive a batch: copy frame i to buffer[i*stride:] and its length to lengths[i],
        release the frames, return the count.  `stride` defaults to the frame size; a frame
        longer than the stride is truncated (lengths[i] keeps its real length)."""
        if stride is None:
            stride = self.umem.frame_size
        room = min(len(lengths), len(buffer) // stride)
        if max_frames is None or max_frames > room:
            max_frames = room
        n = self.recv_batch(max_frames)
        if not n:
            return 0
        b = self.rx_batch
        addr, lens, buf = b.addr, b.len, self.umem.buf
        with memoryview(buffer) as dst:
            off = 0
            for i in range(n):
                a = addr[i]
                ln = lens[i]
                lengths[i] = ln
                if ln > stride:
                    ln = stride
                dst[off:off + ln] = buf[a:a + ln]
                off += stride
        self.release()
        return n

    def recv_frames(self, max_frames: int | None = None) -> list[bytes]:
        """Receive a batch as a list of bytes copies and release the frames (allocates)."""
        n = self.recv_batch(max_frames)
        if not n:
            return []
        b = self.rx_batch
        buf = self.umem.buf
        out = [buf[a:a + ln] for a, ln in zip(b.addr[:n], b.len[:n])]
        self.release()
        return out

    # -- transmit -------------------------------------------------------------------------

    def reserve(self, n: int | None = None) -> int:
        """Take up to `n` (default batch_size) free frames and TX slots into tx_batch
        (tx_batch.addr[i] is set; write the frames, set tx_batch.len[i]); return how many.
        Frames reserved earlier and not submitted go back first."""
        b = self.tx_batch
        if b.count:
            self._unreserve(0)
        if n is None or n > b.capacity:
            n = b.capacity
        t = self.tx
        if t is None:
            raise ValueError("this socket has no TX ring (tx_size=0)")
        if t.size - ((t.cached_prod - t.cached_cons) & M32) < n:
            t.cached_cons = t._idx[t._c]
            free = t.size - ((t.cached_prod - t.cached_cons) & M32)
            if free < n:
                n = free
        c = self.comp
        if c._idx[c._p] != c.cached_cons:  # reclaim finished frames first: TX stalls
            self.complete()                  # once the completion ring is full
        fr = self.umem.frames
        top = fr.top
        if top < n:
            n = top
        if n <= 0:
            return 0
        b.buf[0:2 * n:2] = fr._stack[top - n:top]  # addresses into the descriptors
        fr.top = top - n
        b.count = n
        return n

    def submit(self, n: int | None = None) -> int:
        """Put the first `n` (default all) reserved descriptors of tx_batch into the TX ring
        with one producer store, free the other reserved frames, kick the kernel if it
        asks; return n."""
        b = self.tx_batch
        count = b.count
        if n is None or n > count:
            n = count
        if n < count:
            self._unreserve(n)
        if not n:
            return 0
        t = self.tx
        prod = t.cached_prod
        if t.size - ((prod - t.cached_cons) & M32) < n:  # only if the ring was used since reserve()
            return self._submit_slow(n)
        pos = prod & t.mask
        end = pos + n
        q = t._q
        if end <= t.size:
            q[2 * pos:2 * end] = b.raw_n[n]
        else:
            first = t.size - pos
            raw = b.raw
            q[2 * pos:] = raw[0:2 * first]
            q[0:2 * (n - first)] = raw[2 * first:2 * n]
        prod = (prod + n) & M32
        t.cached_prod = prod
        t._idx[t._p] = prod  # after the descriptors (x86: stores stay in order)
        b.count = 0
        self.tx_inflight += n
        if not self.need_wakeup or t._idx[t._f] & XDP_RING_NEED_WAKEUP:
            self._kick_tx()
        return n

    def _submit_slow(self, n: int) -> int:
        b = self.tx_batch
        done = self.tx.produce(b.raw, n)
        if done < n:
            self.umem.frames.free_from(b.addr, n - done, done)
        b.count = 0
        self.tx_inflight += done
        self.kick()
        return done

    def _unreserve(self, keep: int) -> None:
        b = self.tx_batch
        self.umem.frames.free_from(b.addr, b.count - keep, keep)
        b.count = keep

    def send(self, frames) -> int:
        """Copy each frame (bytes-like) into the UMEM and send them in batches; return how
        many went into the TX ring (fewer when the ring or the UMEM stays full)."""
        total = len(frames)
        sent = 0
        buf = self.umem.buf
        fsize = self.umem.frame_size
        b = self.tx_batch
        addr, lens = b.addr, b.len
        while sent < total:
            n = self.reserve(total - sent)
            if not n:
                self.kick()
                self.complete()
                n = self.reserve(total - sent)
                if not n:
                    break
            for i in range(n):
                f = frames[sent + i]
                ln = len(f)
                if ln > fsize:
                    self._unreserve(0)
                    raise ValueError(f"frame {sent + i} is {ln} bytes, more than a {fsize}-byte UMEM frame")
                a = addr[i]
                buf[a:a + ln] = f
                lens[i] = ln
            sent += self.submit(n)
        return sent

    def complete(self) -> int:
        """Move finished TX frames from the completion ring to the free list; return how many.

        Addresses come back exactly as they were submitted.  Frames from reserve() are
        chunk-aligned; a received frame transmitted in place (its addr points 256 bytes
        into the chunk) would re-enter the free list with that offset, so give such frames
        back with umem.frames.free(addr), which rounds down, instead."""
        c = self.comp
        prod = c._idx[c._p]  # the kernel's producer, once per batch
        cons = c.cached_cons
        n = (prod - cons) & M32
        if not n:
            return 0
        c.cached_prod = prod
        fr = self.umem.frames
        top = fr.top
        if n > fr.frame_count - top:
            raise RuntimeError("completion ring returned more frames than are missing (UMEM accounting broken)")
        pos = cons & c.mask
        end = pos + n
        q = c._q
        sv = fr._sv
        if end <= c.size:
            sv[top:top + n] = q[pos:end]
        else:
            first = c.size - pos
            sv[top:top + first] = q[pos:]
            sv[top + first:top + n] = q[0:n - first]
        fr.top = top + n
        cons = (cons + n) & M32
        c.cached_cons = cons
        c._idx[c._c] = cons
        self.tx_inflight -= n
        return n

    def kick(self) -> None:
        """Have the kernel process the TX ring, if it asks for a syscall (or always
        without need_wakeup)."""
        if self.need_wakeup and not self.tx.needs_wakeup():
            return
        self._kick_tx()

    def tx_pending(self) -> int:
        """Descriptors in the TX ring the kernel has not taken yet."""
        return self.tx.outstanding()

    def flush(self, timeout: float = 1.0) -> bool:
        """Kick and reclaim until every frame this socket submitted has completed (bounded
        by `timeout` seconds); True if all did.  With a completion ring shared between
        sockets, completions count for whichever socket reclaims them."""
        deadline = time.monotonic() + timeout
        while True:
            self.complete()
            if self.tx_inflight <= 0:
                return True
            if time.monotonic() > deadline:
                return False
            if self.tx.outstanding():
                self._kick_tx()
            else:
                time.sleep(0.0001)
