"""asyncio streams over etran TCP, and one etran server with 1,000 concurrent connections.

`etran.tcp.start_server` / `open_connection` mirror asyncio's: the handler gets asyncio's own
StreamReader and StreamWriter. The big test opens 1,000 connections from two client processes
to one etran server process, holds them all open at once, makes every one do its exchange
and closes them; every exchange must complete.
"""

from __future__ import annotations

import pytest
from etran_apps import spawn

pytestmark = pytest.mark.kernel

ASYNC_SERVER = r"""
import asyncio, json, sys
import etran.tcp

port, expect = int(sys.argv[1]), int(sys.argv[2])
done = 0
peak = 0
live = 0

async def handle(reader, writer):
    global done, peak, live
    live += 1
    peak = max(peak, live)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(b"echo " + line)
            await writer.drain()
        done += 1
    finally:
        live -= 1
        writer.close()
        await writer.wait_closed()

async def main():
    server = await etran.tcp.start_server(handle, "", port, backlog=1024)
    print(json.dumps({"listening": port}), flush=True)
    async with server:
        while done < expect:
            await asyncio.sleep(0.05)
    print(json.dumps({"served": done, "peak": peak, "peername_ok": True}), flush=True)

asyncio.run(main())
"""

ASYNC_CLIENTS = r"""
import asyncio, json, sys, time
import etran.tcp

host, port, n, rounds, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

async def main():
    t0 = time.monotonic()
    sem = asyncio.Semaphore(64)            # connection attempts in flight at once
    async def connect(i):
        async with sem:
            return await etran.tcp.open_connection(host, port, timeout=60)
    conns = await asyncio.gather(*(connect(i) for i in range(n)))
    opened = time.monotonic() - t0
    print(json.dumps({"connected": n}), flush=True)
    # every client process holds its connections open until the test says go
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    gate = asyncio.Event()
    async def exchange(i, reader, writer):
        await gate.wait()                  # every connection is open before any exchange
        ok = 0
        for r in range(rounds):
            msg = f"{tag}-{i}-{r}\n".encode()
            writer.write(msg)
            await writer.drain()
            ok += (await reader.readline()) == b"echo " + msg
        assert writer.get_extra_info("peername") == (host, port)
        writer.close()
        await writer.wait_closed()
        return ok
    tasks = [asyncio.create_task(exchange(i, r, w)) for i, (r, w) in enumerate(conns)]
    gate.set()
    oks = await asyncio.gather(*tasks)
    print(json.dumps({"opened": n, "complete": sum(o == rounds for o in oks), "open_s": opened,
                      "total_s": time.monotonic() - t0}), flush=True)

asyncio.run(main())
"""


def test_asyncio_streams_echo(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    server = spawn(h2, ASYNC_SERVER, app_pythonpath, "aserver", args=(7400, 20))
    apps.append(server)
    server.wait_for("listening")
    client = spawn(h1, ASYNC_CLIENTS, app_pythonpath, "aclient", args=(h2.ip, 7400, 20, 10, "a"))
    apps.append(client)
    client.wait_for("connected", timeout=120)
    client.send("go")
    res = client.wait_for("complete", timeout=120)
    assert res["complete"] == 20
    assert server.wait_for("served", timeout=30)["served"] == 20


def test_one_etran_server_with_1000_concurrent_connections(etran_bed, app_pythonpath, apps):
    bed = etran_bed(hosts=2, rate_gbit=None)
    h1, h2 = bed.hosts
    server = spawn(h2, ASYNC_SERVER, app_pythonpath, "bigserver", args=(7401, 1000))
    apps.append(server)
    server.wait_for("listening")
    clients = [spawn(h1, ASYNC_CLIENTS, app_pythonpath, f"bigclient{k}", args=(h2.ip, 7401, 500, 3, f"c{k}"))
               for k in range(2)]
    apps.extend(clients)
    for c in clients:
        assert c.wait_for("connected", timeout=240)["connected"] == 500
    for c in clients:  # all 1,000 are open now; only then does any exchange (and close) begin
        c.send("go")
    results = [c.wait_for("complete", timeout=240) for c in clients]
    assert sum(r["complete"] for r in results) == 1000, results
    res = server.wait_for("served", timeout=60)
    assert res["served"] == 1000
    assert res["peak"] >= 900, f"the connections were not all open at once (peak {res['peak']})"
