"""`etran daemon`, `etran policy ...` and `etran stats`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from .. import ipc


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("daemon", help="run the per-host control-path daemon (root)")
    d.add_argument("--dev", required=True, help="the NIC to serve (its first IPv4 address is the host's)")
    d.add_argument("--netns", metavar="HOST", help="run inside this network namespace (a test-bed host's)")
    d.add_argument("--xdp-mode", choices=("native", "generic"), default="native",
                   help="native XDP (default; veth and most drivers) or generic (any device, slower)")
    d.add_argument("--socket", help="the Unix socket to serve (default /run/etran/<netns or default>.sock)")
    d.add_argument("--app-rate", help="cap every application's egress in the kernel, e.g. 1gbit")
    d.add_argument("--max-flows", type=int, default=1024, help="flows (connections) per application")
    d.add_argument("--max-rpcs", type=int, default=4096, help="outstanding RPCs per application")
    d.add_argument("--max-ports", type=int, default=64, help="ports per application and transport")
    d.add_argument("-v", "--verbose", action="store_true")
    d.set_defaults(func=_daemon)

    p = sub.add_parser("policy", help="change the traffic policy chain of a host's daemon at run time")
    p.add_argument("--host", metavar="NETNS", help="the host (test-bed namespace) whose daemon to talk to")
    psub = p.add_subparsers(dest="policy_command", required=True)
    add = psub.add_parser("add", help="add a policy")
    add_sub = add.add_subparsers(dest="kind", required=True)
    acl = add_sub.add_parser("acl", help="allow or deny by address, port, protocol")
    acl.add_argument("action", choices=("deny", "allow"))
    acl.add_argument("--src", help="source address or CIDR")
    acl.add_argument("--dst", help="destination address or CIDR")
    acl.add_argument("--proto", help="tcp, udp, homa, icmp or a number")
    acl.add_argument("--sport", type=int)
    acl.add_argument("--dport", type=int)
    acl.add_argument("--dir", choices=("in", "out", "both"), default="both")
    rate = add_sub.add_parser("ratelimit", help="a token bucket per application or per flow")
    rate.add_argument("--rate", required=True, help="e.g. 100mbit, 1gbit")
    rate.add_argument("--burst", type=int, help="bytes (default: 10 ms at the rate, at least 64 KiB)")
    who = rate.add_mutually_exclusive_group(required=True)
    who.add_argument("--app", help="an application's name or slot (egress)")
    who.add_argument("--flow", action="store_true", help="every flow, both directions")
    add_sub.add_parser("monitor", help="per-flow packet and byte counters")
    delete = psub.add_parser("del", help="remove a policy by id")
    delete.add_argument("id")
    psub.add_parser("list", help="list the policies")
    p.set_defaults(func=_policy)

    s = sub.add_parser("stats", help="per-application counters and drops of a host's daemon")
    s.add_argument("--host", metavar="NETNS", help="the host (test-bed namespace) whose daemon to ask")
    s.add_argument("--json", action="store_true")
    s.add_argument("--flows", action="store_true", help="also per-flow counters (with the monitor policy)")
    s.set_defaults(func=_stats)


def _daemon(args: argparse.Namespace) -> int:
    from .daemon import Daemon, Quotas

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quotas = Quotas(max_flows=args.max_flows, max_rpcs=args.max_rpcs, max_ports=args.max_ports, rate=args.app_rate)
    Daemon(args.dev, host=args.netns, socket_path=args.socket, xdp_mode=args.xdp_mode, quotas=quotas).run()
    return 0


def _client(host: str | None) -> ipc.Client:
    return ipc.Client(ipc.socket_path(host) if host else None)


def _policy(args: argparse.Namespace) -> int:
    with _client(args.host) as c:
        if args.policy_command == "list":
            rows = c.call("policy_list")["policies"]
            if not rows:
                print("no policies")
            for row in rows:
                print(json.dumps(row))
        elif args.policy_command == "del":
            print(json.dumps(c.call("policy_del", id=args.id)["policy"]))
        else:
            params: dict[str, Any] = {}
            if args.kind == "acl":
                params = {k: getattr(args, k) for k in ("action", "src", "dst", "proto", "sport", "dport", "dir")}
            elif args.kind == "ratelimit":
                params = {"rate": args.rate, "burst": args.burst, "app": None if args.flow else args.app}
            print(json.dumps(c.call("policy_add", kind=args.kind, params=params)["policy"]))
    return 0


def _stats(args: argparse.Namespace) -> int:
    with _client(args.host) as c:
        stats = c.call("stats")
        if args.flows:
            stats["flows"] = c.call("flows")["flows"]
    stats.pop("ok", None)
    if args.json:
        json.dump(stats, sys.stdout, indent=2)
        print()
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"etran on {stats.get('host') or 'this host'} ({stats['dev']}, {stats['ip']})")
    for col in ("slot", "application", "rx pkts", "rx bytes", "tx pkts", "tx bytes", "generated", "drops"):
        table.add_column(col, justify="right" if col not in ("application", "drops") else "left")
    for a in stats["apps"]:
        drops = ", ".join(f"{k}={v}" for k, v in a["drops"].items()) or "-"
        table.add_row(str(a["slot"]), a["name"], str(a["rx_packets"]), str(a["rx_bytes"]), str(a["tx_packets"]),
                      str(a["tx_bytes"]), str(a["gen_packets"]), drops)
    console = Console()
    console.print(table)
    g = stats["gen"]
    console.print(f"generation queue: pending {g['pending']}, pushed {g['pushed']}, popped {g['popped']}, "
                  f"full {g['dropped']}")
    console.print("policies: " + (", ".join(p["id"] for p in stats["policies"]) or "none"))
    for f in stats.get("flows", []):
        console.print(f"  {f['dir']:>3} {f['src']} -> {f['dst']} proto {f['proto']}: {f['packets']} pkts {f['bytes']} B")
    return 0
