"""`etran bench isolation`: one application's latency while another tenant floods.

Two hosts joined by a slow link (`--link-rate`, default 0.1 Gbit/s: slow enough that one
Python flooder fills it on this machine), an etran daemon on each.  The victim is an etran
UDP application: a request/response client on h1 (Poisson arrivals at `--victim-rate`
requests/s of `--victim-size` bytes: etran.bench.load's open loop, latency from the
scheduled arrival) and an echo server on h2.  The flooder is another etran UDP application
on h1 that sends `--flood-size`-byte datagrams to h2 as fast as it can: its traffic and the
victim's requests share the switch port towards h2.  Series (ratios are to `alone`):

  alone          the victim, nothing else running
  flood          the victim while the flooder floods
  flood-limited  the same, with a per-application rate limit on the flooder in its host's
                 egress hook (`etran policy add ratelimit --app iso-flooder --rate
                 --flood-limit`, default 25mbit): the kernel drops what is over the rate
                 before it reaches the wire

With `--victims etran-udp,homa,etran-tcp` (the default) the same is measured for a Homa RPC
victim (loadworker's `homa` endpoint: the client's requests are RPCs to a Homa server on h2):
`homa-alone` and `homa-flood`; and for an etran TCP victim (loadworker's `etran-tcp`
endpoint: one connection to an etran TCP server on h2, requests and responses length-prefixed
on the stream): `tcp-alone`, `tcp-flood` and `tcp-flood-limited`.  Under the table each
flooded series is compared with its own victim's `alone`.  TCP retransmits what the flood
drops, so its requests mostly come late rather than not at all: it counts one lost only after
3 s (the others after 0.5 s); a victim the flood starves (none answered) is reported as such.

Each flood lasts only while the victim measures (about the warm-up plus `--duration`
seconds, at most `--duration` + 30 s).  The victim's client and server share CPU 0 (both
block in select/poll) and the flooder spins on CPU 1 (`--cpus VICTIM,FLOODER`), so the
flooder's CPU does not come out of the victim's; what remains under `flood-limited` above
`alone` is the flooder's share of the machine (its kernel work on the other CPU, the
memory system), not the link.  Under each series: what the flooder sent (Gbit/s), what
reached the switch port towards h2 and what its queue dropped, and what the flooder's egress
hook dropped (the rate limit); and the queue of that switch port over time (bytes waiting in
its HTB queue, sampled every 20 ms: the `queue` figure).

Counts: time-based (`--duration`; `--count`/`--warmup` are not used).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, NamedTuple

from .. import ipc
from .bed import own_testbed, parse_cpus
from .loadbed import ClientSpec, LoadServer, QueueSampler, run_point
from .registry import RunContext, TimedBenchmark, register_benchmark
from .results import BenchError, Invocation, Series, ratio
from .worker import Worker

FLOODER = "iso-flooder"
VICTIM_PORT = 9600
FLOOD_PORT = 9700          # nobody listens there on h2: the kernel drops what the switch delivers
FLOOD_DELAY = 0.3
QUEUE_INTERVAL = 0.02      # seconds between samples of the queue towards h2
BASELINE = "alone"


class Victim(NamedTuple):
    prefix: str            # of its series' names
    group: str
    limited: bool          # also flooded with the flooder rate-limited
    timeout: float = 0.5   # seconds after which a request counts as lost (and the drain at the end)


# TCP retransmits what the flood drops (RTO 0.2 s and up, doubling), so its requests are mostly
# answered late rather than lost; the longer timeout measures that lateness. An unlimited flood
# can starve it outright (run_point's starved_ok: a result, not a failure)
VICTIMS = {"etran-udp": Victim("", "etran UDP", True), "homa": Victim("homa-", "etran Homa", False),
           "etran-tcp": Victim("tcp-", "etran TCP", True, timeout=3.0)}


@register_benchmark
class IsolationBenchmark(TimedBenchmark):
    name = "isolation"
    help = "multi-tenant isolation: an app's latency alone, under another tenant's flood, and with a rate limit"
    description = __doc__ or ""
    baseline = BASELINE
    duration = 4.0
    quick_duration = 1.0
    extra_columns = (("throughput_rps", "req/s"), ("lost", "lost"), ("flood_gbit_s", "flood Gb/s"),
                     ("port_gbit_s", "to port Gb/s"), ("switch_drops", "port drops"), ("hook_drops", "hook drops"))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        self.add_duration_argument(parser)
        parser.add_argument("--link-rate", type=float, default=0.1, metavar="GBIT",
                            help="rate of every test-bed link, Gbit/s (default 0.1)")
        parser.add_argument("--flood-limit", default="25mbit", metavar="RATE",
                            help="the flooder's rate limit in flood-limited (default 25mbit)")
        parser.add_argument("--flood-size", type=int, default=1472, help="flood datagram payload bytes (default 1472)")
        parser.add_argument("--victim-rate", type=float, default=1000.0, metavar="REQ/S",
                            help="the victim's offered load, Poisson (default 1000/s)")
        parser.add_argument("--victim-size", type=int, default=64, help="victim request and response bytes (default 64)")
        parser.add_argument("--poll", choices=("block", "busy"), default="block",
                            help="the victim waits in select/poll (default) or spins")
        parser.add_argument("--cpus", metavar="VICTIM,FLOODER",
                            help="CPUs of the victim (client and server) and of the flooder (default: the first two; "
                                 "'none': no pinning)")
        parser.add_argument("--victims", default=",".join(VICTIMS), metavar="EP,EP",
                            help="victim transports, comma-separated (default %(default)s: etran UDP and "
                                 "etran TCP alone, flooded and flooded with the limit; Homa RPCs alone and flooded)")
        parser.add_argument("--name", metavar="BED", help="test bed name (default: bench-<random>)")

    @staticmethod
    def _victims(a: argparse.Namespace) -> list[str]:
        eps = [x.strip() for x in (a.victims or "").split(",") if x.strip()]
        if not eps or any(e not in VICTIMS for e in eps):
            raise BenchError(f"--victims: a comma-separated choice of {', '.join(VICTIMS)}")
        return eps

    def params(self, ctx: RunContext) -> dict[str, Any]:
        a = ctx.args
        from ..daemon.policy import parse_rate

        if not 12 <= a.victim_size <= 1472 or not 8 <= a.flood_size <= 1472:
            raise BenchError("--victim-size between 12 and 1472 bytes, --flood-size between 8 and 1472")
        if a.victim_rate <= 0 or a.link_rate <= 0:
            raise BenchError("--victim-rate and --link-rate must be positive")
        cpus = parse_cpus(a.cpus)
        return {"duration_s": self.duration_of(ctx), "victims": self._victims(a), "warmup_s": 0.2 if ctx.quick else 0.5,
                "link_rate_gbit": a.link_rate, "flood_limit": a.flood_limit,
                "flood_limit_bytes_per_s": parse_rate(a.flood_limit), "flood_size": a.flood_size,
                "victim_rate_rps": a.victim_rate, "victim_size": a.victim_size, "poll": a.poll,
                "cpus": {"victim": cpus[0], "flooder": cpus[1]} if cpus else None,
                "testbed": {"hosts": 2, "rate_gbit": a.link_rate, "daemons": True}}

    def run(self, ctx: RunContext) -> None:
        a = ctx.args
        inv = ctx.invocation
        cpus = parse_cpus(a.cpus)
        victim_cpu, flood_cpu = cpus if cpus else (None, None)
        duration, warmup = inv.params["duration_s"], inv.params["warmup_s"]
        with own_testbed(a.name, hosts=2, daemons=True, rate_gbit=a.link_rate) as bed:
            inv.params["testbed"]["name"] = bed.name
            h1, h2 = bed.hosts[:2]
            for victim_ep in self._victims(a):
                pre, group, limited, timeout = VICTIMS[victim_ep]
                port = VICTIM_PORT + list(VICTIMS).index(victim_ep)
                with LoadServer(h2, endpoint=victim_ep, port=port, cpu=victim_cpu, poll=a.poll, time_limit=3600,
                                app_name="iso-victim-server" + (f"-{pre.rstrip('-')}" if pre else "")) as server:
                    victim = [ClientSpec(h1, ["--mode", "open", "--rate", str(a.victim_rate), "--size",
                                              str(a.victim_size), "--app-name", "iso-victim"], victim_cpu)]
                    base = {"group": group, "mode": "open", "offered_rps": a.victim_rate, "size": a.victim_size,
                            "link_rate_gbit": a.link_rate, "victim": victim_ep}
                    common = dict(server=server, clients=victim, duration=duration, warmup=warmup,
                                  progress=ctx.progress, keep_samples=ctx.keep_samples, poll=a.poll, bed=bed,
                                  timeout=timeout, drain=timeout)
                    with QueueSampler(bed, "h2", interval=QUEUE_INTERVAL) as q:
                        s = run_point(inv, f"{pre}alone", f"{group} victim alone", params={**base, "flood": None},
                                      **common)
                    s.info["queue_timeline"] = q.timeline()
                    floods = [("flood", f"{group} victim, neighbour flooding", None)]
                    if limited:
                        floods.append(("flood-limited", f"{group} victim, neighbour flooding, limited to "
                                                        f"{a.flood_limit}", a.flood_limit))
                    for name, label, limit in floods:
                        self._flooded(inv, bed, f"{pre}{name}", label, limit, a, flood_cpu, duration + timeout + 30,
                                      params={**base, "flood": {"size": a.flood_size, "limit": limit}},
                                      common=common)
        from .scale import others_note

        others_note(inv)

    def _flooded(self, inv: Invocation, bed: Any, name: str, label: str, limit: str | None, a: argparse.Namespace,
                 cpu: int | None, cap: float, params: dict[str, Any], common: dict[str, Any]) -> Series:
        h1, h2 = bed.hosts[:2]
        flooder = Worker(h1, "etran.bench.loadworker",
                         ["flood", "--endpoint", "etran-udp", "--peer", f"{h2.ip}:{FLOOD_PORT}", "--size",
                          str(a.flood_size), "--app-name", FLOODER, "--delay", str(FLOOD_DELAY),
                          "--time-limit", str(cap)], cpu=cpu, name=f"{name} flooder")
        try:
            try:
                flooder.wait_ready(timeout=60)
                if limit is not None:
                    with ipc.Client(ipc.socket_path(h1.netns)) as c:
                        c.call("policy_add", kind="ratelimit", params={"rate": limit, "burst": None, "app": FLOODER})
            except Exception as e:
                return inv.new_series(name, label, params=params, error=f"flooder: {str(e).splitlines()[0]}",
                                      info={"error_detail": str(e)})
            time.sleep(FLOOD_DELAY)  # the flood is on before the victim starts (it takes longer to start)
            before = bed.switch_stats().get("h2", {})
            t0 = time.monotonic()
            with QueueSampler(bed, "h2", interval=QUEUE_INTERVAL) as q:
                s = run_point(inv, name, label, params=params, extra_pids=[flooder.proc.pid], starved_ok=True,
                              **common)
            wall = time.monotonic() - t0
            after = bed.switch_stats().get("h2", {})
            s.info["queue_timeline"] = q.timeline()
            hook = self._flooder_drops(h1)
        finally:
            flood = flooder.stop() or {}
            flood_tail = flooder.stderr_tail() if not flood else ""
            flooder.close()
        # what reached the switch port towards h2 (its eBPF counter sits before the queue), what its queue dropped
        offered = (after.get("bytes", 0) - before.get("bytes", 0)) * 8 / wall / 1e9 if wall > 0 else None
        s.info.update({
            "flood_gbit_s": flood.get("gbit_s"), "flood_pps": flood.get("pps"), "flood_sent": flood.get("sent"),
            "flooder_cpu_util": flood.get("cpu_util"),
            "port_gbit_s": round(offered, 4) if offered is not None else None,
            "switch_drops": (after.get("qdisc_drops", 0) - before.get("qdisc_drops", 0)),
            "switch_sent_packets": (after.get("qdisc_packets", 0) - before.get("qdisc_packets", 0)),
            "hook_drops": sum(hook.values()) if hook else 0, "hook_drops_by_reason": hook,
        })
        if not flood:
            s.info["flood_error"] = flood_tail or "the flooder reported nothing"
        return s

    @staticmethod
    def _flooder_drops(host: Any) -> dict[str, int]:
        """The egress hook's drops of the flooder application, by reason (from its daemon)."""
        try:
            with ipc.Client(ipc.socket_path(host.netns)) as c:
                stats = c.call("stats")
        except Exception:
            return {}
        for app in stats.get("apps", []):
            if app.get("name") == FLOODER:
                return {str(k): int(v) for k, v in (app.get("drops") or {}).items()}
        return {}

    def summary(self, inv: Invocation) -> list[str]:
        return summary_lines(inv)


def summary_lines(inv: Invocation) -> list[str]:
    lines: list[str] = []
    rate = inv.params.get("link_rate_gbit")
    ran = {s.name: s for s in inv.series}
    for pre in (v.prefix for v in VICTIMS.values()):
        for flood in ("flood", "flood-limited"):
            lines += _flood_line(inv, ran.get(f"{pre}{flood}"), inv.measured(f"{pre}alone"), flood, rate)
    return lines


def _flood_line(inv: Invocation, s: Series | None, ref: Series | None, flood: str, rate: Any) -> list[str]:
    """The line under the table for one flooded series: against its own victim alone, or that
    the flood starved it."""
    from .report import fmt_ratio

    what = "flooding" if flood == "flood" else f"flooding, limited to {inv.params.get('flood_limit')}"
    if s is not None and s.info.get("starved"):
        return [(f"{s.params.get('group')} victim while a neighbour is {what}: {s.error} "
                 f"(the switch port dropped {s.info.get('switch_drops')} packets)")]
    if s is None or not s.ok or ref is None:
        return []
    return [(f"{s.params.get('group')} victim while a neighbour is {what}, vs alone: p50 "
             f"{fmt_ratio(ratio(s, ref, 'p50'))}x, "
             f"p99 {fmt_ratio(ratio(s, ref, 'p99'))}x, p999 {fmt_ratio(ratio(s, ref, 'p999'))}x "
             f"(the flooder sent {s.info.get('flood_gbit_s')} Gbit/s towards a {rate} Gbit/s link, "
             f"{s.info.get('port_gbit_s')} Gbit/s reached the switch port, which dropped "
             f"{s.info.get('switch_drops')} packets; its egress hook dropped {s.info.get('hook_drops')})")]
