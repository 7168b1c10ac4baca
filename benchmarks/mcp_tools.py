"""How much of a model's context our MCP tools take: the JSON size of ``tools/list`` (target: under 8 KB).

Starts the real ``synapse mcp serve`` over stdio with the MCP SDK's own
client, lists tools and resources, and measures the result as the client
received it (compact JSON, the shape a host hands the model). Prints a table
and writes ``benchmarks/results/mcp_tools.json``. Needs the ``mcp`` extra.

    python benchmarks/mcp_tools.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from benchlib import OUR_BIN, write_results

BUDGET = 8 * 1024


def size(obj: Any) -> int:
    """Bytes of ``obj`` as compact UTF-8 JSON."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


async def measure() -> dict[str, Any]:
    try:
        import mcp
    except ImportError:
        sys.exit("needs the mcp extra: pip install -e '.[mcp]'")
    params = mcp.StdioServerParameters(
        command=str(Path(OUR_BIN, "synapse")),
        args=["mcp", "serve", "--name", "bench/agent", "--uri", "ws://127.0.0.1:9"],
        env=dict(os.environ),
    )
    async with mcp.Client(params) as client:
        tools = await client.list_tools()
        resources = await client.list_resources()
    listed = tools.model_dump(mode="json", by_alias=True, exclude_none=True)
    per_tool = {t["name"]: size(t) for t in listed["tools"]}
    return {
        "tools": len(per_tool),
        "tools_list_bytes": size(listed),
        "budget_bytes": BUDGET,
        "per_tool_bytes": per_tool,
        "resources": len(resources.resources),
        "resources_list_bytes": size(resources.model_dump(mode="json", by_alias=True, exclude_none=True)),
    }


def main() -> None:
    data = asyncio.run(measure())
    print(f"tools/list: {data['tools']} tools, {data['tools_list_bytes']:,} bytes (budget {BUDGET:,})")
    for name, n in sorted(data["per_tool_bytes"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<12} {n:>5} B")
    print(f"resources/list: {data['resources']} resources, {data['resources_list_bytes']:,} bytes")
    print(f"wrote {write_results('mcp_tools', data)}")


if __name__ == "__main__":
    main()
