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
