"""A stand-in for the kernel's half of an AF_XDP socket, over bytearrays.

`Loopback(umem)` lays out four rings the way the kernel does (same offsets as
XDP_MMAP_OFFSETS reports on Linux 6.x), gives the user side to an XskDatapath exactly
as XskSocket does, and plays the kernel on the other side of each ring:

    lo = Loopback(Umem(256))
    xsk = lo.datapath()            # the code under test, unchanged
    xsk.refill()                   # user stocks the fill ring
    lo.deliver([b"frame", ...])    # "kernel": fill ring -> frame copied -> RX ring
    xsk.recv_batch() ...           # user
    xsk.send([b"out"])             # user: TX ring
    lo.transmit()                  # "kernel": TX ring -> frames out -> completion ring

For unit tests of everything above the rings and for microbenchmarks of the hot path
without syscalls.  Not a model of the kernel's timing, drops or validation beyond the
basic descriptor checks.
"""

from __future__ import annotations

from . import abi
from .datapath import XskDatapath
from .ring import ConsumerRing, DescBatch, ProducerRing
from .umem import Umem

# Linux 6.x struct xdp_ring layout (producer, consumer, flags, desc offsets)
PRODUCER, CONSUMER, FLAGS, DESC = 0, 128, 196, 320


def ring_buffer(size: int, entry_size: int) -> bytearray:
    return bytearray(DESC + size * entry_size)


def ring_pair(size: int, entry_size: int, user_produces: bool, name: str):
    """(user side, kernel side) views of one bytearray ring."""
    buf = ring_buffer(size, entry_size)
    if user_produces:
        user = ProducerRing(buf, size, PRODUCER, CONSUMER, FLAGS, DESC, entry_size, name=name)
        kern = ConsumerRing(buf, size, PRODUCER, CONSUMER, FLAGS, DESC, entry_size, name=name + "(k)")
    else:
        user = ConsumerRing(buf, size, PRODUCER, CONSUMER, FLAGS, DESC, entry_size, name=name)
        kern = ProducerRing(buf, size, PRODUCER, CONSUMER, FLAGS, DESC, entry_size, name=name + "(k)")
    return user, kern


class Loopback:
    """The kernel side of four bytearray rings over `umem` (see the module docstring)."""

    def __init__(self, umem: Umem, rx_size: int = 2048, tx_size: int = 2048, fill_size: int = 2048,
                 comp_size: int = 2048, tx_need_wakeup: bool = True) -> None:
        self.umem = umem
        self.rx, self.k_rx = ring_pair(rx_size, abi.XDP_DESC_SIZE, False, "rx")
        self.tx, self.k_tx = ring_pair(tx_size, abi.XDP_DESC_SIZE, True, "tx")
        self.fill, self.k_fill = ring_pair(fill_size, abi.ADDR_SIZE, True, "fill")
        self.comp, self.k_comp = ring_pair(comp_size, abi.ADDR_SIZE, False, "completion")
        if tx_need_wakeup:
            self.set_flags(self.k_tx, abi.XDP_RING_NEED_WAKEUP)
        size = max(rx_size, tx_size, fill_size, comp_size)
        self._descs = DescBatch(size)
        self._addrs = memoryview(bytearray(8 * size)).cast("Q")
        self._blank_len = -1
        self.kicks = 0
        self.wakeups = 0
        self.invalid = 0

    @staticmethod
    def set_flags(ring, flags: int) -> None:
        ring._idx[ring._f] = flags

    def datapath(self, batch_size: int = 64, need_wakeup: bool = True) -> XskDatapath:
        lo = self

        class _LoopbackDatapath(XskDatapath):
            def _kick_tx(self) -> None:
                lo.kicks += 1

            def _wakeup_rx(self) -> None:
                lo.wakeups += 1

        return _LoopbackDatapath(self.umem, self.rx, self.tx, self.fill, self.comp, batch_size, need_wakeup)

    # -- kernel: receive path -------------------------------------------------------------

    def deliver(self, frames) -> int:
        """Receive `frames`: each takes an address from the fill ring, is copied to
        addr + rx_offset, and gets an RX descriptor.  Returns how many fit (limited by the
        fill ring's entries and the RX ring's room); all descriptors published at once."""
        umem, d = self.umem, self._descs
        off = umem.rx_offset
        for i, f in enumerate(frames):
            if off + len(f) > umem.frame_size:
                raise ValueError(f"frame {i} of {len(f)} bytes does not fit a frame after the headroom")
        n = min(len(frames), self.k_fill.available(), self.k_rx.free(len(frames)), d.capacity)
        n = self.k_fill.consume(self._addrs, n)
        mask = ~(umem.frame_size - 1)
        for i in range(n):
            f = frames[i]
            addr = (self._addrs[i] & mask) + off
            umem.buf[addr:addr + len(f)] = f
            d.addr[i] = addr
            d.len[i] = len(f)
            d.options[i] = 0
        self._blank_len = -1
        return self.k_rx.produce(d.raw, n)

    def deliver_blank(self, n: int, length: int = 64) -> int:
        """Like deliver() but with O(1) Python work and no data: n descriptors of `length`
        bytes at the fill ring's addresses as given (benchmarks)."""
        d = self._descs
        n = min(n, self.k_fill.available(), self.k_rx.free(n), d.capacity)
        if self._blank_len != length:
            for i in range(d.capacity):
                d.len[i] = length
            self._blank_len = length
        n = self.k_fill.consume(d.addr, n)
        return self.k_rx.produce(d.raw, n)

    # -- kernel: transmit path ------------------------------------------------------------

    def transmit(self, max_frames: int | None = None) -> list[bytes]:
        """Send what the TX ring holds: return the frames' bytes and complete their
        addresses.  A descriptor that crosses its frame counts as invalid and is dropped
        (completed without being returned), as the kernel does."""
        k_tx, d = self.k_tx, self._descs
        n = k_tx.available()
        if max_frames is not None:
            n = min(n, max_frames)
        n = min(n, self.k_comp.free(n), d.capacity)
        n = k_tx.consume(d.raw, n)
        fs = self.umem.frame_size
        out = []
        for i in range(n):
            a, ln = d.addr[i], d.len[i]
            if (a & (fs - 1)) + ln > fs or ln == 0 or a + ln > self.umem.size:
                self.invalid += 1
                continue
            out.append(self.umem.buf[a:a + ln])
        self.k_comp.produce(d.addr, n)
        return out

    def transmit_count(self) -> int:
        """Complete everything in the TX ring without reading it (benchmarks)."""
        k_tx, d = self.k_tx, self._descs
        n = min(k_tx.available(), self.k_comp.free(d.capacity), d.capacity)
        n = k_tx.consume(d.raw, n)
        return self.k_comp.produce(d.addr, n)

    def fill_level(self) -> int:
        """Addresses waiting in the fill ring."""
        return self.k_fill.available()
