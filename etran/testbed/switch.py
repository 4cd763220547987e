"""The switch's eBPF side: the ECN marker and fault injector of etran/kernel/bpf/switch.bpf.c.

One program, attached to the tc clsact egress hook of every switch port, and four maps keyed
by the port's ifindex (in the switch namespace). `up` loads it once, attaches it to every
port and pins the program and maps under /sys/fs/bpf/etran/<bed>/, so any later process
(`etran testbed set`, `etran testbed stats`, a benchmark) opens the maps from the pins.
The attached filters keep the program alive; the pins keep the maps alive; `down` removes
both (deleting the namespaces removes the filters).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields

from ..errors import TestbedError
from ..kernel.structs import SWITCH_PROB_ALWAYS, SwitchPortConfig, SwitchPortStats

PIN_ROOT = "/sys/fs/bpf/etran"
PROGRAM = "switch_egress"
MAPS = ("port_config", "port_stats", "port_queue", "port_hold")

MAX_RATE_GBIT = 1000.0   # the phantom queue's arithmetic holds up to 1e9 kbit/s
MIN_RATE_GBIT = 1e-6     # 1 kbit/s
MAX_ECN_THRESHOLD_KB = 4_000_000.0  # fits the u32 byte count


def pin_dir(bed: str) -> str:
    return os.path.join(PIN_ROOT, bed)


def prob_to_u32(p: float) -> int:
    """A probability as the fraction of 2^32 the program compares bpf_get_prandom_u32() with."""
    if p >= 1.0:
        return SWITCH_PROB_ALWAYS
    return min(int(round(p * 2**32)), SWITCH_PROB_ALWAYS - 1)


def u32_to_prob(v: int) -> float:
    return 1.0 if v == SWITCH_PROB_ALWAYS else round(v / 2**32, 9)


@dataclass(frozen=True)
class LinkSettings:
    """What a switch egress port does to the packets going to its host.

    rate_gbit: HTB rate limit and phantom-queue drain rate (None: no limit, no phantom queue).
    ecn_threshold_kb: set CE on ECT packets while the phantom queue holds more than this
        many kilobytes (1 KB = 1000 bytes); None: no marking. Needs a rate.
    loss, duplicate, reorder, corrupt: probabilities per packet, each in [0, 1]. `reorder`
        holds a packet back and sends it right after the next packet on the same port.
    """

    rate_gbit: float | None = None
    ecn_threshold_kb: float | None = None
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0

    FAULTS = ("loss", "duplicate", "reorder", "corrupt")

    def validate(self) -> LinkSettings:
        if self.rate_gbit is not None:
            if not isinstance(self.rate_gbit, (int, float)) or math.isnan(self.rate_gbit) or \
                    not MIN_RATE_GBIT <= self.rate_gbit <= MAX_RATE_GBIT:
                raise TestbedError(f"rate {self.rate_gbit!r} Gbit/s is out of range: give a rate between "
                                   f"{MIN_RATE_GBIT:g} (1 kbit/s) and {MAX_RATE_GBIT:g} Gbit/s, e.g. --rate 0.01 for 10 Mbit/s")
        if self.ecn_threshold_kb is not None:
            if not isinstance(self.ecn_threshold_kb, (int, float)) or math.isnan(self.ecn_threshold_kb) or \
                    not 0 < self.ecn_threshold_kb <= MAX_ECN_THRESHOLD_KB:
                raise TestbedError(f"ECN threshold {self.ecn_threshold_kb!r} KB is out of range: give a "
                                   f"number of kilobytes in (0, {MAX_ECN_THRESHOLD_KB:g}], e.g. --ecn-threshold 30")
            if self.rate_gbit is None:
                raise TestbedError("an ECN threshold needs a rate limit: the phantom queue drains at the port "
                                   "rate; add --rate GBIT (e.g. --rate 1 --ecn-threshold 30)")
        for name in self.FAULTS:
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 <= p <= 1.0:
                raise TestbedError(f"--{name} {p!r} is not a probability: give a number between 0 and 1 "
                                   f"(e.g. --{name} 0.05 for 5%)")
        return self

    @property
    def rate_kbps(self) -> int:
        return 0 if self.rate_gbit is None else max(1, int(round(self.rate_gbit * 1e6)))

    def to_config(self) -> SwitchPortConfig:
        return SwitchPortConfig(
            rate_kbps=self.rate_kbps,
            ecn_threshold=0 if self.ecn_threshold_kb is None else max(1, int(round(self.ecn_threshold_kb * 1000))),
            loss=prob_to_u32(self.loss),
            duplicate=prob_to_u32(self.duplicate),
            reorder=prob_to_u32(self.reorder),
            corrupt=prob_to_u32(self.corrupt),
        )

    @classmethod
    def from_config(cls, c: SwitchPortConfig) -> LinkSettings:
        return cls(
            rate_gbit=c.rate_kbps / 1e6 if c.rate_kbps else None,
            ecn_threshold_kb=c.ecn_threshold / 1000 if c.ecn_threshold else None,
            loss=u32_to_prob(c.loss), duplicate=u32_to_prob(c.duplicate),
            reorder=u32_to_prob(c.reorder), corrupt=u32_to_prob(c.corrupt),
        )

    def replace(self, **changes: object) -> LinkSettings:
        d = asdict(self)
        for k, v in changes.items():
            if k not in d:
                raise TestbedError(f"unknown link setting {k!r}; known: {', '.join(d)}")
            d[k] = v
        return LinkSettings(**d).validate()

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


STATS_FIELDS = tuple(name for name, _ in SwitchPortStats._fields_)


def stats_dict(s: SwitchPortStats, rate_kbps: int = 0) -> dict[str, int]:
    """The stats as a dict; `queue_now` is the phantom backlog drained to the present."""
    d = {name: int(getattr(s, name)) for name in STATS_FIELDS}
    now = time.monotonic_ns()  # CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns
    if rate_kbps and s.queue_time_ns:
        drained = max(0, now - s.queue_time_ns) * rate_kbps // 8_000_000
        d["queue_now"] = max(0, int(s.queue_bytes) - drained)
    else:
        d["queue_now"] = 0
    return d


class SwitchMaps:
    """The switch's pinned maps, opened by path (so any process can use them)."""

    def __init__(self, bed: str) -> None:
        from ..bpf import Map  # the loader is only needed once a bed exists

        self.bed = bed
        self.dir = pin_dir(bed)
        self._maps = {}
        try:
            for name in MAPS:
                self._maps[name] = Map.from_pin(os.path.join(self.dir, name))
        except OSError as e:
            self.close()
            raise TestbedError(f"the switch maps of test bed {bed!r} are not pinned under {self.dir} ({e}); "
                               f"is the bed up? (etran testbed status; etran testbed up --name {bed})") from e

    @staticmethod
    def pinned(bed: str) -> bool:
        return all(os.path.exists(os.path.join(pin_dir(bed), n)) for n in (*MAPS, PROGRAM))

    def config(self, ifindex: int) -> SwitchPortConfig | None:
        raw = self._maps["port_config"].lookup(ifindex)
        return None if raw is None else SwitchPortConfig.from_buffer_copy(raw)

    def set_config(self, ifindex: int, cfg: SwitchPortConfig) -> None:
        """Configure a port; creates its stats, queue and hold entries if they are missing."""
        for name in ("port_stats", "port_queue", "port_hold"):
            m = self._maps[name]
            if m.lookup(ifindex) is None:
                m.update(ifindex, bytes(m.value_size))
        self._maps["port_config"].update(ifindex, cfg)

    def stats(self, ifindex: int) -> SwitchPortStats | None:
        raw = self._maps["port_stats"].lookup(ifindex)
        return None if raw is None else SwitchPortStats.from_buffer_copy(raw)

    def reset_stats(self, ifindex: int) -> None:
        m = self._maps["port_stats"]
        if m.lookup(ifindex) is not None:
            m.update(ifindex, bytes(m.value_size))

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps = {}

    def __enter__(self) -> SwitchMaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_and_pin(bed: str, ports: dict[int, LinkSettings], netns: str) -> None:
    """Load switch.bpf.c, attach it to the egress of every port (ifindex -> settings) inside
    `netns`, configure the ports and pin program and maps under pin_dir(bed)."""
    from ..bpf import BpfObject
    from ..bpf.attach import attach_tc, attach_xdp

    directory = pin_dir(bed)
    os.makedirs(directory, exist_ok=True)
    with BpfObject.load("switch") as obj:
        for name in MAPS:
            obj.map(name).pin(os.path.join(directory, name))
        obj.program(PROGRAM).pin(os.path.join(directory, PROGRAM))
        with SwitchMaps(bed) as maps:
            for ifindex, settings in ports.items():
                maps.set_config(ifindex, settings.to_config())
        prog = obj.program(PROGRAM)
        for ifindex in ports:
            attach_tc(ifindex, prog, direction="egress", netns=netns)
            attach_xdp(ifindex, obj.program("switch_rx"), mode="native", netns=netns)


def unpin(bed: str) -> None:
    """Remove the bed's pin directory and everything under it (pins of later layers too)."""
    directory = pin_dir(bed)
    if not os.path.isdir(directory):
        return
    for root, dirs, files in os.walk(directory, topdown=False):
        for f in files:
            try:
                os.unlink(os.path.join(root, f))
            except FileNotFoundError:
                pass
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except FileNotFoundError:
                pass
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass


__all__ = ["LinkSettings", "SwitchMaps", "load_and_pin", "unpin", "pin_dir", "prob_to_u32", "u32_to_prob",
           "stats_dict", "PIN_ROOT"]
