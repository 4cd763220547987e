"""Transparent mode: `etran run -- CMD` carries an unmodified Python program's TCP over etran.

* `etran run -- python3 -m http.server` on one host serves a 5 MB file that curl, on another
  host with the kernel's TCP, downloads intact.
* A urllib client under `etran run` downloads from a plain `python3 -m http.server` (kernel TCP).
Both run as user nobody; the daemons' statistics show the traffic went through etran.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from etran_apps import NOBODY

from etran import ipc

pytestmark = pytest.mark.kernel

VENV_PYTHON = sys.executable  # has the CLI's dependencies; the served program is the system python3


@pytest.fixture
def www():
    d = tempfile.mkdtemp(prefix="etran-www-")
    os.chmod(d, 0o755)
    data = os.urandom(5 << 20)
    with open(os.path.join(d, "f.bin"), "wb") as f:
        f.write(data)
    os.chmod(os.path.join(d, "f.bin"), 0o644)
    try:
        yield d, hashlib.sha256(data).hexdigest()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", *argv]


def tcp_apps(host) -> list[dict]:
    with ipc.Client(ipc.socket_path(host.netns)) as c:
        return [a for a in c.call("stats")["apps"] if a.get("tcp")]


def wait_port(host, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(port in a["tcp"].get("listening", []) for a in tcp_apps(host)):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on etran TCP port {port} on {host.name}")


def test_etran_run_http_server_serves_curl_on_a_linux_host(etran_bed, app_pythonpath, www):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    root, sha = www
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(app_pythonpath), "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
           "ETRAN_APP_NAME": "httpd"}
    server = h2.popen(as_nobody([VENV_PYTHON, "-m", "etran", "run", "--", "/usr/bin/python3", "-m", "http.server",
                                 "8000", "--bind", h2.ip]), cwd=root, env=env, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    try:
        wait_port(h2, 8000)
        out = os.path.join(root, "got.bin")
        r = h1.run(["curl", "-sS", "--max-time", "60", "-o", out, "-w", "%{http_code}", f"http://{h2.ip}:8000/f.bin"],
                   capture_output=True, text=True, timeout=90)
        assert r.stdout == "200", r.stderr
        with open(out, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sha
        httpd = next(a for a in tcp_apps(h2) if a["name"] == "httpd")
        assert httpd["tx_bytes"] > 5 << 20, "the file did not go out through etran"
        assert not httpd["drops"].get("malformed") and not httpd["drops"].get("not_owner")
    finally:
        server.kill()
        server.wait()


URLLIB_CLIENT = r"""
import hashlib, json, sys, urllib.request
import socket
with urllib.request.urlopen(sys.argv[1], timeout=60) as r:
    data = r.read()
print(json.dumps({"sha": hashlib.sha256(data).hexdigest(), "n": len(data),
                  "carried": socket.socket.__name__}), flush=True)
"""


def test_etran_run_urllib_client_downloads_from_a_linux_http_server(etran_bed, app_pythonpath, apps, www):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    root, sha = www
    kernel_server = h2.popen(as_nobody(["/usr/bin/python3", "-m", "http.server", "8001", "--bind", h2.ip]), cwd=root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(app_pythonpath), "HOME": "/tmp", "ETRAN_APP_NAME": "urllib"}
        code = URLLIB_CLIENT
        r = h1.run(as_nobody([VENV_PYTHON, "-m", "etran", "run", "--", "/usr/bin/python3", "-c", code,
                              f"http://{h2.ip}:8001/f.bin"]), env=env, capture_output=True, text=True, timeout=120,
                   cwd="/")
        assert r.returncode == 0, r.stderr
        import json

        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res["carried"] == "EtranSocket" and "over the kernel" not in r.stderr, r.stderr
        assert res["n"] == 5 << 20 and res["sha"] == sha
    finally:
        kernel_server.kill()
        kernel_server.wait()
