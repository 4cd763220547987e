"""Entering network namespaces from Python without a new mount namespace.

`ip netns exec` unshares the mount namespace, which hides pins in /sys/fs/bpf.  setns(2)
with CLONE_NEWNET moves only the calling thread into the network namespace, so BPF pins,
the file system and every other thread stay as they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from .errors import EtranError, PrivilegeError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def path_of(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path_of(name))


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == 1:  # EPERM
            raise PrivilegeError("entering a network namespace", "CAP_SYS_ADMIN")
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def enter(name: str | None) -> Iterator[None]:
    """Run the body with this thread inside network namespace `name` (None: stay where we are)."""
    if name is None:
        yield
        return
    if not exists(name):
        raise EtranError(f"network namespace {name!r} does not exist; is the test bed up? (etran testbed status)")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path_of(name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def enter_forever(name: str) -> None:
    """Move this thread into `name` for good (used by `etran exec` before exec)."""
    if not exists(name):
        raise EtranError(f"network namespace {name!r} does not exist; is the test bed up? (etran testbed status)")
    fd = os.open(path_of(name), os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)
