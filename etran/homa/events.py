"""What the protocol logic reports to the application (sans-I/O events, as in aioquic)."""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """Base class of every Homa event."""


@dataclass(frozen=True)
class RequestReceived(Event):
    """Server side: a whole request arrived. Answer with send_response(peer, rpc_id, ...)."""

    peer: object
    port: int          # the client's port
    rpc_id: int        # the server's id for the RPC (the client's id | 1)
    payload: bytes


@dataclass(frozen=True)
class ResponseReceived(Event):
    """Client side: the whole response to request rpc_id arrived; the RPC is over."""

    rpc_id: int
    payload: bytes


@dataclass(frozen=True)
class RpcAborted(Event):
    """Client side: the RPC failed (errno ETIMEDOUT after timeout_resends silent RESENDs)."""

    rpc_id: int
    errno: int
    reason: str
