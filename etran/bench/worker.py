"""Benchmark worker processes: `python -m etran.bench.<module>` inside a test-bed host.

Both sides of the protocol live here.

Child (the worker program), writing one line per event to stdout:
    READY                       set up, the peer may start
    PROGRESS <done> <total>     every few percent of the work
    RESULT <json>               the outcome, once, at the end
    ERROR <message>             it failed (then exit status 1)
`child_setup()` pins the child to a CPU, makes SIGTERM and a dying parent end it
cleanly (the `finally` blocks that close sockets and detach XDP programs still run).
`ClientRun` is a measuring client's bookkeeping (a LatencyRecorder, counters, warm-up,
time limit, progress); `stopped(loop, ...)` runs a loop until done or stopped.

Parent: `Worker(host, module, args, cpu=...)` starts the child in the host's network
namespace (only the network namespace: BPF pins stay visible), reads its lines on a
thread, and `wait_ready()`, `result()` or `stop()` it, each bounded in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .results import BenchError
from .stats import LatencyRecorder

PR_SET_PDEATHSIG = 1
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


# ---- child side -------------------------------------------------------------------------

class Stop(BaseException):
    """Raised in a worker by SIGTERM/SIGINT: unwind, clean up, report."""


def _raise_stop(signum: int, frame: Any) -> None:
    # Once: a second signal (Ctrl-C reaches the whole process group, then the parent
    # sends SIGTERM) must not interrupt the clean-up and the report.  The parent
    # SIGKILLs a worker that does not end within a few seconds.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def child_setup(cpu: int | None) -> int | None:
    """Pin to `cpu` (None: leave it), die with the parent, turn SIGTERM/SIGINT into Stop.
    Returns the CPU actually pinned to, or None."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            return None
        return cpu
    return None


def emit(kind: str, payload: str = "") -> None:
    sys.stdout.write(f"{kind} {payload}\n" if payload else f"{kind}\n")
    sys.stdout.flush()


def emit_result(result: dict[str, Any]) -> None:
    emit("RESULT", json.dumps(result, separators=(",", ":")))


class ProgressEmitter:
    """Call `tick(done)` from a loop; it emits PROGRESS about every 2 % (cheap in between:
    one comparison)."""

    __slots__ = ("total", "step", "next")

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = max(total // 50, 100)
        self.next = self.step

    def tick(self, done: int) -> None:
        if done >= self.next:
            self.next = done + self.step
            emit("PROGRESS", f"{done} {self.total}")


class Switches:
    """Context switches of this process since it was made: `involuntary` ones mean the
    CPU was taken away (another process, a kernel thread), which shows up in the tail."""

    def __init__(self) -> None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.nvcsw, self.nivcsw = r.ru_nvcsw, r.ru_nivcsw

    def since(self) -> dict[str, int]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return {"voluntary_switches": r.ru_nvcsw - self.nvcsw, "involuntary_switches": r.ru_nivcsw - self.nivcsw}


class Counter:
    """A mutable count a loop updates and its caller reads after a Stop."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class ClientRun:
    """Bookkeeping of a measuring client: a LatencyRecorder, lost/corrupt counters, the
    warm-up, the time limit (`deadline_ns`, perf_counter_ns), progress, context switches.
    A loop does `warmup + count` operations (`total`) and hands each to `record()`, which
    keeps those after the warm-up, counts the lost ones and says when the deadline has
    passed (then `truncated` is set).  `result()` is the RESULT payload (samples included)."""

    def __init__(self, count: int, warmup: int, time_limit: float, op_timeout: float = 1.0) -> None:
        self.warmup = warmup
        self.count = count
        self.total = warmup + count
        self.recorder = LatencyRecorder()
        self.lost = 0
        self.corrupt = 0
        self.truncated = False
        self.interrupted = False
        self.progress = ProgressEmitter(count)
        self.timeout_ns = int(op_timeout * 1e9)
        self.started = time.perf_counter_ns()
        self.deadline_ns = self.started + int(time_limit * 1e9)
        self.switches = Switches()

    def record(self, i: int, t0: int, t1: int, ok: bool = True) -> bool:
        """Operation `i` ran from t0 to t1 (ns): count it lost (not `ok`) or, past the warm-up,
        record it. True when the time limit has passed (`truncated` set): the loop stops."""
        if not ok:
            self.lost += 1
        elif i >= self.warmup:
            self.recorder.append(t1 - t0)
            self.progress.tick(i - self.warmup + 1)
        if t1 > self.deadline_ns:
            self.truncated = i + 1 < self.total
            return True
        return False

    def result(self, **extra: Any) -> dict[str, Any]:
        return {"samples": self.recorder.tolist(), "measured": len(self.recorder), "lost": self.lost,
                "corrupt": self.corrupt, "truncated": self.truncated, "interrupted": self.interrupted,
                "elapsed_s": round((time.perf_counter_ns() - self.started) / 1e9, 3), **self.switches.since(),
                **extra}


RUN_INFO = ("measured", "lost", "corrupt", "truncated", "interrupted", "elapsed_s")  # ClientRun.result's counts


def close_workers(*workers: Any) -> None:
    """Close the workers that were started (None: never started)."""
    for w in workers:
        if w is not None:
            w.close()


def run_counts(res: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
    """A measuring client's RESULT split: its samples (removed from it), its ClientRun counts."""
    return res.pop("samples", []), {k: res.get(k) for k in RUN_INFO}


def stopped(loop: Callable[..., Any], *args: Any) -> bool:
    """Run `loop(*args)`; True if SIGTERM/SIGINT (Stop) ended it.

    Write every measuring or serving loop as its own function called through here, never
    as a loop inside `try: ... except Stop` in the same function: CPython 3.11 raises a
    signal handler's exception at a loop's backward jump (a `continue`) outside the
    enclosing try's range, so the except clause is skipped; across a call it is always
    caught."""
    try:
        loop(*args)
    except Stop:
        return True
    return False


def run_worker_main(run: Callable[[], dict[str, Any]], cpu: int | None, /, **extra: Any) -> int:
    """The `main()` of a worker program: pin to `cpu`, call `run` (the role), report its RESULT
    (with the CPU and `extra`) or an ERROR; the exit status."""
    import traceback

    cpu = child_setup(cpu)
    try:
        result = run()
    except Stop:
        emit("ERROR", "stopped before it was ready")
        return 1
    except Exception as e:  # noqa: BLE001 (report any failure as the worker's ERROR line)
        traceback.print_exc()
        emit("ERROR", f"{type(e).__name__}: {e}")
        return 1
    result["cpu"] = cpu
    result.update(extra)
    emit_result(result)
    return 0


# ---- parent side ------------------------------------------------------------------------

class Worker:
    """A worker program running in `host` (an etran.testbed.Host, or None: here)."""

    def __init__(self, host: Any, module: str, args: Sequence[str], cpu: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None, name: str | None = None) -> None:
        self.name = name or module.rsplit(".", 1)[-1]
        self.on_progress = on_progress
        self.lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.ready = False
        self._result: dict[str, Any] | None = None
        self._error: str | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+")
        argv = [sys.executable, "-m", module, *args] + (["--cpu", str(cpu)] if cpu is not None else [])
        env = dict(os.environ)
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        popen = host.popen if host is not None else (lambda a, **kw: subprocess.Popen(a, **kw))
        self.proc: subprocess.Popen = popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
                                            text=True, bufsize=1, env=env)
        self._reader = threading.Thread(target=self._read, name=f"bench-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                kind, _, payload = line.rstrip("\n").partition(" ")
                self.lines.put((kind, payload))
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put(None)

    def _pump(self, timeout: float) -> bool:
        """Handle lines for up to `timeout` s; False when the output has ended."""
        try:
            item = self.lines.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return True
        if item is None:
            self.lines.put(None)  # keep the end marker for later calls
            return False
        kind, payload = item
        if kind == "READY":
            self.ready = True
        elif kind == "PROGRESS":
            if self.on_progress is not None:
                with contextlib.suppress(ValueError):
                    done, total = (int(x) for x in payload.split()[:2])
                    self.on_progress(done, total)
        elif kind == "RESULT":
            try:
                self._result = json.loads(payload)
            except ValueError as e:
                self._error = f"unreadable result ({e})"
        elif kind == "ERROR":
            self._error = payload
        return True

    def stderr_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            return "\n".join(self._stderr.read().strip().splitlines()[-lines:])
        return ""

    def _failure(self, what: str) -> BenchError:
        tail = self.stderr_tail()
        msg = f"{self.name}: {what}"
        if self._error:
            msg += f": {self._error}"
        if tail:
            msg += "\n" + tail
        return BenchError(msg)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._failure(f"not ready within {timeout:.0f} s")
            if not self._pump(min(left, 0.2)):
                self.proc.wait(timeout=5)
                raise self._failure(f"exited (status {self.proc.returncode}) before it was ready")

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait (at most `timeout` s) for the RESULT line and the exit; raise BenchError on failure."""
        deadline = time.monotonic() + timeout
        while self._result is None and self._error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise self._failure(f"no result within {timeout:.0f} s (stopped)")
            if not self._pump(min(left, 0.2)):
                break
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
        if self._result is None:
            raise self._failure(f"ended (status {self.proc.returncode}) without a result")
        return self._result

    def stop(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """SIGTERM (the worker cleans up and may still report), then SIGKILL; returns its result if any."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                self._pump(0.05)
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        end = time.monotonic() + 1.0
        while self._result is None and time.monotonic() < end and self._pump(0.05):
            pass
        return self._result

    def close(self) -> None:
        self.stop()
        self._reader.join(timeout=2)  # the child is gone: its stdout reaches EOF
        with contextlib.suppress(Exception):
            if self.proc.stdout is not None and not self._reader.is_alive():
                self.proc.stdout.close()
        with contextlib.suppress(Exception):
            self._stderr.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tcp_connect(ip: str, peer: tuple[str, int]) -> socket.socket:
    """A kernel TCP client socket for a benchmark: bound to `ip`, connected (10 s at most),
    TCP_NODELAY, blocking."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((ip, 0))
        s.settimeout(10)
        s.connect(peer)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(None)
    except BaseException:
        s.close()
        raise
    return s


def tcp_serve_one(ip: str, port: int, time_limit: float, serve: Callable[[socket.socket], Any]) -> dict[str, Any]:
    """A kernel TCP server for a benchmark: listen on ip:port, READY, then `serve(conn)` the one
    client that connects within `time_limit` s (TCP_NODELAY; through stopped(), so SIGTERM ends
    it). Returns the context switches meanwhile."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((ip, port))
        ls.listen(1)
        ls.settimeout(time_limit)
        emit("READY")
        sw = Switches()
        stopped(_serve_one, ls, serve)
        return sw.since()
    finally:
        ls.close()


def _serve_one(ls: socket.socket, serve: Callable[[socket.socket], Any]) -> None:
    try:
        c, _ = ls.accept()
    except TimeoutError:
        return
    try:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        serve(c)
    finally:
        c.close()
