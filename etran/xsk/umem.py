"""UMEM: the packet buffer area AF_XDP sockets share with the kernel, and its free frames.

A Umem is an anonymous, page-aligned mmap of `frame_count * frame_size` bytes cut into
frames ("chunks") of `frame_size` bytes, plus a FrameAllocator.  It is registered with the
kernel (XDP_UMEM_REG) by the first XskSocket that uses it; the fill and completion rings
of that registration belong to that socket.  More sockets may share the Umem
(XDP_SHARED_UMEM): on the same device and queue they also share its fill and completion
rings, elsewhere each has its own pair (Linux >= 5.10).

Frame addresses are byte offsets into the area.  A received frame's data starts
`XDP_PACKET_HEADROOM (256) + headroom` bytes into its chunk (the descriptor's addr
already points there); frames we transmit start wherever we say, normally at the chunk.

Reading and writing frames without copies: `umem.buf` is the mmap (it supports the buffer
protocol: `struct.unpack_from(fmt, umem.buf, addr)`, `umem.buf[addr:addr+n] = data`), and
`umem.view` a memoryview of it (`umem.view[addr:addr+n]` is a zero-copy view).

One thread at a time: neither the allocator nor the rings take locks.
"""

from __future__ import annotations

import ctypes
import mmap
import os

from . import abi
from .ring import FrameAllocator

PAGE_SIZE = mmap.PAGESIZE


class Umem:
    """A UMEM area of `frame_count` frames of `frame_size` bytes, with a frame allocator.

    frame_size: a power of two between 2048 and the page size (aligned chunk mode).
    headroom: extra bytes the kernel leaves before each received frame (on top of 256).
    fill_size / comp_size: sizes of the fill and completion rings made when the Umem is
    registered (defaults: half the frames each, at most 4096, a power of two).
    memfd: map this memfd (at least frame_count * frame_size bytes) instead of anonymous
        memory, e.g. one the daemon created and passed over SCM_RIGHTS.  The caller keeps
        the fd and may close it at once: the mapping holds the memory.
    shareable: create a memfd for the area (`umem.fd`, closed by close()) so another
        process can map the same frames with Umem(..., memfd=fd).
    """

    def __init__(self, frame_count: int = 4096, frame_size: int = 2048, *, headroom: int = 0,
                 fill_size: int | None = None, comp_size: int | None = None, memfd: int | None = None,
                 shareable: bool = False) -> None:
        if frame_size < abi.MIN_CHUNK_SIZE or frame_size > PAGE_SIZE or frame_size & (frame_size - 1):
            raise ValueError(f"frame_size must be a power of two in [{abi.MIN_CHUNK_SIZE}, {PAGE_SIZE}], "
                             f"got {frame_size}")
        if frame_count <= 0:
            raise ValueError("a UMEM needs at least one frame")
        if headroom < 0 or headroom + abi.XDP_PACKET_HEADROOM >= frame_size:
            raise ValueError(f"headroom {headroom} leaves no room in a {frame_size}-byte frame")
        default_ring = min(4096, _pow2_floor(max(frame_count // 2, 1)))
        self.frame_count = frame_count
        self.frame_size = frame_size
        self.headroom = headroom
        self.fill_size = fill_size or default_ring
        self.comp_size = comp_size or default_ring
        for name, v in (("fill_size", self.fill_size), ("comp_size", self.comp_size)):
            if v & (v - 1):
                raise ValueError(f"{name} must be a power of two, got {v}")
        self.size = frame_count * frame_size
        populate = getattr(mmap, "MAP_POPULATE", 0)
        self.fd = -1  # the memfd this Umem made (shareable=True) and closes
        if memfd is None and shareable:
            self.fd = memfd = os.memfd_create("etran-umem", os.MFD_CLOEXEC)
            os.ftruncate(memfd, self.size)
        if memfd is not None:
            have = os.fstat(memfd).st_size
            if have < self.size:
                raise ValueError(f"the UMEM memfd holds {have} bytes, {frame_count} frames of {frame_size} "
                                 f"need {self.size}")
            self.buf = mmap.mmap(memfd, self.size, mmap.MAP_SHARED | populate, mmap.PROT_READ | mmap.PROT_WRITE)
        else:
            self.buf = mmap.mmap(-1, self.size, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS | populate,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        cbuf = ctypes.c_char.from_buffer(self.buf)
        self.address = ctypes.addressof(cbuf)  # page aligned, as XDP_UMEM_REG requires
        del cbuf  # drop the export so the mmap can be closed later
        self.view = memoryview(self.buf)
        self.frames = FrameAllocator(frame_count, frame_size)
        # Registration state, set by the first socket (see XskSocket).
        self.bind_flags = 0  # of the socket that registered it; sharers inherit them
        self.sockets: list = []  # live XskSockets using this UMEM
        self._closed = False

    # -- registration (called by XskSocket) --------------------------------------------

    def reg_bytes(self) -> bytes:
        """struct xdp_umem_reg for XDP_UMEM_REG."""
        return abi.UMEM_REG.pack(self.address, self.size, self.frame_size, self.headroom, 0, 0)

    @property
    def registered(self) -> bool:
        """True while a socket holds the kernel registration (the kernel drops it with the last one)."""
        return any(not s.closed for s in self.sockets)

    def holder(self):
        """A live socket of this UMEM, whose fd names the registration for XDP_SHARED_UMEM."""
        for s in self.sockets:
            if not s.closed:
                return s
        raise ValueError("no socket holds this UMEM's registration")

    # -- frames ---------------------------------------------------------------------------

    @property
    def rx_offset(self) -> int:
        """Where received data starts within a chunk (256 + headroom)."""
        return abi.XDP_PACKET_HEADROOM + self.headroom

    def frame(self, addr: int, length: int | None = None) -> memoryview:
        """A zero-copy view of `length` bytes at `addr` (default: to the end of its frame)."""
        if length is None:
            length = self.frame_size - (addr & (self.frame_size - 1))
        return self.view[addr:addr + length]

    def read(self, addr: int, length: int) -> bytes:
        """A copy of `length` bytes at `addr`."""
        return self.buf[addr:addr + length]

    def write(self, addr: int, data) -> int:
        """Copy `data` into the UMEM at `addr`; return its length."""
        n = len(data)
        if (addr & (self.frame_size - 1)) + n > self.frame_size:
            raise ValueError(f"{n} bytes at {addr:#x} do not fit in a {self.frame_size}-byte frame")
        self.buf[addr:addr + n] = data
        return n

    @property
    def free_frames(self) -> int:
        return self.frames.top

    def close(self) -> None:
        """Unmap the area.  The kernel keeps its own reference while sockets use it."""
        if self._closed:
            return
        if any(not s.closed for s in self.sockets):
            raise RuntimeError("close the sockets using this UMEM first")
        self._closed = True
        self.frames.close()
        self.view.release()
        self.buf.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Umem":
        return self

    def __exit__(self, *exc) -> None:
        for s in list(self.sockets):
            s.close()
        self.close()

    def __repr__(self) -> str:
        return (f"Umem({self.frame_count} x {self.frame_size} B, free={self.frames.top}, "
                f"registered={self.registered})")


def _pow2_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)
