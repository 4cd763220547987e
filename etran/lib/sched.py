"""Scheduler hints for the threads that clock a transport (applications and the daemon)."""

from __future__ import annotations

import struct

SLICE_NS = 100_000               # the scheduler slice the library asks for (EEVDF's minimum, 0.1 ms)
_SCHED_ATTR = struct.Struct("IIQiIQQQII")


def request_short_slice(slice_ns: int = SLICE_NS) -> bool:
    """Ask the scheduler (EEVDF, Linux >= 6.12) for a short slice for this thread.

    Why: an application's library is the clock of its flows (each ACK batch wakes a TCP sender
    to send the next part of the window; each reply wakes an RPC client), and the daemon's
    loop runs the timers. On a loaded machine a waking thread with the default slice waits
    behind CPU-bound threads for several ms, longer than a 60 KB switch queue lasts at
    100 Mbit/s, so the link idles. A short slice gives the thread an earlier deadline, so it
    runs (and preempts) at once when its frames arrive; it costs nothing when the machine is
    idle and needs no privilege. $ETRAN_SLICE_US overrides (0: leave the scheduler alone).
    Returns whether the request was taken."""
    import ctypes
    import os
    import platform

    env = os.environ.get("ETRAN_SLICE_US")
    if env is not None:
        slice_ns = int(float(env) * 1000)
    nr = {"x86_64": 314, "aarch64": 274}.get(platform.machine())
    if not slice_ns or nr is None:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        cur = ctypes.create_string_buffer(_SCHED_ATTR.size)
        if libc.syscall(nr + 1, 0, cur, _SCHED_ATTR.size, 0) != 0:        # sched_getattr
            return False
        size, policy, flags, nice, prio, *_ = _SCHED_ATTR.unpack(cur.raw)
        if policy not in (0, 3):     # SCHED_OTHER / SCHED_BATCH only: never touch real-time settings
            return False
        attr = ctypes.create_string_buffer(_SCHED_ATTR.pack(_SCHED_ATTR.size, policy, 0, nice, 0, slice_ns, 0, 0, 0, 0))
        return libc.syscall(nr, 0, attr, 0) == 0                         # sched_setattr
    except (OSError, AttributeError):
        return False
