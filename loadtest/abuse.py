"""One attack against one proxy, with ordinary calls made through it meanwhile.

  abuse.py BASE_URL PID ATTACK SECONDS CONNECTIONS

BASE_URL serves /json (the demo answering JSON) and /sse (the demo answering
SSE). PID is the proxy process (RSS, descriptors and CPU are read from
/proc). ATTACK is one of:

  slowloris     each connection sends a request head one byte a second
  body_promise  each head declares a 4 MiB body, then one byte a second
  big_head      each connection sends 1 MB of one header line, never ending it
  slow_reader   each connection asks the SSE demo for an 8 MiB payload and
                reads 64 KiB every 5 ms

Prints one JSON object: the proxy's RSS and open descriptors before, at
peak and after; its CPU share during the attack; p50/p99 of ordinary calls
(one keep-alive connection, sequential `tools/call echo`) before the attack
(idle) and during it; for slow_reader, the bytes each slow stream moved per
second. Loopback only; every loop is bounded by SECONDS.
"""
import asyncio
import json
import os
import statistics
import sys
import time
from urllib.parse import urlparse

CALL = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"message": "hi"},
                              "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
PAYLOAD = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "payload", "arguments": {"size": 8 * 1024 * 1024},
                                 "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})


def proc(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss, fds, ticks / os.sysconf("SC_CLK_TCK")


def request(path, body, name, host):
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
            f"Mcp-Method: tools/call\r\nMcp-Name: {name}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


async def read_response(reader):
    """Read one HTTP/1.1 response (Content-Length or chunked); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def ordinary(host, port, until, out):
    """Sequential calls on one keep-alive connection until `until`."""
    reader, writer = await asyncio.open_connection(host, port)
    req = request("/json", CALL, "echo", f"{host}:{port}")
    while time.monotonic() < until:
        t = time.perf_counter()
        try:
            writer.write(req)
            await writer.drain()
            status = await asyncio.wait_for(read_response(reader), 30)
        except Exception:
            out["failed"] += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            continue
        out["ms"].append((time.perf_counter() - t) * 1000)
        if status != 200:
            out["failed"] += 1
    writer.close()


async def attacker(kind, host, port, until, stats):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        stats["refused"] += 1
        return
    try:
        if kind == "slowloris":
            writer.write(b"POST /json HTTP/1.1\r\n")
            while time.monotonic() < until:
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(1)
                if reader.at_eof():
                    stats["closed"] += 1
                    return
        elif kind == "body_promise":
            writer.write((f"POST /json HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {4 * 1024 * 1024}\r\n\r\n{{").encode())
            while time.monotonic() < until:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(1)
                if reader.at_eof():
                    stats["closed"] += 1
                    return
        elif kind == "big_head":
            writer.write(f"POST /json HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode())
            chunk = b"a" * 65536
            for _ in range(16):
                writer.write(chunk)
                await writer.drain()
            while time.monotonic() < until and not reader.at_eof():
                await asyncio.sleep(0.5)
            if reader.at_eof():
                stats["closed"] += 1
        elif kind == "slow_reader":
            writer.write(request("/sse", PAYLOAD, "payload", f"{host}:{port}"))
            await writer.drain()
            # Kept as it goes: the attack may be cancelled mid-read.
            mine = {"got": 0, "t": time.perf_counter(), "end": None}
            stats["streams"].append(mine)
            while time.monotonic() < until:
                data = await reader.read(65536)
                if not data:
                    break
                mine["got"] += len(data)
                mine["end"] = time.perf_counter()
                await asyncio.sleep(0.005)
    except (OSError, asyncio.IncompleteReadError):
        stats["closed"] += 1
    finally:
        writer.close()


def pct(ms, q):
    if not ms:
        return None
    ms = sorted(ms)
    return round(ms[min(len(ms) - 1, int(q * len(ms)))], 3)


async def main(base, pid, kind, seconds, conns):
    u = urlparse(base)
    host, port = u.hostname, u.port
    idle = {"ms": [], "failed": 0}
    await ordinary(host, port, time.monotonic() + 2, idle)
    rss0, fds0, cpu0 = proc(pid)
    peak_rss, peak_fds = rss0, fds0
    stats = {"closed": 0, "refused": 0, "streams": []}
    during = {"ms": [], "failed": 0}
    until = time.monotonic() + seconds
    started = time.monotonic()
    tasks = [asyncio.create_task(attacker(kind, host, port, until, stats)) for _ in range(conns)]
    calls = asyncio.create_task(ordinary(host, port, until, during))
    while time.monotonic() < until:
        await asyncio.sleep(0.25)
        rss, fds, _ = proc(pid)
        peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
    _, _, cpu1 = proc(pid)
    elapsed = time.monotonic() - started
    await calls
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2)
    rss2, fds2, _ = proc(pid)
    out = {
        "attack": kind, "connections": conns, "seconds": seconds,
        "rss_mb": [round(rss0 / 2**20, 1), round(peak_rss / 2**20, 1), round(rss2 / 2**20, 1)],
        "fds": [fds0, peak_fds, fds2],
        "cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "idle_p50_ms": pct(idle["ms"], 0.5), "idle_p99_ms": pct(idle["ms"], 0.99),
        "p50_ms": pct(during["ms"], 0.5), "p99_ms": pct(during["ms"], 0.99),
        "calls": len(during["ms"]), "calls_failed": during["failed"],
        "attackers_closed": stats["closed"], "attackers_refused": stats["refused"],
    }
    rates = [m["got"] / (m["end"] - m["t"]) for m in stats["streams"] if m["end"] and m["end"] > m["t"]]
    if rates:
        out["slow_stream_mb_per_s"] = round(statistics.median(rates) / 2**20, 2)
        out["slow_stream_mb"] = round(sum(m["got"] for m in stats["streams"]) / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    base, pid, kind, seconds, conns = sys.argv[1:6]
    asyncio.run(main(base, int(pid), kind, float(seconds), int(conns)))
