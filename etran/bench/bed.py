"""What benchmarks share about the test bed: a private bed that always goes away, CPU placement."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from .results import BenchError

NAME_PREFIX = "bench"


@contextlib.contextmanager
def own_testbed(name: str | None = None, hosts: int = 2, prefix: str = NAME_PREFIX, daemons: bool = False,
                **settings: Any) -> Iterator[Any]:
    """A fresh test bed (default: no rate limit), torn down at the end whatever happens:
    an error, Ctrl-C, SIGTERM (with registry.sigterm_as_interrupt), or a second Ctrl-C
    during the teardown itself.  `daemons`: an etran daemon on every host from the start
    (else start_daemons() later)."""
    from ..testbed import Testbed

    settings.setdefault("rate_gbit", None)
    if daemons:
        settings["hooks"] = [_daemon_hook()]
    bed = Testbed(name or f"{prefix}-{uuid.uuid4().hex[:6]}")
    try:
        bed.up(hosts=hosts, **settings)
        yield bed
    finally:
        deadline = time.monotonic() + 30
        while True:
            try:
                bed.down()
                break
            except KeyboardInterrupt:
                if time.monotonic() > deadline:
                    raise


def _daemon_hook() -> Any:
    from ..daemon import testbed_hook

    return testbed_hook()


def start_daemons(bed: Any, **settings: Any) -> None:
    """Start an etran daemon on every host of a live bed (`bed.up` on the same bed with the
    daemon hook: the network stays, `down` stops the daemons).  Pass the bed's link settings
    again (default: no rate limit).  Bare AF_XDP on a host's NIC is impossible from then on:
    the daemon's entrance program owns it."""
    settings.setdefault("rate_gbit", None)
    bed.up(hosts=len(bed.hosts), hooks=[_daemon_hook()], **settings)


def daemons_running(bed: Any) -> bool:
    """Every host of the bed has an etran daemon that answers."""
    from ..daemon.launcher import running

    hosts = bed.hosts
    return bool(hosts) and all(running(h.netns) for h in hosts)


def default_cpus() -> tuple[int, int] | None:
    """(client CPU, server CPU): the first two CPUs this process may use, or None with fewer."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


def parse_cpus(text: str | None) -> tuple[int, int] | None:
    """`--cpus CLIENT,SERVER` (None: default_cpus(); 'none': no pinning)."""
    if text is None:
        return default_cpus()
    if text.lower() in ("none", "no", "off"):
        return None
    try:
        c, s = (int(x) for x in text.split(","))
    except ValueError:
        raise BenchError(f"--cpus {text!r}: give CLIENT,SERVER CPU numbers (e.g. 0,1) or 'none'") from None
    if c < 0 or s < 0:
        raise BenchError(f"--cpus {text!r}: CPU numbers are not negative")
    return c, s
