"""AF_XDP rings, descriptor batches and the frame allocator, over any writable buffer.

Nothing here talks to the kernel: a ring is a view over a buffer laid out as the kernel
lays out its rings (producer, consumer and flags words at the offsets XDP_MMAP_OFFSETS
reports, then `size` entries).  XskSocket hands these classes its mmaps; the unit tests
hand them a bytearray.

Speed.  Every operation here works on a whole batch with O(1) Python operations: entries
move between a ring, a DescBatch and the allocator's free stack by memoryview slice
assignment, which CPython does with memcpy (or a strided C loop), never a Python loop.
The producer index is read once per batch and the consumer (or producer) index written
once per batch.  No operation allocates a Python object per entry.

Memory ordering.  The kernel side uses acquire/release (smp_load_acquire /
smp_store_release).  We rely on x86-64's TSO: loads are not reordered with older loads
and stores not with older stores, and every access below is a separate C call through a
memoryview, so the compiler cannot reorder them either.  So "read producer, then read
entries" and "write entries, then write producer" need no fence on x86-64.  On weakly
ordered CPUs (arm64) this module would need real barriers; it warns there.
"""

from __future__ import annotations

import array
import platform
import warnings

from .abi import ADDR_SIZE, XDP_DESC_SIZE, XDP_RING_NEED_WAKEUP

M32 = 0xFFFFFFFF

if platform.machine() not in ("x86_64", "AMD64", "i686", "i386"):  # pragma: no cover
    warnings.warn(
        "etran.xsk assumes x86 (TSO) memory ordering for AF_XDP ring indices; "
        f"on {platform.machine()} ring updates may be observed out of order",
        RuntimeWarning,
        stacklevel=2,
    )


def _check_size(size: int) -> None:
    if size <= 0 or size & (size - 1):
        raise ValueError(f"ring size must be a power of two, got {size}")


class DescBatch:
    """A preallocated array of `capacity` xdp_desc entries, reused for every batch.

    `addr[i]`, `len[i]`, `options[i]` read or write descriptor i (memoryviews over one
    array, so indexing allocates nothing but the int); `count` is how many entries the
    last receive or reserve filled.  `buf` is the same memory as an array('Q') of u64
    words (two per descriptor: addr, then len | options << 32) and `raw` a memoryview of
    it, which is how rings copy it in one go.

    Iterating: `for a, ln in zip(b.addr[:n], b.len[:n])` is the cheapest Python loop over
    a batch (about half the cost of indexing b.addr[i], b.len[i]).
    """

    __slots__ = ("capacity", "count", "buf", "raw", "addr", "len", "options", "raw_n")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("a batch needs room for at least one descriptor")
        self.capacity = capacity
        self.count = 0
        # An array rather than a bytearray: array's extended slicing (buf[0:2n:2]) copies
        # every other word several times faster than a strided memoryview assignment,
        # and that is how addresses move between 16-byte descriptors and 8-byte
        # fill/completion entries.
        self.buf = array.array("Q", bytes(capacity * XDP_DESC_SIZE))
        self.raw = memoryview(self.buf)
        self.addr = self.raw[0::2]
        words = self.raw.cast("B").cast("I")
        self.len = words[2::4]
        self.options = words[3::4]
        # raw_n[k] is raw[0:2k], made once: indexing a list is cheaper than slicing a
        # memoryview on every batch.
        self.raw_n = [self.raw[0:2 * k] for k in range(capacity + 1)]

    def __len__(self) -> int:
        return self.count

    def set_len(self, length: int, n: int | None = None) -> None:
        """Set len of the first `n` (default count) descriptors to `length` in one copy."""
        if n is None:
            n = self.count
        self.len[0:n] = array.array("I", (length,)) * n

    def __repr__(self) -> str:
        return f"DescBatch(count={self.count}, capacity={self.capacity})"


class Ring:
    """Common part of the four rings: indices, flags word and the entry array.

    `buf` is the ring's memory (an mmap of the socket, or a bytearray in tests); the
    offsets are the ones struct xdp_ring_offset reports.  `entry_size` is 16 for RX/TX
    (xdp_desc) and 8 for fill/completion (u64 address).
    """

    __slots__ = ("size", "mask", "words", "cached_prod", "cached_cons", "_buf", "_mv", "_idx",
                 "_p", "_c", "_f", "_q", "name")

    def __init__(self, buf, size: int, producer: int, consumer: int, flags: int, desc: int,
                 entry_size: int, name: str = "ring") -> None:
        _check_size(size)
        if entry_size not in (ADDR_SIZE, XDP_DESC_SIZE):
            raise ValueError(f"entry size must be 8 or 16, got {entry_size}")
        for off in (producer, consumer, flags):
            if off % 4 or off + 4 > desc:
                raise ValueError(f"bad ring offsets: producer {producer}, consumer {consumer}, "
                                 f"flags {flags}, desc {desc}")
        if desc % 8:
            raise ValueError(f"ring descriptors must be 8-byte aligned, offset {desc}")
        self.name = name
        self.size = size
        self.mask = size - 1
        self.words = entry_size // 8
        self._buf = buf
        self._mv = memoryview(buf)
        if len(self._mv) < desc + size * entry_size:
            raise ValueError(f"{name}: buffer of {len(self._mv)} bytes is too small for {size} entries")
        self._idx = self._mv[:desc].cast("I")
        self._p = producer // 4
        self._c = consumer // 4
        self._f = flags // 4
        self._q = self._mv[desc:desc + size * entry_size].cast("Q")
        self.cached_prod = self._idx[self._p]
        self.cached_cons = self._idx[self._c]

    # -- shared words -----------------------------------------------------------------

    @property
    def producer(self) -> int:
        """The producer index as it is in shared memory now."""
        return self._idx[self._p]

    @property
    def consumer(self) -> int:
        """The consumer index as it is in shared memory now."""
        return self._idx[self._c]

    @property
    def flags(self) -> int:
        return self._idx[self._f]

    def needs_wakeup(self) -> bool:
        """True when the kernel asks for a syscall (XDP_RING_NEED_WAKEUP) to make progress."""
        return bool(self._idx[self._f] & XDP_RING_NEED_WAKEUP)

    @property
    def entries(self) -> memoryview:
        """The entry array as u64 words (one per address, two per descriptor)."""
        return self._q

    def close(self) -> None:
        """Release the views so the underlying mmap can be closed."""
        for name in ("_q", "_idx", "_mv"):
            v = getattr(self, name, None)
            if v is not None:
                v.release()
        self._buf = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name}, size={self.size}, prod={self.producer}, "
                f"cons={self.consumer}, flags={self.flags:#x})")


class ProducerRing(Ring):
    """A ring user space produces into: the fill ring and the TX ring."""

    __slots__ = ()

    def free(self, want: int = 1) -> int:
        """Free entries; reads the kernel's consumer only when the cached view has fewer than `want`."""
        free = self.size - ((self.cached_prod - self.cached_cons) & M32)
        if free >= want:
            return free
        self.cached_cons = self._idx[self._c]
        return self.size - ((self.cached_prod - self.cached_cons) & M32)

    def outstanding(self) -> int:
        """Entries produced that the kernel has not consumed yet (reads the consumer)."""
        self.cached_cons = self._idx[self._c]
        return (self.cached_prod - self.cached_cons) & M32

    def produce(self, src: memoryview, n: int, start: int = 0) -> int:
        """Copy up to `n` entries from `src` (u64 words, entry i at src[(start+i)*words...])
        into the ring and publish them with one producer store; return how many fit."""
        free = self.size - ((self.cached_prod - self.cached_cons) & M32)
        if free < n:
            self.cached_cons = self._idx[self._c]
            free = self.size - ((self.cached_prod - self.cached_cons) & M32)
            if free < n:
                n = free
        if n <= 0:
            return 0
        w = self.words
        prod = self.cached_prod
        pos = prod & self.mask
        first = self.size - pos
        q = self._q
        s = start * w
        if n <= first:
            q[pos * w:(pos + n) * w] = src[s:s + n * w]
        else:
            q[pos * w:] = src[s:s + first * w]
            q[:(n - first) * w] = src[s + first * w:s + n * w]
        prod = (prod + n) & M32
        self.cached_prod = prod
        self._idx[self._p] = prod  # publish after the entries (x86 TSO: store-store ordered)
        return n


class ConsumerRing(Ring):
    """A ring user space consumes from: the RX ring and the completion ring."""

    __slots__ = ()

    def available(self) -> int:
        """Entries ready to consume now (reads the producer)."""
        self.cached_prod = self._idx[self._p]
        return (self.cached_prod - self.cached_cons) & M32

    def consume(self, dst: memoryview, n: int, start: int = 0) -> int:
        """Copy up to `n` ready entries into `dst` (u64 words, from entry `start`) and
        release them to the kernel with one consumer store; return how many."""
        avail = (self.cached_prod - self.cached_cons) & M32
        if avail < n:
            self.cached_prod = self._idx[self._p]  # read the producer once per batch
            avail = (self.cached_prod - self.cached_cons) & M32
            if avail < n:
                n = avail
        if n <= 0:
            return 0
        w = self.words
        cons = self.cached_cons
        pos = cons & self.mask
        first = self.size - pos
        q = self._q
        d = start * w
        if n <= first:
            dst[d:d + n * w] = q[pos * w:(pos + n) * w]
        else:
            dst[d:d + first * w] = q[pos * w:]
            dst[d + first * w:d + n * w] = q[:(n - first) * w]
        cons = (cons + n) & M32
        self.cached_cons = cons
        self._idx[self._c] = cons  # release after reading the entries (x86: load-store ordered)
        return n


class FrameAllocator:
    """Free frames of a UMEM as a preallocated stack of addresses (LIFO, so hot frames stay in cache).

    `alloc_into`/`free_from` move whole batches with one slice copy.  The allocator does
    not check double frees beyond overflow (that would cost a per-frame lookup).
    """

    __slots__ = ("frame_size", "frame_count", "top", "_stack", "_sv", "_mask")

    def __init__(self, frame_count: int, frame_size: int, addrs=None) -> None:
        self.frame_size = frame_size
        self.frame_count = frame_count
        self._mask = ~(frame_size - 1) if frame_size & (frame_size - 1) == 0 else None
        if addrs is None:
            # Hand out low addresses first: the stack pops from the top.
            addrs = range((frame_count - 1) * frame_size, -1, -frame_size)
        self._stack = array.array("Q", addrs)
        if len(self._stack) > frame_count:
            raise ValueError("more free frames than frames")
        self.top = len(self._stack)
        self._stack.extend([0] * (frame_count - self.top))  # capacity for every frame
        self._sv = memoryview(self._stack)

    @property
    def free_count(self) -> int:
        return self.top

    def reset(self) -> None:
        """Every frame free again (when no socket holds any)."""
        fs = self.frame_size
        for i in range(self.frame_count):
            self._stack[i] = (self.frame_count - 1 - i) * fs
        self.top = self.frame_count

    def alloc(self) -> int:
        """One frame address; raises MemoryError when none is free."""
        if self.top == 0:
            raise MemoryError("no free UMEM frame (reclaim TX completions or release RX frames)")
        self.top -= 1
        return self._stack[self.top]

    def free(self, addr: int) -> None:
        """Return one frame; any address inside the frame will do (it is rounded down)."""
        if self.top >= self.frame_count:
            raise ValueError("freeing more frames than the UMEM has (double free?)")
        if self._mask is not None:
            addr &= self._mask
        else:
            addr -= addr % self.frame_size
        self._stack[self.top] = addr
        self.top += 1

    def alloc_into(self, dst: memoryview, n: int, start: int = 0) -> int:
        """Pop up to `n` frame addresses into dst[start:start+n]; return how many."""
        top = self.top
        if n > top:
            n = top
        if n <= 0:
            return 0
        dst[start:start + n] = self._sv[top - n:top]
        self.top = top - n
        return n

    def free_from(self, src: memoryview, n: int, start: int = 0) -> None:
        """Push src[start:start+n] (frame base addresses) back onto the free stack."""
        top = self.top
        if top + n > self.frame_count:
            raise ValueError("freeing more frames than the UMEM has (double free?)")
        self._sv[top:top + n] = src[start:start + n]
        self.top = top + n

    def to_ring(self, ring: ProducerRing, n: int) -> int:
        """Move up to `n` free frames straight into a producer ring (the fill ring); return how many."""
        top = self.top
        if n > top:
            n = top
        n = min(n, ring.free(n))
        if n <= 0:
            return 0
        n = ring.produce(self._sv, n, top - n)
        self.top = top - n
        return n

    def from_ring(self, ring: ConsumerRing, n: int | None = None) -> int:
        """Move up to `n` (default: all ready) addresses straight from a consumer ring (the
        completion ring) onto the free stack; return how many."""
        room = self.frame_count - self.top
        if n is None or n > room:
            n = room
        n = ring.consume(self._sv, n, self.top)
        self.top += n
        return n

    @property
    def room(self) -> int:
        """How many frames can still be freed (frame_count - free_count)."""
        return self.frame_count - self.top

    def close(self) -> None:
        self._sv.release()
