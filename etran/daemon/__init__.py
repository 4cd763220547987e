"""The per-host control-path daemon: see etran.daemon.daemon."""

from __future__ import annotations


def testbed_hook():
    """The test bed's per-host hook that starts and stops a daemon in every host."""
    from .launcher import DaemonHook

    return DaemonHook()
