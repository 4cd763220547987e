"""etran: eTran (NSDI 2025) on a stock Linux kernel.

Layers, bottom up:
  etran.kernel   eBPF C sources and their build (clang -target bpf), Python mirrors of shared structs
  etran.bpf      libbpf loader: objects, programs, maps, mmap, pinning, attach, BPF_PROG_RUN
  etran.xsk      AF_XDP sockets (UMEM and rings) in ctypes + mmap
  etran.netns    entering network namespaces without a new mount namespace
  etran.testbed  hosts in network namespaces joined by a switch namespace
  etran.bench    benchmarks (`etran bench ...`)
"""

__version__ = "0.1.0"
