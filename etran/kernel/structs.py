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
