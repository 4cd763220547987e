"""TCP for etran: wire format, congestion control, and the sans-I/O control path.

  etran.tcp.wire        IPv4/TCP headers, options (MSS, WS, SACK, TS), checksum, ECN codepoints
  etran.tcp.seq         unwrapped sequence numbers, RangeSet
  etran.tcp.rtt         RFC 6298 RTO estimator
  etran.tcp.sack        RFC 6675 scoreboard (sender) and reassembly + SACK blocks (receiver)
  etran.tcp.cc          pluggable congestion control: reno, cubic, dctcp (registry by name)
  etran.tcp.connection  TcpConnection: handshake, teardown, timers, recovery; packets and time in,
                        packets and events out
"""

from .connection import (Closed, Connected, ConnectionFailed, DataAcked, DataReceived, Outgoing, PeerClosed,
                         Reset, StateChanged, TcpConfig, TcpConnection, TcpError, TcpEvent, TcpState, reset_for)

__all__ = [
    "TcpConnection", "TcpConfig", "TcpState", "TcpError", "Outgoing", "reset_for",
    "TcpEvent", "StateChanged", "Connected", "DataReceived", "DataAcked", "PeerClosed", "Closed", "Reset",
    "ConnectionFailed",
]


def __getattr__(name: str):
    """The application API (etran.tcp.socket, etran.tcp.streams), imported on first use."""
    if name in ("create_connection", "create_server", "ready_connections", "TcpSocket"):
        from . import socket as _s

        return getattr(_s, name)
    if name in ("open_connection", "start_server"):
        from . import streams as _st

        return getattr(_st, name)
    raise AttributeError(f"module 'etran.tcp' has no attribute {name!r}")
