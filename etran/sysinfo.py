"""What this machine can do: root, bpffs, clang, libbpf, AF_XDP. Used for clear errors and test skips."""

from __future__ import annotations

import ctypes.util
import functools
import os
import shutil
import socket
import subprocess

BPFFS = "/sys/fs/bpf"


def is_bpffs_mounted(path: str = BPFFS) -> bool:
    try:
        with open("/proc/mounts") as f:
            return any(line.split()[1] == path and line.split()[2] == "bpf" for line in f)
    except OSError:
        return False


def ensure_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf if it is not there (needs root)."""
    if not is_bpffs_mounted():
        os.makedirs(BPFFS, exist_ok=True)
        subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], check=True)


@functools.cache
def kernel_unavailable_reason() -> str | None:
    """None when kernel tests can run here, else why not (and what to do)."""
    if os.geteuid() != 0:
        return "not root (run the tests as root: sudo ./bootstrap test)"
    if shutil.which("clang") is None:
        return "clang is not installed (./bootstrap installs it)"
    if ctypes.util.find_library("bpf") is None and not os.path.exists("/usr/lib/x86_64-linux-gnu/libbpf.so.1"):
        return "libbpf.so.1 is not installed (apt-get install libbpf1)"
    if not os.path.isdir("/run/netns") and shutil.which("ip") is None:
        return "iproute2 is not installed"
    try:
        s = socket.socket(44, socket.SOCK_RAW)  # AF_XDP
        s.close()
    except OSError as e:
        return f"AF_XDP sockets are not available ({e})"
    if not is_bpffs_mounted():
        try:
            ensure_bpffs()
        except (OSError, subprocess.CalledProcessError) as e:
            return f"bpffs is not mounted at {BPFFS} and mounting failed ({e})"
    return None
