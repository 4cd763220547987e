"""Sans-I/O TCP: one connection's state machine, driven by packets and a clock.

Nothing here touches a socket or reads a clock.  Feed it what arrived
(`receive_datagram(ipv4_bytes, now)` or `receive_segment(seg, now)`), let it know when
its timer fires (`handle_timer(now)` at `get_timer()`), and collect what it wants sent
(`datagrams_to_send(now)` / `segments_to_send(now)`) and what happened (`next_event()`).
This is the control path the daemon runs (handshake, teardown, timers, RTT/RTO, loss
recovery decisions, congestion control once per round) and, in the same object, a
reference model of the per-packet data path that eBPF runs in the kernel, so the whole
protocol can be tested end to end with plain bytes and a fake clock.

What is implemented (RFC numbers):
  9293  all states: LISTEN, SYN_SENT, SYN_RECEIVED (incl. simultaneous open), ESTABLISHED,
        FIN_WAIT_1/2, CLOSING, TIME_WAIT (2*MSL, configurable), CLOSE_WAIT, LAST_ACK, CLOSED;
        SYN/SYN-ACK retries with backoff; segment acceptability; RST for segments that
        belong to no connection (`reset_for`).
  5961  RST/SYN in synchronized states: exact-sequence RST resets, others get a challenge ACK.
  6298  SRTT/RTTVAR/RTO with min/max RTO, exponential backoff, Karn's rule; max retries -> error.
  7323  window scaling; timestamps (TSval/TSecr, TS.Recent, PAWS).
  2018  SACK-permitted negotiation; SACK blocks from the reassembly queue (recency order).
  6675  SACK scoreboard loss recovery: IsLost, pipe, NextSeg rule 1; fast retransmit after
        DupThresh dupacks or SACK evidence; recovery ends when snd_una passes RecoveryPoint.
  6582  NewReno fast recovery when the peer does not do SACK (partial ACKs retransmit the next
        hole); after an RTO without SACK, go-back-N from snd_una.
  3168  ECN negotiation (SYN ECE|CWR, SYN-ACK ECE), ECT(0) on new data, ECE latched until CWR
        (classic receivers), CWR after a window reduction.
  8257  DCTCP receiver: ECE echoes the CE state of each segment, immediate ACK when it changes.
  5681  delayed ACKs (every `ack_every` segments or `delayed_ack` seconds), immediate ACK on
        out-of-order data, hole fill, FIN.
Not implemented: urgent data, SYN cookies, keep-alives, D-SACK, RACK/TLP, reneging detection,
IPv6, path MTU discovery, FIN_WAIT_2 timeout.

Congestion control is pluggable (etran.tcp.cc); the connection aggregates per-ACK feedback
and calls `cc.on_round(...)` once per round (a window of data, `cc_update="round"`, what
the eTran daemon does from map counters) or on every ACK (`cc_update="ack"`).
"""

from __future__ import annotations

import enum
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..errors import EtranError
from . import cc as ccmod
from .rtt import RttEstimator
from .sack import Reassembly, Scoreboard, SentSegment
from .seq import MASK, unwrap, wire
from .wire import (ACK, CWR, ECE, ECN_CE, ECN_ECT0, ECN_NOT_ECT, FIN, RST, SYN, TcpOptions, TcpSegment,
                   build_options, build_packet, ip_to_bytes, parse_packet)

DEFAULT_PEER_MSS = 536          # RFC 9293 section 3.7.1, when the peer sends no MSS option
MAX_WINDOW_FIELD = 0xFFFF


class TcpError(EtranError):
    """A TCP operation that the connection's state does not allow."""


class TcpState(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"


SYNCHRONIZED = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT,
                          TcpState.CLOSING, TcpState.LAST_ACK, TcpState.TIME_WAIT})
RECEIVES_DATA = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2})
CAN_SEND = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})


# ---- events -----------------------------------------------------------------------------------------
class TcpEvent:
    """Base of everything `next_event()` returns."""


@dataclass(frozen=True)
class StateChanged(TcpEvent):
    old: TcpState
    new: TcpState


@dataclass(frozen=True)
class Connected(TcpEvent):
    """The handshake completed (ESTABLISHED)."""


@dataclass(frozen=True)
class DataReceived(TcpEvent):
    data: bytes


@dataclass(frozen=True)
class DataAcked(TcpEvent):
    acked: int          # bytes newly acknowledged by this ACK
    total_acked: int    # bytes acknowledged since the start


@dataclass(frozen=True)
class PeerClosed(TcpEvent):
    """The peer's FIN arrived in order: no more data will come."""


@dataclass(frozen=True)
class Closed(TcpEvent):
    """The connection reached CLOSED normally (after TIME_WAIT or LAST_ACK)."""


@dataclass(frozen=True)
class Reset(TcpEvent):
    """The peer reset the connection (or refused it)."""

    reason: str


@dataclass(frozen=True)
class ConnectionFailed(TcpEvent):
    """We gave up: SYN retries or data retransmissions exhausted."""

    reason: str


# ---- configuration -------------------------------------------------------------------------------------
@dataclass
class TcpConfig:
    mss: int = 1460                     # what we advertise; also caps what we send (our MTU - 40)
    window_scale: int | None = 7        # shift we offer; None: do not offer window scaling
    sack: bool = True
    timestamps: bool = True
    ecn: bool = True
    receive_buffer: int = 4 << 20       # bytes; the advertised window (data is handed over at once)
    congestion_control: str = "dctcp"
    cc_params: dict[str, Any] = field(default_factory=dict)
    cc_update: str = "round"            # "round": cc.on_round once per window of data; "ack": every ACK
    initial_window_segments: int = 10
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 60.0
    syn_retries: int = 6                # like net.ipv4.tcp_syn_retries
    max_retries: int = 15               # like net.ipv4.tcp_retries2
    msl: float = 0.5                    # TIME_WAIT lasts 2*msl (short default; Linux: 60 s total)
    rfc1337: bool = True                # ignore RST in TIME_WAIT (Linux default: net.ipv4.tcp_rfc1337=0)
    delayed_ack: float = 0.04           # seconds; 0 acks every segment at once
    ack_every: int = 2                  # ack at least every this many full segments
    dupthresh: int = 3
    timestamp_hz: int = 1000            # TSval clock rate (Linux: 1000)
    ttl: int = 64
    dscp: int = 0

    def __post_init__(self) -> None:
        if self.window_scale is not None and not 0 <= self.window_scale <= 14:
            raise ValueError("window_scale must be 0..14 or None")
        if self.cc_update not in ("round", "ack"):
            raise ValueError("cc_update must be 'round' or 'ack'")
        if not 88 <= self.mss <= 65495:
            raise ValueError("mss out of range")


@dataclass(slots=True)
class Outgoing:
    """A segment to transmit and the IP ECN codepoint it goes out with."""

    segment: TcpSegment
    ecn: int = ECN_NOT_ECT
    retransmission: bool = False
    dst_ip: bytes | None = None      # set for answers to a peer that is not (yet) this connection's


# ---- the connection ------------------------------------------------------------------------------------
class TcpConnection:
    def __init__(self, *, local: tuple[str | bytes, int], remote: tuple[str | bytes, int] | None = None,
                 config: TcpConfig | None = None, isn: int | None = None) -> None:
        self.config = config or TcpConfig()
        self.local_ip = ip_to_bytes(local[0])
        self.local_port = local[1]
        self.remote_ip: bytes | None = ip_to_bytes(remote[0]) if remote else None
        self.remote_port: int | None = remote[1] if remote else None
        self.state = TcpState.CLOSED
        self._events: deque[TcpEvent] = deque()
        self._control: list[Outgoing] = []       # queued RST / challenge ACK / probes

        self.iss = (isn if isn is not None else int.from_bytes(os.urandom(4), "big")) & MASK
        self.irs = 0
        # send side (unwrapped sequence numbers)
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self._sndbuf = bytearray()
        self._sndbuf_seq = self.iss + 1          # sequence number of _sndbuf[0]
        self._fin_seq: int | None = None         # sequence number our FIN takes, once close() was called
        self._fin_sent = False
        self._close_requested = False
        self.bytes_acked = 0
        # receive side
        self.reasm = Reassembly(0)
        self.rcv_adv = 0                         # right edge of the window we advertised
        self._peer_fin_seq: int | None = None
        self._fin_received = False
        # negotiated
        self.peer_mss = DEFAULT_PEER_MSS
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.sack_ok = False
        self.ts_ok = False
        self.ecn_ok = False
        self.ts_recent: int | None = None
        self.last_ack_sent = 0
        self._ts_offset = int.from_bytes(os.urandom(4), "big")
        # timers and retries
        c = self.config
        self.rtt = RttEstimator(initial_rto=c.initial_rto, min_rto=c.min_rto, max_rto=c.max_rto)
        self._rto_at: float | None = None
        self._persist = False
        self._tw_at: float | None = None
        self._delack_at: float | None = None
        self._syn_xmits = 0
        self._syn_sent_at = 0.0
        self._syn_due = False
        self._rto_count = 0
        self._passive = False
        # ACK generation
        self._ack_now = False
        self._ack_pending = False
        self._unacked_segs = 0
        self._ce_state = False                   # DCTCP echo: CE of the last data segment
        self._ece_latched = False                # RFC 3168 echo: until CWR
        self._send_cwr = False
        # loss recovery
        self.scoreboard = Scoreboard(self._eff_mss_guess(), c.dupthresh)
        self.dupacks = 0
        self.in_recovery = False                 # fast recovery (SACK or NewReno)
        self.in_loss = False                     # RTO recovery
        self.recovery_point = 0
        # congestion control
        self.cc: ccmod.CongestionControl = self._make_cc(c.congestion_control, self._eff_mss_guess(), **c.cc_params)
        self._cc_name = c.congestion_control
        self._cc_params: dict[str, Any] = dict(c.cc_params)
        self._round_end = 0                      # a round ends when snd_una reaches this
        self._last_tx_end = 0                    # end of the most recently transmitted segment
        self._acc_acked = 0
        self._acc_marked = 0
        self._acc_rtt_us: float | None = None
        self._ip_id = int.from_bytes(os.urandom(2), "big")
        self.stats: dict[str, int] = dict.fromkeys((
            "segments_sent", "segments_received", "bytes_sent", "retransmits", "fast_recoveries",
            "rto_timeouts", "syn_retransmits", "dupacks", "bad_packets", "dropped_segments",
            "challenge_acks", "paws_rejects", "ecn_marked_acks", "ce_received", "window_probes"), 0)

    # ---- public API: application side ---------------------------------------------------------
    def connect(self, now: float) -> None:
        """Active open: send a SYN (retried with backoff up to `syn_retries` times)."""
        if self.state is not TcpState.CLOSED:
            raise TcpError(f"connect() in state {self.state.value}")
        if self.remote_ip is None or self.remote_port is None:
            raise TcpError("connect() needs the remote address")
        self.snd_nxt = self.iss + 1
        self._syn_due = True
        self._set_state(TcpState.SYN_SENT)

    def listen(self) -> None:
        """Passive open: wait for a SYN (from `remote` if given, else from anyone)."""
        if self.state is not TcpState.CLOSED:
            raise TcpError(f"listen() in state {self.state.value}")
        self._passive = True
        self._set_state(TcpState.LISTEN)

    def send(self, data: bytes) -> None:
        """Queue application data (sent as window and cwnd allow)."""
        if self.state not in CAN_SEND or self._close_requested:
            raise TcpError(f"send() in state {self.state.value}" + (" after close()" if self._close_requested else ""))
        self._sndbuf += data

    def close(self, now: float = 0.0) -> None:
        """Graceful close: FIN after all queued data."""
        st = self.state
        if st in (TcpState.LISTEN, TcpState.SYN_SENT):
            self._to_closed(Closed())
        elif st is TcpState.SYN_RECEIVED:
            self._close_requested = True          # FIN once established
        elif st in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            self._close_requested = True
            self._fin_seq = self._sndbuf_seq + len(self._sndbuf)
            self._set_state(TcpState.FIN_WAIT_1 if st is TcpState.ESTABLISHED else TcpState.LAST_ACK)

    def abort(self, now: float = 0.0) -> None:
        """Send RST (in synchronized states) and go to CLOSED at once."""
        if self.state in SYNCHRONIZED or self.state is TcpState.SYN_RECEIVED:
            self._control.append(Outgoing(self._segment(self.snd_nxt, RST | ACK, now=now)))
        self._to_closed(None)

    def next_event(self) -> TcpEvent | None:
        return self._events.popleft() if self._events else None

    def set_congestion_control(self, name: str, now: float = 0.0, **params: Any) -> None:
        """Switch algorithm on a live connection (cwnd/ssthresh carried over) or choose one before it opens."""
        if self.state in SYNCHRONIZED:
            self.cc = ccmod.swap(self.cc, name, now, **params)
        else:
            self.cc = self._make_cc(name, self.cc.mss, **params)
        self._cc_name = name
        self._cc_params = dict(params)

    # ---- public API: network side ----------------------------------------------------------
    def receive_datagram(self, data: bytes, now: float) -> None:
        """An IPv4 packet for this connection (checksums verified; bad ones are counted and dropped)."""
        parsed = parse_packet(data)
        if parsed is None:
            self.stats["bad_packets"] += 1
            return
        ip, seg = parsed
        if ip.dst != self.local_ip or seg.dst_port != self.local_port:
            self.stats["dropped_segments"] += 1
            return
        if self.remote_ip is not None and (ip.src != self.remote_ip or seg.src_port != self.remote_port):
            self.stats["dropped_segments"] += 1
            return
        self.receive_segment(seg, now, ce=ip.ecn == ECN_CE, remote_ip=ip.src)

    def receive_segment(self, seg: TcpSegment, now: float, *, ce: bool = False, remote_ip: bytes | None = None) -> None:
        """A parsed segment for this connection; `ce` is the IP CE mark it arrived with."""
        self.stats["segments_received"] += 1
        st = self.state
        if st is TcpState.CLOSED:
            r = reset_for(seg)
            if r is not None and (remote_ip or self.remote_ip):
                self._control.append(Outgoing(r, dst_ip=remote_ip))
        elif st is TcpState.LISTEN:
            self._on_listen(seg, now, remote_ip)
        elif st is TcpState.SYN_SENT:
            self._on_syn_sent(seg, now)
        else:
            self._on_synchronized(seg, now, ce)

    def segments_to_send(self, now: float) -> list[Outgoing]:
        out = self._control
        self._control = []
        st = self.state
        if st is TcpState.SYN_SENT and self._syn_due:
            out.append(self._syn_segment(now, synack=False))
        elif st is TcpState.SYN_RECEIVED and self._syn_due:
            out.append(self._syn_segment(now, synack=True))
        elif st is TcpState.SYN_RECEIVED and self._ack_now:
            out.append(Outgoing(self._segment(self.snd_nxt, ACK, now=now)))
        elif st in SYNCHRONIZED:
            self._send_data(now, out)
            if self._ack_now or (self._ack_pending and self.config.delayed_ack <= 0):
                out.append(Outgoing(self._segment(self.snd_nxt, ACK, now=now)))
        if out:
            self.stats["segments_sent"] += len(out)
        return out

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """segments_to_send() as IPv4 packets with valid checksums."""
        pkts = []
        for o in self.segments_to_send(now):
            dst = o.dst_ip or self.remote_ip
            if dst is None:
                continue
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            pkts.append(build_packet(self.local_ip, dst, o.segment, ecn=o.ecn, dscp=self.config.dscp,
                                     ttl=self.config.ttl, ident=self._ip_id))
        return pkts

    def get_timer(self) -> float | None:
        ts = [t for t in (self._rto_at, self._tw_at, self._delack_at) if t is not None]
        return min(ts) if ts else None

    def handle_timer(self, now: float) -> None:
        if self._tw_at is not None and now >= self._tw_at:
            self._tw_at = None
            self._to_closed(Closed())
            return
        if self._delack_at is not None and now >= self._delack_at:
            self._delack_at = None
            if self._ack_pending:
                self._ack_now = True
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = None
            self._on_rto(now)

    # ---- introspection ------------------------------------------------------------------------
    @property
    def cwnd(self) -> int:
        return self.cc.cwnd

    @property
    def rcv_nxt(self) -> int:
        return self.reasm.rcv_nxt

    @property
    def send_mss(self) -> int:
        """Payload bytes of a full data segment (peer MSS less the timestamp option)."""
        return min(self.peer_mss, self.config.mss) - (12 if self.ts_ok else 0)

    @property
    def bytes_in_flight(self) -> int:
        return self.snd_nxt - self.snd_una

    @property
    def unsent_bytes(self) -> int:
        return self._sndbuf_seq + len(self._sndbuf) - max(self.snd_nxt, self._sndbuf_seq)

    def snapshot(self) -> dict[str, Any]:
        """The state the daemon mirrors into the kernel's per-flow map (wire sequence numbers)."""
        return {
            "state": self.state.value, "snd_una": wire(self.snd_una), "snd_nxt": wire(self.snd_nxt),
            "snd_wnd": self.snd_wnd, "rcv_nxt": wire(self.rcv_nxt), "rcv_wnd": self.rcv_adv - self.rcv_nxt,
            "snd_wscale": self.snd_wscale, "rcv_wscale": self.rcv_wscale, "send_mss": self.send_mss,
            "sack": self.sack_ok, "timestamps": self.ts_ok, "ecn": self.ecn_ok, "ts_recent": self.ts_recent,
            "cwnd": self.cc.cwnd, "ssthresh": self.cc.ssthresh, "rate": self.cc.rate, "cc": self._cc_name,
            "srtt": self.rtt.srtt, "rto": self.rtt.rto, "in_recovery": self.in_recovery, "in_loss": self.in_loss,
        }

    # ---- helpers: state ---------------------------------------------------------------------------
    def _set_state(self, new: TcpState) -> None:
        if new is not self.state:
            old, self.state = self.state, new
            self._events.append(StateChanged(old, new))

    def _to_closed(self, event: TcpEvent | None) -> None:
        self._rto_at = self._tw_at = self._delack_at = None
        self._ack_now = self._ack_pending = False
        self._set_state(TcpState.CLOSED)
        if event is not None:
            self._events.append(event)

    def _fail(self, reason: str) -> None:
        self._to_closed(ConnectionFailed(reason))

    def _eff_mss_guess(self) -> int:
        return self.config.mss - (12 if self.config.timestamps else 0)

    def _make_cc(self, name: str, mss: int, **params: Any) -> ccmod.CongestionControl:
        p = dict(params)
        p.setdefault("initial_window", self.config.initial_window_segments * mss)
        return ccmod.create(name, mss=mss, **p)

    def _established(self, now: float) -> None:
        mss = self.send_mss
        self.scoreboard.mss = mss
        if self.cc.mss != mss:
            self.cc = self._make_cc(self._cc_name, mss, **self._cc_params)
        self.cc.on_init(now)
        self._round_end = self.snd_nxt
        self._set_state(TcpState.ESTABLISHED)
        self._events.append(Connected())
        if self._close_requested:
            self._close_requested = False
            self.close(now)

    # ---- helpers: building segments ---------------------------------------------------------------
    def _ts_now(self, now: float) -> int:
        return (int(now * self.config.timestamp_hz) + self._ts_offset) & MASK

    def _window_field(self) -> int:
        buf = min(self.config.receive_buffer, MAX_WINDOW_FIELD << self.rcv_wscale)
        field_ = min(buf >> self.rcv_wscale, MAX_WINDOW_FIELD)
        right = self.rcv_nxt + (field_ << self.rcv_wscale)
        if right < self.rcv_adv:                   # never shrink the window (RFC 9293 3.8.6)
            field_ = (self.rcv_adv - self.rcv_nxt + (1 << self.rcv_wscale) - 1) >> self.rcv_wscale
            right = self.rcv_nxt + (field_ << self.rcv_wscale)
        self.rcv_adv = right
        return field_

    def _ece_flag(self) -> int:
        if not self.ecn_ok:
            return 0
        if self.cc.ecn_echo == "dctcp":
            return ECE if self._ce_state else 0
        return ECE if self._ece_latched else 0

    def _segment(self, seq: int, flags: int, payload: bytes = b"", *, now: float, ece: int | None = None) -> TcpSegment:
        """A segment in a synchronized state (ACK-bearing unless RST without ACK)."""
        opts = TcpOptions()
        if self.ts_ok:
            opts.timestamp = (self._ts_now(now), self.ts_recent or 0)
        if flags & ACK and not flags & RST:
            if self.sack_ok and self.reasm.has_gap:
                blocks = self.reasm.sack_blocks(3 if self.ts_ok else 4)
                opts.sack_blocks = [(wire(s), wire(e)) for s, e in blocks]
            flags |= self._ece_flag() if ece is None else ece
            self.last_ack_sent = self.rcv_nxt
            self._ack_now = self._ack_pending = False
            self._unacked_segs = 0
            self._delack_at = None
        return TcpSegment(self.local_port, self.remote_port or 0, wire(seq), wire(self.rcv_nxt) if flags & ACK else 0,
                          flags, self._window_field(), opts, payload)

    def _bare_rst(self, wire_seq: int) -> TcpSegment:
        """<SEQ=SEG.ACK><CTL=RST>: the answer to an unacceptable ACK during the handshake."""
        return TcpSegment(self.local_port, self.remote_port or 0, wire_seq, 0, RST, 0)

    def _syn_segment(self, now: float, *, synack: bool) -> Outgoing:
        c = self.config
        self._syn_due = False
        self._syn_xmits += 1
        if self._syn_xmits > 1:
            self.stats["syn_retransmits"] += 1
        self._syn_sent_at = now
        self._rto_at = now + self.rtt.rto
        opts = TcpOptions(mss=c.mss)
        if synack:
            flags = SYN | ACK | (ECE if self.ecn_ok else 0)
            if self._peer_offered_ws and c.window_scale is not None:     # RFC 7323 2.2: only in reply
                opts.wscale = c.window_scale
            opts.sack_permitted = self.sack_ok
            if self.ts_ok:
                opts.timestamp = (self._ts_now(now), self.ts_recent or 0)
            ack = wire(self.rcv_nxt)
        else:
            flags = SYN | (ECE | CWR if c.ecn else 0)
            opts.wscale = c.window_scale
            opts.sack_permitted = c.sack
            if c.timestamps:
                opts.timestamp = (self._ts_now(now), 0)
            ack = 0
        window = min(c.receive_buffer, MAX_WINDOW_FIELD)   # never scaled in a SYN (RFC 7323 2.2)
        self.rcv_adv = self.rcv_nxt + window
        seg = TcpSegment(self.local_port, self.remote_port or 0, wire(self.iss), ack, flags, window, opts)
        if synack:
            self.last_ack_sent = self.rcv_nxt
        return Outgoing(seg)

    _peer_offered_ws = False
    _remote_learned = False

    def _negotiate(self, seg: TcpSegment, *, active: bool) -> None:
        """Options from the peer's SYN (passive) or SYN-ACK (active); use only what both sides offered."""
        c = self.config
        o = seg.options
        self.peer_mss = o.mss if o.mss else DEFAULT_PEER_MSS
        self._peer_offered_ws = o.wscale is not None
        if c.window_scale is not None and o.wscale is not None:
            self.snd_wscale = o.wscale
            self.rcv_wscale = c.window_scale
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = c.sack and o.sack_permitted
        self.ts_ok = c.timestamps and o.timestamp is not None
        if self.ts_ok and o.timestamp is not None:
            self.ts_recent = o.timestamp[0]
        if active:
            self.ecn_ok = c.ecn and bool(seg.flags & ECE) and not seg.flags & CWR
        else:
            self.ecn_ok = c.ecn and (seg.flags & (ECE | CWR)) == (ECE | CWR)
        self.scoreboard.mss = self.send_mss

    # ---- segment arrival --------------------------------------------------------------------------
    def _on_listen(self, seg: TcpSegment, now: float, remote_ip: bytes | None) -> None:
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            r = reset_for(seg)
            if r is not None and (self.remote_ip or remote_ip):
                self._control.append(Outgoing(r, dst_ip=remote_ip))
            return
        if not seg.flags & SYN:
            return
        if self.remote_ip is None:
            if remote_ip is None:
                raise TcpError("a listening connection needs remote_ip with the SYN")
            self.remote_ip = remote_ip
            self.remote_port = seg.src_port
            self._remote_learned = True
        elif self.remote_port is None:
            self.remote_port = seg.src_port
        self._accept_syn(seg, now)

    def _accept_syn(self, seg: TcpSegment, now: float) -> None:
        self.irs = seg.seq
        self.reasm = Reassembly(self.irs + 1)
        self._negotiate(seg, active=False)
        self.snd_wnd = seg.window                 # unscaled in a SYN
        self.snd_wl1, self.snd_wl2 = self.irs, self.iss
        self.snd_una = self.iss
        self.snd_nxt = self.iss + 1
        self._syn_due = True
        self._set_state(TcpState.SYN_RECEIVED)

    def _on_syn_sent(self, seg: TcpSegment, now: float) -> None:
        f = seg.flags
        ack_ok = False
        if f & ACK:
            ack = unwrap(seg.ack, self.snd_una)
            if ack <= self.iss or ack > self.snd_nxt:
                if not f & RST:
                    self._control.append(Outgoing(self._bare_rst(seg.ack)))
                return
            ack_ok = True
        if f & RST:
            if ack_ok:
                self._to_closed(Reset("connection refused"))
            return
        if not f & SYN:
            return
        self.irs = seg.seq
        self.reasm = Reassembly(self.irs + 1)
        self.rcv_adv = self.rcv_nxt + min(self.config.receive_buffer, MAX_WINDOW_FIELD)   # what our SYN offered
        self._negotiate(seg, active=True)
        if ack_ok:
            self.snd_una = unwrap(seg.ack, self.snd_una)
            self.snd_wnd = seg.window             # unscaled in a SYN-ACK
            self.snd_wl1, self.snd_wl2 = self.irs, self.snd_una
            self.max_snd_wnd = self.snd_wnd
            if self._syn_xmits == 1:
                self.rtt.update(now - self._syn_sent_at)
            self._rto_at = None
            self._syn_xmits = 0
            self.rtt.reset_backoff()
            self._ack_now = True
            self._established(now)
        else:                                      # simultaneous open
            self.snd_wnd = seg.window
            self._syn_due = True
            self._syn_xmits = 0
            self._set_state(TcpState.SYN_RECEIVED)

    def _acceptable(self, seq: int, seglen: int) -> bool:
        rcv_nxt = self.rcv_nxt
        wnd = max(self.rcv_adv - rcv_nxt, 0)
        if seglen == 0:
            return seq == rcv_nxt if wnd == 0 else rcv_nxt <= seq < rcv_nxt + wnd
        if wnd == 0:
            return False
        end = seq + seglen - 1
        return rcv_nxt <= seq < rcv_nxt + wnd or rcv_nxt <= end < rcv_nxt + wnd

    def _challenge_ack(self) -> None:
        self.stats["challenge_acks"] += 1
        self._ack_now = True

    def _on_synchronized(self, seg: TcpSegment, now: float, ce: bool) -> None:
        f = seg.flags
        seq = unwrap(seg.seq, self.rcv_nxt)
        payload = seg.payload
        if self.state is TcpState.SYN_RECEIVED and f & SYN and seq == self.irs and not f & RST:
            if not f & ACK:
                self._syn_due = True               # the peer retransmitted its SYN: resend the SYN-ACK
                return
            f &= ~SYN                              # simultaneous open: the peer's SYN-ACK; the SYN is old
            seq += 1
        seglen = len(payload) + (1 if f & SYN else 0) + (1 if f & FIN else 0)
        ts = seg.options.timestamp if self.ts_ok else None
        # PAWS, RFC 7323 section 5.3; like Linux (tcp_disordered_ack), a reordered pure ACK whose
        # timestamp is at most an RTO old is not discarded: dropping it would only lose SACK news
        if ts is not None and not f & RST and self.ts_recent is not None:
            age = (self.ts_recent - ts[0]) & MASK
            if 0 < age < 1 << 31:
                disordered = (not payload and not f & (SYN | FIN) and seq == self.rcv_nxt
                              and age <= self.rtt.rto * self.config.timestamp_hz)
                if not disordered:
                    self.stats["paws_rejects"] += 1
                    self._ack_now = True
                    return
        if f & SYN and not f & RST:
            self._challenge_ack()                  # RFC 5961 section 4: whatever the sequence number
            return
        if not self._acceptable(seq, seglen):
            if not f & RST:
                self._ack_now = True
                # like Linux (tcp_replace_ts_recent), an old duplicate still refreshes TS.Recent, so
                # the ACK it triggers echoes the retransmission's TSval and the sender's RTT stays sane
                self._update_ts_recent(ts, seq)
                if self.state is TcpState.TIME_WAIT and f & FIN:
                    self._tw_at = now + 2 * self.config.msl
            return
        # RST, RFC 9293 3.10.7.4 with RFC 5961 section 3
        if f & RST:
            if seq != self.rcv_nxt:
                self._challenge_ack()
            elif self.state is TcpState.SYN_RECEIVED and self._passive:
                self._back_to_listen()
            elif self.state is TcpState.TIME_WAIT:
                if not self.config.rfc1337:        # RFC 1337: no TIME_WAIT assassination
                    self._to_closed(Closed())
            else:
                self._to_closed(Reset("connection reset by peer"))
            return
        if not f & ACK:
            return
        self._update_ts_recent(ts, seq)
        if self.state is TcpState.SYN_RECEIVED:
            ack = unwrap(seg.ack, self.snd_una)
            if not self.snd_una < ack <= self.snd_nxt:
                self._control.append(Outgoing(self._bare_rst(seg.ack)))
                return
            self.snd_una = ack
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1, self.snd_wl2 = seq, ack
            if self._syn_xmits == 1:
                self.rtt.update(now - self._syn_sent_at)
            self._rto_at = None
            self._syn_xmits = 0
            self.rtt.reset_backoff()
            self._established(now)
        if not self._process_ack(seg, f, seq, now):
            return
        # data
        fin = bool(f & FIN)
        if payload:
            if self.state in RECEIVES_DATA and not self._fin_received:
                if seq + len(payload) > self.rcv_adv:          # beyond the window: trim (and drop a FIN)
                    payload = payload[:max(0, self.rcv_adv - seq)]
                    fin = False
                self._process_data(seq, payload, now, ce, bool(f & CWR))
            else:
                self._ack_now = True
        elif f & CWR:
            self._ece_latched = False
        if fin and self._peer_fin_seq is None:
            self._peer_fin_seq = seq + len(seg.payload)
        self._maybe_fin_arrived(now)

    def _update_ts_recent(self, ts: tuple[int, int] | None, seq: int) -> None:
        """RFC 7323 section 4.3: TS.Recent from a segment at or below Last.ACK.sent; never backwards."""
        if ts is not None and seq <= self.last_ack_sent and (
                self.ts_recent is None or ((ts[0] - self.ts_recent) & MASK) < 1 << 31):
            self.ts_recent = ts[0]

    def _back_to_listen(self) -> None:
        if self._remote_learned:
            self.remote_ip = self.remote_port = None
            self._remote_learned = False
        self._peer_fin_seq = None
        self._rto_at = None
        self._syn_due = False
        self._syn_xmits = 0
        self.rtt.reset_backoff()
        if not self._passive:
            self._to_closed(Reset("connection reset by peer"))
            return
        self._set_state(TcpState.LISTEN)

    def _maybe_fin_arrived(self, now: float) -> None:
        if self._fin_received or self._peer_fin_seq is None or self.rcv_nxt != self._peer_fin_seq:
            return
        self._fin_received = True
        self.reasm.rcv_nxt += 1
        self._ack_now = True
        self._events.append(PeerClosed())
        st = self.state
        if st in (TcpState.ESTABLISHED, TcpState.SYN_RECEIVED):
            self._set_state(TcpState.CLOSE_WAIT)
        elif st is TcpState.FIN_WAIT_1:
            self._set_state(TcpState.CLOSING)
        elif st is TcpState.FIN_WAIT_2:
            self._enter_time_wait(now)

    def _enter_time_wait(self, now: float) -> None:
        self._rto_at = None
        self._persist = False
        self._tw_at = now + 2 * self.config.msl
        self._set_state(TcpState.TIME_WAIT)

    def _process_data(self, seq: int, payload: bytes, now: float, ce: bool, cwr: bool) -> None:
        if self.ecn_ok:
            if cwr:
                self._ece_latched = False
            if ce:
                self.stats["ce_received"] += 1
                self._ece_latched = True
            if self.cc.ecn_echo == "dctcp" and ce != self._ce_state:
                # RFC 8257 3.2: acknowledge what came before with the old CE state, at once
                if self._ack_pending:
                    self._control.append(Outgoing(self._segment(self.snd_nxt, ACK, now=now)))
                self._ce_state = ce
                self._ack_now = True
        before = self.rcv_nxt
        had_gap = self.reasm.has_gap
        data = self.reasm.add(seq, payload)
        if data:
            self._events.append(DataReceived(data))
        if seq != before or had_gap or not data:
            self._ack_now = True                   # out of order, hole filled, or duplicate
            return
        self._ack_pending = True
        self._unacked_segs += 1
        if self.config.delayed_ack <= 0 or self._unacked_segs >= self.config.ack_every:
            self._ack_now = True
        elif self._delack_at is None:
            self._delack_at = now + self.config.delayed_ack

    # ---- ACK processing, loss detection, congestion control feedback ------------------------------
    def _process_ack(self, seg: TcpSegment, f: int, seq: int, now: float) -> bool:
        ack = unwrap(seg.ack, self.snd_una)
        if ack > self.snd_nxt:
            self._ack_now = True                   # acks what we never sent
            return False
        if ack < self.snd_una:
            return True                            # old ACK: ignore it, keep the data
        window_changed = False
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            wnd = seg.window << self.snd_wscale
            window_changed = wnd != self.snd_wnd
            self.snd_wnd = wnd
            self.max_snd_wnd = max(self.max_snd_wnd, wnd)
            self.snd_wl1, self.snd_wl2 = seq, ack
        newly_acked = ack - self.snd_una
        ece = bool(f & ECE) and self.ecn_ok
        if ece:
            self.stats["ecn_marked_acks"] += 1
        sb = self.scoreboard
        newly_sacked = 0
        rtt_sample: float | None = None
        if newly_acked:
            done = sb.ack(ack)
            # Karn's rule as Linux applies it: no sample from an ACK that covers retransmitted data;
            # else the oldest newly acknowledged segment (SACKed ones gave their sample earlier)
            if not any(s.xmits > 1 for s in done):
                for s in done:
                    if not s.sacked:
                        rtt_sample = now - s.sent_at
                        break
            if rtt_sample is None and self.ts_ok and seg.options.timestamp and seg.options.timestamp[1]:
                d = (self._ts_now(now) - seg.options.timestamp[1]) & MASK
                if d < 1 << 31:
                    rtt_sample = d / self.config.timestamp_hz
            if rtt_sample is not None:
                self.rtt.update(rtt_sample)
                us = rtt_sample * 1e6
                self._acc_rtt_us = us if self._acc_rtt_us is None else min(self._acc_rtt_us, us)
            data_end = self._sndbuf_seq + len(self._sndbuf)
            k = min(ack, data_end) - self._sndbuf_seq
            if k > 0:
                del self._sndbuf[:k]
                self._sndbuf_seq += k
                self.bytes_acked += k
                self._events.append(DataAcked(k, self.bytes_acked))
            self.snd_una = ack
            self._rto_count = 0
            self.rtt.reset_backoff()
            self._persist = False
            self._rto_at = None if self.snd_una == self.snd_nxt else now + self.rtt.rto
        if self.sack_ok and seg.options.sack_blocks:
            blocks = [(unwrap(a, self.snd_una), unwrap(b, self.snd_una)) for a, b in seg.options.sack_blocks]
            newly_sacked = sb.apply_sack(blocks, self.snd_una, self.snd_nxt)
            if newly_sacked:
                sb.update_lost()
                if rtt_sample is None and sb.sack_rtt_sent_at is not None:
                    rtt_sample = now - sb.sack_rtt_sent_at
                    self.rtt.update(rtt_sample)
                    us = rtt_sample * 1e6
                    self._acc_rtt_us = us if self._acc_rtt_us is None else min(self._acc_rtt_us, us)
        # recovery bookkeeping
        if newly_acked:
            if self.in_recovery or self.in_loss:
                if self.snd_una >= self.recovery_point:
                    self.in_recovery = self.in_loss = False
                    sb.reno_dupacks = 0
                    self.cc.on_recovery_end(now)
                elif self.in_recovery and not self.sack_ok:
                    # NewReno partial ACK (RFC 6582 3.2 step 5): the next hole is lost too
                    sb.reno_dupacks = max(0, sb.reno_dupacks - max(1, newly_acked // max(1, sb.mss)))
                    first = sb.first_unsacked()
                    if first is not None and not first.lost:
                        first.lost = True
            self.dupacks = 0
        elif (ack == self.snd_una and self.snd_nxt > self.snd_una and not seg.payload
              and not f & (SYN | FIN) and not window_changed) or newly_sacked:
            self.dupacks += 1
            self.stats["dupacks"] += 1
            if self.in_recovery and not self.sack_ok:
                sb.reno_dupacks += 1
        if not (self.in_recovery or self.in_loss) and self.snd_nxt > self.snd_una:
            first = sb.first_unsacked()
            if first is not None and (self.dupacks >= self.config.dupthresh or (self.sack_ok and first.lost)):
                if self.sack_ok or ack > self.recovery_point:      # RFC 6582 section 3.2 step 2
                    self._enter_recovery(first, now)
        # congestion control feedback
        if self._fin_seq is not None and self.snd_una > self._fin_seq and ack - newly_acked <= self._fin_seq:
            newly_acked -= 1                       # the FIN is not data
        acked = newly_acked + newly_sacked
        self._acc_acked += acked
        if ece:
            self._acc_marked += max(acked, 0)
        complete = self.snd_una >= self._round_end and acked > 0
        if self._acc_acked > 0 and (complete or self.config.cc_update == "ack"):
            reduced = self.cc.on_round(self._acc_acked, self._acc_marked, 0, self._acc_rtt_us, now,
                                       round_complete=complete)
            if reduced and self.ecn_ok:
                self._send_cwr = True
            self._acc_acked = self._acc_marked = 0
            self._acc_rtt_us = None
        if complete:
            # the next round is the data transmitted so far (retransmissions included)
            self._round_end = max(self._last_tx_end, self.snd_una + 1)
        # our FIN acknowledged?
        if self._fin_sent and self._fin_seq is not None and self.snd_una > self._fin_seq:
            st = self.state
            if st is TcpState.FIN_WAIT_1:
                self._set_state(TcpState.FIN_WAIT_2)
            elif st is TcpState.CLOSING:
                self._enter_time_wait(now)
            elif st is TcpState.LAST_ACK:
                self._to_closed(Closed())
                return False
        return True

    def _enter_recovery(self, first: SentSegment, now: float) -> None:
        self.in_recovery = True
        self.recovery_point = self.snd_nxt
        self.stats["fast_recoveries"] += 1
        first.lost = True
        if not self.sack_ok:
            self.scoreboard.reno_dupacks = self.dupacks
        self.cc.on_loss(ccmod.LossKind.FAST_RETRANSMIT, now)
        self.cc.in_recovery = True

    # ---- timers -----------------------------------------------------------------------------------
    def _on_rto(self, now: float) -> None:
        st = self.state
        if st in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED):
            if self._syn_xmits > self.config.syn_retries:
                if st is TcpState.SYN_RECEIVED and self._passive:
                    self._back_to_listen()
                    self._events.append(ConnectionFailed("no ACK for our SYN-ACK"))
                else:
                    self._fail("connection timed out (no answer to SYN)")
                return
            self.rtt.backoff()
            self._syn_due = True
            return
        if st not in SYNCHRONIZED or st is TcpState.TIME_WAIT:
            return
        if self._persist:
            self._window_probe(now)
            return
        if self.snd_una == self.snd_nxt:
            return
        if self._rto_count >= self.config.max_retries:
            self._fail("connection timed out (retransmissions exhausted)")
            return
        self.stats["rto_timeouts"] += 1
        if self._rto_count == 0:
            self.cc.in_recovery = False
            self.cc.on_loss(ccmod.LossKind.RTO, now)
        self._rto_count += 1
        self.rtt.backoff()
        self.scoreboard.mark_all_lost()
        self.dupacks = 0
        self.in_recovery = False
        self.in_loss = True
        self.recovery_point = self.snd_nxt
        self._round_end = self.snd_una + 1         # slow start again, one round per flight of retransmissions

    def _window_probe(self, now: float) -> None:
        """Zero-window probe, as Linux sends it: an ACK with sequence snd_una - 1 (RFC 9293 3.8.6.1)."""
        self.stats["window_probes"] += 1
        self._control.append(Outgoing(self._segment(self.snd_una - 1, ACK, now=now)))
        self.rtt.backoff()
        self._rto_at = now + self.rtt.rto

    # ---- transmission -----------------------------------------------------------------------------
    def _send_data(self, now: float, out: list[Outgoing]) -> None:
        if self.state is TcpState.TIME_WAIT:
            return
        sb = self.scoreboard
        cwnd = self.cc.cwnd
        pipe = sb.pipe()
        # 1. retransmissions of lost segments (RFC 6675 NextSeg rule 1; go-back-N without SACK)
        if self.in_recovery or self.in_loss:
            while True:
                s = sb.next_retransmit()
                if s is None or (pipe > 0 and pipe + s.length > cwnd):
                    break
                end = s.end - 1 if s.fin else s.end
                payload = bytes(self._sndbuf[s.start - self._sndbuf_seq:end - self._sndbuf_seq])
                flags = ACK | (FIN if s.fin else 0)
                seg = self._segment(s.start, flags, payload, now=now)
                sb.on_retransmit(s, now)
                self._last_tx_end = s.end
                pipe += s.length
                self.stats["retransmits"] += 1
                out.append(Outgoing(seg, ECN_NOT_ECT, True))
        # 2. new data (and the FIN); holes first, new data waits while a retransmission is due
        if not ((self.in_recovery or self.in_loss) and sb.next_retransmit() is not None):
            pipe = self._send_new_data(now, out, pipe, cwnd)
        if self.snd_nxt > self.snd_una and (self._rto_at is None or self._persist):
            self._persist = False
            self._rto_at = now + self.rtt.rto

    def _send_new_data(self, now: float, out: list[Outgoing], pipe: int, cwnd: int) -> int:
        sb = self.scoreboard
        data_end = self._sndbuf_seq + len(self._sndbuf)
        n_blocks = len(self.reasm.sack_blocks(3 if self.ts_ok else 4)) if self.sack_ok and self.reasm.has_gap else 0
        opt_len = len(build_options(TcpOptions(timestamp=(0, 0) if self.ts_ok else None,
                                               sack_blocks=[(0, 0)] * n_blocks)))
        max_payload = max(1, min(self.peer_mss, self.config.mss) - opt_len)   # RFC 6691: options off the MSS
        while True:
            nxt = max(self.snd_nxt, self._sndbuf_seq)
            fin_pending = self._fin_seq is not None and not self._fin_sent
            if nxt >= data_end and not fin_pending:
                break
            usable = self.snd_una + self.snd_wnd - nxt
            length = min(max_payload, data_end - nxt, max(usable, 0))
            fin = fin_pending and nxt + length == data_end
            if length <= 0 and not fin:
                if self.snd_una == self.snd_nxt and self._rto_at is None:     # zero window, nothing in flight
                    self._persist = True
                    self._rto_at = now + self.rtt.rto
                break
            seglen = length + (1 if fin else 0)
            if pipe > 0 and pipe + seglen > cwnd:
                break
            payload = bytes(self._sndbuf[nxt - self._sndbuf_seq:nxt - self._sndbuf_seq + length])
            flags = ACK | (FIN if fin else 0)
            if payload and self._send_cwr:
                flags |= CWR
                self._send_cwr = False
            seg = self._segment(nxt, flags, payload, now=now)
            sb.on_sent(nxt, nxt + seglen, now, fin)
            self.snd_nxt = self._last_tx_end = nxt + seglen
            pipe += seglen
            self.stats["bytes_sent"] += length
            if fin:
                self._fin_sent = True
            out.append(Outgoing(seg, ECN_ECT0 if self.ecn_ok and payload else ECN_NOT_ECT))
            self._persist = False
            if fin:
                break
        return pipe


def reset_for(seg: TcpSegment) -> TcpSegment | None:
    """The RST answering a segment that belongs to no connection (RFC 9293 3.10.7.1); None for a RST."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return TcpSegment(seg.dst_port, seg.src_port, 0, wire(seg.seq + seg.seg_len), RST | ACK, 0)
