"""`etran build`: compile every eBPF program (and the native benchmark tools) ahead of time."""

from __future__ import annotations

import argparse
import importlib
import time

from . import build


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="compile the eBPF programs and native tools (cached by content)")
    p.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    start = time.monotonic()
    sources = sorted(build.SOURCE_DIR.glob("*.bpf.c"))
    for src in sources:
        build.compile_source(src)
    native = 0
    try:
        tools = importlib.import_module("etran.bench.native")
    except ImportError:
        tools = None
    if tools is not None and hasattr(tools, "build_all"):
        native = len(tools.build_all() or [])
    print(f"built {len(sources)} eBPF objects and {native} native tools in {time.monotonic() - start:.1f} s "
          f"(cache: {build.cache_dir()})")
    return 0
