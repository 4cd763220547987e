"""The application library's core, shared by every transport: registration with the daemon,
the RX/TX engine over the AF_XDP socket (batching, blank frames for the kernel's generated
packets, need_wakeup), busy-poll and blocking waits, and asyncio integration."""

from .engine import Engine, default_engine
from .session import Session

__all__ = ["Engine", "Session", "default_engine"]
