"""Running etran applications in test-bed hosts as unprivileged users.

The application side of etran needs no privileges: these helpers run it as user nobody
(uid 65534, no capabilities) with the system Python and a world-readable copy of the
etran package, so the test does not depend on where the checkout lives. Applications print
one JSON object per line; `App.read()` parses them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
REPO = Path(__file__).resolve().parent.parent


def world_readable_package(dest: Path) -> Path:
    """Copy the etran package under `dest` (readable by everyone); returns the PYTHONPATH."""
    shutil.copytree(REPO / "etran", dest / "etran", ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, files in os.walk(dest):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    d = dest
    while d != d.parent:  # every parent must be searchable
        os.chmod(d, os.stat(d).st_mode | 0o111)
        d = d.parent
    return dest


class App:
    """An application process in a host's namespace."""

    def __init__(self, proc: subprocess.Popen, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[dict[str, Any]] = []

    def read(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next JSON line the application printed."""
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise TimeoutError(f"{self.name} printed nothing within {timeout} s; stderr: {self.stderr()}")
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}); stderr: {self.stderr()}")
            if line.startswith("{"):
                msg = json.loads(line)
                self.lines.append(msg)
                return msg

    def wait_for(self, key: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read(max(0.1, deadline - time.monotonic()))
            if key in msg:
                return msg

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()[-3000:]

    def finish(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait for the exit; every remaining JSON line. Raises if it failed."""
        out, err = self.proc.communicate(timeout=timeout)
        for line in out.splitlines():
            if line.startswith("{"):
                self.lines.append(json.loads(line))
        if self.proc.returncode != 0:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{err[-3000:]}")
        return self.lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def spawn(host, code: str, pythonpath: Path, name: str = "app", args: tuple[Any, ...] = (),
          unprivileged: bool = True, env: dict[str, str] | None = None) -> App:
    """Run `code` (Python source; `args` in sys.argv[1:]) as an etran application in `host`'s namespace."""
    argv = [SYSTEM_PYTHON, "-u", "-c", textwrap.dedent(code), *(str(a) for a in args)]
    if unprivileged:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", *argv]
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath), "HOME": "/tmp",
                   "PYTHONDONTWRITEBYTECODE": "1", "ETRAN_APP_NAME": name, **(env or {})}
    proc = host.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                      env=environment, cwd="/")
    return App(proc, f"{name} on {host.name}")
