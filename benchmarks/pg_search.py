"""Search latency on a PostgreSQL hub: ``search_request`` round trips over a few thousand journaled chats.

A throw-away cluster (``tests/pgcluster.py``, ``fsync=off``), one in-process
hub on it; writers send ``--messages`` chats (Zipf-like words, 70 % to
``all``, the rest directed), then a reader sends the queries of
:mod:`benchmarks.search` round-robin and the round trips are timed
(p50/p95/p99). Also times how long the indexer takes to catch up after the
last ack. Writes ``results/pg_search.json``.

    python benchmarks/pg_search.py [--messages 5000] [--requests 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from benchlib import write_results
from search import QUERIES, READER, _pcts, _words

from synapse_channel.hub.config import HubConfig
from synapse_channel.hub.server import Hub


async def _hello(uri: str, name: str) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(uri, max_size=None, compression=None)
    await ws.send(json.dumps({"sender": name, "target": "System", "type": "heartbeat", "payload": "online"}))
    while json.loads(await ws.recv()).get("type") != "welcome":
        pass
    return ws


async def run(url: str, messages: int, requests: int) -> dict[str, Any]:
    hub = Hub(HubConfig(host="127.0.0.1", port=0, database_url=url, relay_log=None, compaction=False))
    await hub.start()
    try:
        senders = [f"proj/s{i}" for i in range(4)]
        socks = [await _hello(hub.uri, s) for s in senders]
        reader = await _hello(hub.uri, READER)
        rng = random.Random(1)
        started = time.perf_counter()
        for i in range(messages):
            target = "all" if rng.random() < 0.7 else rng.choice([READER, *senders])
            frame = {"sender": senders[i % 4], "target": target, "type": "chat", "payload": " ".join(_words(rng))}
            await socks[i % 4].send(json.dumps(frame))
        sync = {"sender": senders[0], "target": "System", "type": "ping", "payload": ""}
        for ws in socks:  # one round trip each: every chat before it was read and journaled
            await ws.send(json.dumps({**sync, "sender": senders[socks.index(ws)]}))
        assert hub.journal is not None and hub.indexer is not None
        while hub.journal.committed_seq < messages:
            await asyncio.sleep(0.01)
        acked = time.perf_counter()
        while hub.indexer.through < hub.journal.committed_seq:
            await hub.indexer.wait_for(hub.journal.committed_seq, 1.0)
        lag = time.perf_counter() - acked
        print(f"{messages} chats journaled in {acked - started:.1f}s; indexed {lag * 1e3:.0f} ms after the last commit")
        samples: dict[str, list[float]] = {k: [] for k in QUERIES}
        hits: dict[str, int] = {}
        names = list(QUERIES)
        for i in range(requests + 30):
            name = names[i % len(names)]
            query, extra = QUERIES[name]
            req = {"sender": READER, "target": "System", "type": "search_request", "query": query, **extra}
            t0 = time.perf_counter()
            await reader.send(json.dumps(req))
            while True:
                reply = json.loads(await reader.recv())
                if reply.get("type") in ("search_results", "error"):
                    break
            dt = time.perf_counter() - t0
            assert reply["type"] == "search_results", reply
            if i >= 30:
                samples[name].append(dt)
                hits[name] = len(reply["results"])
        for ws in [*socks, reader]:
            await ws.close()
    finally:
        await hub.stop()
    every = sorted(s for v in samples.values() for s in v)
    return {
        "messages": messages,
        "index_lag_after_last_commit": lag,
        "all": _pcts(every),
        "per_query": {
            k: {"query": QUERIES[k][0], **QUERIES[k][1], "results": hits[k], **_pcts(sorted(v))}
            for k, v in samples.items()
        },
    }


async def main_async(messages: int, requests: int) -> dict[str, Any]:
    from tests.pgcluster import Cluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("benchmarks/pg_search.py: PostgreSQL server binaries not found")
    cluster = Cluster(bindir, fsync=False).start()
    try:
        return {"postgresql": bindir.parent.name, **await run(cluster.create_db(), messages, requests)}
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.messages, args.requests))
    a = results["all"]
    print(f"search_request round trip: p50 {a['p50'] * 1e3:.2f} ms, p95 {a['p95'] * 1e3:.2f} ms (n={a['n']})")
    for name, q in results["per_query"].items():
        print(f"  {name:<20} {q['results']:>3} results  p50 {q['p50'] * 1e3:6.2f} ms  p95 {q['p95'] * 1e3:6.2f} ms")
    print(write_results("pg_search", results))


if __name__ == "__main__":
    main()
