"""AF_XDP sockets in pure Python: UMEM, the four rings, batch receive and send.

Layers, bottom up:
  abi       the kernel's constants and struct layouts (if_xdp.h)
  ring      Ring/ProducerRing/ConsumerRing over any buffer, DescBatch, FrameAllocator
  umem      Umem: the packet area and its free frames
  datapath  XskDatapath: the per-packet API (recv_batch/release, reserve/submit, ...)
  socket    XskSocket: create, register, map, bind; the syscalls the rings ask for
  program   XskProgram: the to_xsk XDP program and its XSKMAP
  loopback  Loopback: the kernel's half of the rings over bytearrays (tests, benchmarks)
  bench     python -m etran.xsk.bench
"""

from .datapath import XskDatapath
from .loopback import Loopback
from .program import XskProgram
from .ring import ConsumerRing, DescBatch, FrameAllocator, ProducerRing, Ring
from .socket import XskError, XskSocket, XskStatistics, resolve_ifindex
from .umem import Umem

__all__ = [
    "ConsumerRing",
    "DescBatch",
    "FrameAllocator",
    "Loopback",
    "ProducerRing",
    "Ring",
    "Umem",
    "XskDatapath",
    "XskError",
    "XskProgram",
    "XskSocket",
    "XskStatistics",
    "resolve_ifindex",
]
