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
With METHOD=tools/list each request lists the tools instead (the answer
must hold at least one) and the bytes of the last answer are printed too.
With SESSION=2025 the client speaks a 2025 session instead: `initialize`
(2025-06-18) and `notifications/initialized` first, not counted, then every
call in that session (`Mcp-Session-Id`), without the stateless `_meta`.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

REVISION = "2026-07-28"
PADDING = "p" * 900


def list_body(i):
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/list",
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": REVISION,
                    "io.modelcontextprotocol/clientInfo": {"name": "sluice-py", "version": "1"},
                }
            },
        },
        separators=(",", ":"),
    ).encode()


def body(i, payload, stateless=True):
    """The call; a stateless one names its revision and client in `_meta`."""
    meta = {"progressToken": f"py-{i}", "padding": PADDING}
    if stateless:
        meta = {
            "io.modelcontextprotocol/protocolVersion": REVISION,
            "io.modelcontextprotocol/clientInfo": {"name": "sluice-py", "version": "1"},
            **meta,
        }
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "payload", "arguments": {"size": payload}, "_meta": meta},
        },
        separators=(",", ":"),
    ).encode()


SESSION_REVISION = "2025-06-18"


def open_session(conn, path, headers):
    """`initialize` and `notifications/initialized`: the session's id."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": SESSION_REVISION,
            "capabilities": {},
            "clientInfo": {"name": "sluice-py", "version": "1"},
        },
    }
    conn.request("POST", path, json.dumps(init).encode(), headers)
    r = conn.getresponse()
    data = r.read()
    sid = r.getheader("Mcp-Session-Id")
    if r.status != 200 or not sid:
        sys.exit(f"initialize: {r.status}: {data[:300]!r}")
    headers = dict(headers, **{"Mcp-Session-Id": sid})
    note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
    conn.request("POST", path, note, headers)
    r = conn.getresponse()
    r.read()
    if r.status not in (200, 202):
        sys.exit(f"notifications/initialized: {r.status}")
    return sid


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
    listing = os.environ.get("METHOD") == "tools/list"
    if listing:
        headers["Mcp-Method"] = "tools/list"
        del headers["Mcp-Name"]
    if os.environ.get("AUTH"):
        headers["Authorization"] = "Bearer " + os.environ["AUTH"]
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    session = os.environ.get("SESSION") == "2025"
    stateless = not session
    if session:
        headers["MCP-Protocol-Version"] = SESSION_REVISION
        for mirrored in ("Mcp-Method", "Mcp-Name"):
            headers.pop(mirrored, None)
        headers["Mcp-Session-Id"] = open_session(conn, url.path or "/", headers)
    started = time.monotonic()
    data = b""
    for i in range(1, n + 1):
        conn.request("POST", url.path or "/", list_body(i) if listing else body(i, payload, stateless), headers)
        r = conn.getresponse()
        data = r.read()
        msg = result_of(r.getheader("Content-Type", ""), data, i)
        if listing:
            ok = msg and len(msg["result"].get("tools", [])) > 0
        elif os.environ.get("HTTP_TOOL"):
            # An HTTP tool's result: the upstream's JSON answer, as text.
            result = msg and msg["result"]
            ok = result and not result.get("isError") and len(json.dumps(result)) > payload
        else:
            text = msg and msg["result"].get("content", [{}])[0].get("text", "")
            ok = msg and len(text) == payload
        if r.status != 200 or not ok:
            sys.exit(f"request {i}: bad answer {r.status}: {data[:300]!r}")
    extra = ""
    if listing:
        tools = len(result_of(r.getheader("Content-Type", ""), data, n)["result"]["tools"])
        extra = f"; last answer {len(data)} bytes, {tools} tools"
    print(f"{n} requests in {time.monotonic() - started:.2f}s{extra}")


if __name__ == "__main__":
    main()
