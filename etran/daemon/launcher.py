"""Starting and stopping daemons as processes (what `etran testbed up` uses)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from .. import ipc
from ..errors import EtranError

if TYPE_CHECKING:
    from ..testbed.bed import Host, Testbed

LOG_DIR = os.path.join(ipc.RUN_DIR, "log")


def log_path(host: str) -> str:
    return os.path.join(LOG_DIR, f"{host}.log")


def pid_path(host: str) -> str:
    return os.path.join(ipc.RUN_DIR, f"{host}.pid")


def running(host_netns: str) -> int:
    """The pid of the host's daemon if it is up and answering, else 0."""
    try:
        with open(pid_path(host_netns)) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        with ipc.Client(ipc.socket_path(host_netns), timeout=2) as c:
            c.call("ping")
        return pid
    except (OSError, ValueError, EtranError):
        return 0


def start(host_netns: str, dev: str = "eth0", timeout: float = 20.0, extra: list[str] | None = None) -> int:
    """Start `etran daemon` for a host namespace (unless one answers already) and wait until
    it answers; returns its pid."""
    pid = running(host_netns)
    if pid:
        return pid
    os.makedirs(LOG_DIR, exist_ok=True)
    log = open(log_path(host_netns), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "etran", "daemon", "--dev", dev, "--netns", host_netns, *(extra or [])],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    with open(pid_path(host_netns), "w") as f:
        f.write(str(proc.pid))
    path = ipc.socket_path(host_netns)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EtranError(f"the etran daemon for {host_netns} exited with {proc.returncode}; "
                             f"see {log_path(host_netns)}:\n{_tail(log_path(host_netns))}")
        if os.path.exists(path):
            with contextlib.suppress(EtranError, OSError):
                with ipc.Client(path, timeout=2) as c:
                    c.call("ping")
                    return proc.pid
        time.sleep(0.05)
    stop(host_netns)
    raise EtranError(f"the etran daemon for {host_netns} did not answer within {timeout:.0f} s; "
                     f"see {log_path(host_netns)}")


def stop(host_netns: str, timeout: float = 10.0) -> None:
    """SIGTERM the host's daemon (it cleans up), SIGKILL if it hangs; remove its files."""
    try:
        with open(pid_path(host_netns)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        pid = 0
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                os.kill(pid, 0)
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
    for path in (pid_path(host_netns), ipc.socket_path(host_netns)):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class DaemonHook:
    """The test bed's per-host hook: a daemon on each host's eth0."""

    def start(self, bed: Testbed, host: Host) -> None:
        start(host.netns, host.ifname)

    def stop(self, bed: Testbed, host: Host) -> None:
        stop(host.netns)
