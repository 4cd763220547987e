"""Homa's control path in the daemon (HomaModule homa_timer.c, homa_plumbing.c's sysctls).

The data path is eBPF (etran/kernel/bpf/homa.bpf.c); this plug-in does what is rare or slow:

* ports: `homa.bind` / `homa.unbind` (the kernel's `ports` map), and a block of client RPC ids
  per application (`homa_apps[slot]`: the egress hook refuses ids outside it, so tenants can
  never name each other's RPCs);
* the host's Homa parameters (`homa.config`, settable by root): written to `homa_cfg`;
* timers, every `timer_interval_ns`: a pass over the kernel's RPC table that issues RESENDs
  for missing ranges (and the latest GRANT again) after a silent interval, BUSY from clients
  that hold a message back themselves, NEED_ACK for fully sent responses, and gives up after
  `timeout_resends` unanswered tries: a client RPC is aborted (the application gets a NOTIFY
  frame and raises ETIMEDOUT), a server RPC is freed; acked server RPCs (kept DEAD so late
  duplicates are not served twice) are reaped. Packets go out as live frames (XDP_GEN).
* cutoffs: every second, unscheduled priority cutoffs from the message sizes the data path
  has seen (a histogram in `homa_sizes`), published with a new version; peers learn them
  from CUTOFFS packets the data path sends when a DATA packet carries an old version;
* reclaim: an application's ports, id block and RPCs go when it does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import dataclasses
import errno
import logging
import secrets
import socket
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import EtranError
from ..homa import wire
from ..homa.config import HomaConfig
from ..homa.cutoffs import compute_cutoffs
from ..kernel.structs import (
    GenDesc, HomaApp, HomaConfigC, HomaCounter, HomaCtlCmd, HomaCtlOp, HomaLimits, HomaRpc, HomaRpcFlags,
    HomaRpcKey, HomaRpcState, HomaSched, HomaStats,
)
from .transports import TRANSPORTS, PortTable, Transport

if TYPE_CHECKING:
    from .daemon import App, Daemon

log = logging.getLogger("etran.daemon.homa")

# homa_stats: the client_rpcs and server_rpcs counters (adjacent)
_CREATED = struct.Struct("<QQ")
_CREATED_OFF = 8 * int(HomaCounter.HOMA_C_CLIENT_RPCS)
_STATE_OFF = HomaRpc.state.offset
_DONE_OFF = HomaRpc.done_ns.offset
# a table element's state and done_ns, and the rest skipped: iter_unpack over a batch of elements
_STATE_DONE = struct.Struct(f"<{_STATE_OFF}xB{_DONE_OFF - _STATE_OFF - 1}xQ{ctypes.sizeof(HomaRpc) - _DONE_OFF - 8}x")
assert int(HomaCounter.HOMA_C_SERVER_RPCS) == int(HomaCounter.HOMA_C_CLIENT_RPCS) + 1

IDLE_NAP_MAX_NS = 100_000_000   # the timer's nap with ports bound and no RPCs, at most
IDLE_UNBOUND_S = 1.0            # ... and with no port bound (a bind wakes it anyway)
ID_BLOCK = 1 << 24          # client ids per block (even ids: 2^23 RPCs)
XDP_PASS = 2
BUCKETS = int(HomaLimits.HOMA_SIZE_BUCKETS)
OUTGOING, INCOMING, IN_SERVICE, DEAD = (int(HomaRpcState.HOMA_RPC_OUTGOING), int(HomaRpcState.HOMA_RPC_INCOMING),
                                        int(HomaRpcState.HOMA_RPC_IN_SERVICE), int(HomaRpcState.HOMA_RPC_DEAD))
SENT_ANY = int(HomaRpcFlags.HOMA_RPCF_SENT_ANY)
SCHED_FLAGS = int(HomaRpcFlags.HOMA_RPCF_SCHED | HomaRpcFlags.HOMA_RPCF_OVERFLOW)


def _table_walk(table: Any) -> Iterator[tuple[bytes, bytes, int, int, int]]:
    """The RPC table's elements as (keys, values, index, state, done_ns): read in batches, all
    before the caller acts on any, and only these two fields taken apart (in C, by
    iter_unpack). Under a steady RPC load most elements are acked server RPCs kept DEAD for
    dead_rpc_ns, and the timer's pass must stay cheap: it preempts busy-polling applications."""
    for kr, vr, _n in list(table.lookup_batch_raw(512)):
        for i, (state, done_ns) in enumerate(_STATE_DONE.iter_unpack(vr)):
            yield kr, vr, i, state, done_ns


def default_config() -> HomaConfig:
    """etran's defaults: HomaModule's, with
    * a 2 ms timer (the daemon is Python) and twenty tries before giving up (about 210 ms of
      silence: on a loaded machine the daemons' ticks, and the applications that send the control
      packets queued for generation, can each stall for 100 ms and more);
    * rtt_bytes 30 KB: the bandwidth-delay product of this software path (a grant's round trip
      crosses two applications' event loops: 1 MB throughput 4.5 MB/s at 10 KB, 11 MB/s at 30 KB),
      but 10 KB unscheduled and at most 100 KB granted ahead in all, so short messages keep
      finding short queues;
    * grants of at least two packets (each GRANT costs a packet through the whole veth path)."""
    return HomaConfig(timer_interval_ns=2_000_000, resend_ticks=5, resend_interval=5, timeout_resends=20,
                      request_ack_ticks=2, grant_increment=2 * 1424, rtt_bytes=30_000, unsched_bytes=10_000,
                      max_incoming=100_000)


# parameters `homa.config` accepts (HomaConfig fields), plus the daemon's own
SETTABLE = {f.name for f in dataclasses.fields(HomaConfig)} | {"auto_cutoffs", "dead_rpc_ns"}
# A server gives up on an RPC this many times later than a client would: the client is the one
# that reports the failure, and a server that forgets first turns the client's next RESEND into
# an RPC_UNKNOWN (the daemons' ticks are not precise, and both sides count the same silence).
SERVER_PATIENCE = 2


def size_of_bucket(b: int) -> int:
    """The largest message length that lands in histogram bucket b (homa.bpf.c record_size)."""
    if b < 2:
        return b
    k, half = b // 2, b % 2
    # lengths with highest bit k; the next bit is `half`
    return (1 << k) + (1 << (k - 1)) - 1 if not half else (1 << (k + 1)) - 1


def bucket_of(length: int) -> int:
    if length < 2:
        return length
    k = length.bit_length() - 1
    return min(2 * k + ((length >> (k - 1)) & 1), BUCKETS - 1)


class _Track:
    """What the timer remembers about one RPC between ticks."""

    __slots__ = ("heard", "resends", "last_ns", "progress")

    def __init__(self, heard: int) -> None:
        self.heard = heard      # the kernel's heard_ns when we last looked
        self.resends = 0        # tries since then
        self.last_ns = 0        # our last try
        self.progress = 0       # the application was still sending then


class HomaTransport(Transport):
    name = "homa"
    proto = wire.IPPROTO_HOMA
    family = "homa"
    ingress = "homa_ingress"
    egress = "homa_egress"
    gen = "homa_gen"

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon)
        self.ports = PortTable(self, 0)   # no kernel socket type reserves Homa ports
        self.config = default_config()
        self.auto_cutoffs = True
        self.dead_rpc_ns = 50_000_000     # acked server RPCs are remembered this long
        self.cutoff_version = 1
        self.unsched_cutoffs = tuple(self.config.unsched_cutoffs)
        self.max_sched_prio = self.config.max_sched_prio
        self._next_id = (secrets.randbits(52) << 1) + 2
        self._track: dict[bytes, _Track] = {}
        self._timer: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._sizes_seen = [0] * BUCKETS
        self._next_cutoffs = 0.0
        self.ticks = 0
        self._made = -1
        self.tick_ns_total = 0
        self.tick_ns_max = 0
        self.recent_aborts: collections.deque[str] = collections.deque(maxlen=8)
        self._dead = 0          # DEAD RPCs reaped by the last pass (more may follow)
        self.stats_local = {"resends": 0, "busy": 0, "need_acks": 0, "aborts": 0, "frees": 0, "reaped": 0,
                            "grants_repeated": 0, "cutoff_updates": 0}

    # ---- plumbing ------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self.obj.map("homa_progs").update(0, self.obj.program("homa_grant").fd)
        self._write_config()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().stop()

    def map(self, name: str):
        return self.obj.map(name)

    def _write_config(self) -> None:
        cfg = self.config
        c = HomaConfigC()
        c.rtt_bytes = cfg.rtt_bytes
        c.unsched_bytes = cfg.unsched_limit
        c.max_overcommit = min(cfg.max_overcommit, int(HomaLimits.HOMA_MAX_OVERCOMMIT))
        c.max_incoming = cfg.incoming_limit
        c.grant_nonfifo = cfg.grant_nonfifo
        c.fifo_grant_increment = cfg.fifo_grant_increment
        c.max_sched_prio = self.max_sched_prio
        c.max_seg = cfg.seg_payload
        c.max_message_length = cfg.max_message_length
        c.cutoff_version = self.cutoff_version
        c.ctrl_prio = cfg.max_prio
        c.unsched_cutoffs[:] = self.unsched_cutoffs
        c.default_cutoffs[:] = tuple(cfg.unsched_cutoffs)
        c.priority_map[:] = tuple(cfg.priority_map)
        c.cutoffs_min_interval_ns = cfg.cutoffs_min_interval_ns
        c.grant_increment = cfg.grant_increment
        self.map("homa_cfg").update(0, c)

    def ctl(self, op: int, key: HomaRpcKey | None = None, arg: int = 0) -> bool:
        """Run one homa_ctl command in the kernel; True if it applied."""
        cmd = HomaCtlCmd(op=op, arg=arg)
        if key is not None:
            cmd.key = key
        return self.obj.program("homa_ctl").test_run(bytes(14) + bytes(cmd)).retval == XDP_PASS

    # ---- requests from applications --------------------------------------------------------
    def request(self, app: App, op: str, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        if op == "bind":
            port = int(msg.get("port") or 0)
            try:
                port = self.ports.bind(app, port, self.daemon.quotas.max_ports)
            except EtranError as e:
                if "in use" in str(e):
                    raise EtranError(f"Homa port {port} is in use on this host (EADDRINUSE)") from None
                raise
            lo, hi = self._ids(app)
            self._kick()
            return {"port": port, "ids": [lo, hi], "config": self.config_dict()}, []
        if op == "unbind":
            self.ports.unbind(app, int(msg.get("port") or 0))
            return {}, []
        if op == "ids":
            lo, hi = self._ids(app, fresh=True)
            return {"ids": [lo, hi]}, []
        if op == "config":
            changes = dict(msg.get("set") or {})
            if changes:
                if app.uid != 0:
                    raise EtranError("changing the host's Homa parameters needs root")
                self.configure(**changes)
            return {"config": self.config_dict()}, []
        if op == "peer":
            addr = str(msg.get("addr") or "")
            return {"known": self._peer_known(addr)}, []
        if op == "stats":
            return {"stats": self.stats()}, []
        return super().request(app, op, msg)

    def _ids(self, app: App, fresh: bool = False) -> tuple[int, int]:
        block = app.resources.get("homa.ids")
        if block is None or fresh:
            lo = self._next_id
            self._next_id += ID_BLOCK
            block = (lo, lo + ID_BLOCK)
            app.resources["homa.ids"] = block
            self.map("homa_apps").update(app.slot, HomaApp(id_lo=block[0], id_hi=block[1]))
        return block

    def _peer_known(self, addr: str) -> bool:
        try:
            socket.inet_aton(addr)
        except OSError:
            return False
        if addr == self.daemon.ip:
            return True
        n = self.daemon.neighbours
        if addr in n.known:
            return True
        with contextlib.suppress(Exception):
            self.daemon.blocking(n.refresh)
        return addr in n.known

    def configure(self, **changes: Any) -> None:
        unknown = set(changes) - SETTABLE
        if unknown:
            raise EtranError(f"unknown Homa parameter(s) {', '.join(sorted(unknown))}; "
                             f"settable: {', '.join(sorted(SETTABLE))}")
        if "auto_cutoffs" in changes:
            self.auto_cutoffs = bool(changes.pop("auto_cutoffs"))
        if "dead_rpc_ns" in changes:
            self.dead_rpc_ns = int(changes.pop("dead_rpc_ns"))
        for k in ("unsched_cutoffs", "priority_map"):
            if k in changes:
                changes[k] = tuple(int(v) for v in changes[k])
        try:
            new = self.config.replace(**changes)
        except (TypeError, ValueError) as e:
            raise EtranError(f"bad Homa parameters: {e}") from None
        if new.max_overcommit > int(HomaLimits.HOMA_MAX_OVERCOMMIT):
            raise EtranError(f"max_overcommit is at most {int(HomaLimits.HOMA_MAX_OVERCOMMIT)} in etran")
        self.config = new
        if "unsched_cutoffs" in changes or "max_sched_prio" in changes:
            self.unsched_cutoffs = tuple(new.unsched_cutoffs)
            self.max_sched_prio = new.max_sched_prio
            self.cutoff_version = self.cutoff_version % 0xFFFF + 1
        self._write_config()

    def config_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.config)
        d.update(seg_payload=self.config.seg_payload, unsched_limit=self.config.unsched_limit,
                 auto_cutoffs=self.auto_cutoffs, dead_rpc_ns=self.dead_rpc_ns, cutoff_version=self.cutoff_version,
                 current_cutoffs=list(self.unsched_cutoffs), current_max_sched_prio=self.max_sched_prio)
        return d

    # ---- applications going away ---------------------------------------------------------
    def reclaim(self, app: App, notify: bool = True) -> None:
        self.ports.release_all(app)
        with contextlib.suppress(OSError):
            self.map("homa_apps").update(app.slot, HomaApp())
        app.resources.pop("homa.ids", None)
        for key, rpc in self._rpcs():
            if rpc.slot == app.slot:
                self.ctl(HomaCtlOp.HOMA_CTL_DROP, key)

    def app_summary(self, app: App) -> dict[str, Any] | None:
        ports = self.ports.owned(app)
        if not ports:
            return None
        return {"ports": ports, "rpcs": sum(1 for _, r in self._rpcs() if r.slot == app.slot)}

    # ---- state ----------------------------------------------------------------------------
    def _rpcs(self) -> list[tuple[HomaRpcKey, HomaRpc]]:
        out = []
        for k, v in self.map("homa_rpcs").lookup_batch(512):
            out.append((HomaRpcKey.from_buffer_copy(k), HomaRpc.from_buffer_copy(v)))
        return out

    def rpcs(self) -> list[dict[str, Any]]:
        """The kernel's RPC table, readable (for `etran stats` and tests)."""
        out = []
        for k, r in self._rpcs():
            out.append({"id": k.id, "peer": socket.inet_ntoa(k.peer.to_bytes(4, "little")),
                        "lport": socket.ntohs(k.lport), "pport": socket.ntohs(r.pport), "slot": r.slot,
                        "state": HomaRpcState(r.state).name.removeprefix("HOMA_RPC_").lower()
                        if r.state in HomaRpcState._value2member_map_ else r.state,
                        "out": [r.out_sent, r.out_granted, r.out_length],
                        "in": [r.in_length - r.in_remaining, r.in_granted, r.in_length],
                        "gaps": [(r.gaps[i].start, r.gaps[i].end) for i in range(min(r.n_gaps, 8))]})
        return out

    def counters(self) -> dict[str, int]:
        total = [0] * 64
        for raw in self.map("homa_stats").lookup_percpu(0) or []:
            s = HomaStats.from_buffer_copy(raw)
            for i in range(64):
                total[i] += s.c[i]
        return {c.label: total[c.value] for c in HomaCounter if c != HomaCounter.HOMA_C_NR}

    def stats(self) -> dict[str, Any]:
        return {"counters": self.counters(), "timer": dict(self.stats_local, ticks=self.ticks,
                                                           tick_ms_mean=round(self.tick_ns_total / max(1, self.ticks) / 1e6, 2),
                                                           tick_ms_max=round(self.tick_ns_max / 1e6, 2)),
                "rpcs": len(self._track), "cutoff_version": self.cutoff_version,
                "recent_aborts": list(self.recent_aborts)}

    # ---- timers (homa_timer.c) --------------------------------------------------------------
    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.create_task(self._run_timer())

    async def _run_timer(self) -> None:
        """The timer's loop. With RPCs: a tick every timer_interval_ns. Without: a nap of
        resend_ticks intervals while Homa ports are bound (an RPC that appears meanwhile loses
        nothing: the first RESEND is due that long after its last packet, and a tick judges by
        the kernel's timestamps), and no ticks at all while none is (no RPC can appear before a
        bind, which wakes the timer)."""
        self._wake = asyncio.Event()
        idle = False
        while True:
            cfg = self.config
            interval = cfg.timer_interval_ns
            if not idle:
                await asyncio.sleep(interval / 1e9)
            elif self.ports.reservations:
                await asyncio.sleep(min(max(interval, interval * cfg.resend_ticks), IDLE_NAP_MAX_NS) / 1e9)
            else:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_UNBOUND_S)
            try:
                idle = not self._busy()
                if not idle:
                    t0 = time.monotonic_ns()
                    self.tick(t0)
                    took = time.monotonic_ns() - t0
                    self.tick_ns_total += took
                    self.tick_ns_max = max(self.tick_ns_max, took)
                elif self.auto_cutoffs and time.monotonic() >= self._next_cutoffs:
                    self._next_cutoffs = time.monotonic() + 1.0
                    self.update_cutoffs()
            except Exception:  # never let one bad tick stop the clock
                log.exception("Homa timer tick failed")

    def _kick(self) -> None:
        """Wake an idle timer (a port was bound: RPCs may follow)."""
        if self._wake is not None:
            self._wake.set()

    def _busy(self) -> bool:
        """Is there anything for the timer? RPCs are only ever made where the data path counts
        them: if none was made since a pass found the table empty, it still is (one cheap read
        instead of a walk over the table's buckets)."""
        made = 0
        for raw in self.map("homa_stats").lookup_percpu(0) or []:
            made += sum(_CREATED.unpack_from(raw, _CREATED_OFF))
        if self._track or self._dead or made != self._made:
            self._made = made
            return True
        return False

    def tick(self, now: int) -> None:
        self.ticks += 1
        cfg = self.config
        interval = cfg.timer_interval_ns
        first = cfg.resend_ticks * interval
        every = cfg.resend_interval * interval
        ack_after = cfg.request_ack_ticks * interval
        descs: list[GenDesc] = []
        seen: set[bytes] = set()
        ctrl_prio = cfg.max_prio
        reap: list[bytes] = []
        dead = 0
        table = self.map("homa_rpcs")
        ks, vs = table.key_size, table.full_value_size
        for kr, vr, i, state, done_ns in _table_walk(table):
            if state == DEAD:
                dead += 1
                # acked server RPCs: remembered a while (late duplicates), then deleted in bulk;
                # nothing else refers to them (their quota went back when they were acked)
                if now - done_ns >= self.dead_rpc_ns:
                    reap.append(kr[i * ks:(i + 1) * ks])
                continue
            kb = kr[i * ks:(i + 1) * ks]
            key, r = HomaRpcKey.from_buffer_copy(kb), HomaRpc.from_buffer_copy(vr, i * vs)
            seen.add(kb)
            t = self._track.get(kb)
            if t is None or t.heard != r.heard_ns:
                t = self._track[kb] = _Track(r.heard_ns)
            client = not key.id & 1
            state = r.state
            if state == IN_SERVICE:
                continue  # the application has it: nothing to fear
            if state == OUTGOING and r.out_sent < min(r.out_granted, r.out_length):
                t.progress = now  # the application still has granted data to send (it paces)
                t.resends = 0
                continue
            base = max(r.heard_ns, t.progress)
            if not client and state == OUTGOING:
                base = max(base, r.done_ns)
            silent = now - base
            since = now - t.last_ns
            if not client and state == OUTGOING:
                if r.out_sent < r.out_length or not r.flags & SENT_ANY:
                    # waiting for the client's grants; a live client says BUSY now and then
                    if silent >= SERVER_PATIENCE * (first + every * cfg.timeout_resends) and \
                            self._free(key, r, "no grants", silent):
                        self.stats_local["frees"] += 1
                    continue
                # a fully sent response: ask the client for an ack
                if silent < ack_after or (t.resends and since < every):
                    continue
                if t.resends >= SERVER_PATIENCE * cfg.timeout_resends:
                    if self._free(key, r, "no ack", silent):
                        self.stats_local["frees"] += 1
                    continue
                t.resends += 1
                t.last_ns = now
                descs.append(self._desc(wire.NEED_ACK, r, key))
                self.stats_local["need_acks"] += 1
                continue
            if silent < first or (t.last_ns and since < every):
                continue
            has_all = (state == INCOMING and r.n_gaps == 0 and r.in_recv_end >= min(r.in_granted, r.in_length))
            if has_all and r.in_granted < r.in_length:
                # we hold the message back ourselves (grants): tell the sender we are alive
                t.last_ns = now
                if client:
                    descs.append(self._desc(wire.BUSY, r, key))
                    self.stats_local["busy"] += 1
                if r.flags & SCHED_FLAGS:
                    descs.append(self._grant(r, key))
                    self.stats_local["grants_repeated"] += 1
                    self.ctl(HomaCtlOp.HOMA_CTL_KICK)
                continue
            if t.resends >= (cfg.timeout_resends if client else SERVER_PATIENCE * cfg.timeout_resends):
                if client:
                    what = (f"client RPC {key.id} to {socket.inet_ntoa(key.peer.to_bytes(4, 'little'))}: "
                            f"{self._describe(r)}")
                    self.recent_aborts.append(what)
                    log.info("aborting %s", what)
                    if self.ctl(HomaCtlOp.HOMA_CTL_ABORT, key, errno.ETIMEDOUT):
                        self.stats_local["aborts"] += 1
                elif self._free(key, r, "request incomplete", silent):
                    self.stats_local["frees"] += 1
                continue
            t.resends += 1
            t.last_ns = now
            descs.extend(self._resends(r, key, ctrl_prio))
        for kb in set(self._track) - seen:
            del self._track[kb]
        if reap:
            try:
                self.stats_local["reaped"] += self.map("homa_rpcs").delete_batch(reap)
            except OSError:   # one went meanwhile: one by one
                for kb in reap:
                    self.stats_local["reaped"] += self.map("homa_rpcs").delete(kb)
        self._dead = dead
        if descs:
            k = self.kernel
            n = k.push_gen(descs)
            self.stats_local["resends"] += sum(1 for d in descs[:n] if d.kind == wire.RESEND)
            try:
                k.run_gen(k.host_pub().gen_pending, self.daemon.nic_ifindex)
            except OSError as e:
                log.warning("Homa timer: live-frame generation failed: %s", e)
        if self.auto_cutoffs and time.monotonic() >= self._next_cutoffs:
            self._next_cutoffs = time.monotonic() + 1.0
            self.update_cutoffs()

    def _free(self, key: HomaRpcKey, r: HomaRpc, why: str, silent: int) -> bool:
        self.recent_aborts.append(f"freed server RPC {key.id} ({why}, silent {silent / 1e6:.0f} ms): "
                                  f"{self._describe(r)}")
        return self.ctl(HomaCtlOp.HOMA_CTL_FREE, key)

    def _describe(self, r: HomaRpc) -> str:
        sched = HomaSched.from_buffer_copy(self.map("homa_sched_map").lookup(0))
        return (f"state {r.state} flags {r.flags:#x} out {r.out_sent}/{r.out_granted}/{r.out_length} "
                f"in {r.in_length - r.in_remaining}/{r.in_recv_end}/{r.in_granted}/{r.in_length} gaps "
                f"{[(r.gaps[i].start, r.gaps[i].end) for i in range(min(r.n_gaps, 8))]}; grant table "
                f"{sched.n} messages, {sched.total_incoming} bytes incoming")

    def _desc(self, kind: int, r: HomaRpc, key: HomaRpcKey, arg0: int = 0, flags: int = 0) -> GenDesc:
        return GenDesc(proto=self.proto, kind=kind, flags=flags, slot=r.slot, id=key.id, arg0=arg0,
                       arg1=key.peer | (key.lport << 32) | (r.pport << 48))

    def _grant(self, r: HomaRpc, key: HomaRpcKey) -> GenDesc:
        return self._desc(wire.GRANT, r, key, r.in_granted | (r.in_prio << 32))

    def _resends(self, r: HomaRpc, key: HomaRpcKey, prio: int) -> list[GenDesc]:
        """RESENDs for everything missing (homa_request_retrans), and our latest GRANT again."""
        out = []
        if r.state != INCOMING:
            # nothing of the incoming message yet (a client waiting for its response)
            out.append(self._desc(wire.RESEND, r, key, 0 | (wire.RESEND_ALL & 0xFFFFFFFF) << 32, prio))
            return out
        if r.flags & SCHED_FLAGS and r.in_granted > 0:
            out.append(self._grant(r, key))
            self.stats_local["grants_repeated"] += 1
        for i in range(min(r.n_gaps, 8)):
            g = r.gaps[i]
            if g.end > g.start:
                out.append(self._desc(wire.RESEND, r, key, g.start | (g.end - g.start) << 32, prio))
        tail = min(r.in_granted, r.in_length)
        if tail > r.in_recv_end:
            out.append(self._desc(wire.RESEND, r, key, r.in_recv_end | (tail - r.in_recv_end) << 32, prio))
        if not out:
            out.append(self._desc(wire.RESEND, r, key, r.in_recv_end | 0, prio))  # a liveness probe
        return out

    # ---- cutoffs (HomaModule util/homa_prio) ------------------------------------------------
    def update_cutoffs(self) -> bool:
        """Recompute the unscheduled cutoffs from the sizes seen; True if they changed."""
        counts = [0] * BUCKETS
        for b in range(BUCKETS):
            for v in self.map("homa_sizes").lookup_percpu(b) or []:
                counts[b] += int.from_bytes(v[:8], "little")
        if counts == self._sizes_seen or not any(counts):
            return False
        self._sizes_seen = counts
        sizes = {size_of_bucket(b): c for b, c in enumerate(counts) if c}
        max_sched, cutoffs = compute_cutoffs(sizes, self.config.unsched_limit, self.config.num_priorities)
        if cutoffs == tuple(self.unsched_cutoffs) and max_sched == self.max_sched_prio:
            return False
        self.unsched_cutoffs = cutoffs
        self.max_sched_prio = max_sched
        self.cutoff_version = self.cutoff_version % 0xFFFF + 1
        self.stats_local["cutoff_updates"] += 1
        self._write_config()
        return True


TRANSPORTS["homa"] = HomaTransport
