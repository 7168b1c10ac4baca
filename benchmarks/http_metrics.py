"""What the HTTP surface costs: a /metrics and a /healthz scrape, and counting one frame.

A hub runs as a subprocess with a journal in a temporary database, holding
some state (claims, pending mail, open questions) so the gauges have work.
Then this script scrapes ``/metrics`` and ``/healthz`` one request at a time
on fresh connections (as Prometheus does) and reports the latency per
request and the page size. Counting, which every frame pays, is measured
in process: one :class:`LabelledCounter.add` per frame in and per send out.

    python benchmarks/http_metrics.py [--scrapes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import free_port, summary, wait_for_hub, write_results
from fanout import stop_hub

from synapse_channel.api import Session
from synapse_channel.metrics import LabelledCounter


async def get(port: int, path: str) -> tuple[int, int]:
    """One GET on a fresh connection: (status, body bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), len(body)


async def populate(uri: str, agents: int) -> None:
    """Each agent: a claim, five directed chats to an offline peer, one open question."""
    for i in range(agents):
        async with Session(f"bench/a{i}", uri=uri) as s:
            await s.claim(f"T-{i}", [f"src/m{i}/"], worktree="/bench")
            for j in range(5):
                await s.send(f"bench/offline{j}", f"note {j} from a{i}")
            await s.file_question(f"may a{i} merge?", choices=["yes", "no"])


async def scrape(port: int, path: str, n: int) -> tuple[list[float], int]:
    samples, size = [], 0
    for _ in range(n):
        started = time.perf_counter()
        status, size = await get(port, path)
        samples.append(time.perf_counter() - started)
        assert status == 200, (path, status)
    return samples, size


def count_cost(n: int = 1_000_000) -> float:
    """Seconds per ``LabelledCounter.add`` on a label already present (the steady state)."""
    counter = LabelledCounter()
    labels = ["chat", "heartbeat", "claim", "who_request"]
    started = time.perf_counter()
    for i in range(n):
        counter.add(labels[i & 3])
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--agents", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "SYN_HOME": tmp}
        log = Path(tmp, "hub.log")
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "synapse_channel", "hub", "--port", str(port), "--db", f"{tmp}/hub.db"],
                env=env,
                stderr=sink,
            )
        uri = f"ws://127.0.0.1:{port}"
        try:
            asyncio.run(wait_for_hub(uri, 30, proc=proc, log=log))
            asyncio.run(populate(uri, args.agents))
            metrics, metrics_size = asyncio.run(scrape(port, "/metrics", args.scrapes))
            health, health_size = asyncio.run(scrape(port, "/healthz", args.scrapes))
        finally:
            stop_hub(proc)
    per_add = count_cost()
    data: dict[str, Any] = {
        "agents": args.agents,
        "metrics_scrape": summary(metrics),
        "metrics_bytes": metrics_size,
        "healthz": summary(health),
        "healthz_bytes": health_size,
        "counter_add_ns": per_add * 1e9,
    }
    path = write_results("http_metrics", data)
    m, h = data["metrics_scrape"], data["healthz"]
    print(f"state: {args.agents} claims, {args.agents * 5} pending messages, {args.agents} open questions")
    print(f"/metrics: median {m['median'] * 1e3:.2f} ms (p90 {m['p90'] * 1e3:.2f}, n={m['n']}), {metrics_size} bytes")
    print(f"/healthz: median {h['median'] * 1e3:.2f} ms (p90 {h['p90'] * 1e3:.2f}, n={h['n']}), {health_size} bytes")
    print(f"counting one frame: {per_add * 1e9:.0f} ns")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
