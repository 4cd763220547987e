"""The namespace test bed: hosts in network namespaces joined by an eBPF-instrumented switch."""

from .bed import DEFAULT_NAME, Host, Testbed
from .switch import LinkSettings

__all__ = ["DEFAULT_NAME", "Host", "LinkSettings", "Testbed"]
