#!/usr/bin/env python3
"""Send N MCP `tools/call` requests one after another on one keep-alive
connection, checking every answer; used by callgrind.sh, where a steady,
low-overhead client matters more than speed.

  mcp_client.py URL N [PAYLOAD]

Each request is the same ~1 KB stateless (2026-07-28) call of the demo's
`payload` tool as the k6 scripts send (see k6/common.js); the answer may be
application/json or text/event-stream. Exits non-zero on the first bad answer.
Prints the number of requests sent and the elapsed seconds. With AUTH set
in the environment, every request carries `Authorization: Bearer $AUTH`.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

REVISION = "2026-07-28"
PADDING = "p" * 900


def body(i, payload):
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {
                "name": "payload",
                "arguments": {"size": payload},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": REVISION,
                    "io.modelcontextprotocol/clientInfo": {"name": "sluice-py", "version": "1"},
                    "progressToken": f"py-{i}",
                    "padding": PADDING,
                },
            },
        },
        separators=(",", ":"),
    ).encode()


def result_of(content_type, data, i):
    """The JSON-RPC message answering id `i`, or None."""
    if content_type.startswith("application/json"):
        candidates = [data]
    else:
        candidates = [
            line[5:].strip() for line in data.splitlines() if line.startswith(b"data:")
        ]
    for c in candidates:
        try:
            msg = json.loads(c)
        except ValueError:
            continue
        if msg.get("id") == i and "result" in msg:
            return msg
    return None


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    url = urllib.parse.urlsplit(sys.argv[1])
    n = int(sys.argv[2])
    payload = int(sys.argv[3]) if len(sys.argv) == 4 else 2048
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": REVISION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "payload",
    }
    if os.environ.get("AUTH"):
        headers["Authorization"] = "Bearer " + os.environ["AUTH"]
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    started = time.monotonic()
    for i in range(1, n + 1):
        conn.request("POST", url.path or "/", body(i, payload), headers)
        r = conn.getresponse()
        data = r.read()
        msg = result_of(r.getheader("Content-Type", ""), data, i)
        text = msg and msg["result"].get("content", [{}])[0].get("text", "")
        if r.status != 200 or not msg or len(text) != payload:
            sys.exit(f"request {i}: bad answer {r.status}: {data[:300]!r}")
    print(f"{n} requests in {time.monotonic() - started:.2f}s")


if __name__ == "__main__":
    main()
