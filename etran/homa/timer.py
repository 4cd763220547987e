"""Timeouts and retries (HomaModule homa_timer.c), one decision per RPC per tick.

:func:`check_rpc` is called once per timer tick (``config.timer_interval_ns``) for every
RPC; it advances the RPC's silence counter and says what to do. The endpoint carries it
out. Any packet for the RPC resets the counters (:meth:`Rpc.heard`).

Receiver of a message (client waiting for its response, server receiving a request):
  * silent for ``resend_ticks`` ticks while it expects data -> RESEND (for every gap and the
    granted tail; offset 0, length -1 if nothing arrived), then every ``resend_interval``
    ticks; the ``timeout_resends``-th unanswered interval -> ABORT (client: the application
    gets ETIMEDOUT) or FREE (server: the request is dropped silently).
  * it has everything it granted (it is the one holding things up) -> no RESEND; a client
    sends BUSY instead so the server does not give up on the response.
Sender of a message:
  * granted data not yet transmitted (the pacer holds it) -> no timeout.
  * server with the response fully sent, no ack yet -> NEED_ACK after ``request_ack_ticks``,
    then every ``resend_interval`` ticks; after ``timeout_resends`` of them -> FREE.
  * server waiting for grants for its response -> FREE after the same total silence as a
    receiver abort (the client sends BUSY while it is alive).
"""

from __future__ import annotations

from enum import IntEnum

from .config import HomaConfig
from .rpc import Rpc, RpcState


class TimerAction(IntEnum):
    NONE = 0
    RESEND = 1      # issue RESENDs (and repeat the latest GRANT)
    BUSY = 2        # tell the sender we are alive
    NEED_ACK = 3    # ask the client to ack a fully sent response
    ABORT = 4       # client RPC failed: report ETIMEDOUT
    FREE = 5        # server RPC: discard silently


def _retry(rpc: Rpc, first: int, cfg: HomaConfig, give_up: TimerAction, action: TimerAction) -> TimerAction:
    silent = rpc.silent_ticks
    if silent < first or (silent - first) % cfg.resend_interval:
        return TimerAction.NONE
    if rpc.resends >= cfg.timeout_resends:
        return give_up
    rpc.resends += 1
    return action


def check_rpc(rpc: Rpc, cfg: HomaConfig) -> TimerAction:
    state = rpc.state
    if state in (RpcState.IN_SERVICE, RpcState.DEAD):
        rpc.silent_ticks = 0
        return TimerAction.NONE
    rpc.silent_ticks += 1
    out, msgin = rpc.msgout, rpc.msgin
    if state == RpcState.OUTGOING and out is not None and out.has_sendable():
        rpc.silent_ticks = 0          # we hold data back (pacer): nothing to fear
        return TimerAction.NONE
    if rpc.is_client:
        if state == RpcState.INCOMING and msgin is not None and msgin.has_all_granted():
            if rpc.silent_ticks >= cfg.resend_ticks:
                rpc.silent_ticks = 0
                return TimerAction.BUSY
            return TimerAction.NONE
        return _retry(rpc, cfg.resend_ticks, cfg, TimerAction.ABORT, TimerAction.RESEND)
    if state == RpcState.INCOMING:
        if msgin is not None and msgin.has_all_granted():
            rpc.silent_ticks = 0      # waiting for our own grants
            return TimerAction.NONE
        return _retry(rpc, cfg.resend_ticks, cfg, TimerAction.FREE, TimerAction.RESEND)
    # server, OUTGOING
    if out is not None and out.fully_sent():
        return _retry(rpc, cfg.request_ack_ticks, cfg, TimerAction.FREE, TimerAction.NEED_ACK)
    if rpc.silent_ticks >= cfg.resend_ticks + cfg.resend_interval * cfg.timeout_resends:
        return TimerAction.FREE
    return TimerAction.NONE
