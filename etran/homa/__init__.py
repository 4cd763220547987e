"""Homa (Montazeri et al., SIGCOMM 2018; Ousterhout, ATC 2021) for etran.

Wire format: the current Linux HomaModule layout (IP protocol 146), in ``wire`` (Python)
and ``etran/kernel/bpf/homa_wire.h`` (eBPF C). Protocol logic: sans-I/O state machines fed
parsed packets and time (integer nanoseconds), returning packets to send and events, split
by concern the way HomaModule is:

  wire       packet layouts, build/parse, priority <-> DSCP, id helpers
  config     HomaConfig: every parameter, settable
  incoming   MessageIn: reassembly (received ranges, gaps, bytes remaining, granted)
  outgoing   MessageOut: segmentation, grants received, priorities of DATA packets
  grant      GrantScheduler: receiver-side SRPT, overcommitment, FIFO grants (eBPF-mirrorable)
  pacer      Pacer: sender-side SRPT, FIFO fraction, NIC backlog cap
  timer      check_rpc: RESEND / BUSY / NEED_ACK / abort decisions per tick
  rpc        Rpc and RpcState
  peer       Peer: cutoffs from the peer, acks owed to it
  cutoffs    compute_cutoffs: unscheduled priority cutoffs from a size distribution
  endpoint   HomaEndpoint: one socket; dispatches packets to the handlers (homa_incoming.c)
  events     RequestReceived, ResponseReceived, RpcAborted
  socket     HomaSocket: the application API over etran (kernel data path, daemon timers)
  aio        HomaSocket with coroutines (asyncio)
  errors     HomaTimeoutError, HomaPeerUnknownError, HomaMessageTooLargeError, HomaPortInUseError

The endpoint is the reference model of the whole protocol (tests/test_homa_logic.py). Over
etran the same logic is split three ways (see socket.py): the eBPF data path
(etran/kernel/bpf/homa.bpf.c: RPC state, reassembly bookkeeping, grants, egress checks and
stamping, the answers to RESEND/NEED_ACK/ACK/CUTOFFS), the daemon's control path
(etran/daemon/homa.py: timers, RESEND/BUSY/NEED_ACK, aborts, reaping, cutoffs, parameters) and
the application library (socket.py, aio.py: segmentation, pacing, retransmission from the
data it holds, reassembly of the payload, waiting).
"""

from .config import HomaConfig
from .cutoffs import SizeDistribution, compute_cutoffs
from .endpoint import Datagram, HomaEndpoint
from .events import Event, RequestReceived, ResponseReceived, RpcAborted
from .grant import GrantScheduler
from .incoming import MessageIn
from .outgoing import MessageOut
from .pacer import Pacer
from .peer import Peer
from .rpc import Rpc, RpcState
from .timer import TimerAction, check_rpc
from .wire import (
    COMMON_HDR_LEN, DATA_HDR_LEN, ACK, BUSY, CUTOFFS, DATA, DATA_DOFF, CONTROL_DOFF, FREEZE, GRANT, HOMA_MAX_ACKS_PER_PKT,
    HOMA_MAX_HEADER, HOMA_MAX_MESSAGE_LENGTH, HOMA_MAX_PRIORITIES, HOMA_MIN_DEFAULT_PORT,
    IPPROTO_HOMA, NEED_ACK, RESEND, RESEND_ALL, RPC_UNKNOWN, HomaWireError, PacketType,
    dscp_to_priority, is_client_id, local_id, max_data_payload, priority_to_dscp,
    priority_to_tos, tos_to_priority,
)

from .errors import (
    HomaError, HomaMessageTooLargeError, HomaPeerUnknownError, HomaPortInUseError, HomaRpcError, HomaTimeoutError,
)


def __getattr__(name: str):
    # the socket API pulls in the engine (AF_XDP, ctypes): load it on first use
    if name in ("HomaSocket", "Request", "Response", "configure", "stats"):
        from . import socket as _socket_mod

        return getattr(_socket_mod, name)
    raise AttributeError(f"module 'etran.homa' has no attribute {name!r}")


__all__ = [
    "HomaSocket", "Request", "Response", "HomaError", "HomaTimeoutError", "HomaPeerUnknownError",
    "HomaMessageTooLargeError", "HomaPortInUseError", "HomaRpcError",
    "ACK", "BUSY", "COMMON_HDR_LEN", "CONTROL_DOFF", "CUTOFFS", "DATA", "DATA_DOFF",
    "DATA_HDR_LEN", "FREEZE", "GRANT", "HOMA_MAX_ACKS_PER_PKT", "HOMA_MAX_HEADER",
    "HOMA_MAX_MESSAGE_LENGTH", "HOMA_MAX_PRIORITIES", "HOMA_MIN_DEFAULT_PORT", "IPPROTO_HOMA",
    "NEED_ACK", "RESEND", "RESEND_ALL", "RPC_UNKNOWN", "Datagram", "Event", "GrantScheduler",
    "HomaConfig", "HomaEndpoint", "HomaWireError", "MessageIn", "MessageOut", "Pacer",
    "PacketType", "Peer", "RequestReceived", "ResponseReceived", "Rpc", "RpcAborted",
    "RpcState", "SizeDistribution", "TimerAction", "check_rpc", "compute_cutoffs",
    "dscp_to_priority", "is_client_id", "local_id", "max_data_payload", "priority_to_dscp",
    "priority_to_tos", "tos_to_priority",
]
