"""One RPC on this host (HomaModule homa_rpc.c): its state, its two messages, its timers.

Client RPC (even id):   OUTGOING (sending the request; stays here until the first response
                        packet) -> INCOMING (receiving the response) -> freed, and an ack
                        for it is queued for the server.
Server RPC (odd id):    INCOMING (receiving the request) -> IN_SERVICE (the application has
                        it) -> OUTGOING (sending the response) -> freed when the client acks
                        it (at-most-once: until then a RESEND can still be answered).
"""

from __future__ import annotations

from enum import IntEnum

from .incoming import MessageIn
from .outgoing import MessageOut
from .peer import Peer


class RpcState(IntEnum):
    # values as in HomaModule's enum homa_rpc_state
    OUTGOING = 5
    INCOMING = 6
    IN_SERVICE = 8
    DEAD = 9


class Rpc:
    __slots__ = ("id", "is_client", "peer", "dport", "state", "msgin", "msgout",
                 "silent_ticks", "resends")

    def __init__(self, rpc_id: int, peer: Peer, dport: int, state: RpcState) -> None:
        self.id = rpc_id
        self.is_client = not rpc_id & 1
        self.peer = peer
        self.dport = dport                 # the other end's port
        self.state = state
        self.msgin: MessageIn | None = None
        self.msgout: MessageOut | None = None
        self.silent_ticks = 0              # timer ticks since we last heard about this RPC
        self.resends = 0                   # RESENDs/NEED_ACKs sent since we last heard

    @property
    def sender_id(self) -> int:
        """What this host puts in common.sender_id for this RPC."""
        return self.id

    def heard(self) -> None:
        """A packet for this RPC arrived: the peer is alive."""
        self.silent_ticks = 0
        self.resends = 0

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<Rpc {role} id={self.id} peer={self.peer.addr}:{self.dport} {self.state.name}>"
