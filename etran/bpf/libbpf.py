"""ctypes bindings to libbpf.so.1 (the subset etran uses) and the raw bpf(2) syscall.

libbpf's own messages are captured through its print callback, so errors can carry them
instead of spraying stderr.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import logging
import os
import threading

from ..errors import EtranError, PrivilegeError

log = logging.getLogger("etran.libbpf")

c_int, c_uint, c_u32, c_u64, c_size_t, c_char_p, c_void_p = (
    ctypes.c_int, ctypes.c_uint, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p)


def _load() -> ctypes.CDLL:
    for name in ("libbpf.so.1", ctypes.util.find_library("bpf")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    raise EtranError("libbpf.so.1 is not installed; run ./bootstrap (or apt-get install libbpf1)")


lib = _load()
libc = ctypes.CDLL(None, use_errno=True)

# (name, restype, argtypes)
_SIGNATURES = [
    ("bpf_object__open_file", c_void_p, [c_char_p, c_void_p]),
    ("bpf_object__load", c_int, [c_void_p]),
    ("bpf_object__close", None, [c_void_p]),
    ("bpf_object__name", c_char_p, [c_void_p]),
    ("bpf_object__find_program_by_name", c_void_p, [c_void_p, c_char_p]),
    ("bpf_object__find_map_by_name", c_void_p, [c_void_p, c_char_p]),
    ("bpf_object__next_program", c_void_p, [c_void_p, c_void_p]),
    ("bpf_object__next_map", c_void_p, [c_void_p, c_void_p]),
    ("bpf_program__name", c_char_p, [c_void_p]),
    ("bpf_program__fd", c_int, [c_void_p]),
    ("bpf_program__set_log_buf", c_int, [c_void_p, c_char_p, c_size_t]),
    ("bpf_program__set_autoload", c_int, [c_void_p, ctypes.c_bool]),
    ("bpf_program__type", c_int, [c_void_p]),
    ("bpf_map__name", c_char_p, [c_void_p]),
    ("bpf_map__fd", c_int, [c_void_p]),
    ("bpf_map__type", c_int, [c_void_p]),
    ("bpf_map__key_size", c_u32, [c_void_p]),
    ("bpf_map__value_size", c_u32, [c_void_p]),
    ("bpf_map__max_entries", c_u32, [c_void_p]),
    ("bpf_map__set_max_entries", c_int, [c_void_p, c_u32]),
    ("bpf_map__map_flags", c_u32, [c_void_p]),
    ("bpf_map__set_pin_path", c_int, [c_void_p, c_char_p]),
    ("bpf_map__reuse_fd", c_int, [c_void_p, c_int]),
    ("bpf_map_lookup_elem", c_int, [c_int, c_void_p, c_void_p]),
    ("bpf_map_lookup_elem_flags", c_int, [c_int, c_void_p, c_void_p, c_u64]),
    ("bpf_map_update_elem", c_int, [c_int, c_void_p, c_void_p, c_u64]),
    ("bpf_map_delete_elem", c_int, [c_int, c_void_p]),
    ("bpf_map_lookup_and_delete_elem", c_int, [c_int, c_void_p, c_void_p]),
    ("bpf_map_get_next_key", c_int, [c_int, c_void_p, c_void_p]),
    ("bpf_map_lookup_batch", c_int, [c_int, c_void_p, c_void_p, c_void_p, c_void_p, ctypes.POINTER(c_u32), c_void_p]),
    ("bpf_map_update_batch", c_int, [c_int, c_void_p, c_void_p, ctypes.POINTER(c_u32), c_void_p]),
    ("bpf_map_delete_batch", c_int, [c_int, c_void_p, ctypes.POINTER(c_u32), c_void_p]),
    ("bpf_obj_pin", c_int, [c_int, c_char_p]),
    ("bpf_obj_get", c_int, [c_char_p]),
    ("bpf_obj_get_info_by_fd", c_int, [c_int, c_void_p, ctypes.POINTER(c_u32)]),
    ("bpf_prog_test_run_opts", c_int, [c_int, c_void_p]),
    ("libbpf_num_possible_cpus", c_int, []),
    ("bpf_map_create", c_int, [c_int, c_char_p, c_u32, c_u32, c_u32, c_void_p]),
]
for _name, _res, _args in _SIGNATURES:
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args

libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
libc.vsnprintf.restype = c_int
libc.syscall.restype = ctypes.c_long
libc.mmap.argtypes = [c_void_p, c_size_t, c_int, c_int, c_int, ctypes.c_long]
libc.mmap.restype = c_void_p
libc.munmap.argtypes = [c_void_p, c_size_t]
libc.munmap.restype = c_int

# ---- libbpf's messages -------------------------------------------------------------
_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_messages = threading.local()


def _on_print(level: int, fmt: bytes, va_list: int) -> int:
    buf = ctypes.create_string_buffer(4096)
    n = libc.vsnprintf(buf, len(buf), fmt, va_list)
    text = buf.value.decode(errors="replace").rstrip()
    captured = getattr(_messages, "lines", None)
    if captured is not None:
        captured.append(text)
    log.debug("libbpf: %s", text)
    return n


_print_cb = _PRINT_FN(_on_print)  # keep a reference: libbpf holds the pointer
lib.libbpf_set_print.restype = c_void_p
lib.libbpf_set_print.argtypes = [_PRINT_FN]
lib.libbpf_set_print(_print_cb)


class captured_messages:
    """Collect libbpf's messages printed by this thread while the block runs."""

    def __enter__(self) -> list[str]:
        self.previous = getattr(_messages, "lines", None)
        _messages.lines = []
        return _messages.lines

    def __exit__(self, *exc: object) -> None:
        _messages.lines = self.previous


# ---- errors ----------------------------------------------------------------------

def check(ret: int, operation: str) -> int:
    """Turn libbpf's negative-errno convention into an exception that says what to do."""
    if ret >= 0:
        return ret
    err = -ret if ret < 0 and ret != -1 else ctypes.get_errno()
    raise os_error(err, operation)


CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF = 12, 21, 39


def has_bpf_privilege() -> bool:
    """Whether this process may load programs and create maps (CAP_BPF or CAP_SYS_ADMIN)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps & (1 << CAP_BPF) or caps & (1 << CAP_SYS_ADMIN))
    except OSError:
        pass
    return os.geteuid() == 0


def os_error(err: int, operation: str) -> Exception:
    if err in (errno_mod.EPERM, errno_mod.EACCES) and not has_bpf_privilege():
        return PrivilegeError(operation, "CAP_BPF and CAP_NET_ADMIN (root)")
    return OSError(err, f"{operation}: {os.strerror(err)}")


def num_possible_cpus() -> int:
    return check(lib.libbpf_num_possible_cpus(), "counting possible CPUs")


# ---- the raw bpf(2) syscall, for what libbpf 1.1 does not expose ---------------------
SYS_bpf = 321 if os.uname().machine == "x86_64" else 280
BPF_MAP_GET_FD_BY_ID = 14
BPF_MAP_FREEZE = 22
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4


def bpf_syscall(cmd: int, attr: ctypes.Array | ctypes.Structure, operation: str) -> int:
    ret = libc.syscall(SYS_bpf, c_int(cmd), ctypes.byref(attr), c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        raise os_error(ctypes.get_errno(), operation)
    return ret


class _GetFdById(ctypes.Structure):
    _fields_ = [("id", c_u32), ("next_id", c_u32), ("open_flags", c_u32)]


class MapFdAttr(ctypes.Structure):
    _fields_ = [("map_fd", c_u32)]


def map_fd_by_id(map_id: int, flags: int = 0) -> int:
    """A new fd for map `map_id`; flags=BPF_F_RDONLY gives a read-only fd to hand to applications."""
    return bpf_syscall(BPF_MAP_GET_FD_BY_ID, _GetFdById(map_id, 0, flags), f"opening map id {map_id}")


class TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts (libbpf)."""

    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p), ("data_out", c_void_p),
        ("data_size_in", c_u32), ("data_size_out", c_u32),
        ("ctx_in", c_void_p), ("ctx_out", c_void_p),
        ("ctx_size_in", c_u32), ("ctx_size_out", c_u32),
        ("retval", c_u32), ("repeat", c_int), ("duration", c_u32),
        ("flags", c_u32), ("cpu", c_u32), ("batch_size", c_u32),
    ]


class MapCreateOpts(ctypes.Structure):
    """struct bpf_map_create_opts (libbpf 1.1)."""

    _fields_ = [
        ("sz", c_size_t), ("btf_fd", c_u32), ("btf_key_type_id", c_u32), ("btf_value_type_id", c_u32),
        ("btf_vmlinux_value_type_id", c_u32), ("inner_map_fd", c_u32), ("map_flags", c_u32),
        ("map_extra", c_u64), ("numa_node", c_u32), ("map_ifindex", c_u32),
    ]


class BatchOpts(ctypes.Structure):
    """struct bpf_map_batch_opts."""

    _fields_ = [("sz", c_size_t), ("elem_flags", c_u64), ("flags", c_u64)]


class MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info (what we read)."""

    _fields_ = [
        ("type", c_u32), ("id", c_u32), ("key_size", c_u32), ("value_size", c_u32),
        ("max_entries", c_u32), ("map_flags", c_u32), ("name", ctypes.c_char * 16),
        ("ifindex", c_u32), ("btf_vmlinux_value_type_id", c_u32), ("netns_dev", c_u64),
        ("netns_ino", c_u64), ("btf_id", c_u32), ("btf_key_type_id", c_u32),
        ("btf_value_type_id", c_u32), ("_pad", c_u32), ("map_extra", c_u64),
    ]


class ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info (what we read)."""

    _fields_ = [
        ("type", c_u32), ("id", c_u32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", c_u32), ("xlated_prog_len", c_u32),
        ("jited_prog_insns", c_u64), ("xlated_prog_insns", c_u64),
        ("load_time", c_u64), ("created_by_uid", c_u32), ("nr_map_ids", c_u32),
        ("map_ids", c_u64), ("name", ctypes.c_char * 16),
    ]


def obj_info(fd: int, info: ctypes.Structure) -> ctypes.Structure:
    size = c_u32(ctypes.sizeof(info))
    check(lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), f"reading info of bpf fd {fd}")
    return info
