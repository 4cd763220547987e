"""XskSocket: an AF_XDP socket in pure Python (ctypes for bind, mmap for the rings).

The per-packet API (recv_batch/release, reserve/submit, send, complete) is XskDatapath's
(datapath.py); this module creates, binds and maps the socket and makes the syscalls the
rings ask for.  The socket's network namespace is fixed when it is created: pass
`netns=` (or create it while the thread is inside the namespace) and name the interface
as it is called there.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import errno
import math
import mmap
import os
import select
import socket
import time

from .. import netns as _netns
from ..errors import EtranError, PrivilegeError
from . import abi
from .datapath import XskDatapath
from .ring import ConsumerRing, ProducerRing
from .umem import Umem

_FD_SETSIZE = 1024                                  # select(2) takes descriptors below this
_SELECTABLE = select.POLLIN | select.POLLOUT
_PRECISE_WAIT = 0.1                                 # s: shorter waits are timed to the microsecond

_libc = ctypes.CDLL(None, use_errno=True)
_libc.bind.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
_libc.bind.restype = ctypes.c_int

MODES = ("auto", "copy", "zerocopy")

# SOL_SOCKET options for busy polling (asm-generic/socket.h)
SO_BUSY_POLL = 46
SO_PREFER_BUSY_POLL = 69
SO_BUSY_POLL_BUDGET = 70

# errors a TX kick may return that only mean "try again later" (libxdp ignores the same)
_KICK_TRANSIENT = frozenset((errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN))
_DONTWAIT = socket.MSG_DONTWAIT

# (netns inode, ifindex, queue) -> when this process last closed a socket bound there
_recently_closed: dict[tuple[int, int, int], float] = {}
_REBIND_WAIT_S = 0.5

XskStatistics = collections.namedtuple("XskStatistics", abi.STATISTICS_FIELDS)
XskStatistics.__doc__ = "Kernel counters of one AF_XDP socket (getsockopt XDP_STATISTICS)."


class XskError(EtranError):
    """An AF_XDP operation failed; the message says which and why."""


class _Mapped:
    """A ring plus the mmap behind it, reference counted (sockets sharing one queue
    share the owner's fill and completion rings)."""

    __slots__ = ("ring", "mm", "refs")

    def __init__(self, ring, mm) -> None:
        self.ring = ring
        self.mm = mm
        self.refs = 1

    def put(self) -> None:
        self.refs -= 1
        if self.refs == 0:
            self.ring.close()
            self.mm.close()


def _netns_id() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def resolve_ifindex(interface: str | int, netns: str | None = None) -> int:
    """The ifindex of `interface` in this thread's network namespace (`netns` only names
    it in the error message)."""
    if isinstance(interface, int):
        if interface <= 0:
            raise XskError(f"bad interface index {interface}")
        return interface
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        where = f"network namespace {netns!r}" if netns else "this thread's network namespace"
        raise XskError(f"no network interface named {interface!r} in {where}; check `ip link` there, "
                       "and pass netns= for an interface inside a namespace") from None


class XskSocket(XskDatapath):
    """An AF_XDP socket bound to one queue of one interface.

    interface: name or ifindex, as seen in `netns` (default: this thread's namespace).
    queue_id: the device queue to bind.
    umem: a Umem to share (XDP_SHARED_UMEM) or to register; None makes a private one.
    mode: "copy" (XDP_COPY), "zerocopy" (XDP_ZEROCOPY, fails if the driver cannot) or
        "auto" (zero-copy if possible, else copy).  Sockets sharing a registered Umem
        inherit its mode and need_wakeup (the kernel forbids flags on shared binds).
    need_wakeup: bind with XDP_USE_NEED_WAKEUP; syscalls then happen only when a ring's
        flags ask for one.
    rx_size, tx_size: ring sizes (powers of two; 0 leaves the ring out).
    fill_size, comp_size: this socket's own fill/completion rings when it needs them
        (default: the Umem's sizes).
    batch_size: capacity of the reusable rx_batch / tx_batch.
    prefill: frames put into the fill ring at bind (default: as many as fit, keeping
        half the free frames for TX when there is a TX ring).
    """

    def __init__(self, interface: str | int, queue_id: int = 0, *, umem: Umem | None = None,
                 mode: str = "auto", need_wakeup: bool = True, rx_size: int = 2048,
                 tx_size: int = 2048, fill_size: int | None = None, comp_size: int | None = None,
                 batch_size: int = 64, netns: str | None = None, prefill: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not rx_size and not tx_size:
            raise ValueError("an AF_XDP socket needs an RX ring, a TX ring or both")
        for name, v in (("rx_size", rx_size), ("tx_size", tx_size)):
            if v < 0 or v & (v - 1):
                raise ValueError(f"{name} must be 0 or a power of two, got {v}")
        self.closed = True  # until fully set up
        self.queue_id = queue_id
        self.netns = netns
        self.requested_mode = mode
        self._own_umem = umem is None
        self.umem = umem if umem is not None else Umem()
        if self.umem.closed:
            raise ValueError("that Umem is closed")
        self._init_datapath(self.umem, None, None, None, None, batch_size, need_wakeup)
        self._maps: list[_Mapped] = []
        self._fill_m: _Mapped | None = None
        self._comp_m: _Mapped | None = None
        self._sock: socket.socket | None = None
        self.ifname = str(interface)
        self.ifindex = 0
        self._bound = False
        try:
            with _netns.enter(netns):
                self.ifindex = resolve_ifindex(interface, netns)
                self.ifname = interface if isinstance(interface, str) else _ifname(interface)
                self._ns_id = _netns_id()
                self._sock = _new_socket()
                self._setup(rx_size, tx_size, fill_size, comp_size, mode, need_wakeup)
        except BaseException:
            self._teardown()
            if self._own_umem:
                self.umem.close()
            raise
        self.closed = False
        self.umem.sockets.append(self)
        n = prefill
        if self.rx is not None and self._fill_m is not None and self._fill_m.refs == 1:
            if n is None:
                free = self.umem.free_frames
                n = min(self.fill.size, free // 2 if self.tx is not None else free)
            self.refill(n)

    # -- set-up ---------------------------------------------------------------------------

    def _setup(self, rx_size, tx_size, fill_size, comp_size, mode, need_wakeup) -> None:
        sock = self._sock
        umem = self.umem
        share_with = None  # a bound socket on the same device and queue
        if umem.registered:
            for other in umem.sockets:
                if (not other.closed and other.ifindex == self.ifindex and other.queue_id == self.queue_id
                        and other._ns_id == self._ns_id):
                    share_with = other
                    break
            own_rings = share_with is None
            if own_rings:
                fill_size = fill_size or umem.fill_size
                comp_size = comp_size or umem.comp_size
        else:
            _setsockopt(sock, abi.XDP_UMEM_REG, umem.reg_bytes(), "registering the UMEM")
            own_rings = True
            fill_size = fill_size or umem.fill_size
            comp_size = comp_size or umem.comp_size
        if own_rings:
            _setsockopt(sock, abi.XDP_UMEM_FILL_RING, _u32(fill_size), f"creating a fill ring of {fill_size}")
            _setsockopt(sock, abi.XDP_UMEM_COMPLETION_RING, _u32(comp_size),
                        f"creating a completion ring of {comp_size}")
        if rx_size:
            _setsockopt(sock, abi.XDP_RX_RING, _u32(rx_size), f"creating an RX ring of {rx_size}")
        if tx_size:
            _setsockopt(sock, abi.XDP_TX_RING, _u32(tx_size), f"creating a TX ring of {tx_size}")
        self._map_rings(rx_size, tx_size, fill_size if own_rings else 0, comp_size if own_rings else 0)
        if not own_rings:
            self._fill_m = share_with._fill_m
            self._comp_m = share_with._comp_m
            self._fill_m.refs += 1
            self._comp_m.refs += 1
            self.fill = self._fill_m.ring
            self.comp = self._comp_m.ring

        if umem.registered:
            flags = abi.XDP_SHARED_UMEM
            shared_fd = (share_with or umem.holder()).fileno()  # any bound socket of the UMEM
        else:
            flags = {"auto": 0, "copy": abi.XDP_COPY, "zerocopy": abi.XDP_ZEROCOPY}[mode]
            if need_wakeup:
                flags |= abi.XDP_USE_NEED_WAKEUP
            shared_fd = 0
        self._bind(flags, shared_fd)
        if not umem.registered:
            umem.bind_flags = flags
        self.bind_flags = flags
        self.need_wakeup = bool(umem.bind_flags & abi.XDP_USE_NEED_WAKEUP)
        self._after_bind()

    def _map_rings(self, rx_size: int, tx_size: int, fill_size: int, comp_size: int) -> None:
        """mmap the rings the socket has (a size of 0: not this one)."""
        fd = self._sock.fileno()
        off = abi.MMAP_OFFSETS.unpack(self._sock.getsockopt(abi.SOL_XDP, abi.XDP_MMAP_OFFSETS,
                                                            abi.MMAP_OFFSETS.size))
        o_rx, o_tx, o_fr, o_cr = off[0:4], off[4:8], off[8:12], off[12:16]
        if rx_size:
            self.rx = self._map(fd, abi.XDP_PGOFF_RX_RING, ConsumerRing, rx_size, o_rx, abi.XDP_DESC_SIZE, "rx").ring
        if tx_size:
            self.tx = self._map(fd, abi.XDP_PGOFF_TX_RING, ProducerRing, tx_size, o_tx, abi.XDP_DESC_SIZE, "tx").ring
        if fill_size:
            self._fill_m = self._map(fd, abi.XDP_UMEM_PGOFF_FILL_RING, ProducerRing, fill_size, o_fr,
                                     abi.ADDR_SIZE, "fill")
            self.fill = self._fill_m.ring
        if comp_size:
            self._comp_m = self._map(fd, abi.XDP_UMEM_PGOFF_COMPLETION_RING, ConsumerRing, comp_size, o_cr,
                                     abi.ADDR_SIZE, "completion")
            self.comp = self._comp_m.ring

    def _after_bind(self) -> None:
        sock = self._sock
        self._send = sock.send  # bound once: _kick_tx runs on every transmit
        self._pollers: dict[int, select.poll] = {}
        self._fd = self._sock.fileno()
        self._select_ok = self._fd < _FD_SETSIZE
        opts = sock.getsockopt(abi.SOL_XDP, abi.XDP_OPTIONS, abi.OPTIONS.size)
        self.zerocopy = bool(abi.OPTIONS.unpack(opts)[0] & abi.XDP_OPTIONS_ZEROCOPY)
        self.mode = "zerocopy" if self.zerocopy else "copy"
        self.tx_budget = 32  # TX_BATCH_SIZE: descriptors one copy-mode sendto() handles
        if self.tx is not None and not self.zerocopy and self.tx.size >= 32:
            # Linux >= 6.17: let one sendto() drain the whole TX ring in copy mode.
            try:
                sock.setsockopt(abi.SOL_XDP, abi.XDP_MAX_TX_SKB_BUDGET, _u32(self.tx.size))
                self.tx_budget = self.tx.size
            except OSError:
                pass

    @classmethod
    def adopt(cls, fd: int, umem: Umem, *, rx_size: int, tx_size: int, fill_size: int, comp_size: int,
              need_wakeup: bool = True, batch_size: int = 64, queue_id: int = 0,
              ifname: str = "?") -> "XskSocket":
        """Take over a socket that another process created, registered and bound, e.g. an
        unprivileged application given `fd` (and the UMEM's memfd, mapped with
        Umem(..., memfd=fd)) by the daemon over SCM_RIGHTS.  Nothing here needs a capability.

        The ring sizes (and need_wakeup) are the ones the socket was made with; the kernel
        cannot be asked for them.  The socket must have its own fill and completion rings,
        and its maker must not have put frames in them (XskSocket(..., prefill=0)): the
        adopted Umem starts with every frame free, so call refill() to stock the fill ring.
        """
        self = cls.__new__(cls)
        self.closed = True
        self.queue_id = queue_id
        self.netns = None
        self.requested_mode = "adopted"
        self._own_umem = False
        self.umem = umem
        self._init_datapath(umem, None, None, None, None, batch_size, need_wakeup)
        self._maps = []
        self._fill_m = self._comp_m = None
        self.ifname = ifname
        self.ifindex = 0
        self._ns_id = 0
        self._bound = False  # not bound by us: no re-bind grace on close
        self.bind_flags = 0
        self._sock = None
        try:
            # family and type given: Python would ask getsockname(), which AF_XDP lacks
            self._sock = socket.socket(abi.AF_XDP, socket.SOCK_RAW, 0, fileno=fd)
            domain = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
            if domain != abi.AF_XDP:
                self._sock.detach()
                self._sock = None
                raise XskError(f"fd {fd} is not an AF_XDP socket (its family is {domain})")
            self._map_rings(rx_size, tx_size, fill_size, comp_size)
            if self.fill is None or self.comp is None:
                raise ValueError("an adopted socket needs its own fill and completion rings (fill_size, comp_size)")
            self._after_bind()
        except BaseException:
            self._teardown()
            raise
        self.closed = False
        umem.sockets.append(self)
        return self

    def ring_sizes(self) -> dict[str, int]:
        """The sizes adopt() needs to map this socket's rings elsewhere."""
        return {"rx_size": self.rx.size if self.rx else 0, "tx_size": self.tx.size if self.tx else 0,
                "fill_size": self.fill.size, "comp_size": self.comp.size}

    def _map(self, fd, pgoff, cls, size, offsets, entry_size, name) -> _Mapped:
        producer, consumer, desc, flags = offsets
        length = desc + size * entry_size
        try:
            mm = mmap.mmap(fd, length, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                           mmap.PROT_READ | mmap.PROT_WRITE, offset=pgoff)
        except OSError as e:
            raise XskError(f"mapping the {name} ring failed: {e}") from e
        m = _Mapped(cls(mm, size, producer, consumer, flags, desc, entry_size, name=name), mm)
        self._maps.append(m)
        return m

    def _bind(self, flags: int, shared_fd: int) -> None:
        addr = abi.SOCKADDR_XDP.pack(abi.AF_XDP, flags, self.ifindex, self.queue_id, shared_fd)
        cbuf = ctypes.create_string_buffer(addr, len(addr))
        key = (self._ns_id, self.ifindex, self.queue_id)
        deadline = time.monotonic() + _REBIND_WAIT_S
        while True:
            if _libc.bind(self._sock.fileno(), cbuf, len(addr)) == 0:
                self._bound = True
                return
            err = ctypes.get_errno()
            # The kernel frees a closed socket's hold on its queue after an RCU grace period
            # and a work item, so a queue we just closed can be busy for a few ms.
            if (err != errno.EBUSY or time.monotonic() > deadline
                    or time.monotonic() - _recently_closed.get(key, -1e9) > _REBIND_WAIT_S):
                break
            time.sleep(0.005)
        where = f"{self.ifname!r} (ifindex {self.ifindex}) queue {self.queue_id}"
        if err == errno.EPERM:
            raise PrivilegeError("binding an AF_XDP socket", "CAP_NET_RAW")
        if err == errno.ENODEV:
            msg = f"no interface with ifindex {self.ifindex} in this socket's network namespace"
        elif err == errno.EBUSY:
            msg = (f"{where} is busy: another AF_XDP socket (or UMEM) is bound there; close it "
                   "or share its UMEM (umem=...)")
        elif err == errno.EOPNOTSUPP and flags & abi.XDP_ZEROCOPY:
            msg = f"the driver of {where} cannot do zero-copy AF_XDP; use mode='copy' or 'auto'"
        elif err == errno.EINVAL:
            msg = (f"the kernel refused to bind {where} (EINVAL): is the queue id below the device's "
                   "queue count, and are the ring sizes powers of two?")
        else:
            msg = f"binding to {where} failed"
        raise XskError(f"{msg} [{errno.errorcode.get(err, err)}: {os.strerror(err)}]")

    # -- syscalls the rings ask for --------------------------------------------------------

    def _kick_tx(self) -> None:
        """sendto(MSG_DONTWAIT) on the TX ring.

        Zero-copy: one call wakes the driver.  Copy mode: the call itself transmits, at
        most tx_budget descriptors, and fails with EAGAIN when the completion ring is
        full or the device queue is busy (EBUSY: the device dropped a frame); so repeat,
        bounded, while descriptors remain, reclaiming completions in between.  The common
        case (one call takes everything) costs the syscall and one index read."""
        try:
            self._send(b"", _DONTWAIT)
        except OSError as e:
            if e.errno == errno.EBUSY and not self.zerocopy:
                self.tx_dropped += 1
            elif e.errno not in _KICK_TRANSIENT:
                raise
        else:
            if self.zerocopy:
                return
            tx = self.tx
            cons = tx.cached_cons = tx._idx[tx._c]
            if cons == tx.cached_prod:
                return
        if not self.zerocopy:
            self._kick_tx_more()

    def _kick_tx_more(self) -> None:
        """Copy mode: the first sendto left descriptors in the TX ring."""
        send = self._send
        tx = self.tx
        for _ in range(3 + tx.size // self.tx_budget):
            self.complete()
            try:
                send(b"", _DONTWAIT)
            except OSError as e:
                if e.errno == errno.EBUSY:
                    self.tx_dropped += 1
                elif e.errno not in _KICK_TRANSIENT:
                    raise
            if not tx.outstanding():
                return

    def _wakeup_rx(self) -> None:
        """recvfrom(MSG_DONTWAIT): lets a zero-copy driver take frames from the fill ring."""
        try:
            self._sock.recv(1, socket.MSG_DONTWAIT)
        except OSError as e:
            if e.errno not in _KICK_TRANSIENT:
                raise

    wakeup_rx = _wakeup_rx

    # -- readiness ------------------------------------------------------------------------

    def fileno(self) -> int:
        """The socket's fd: readable (POLLIN) when the RX ring has descriptors, writable
        (POLLOUT) when the TX ring has room; for select, poll, epoll, selectors, asyncio."""
        return self._sock.fileno()

    def poll(self, timeout: float | None = None, events: int = select.POLLIN) -> int:
        """poll(2) the socket; returns the ready event mask (0 on timeout).  In copy mode
        poll also transmits pending TX descriptors."""
        if timeout is not None and 0 < timeout < _PRECISE_WAIT and self._select_ok and events & ~_SELECTABLE == 0:
            # poll(2) counts whole milliseconds: rounded up, a 0.3 ms wait (an open-loop client
            # until its next send, a short RPC timeout) would last 1 ms; select(2) takes
            # microseconds (for descriptors below FD_SETSIZE) for about 1 us more per call
            fd = self._fd
            r, w, _ = select.select((fd,) if events & select.POLLIN else (),
                                    (fd,) if events & select.POLLOUT else (), (), timeout)
            return (select.POLLIN if r else 0) | (select.POLLOUT if w else 0)
        p = self._pollers.get(events)
        if p is None:  # one poll object per event mask, made once (blocking waits are hot)
            p = self._pollers[events] = select.poll()
            p.register(self.fileno(), events)
        # round up: a wait of less than 1 ms must not become a non-blocking poll (a spin)
        r = p.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
        return r[0][1] if r else 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until frames are ready to receive (or the timeout); True if there are."""
        if self.rx is None:
            raise ValueError("this socket has no RX ring (rx_size=0)")
        if self.rx.available():
            return True
        return bool(self.poll(timeout, select.POLLIN) & select.POLLIN)

    async def wait_readable(self, timeout: float | None = None) -> bool:
        """Await until the RX ring has descriptors (through the event loop's reader
        callback); returns False on timeout."""
        if self.rx.available():
            return True
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = self.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(True)

        loop.add_reader(fd, ready)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)

    def add_reader(self, callback, *args, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Call `callback(*args)` from the event loop whenever frames are ready."""
        (loop or asyncio.get_running_loop()).add_reader(self.fileno(), callback, *args)

    def remove_reader(self, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        return (loop or asyncio.get_running_loop()).remove_reader(self.fileno())

    def set_busy_poll(self, usecs: int = 20, budget: int = 64, prefer: bool = True) -> None:
        """Busy-poll the device queue from recvfrom/sendto/poll (SO_BUSY_POLL and friends)."""
        s = self._sock
        s.setsockopt(socket.SOL_SOCKET, SO_PREFER_BUSY_POLL, int(prefer))
        s.setsockopt(socket.SOL_SOCKET, SO_BUSY_POLL, usecs)
        s.setsockopt(socket.SOL_SOCKET, SO_BUSY_POLL_BUDGET, budget)

    # -- information ----------------------------------------------------------------------

    def statistics(self) -> XskStatistics:
        """The kernel's counters for this socket (XDP_STATISTICS)."""
        raw = self._sock.getsockopt(abi.SOL_XDP, abi.XDP_STATISTICS, abi.STATISTICS.size)
        raw = raw + bytes(abi.STATISTICS.size - len(raw))
        return XskStatistics(*abi.STATISTICS.unpack(raw))

    @property
    def shares_rings(self) -> bool:
        """True when the fill and completion rings are shared with another socket."""
        return self._fill_m is not None and self._fill_m.refs > 1

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.mode
        return f"XskSocket({self.ifname!r} q{self.queue_id}, {state}, fd={self._sock.fileno() if self._sock else -1})"

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket and unmap its rings (and its private Umem)."""
        if self.closed:
            return
        self.closed = True
        if self in self.umem.sockets:
            self.umem.sockets.remove(self)
        self._teardown()
        if self._own_umem:
            self.umem.close()

    def _teardown(self) -> None:
        umem = self.umem
        if not umem.closed and self.closed:
            if any(s is not self and not s.closed for s in umem.sockets):
                # Frames in our batches come back; frames still in the kernel's rings
                # (fill, RX, in-flight TX) cannot be taken back safely while the
                # kernel may use them, so they stay out of circulation.
                frames = umem.frames
                for b in (self.rx_batch, self.tx_batch):
                    for i in range(b.count):
                        frames.free(b.addr[i])
                    b.count = 0
            else:
                umem.frames.reset()  # no socket left: every frame is ours again
        for m in self._maps:
            if m is not self._fill_m and m is not self._comp_m:
                m.ring.close()
                m.mm.close()
        self._maps = []
        for m in (self._fill_m, self._comp_m):
            if m is not None:
                m.put()
        self._fill_m = self._comp_m = None
        self.rx = self.tx = self.fill = self.comp = None
        self._pollers = {}
        if self._sock is not None and self._bound:
            _recently_closed[(self._ns_id, self.ifindex, self.queue_id)] = time.monotonic()
        if self._sock is not None:
            # The kernel unbinds when the last reference goes: this fd and the mmaps'
            # duplicates (closed above; shared rings close with their last user).
            self._sock.close()

    def __enter__(self) -> "XskSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self.closed:
                self.close()
        except Exception:
            pass


def _new_socket() -> socket.socket:
    try:
        return socket.socket(abi.AF_XDP, socket.SOCK_RAW, 0)
    except PermissionError:
        raise PrivilegeError("creating an AF_XDP socket", "CAP_NET_RAW") from None
    except OSError as e:
        if e.errno in (errno.EAFNOSUPPORT, errno.EINVAL):
            raise XskError("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)") from e
        raise


def _setsockopt(sock: socket.socket, opt: int, value: bytes, what: str) -> None:
    try:
        sock.setsockopt(abi.SOL_XDP, opt, value)
    except PermissionError:
        raise PrivilegeError(what, "CAP_IPC_LOCK or enough RLIMIT_MEMLOCK") from None
    except OSError as e:
        hint = ""
        if e.errno == errno.ENOMEM:
            hint = " (out of memory or RLIMIT_MEMLOCK too low)"
        elif e.errno == errno.EINVAL:
            hint = " (sizes must be powers of two; frame size in [2048, page size]; UMEM page aligned)"
        raise XskError(f"{what} failed: {e.strerror}{hint}") from e


def _u32(v: int) -> bytes:
    return int(v).to_bytes(4, "little")


def _ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"#{ifindex}"
