"""Every Homa parameter in one settable dataclass.

Names follow HomaModule's sysctls where one exists (rtt_bytes, max_overcommit,
max_incoming, grant_fifo_fraction, fifo_grant_increment, pacer_fifo_fraction,
resend_ticks, resend_interval, timeout_resends, request_ack_ticks, num_priorities,
max_sched_prio, unsched_cutoffs, priority_map, link_mbps). Times are integer
nanoseconds or timer ticks; fractions are integer parts per thousand, as in HomaModule,
so that the eBPF data path can use the same numbers with integer arithmetic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from . import wire


def _default_cutoffs() -> tuple[int, ...]:
    # HomaModule's defaults: 4 unscheduled levels (7..4), scheduled levels 3..0.
    return (0, 0, 0, 0, wire.HOMA_MAX_MESSAGE_LENGTH, 15000, 2800, 200)


@dataclass
class HomaConfig:
    # ---- packets --------------------------------------------------------------------
    mtu: int = 1500                         # IP MTU of the path
    ip_header_bytes: int = wire.IPV4_HEADER_LENGTH
    max_message_length: int = wire.HOMA_MAX_MESSAGE_LENGTH
    max_seg_payload: int | None = None      # message bytes per DATA packet; None: derived (1424)

    # ---- unscheduled bytes and grants (receiver-driven) --------------------------------
    rtt_bytes: int = 10_000                 # bytes granted ahead of received, per message
    unsched_bytes: int | None = None        # sent without grants; None: rtt_bytes
    max_overcommit: int = 8                 # messages granted to at once (at most 1 per peer)
    max_incoming: int | None = None         # cap on granted-but-unreceived bytes; None: overcommit*rtt
    max_grantable: int = 64                 # scheduler table size (bounded, eBPF array)
    grant_fifo_fraction: int = 50           # per mille of granted bytes that go to the oldest message
    fifo_grant_increment: int = 10_000      # bytes per FIFO grant
    max_gaps: int = 16                      # holes tracked per incoming message (bounded)
    grant_increment: int = 0                # etran: grant at least this many new bytes (0: every packet)

    # ---- sender side --------------------------------------------------------------------
    link_mbps: int = 10_000                 # uplink rate used to drain the NIC backlog estimate
    max_nic_backlog_bytes: int = 15_000     # never more than this queued in the NIC
    pacer_fifo_fraction: int = 50           # per mille of sent bytes that go to the oldest message

    # ---- priorities -----------------------------------------------------------------------
    num_priorities: int = wire.HOMA_MAX_PRIORITIES
    max_sched_prio: int = 3                 # levels 0..max_sched_prio are for scheduled packets
    unsched_cutoffs: tuple[int, ...] = field(default_factory=_default_cutoffs)
    priority_map: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)   # level -> DSCP high 3 bits
    cutoffs_min_interval_ns: int = 1_000_000    # CUTOFFS to one peer at most this often

    # ---- timers (control path) ---------------------------------------------------------
    timer_interval_ns: int = 1_000_000      # one tick
    resend_ticks: int = 5                   # silence (ticks) before the first RESEND
    resend_interval: int = 5                # ticks between RESENDs (and NEED_ACKs)
    timeout_resends: int = 5                # unanswered RESENDs before the RPC is aborted
    request_ack_ticks: int = 2              # response fully sent: ticks before NEED_ACK
    dead_rpc_memory: int = 4096             # acked server RPCs remembered (late duplicates dropped)

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived values -------------------------------------------------------------------
    @property
    def seg_payload(self) -> int:
        """Message bytes per DATA packet: ``max_seg_payload`` if set, else what fits:
        mtu - IP header - 56-byte DATA header (1500 - 20 - 56 = 1424)."""
        if self.max_seg_payload is not None:
            return self.max_seg_payload
        return self.mtu - self.ip_header_bytes - wire.DATA_HDR_LEN

    @property
    def unsched_limit(self) -> int:
        """Unscheduled bytes of a message, rounded up to whole packets (HomaModule rounds)."""
        base = self.rtt_bytes if self.unsched_bytes is None else self.unsched_bytes
        seg = self.seg_payload
        return -(-base // seg) * seg

    @property
    def incoming_limit(self) -> int:
        return self.max_overcommit * self.rtt_bytes if self.max_incoming is None else self.max_incoming

    @property
    def max_prio(self) -> int:
        """Highest level in use: every control packet goes out at this level."""
        return self.num_priorities - 1

    @property
    def grant_nonfifo(self) -> int:
        """SRPT-granted bytes between two FIFO grants (0: FIFO grants off)."""
        if self.grant_fifo_fraction <= 0:
            return 0
        return self.fifo_grant_increment * 1000 // self.grant_fifo_fraction - self.fifo_grant_increment

    def replace(self, **changes) -> "HomaConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        room = self.mtu - self.ip_header_bytes - wire.DATA_HDR_LEN
        if room <= 0:
            raise ValueError(f"mtu {self.mtu} leaves no room for data after the headers")
        if self.max_seg_payload is not None and not 0 < self.max_seg_payload <= room:
            raise ValueError(f"max_seg_payload must be 1..{room} for mtu {self.mtu}")
        if not 1 <= self.num_priorities <= wire.HOMA_MAX_PRIORITIES:
            raise ValueError(f"num_priorities must be 1..{wire.HOMA_MAX_PRIORITIES}")
        if not 0 <= self.max_sched_prio < self.num_priorities:
            raise ValueError("max_sched_prio must be below num_priorities")
        if len(self.unsched_cutoffs) != wire.HOMA_MAX_PRIORITIES:
            raise ValueError(f"unsched_cutoffs needs {wire.HOMA_MAX_PRIORITIES} entries")
        if len(self.priority_map) != wire.HOMA_MAX_PRIORITIES:
            raise ValueError(f"priority_map needs {wire.HOMA_MAX_PRIORITIES} entries")
        if self.max_overcommit < 1 or self.max_grantable < 1:
            raise ValueError("max_overcommit and max_grantable must be >= 1")
        if not 0 <= self.grant_fifo_fraction < 1000 or not 0 <= self.pacer_fifo_fraction < 1000:
            raise ValueError("FIFO fractions are per mille, 0..999")
        if self.rtt_bytes <= 0 or self.timer_interval_ns <= 0 or self.link_mbps <= 0:
            raise ValueError("rtt_bytes, timer_interval_ns and link_mbps must be positive")
        if self.resend_ticks < 1 or self.resend_interval < 1 or self.timeout_resends < 1:
            raise ValueError("resend_ticks, resend_interval and timeout_resends must be >= 1")
        if self.max_message_length > 0xFFFFFFFF:
            raise ValueError("message lengths are 32-bit on the wire")
