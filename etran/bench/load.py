"""A load generator: open loop (Poisson arrivals at an offered load) and closed loop (N
outstanding), over any request/response transport, in one thread.

The transport is an `Endpoint`: the client side split in two phases, so one thread keeps
many requests outstanding without a thread or a coroutine per request:

    class Endpoint(Protocol):
        def send(self, conn: int, tag: int, size: int, response_size: int) -> None
            # issue one request of `size` bytes on connection `conn` (0 .. conns-1) whose
            # response (`response_size` bytes) carries `tag` back
        def poll(self, timeout: float) -> Iterable[int]
            # the tags of the responses that arrived, waiting up to `timeout` s for one

(`conns` is whatever the transport multiplexes over: sockets, connections, RPC clients.)
`CallableEndpoint` adapts a plain blocking `call(size, response_size)`, one request at a
time.  Worker programs that drive real transports in test-bed hosts are in
etran.bench.loadworker, which has a registry of endpoints (etran UDP and kernel UDP now;
Homa and TCP add theirs).

Closed loop (`LoadSpec(mode="closed", outstanding=N)`): N clients, each with one request
outstanding; client c uses connection c % conns; a response (or a timeout) makes that client
issue its next request at once.  Latency runs from the send to the response.

Open loop (`mode="open", rate=R`): requests arrive as a Poisson process of rate R/s
(exponential gaps from a seeded RNG), whatever the responses do, spread round-robin over
the connections.  Latency runs from the *scheduled* arrival, not the send, so a generator
or transport that falls behind shows up as latency instead of silently lowering the load
(no coordinated omission).  At most `max_outstanding` requests are in flight; arrivals
beyond wait in the generator (their wait counts) and are reported as `backlog_max`.  At most
SEND_BURST requests go out between two looks for responses, so a generator that is behind
keeps receiving (else the responses to its own burst would overflow its receive ring).

Both: nothing is measured for `warmup` seconds, then the measured window of `duration`
seconds: requests issued (closed) or scheduled (open) in it are measured; completions in it
give the throughput.  After the window the generator stops issuing and waits up to `drain`
seconds for what is outstanding; a request unanswered `timeout` seconds after it was sent
is lost (a late response to it is counted, not measured).

Also here: `slowdown_by_size` (for W1-W5 style workloads: latency over the unloaded latency
of the same size, by size bucket) and `quantile_points` (a compact CDF for the JSON file and
the plots when the raw samples are not kept).
"""

from __future__ import annotations

import array
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

MODES = ("open", "closed")
SEND_BURST = 16  # open loop: requests sent at most between two polls for responses


class Endpoint(Protocol):
    def send(self, conn: int, tag: int, size: int, response_size: int) -> None: ...

    def poll(self, timeout: float) -> Iterable[int]: ...


SizeSpec = int | Callable[[random.Random], int]


@dataclass
class LoadSpec:
    """What to offer: see the module docstring."""

    mode: str = "closed"
    rate: float | None = None          # open: offered requests per second (Poisson)
    outstanding: int = 1               # closed: clients, each with one request outstanding
    conns: int = 1                     # connections (sockets, RPC clients) to spread requests over
    duration: float = 2.0              # measured seconds
    warmup: float = 0.2                # unmeasured seconds first
    drain: float = 0.5                 # seconds to wait for outstanding requests after the window
    timeout: float = 0.5               # a request not answered within this is lost
    size: SizeSpec = 64                # request bytes, or a function of an RNG (a size distribution)
    response_size: int | None = None   # None: as large as the request (echo)
    max_outstanding: int = 1024        # open: in-flight cap (the rest waits, and its wait counts)
    seed: int = 1
    record_sizes: bool = False         # keep each measured request's size (for slowdown by size)

    def validate(self) -> LoadSpec:
        if self.mode not in MODES:
            raise ValueError(f"load mode {self.mode!r}: 'open' or 'closed'")
        if self.mode == "open" and not (self.rate and self.rate > 0):
            raise ValueError("an open loop needs a positive rate (requests per second)")
        if self.outstanding < 1 or self.conns < 1 or self.max_outstanding < 1:
            raise ValueError("outstanding, conns and max_outstanding must be at least 1")
        if self.duration <= 0 or self.warmup < 0 or self.drain < 0 or self.timeout <= 0:
            raise ValueError("duration and timeout must be positive, warmup and drain not negative")
        return self

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        if callable(self.size):
            d["size"] = getattr(self.size, "__name__", "distribution")
        return d


@dataclass
class LoadResult:
    """What one generator run measured (latencies in ns)."""

    mode: str
    samples: array.array = field(default_factory=lambda: array.array("q"))
    sizes: array.array | None = None
    issued: int = 0            # requests sent, all phases
    measured_issued: int = 0   # requests of the measured window (sent or still waiting at the end)
    completed: int = 0         # responses that arrived in the measured window (the throughput)
    lost: int = 0              # measured requests with no response within the timeout (or the drain; includes unsent)
    late: int = 0              # responses that came after their request was counted lost
    unsent: int = 0            # open loop: measured arrivals never sent (the in-flight cap)
    backlog_max: int = 0       # open loop: most arrivals waiting for the in-flight cap
    window_s: float = 0.0
    elapsed_s: float = 0.0
    offered_rps: float | None = None
    interrupted: bool = False

    @property
    def throughput_rps(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else 0.0

    def to_dict(self, with_samples: bool = True) -> dict[str, Any]:
        d = {"mode": self.mode, "issued": self.issued, "measured_issued": self.measured_issued,
             "completed": self.completed, "lost": self.lost, "late": self.late, "unsent": self.unsent,
             "backlog_max": self.backlog_max, "window_s": round(self.window_s, 6),
             "elapsed_s": round(self.elapsed_s, 3), "offered_rps": self.offered_rps,
             "throughput_rps": round(self.throughput_rps, 1), "measured": len(self.samples),
             "interrupted": self.interrupted}
        if with_samples:
            d["samples"] = self.samples.tolist()
            if self.sizes is not None:
                d["sizes"] = self.sizes.tolist()
        return d


def _size_fn(spec: LoadSpec, rng: random.Random) -> Callable[[], int]:
    if callable(spec.size):
        dist = spec.size
        return lambda: int(dist(rng))
    fixed = int(spec.size)
    return lambda: fixed


def run_load(endpoint: Endpoint, spec: LoadSpec, *, clock: Callable[[], int] = time.perf_counter_ns,
             on_progress: Callable[[float], None] | None = None,
             stop: Callable[[], bool] | None = None) -> LoadResult:
    """Drive `endpoint` as `spec` says; returns what was measured.

    `on_progress(fraction)` is called now and then (fraction of warmup + window elapsed);
    `stop()`, when it returns True, ends the run early (the result says `interrupted`)."""
    spec.validate()
    rng = random.Random(spec.seed)
    next_size = _size_fn(spec, rng)
    resp_fixed = spec.response_size
    res = LoadResult(mode=spec.mode, sizes=array.array("l") if spec.record_sizes else None)
    samples_append = res.samples.append
    sizes_append = res.sizes.append if res.sizes is not None else None
    timeout_ns = int(spec.timeout * 1e9)
    t_begin = clock()
    w_start = t_begin + int(spec.warmup * 1e9)
    w_end = w_start + int(spec.duration * 1e9)
    drain_end = w_end + int(spec.drain * 1e9)
    total_ns = max(1, w_end - t_begin)
    send, poll = endpoint.send, endpoint.poll
    conns = spec.conns
    # in flight: tag -> (start ns, sent ns, measured, client or -1, size); insertion order = send order.
    # Latency runs from the start (open loop: the scheduled arrival), the loss timeout from the send.
    inflight: dict[int, tuple[int, int, bool, int, int]] = {}
    lost_tags: set[int] = set()
    tag = 0
    next_sweep = t_begin + min(timeout_ns, 10_000_000)
    next_progress = t_begin

    def issue(start_ns: int, client: int, conn: int) -> None:
        nonlocal tag
        size = next_size()
        tag += 1
        measured = w_start <= start_ns < w_end
        inflight[tag] = (start_ns, clock(), measured, client, size)
        send(conn, tag, size, resp_fixed if resp_fixed is not None else size)
        res.issued += 1
        if measured:
            res.measured_issued += 1

    def complete(t: int, rec: tuple[int, int, bool, int, int]) -> None:
        start_ns, _, measured, _, size = rec
        if measured:
            samples_append(t - start_ns)
            if sizes_append is not None:
                sizes_append(size)
        if w_start <= t < w_end:
            res.completed += 1

    def collect(done: Iterable[int], reissue: bool = False) -> None:
        """Complete the requests these response tags answer; count late answers to lost ones.
        `reissue` (closed loop): each answered client sends its next request at once (so each
        answer is timed on its own, after the sends before it)."""
        t = clock()
        for tag in done:
            rec = inflight.pop(tag, None)
            if rec is None:
                if tag in lost_tags:
                    res.late += 1
                continue
            if reissue:
                t = clock()
            complete(t, rec)
            if reissue and t < w_end:
                c = rec[3]
                issue(t, c, c % conns)

    def stopping(now: int) -> bool:
        """A turn of the send loop: report progress now and then; True once stop() says so."""
        nonlocal next_progress
        if stop is not None and stop():
            res.interrupted = True
            return True
        if now >= next_progress and on_progress is not None:
            on_progress(min(1.0, (now - t_begin) / total_ns))
            next_progress = now + 50_000_000
        return False

    def sweep(now: int) -> list[int]:
        """Count requests older than the timeout as lost; returns their clients (closed loop)."""
        cutoff = now - timeout_ns
        dead = []
        for t, rec in inflight.items():
            if rec[1] >= cutoff:
                break
            dead.append(t)
        clients = []
        for t in dead:
            rec = inflight.pop(t)
            lost_tags.add(t)
            if rec[2]:
                res.lost += 1
            clients.append(rec[3])
        return clients

    if spec.mode == "closed":
        n = spec.outstanding
        now = clock()
        for c in range(n):
            issue(now, c, c % conns)
        while True:
            now = clock()
            if stopping(now):
                break
            if now >= w_end:
                break
            if now >= next_sweep:
                next_sweep = now + min(timeout_ns, 10_000_000)
                for c in sweep(now):
                    issue(clock(), c, c % conns)
            collect(poll(min(0.01, (w_end - now) / 1e9)), reissue=True)
    else:
        rate = float(spec.rate or 0)
        res.offered_rps = rate
        mean_gap_ns = 1e9 / rate
        expo = rng.expovariate
        next_arrival = float(t_begin)
        backlog: deque[int] = deque()
        cap = spec.max_outstanding
        rr = 0
        while True:
            now = clock()
            if stopping(now):
                break
            if now >= w_end and not backlog:
                break
            while next_arrival <= now and next_arrival < w_end:
                backlog.append(int(next_arrival))
                next_arrival += expo(1.0) * mean_gap_ns
            res.backlog_max = max(res.backlog_max, len(backlog))
            burst = SEND_BURST  # then receive: a long run of sends would let responses overflow the RX ring
            while backlog and len(inflight) < cap and burst:
                issue(backlog.popleft(), -1, rr)
                burst -= 1
                rr += 1
                if rr == conns:
                    rr = 0
            if now >= next_sweep:
                next_sweep = now + min(timeout_ns, 10_000_000)
                sweep(now)
            if now >= w_end:
                # the window is over but arrivals still wait for the cap: they are unsent
                res.unsent = sum(1 for a in backlog if w_start <= a < w_end)
                res.measured_issued += res.unsent
                res.lost += res.unsent
                backlog.clear()
                break
            wait = (next_arrival - clock()) / 1e9 if not backlog else 0.0  # behind: only look for responses
            done = poll(max(0.0, min(wait, 0.01, (w_end - now) / 1e9)))
            if done:
                collect(done)
    # drain: no new requests; wait for the outstanding ones (bounded)
    while inflight and not res.interrupted:
        now = clock()
        if now >= drain_end or (stop is not None and stop()):
            break
        sweep(now)
        if not inflight:
            break
        done = poll(min(0.01, (drain_end - now) / 1e9))
        if done:
            collect(done)
    for rec in inflight.values():  # never answered
        if rec[2]:
            res.lost += 1
    inflight.clear()
    end = clock()
    res.window_s = (min(end, w_end) - w_start) / 1e9 if end > w_start else 0.0
    res.elapsed_s = (end - t_begin) / 1e9
    if on_progress is not None:
        on_progress(1.0)
    return res


class CallableEndpoint:
    """An Endpoint over a blocking request/response callable `call(size, response_size)`:
    one request at a time (closed loop with one outstanding; an open loop then queues its
    arrivals in the generator, which counts their wait)."""

    def __init__(self, call: Callable[[int, int], Any]) -> None:
        self.call = call
        self._done: list[int] = []

    def send(self, conn: int, tag: int, size: int, response_size: int) -> None:
        self.call(size, response_size)
        self._done.append(tag)

    def poll(self, timeout: float) -> list[int]:
        done, self._done = self._done, []
        if not done and timeout > 0:
            time.sleep(min(timeout, 0.001))
        return done


# ---- combining and summarising results ---------------------------------------------------

def merge(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several clients' result dicts (LoadResult.to_dict plus extras) as one: samples
    concatenated, counters summed, throughput summed (their windows run side by side)."""
    out: dict[str, Any] = {"samples": [], "clients": len(results)}
    sizes: list[int] = []
    for key in ("issued", "measured_issued", "completed", "lost", "late", "unsent"):
        out[key] = sum(int(r.get(key) or 0) for r in results)
    for r in results:
        out["samples"].extend(r.get("samples") or [])
        sizes.extend(r.get("sizes") or [])
    if sizes:
        out["sizes"] = sizes
    out["throughput_rps"] = round(sum(float(r.get("throughput_rps") or 0) for r in results), 1)
    offered = [r.get("offered_rps") for r in results if r.get("offered_rps") is not None]
    out["offered_rps"] = sum(offered) if offered else None
    out["backlog_max"] = max((int(r.get("backlog_max") or 0) for r in results), default=0)
    out["window_s"] = max((float(r.get("window_s") or 0) for r in results), default=0.0)
    out["interrupted"] = any(r.get("interrupted") for r in results)
    return out


QUANTILE_POINTS = 200


def quantile_points(samples: Sequence[int], points: int = QUANTILE_POINTS) -> dict[str, list]:
    """A compact CDF: the nearest-rank quantiles (ns) at about `points` fractions, half of
    them evenly spaced, half in the tail (q = 1 - 10^-x up to one sample from the top), plus
    the minimum (q 0) and the maximum (q 1).  Every point is a measured latency."""
    from .stats import percentile

    s = sorted(samples)
    if not s:
        return {"q": [], "ns": []}
    n = len(s)
    top = max(1.0, math.log10(n))  # no finer than one sample
    half = points // 2
    body = {round(i / half, 6) for i in range(1, half)}                     # evenly spaced
    tail = {round(1 - 10 ** (-top * i / half), 6) for i in range(1, half + 1)}  # 0.9, 0.99, ... densely
    qs = sorted(body | tail | {0.5, 0.9, 0.99})
    qs = [q for q in qs if 0 < q <= 1]
    return {"q": [0.0, *qs, 1.0], "ns": [s[0], *(percentile(s, q) for q in qs), s[-1]]}


def slowdown_by_size(sizes: Sequence[int], latencies: Sequence[int], unloaded: Callable[[int], float],
                     buckets: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Slowdown (latency over the unloaded latency of a message of that size) by size bucket:
    [{"size": upper bound of the bucket, "count", "p50", "p99"}].  `buckets`: upper bounds
    (default: powers of two from the smallest size to the largest)."""
    from .stats import percentile

    if len(sizes) != len(latencies):
        raise ValueError("one size per latency")
    if not sizes:
        return []
    if buckets is None:
        lo, hi = max(1, min(sizes)), max(sizes)
        b, buckets = 1 << max(0, (lo - 1).bit_length()), []
        while True:
            buckets.append(b)
            if b >= hi:
                break
            b <<= 1
    bounds = sorted(buckets)
    groups: dict[int, list[float]] = {b: [] for b in bounds}
    for size, lat in zip(sizes, latencies):
        for b in bounds:
            if size <= b:
                base = unloaded(size)
                groups[b].append(lat / base if base > 0 else float("inf"))
                break
    out = []
    for b in bounds:
        g = sorted(groups[b])
        if g:
            out.append({"size": b, "count": len(g), "p50": percentile(g, "p50"), "p99": percentile(g, "p99")})
    return out


def load_levels(peak_rps: float, fractions: Sequence[float]) -> list[float]:
    """Offered loads for a throughput-vs-load sweep: fractions of a measured peak, to two
    significant digits."""
    return [float(f"{peak_rps * f:.2g}") for f in fractions if peak_rps * f > 0]
