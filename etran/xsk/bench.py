"""Microbenchmarks of the AF_XDP hot path: `python -m etran.xsk.bench [--veth] [--packets N]`.

loopback: the user-space cost per packet of recv_batch/release and reserve/submit (which
    reclaims completions) over bytearray rings (etran.xsk.loopback), no syscalls; the fake
    kernel's work is not timed.  The "+" lines add what any receiver or sender does per
    packet: loop over the descriptors, parse a header in place, set lengths, write data.
veth (root): frames from an AF_XDP socket in one namespace, through a veth pair and the
    to_xsk XDP program, into an AF_XDP socket in another; one thread does both ends, so
    the figure is the whole cost per packet (user space + kernel) on one core.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import time
import uuid

from .loopback import Loopback
from .umem import Umem


def loopback_rx(packets: int = 500_000, batch: int = 64, touch: bool = True, data: bool = False) -> float:
    """ns per packet spent in recv_batch + (per-descriptor reads) + release."""
    umem = Umem(4096, 2048)
    lo = Loopback(umem, rx_size=2048, tx_size=64, fill_size=2048, comp_size=64)
    xsk = lo.datapath(batch)
    xsk.refill()
    rxb = xsk.rx_batch
    addr, lens, buf = rxb.addr, rxb.len, umem.buf
    eth_ip = struct.Struct("!6s6sH12x4s4s")  # parse an Ethernet + IPv4 header in place
    pc = time.perf_counter_ns
    spent = done = 0
    while done < packets:
        lo.deliver_blank(batch)
        t0 = pc()
        n = xsk.recv_batch()
        if data:
            unpack = eth_ip.unpack_from
            for a, ln in zip(addr[:n], lens[:n]):
                unpack(buf, a)
        elif touch:
            for a, ln in zip(addr[:n], lens[:n]):
                pass
        xsk.release()
        spent += pc() - t0
        done += n
    return spent / done


def loopback_tx(packets: int = 500_000, batch: int = 64, touch: str = "", data: bool = False) -> float:
    """ns per packet spent in reserve + (lengths: touch="loop" per packet, "set_len" in one
    copy) + (data: 64 bytes written per frame) + submit + complete."""
    umem = Umem(4096, 2048)
    lo = Loopback(umem, rx_size=64, tx_size=2048, fill_size=64, comp_size=2048)
    xsk = lo.datapath(batch)
    txb = xsk.tx_batch
    addr, lens, buf = txb.addr, txb.len, umem.buf
    payload = bytes(range(64))
    pc = time.perf_counter_ns
    spent = done = 0
    while done < packets:
        t0 = pc()
        n = xsk.reserve(batch)
        if touch == "loop":
            for i in range(n):
                lens[i] = 64
        elif touch == "set_len":
            txb.set_len(64, n)
        if data:
            for a in addr[:n]:
                buf[a:a + 64] = payload
        xsk.submit(n)
        spent += pc() - t0
        done += n
        lo.transmit_count()
    return spent / done


def loopback_send_recv(packets: int = 200_000, batch: int = 64) -> tuple[float, float]:
    """ns per packet of the allocating conveniences send(list of bytes) and recv_frames()."""
    umem = Umem(4096, 2048)
    lo = Loopback(umem)
    xsk = lo.datapath(batch)
    frames = [bytes(64)] * batch
    pc = time.perf_counter_ns
    t_send = t_recv = done = 0
    xsk.refill(1024)
    while done < packets:
        t0 = pc()
        xsk.send(frames)
        t_send += pc() - t0
        lo.transmit_count()
        lo.deliver_blank(batch)
        t0 = pc()
        n = len(xsk.recv_frames())
        t_recv += pc() - t0
        done += n
    return t_send / done, t_recv / done


def veth(packets: int = 200_000, batch: int = 64, mode: str = "copy", xdp_mode: str = "native") -> dict[str, float]:
    """Whole-path cost per packet through a veth pair (needs root; cleans up after itself)."""
    from .program import XskProgram
    from .socket import XskSocket

    tag = uuid.uuid4().hex[:6]
    a_ns, b_ns = f"xb{tag}a", f"xb{tag}b"

    def ip(*args: str, ns: str | None = None) -> None:
        pre = ["nsenter", f"--net=/run/netns/{ns}"] if ns else []
        subprocess.run(pre + ["ip", *args], check=True, capture_output=True)

    prog = tx = rx = None
    try:
        ip("netns", "add", a_ns)
        ip("netns", "add", b_ns)
        ip("link", "add", "xa", "netns", a_ns, "type", "veth", "peer", "xb", "netns", b_ns)
        ip("link", "set", "xa", "up", ns=a_ns)
        ip("link", "set", "xb", "up", ns=b_ns)
        prog = XskProgram("xb", netns=b_ns, mode=xdp_mode)
        prog.set_filter(ethertype=0x88B5)  # IPv6 neighbour discovery etc. stay with the kernel
        rx = XskSocket("xb", netns=b_ns, mode=mode, batch_size=batch, rx_size=2048, tx_size=0)
        tx = XskSocket("xa", netns=a_ns, mode=mode, batch_size=batch, rx_size=0, tx_size=2048)
        prog.add(rx)
        frame = bytes.fromhex("02000000000b" "02000000000a" "88b5") + bytes(50)
        txb = tx.tx_batch
        umem_tx = tx.umem
        for i in range(umem_tx.frame_count):  # the payload never changes: write it once
            umem_tx.buf[i * umem_tx.frame_size:i * umem_tx.frame_size + len(frame)] = frame
        pc = time.perf_counter_ns
        sent = got = 0
        t_tx = t_rx = 0
        deadline = time.monotonic() + 60
        start = pc()
        while got < packets and time.monotonic() < deadline:
            t0 = pc()
            if sent - got < 1024:
                n = tx.reserve(batch)
                txb.set_len(64, n)
                sent += tx.submit(n)
            t1 = pc()
            while True:
                n = rx.recv_batch()
                if not n:
                    break
                got += n
                rx.release()
            t_rx += pc() - t1
            t_tx += t1 - t0
        total = pc() - start
        st = rx.statistics()
        return {"packets": got, "ns_per_packet": total / max(got, 1), "tx_side_ns": t_tx / max(got, 1),
                "rx_side_ns": t_rx / max(got, 1), "lost": sent - got, "rx_ring_full": st.rx_ring_full,
                "fill_empty": st.rx_fill_ring_empty_descs}
    finally:
        for s in (tx, rx):
            if s is not None:
                s.close()
        if prog is not None:
            prog.close()
        for ns in (a_ns, b_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--veth", action="store_true", help="also run the veth benchmark (root)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = ap.parse_args(argv)
    p, b = args.packets, args.batch

    def best(fn, *a, **kw):
        return min(fn(*a, **kw) for _ in range(args.repeat))

    print(f"loopback, batch {b}, {p} packets, best of {args.repeat} (ns/packet, user-space only)")
    print(f"  rx  recv_batch+release                  {best(loopback_rx, p, b, touch=False):7.1f}")
    print(f"  rx  + zip(addr, len) loop               {best(loopback_rx, p, b, touch=True):7.1f}")
    print(f"  rx  + parse Ethernet/IPv4 in place      {best(loopback_rx, p, b, data=True):7.1f}")
    print(f"  tx  reserve+submit (+complete)          {best(loopback_tx, p, b):7.1f}")
    print(f"  tx  + set_len(64) for the batch         {best(loopback_tx, p, b, touch='set_len'):7.1f}")
    print(f"  tx  + len[i] = 64 per packet            {best(loopback_tx, p, b, touch='loop'):7.1f}")
    print(f"  tx  + set_len + write 64 B per frame    {best(loopback_tx, p, b, touch='set_len', data=True):7.1f}")
    s, r = min(loopback_send_recv(p // 2, b) for _ in range(args.repeat))
    print(f"  send(list of bytes)                     {s:7.1f}")
    print(f"  recv_frames() -> list of bytes          {r:7.1f}")
    if args.veth:
        if os.geteuid() != 0:
            print("veth: skipped (needs root)")
        else:
            r = veth(min(p, 200_000), b)
            print(f"veth copy mode, batch {b}: {r['ns_per_packet']:.0f} ns/packet end to end "
                  f"(tx side {r['tx_side_ns']:.0f}, rx side {r['rx_side_ns']:.0f}), {r['packets']} packets, "
                  f"lost {r['lost']}, rx_ring_full {r['rx_ring_full']}, fill_empty {r['fill_empty']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
