"""Shared pytest set-up.

Tests marked `kernel` need root, BPF, AF_XDP and network namespaces.  Where the machine
cannot run them they skip with the reason; with ETRAN_REQUIRE_KERNEL=1 (as .ci/run sets)
the same condition is a failure, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import sys
import shutil
import uuid

import pytest

from etran import sysinfo

sys.path.insert(0, os.path.dirname(__file__))  # test helpers (etran_apps) import as modules


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = sysinfo.kernel_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("ETRAN_REQUIRE_KERNEL") == "1":
        return  # _require_kernel turns the condition into a failure
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"needs the kernel: {reason}"))


@pytest.fixture(autouse=True)
def _require_kernel(request: pytest.FixtureRequest) -> None:
    if "kernel" not in request.keywords:
        return
    reason = sysinfo.kernel_unavailable_reason()
    if reason is not None and os.environ.get("ETRAN_REQUIRE_KERNEL") == "1":
        pytest.fail(f"ETRAN_REQUIRE_KERNEL=1 but the kernel tests cannot run: {reason}")


@pytest.fixture
def unique_name() -> str:
    """A short prefix unique to this test, for test-bed objects (netns names are global)."""
    return "t" + uuid.uuid4().hex[:6]


@pytest.fixture
def veth_ns(unique_name):
    """A namespace with a veth pair va <-> vb (both up), removed afterwards whatever happens."""
    from pyroute2 import NetNS
    from pyroute2 import netns as p2netns

    name = f"{unique_name}-veth"
    p2netns.create(name)
    try:
        with NetNS(name) as ns:
            ns.link("add", ifname="va", kind="veth", peer={"ifname": "vb"})
            for ifname in ("va", "vb"):
                ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")
        yield name
    finally:
        p2netns.remove(name)


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None


@pytest.fixture
def testbed(unique_name: str):
    """Factory for test beds that are always torn down, even when the test fails.

    `bed = testbed(hosts=2, rate_gbit=1, ecn_threshold_kb=30, loss=0.01, ...)` brings up
    an etran.testbed.Testbed named after the test's unique prefix (a second call in the same
    test gets another name) and returns it; teardown runs `down()` on every bed made.
    """
    from etran.testbed import Testbed

    beds: list[Testbed] = []

    def make(hosts: int = 2, **settings):
        bed = Testbed(unique_name if not beds else f"{unique_name}{len(beds)}")
        beds.append(bed)
        return bed.up(hosts=hosts, **settings)

    yield make
    failures = []
    for bed in beds:
        try:
            bed.down()
        except Exception as e:  # keep tearing down the others
            failures.append(e)
    if failures:
        raise failures[0]


@pytest.fixture(scope="session")
def app_pythonpath():
    """A world-readable copy of the etran package for applications run as user nobody.

    Its own directory, not pytest's basetemp: a concurrent pytest run prunes old basetemps."""
    import tempfile
    from pathlib import Path

    from etran_apps import world_readable_package

    path = Path(tempfile.mkdtemp(prefix="etran-apps-"))
    try:
        yield world_readable_package(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def etran_bed(testbed):
    """Factory: a test bed with an etran daemon on every host (all stopped at teardown)."""
    from etran.daemon import testbed_hook

    def make(hosts: int = 2, **settings):
        return testbed(hosts=hosts, hooks=[testbed_hook()], **settings)

    return make


@pytest.fixture
def apps():
    """Collects spawned applications and kills the ones still running at teardown."""
    spawned = []
    yield spawned
    for app in spawned:
        app.kill()


def _leftovers() -> list[str]:
    """Test-bed objects of this suite still on the machine (names start with 't' + 6 hex digits)."""
    import re
    import subprocess

    ours = re.compile(r"^t[0-9a-f]{6}")
    found = []
    if os.path.isdir("/run/netns"):
        found += [f"netns {n}" for n in os.listdir("/run/netns") if ours.match(n)]
    if os.path.isdir("/sys/fs/bpf/etran"):
        found += [f"pin /sys/fs/bpf/etran/{n}" for n in os.listdir("/sys/fs/bpf/etran") if ours.match(n)]
    if os.path.isdir("/sys/fs/bpf"):
        found += [f"pin /sys/fs/bpf/{n}" for n in os.listdir("/sys/fs/bpf") if n.startswith("etran-test")]
    if os.path.isdir("/run/etran"):
        found += [f"file /run/etran/{n}" for n in os.listdir("/run/etran") if ours.match(n)]
    for pid in filter(str.isdigit, os.listdir("/proc")):  # /proc, not ps: procps may not be installed
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "etran daemon" in args and re.search(r"--netns t[0-9a-f]{6}", args):
            found.append(f"process {pid} {args.strip()}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
              if re.match(r"\d+: (etk|eta)\d", line) or " xdp" in line]
    return found


_preexisting: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        _preexisting.update(_leftovers())  # not ours to judge: what was there before the suite


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the suite nothing of it may remain: namespaces, veths, XDP programs, pins, daemons."""
    if os.geteuid() != 0 or getattr(session.config, "workerinput", None) is not None:
        return
    if os.environ.get("ETRAN_SKIP_LEFTOVER_CHECK") == "1":  # several suites running at once on one machine
        return
    found = [f for f in _leftovers() if f not in _preexisting]
    if found:
        print("\netran: the test suite left these behind:\n  " + "\n  ".join(found))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
