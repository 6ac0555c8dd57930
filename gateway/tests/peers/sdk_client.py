"""Drives the official Python MCP SDK (`mcp`, installed by .ci/setup) through
the gateway: lists the tools, calls one, prints what it got.

  sdk_client.py URL [TOOL] [JSON_ARGS] [MODE] [HEADER=VALUE ...]

MODE is `auto` (server/discover, falling back to initialize), `legacy`
(initialize only), `sse` (initialize over the legacy HTTP+SSE transport:
URL is the stream's) or a protocol revision such as 2026-07-28. Output: the
tool names on one line, then the call's isError flag and its text parts.
"""
import asyncio
import json
import sys

from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


async def run(url, tool="echo", arguments='{"message":"hi"}', mode="auto", *header_args):
    headers = {}
    for h in header_args:
        name, _, value = h.partition("=")
        headers[name] = value
    if mode == "sse":
        transport, mode = sse_client(url, headers=headers), "legacy"
    else:
        transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    async with Client(transport, mode=mode) as client:
        listed = await client.list_tools()
        print([t.name for t in listed.tools])
        called = await client.call_tool(tool, json.loads(arguments))
        print(called.is_error, [getattr(part, "text", part) for part in called.content])


if __name__ == "__main__":
    asyncio.run(run(*sys.argv[1:]))
