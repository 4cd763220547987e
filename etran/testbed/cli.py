"""`etran testbed up|down|status|set|stats` and `etran exec HOST -- CMD`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .. import netns
from ..errors import TestbedError
from .bed import DEFAULT_NAME, DEFAULT_RATE_GBIT, MAX_HOSTS, SUBNET, Testbed
from .switch import LinkSettings

FAULTS = ("loss", "duplicate", "reorder", "corrupt")


def _default_name() -> str:
    return os.environ.get("ETRAN_TESTBED") or DEFAULT_NAME


def _add_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=_default_name(),
                   help=f"test bed name (default: $ETRAN_TESTBED or {DEFAULT_NAME!r})")


def _add_link_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """Link options; with defaults=False every option defaults to None (= leave as is)."""
    p.add_argument("--rate", type=float, metavar="GBIT", default=DEFAULT_RATE_GBIT if defaults else None,
                   help="rate limit of each switch port, Gbit/s; 0: no limit"
                        + (f" (default {DEFAULT_RATE_GBIT:g})" if defaults else ""))
    p.add_argument("--ecn-threshold", type=float, metavar="KB", default=None,
                   help="set CE on ECT packets when a port's phantom queue exceeds KB kilobytes (needs --rate)"
                        + ("" if defaults else "; 0: stop marking"))
    for fault, what in (("loss", "drop"), ("duplicate", "duplicate"), ("reorder", "swap with the next packet"),
                        ("corrupt", "flip a bit after the IP header of")):
        p.add_argument(f"--{fault}", type=float, metavar="P", default=0.0 if defaults else None,
                       help=f"probability to {what} each packet, 0..1" + (" (default 0)" if defaults else ""))


def register(subparsers: Any) -> None:
    tb = subparsers.add_parser("testbed", help="the namespace test bed: hosts joined by a switch",
                               description=f"Hosts in network namespaces on {SUBNET}, joined by a switch namespace "
                                           "(Linux bridge) whose ports have an HTB rate limit and an eBPF ECN marker "
                                           "and fault injector.")
    tsub = tb.add_subparsers(dest="testbed_command", metavar="ACTION", required=True)

    up = tsub.add_parser("up", help="create a test bed (idempotent)")
    _add_name(up)
    up.add_argument("--hosts", type=int, default=2, help=f"number of hosts, 1..{MAX_HOSTS} (default 2)")
    _add_link_options(up, defaults=True)
    up.add_argument("--no-daemon", dest="daemon", action="store_false",
                    help="do not start the per-host etran daemon in every host (started by default)")
    up.set_defaults(func=cmd_up)

    down = tsub.add_parser("down", help="remove a test bed and everything it left (idempotent)")
    _add_name(down)
    down.add_argument("--all", action="store_true", help="remove every test bed on this machine")
    down.set_defaults(func=cmd_down)

    status = tsub.add_parser("status", help="list test beds, hosts and link settings")
    status.add_argument("--name", default=None, help="only this test bed (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    for action in ("set", "set-faults"):
        s = tsub.add_parser(action, help="change rate, ECN threshold or faults of a live bed"
                            if action == "set" else "same as 'set'")
        _add_name(s)
        s.add_argument("--host", action="append", metavar="HOST",
                       help="only the switch port towards HOST (h1, h2, ...; repeatable; default: all)")
        _add_link_options(s, defaults=False)
        s.add_argument("--priorities", action=argparse.BooleanOptionalAction, default=None,
                       help="strict priority queues keyed on Homa's DSCP levels on the port (needs a rate)")
        s.set_defaults(func=cmd_set)

    stats = tsub.add_parser("stats", help="switch port counters")
    _add_name(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--reset", action="store_true", help="zero the counters after printing them")
    stats.set_defaults(func=cmd_stats)

    ex = subparsers.add_parser("exec", help="run a command inside a test bed host (network namespace only)",
                               description="Run CMD in HOST's network namespace. Unlike `ip netns exec`, no mount "
                                           "namespace is created, so pins under /sys/fs/bpf stay visible.")
    _add_name(ex)
    ex.add_argument("host", metavar="HOST", help="h1, h2, ... or sw (the switch)")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command and its arguments")
    ex.set_defaults(func=cmd_exec)


# ---- up / down ----------------------------------------------------------------------------
def _rate(value: float | None) -> float | None:
    if value is None:
        return None
    if value < 0:
        raise TestbedError(f"--rate {value:g}: give a rate in Gbit/s (0 for no limit), e.g. --rate 1")
    return None if value == 0 else value


def cmd_up(args: argparse.Namespace) -> int:
    bed = Testbed(args.name)
    hooks = []
    if args.daemon:
        from .hooks import daemon_hook

        hooks.append(daemon_hook())
    bed.up(hosts=args.hosts, rate_gbit=_rate(args.rate), ecn_threshold_kb=args.ecn_threshold or None,
           loss=args.loss, duplicate=args.duplicate, reorder=args.reorder, corrupt=args.corrupt, hooks=hooks)
    hosts = bed.hosts
    print(f"test bed {bed.name!r} is up: {len(hosts)} hosts "
          f"({', '.join(f'{h.name}={h.ip}' for h in hosts)}), switch namespace {bed.switch_netns}, "
          f"pins in {bed.pin_dir}")
    print(f"run commands in a host with: etran exec --name {bed.name} h1 -- CMD")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    beds = Testbed.list_existing() if args.all else [Testbed(args.name)]
    for bed in beds:
        existed = bed.exists()
        bed.down()
        print(f"test bed {bed.name!r} " + ("removed" if existed else "was not up; nothing to remove"))
    if args.all and not beds:
        print("no test beds to remove")
    return 0


# ---- status / stats ----------------------------------------------------------------------
def _console() -> Any:
    """A rich console; when the output is not a terminal, wide enough that tables never fold."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _table(**kwargs: Any) -> Any:
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, **kwargs)


def _fmt_prob(p: float) -> str:
    return "-" if p == 0 else f"{p:.4g}"


def _status(bed: Testbed) -> dict[str, Any]:
    complete = bed.is_complete()
    settings: dict[str, LinkSettings] = {}
    if complete:
        try:
            settings = bed.link_settings()
        except TestbedError:
            complete = False
    hosts = []
    for h in bed.hosts:
        entry: dict[str, Any] = {"host": h.name, "netns": h.netns, "ip": h.ip, "mac": h.mac, "ifname": h.ifname,
                                 "ifindex": h.ifindex, "port": h.port, "port_ifindex": h.port_ifindex}
        if h.name in settings:
            entry.update(settings[h.name].as_dict())
        hosts.append(entry)
    return {"name": bed.name, "complete": complete, "switch_netns": bed.switch_netns, "pin_dir": bed.pin_dir,
            "hosts": hosts}


def cmd_status(args: argparse.Namespace) -> int:
    beds = [Testbed(args.name)] if args.name else Testbed.list_existing()
    beds = [b for b in beds if b.exists()]
    data = [_status(b) for b in beds]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    console = _console()
    if not data:
        console.print(f"no test bed{' named ' + repr(args.name) if args.name else ''} is up "
                      "(bring one up with: etran testbed up --hosts 2)")
        return 0
    for d in data:
        state = "up" if d["complete"] else f"[red]incomplete[/red] (etran testbed down --name {d['name']})"
        table = _table(title=f"test bed {d['name']}: {state}", caption=f"switch namespace {d['switch_netns']}, "
                      f"pins {d['pin_dir']}; MAC of hN: 02:e7:00:00:00:NN (hex)")
        for col in ("host", "netns", "address", "port", "Gbit/s", "ECN KB", "loss", "dup", "reord", "corrupt"):
            table.add_column(col, no_wrap=True)
        for h in d["hosts"]:
            rate = h.get("rate_gbit")
            ecn = h.get("ecn_threshold_kb")
            table.add_row(h["host"], h["netns"], f"{h['ip']}/15", h["port"],
                          "-" if rate is None else f"{rate:g}", "-" if ecn is None else f"{ecn:g}",
                          *(_fmt_prob(h.get(f, 0.0)) for f in FAULTS))
        console.print(table)
    return 0


STATS_COLUMNS = (("packets", "pkts"), ("bytes", "bytes"), ("dropped", "lost"), ("duplicated", "dup"),
                 ("reordered", "reord"), ("corrupted", "corr"), ("ce_marked", "CE"), ("queue_max", "pq max"),
                 ("queue_now", "pq now"), ("qdisc_drops", "qdisc drop"), ("errors", "err"))


def cmd_stats(args: argparse.Namespace) -> int:
    bed = Testbed(args.name)
    if not bed.is_complete():
        raise TestbedError(f"test bed {args.name!r} is not up (etran testbed status)")
    stats = bed.switch_stats()
    if args.reset:
        bed.reset_stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    table = _table(title=f"test bed {bed.name}: switch egress ports", caption="lost/dup/reord/corr: injected "
                  "faults; CE: marked; pq: phantom queue bytes; qdisc drop: HTB queue overflow")
    table.add_column("port", no_wrap=True)
    for _, header in STATS_COLUMNS:
        table.add_column(header, justify="right")
    for host, s in stats.items():
        table.add_row(f"p{host[1:]} → {host}", *(str(s[key]) for key, _ in STATS_COLUMNS))
    _console().print(table)
    return 0


# ---- set ------------------------------------------------------------------------------------
def cmd_set(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.rate is not None:
        changes["rate_gbit"] = _rate(args.rate)
    if args.ecn_threshold is not None:
        changes["ecn_threshold_kb"] = args.ecn_threshold or None
    for f in FAULTS:
        if getattr(args, f) is not None:
            changes[f] = getattr(args, f)
    priorities = getattr(args, "priorities", None)
    if not changes and priorities is None:
        raise TestbedError("nothing to change: give --rate, --ecn-threshold, --loss, --duplicate, --reorder, "
                           "--corrupt or --priorities")
    bed = Testbed(args.name)
    if changes:
        bed.configure(args.host, **changes)
    if priorities is not None:
        bed.set_priorities(args.host, on=priorities)
    for host, s in bed.link_settings().items():
        if args.host is None or host in {bed.host(h).name for h in args.host}:
            print(f"{host}: " + ", ".join(f"{k}={v}" for k, v in s.as_dict().items()))
    return 0


# ---- exec ------------------------------------------------------------------------------------
def cmd_exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise TestbedError("no command given: etran exec HOST -- CMD [ARGS...], e.g. etran exec h1 -- ip addr")
    bed = Testbed(args.name)
    if args.host in ("sw", "switch", bed.switch_netns):
        ns = bed.switch_netns
        if not netns.exists(ns):
            raise TestbedError(f"test bed {bed.name!r} is not up (etran testbed status)")
    else:
        ns = bed.host(args.host).netns
    netns.enter_forever(ns)  # setns(CLONE_NEWNET) on this (the only) thread; exec keeps it
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        raise TestbedError(f"cannot run {cmd[0]!r} in {ns}: {e.strerror}") from e
    return 127  # not reached
