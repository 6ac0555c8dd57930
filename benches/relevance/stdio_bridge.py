"""Serves a stdio MCP server over Streamable HTTP, so the gateway can list
(and call) it: the official Python MCP SDK's `Client` launches the stdio
server, and the SDK's low-level `Server` answers `tools/list` with the
server's own definitions, as listed, and forwards `tools/call`.

  stdio_bridge.py PORT COMMAND [ARG ...]

Prints `ready` once listening on 127.0.0.1:PORT (path /mcp).
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.server.lowlevel import Server

HOST = "127.0.0.1"


async def main(port: int, command: str, args: list[str]) -> None:
    params = StdioServerParameters(command=command, args=args)
    async with Client(params) as upstream:
        tools: list[types.Tool] = []
        cursor = None
        while True:
            page = await upstream.list_tools(cursor=cursor) if cursor else await upstream.list_tools()
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break

        async def on_list_tools(ctx, params) -> types.ListToolsResult:
            return types.ListToolsResult(tools=tools)

        async def on_call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
            return await upstream.call_tool(params.name, params.arguments or {})

        server = Server("stdio-bridge", on_list_tools=on_list_tools, on_call_tool=on_call_tool)
        app = server.streamable_http_app(streamable_http_path="/mcp", host=HOST)
        config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False)
        http = uvicorn.Server(config)
        serving = asyncio.create_task(http.serve())
        while not http.started and not serving.done():
            await asyncio.sleep(0.02)
        if http.started:
            print("ready", flush=True)
        await serving


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.stderr.write("usage: stdio_bridge.py PORT COMMAND [ARG ...]\n")
        sys.exit(2)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
