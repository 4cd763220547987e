"""eBPF objects, programs and maps, loaded through libbpf.

A `BpfObject` owns what libbpf loaded; `Program` and `Map` are thin handles around fds.
Maps can also be opened on their own (from a pin, an fd passed over a Unix socket, or an
id), which is how the daemon and unprivileged applications share them.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Union

from ..errors import EtranError, VerifierError
from ..kernel import build
from . import libbpf as lb

Key = Union[bytes, bytearray, memoryview, int, ctypes.Structure, ctypes.Array]

# enum bpf_map_type values we treat specially
MAP_TYPE_NAMES = {
    1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash",
    6: "percpu_array", 9: "lru_hash", 10: "lru_percpu_hash", 14: "devmap", 17: "xskmap",
    27: "ringbuf", 29: "devmap_hash",
}
PERCPU_TYPES = {5, 6, 10}
BPF_MAP_TYPE_ARRAY = 2
BPF_F_MMAPABLE = 1 << 10
BPF_F_RDONLY_PROG = 1 << 7

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
PAGE = mmap.PAGESIZE
# Per program, for the verifier's log when loading fails. Since Linux 6.4 the log rotates: a
# short buffer keeps its end, which is where the verifier says what it rejected.
LOG_BUF_SIZE = 256 * 1024


def _to_bytes(value: Key, size: int, what: str) -> bytes:
    if isinstance(value, int):
        if size > 8:
            raise ValueError(f"an int {what} needs a map with {what} size <= 8, this one has {size}")
        return value.to_bytes(size, "little", signed=value < 0)
    if isinstance(value, (ctypes.Structure, ctypes.Array)):
        value = bytes(value)
    value = bytes(value)
    if len(value) != size:
        raise ValueError(f"{what} is {len(value)} bytes, the map's {what} size is {size}")
    return value


class Map:
    """A BPF map by fd. Keys and values: bytes, int (little endian) or ctypes objects."""

    def __init__(self, fd: int, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int, owns_fd: bool = False, map_id: int = 0) -> None:
        self.fd = fd
        self.name = name
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.id = map_id
        self._owns_fd = owns_fd
        self.percpu = map_type in PERCPU_TYPES
        ncpu = lb.num_possible_cpus() if self.percpu else 1
        self.ncpus = ncpu
        # per-CPU values come back as one 8-byte-aligned slot per possible CPU
        self.stride = (value_size + 7) & ~7 if self.percpu else value_size
        self.full_value_size = self.stride * ncpu
        self._key = ctypes.create_string_buffer(max(key_size, 1))
        self._next = ctypes.create_string_buffer(max(key_size, 1))
        self._value = ctypes.create_string_buffer(max(self.full_value_size, 1))

    # ---- opening --------------------------------------------------------------------
    @classmethod
    def from_fd(cls, fd: int, owns_fd: bool = True) -> Map:
        info = lb.obj_info(fd, lb.MapInfo())
        return cls(fd, info.name.decode(), info.type, info.key_size, info.value_size,
                   info.max_entries, info.map_flags, owns_fd=owns_fd, map_id=info.id)

    @classmethod
    def create(cls, map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0,
               name: str = "") -> Map:
        """A new map, outside any object (e.g. an inner map for an ARRAY_OF_MAPS)."""
        opts = lb.MapCreateOpts(sz=ctypes.sizeof(lb.MapCreateOpts), map_flags=flags)
        fd = lb.lib.bpf_map_create(map_type, name[:15].encode(), key_size, value_size, max_entries, ctypes.byref(opts))
        if fd < 0:
            raise lb.os_error(ctypes.get_errno(), f"creating map {name or '(unnamed)'}")
        return cls.from_fd(fd)

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Map:
        fd = lb.lib.bpf_obj_get(os.fsencode(path))
        if fd < 0:
            raise lb.os_error(ctypes.get_errno(), f"opening pinned map {path}")
        return cls.from_fd(fd)

    @classmethod
    def from_id(cls, map_id: int, readonly: bool = False) -> Map:
        fd = lb.map_fd_by_id(map_id, lb.BPF_F_RDONLY if readonly else 0)
        return cls.from_fd(fd)

    def reopen(self, readonly: bool = False) -> Map:
        """A new, independent fd for this map.

        readonly=True gives an fd that can look up but not update.  The kernel refuses to
        mmap such an fd (it drops VM_SHARED), so to share an mmapable map read-only use
        `freeze()` instead: a frozen map refuses every write from user space, through any
        fd, while BPF programs keep writing it.
        """
        return Map.from_id(self.id or lb.obj_info(self.fd, lb.MapInfo()).id, readonly=readonly)

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: from now on user space may only read (syscalls and mmap), BPF still writes.

        This is how kernel-published state is handed to unprivileged applications: they get an
        fd of a frozen map, can mmap it PROT_READ, and can neither update it nor remap it writable.
        """
        lb.bpf_syscall(lb.BPF_MAP_FREEZE, lb.MapFdAttr(self.fd), f"freezing map {self.name}")

    # ---- elements ---------------------------------------------------------------------
    def lookup(self, key: Key) -> bytes | None:
        """The value (all CPUs' slots concatenated for per-CPU maps), or None if absent."""
        k = _to_bytes(key, self.key_size, "key")
        ret = lb.lib.bpf_map_lookup_elem(self.fd, k, self._value)
        if ret < 0:
            err = ctypes.get_errno()
            if err == 2:  # ENOENT
                return None
            raise lb.os_error(err, f"lookup in map {self.name}")
        return self._value.raw[: self.full_value_size]

    def __getitem__(self, key: Key) -> bytes:
        v = self.lookup(key)
        if v is None:
            raise KeyError(key)
        return v

    def lookup_percpu(self, key: Key) -> list[bytes] | None:
        v = self.lookup(key)
        if v is None:
            return None
        return [v[i * self.stride: i * self.stride + self.value_size] for i in range(self.ncpus)]

    def update(self, key: Key, value: Key, flags: int = BPF_ANY) -> None:
        k = _to_bytes(key, self.key_size, "key")
        v = self._value_bytes(value)
        lb.check(lb.lib.bpf_map_update_elem(self.fd, k, v, flags), f"update of map {self.name}")

    __setitem__ = update

    def _value_bytes(self, value: Key) -> bytes:
        """A value as the syscall wants it; per-CPU maps take one value (copied to every CPU) or all."""
        if not self.percpu:
            return _to_bytes(value, self.value_size, "value")
        if not isinstance(value, int) and len(bytes(value)) == self.full_value_size:
            return bytes(value)
        return _to_bytes(value, self.value_size, "value").ljust(self.stride, b"\0") * self.ncpus

    def delete(self, key: Key) -> bool:
        """Delete `key`; False if it was not there."""
        k = _to_bytes(key, self.key_size, "key")
        if lb.lib.bpf_map_delete_elem(self.fd, k) < 0:
            err = ctypes.get_errno()
            if err == 2:
                return False
            raise lb.os_error(err, f"delete from map {self.name}")
        return True

    def push(self, value: Key) -> bool:
        """Push onto a queue/stack map; False when it is full."""
        if lb.lib.bpf_map_update_elem(self.fd, None, _to_bytes(value, self.value_size, "value"), BPF_ANY) < 0:
            err = ctypes.get_errno()
            if err == 7:  # E2BIG: full
                return False
            raise lb.os_error(err, f"push onto map {self.name}")
        return True

    def pop(self) -> bytes | None:
        """Pop from a queue/stack map (BPF_MAP_LOOKUP_AND_DELETE_ELEM); None when empty."""
        ret = lb.lib.bpf_map_lookup_and_delete_elem(self.fd, None, self._value)
        if ret < 0:
            err = ctypes.get_errno()
            if err == 2:
                return None
            raise lb.os_error(err, f"pop from map {self.name}")
        return self._value.raw[: self.value_size]

    def keys(self) -> Iterator[bytes]:
        """Iterate keys with BPF_MAP_GET_NEXT_KEY (safe while entries come and go)."""
        prev = None
        while True:
            ret = lb.lib.bpf_map_get_next_key(self.fd, prev, self._next)
            if ret < 0:
                err = ctypes.get_errno()
                if err == 2:
                    return
                raise lb.os_error(err, f"iterating map {self.name}")
            key = self._next.raw[: self.key_size]
            yield key
            prev = ctypes.create_string_buffer(key, self.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    # ---- batches --------------------------------------------------------------------
    def lookup_batch(self, chunk: int = 256) -> list[tuple[bytes, bytes]]:
        """Every (key, value) read with BPF_MAP_LOOKUP_BATCH, `chunk` elements per syscall."""
        ks, vs = self.key_size, self.full_value_size
        return [(kr[i * ks:(i + 1) * ks], vr[i * vs:(i + 1) * vs])
                for kr, vr, n in self.lookup_batch_raw(chunk) for i in range(n)]

    def lookup_batch_raw(self, chunk: int = 256) -> Iterator[tuple[bytes, bytes, int]]:
        """The map read with BPF_MAP_LOOKUP_BATCH as (keys, values, count) per syscall: the
        elements packed back to back, for a caller that looks at a field of each (a struct's
        iter_unpack over `values`) before it takes any element apart."""
        keys = ctypes.create_string_buffer(self.key_size * chunk)
        values = ctypes.create_string_buffer(self.full_value_size * chunk)
        in_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        out_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        opts = lb.BatchOpts(ctypes.sizeof(lb.BatchOpts), 0, 0)
        first = True
        while True:
            count = lb.c_u32(chunk)
            ret = lb.lib.bpf_map_lookup_batch(self.fd, None if first else in_batch, out_batch, keys, values,
                                              ctypes.byref(count), ctypes.byref(opts))
            err = ctypes.get_errno() if ret < 0 else 0
            if ret < 0 and err != 2:
                raise lb.os_error(err, f"batch lookup in map {self.name}")
            n = count.value
            if n:
                yield keys.raw[:n * self.key_size], values.raw[:n * self.full_value_size], n
            if ret < 0:  # ENOENT: that was the last batch
                return
            ctypes.memmove(in_batch, out_batch, len(out_batch))
            first = False

    def update_batch(self, items: list[tuple[Key, Key]], flags: int = BPF_ANY) -> int:
        if not items:
            return 0
        keys = b"".join(_to_bytes(k, self.key_size, "key") for k, _ in items)
        values = b"".join(self._value_bytes(v) for _, v in items)
        count = lb.c_u32(len(items))
        opts = lb.BatchOpts(ctypes.sizeof(lb.BatchOpts), flags, 0)
        lb.check(lb.lib.bpf_map_update_batch(self.fd, keys, values, ctypes.byref(count), ctypes.byref(opts)),
                 f"batch update of map {self.name}")
        return count.value

    def delete_batch(self, keys: list[Key]) -> int:
        if not keys:
            return 0
        raw = b"".join(_to_bytes(k, self.key_size, "key") for k in keys)
        count = lb.c_u32(len(keys))
        opts = lb.BatchOpts(ctypes.sizeof(lb.BatchOpts), 0, 0)
        lb.check(lb.lib.bpf_map_delete_batch(self.fd, raw, ctypes.byref(count), ctypes.byref(opts)),
                 f"batch delete from map {self.name}")
        return count.value

    # ---- sharing --------------------------------------------------------------------
    def mmap(self, readonly: bool = False) -> mmap.mmap:
        """Map a BPF_F_MMAPABLE array into memory; readonly works with a read-only fd too."""
        if not self.flags & BPF_F_MMAPABLE:
            raise EtranError(f"map {self.name} was not created with BPF_F_MMAPABLE; declare it with "
                             "__uint(map_flags, BPF_F_MMAPABLE) to mmap it")
        size = (self.value_size + 7 & ~7) * self.max_entries
        size = (size + PAGE - 1) // PAGE * PAGE
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        try:
            return mmap.mmap(self.fd, size, mmap.MAP_SHARED, prot)
        except PermissionError as e:
            raise lb.os_error(e.errno, f"mmap of map {self.name} ({'read-only' if readonly else 'read-write'})") from e

    def mmap_array(self, ctype: type[ctypes.Structure], readonly: bool = True) -> MappedArray:
        """The map's values as a live ctypes array: `arr[i].field` reads kernel state with no syscall."""
        return MappedArray(self, ctype, readonly)

    def pin(self, path: str | os.PathLike[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lb.check(lb.lib.bpf_obj_pin(self.fd, os.fsencode(path)), f"pinning map {self.name} at {path}")

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = MAP_TYPE_NAMES.get(self.type, str(self.type))
        return f"<Map {self.name} {kind} fd={self.fd} key={self.key_size} value={self.value_size} max={self.max_entries}>"


class MappedArray:
    """A BPF_F_MMAPABLE array mapped with libc mmap and viewed as a ctypes array.

    Python's mmap refuses ctypes views of read-only mappings, so the mapping is made through
    libc and the array is built on its address.  Keep this object alive while views exist.
    """

    def __init__(self, m: Map, ctype: type[ctypes.Structure], readonly: bool) -> None:
        if not m.flags & BPF_F_MMAPABLE:
            raise EtranError(f"map {m.name} was not created with BPF_F_MMAPABLE")
        stride = (m.value_size + 7) & ~7
        if stride != ctypes.sizeof(ctype):
            raise EtranError(f"map {m.name}: values of {m.value_size} bytes are laid out every {stride} bytes, "
                             f"but {ctype.__name__} is {ctypes.sizeof(ctype)}; the C struct and its mirror disagree")
        self.size = (stride * m.max_entries + PAGE - 1) // PAGE * PAGE
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        addr = lb.libc.mmap(None, self.size, prot, mmap.MAP_SHARED, m.fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise lb.os_error(ctypes.get_errno(), f"mmap of map {m.name}")
        self.address = addr
        self.array = (ctype * m.max_entries).from_address(addr)

    def __getitem__(self, i: int) -> ctypes.Structure:
        return self.array[i]

    def __len__(self) -> int:
        return len(self.array)

    def close(self) -> None:
        if self.address:
            self.array = None
            lb.libc.munmap(self.address, self.size)
            self.address = 0

    def __enter__(self) -> MappedArray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class XdpMd(ctypes.Structure):
    """struct xdp_md, the context of a BPF_PROG_RUN of an XDP program."""

    _fields_ = [("data", lb.c_u32), ("data_end", lb.c_u32), ("data_meta", lb.c_u32),
                ("ingress_ifindex", lb.c_u32), ("rx_queue_index", lb.c_u32), ("egress_ifindex", lb.c_u32)]


class TestRunResult(tuple):
    """(retval, data_out, duration_ns) of one BPF_PROG_RUN."""

    __slots__ = ()

    def __new__(cls, retval: int, data: bytes, duration_ns: int) -> TestRunResult:
        return super().__new__(cls, (retval, data, duration_ns))

    retval = property(lambda self: self[0])
    data = property(lambda self: self[1])
    duration_ns = property(lambda self: self[2])


class Program:
    """A loaded BPF program by fd."""

    def __init__(self, fd: int, name: str, owns_fd: bool = False) -> None:
        self.fd = fd
        self.name = name
        self._owns_fd = owns_fd

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Program:
        fd = lb.lib.bpf_obj_get(os.fsencode(path))
        if fd < 0:
            raise lb.os_error(ctypes.get_errno(), f"opening pinned program {path}")
        info = lb.obj_info(fd, lb.ProgInfo())
        return cls(fd, info.name.decode(), owns_fd=True)

    @property
    def id(self) -> int:
        return lb.obj_info(self.fd, lb.ProgInfo()).id

    def test_run(self, data: bytes, repeat: int = 1, ingress_ifindex: int = 0, rx_queue: int = 0,
                 out_size: int | None = None) -> TestRunResult:
        """BPF_PROG_RUN on one packet: the verdict, the packet as the program left it, ns per run."""
        data = bytes(data)
        out = ctypes.create_string_buffer(out_size or len(data) + 512)
        opts = lb.TestRunOpts(sz=ctypes.sizeof(lb.TestRunOpts), data_in=ctypes.cast(data, ctypes.c_void_p),
                              data_out=ctypes.cast(out, ctypes.c_void_p), data_size_in=len(data),
                              data_size_out=len(out), repeat=repeat)
        ctx = None
        if ingress_ifindex or rx_queue:
            ctx = XdpMd(0, len(data), 0, ingress_ifindex, rx_queue, 0)
            opts.ctx_in = ctypes.cast(ctypes.byref(ctx), ctypes.c_void_p)
            opts.ctx_size_in = ctypes.sizeof(ctx)
        lb.check(lb.lib.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)), f"test run of program {self.name}")
        return TestRunResult(opts.retval, out.raw[: opts.data_size_out], opts.duration)

    def run_live_frames(self, frame: bytes, repeat: int, ingress_ifindex: int, rx_queue: int = 0,
                        batch_size: int = 0) -> None:
        """Run an XDP program `repeat` times on copies of `frame` in live-frame mode.

        XDP_TX / XDP_REDIRECT verdicts really transmit, so this is how the daemon generates
        timer-driven packets.  Call it from a thread inside the namespace of `ingress_ifindex`.
        """
        frame = bytes(frame)
        ctx = XdpMd(0, len(frame), 0, ingress_ifindex, rx_queue, 0)
        opts = lb.TestRunOpts(sz=ctypes.sizeof(lb.TestRunOpts), data_in=ctypes.cast(frame, ctypes.c_void_p),
                              data_size_in=len(frame), ctx_in=ctypes.cast(ctypes.byref(ctx), ctypes.c_void_p),
                              ctx_size_in=ctypes.sizeof(ctx), repeat=repeat,
                              flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=batch_size)
        lb.check(lb.lib.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)), f"live-frame run of program {self.name}")

    def pin(self, path: str | os.PathLike[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lb.check(lb.lib.bpf_obj_pin(self.fd, os.fsencode(path)), f"pinning program {self.name} at {path}")

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __repr__(self) -> str:
        return f"<Program {self.name} fd={self.fd}>"


class BpfObject:
    """An eBPF object file opened and loaded by libbpf.

    `BpfObject.load("switch")` compiles etran/kernel/bpf/switch.bpf.c (cached) and loads it;
    a path to a .o or .bpf.c file works too.  `max_entries` resizes maps before loading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with lb.captured_messages() as messages:
            self._obj = lb.lib.bpf_object__open_file(os.fsencode(path), None)
        if not self._obj:
            err = ctypes.get_errno()
            detail = "\n".join(m for m in messages if m)
            raise EtranError(f"libbpf could not open eBPF object {path}: {os.strerror(err)}\n{detail}".rstrip())
        self.loaded = False
        self._programs: dict[str, Program] = {}
        self._maps: dict[str, Map] = {}

    @classmethod
    def open(cls, source: str | os.PathLike[str]) -> BpfObject:
        """Open (not yet load) a program family by name, or a .o / .bpf.c path."""
        s = str(source)
        if s.endswith(".o"):
            return cls(Path(s))
        if s.endswith(".c"):
            return cls(build.compile_source(Path(s)))
        return cls(build.compile_object(s))

    @classmethod
    def load(cls, source: str | os.PathLike[str], max_entries: dict[str, int] | None = None,
             reuse_maps: dict[str, Map] | None = None) -> BpfObject:
        """Open and load; `reuse_maps` makes this object share existing maps (by name) instead of creating them."""
        obj = cls.open(source)
        try:
            for name, n in (max_entries or {}).items():
                lb.check(lb.lib.bpf_map__set_max_entries(obj._raw_map(name), n), f"resizing map {name}")
            for name, m in (reuse_maps or {}).items():
                lb.check(lb.lib.bpf_map__reuse_fd(obj._raw_map(name), m.fd), f"reusing map {name}")
            obj.load_into_kernel()
        except BaseException:
            obj.close()
            raise
        return obj

    def _raw_map(self, name: str) -> int:
        m = lb.lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise EtranError(f"no map {name!r} in {self.path.name}; maps: {', '.join(self.map_names())}")
        return m

    def _raw_programs(self) -> Iterator[int]:
        p = lb.lib.bpf_object__next_program(self._obj, None)
        while p:
            yield p
            p = lb.lib.bpf_object__next_program(self._obj, p)

    def program_names(self) -> list[str]:
        return [lb.lib.bpf_program__name(p).decode() for p in self._raw_programs()]

    def map_names(self) -> list[str]:
        names = []
        m = lb.lib.bpf_object__next_map(self._obj, None)
        while m:
            names.append(lb.lib.bpf_map__name(m).decode())
            m = lb.lib.bpf_object__next_map(self._obj, m)
        return names

    def load_into_kernel(self) -> None:
        """Load every program; a verifier rejection raises VerifierError with the log."""
        buffers = []
        for p in self._raw_programs():
            buf = ctypes.create_string_buffer(LOG_BUF_SIZE)
            buffers.append((p, buf))
            lb.lib.bpf_program__set_log_buf(p, buf, LOG_BUF_SIZE)
        with lb.captured_messages() as messages:
            ret = lb.lib.bpf_object__load(self._obj)
        if ret < 0:
            err = -ret
            for p, buf in buffers:
                log = buf.value.decode(errors="replace")
                if log.strip():
                    raise VerifierError(lb.lib.bpf_program__name(p).decode(), log, err)
            if err in (1, 13):
                raise lb.os_error(err, f"loading eBPF object {self.path.name}")
            detail = "\n".join(messages[-20:])
            raise EtranError(f"loading eBPF object {self.path.name} failed: {os.strerror(err)}\n{detail}")
        self.loaded = True
        for p, _ in buffers:  # libbpf reads the buffers only while loading
            lb.lib.bpf_program__set_log_buf(p, None, 0)

    def program(self, name: str) -> Program:
        if name not in self._programs:
            p = lb.lib.bpf_object__find_program_by_name(self._obj, name.encode())
            if not p:
                raise EtranError(f"no program {name!r} in {self.path.name}; programs: {', '.join(self.program_names())}")
            fd = lb.lib.bpf_program__fd(p)
            if fd < 0:
                raise EtranError(f"program {name!r} is not loaded; call load() first")
            self._programs[name] = Program(fd, name)
        return self._programs[name]

    def map(self, name: str) -> Map:
        if name not in self._maps:
            m = self._raw_map(name)
            fd = lb.lib.bpf_map__fd(m)
            if fd < 0:
                raise EtranError(f"map {name!r} is not created; call load() first")
            self._maps[name] = Map.from_fd(fd, owns_fd=False)
        return self._maps[name]

    @property
    def programs(self) -> dict[str, Program]:
        return {n: self.program(n) for n in self.program_names()}

    @property
    def maps(self) -> dict[str, Map]:
        return {n: self.map(n) for n in self.map_names() if not n.endswith((".bss", ".data", ".rodata"))
                and "." not in n}

    def close(self) -> None:
        """Release libbpf's object (its fds); attached programs stay attached."""
        if self._obj:
            lb.lib.bpf_object__close(self._obj)
            self._obj = None
        for p in self._programs.values():
            p.fd = -1
        for m in self._maps.values():
            m.fd = -1

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
