"""`etran run -- CMD` (transparent TCP over etran) and `etran kv-server`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a Python program with its TCP sockets carried by etran",
                       description="Run COMMAND with etran carrying its IPv4 TCP sockets (a sitecustomize "
                                   "replaces socket.socket); what etran cannot carry stays on the kernel.")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=_run)
    k = sub.add_parser("kv-server", help="a key-value server (RESP: GET/SET/DEL/PING) over etran TCP",
                       description="A key-value store speaking RESP (GET, SET, DEL, PING, ...) over etran TCP, "
                                   "or over kernel TCP with --kernel (for comparison).")
    k.add_argument("--port", type=int, default=6379)
    k.add_argument("--bind", default="")
    k.add_argument("--kernel", action="store_true", help="serve over the kernel's TCP instead")
    k.add_argument("--max-requests", type=int, default=0, help="exit after this many requests (0: never)")
    k.set_defaults(func=_kv)


def _run(args: argparse.Namespace) -> int:
    from .transparent import run

    return run(list(args.command))


def _kv(args: argparse.Namespace) -> int:
    from .kv import serve

    return serve(args.bind, args.port, kernel=args.kernel, max_requests=args.max_requests)
