"""Pluggable congestion control for etran's TCP, selected by name per connection.

    >>> from etran.tcp import cc
    >>> sorted(cc.available())
    ['cubic', 'dctcp', 'reno']
    >>> c = cc.create("dctcp", mss=1448)
    >>> c = cc.swap(c, "cubic")          # same cwnd/ssthresh, new algorithm

See `etran.tcp.cc.base` for the interface and how to add an algorithm.
"""

from .base import (INFINITE_SSTHRESH, CongestionControl, LossKind, available, create,
                   register_congestion_control, swap, unregister_congestion_control)
from .cubic import Cubic
from .dctcp import Dctcp
from .reno import Reno

register_congestion_control("reno", Reno)
register_congestion_control("dctcp", Dctcp)
register_congestion_control("cubic", Cubic)

__all__ = [
    "CongestionControl", "LossKind", "INFINITE_SSTHRESH", "Reno", "Dctcp", "Cubic",
    "available", "create", "register_congestion_control", "unregister_congestion_control", "swap",
]
