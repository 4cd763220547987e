"""`etran bench NAME [options]`, `etran bench list`, `etran bench show FILE...`."""

from __future__ import annotations

import argparse
from typing import Any

from .registry import add_common_arguments, get, load_benchmarks, run_benchmark
from .report import console, print_invocation
from .results import Invocation


def register(subparsers: Any) -> None:
    b = subparsers.add_parser("bench", help="benchmarks (results as a table and a JSON file)",
                              description="Run a benchmark: it prints a table and writes one JSON file per "
                                          "invocation (results/ by default). Ratios are only ever stated between "
                                          "series of the same invocation.")
    bsub = b.add_subparsers(dest="bench_command", metavar="NAME", required=True)

    ls = bsub.add_parser("list", help="list the benchmarks")
    ls.set_defaults(func=cmd_list)

    show = bsub.add_parser("show", help="print the table of saved result files (each on its own)")
    show.add_argument("files", nargs="+", metavar="FILE")
    show.set_defaults(func=cmd_show)

    from . import plots, suite  # `etran bench all`, `etran bench plot`

    suite.add_parser(bsub)
    plots.add_parser(bsub)

    for name, cls in sorted(load_benchmarks().items()):
        p = bsub.add_parser(name, help=cls.help, description=cls.description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_arguments(p, cls)
        cls().add_arguments(p)
        p.set_defaults(func=cmd_run, benchmark=name)


def cmd_run(args: argparse.Namespace) -> int:
    inv, _ = run_benchmark(get(args.benchmark), args)
    return 0 if inv.status == "complete" else 1


def cmd_list(args: argparse.Namespace) -> int:
    con = console()
    for name, cls in sorted(load_benchmarks().items()):
        con.print(f"[bold]{name}[/bold]  {cls.help}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    con = console()
    for f in args.files:
        inv = Invocation.load(f)
        cls = load_benchmarks().get(inv.benchmark)
        extra = cls.extra_columns if cls is not None else (("lost", "lost"),)
        print_invocation(inv, con, title=f"{f}: etran bench {inv.benchmark} ({inv.status})", extra_columns=extra)
    return 0
