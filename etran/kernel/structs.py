"""Python mirrors (ctypes) of the structs in etran/kernel/bpf/shared.h.

tests/test_structs.py compares every class listed in MIRRORS with the struct of the same
C name in the compiled objects' BTF: size, field names and offsets.
"""

from __future__ import annotations

import ctypes

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class PktCounter(ctypes.Structure):
    _fields_ = [("packets", u64), ("bytes", u64)]


# ---- switch.bpf.c: the test bed's switch ports -----------------------------------------
SWITCH_PROB_ALWAYS = 0xFFFFFFFF
SWITCH_CLONE_MARK = 0x45545243
SWITCH_HOLD_MAX = 1520


class SwitchPortConfig(ctypes.Structure):
    _fields_ = [
        ("rate_kbps", u64),
        ("ecn_threshold", u32),
        ("loss", u32),
        ("duplicate", u32),
        ("reorder", u32),
        ("corrupt", u32),
        ("pad", u32),
    ]


class SwitchPortStats(ctypes.Structure):
    _fields_ = [
        ("packets", u64),
        ("bytes", u64),
        ("dropped", u64),
        ("duplicated", u64),
        ("reordered", u64),
        ("corrupted", u64),
        ("ce_marked", u64),
        ("queue_bytes", u64),
        ("queue_time_ns", u64),
        ("queue_max", u64),
        ("errors", u64),
    ]


# C struct name -> (ctypes class, a program family whose object carries it in BTF)
MIRRORS: dict[str, tuple[type[ctypes.Structure], str]] = {
    "pkt_counter": (PktCounter, "counter"),
    "switch_port_config": (SwitchPortConfig, "switch"),
    "switch_port_stats": (SwitchPortStats, "switch"),
}


# ---- the core (core.h / core.bpf.c) and every transport and policy object -------------------
import enum  # noqa: E402


class Limits(enum.IntEnum):
    """enum etran_limits"""

    ETRAN_MAX_APPS = 64
    ETRAN_NIC_SLOT = 64
    ETRAN_MAX_POLICIES = 8
    ETRAN_PUB_SLOTS = 1024
    ETRAN_GEN_QUEUE = 8192
    ETRAN_BLANK_ETHERTYPE = 0x88B5
    ETRAN_BLANK_MIN = 128
    ETRAN_MAX_FRAME = 1514


class DropReason(enum.IntEnum):
    """enum etran_drop_reason: app_stats.drops[] index."""

    ETRAN_DROP_MALFORMED = 0
    ETRAN_DROP_OVERSIZE = 1
    ETRAN_DROP_SPOOF_MAC = 2
    ETRAN_DROP_SPOOF_IP = 3
    ETRAN_DROP_NOT_OWNER = 4
    ETRAN_DROP_NO_ROUTE = 5
    ETRAN_DROP_ACL = 6
    ETRAN_DROP_RATE = 7
    ETRAN_DROP_WINDOW = 8
    ETRAN_DROP_QUOTA = 9
    ETRAN_DROP_NO_TRANSPORT = 10
    ETRAN_DROP_NO_APP = 11
    ETRAN_DROP_GEN_EMPTY = 12
    ETRAN_DROP_INTERNAL = 13
    ETRAN_DROP_NR = 16

    @property
    def label(self) -> str:
        return self.name.removeprefix("ETRAN_DROP_").lower()


class Direction(enum.IntEnum):
    """enum etran_dir"""

    ETRAN_DIR_IN = 0
    ETRAN_DIR_OUT = 1


class HostConfig(ctypes.Structure):
    _fields_ = [("ip", u32), ("nic_ifindex", u32), ("mac", u8 * 6), ("mtu", u16), ("flags", u32), ("pad", u32)]


class NeighEntry(ctypes.Structure):
    _fields_ = [("mac", u8 * 6), ("pad", u16)]


class AppInfo(ctypes.Structure):
    _fields_ = [("active", u32), ("hook_ifindex", u32), ("app_ifindex", u32), ("uid", u32),
                ("max_flows", u32), ("max_rpcs", u32), ("flows", u32), ("rpcs", u32)]


class AppStats(ctypes.Structure):
    _fields_ = [("rx_packets", u64), ("rx_bytes", u64), ("tx_packets", u64), ("tx_bytes", u64),
                ("gen_packets", u64), ("pad", u64), ("drops", u64 * 16)]


class PortKey(ctypes.Structure):
    _fields_ = [("proto", u8), ("pad", u8), ("port", u16)]  # port in network byte order


class PortOwner(ctypes.Structure):
    _fields_ = [("slot", u32), ("pad", u32)]


class PktMeta(ctypes.Structure):
    _fields_ = [("slot", u32), ("stage", u32), ("dir", u32), ("proto", u32), ("l4_off", u32), ("len", u32),
                ("saddr", u32), ("daddr", u32), ("sport", u16), ("dport", u16), ("pad", u32)]


class GenDesc(ctypes.Structure):
    _fields_ = [("proto", u8), ("kind", u8), ("flags", u16), ("slot", u32), ("id", u64), ("arg0", u64), ("arg1", u64)]


class HostPub(ctypes.Structure):
    _fields_ = [("gen_pending", u64), ("gen_pushed", u64), ("gen_popped", u64), ("gen_dropped", u64)]


class PubSlot(ctypes.Structure):
    _fields_ = [("w", u64 * 8)]


# ---- policies (policy.bpf.c) -------------------------------------------------------------
class PolicyLimits(enum.IntEnum):
    """enum etran_policy_limits"""

    ETRAN_ACL_RULES = 64
    ETRAN_FLOWS_TRACKED = 16384


class AclRule(ctypes.Structure):
    _fields_ = [("saddr", u32), ("smask", u32), ("daddr", u32), ("dmask", u32), ("sport", u16), ("dport", u16),
                ("proto", u8), ("dirs", u8), ("action", u8), ("in_use", u8)]


class RateCfg(ctypes.Structure):
    _fields_ = [("bytes_per_sec", u64), ("burst", u64)]


class FlowKey(ctypes.Structure):
    _fields_ = [("saddr", u32), ("daddr", u32), ("sport", u16), ("dport", u16), ("proto", u8), ("dir", u8),
                ("pad", u16)]


class FlowStats(ctypes.Structure):
    _fields_ = [("packets", u64), ("bytes", u64)]


MIRRORS.update({
    "host_config": (HostConfig, "core"),
    "app_info": (AppInfo, "core"),
    "neigh_entry": (NeighEntry, "core"),
    "app_stats": (AppStats, "core"),
    "port_key": (PortKey, "core"),
    "port_owner": (PortOwner, "core"),
    "pkt_meta": (PktMeta, "core"),
    "gen_desc": (GenDesc, "core"),
    "host_pub": (HostPub, "core"),
    "acl_rule": (AclRule, "policy"),
    "rate_cfg": (RateCfg, "policy"),
    "flow_key": (FlowKey, "policy"),
    "flow_stats": (FlowStats, "policy"),
})

# C enum name -> (Python IntEnum, a program family whose object carries it in BTF)
ENUM_MIRRORS: dict[str, tuple[type[enum.IntEnum], str]] = {
    "etran_limits": (Limits, "core"),
    "etran_drop_reason": (DropReason, "core"),
    "etran_dir": (Direction, "core"),
    "etran_policy_limits": (PolicyLimits, "core"),
}


# ---- Homa (homa.bpf.c) ---------------------------------------------------------------------
class HomaLimits(enum.IntEnum):
    """enum etran_homa_limits"""

    HOMA_MAX_GAPS = 8
    HOMA_SCHED_SLOTS = 64
    HOMA_MAX_OVERCOMMIT = 8
    HOMA_MAX_ACKS = 8
    HOMA_SIZE_BUCKETS = 48
    HOMA_MAX_RPCS = 16384
    HOMA_ETRAN_NOTIFY = 0xE0


class HomaRpcState(enum.IntEnum):
    """enum etran_homa_rpc_state (HomaModule's values)"""

    HOMA_RPC_OUTGOING = 5
    HOMA_RPC_INCOMING = 6
    HOMA_RPC_IN_SERVICE = 8
    HOMA_RPC_DEAD = 9


class HomaRpcFlags(enum.IntEnum):
    """enum etran_homa_rpc_flags"""

    HOMA_RPCF_SCHED = 1
    HOMA_RPCF_OVERFLOW = 2
    HOMA_RPCF_SENT_ANY = 4
    HOMA_RPCF_IN_STARTED = 8


class HomaNotify(enum.IntEnum):
    """enum etran_homa_notify"""

    HOMA_NOTIFY_ABORTED = 1
    HOMA_NOTIFY_FREED = 2


class HomaCtlOp(enum.IntEnum):
    """enum etran_homa_ctl_op"""

    HOMA_CTL_ABORT = 1
    HOMA_CTL_FREE = 2
    HOMA_CTL_REAP = 3
    HOMA_CTL_DROP = 4
    HOMA_CTL_KICK = 5
    HOMA_CTL_CLEAR_SCHED = 6


class HomaCounter(enum.IntEnum):
    """enum etran_homa_counter: homa_stats.c[] index."""

    HOMA_C_RX_DATA = 0
    HOMA_C_RX_GRANT = 1
    HOMA_C_RX_RESEND = 2
    HOMA_C_RX_UNKNOWN = 3
    HOMA_C_RX_BUSY = 4
    HOMA_C_RX_CUTOFFS = 5
    HOMA_C_RX_NEED_ACK = 6
    HOMA_C_RX_ACK = 7
    HOMA_C_RX_FREEZE = 8
    HOMA_C_RX_MALFORMED = 9
    HOMA_C_RX_BAD_TYPE = 10
    HOMA_C_RX_NO_PORT = 11
    HOMA_C_RX_NO_RPC = 12
    HOMA_C_RX_DUP = 13
    HOMA_C_RX_QUOTA = 14
    HOMA_C_RX_NOT_OWNER = 15
    HOMA_C_RX_GAP_OVERFLOW = 16
    HOMA_C_RX_STALE_GRANT = 17
    HOMA_C_RX_DELIVERED = 18
    HOMA_C_CLIENT_RPCS = 19
    HOMA_C_SERVER_RPCS = 20
    HOMA_C_CLIENT_DONE = 21
    HOMA_C_SERVER_ACKED = 22
    HOMA_C_ABORTED = 23
    HOMA_C_FREED = 24
    HOMA_C_REAPED = 25
    HOMA_C_TX_DATA = 26
    HOMA_C_TX_WINDOW = 27
    HOMA_C_TX_NOT_OWNER = 28
    HOMA_C_TX_MALFORMED = 29
    HOMA_C_TX_QUOTA = 30
    HOMA_C_TX_BAD_ID = 31
    HOMA_C_TX_ACK_PIGGYBACK = 32
    HOMA_C_GRANTS = 33
    HOMA_C_FIFO_GRANTS = 34
    HOMA_C_SCHED_OVERFLOW = 35
    HOMA_C_RESEND_BUSY = 36
    HOMA_C_RESEND_FWD = 37
    HOMA_C_UNKNOWN_SENT = 38
    HOMA_C_ACKS_SENT = 39
    HOMA_C_CUTOFFS_SENT = 40
    HOMA_C_NOTIFY = 41
    HOMA_C_GEN_FAIL = 42
    HOMA_C_GEN_BUILT = 43
    HOMA_C_TX_STALE = 44
    HOMA_C_NR = 64

    @property
    def label(self) -> str:
        return self.name.removeprefix("HOMA_C_").lower()


class HomaPub(enum.IntEnum):
    """enum etran_homa_pub: words of an outgoing RPC's published slot."""

    HOMA_PUB_ID = 0
    HOMA_PUB_GRANTED = 1
    HOMA_PUB_PRIO = 2
    HOMA_PUB_LENGTH = 3


class HomaRpcKey(ctypes.Structure):
    _fields_ = [("id", u64), ("peer", u32), ("lport", u16), ("pad", u16)]  # peer, lport network order


class HomaGap(ctypes.Structure):
    _fields_ = [("start", u32), ("end", u32)]


class HomaRpc(ctypes.Structure):
    _fields_ = [("slot", u32), ("state", u8), ("flags", u8), ("pport", u16),
                ("created_ns", u64), ("heard_ns", u64), ("done_ns", u64),
                ("out_length", u32), ("out_granted", u32), ("out_sent", u32), ("out_unsched", u32),
                ("out_unsched_prio", u8), ("out_sched_prio", u8), ("pad0", u16),
                ("in_length", u32), ("in_recv_end", u32), ("in_remaining", u32), ("in_granted", u32),
                ("in_prio", u8), ("n_gaps", u8), ("pad1", u16), ("in_birth", u64),
                ("gaps", HomaGap * 8)]


class HomaAckEntry(ctypes.Structure):
    _fields_ = [("client_id", u64), ("server_port", u16), ("pad", u16 * 3)]


class HomaPeer(ctypes.Structure):
    _fields_ = [("lock", u32), ("cutoff_version", u16), ("has_cutoffs", u8), ("n_acks", u8),
                ("cutoffs", u32 * 8), ("cutoffs_sent_ns", u64), ("acks", HomaAckEntry * 8)]


class HomaConfigC(ctypes.Structure):
    """struct homa_config (homa_cfg[0]); etran.homa.config.HomaConfig is the settable form."""

    _fields_ = [("rtt_bytes", u32), ("unsched_bytes", u32), ("max_overcommit", u32), ("max_incoming", u32),
                ("grant_nonfifo", u32), ("fifo_grant_increment", u32), ("max_sched_prio", u32), ("max_seg", u32),
                ("max_message_length", u32), ("cutoff_version", u16), ("ctrl_prio", u8), ("flags", u8),
                ("unsched_cutoffs", u32 * 8), ("default_cutoffs", u32 * 8), ("priority_map", u8 * 8),
                ("cutoffs_min_interval_ns", u64), ("grant_increment", u32), ("pad", u32)]


class HomaSchedEntry(ctypes.Structure):
    _fields_ = [("key", HomaRpcKey), ("length", u32), ("granted", u32), ("received", u32), ("rank", u32),
                ("birth", u64)]


class HomaSched(ctypes.Structure):
    _fields_ = [("busy", u32), ("n", u32), ("nonfifo_left", ctypes.c_int64), ("births", u64),
                ("total_incoming", u64), ("e", HomaSchedEntry * 64)]


class HomaApp(ctypes.Structure):
    _fields_ = [("id_lo", u64), ("id_hi", u64)]


class HomaStats(ctypes.Structure):
    _fields_ = [("c", u64 * 64)]


class HomaCtlCmd(ctypes.Structure):
    _fields_ = [("op", u32), ("arg", u32), ("key", HomaRpcKey)]


MIRRORS.update({
    "homa_rpc_key": (HomaRpcKey, "homa"),
    "homa_gap": (HomaGap, "homa"),
    "homa_rpc": (HomaRpc, "homa"),
    "homa_ack_entry": (HomaAckEntry, "homa"),
    "homa_peer": (HomaPeer, "homa"),
    "homa_config": (HomaConfigC, "homa"),
    "homa_sched_entry": (HomaSchedEntry, "homa"),
    "homa_sched": (HomaSched, "homa"),
    "homa_app": (HomaApp, "homa"),
    "homa_stats": (HomaStats, "homa"),
    "homa_ctl_cmd": (HomaCtlCmd, "homa"),
})
ENUM_MIRRORS.update({
    "etran_homa_limits": (HomaLimits, "homa"),
    "etran_homa_rpc_state": (HomaRpcState, "homa"),
    "etran_homa_rpc_flags": (HomaRpcFlags, "homa"),
    "etran_homa_notify": (HomaNotify, "homa"),
    "etran_homa_ctl_op": (HomaCtlOp, "homa"),
    "etran_homa_counter": (HomaCounter, "homa"),
    "etran_homa_pub": (HomaPub, "homa"),
})


# ---- TCP (tcp.bpf.c) ---------------------------------------------------------------------
class TcpLimits(enum.IntEnum):
    """enum etran_tcp_limits"""

    TCP_MAX_FLOWS = 16384
    TCP_EVENT_QUEUE = 16384
    TCP_DUPTHRESH = 3


class TcpKState(enum.IntEnum):
    """enum etran_tcp_state: a flow as the data path sees it."""

    TCP_S_SYN_SENT = 1
    TCP_S_SYN_RCVD = 2
    TCP_S_ESTABLISHED = 3
    TCP_S_TIME_WAIT = 4
    TCP_S_CLOSED = 5


class TcpFlowFlags(enum.IntFlag):
    """enum etran_tcp_flags"""

    TCP_F_TS = 1
    TCP_F_SACK = 2
    TCP_F_ECN = 4
    TCP_F_DCTCP_ECHO = 8
    TCP_F_FIN_SENT = 16
    TCP_F_FIN_ACKED = 32
    TCP_F_FIN_RCVD = 64
    TCP_F_RESET = 128
    TCP_F_CE = 256
    TCP_F_ECE_LATCH = 512
    TCP_F_CWR = 1024
    TCP_F_RECOVERY = 2048
    TCP_F_LOSS = 4096
    TCP_F_OOO = 8192
    TCP_F_PASSIVE_CLOSE = 16384
    TCP_F_ORPHAN = 32768
    TCP_F_OOO2 = 65536


class TcpGenKind(enum.IntEnum):
    """enum etran_tcp_gen: gen_desc.kind of TCP control packets."""

    TCP_GEN_ACK = 1
    TCP_GEN_ACK_FIXED = 2
    TCP_GEN_ACK_NOW = 3


class TcpCtlOp(enum.IntEnum):
    """enum etran_tcp_ctl_op"""

    TCP_CTL_PUBLISH = 1
    TCP_CTL_SET_CWND = 2
    TCP_CTL_RTO = 3
    TCP_CTL_STATE = 4
    TCP_CTL_CLEAR_PUB = 5
    TCP_CTL_PROBE = 6


class TcpPub(enum.IntEnum):
    """enum etran_tcp_pub: words of a flow's published slot."""

    TCP_PUB_TAG = 0
    TCP_PUB_STATE = 1
    TCP_PUB_SND = 2
    TCP_PUB_LIMIT = 3
    TCP_PUB_RTX = 4
    TCP_PUB_WINDOWS = 5
    TCP_PUB_RECOVERY = 6
    TCP_PUB_FIN = 7


class TcpFlowKey(ctypes.Structure):
    _fields_ = [("raddr", u32), ("rport", u16), ("lport", u16)]  # network byte order


class TcpFlow(ctypes.Structure):
    _fields_ = [("slot", u32), ("pub", u32), ("tag", u64), ("state", u32), ("flags", u32),
                ("iss", u32), ("snd_una", u32), ("snd_nxt", u32), ("snd_wnd", u32), ("snd_wl1", u32),
                ("snd_wl2", u32), ("cwnd", u32), ("fin_seq", u32), ("recovery_point", u32), ("rtx_epoch", u32),
                ("rtx_seq", u32), ("round_end", u32), ("rtt_seq", u32), ("dupacks", u32),
                ("irs", u32), ("rcv_nxt", u32), ("rcv_wnd", u32), ("ooo_lo", u32), ("ooo_hi", u32),
                ("last_ack_sent", u32), ("ts_recent", u32), ("ts_offset", u32),
                ("mss", u16), ("snd_wscale", u8), ("rcv_wscale", u8),
                ("ack_segs", u32), ("ack_queued", u32), ("delack_queued", u32), ("rcv_edge", u32),
                ("rcv_adv", u32), ("ooo2_lo", u32), ("ooo2_hi", u32), ("sacked", u32),
                ("rtt_start_ns", u64), ("last_progress_ns", u64), ("rtt_us", u64), ("rtt_samples", u64),
                ("acked_bytes", u64), ("ecn_bytes", u64), ("loss_events", u64), ("rx_bytes", u64),
                ("tx_bytes", u64), ("retrans_bytes", u64), ("ce_bytes", u64), ("window_drops", u64),
                ("grace_until_ns", u64), ("grace_limit", u32), ("pace_rate", u32), ("pace_last_ns", u64),
                ("pace_drops", u64), ("pace_tokens", u32), ("pad2", u32)]


class TcpCtlCmd(ctypes.Structure):
    _fields_ = [("op", u32), ("arg", u32), ("key", TcpFlowKey), ("arg64", u64)]


MIRRORS.update({
    "tcp_flow_key": (TcpFlowKey, "tcp"),
    "tcp_flow": (TcpFlow, "tcp"),
    "tcp_ctl_cmd": (TcpCtlCmd, "tcp"),
})
ENUM_MIRRORS.update({
    "etran_tcp_limits": (TcpLimits, "tcp"),
    "etran_tcp_state": (TcpKState, "tcp"),
    "etran_tcp_flags": (TcpFlowFlags, "tcp"),
    "etran_tcp_gen": (TcpGenKind, "tcp"),
    "etran_tcp_ctl_op": (TcpCtlOp, "tcp"),
    "etran_tcp_pub": (TcpPub, "tcp"),
})
