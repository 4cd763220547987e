"""Per-peer state (HomaModule homa_peer.c): what we know about one remote host.

* the unscheduled-priority cutoffs that peer asked us to use when sending to it (from its
  CUTOFFS packets; our config's defaults until one arrives) and their version, which every
  DATA packet we send it carries back;
* when we last sent it our own cutoffs (rate limit);
* acks we owe it as a client: RPCs whose response we have in full, so its server may
  forget them. They ride one per DATA packet (``homa_data_hdr.ack``) or up to
  HOMA_MAX_ACKS_PER_PKT in an ACK packet. They are kept per server port (the model's
  endpoint is one socket, and an ack names the server's port).
"""

from __future__ import annotations

from . import wire
from .config import HomaConfig


class Peer:
    __slots__ = ("addr", "unsched_cutoffs", "cutoff_version", "last_cutoffs_sent_ns", "acks")

    def __init__(self, addr, config: HomaConfig) -> None:
        self.addr = addr
        self.unsched_cutoffs: tuple[int, ...] = tuple(config.unsched_cutoffs)
        self.cutoff_version = 0                        # 0: no CUTOFFS received yet
        self.last_cutoffs_sent_ns: int | None = None
        self.acks: dict[int, list[int]] = {}           # server port -> client ids

    def unsched_priority(self, length: int, num_priorities: int = wire.HOMA_MAX_PRIORITIES) -> int:
        """Priority for unscheduled packets of a message of this length: the highest level
        whose cutoff is >= length."""
        cutoffs = self.unsched_cutoffs
        for level in range(num_priorities - 1, -1, -1):
            if cutoffs[level] >= length:
                return level
        return 0

    def add_ack(self, server_port: int, client_id: int) -> list[int] | None:
        """Remember an ack. If the port's list is full, return all of them (the caller sends
        an ACK packet) and start empty (homa_peer_add_ack)."""
        pending = self.acks.setdefault(server_port, [])
        if len(pending) >= wire.HOMA_MAX_ACKS_PER_PKT:
            flush = pending[:] + [client_id]
            pending.clear()
            return flush
        pending.append(client_id)
        return None

    def take_acks(self, server_port: int, count: int) -> list[int]:
        pending = self.acks.get(server_port)
        if not pending:
            return []
        taken = pending[:count]
        del pending[:count]
        return taken

    def drop_ack(self, server_port: int, client_id: int) -> None:
        pending = self.acks.get(server_port)
        if pending and client_id in pending:
            pending.remove(client_id)
