"""The libbpf loader: objects, programs, maps (lookup/update/batch/mmap/pin), attach, BPF_PROG_RUN."""

from .objects import BPF_ANY, BPF_EXIST, BPF_NOEXIST, BpfObject, Map, Program, TestRunResult

__all__ = ["BpfObject", "Map", "Program", "TestRunResult", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST"]
