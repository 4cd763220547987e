"""Traffic management by tail calls: the policy chain and its rules.

The policy programs (policy.bpf.c) sit in slots of chain_in/chain_out in a fixed order
(acl, ratelimit, monitor); a program is in the chain only while a rule of its kind exists,
so an empty chain costs nothing. Rules change maps; programs change prog-array slots; no
program is detached and no other traffic is disturbed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from ..errors import EtranError
from ..kernel.structs import AclRule, FlowKey, FlowStats, PolicyLimits, RateCfg
from .kernel import Kernel

ORDER = ("acl", "ratelimit", "monitor")
PROTOCOLS = {"tcp": 6, "udp": 17, "homa": 146, "icmp": 1, "any": 0}
DIRS = {"in": 1, "out": 2, "both": 3}
UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str | float | int) -> int:
    """'100mbit', '1.5gbit', '20mbps' (bytes), or a number of bits per second -> bytes per second."""
    if isinstance(text, (int, float)):
        return int(text / 8)
    t = text.strip().lower()
    per_byte = t.endswith(("bps", "bytes")) and not t.endswith("bit")
    for suffix in ("bit", "bps", "bytes", "b"):
        if t.endswith(suffix):
            t = t[: -len(suffix)]
            break
    unit = t[-1] if t and t[-1] in "kmg" else ""
    number = t[: -1] if unit else t
    try:
        value = float(number) * UNITS[unit]
    except ValueError:
        raise EtranError(f"cannot read rate {text!r}; write e.g. 100mbit, 1gbit or 12500000bps") from None
    if value <= 0:
        raise EtranError(f"rate {text!r} must be positive")
    return int(value if per_byte else value / 8)


def _net(text: str | None) -> tuple[int, int]:
    if not text or text == "any":
        return 0, 0
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise EtranError(f"{text!r} is not an IPv4 address or CIDR block") from None
    as_le = lambda a: int.from_bytes(a.packed, "little")  # noqa: E731  (maps hold network byte order)
    return as_le(net.network_address), as_le(net.netmask)


def _port(value: Any) -> int:
    p = int(value or 0)
    if not 0 <= p <= 65535:
        raise EtranError(f"port {value} is out of range 0-65535")
    return socket.htons(p)


@dataclass
class Policy:
    id: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, **self.params}


class PolicyManager:
    def __init__(self, kernel: Kernel, app_slot_of: Any = None) -> None:
        self.kernel = kernel
        self.obj = kernel.load("policy")
        self.policies: dict[str, Policy] = {}
        self._next_acl = 0
        self.app_slot_of = app_slot_of or (lambda app: int(app))

    # ---- chain slots -----------------------------------------------------------------
    def _sync_chain(self) -> None:
        wanted = {p.kind for p in self.policies.values()}
        for slot, kind in enumerate(ORDER):
            for chain in ("chain_in", "chain_out"):
                if kind in wanted:
                    self.kernel.map(chain).update(slot, self.obj.program(kind).fd)
                else:
                    self.kernel.map(chain).delete(slot)

    # ---- rules -------------------------------------------------------------------------
    def add(self, kind: str, **params: Any) -> Policy:
        if kind == "acl":
            policy = self._add_acl(**params)
        elif kind == "ratelimit":
            policy = self._add_rate(**params)
        elif kind == "monitor":
            policy = Policy("monitor", "monitor", {})
        else:
            raise EtranError(f"unknown policy kind {kind!r}; use one of {', '.join(ORDER)}")
        self.policies[policy.id] = policy
        self._sync_chain()
        return policy

    def _add_acl(self, action: str = "deny", src: str | None = None, dst: str | None = None,
                 proto: str | int | None = None, sport: int | None = None, dport: int | None = None,
                 dir: str = "both") -> Policy:
        if action not in ("allow", "deny"):
            raise EtranError(f"ACL action must be allow or deny, not {action!r}")
        if dir not in DIRS:
            raise EtranError(f"direction must be one of {', '.join(DIRS)}, not {dir!r}")
        if isinstance(proto, str) and not proto.isdigit():
            if proto not in PROTOCOLS:
                raise EtranError(f"unknown protocol {proto!r}; use one of {', '.join(PROTOCOLS)} or a number")
            proto_num = PROTOCOLS[proto]
        else:
            proto_num = int(proto or 0)
        used = {p.params["index"] for p in self.policies.values() if p.kind == "acl"}
        free = [i for i in range(int(PolicyLimits.ETRAN_ACL_RULES)) if i not in used]
        if not free:
            raise EtranError(f"all {int(PolicyLimits.ETRAN_ACL_RULES)} ACL rules are in use; delete one first")
        index = free[0]
        saddr, smask = _net(src)
        daddr, dmask = _net(dst)
        rule = AclRule(saddr=saddr, smask=smask, daddr=daddr, dmask=dmask, sport=_port(sport), dport=_port(dport),
                       proto=proto_num, dirs=DIRS[dir], action=1 if action == "deny" else 0, in_use=1)
        self.obj.map("acl_rules").update(index, rule)
        params = {"index": index, "action": action, "src": src or "any", "dst": dst or "any",
                  "proto": proto if proto is not None else "any", "sport": sport or 0, "dport": dport or 0, "dir": dir}
        return Policy(f"acl-{index}", "acl", params)

    def _add_rate(self, rate: str | int, burst: str | int | None = None, app: Any = None) -> Policy:
        bps = parse_rate(rate)
        burst_bytes = int(burst) if burst is not None else max(64 * 1024, bps // 100)  # 10 ms of traffic
        cfg = RateCfg(bytes_per_sec=bps, burst=burst_bytes)
        if app is None:
            self.obj.map("rate_flow_cfg").update(0, cfg)
            pid = "rate-flow"
        else:
            slot = self.app_slot_of(app)
            self.obj.map("rate_app_state").update(slot, bytes(24))  # a fresh bucket
            self.obj.map("rate_app_cfg").update(slot, cfg)
            pid = f"rate-app-{slot}"
        return Policy(pid, "ratelimit", {"rate_bytes_per_sec": bps, "burst": burst_bytes,
                                          "app": app if app is None else str(app)})

    def delete(self, policy_id: str) -> Policy:
        policy = self.policies.get(policy_id)
        if policy is None:
            raise EtranError(f"no policy {policy_id!r}; `etran policy list` shows the ids")
        if policy.kind == "acl":
            self.obj.map("acl_rules").update(policy.params["index"], bytes(24))
        elif policy.id == "rate-flow":
            self.obj.map("rate_flow_cfg").update(0, bytes(16))
            for key in list(self.obj.map("rate_flow_state").keys()):
                self.obj.map("rate_flow_state").delete(key)
        elif policy.kind == "ratelimit":
            self.obj.map("rate_app_cfg").update(int(policy.id.rsplit("-", 1)[1]), bytes(16))
        del self.policies[policy_id]
        self._sync_chain()
        return policy

    def drop_app(self, slot: int) -> None:
        """An application left: its per-application limit goes with it."""
        pid = f"rate-app-{slot}"
        if pid in self.policies:
            self.delete(pid)

    def list(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.policies.values()]

    def flow_stats(self, limit: int = 1000) -> list[dict[str, Any]]:
        out = []
        m = self.obj.map("flow_stats")
        for raw_key, raw in m.lookup_batch()[:limit] if m.max_entries else []:
            key = FlowKey.from_buffer_copy(raw_key)
            packets = bytes_ = 0
            for i in range(m.ncpus):
                s = FlowStats.from_buffer_copy(raw[i * m.stride: i * m.stride + m.value_size])
                packets += s.packets
                bytes_ += s.bytes
            out.append({"src": f"{socket.inet_ntoa(key.saddr.to_bytes(4, 'little'))}:{socket.ntohs(key.sport)}",
                        "dst": f"{socket.inet_ntoa(key.daddr.to_bytes(4, 'little'))}:{socket.ntohs(key.dport)}",
                        "proto": key.proto, "dir": "out" if key.dir else "in", "packets": packets, "bytes": bytes_})
        return out
