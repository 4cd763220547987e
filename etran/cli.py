"""The `etran` console command. Each layer registers its own subcommands here."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import EtranError

# Modules that provide `register(subparsers)`; each adds its subcommands with
# `set_defaults(func=...)` where func(args) -> int.
COMMAND_MODULES = [
    "etran.kernel.cli",
    "etran.testbed.cli",
    "etran.daemon.cli",
    "etran.bench.cli",
    "etran.demo",
    "etran.tcp.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etran", description="eTran transports on a stock Linux kernel")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EtranError as e:
        print(f"etran: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
