"""Per-host hooks of the test bed: where the per-host daemon plugs in.

`Testbed.up(..., hooks=[hook])` calls `hook.start(bed, host)` for every host once the
network is up, and `Testbed.down()` (on the same object) calls `hook.stop(bed, host)` before
it removes anything. Whatever a hook leaves running inside a host's namespace is ended by
`down` anyway (it kills every process in the bed's namespaces), also from another process.

The daemon layer provides its hook as `etran.daemon.testbed_hook()` (returning a HostHook);
`etran testbed up --daemon` uses it through `daemon_hook()` below. A hook starts the daemon
inside the host's namespace with `host.popen([...])` (setns only: BPF pins stay visible).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from ..errors import TestbedError

if TYPE_CHECKING:
    from .bed import Host, Testbed


class HostHook(Protocol):
    def start(self, bed: Testbed, host: Host) -> None: ...

    def stop(self, bed: Testbed, host: Host) -> None: ...


def daemon_hook() -> HostHook:
    """The per-host daemon's hook, from etran.daemon.testbed_hook()."""
    try:
        module = importlib.import_module("etran.daemon")
        factory = module.testbed_hook
    except (ImportError, AttributeError) as e:
        raise TestbedError("the per-host daemon is not available yet (etran.daemon.testbed_hook is missing); "
                           "bring the bed up without --daemon") from e
    return factory()
