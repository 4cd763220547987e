"""Errors of the Homa application API (etran.homa.HomaSocket), each with its errno."""

from __future__ import annotations

import errno as _errno

from ..errors import EtranError


class HomaError(EtranError):
    """Base class of the errors a Homa socket raises."""

    errno = 0


class HomaTimeoutError(HomaError, TimeoutError):
    """No answer in time: the call's own timeout, or the transport gave up on the RPC after
    its configured number of RESENDs (ETIMEDOUT, reported by the daemon's timer)."""

    errno = _errno.ETIMEDOUT

    def __init__(self, message: str, rpc_id: int = 0) -> None:
        super().__init__(message)
        self.rpc_id = rpc_id


class HomaPeerUnknownError(HomaError):
    """The destination is not an IPv4 address this host can reach (no neighbour, no route)."""

    errno = _errno.EHOSTUNREACH


class HomaMessageTooLargeError(HomaError, ValueError):
    """A request or response longer than the maximum message length (1,000,000 bytes)."""

    errno = _errno.EMSGSIZE


class HomaPortInUseError(HomaError):
    """Another socket (of this or another application on the host) has the port."""

    errno = _errno.EADDRINUSE


class HomaRpcError(HomaError):
    """An RPC failed for another reason (the errno the transport reported)."""

    def __init__(self, message: str, rpc_id: int = 0, err: int = 0) -> None:
        super().__init__(message)
        self.rpc_id = rpc_id
        self.errno = err
