"""Turning NIC offloads off, so every packet in the test bed is one frame with a full checksum.

With TSO/GSO a "packet" in the switch can be a 64 KB super-frame (one loss would drop 40
segments); with tx checksum offload it carries CHECKSUM_PARTIAL and no valid checksum yet,
so the switch's corruption would be checksummed over and never caught. The legacy
SIOCETHTOOL set commands are enough and need no `ethtool` binary; the socket that issues
them must live in the device's network namespace (call inside `netns.enter`).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from ..errors import TestbedError

SIOCETHTOOL = 0x8946

# (get, set) legacy ethtool commands, in an order that respects feature dependencies
FEATURES = {
    "rx-gro": (0x0000002B, 0x0000002C),                    # ETHTOOL_GGRO / SGRO
    "tcp-segmentation-offload": (0x0000001E, 0x0000001F),  # ETHTOOL_GTSO / STSO
    "generic-segmentation-offload": (0x00000023, 0x00000024),  # ETHTOOL_GGSO / SGSO
    "scatter-gather": (0x00000018, 0x00000019),            # ETHTOOL_GSG / SSG
    "tx-checksumming": (0x00000016, 0x00000017),           # ETHTOOL_GTXCSUM / STXCSUM
}


def _ethtool_value(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    value = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)) + b"\0" * 16
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return struct.unpack("II", value.raw)[1]


def disable_offloads(ifname: str) -> None:
    """Turn off GRO, TSO, GSO, scatter-gather and tx checksum offload of `ifname` (this namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for feature, (get_cmd, set_cmd) in FEATURES.items():
            try:
                if _ethtool_value(sock, ifname, get_cmd):
                    _ethtool_value(sock, ifname, set_cmd, 0)
            except OSError as e:
                if e.errno == 95:  # EOPNOTSUPP: the device has no such feature
                    continue
                raise TestbedError(f"turning off {feature} on {ifname} failed: {e}") from e


def offloads(ifname: str) -> dict[str, bool]:
    """The state of the features `disable_offloads` turns off (this namespace)."""
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for feature, (get_cmd, _) in FEATURES.items():
            try:
                out[feature] = bool(_ethtool_value(sock, ifname, get_cmd))
            except OSError:
                out[feature] = False
    return out
