"""Running load workers (etran.bench.loadworker) on a test bed, and their results as series.

    with LoadServer(h1, endpoint="etran-udp", port=9500, cpu=1) as server:
        s = run_point(inv, "clients-10", "10 clients", server=server,
                      clients=[ClientSpec(h2, ["--mode", "closed", "--outstanding", "10", "--conns", "10"])],
                      duration=2.0, ...)

`run_point` starts every client (each a process in its host), waits until all are ready,
starts them together (SIGUSR1), and merges what they measured into one series of `inv`:
the latency samples of all clients, and in `info` the throughput (their sum), losses, the
CPU time of the server and the clients (and, given the bed, its daemons) and how busy the whole machine was meanwhile
(`machine_busy`, from /proc/stat; `bench_cpus` of it this benchmark's processes, `other_cpus`
the rest: other users' work, and kernel threads, some of which may be doing this benchmark's
packet work).  `cpu_bound` says when a
CPU, not the network, was the limit: the server's process near a full core, or both cores
of the machine near fully busy.  A point that fails becomes a series with `error` set.

`QueueSampler` records a switch port's queue occupancy over time (for the `queue` figure).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .load import merge, quantile_points
from .results import BenchError, Invocation, Series
from .worker import Worker

MODULE = "etran.bench.loadworker"
MAX_KEPT_SAMPLES = 20_000      # raw samples kept in the JSON file (with --samples) per series at most
SERVER_SATURATED = 0.85        # server CPU time / wall time above this: its core is the limit
MACHINE_SATURATED = 0.90       # machine busy fraction above this: the CPUs are the limit
OTHERS_NOTABLE = 0.3           # CPUs used by processes outside the benchmark worth a mention
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def daemon_pids(bed: Any) -> list[int]:
    """The pids of the etran daemons of a bed's hosts (from their pid files)."""
    from ..daemon.launcher import pid_path

    pids = []
    for h in bed.hosts:
        try:
            with open(pid_path(h.netns)) as f:
                pids.append(int(f.read().strip()))
        except (OSError, ValueError):
            pass
    return pids


def process_cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a process so far (from /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


class MachineCpu:
    """How busy all CPUs were between construction and `busy()` (0..1), from /proc/stat."""

    def __init__(self) -> None:
        self.t0 = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                parts = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts[:8]), idle

    def busy(self) -> float | None:
        t1 = self._read()
        if self.t0 is None or t1 is None or t1[0] <= self.t0[0]:
            return None
        total, idle = t1[0] - self.t0[0], t1[1] - self.t0[1]
        return round(1 - idle / total, 3)


class LoadServer:
    """A loadworker server in `host` (bound and ready when the constructor returns)."""

    def __init__(self, host: Any, *, endpoint: str = "etran-udp", port: int = 9500, cpu: int | None = None,
                 poll: str = "block", time_limit: float = 600.0, app_name: str | None = None) -> None:
        self.host, self.endpoint, self.port, self.cpu = host, endpoint, port, cpu
        args = ["server", "--endpoint", endpoint, "--port", str(port), "--poll", poll,
                "--time-limit", str(time_limit)]
        if app_name:
            args += ["--app-name", app_name]
        self.worker = Worker(host, MODULE, args, cpu=cpu, name=f"{endpoint} server on {host.name}")
        try:
            self.worker.wait_ready(timeout=60)
        except BaseException:
            self.worker.close()
            raise

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{self.port}"

    @property
    def pid(self) -> int:
        return self.worker.proc.pid

    def alive(self) -> bool:
        return self.worker.proc.poll() is None

    def close(self) -> dict[str, Any] | None:
        res = self.worker.stop()
        self.worker.close()
        return res

    def __enter__(self) -> LoadServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ClientSpec:
    """One client process: its host and its loadworker client arguments (beyond --endpoint,
    --peer, --duration, --warmup, --go)."""

    host: Any
    args: list[str] = field(default_factory=list)
    cpu: int | None = None


def run_point(inv: Invocation, name: str, label: str, *, server: LoadServer, clients: Sequence[ClientSpec],
              duration: float, warmup: float, params: dict[str, Any] | None = None, progress: Any = None,
              keep_samples: bool = False, poll: str = "block", extra_info: dict[str, Any] | None = None,
              timeout: float = 0.5, drain: float = 0.5, bed: Any = None, extra_pids: Sequence[int] = (),
              starved_ok: bool = False) -> Series:
    """Run the clients against `server` side by side and add their merged result to `inv`.
    `bed`: the test bed, whose daemons' CPU time then counts as this benchmark's (as does
    that of `extra_pids`, e.g. a load generator running beside the clients).
    `starved_ok`: a point where no request completes is a result (a victim a flood starves),
    marked `info["starved"]`, not a failure of the benchmark."""
    params = dict(params or {})
    params.update({"endpoint": server.endpoint, "server": f"{server.host.name} {server.address}",
                   "client_hosts": sorted({c.host.name for c in clients}), "client_processes": len(clients),
                   "duration_s": duration, "warmup_s": warmup, "poll": poll})
    task = progress.add(label, total=1000) if progress is not None else None

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=done, total=total)

    workers: list[Worker] = []
    try:
        if not server.alive():
            raise BenchError(f"the {server.endpoint} server on {server.host.name} is not running")
        for i, c in enumerate(clients):
            args = ["client", "--endpoint", server.endpoint, "--peer", server.address, "--duration", str(duration),
                    "--warmup", str(warmup), "--poll", poll, "--timeout", str(timeout), "--drain", str(drain),
                    "--seed", str(1000 + i), "--go", *c.args]
            workers.append(Worker(c.host, MODULE, args, cpu=c.cpu, on_progress=on_progress if i == 0 else None,
                                  name=f"{name} client {i + 1} on {c.host.name}"))
        for w in workers:
            w.wait_ready(timeout=90)
        machine = MachineCpu()
        server_cpu0 = process_cpu_seconds(server.pid)
        daemons = (daemon_pids(bed) if bed is not None else []) + list(extra_pids)
        daemon_cpu0 = [process_cpu_seconds(p) for p in daemons]
        t0 = time.monotonic()
        for w in workers:
            w.proc.send_signal(signal.SIGUSR1)
        limit = warmup + duration + drain + max(timeout, 1.0) + 60
        results = [w.result(timeout=limit) for w in workers]
        wall = time.monotonic() - t0
        busy = machine.busy()
        server_cpu1 = process_cpu_seconds(server.pid)
        daemon_cpu1 = [process_cpu_seconds(p) for p in daemons]
    except BenchError as e:
        return inv.failed_series(name, label, e, params)
    finally:
        for w in workers:
            w.close()
    m = merge(results)
    samples = m.pop("samples")
    m.pop("sizes", None)
    server_util = None
    if server_cpu0 is not None and server_cpu1 is not None and wall > 0:
        server_util = round((server_cpu1 - server_cpu0) / wall, 3)
    client_utils = [r.get("cpu_util") for r in results]
    # CPUs (on average over the point) used by this benchmark's processes, and by everything else
    ours = (server_util or 0.0) + sum(float(u or 0) for u in client_utils)
    daemon_util = sum((b - a) for a, b in zip(daemon_cpu0, daemon_cpu1) if a is not None and b is not None) / max(wall, 1e-9)
    ours += daemon_util
    ncpus = os.cpu_count() or 1
    others = max(0.0, (busy or 0.0) * ncpus - ours) if busy is not None else None
    info: dict[str, Any] = {
        "throughput_rps": round(m["throughput_rps"]), "offered_rps": m["offered_rps"], "completed": m["completed"],
        "issued": m["issued"], "lost": m["lost"], "late": m["late"], "unsent": m["unsent"],
        "backlog_max": m["backlog_max"], "window_s": m["window_s"], "clients": len(results),
        "per_client_rps": [r.get("throughput_rps") for r in results],
        "client_cpu_util": client_utils, "server_cpu_util": server_util, "machine_busy": busy,
        "cpu_busy": f"{busy:.0%}" if busy is not None else None,
        "bench_cpus": round(ours, 2), "other_cpus": round(others, 2) if others is not None else None,
        "daemon_cpus": round(daemon_util, 3) if daemons else None,
        "client_poll": results[0].get("poll") if results else None,
        "involuntary_switches": sum(int(r.get("involuntary_switches") or 0) for r in results),
    }
    limits = []
    if server_util is not None and server_util >= SERVER_SATURATED:
        limits.append(f"server core saturated ({server_util:.0%} of a CPU)")
    if busy is not None and busy >= MACHINE_SATURATED:
        if others is not None and others >= OTHERS_NOTABLE:
            limits.append(f"both CPUs busy ({busy:.0%}), {others:.1f} CPU of it not this benchmark's processes")
        else:
            limits.append(f"both CPUs busy ({busy:.0%}) with this test bed's processes")
    info["cpu_bound"] = bool(limits)
    info["limit"] = "; ".join(limits) if limits else None
    if samples:
        info["quantiles"] = quantile_points(samples)
    info["samples_kept"] = bool(keep_samples and len(samples) <= MAX_KEPT_SAMPLES)
    info.update(extra_info or {})
    error = None
    if m["interrupted"]:
        error = "interrupted"
    elif not samples and starved_ok:
        info["starved"] = True
        error = f"starved: none of {m['lost']:,} requests completed within {timeout:g} s"
    elif not samples:
        error = f"no request completed ({m['lost']} lost)"
    s = inv.new_series(name, label, samples=samples, params=params, info=info, error=error,
                       keep_samples=info["samples_kept"])
    if progress is not None:
        progress.update(task, completed=1000, total=1000)
    return s


class QuotaDaemonHook:
    """Like etran.daemon.testbed_hook(), with a larger per-application port quota (for
    clients that hold hundreds of sockets), and daemons only on the hosts in `first` (host
    indexes; None: all) when the bed comes up: an idle daemon costs CPU on this small machine,
    so a benchmark starts the others (`start_on`) when it needs them."""

    def __init__(self, max_ports: int, first: Sequence[int] | None = None) -> None:
        self.extra = ["--max-ports", str(max_ports)]
        self.first = set(first) if first is not None else None

    def start(self, bed: Any, host: Any) -> None:
        if self.first is None or host.index in self.first:
            self.start_on(host)

    def start_on(self, host: Any) -> None:
        from ..daemon import launcher

        launcher.start(host.netns, host.ifname, extra=self.extra)

    def stop(self, bed: Any, host: Any) -> None:
        from ..daemon import launcher

        launcher.stop(host.netns)


class QueueSampler:
    """Samples the queue of a switch port (the egress towards `host`) every `interval` s on a
    thread, for the `queue` figure:

        with QueueSampler(bed, "h2", interval=0.01) as q:
            ...                                  # run the flows
        series.info["queue_timeline"] = q.timeline()

    source "qdisc": the bytes waiting in the port's HTB queue (what packets really wait in;
    netlink, a few ms per sample); "phantom": the ECN marker's phantom queue (arrivals minus
    the link rate, what DCTCP's marks follow; it does not model drops, so under overload it
    grows past the real queue).  Needs a link rate on that port (else zeros)."""

    def __init__(self, bed: Any, host: str = "h2", interval: float = 0.01, source: str = "qdisc",
                 max_samples: int = 20_000) -> None:
        if source not in ("qdisc", "phantom"):
            raise BenchError(f"queue source {source!r}: 'qdisc' or 'phantom'")
        self.bed, self.host_name, self.interval, self.source = bed, host, interval, source
        self.max_samples = max_samples
        self.t: list[float] = []
        self.bytes: list[int] = []
        self._stop: Any = None
        self._thread: Any = None
        self.error: str | None = None

    def _reader(self) -> tuple[Any, Any]:
        host = self.bed.host(self.host_name)
        if self.source == "qdisc":
            return (lambda: int(self.bed.switch_stats().get(host.name, {}).get("qdisc_backlog", 0))), None
        from ..testbed.switch import SwitchMaps, stats_dict

        maps = SwitchMaps(self.bed.name)
        cfg = maps.config(host.port_ifindex)
        rate = cfg.rate_kbps if cfg is not None else 0

        def read() -> int:
            st = maps.stats(host.port_ifindex)
            return stats_dict(st, rate)["queue_now"] if st is not None else 0

        return read, maps

    def __enter__(self) -> QueueSampler:
        import threading

        read, closer = self._reader()
        self._stop = threading.Event()
        t0 = time.monotonic()

        def run() -> None:
            try:
                while not self._stop.is_set() and len(self.t) < self.max_samples:
                    t = time.monotonic() - t0
                    self.bytes.append(read())
                    self.t.append(round(t, 6))
                    self._stop.wait(self.interval)
            except Exception as e:  # a sample that fails ends the timeline, not the benchmark
                self.error = f"{type(e).__name__}: {e}"
            finally:
                if closer is not None:
                    closer.close()

        self._thread = threading.Thread(target=run, name="queue-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def timeline(self) -> dict[str, Any]:
        return {"t_s": list(self.t), "bytes": list(self.bytes), "source": self.source, "host": self.host_name}
