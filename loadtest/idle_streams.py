#!/usr/bin/env python3
"""Hold N idle SSE streams open through a proxy and report its memory.

Each stream is a stateless (2026-07-28) `tools/call` of the demo's `ticker`
tool; the demo (started with a very long --sse-interval-ms) sends the first
progress event at once and then nothing, so every stream stays open and idle.

Usage: idle_streams.py HOST PORT PATH N PROXY_PID
Prints one line: streams held, the proxy's RSS before and with them, and the
RSS per stream. Exits non-zero if fewer than N streams could be opened.
"""

import asyncio
import os
import sys

HOST, PORT, PATH, N, PID = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
# Seconds every stream is held before the proxy's memory is read.
HOLD_S = float(os.environ.get("HOLD_S", "2"))

BODY = (
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ticker",'
    b'"arguments":{"count":2},"_meta":{"progressToken":"p",'
    b'"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}'
)
REQUEST = (
    f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    f"Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\n"
    f"Mcp-Method: tools/call\r\nMcp-Name: ticker\r\nContent-Length: {len(BODY)}\r\n\r\n"
).encode() + BODY


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def hold(held, gate):
    async with gate:
        r, w = await asyncio.open_connection(HOST, PORT)
        w.write(REQUEST)
        await w.drain()
        buf = b""
        # Response header, then the first event.
        while b"notifications/progress" not in buf:
            chunk = await asyncio.wait_for(r.read(4096), 30)
            if not chunk:
                raise ConnectionError("closed before the first event")
            buf += chunk
        held.append((r, w))


async def main():
    before = rss_kib(PID)
    held, gate = [], asyncio.Semaphore(256)
    results = await asyncio.gather(*(hold(held, gate) for _ in range(N)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    # Idle streams, as the scenario means them: held a while (the gateway
    # moves a stream out of Pingora's session once it is 100 ms old).
    await asyncio.sleep(HOLD_S)
    # Read once the proxy's RSS has settled (allocator purges), at most 3 s.
    after, prev = rss_kib(PID), -1
    for _ in range(30):
        if after == prev:
            break
        await asyncio.sleep(0.1)
        prev, after = after, rss_kib(PID)
    per = (after - before) * 1024 / max(len(held), 1)
    print(
        f"streams {len(held)} of {N}; rss before {before} KiB, with streams {after} KiB; "
        f"{per / 1024:.1f} KiB per stream; errors {len(errors)}"
        + (f" (first: {errors[0]!r})" if errors else "")
    )
    for _, w in held:
        w.close()
    return 0 if len(held) == N else 1


sys.exit(asyncio.run(main()))
