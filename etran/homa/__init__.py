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

The endpoint serves the daemon's control path (timeouts, RESEND, aborts, acks, cutoffs) and
is the reference model the eBPF data path mirrors (reassembly bookkeeping, grants).
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

__all__ = [
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
