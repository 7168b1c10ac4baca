"""Full-text search: ``search_request`` latency over the wire, and what the index costs group commit.

* Write overhead: chats (70 % broadcasts, 30 % directed) go through the real
  core and the real SQLite journal in this process (group commit, a
  snapshot every 10,000 events), pipelined 256 outcomes deep, once with the
  hub's background indexer running (woken after each commit, as in the hub)
  and once without it, alternating; events/s of acked commits for each, and
  how long the indexer took after the last ack to have indexed everything.
* Latency: a real ``synapse hub`` on a database of ``--messages`` stored chats
  (words drawn from a Zipf-distributed vocabulary, so some words are in most
  messages and some in a handful); one registered socket sends
  ``search_request`` after ``search_request`` (each waits for its reply) over
  six query shapes; p50/p95/p99 of the round trip, overall and per shape.
* Rebuild: how long the indexer takes to index that whole database from an
  empty index (a database from before the index), in its bounded batches.

    python benchmarks/search.py [--messages 100000] [--requests 600] [--quick]

Prints a table and writes ``results/search.json``; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import summary, write_results
from durability import start_hub

from synapse_channel.core import HubCore
from synapse_channel.hub.indexer import Indexer
from synapse_channel.protocol import parse_frame
from synapse_channel.search import DROP, ensure, index_batch
from synapse_channel.store import SqliteJournal, open_journal

SNAPSHOT_EVERY = 10_000
VOCABULARY = 20_000
READER = "bench/reader"
#: name -> (query, extra fields)
QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "common word": ("w1", {}),
    "mid word": ("w300", {}),
    "rare word": ("w9000", {}),
    "prefix": ("w12*", {}),
    "phrase": ('"w1 w2"', {}),
    "two words, --from": ("w3 AND w40", {"from": "proj/s3"}),
}


def _words(rng: random.Random) -> list[str]:
    """A message of 8-20 words, Zipf-like: word k is drawn with weight 1/k."""
    n = rng.randint(8, 20)
    return [f"w{int(VOCABULARY ** rng.random())}" for _ in range(n)]


def _frame(**fields: Any) -> Any:
    return parse_frame(json.dumps({"target": "System", "payload": "", **fields}))


async def populate(db: Path, messages: int, *, index: bool, seed: int = 1) -> tuple[float, float]:
    """Journal ``messages`` chats through core + journal; events/s, and the indexer's lag after the last ack.

    ``index``: the hub's background indexer runs, woken after each commit (otherwise nothing is indexed).
    """
    journal = await open_journal(db, hub_id="syn-bench00", snapshot_every=SNAPSHOT_EVERY)
    assert isinstance(journal, SqliteJournal)
    indexer: Indexer | None = None
    if index:
        indexer = Indexer(db, turn=journal.turn)
        journal.on_commit = indexer.wake
        indexer.start()
    core = HubCore(journal.hub_id)
    await journal.replay(core)
    journal.snapshot_source = core.snapshot
    senders = [f"proj/s{i}" for i in range(8)]
    for conn, name in enumerate([*senders, READER], start=1):
        core.open(conn, time.time())
        core.receive(conn, _frame(sender=name, type="heartbeat"), time.time())
    rng = random.Random(seed)
    pending: list[asyncio.Future[None]] = []
    first = core.seq
    started = time.perf_counter()
    for i in range(messages):
        conn = 1 + i % len(senders)
        target = "all" if rng.random() < 0.7 else rng.choice([READER, *senders, "proj"])
        text = " ".join(_words(rng))
        out = core.receive(conn, _frame(sender=senders[conn - 1], type="chat", target=target, payload=text), 0.0)
        if out.events:
            pending.append(journal.submit(out.events))
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending.clear()
        if target != "all" and i % 50 == 0:  # keep mailboxes under their bounds: everyone acks now and then
            for c, name in enumerate([*senders, READER], start=1):
                ack = core.receive(c, _frame(sender=name, type="ack", seq=core.seq), 0.0)
                if ack.events:
                    pending.append(journal.submit(ack.events))
    await asyncio.gather(*pending)
    acked = time.perf_counter()
    rate = (core.seq - first) / (acked - started)
    lag = 0.0
    if indexer is not None:
        while indexer.through < journal.committed_seq:
            await indexer.wait_for(journal.committed_seq, 1.0)
        lag = time.perf_counter() - acked
        await indexer.stop()
    await journal.close()
    return rate, lag


async def write_overhead(rounds: int, messages: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"with": [], "without": []}
    lags: list[float] = []
    for r in range(rounds):
        for mode in ("with", "without") if r % 2 == 0 else ("without", "with"):
            db = Path(tempfile.mkdtemp(prefix="synapse-search-")) / "hub.db"
            rate, lag = await populate(db, messages, index=mode == "with", seed=r)
            rates[mode].append(rate)
            if mode == "with":
                lags.append(lag)
            tail = f"  (all indexed {lag * 1e3:.1f} ms after the last ack)" if mode == "with" else ""
            print(f"group commit {mode:>7} index: {rate:>9,.0f} events/s{tail}", flush=True)
    w, wo = summary(rates["with"]), summary(rates["without"])
    return {
        "messages": messages,
        "with_index": w,
        "without_index": wo,
        "ratio": w["median"] / wo["median"],
        "index_lag_after_last_ack": summary(lags),
    }


async def latency(db: Path, requests: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    proc, port = await start_hub(db, "--no-compaction")
    try:
        async with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as ws:
            hello = {"sender": READER, "target": "System", "type": "heartbeat", "payload": "online", "quiet": True}
            await ws.send(json.dumps(hello))
            while json.loads(await ws.recv()).get("type") != "welcome":
                pass
            samples: dict[str, list[float]] = {k: [] for k in QUERIES}
            hits: dict[str, int] = {}
            names = list(QUERIES)
            for i in range(requests + 30):
                name = names[i % len(names)]
                query, extra = QUERIES[name]
                req = {"sender": READER, "target": "System", "type": "search_request", "query": query, **extra}
                t0 = time.perf_counter()
                await ws.send(json.dumps(req))
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("type") in ("search_results", "error"):
                        break
                dt = time.perf_counter() - t0
                assert reply["type"] == "search_results", reply
                if i >= 30:  # the first rounds warm the page cache
                    samples[name].append(dt)
                    hits[name] = len(reply["results"])
    finally:
        proc.terminate()
        await proc.wait()
    every = sorted(s for v in samples.values() for s in v)
    return {
        "requests": len(every),
        "all": _pcts(every),
        "per_query": {
            k: {"query": QUERIES[k][0], **QUERIES[k][1], "results": hits[k], **_pcts(sorted(v))}
            for k, v in samples.items()
        },
    }


def _pcts(s: list[float]) -> dict[str, float]:
    def at(p: float) -> float:
        return s[min(len(s) - 1, round(p * (len(s) - 1)))]

    return {"n": len(s), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": s[-1]}


def rebuild(db: Path) -> dict[str, Any]:
    """Time indexing the whole journal from an empty index (a database from before it), batch by batch."""
    con = sqlite3.connect(db, isolation_level=None)
    for statement in DROP:
        con.execute(statement)
    con.execute("DELETE FROM meta WHERE key IN ('search_version', 'search_indexed_through')")
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    done = ensure(con)
    con.execute("COMMIT")
    batches = 0
    while index_batch(con)[1]:
        batches += 1
    seconds = time.perf_counter() - t0
    rows = con.execute("SELECT COUNT(*) FROM search_index_docsize").fetchone()[0]
    con.close()
    return {"seconds": seconds, "rows": rows, "done": done, "batches": batches}


async def main_async(messages: int, requests: int, rounds: int, write_messages: int) -> dict[str, Any]:
    import os

    load_before = os.getloadavg()[0]
    overhead = await write_overhead(rounds, write_messages)
    db = Path(tempfile.mkdtemp(prefix="synapse-search-")) / "hub.db"
    t0 = time.perf_counter()
    await populate(db, messages, index=True)
    print(f"stored {messages:,} chats in {time.perf_counter() - t0:.1f}s", flush=True)
    lat = await latency(db, requests)
    print(f"search_request round trip over {lat['requests']} requests: " + _fmt(lat["all"]))
    for name, row in lat["per_query"].items():
        print(f"  {name:<18} {row['results']:>3} results  " + _fmt(row))
    rb = rebuild(db)
    print(f"indexing {rb['rows']:,} rows from an empty index: {rb['seconds']:.2f}s in {rb['batches']} batches")
    print(
        f"group commit: {overhead['with_index']['median']:,.0f} events/s with the indexer, "
        f"{overhead['without_index']['median']:,.0f} without ({overhead['ratio']:.2f}x); all indexed "
        f"{overhead['index_lag_after_last_ack']['median'] * 1e3:.1f} ms (median) after the last ack"
    )
    return {
        "messages": messages,
        "db_bytes": db.stat().st_size,
        "latency": lat,
        "write": overhead,
        "rebuild": rb,
        "params": {"requests": requests, "rounds": rounds, "write_messages": write_messages},
        "load": [load_before, os.getloadavg()[0]],
    }


def _fmt(row: dict[str, float]) -> str:
    return f"p50 {row['p50'] * 1e3:.2f} ms  p95 {row['p95'] * 1e3:.2f} ms  p99 {row['p99'] * 1e3:.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3, help="Write-overhead repetitions (each: with and without).")
    ap.add_argument("--write-messages", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true", help="10k messages, 120 requests, 1 round: a smoke run.")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.requests, args.rounds, args.write_messages = 10_000, 120, 1, 5_000
    data = asyncio.run(main_async(args.messages, args.requests, args.rounds, args.write_messages))
    if not args.quick:
        print(f"wrote {write_results('search', data)}")


if __name__ == "__main__":
    main()
