"""Journal size under steady churn, with and without compaction, and restart time after it.

Steady churn: one worker claims and releases a task over and over (two
events a round), and every tenth round a directed chat is sent and acked
(two more). Events go through the real core and the real SQLite journal
(group commit, a snapshot every 10,000 events) in this process, with the
hub's automatic compactor attached exactly as ``synapse hub`` attaches it;
``--retain-days 0`` (the default here) lets acked mail go as soon as a
snapshot covers it, so the curve shows the steady state rather than a week
of history. Every ``--step`` events it records the database's size on disk
(main file + WAL), its rows and its pages in use.

Then it times restarts of ``synapse hub`` on the compacted database (start
until a WebSocket connects; the same on an empty database shows what the
interpreter and imports cost) and the in-process open + replay. Last, it
compacts 200k covered rows in one go (a hub restarted on an uncompacted
journal) while a 5 ms ticker measures how long the event loop was blocked.

    python benchmarks/compaction.py [--events 1000000] [--step 100000] [--quick]

``--postgresql`` runs the same churn on a throw-away PostgreSQL cluster
(``tests/pgcluster.py``, ``fsync=off``: sizes do not depend on it) through
the PostgreSQL journal, leading, with its compactor; each point records the
journal's rows and ``pg_total_relation_size('events')`` (the compactor
runs a plain ``VACUUM`` after each run), and at the end the size after a plain ``VACUUM``.
It writes ``benchmarks/results/compaction_pg.json``.

    python benchmarks/compaction.py --postgresql [--events 200000] [--step 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import summary, write_results
from durability import start_hub

from synapse_channel.compaction import file_bytes, keep_of
from synapse_channel.core import HubCore
from synapse_channel.hub.compactor import AutoCompactor
from synapse_channel.protocol import parse_frame
from synapse_channel.store import SqliteJournal, open_journal

SNAPSHOT_EVERY = 10_000


def _frame(**fields: Any) -> Any:
    return parse_frame(json.dumps({"target": "System", "payload": "", **fields}))


def _measure(db: Path, events: int) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0] - con.execute("PRAGMA freelist_count").fetchone()[0]
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    return {"events": events, "bytes": file_bytes(db), "rows": rows, "bytes_in_use": pages * page_size}


async def drive(
    core: HubCore, journal: Any, events: int, step: int, measure: Callable[[int], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The churn both stores get: claims granted and released, every tenth round a chat and its ack.

    Commits are awaited 256 outcomes at a time (group commit) and at every
    ``step`` events, where ``measure`` takes a size point.
    """
    for conn, name in ((1, "proj/worker"), (2, "proj/seat")):
        core.open(conn, time.time())
        core.receive(conn, _frame(sender=name, type="heartbeat"), time.time())
    points: list[dict[str, Any]] = []
    next_point = step
    pending: list[asyncio.Future[None]] = []
    rounds = 0
    while core.seq < events:
        now = time.time()
        outs = [
            core.receive(1, _frame(sender="proj/worker", type="claim", task_id="t", paths=["a.py"]), now),
            core.receive(1, _frame(sender="proj/worker", type="release", task_id="t", epoch=rounds + 1), now),
        ]
        if rounds % 10 == 0:
            outs.append(
                core.receive(1, _frame(sender="proj/worker", type="chat", target="proj/seat", payload="hi"), now)
            )
            outs.append(core.receive(2, _frame(sender="proj/seat", type="ack", seq=core.seq), now))
        rounds += 1
        for out in outs:
            if out.events:
                pending.append(journal.submit(out.events))
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending.clear()
        if core.seq >= next_point:
            await asyncio.gather(*pending)
            pending.clear()
            points.append(await measure(core.seq))
            next_point += step
    await asyncio.gather(*pending)
    return points


async def churn(db: Path, events: int, step: int, *, compaction: bool, retain_days: float) -> list[dict[str, Any]]:
    """Drive ``events`` events of churn through core + journal; a size point every ``step`` events."""
    journal = await open_journal(db, hub_id="syn-bench00", snapshot_every=SNAPSHOT_EVERY)
    assert isinstance(journal, SqliteJournal)
    core = HubCore(journal.hub_id)
    await journal.replay(core)
    journal.snapshot_source = core.snapshot
    compactor = None
    if compaction:
        compactor = AutoCompactor(db, retain_days)
        journal.snapshot_source = compactor.watch(core.snapshot)
        compactor.start()
    mode = "with" if compaction else "without"

    async def measure(seq: int) -> dict[str, Any]:
        p = _measure(db, seq)
        print(
            f"{mode} compaction: {p['events']:>9} events  {p['bytes'] / 2**20:7.1f} MiB on disk  "
            f"{p['bytes_in_use'] / 2**20:7.1f} MiB in use  {p['rows']:>8} rows",
            flush=True,
        )
        return p

    points = await drive(core, journal, events, step, measure)
    if compactor is not None:
        await compactor.compact_now()
        await compactor.stop()
    await journal.close()
    return points


async def restart(db: Path, runs: int) -> dict[str, Any]:
    """``synapse hub`` start until it accepts a connection, and in-process open + replay, on ``db``."""
    hub_samples, replay_samples = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        proc, _port = await start_hub(db)
        hub_samples.append(time.monotonic() - t0)
        proc.send_signal(15)
        await proc.wait()
        t0 = time.perf_counter()
        journal = await open_journal(db, hub_id="x")
        await journal.replay(HubCore(journal.hub_id))
        replay_samples.append(time.perf_counter() - t0)
        journal.snapshot_source = None
        await journal.close()
    return {"hub_start_s": summary(hub_samples), "open_and_replay_s": summary(replay_samples)}


async def loop_stall(db: Path, events: int) -> dict[str, Any]:
    """Build ``events`` of churn without compaction, then compact them all at once as a restarted hub would.

    A task that sleeps 5 ms records how late it wakes: the longest wake-up
    delay is the longest the event loop was blocked while compaction ran.
    """
    await churn(db, events, events, compaction=False, retain_days=0)
    journal = await open_journal(db, hub_id="x")
    core = HubCore(journal.hub_id)
    await journal.replay(core)
    compactor = AutoCompactor(db, 0)
    compactor.offer(keep_of(core.snapshot()))
    lags: list[float] = []
    done = False

    async def watch() -> None:
        while not done:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t0 - 0.005)

    watcher = asyncio.create_task(watch())
    t0 = time.perf_counter()
    report = await compactor.compact_now()
    seconds = time.perf_counter() - t0
    done = True
    await watcher
    await compactor.stop()
    journal.snapshot_source = None
    await journal.close()
    assert report is not None
    return {
        "covered_rows": report.examined,
        "deleted": report.deleted,
        "batches": report.batches,
        "seconds": seconds,
        "max_loop_stall_s": max(lags),
        "loop_stall_s": summary(lags),
    }


async def main_async(events: int, step: int, retain_days: float) -> dict[str, Any]:
    results: dict[str, Any] = {
        "events": events,
        "step": step,
        "retain_days": retain_days,
        "snapshot_every": SNAPSHOT_EVERY,
    }
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp, "empty.db")
        results["restart_empty_db"] = r = await restart(empty, 5)
        print(f"restart on an empty database: hub start median {r['hub_start_s']['median'] * 1000:.0f} ms", flush=True)
        for compaction in (True, False):
            db = Path(tmp, f"churn-{compaction}.db")
            t0 = time.perf_counter()
            points = await churn(db, events, step, compaction=compaction, retain_days=retain_days)
            key = "with_compaction" if compaction else "without_compaction"
            results[key] = {"points": points, "seconds": time.perf_counter() - t0, "final": _measure(db, events)}
            print(f"{key}: {results[key]['seconds']:.0f}s, final {results[key]['final']}", flush=True)
            if compaction:
                results["restart_after_compaction"] = r = await restart(db, 5)
                print(
                    f"restart after compaction: hub start median {r['hub_start_s']['median'] * 1000:.0f} ms, "
                    f"open + replay median {r['open_and_replay_s']['median'] * 1000:.0f} ms",
                    flush=True,
                )
            db.unlink()
        stall_events = min(events, 200_000)
        results["compaction_loop_stall"] = r = await loop_stall(Path(tmp, "stall.db"), stall_events)
        print(
            f"compacting {r['covered_rows']} covered rows at once: {r['seconds']:.1f}s in {r['batches']} batches, "
            f"event loop blocked at most {r['max_loop_stall_s'] * 1000:.1f} ms",
            flush=True,
        )
    return results


async def _pg_measure(url: str, events: int) -> dict[str, Any]:
    from synapse_channel.pgstore import connect

    con = await connect(url)
    try:
        rows = await con.fetchval("SELECT COUNT(*) FROM events")
        size = await con.fetchval("SELECT pg_total_relation_size('events')")
    finally:
        await con.close()
    return {"events": events, "rows": int(rows), "bytes": int(size)}


async def pg_churn(url: str, events: int, step: int, *, compaction: bool, retain_days: float) -> dict[str, Any]:
    """The churn of :func:`churn` through a leading PostgreSQL journal (same snapshot interval, same compactor)."""
    from synapse_channel.hub.compactor import PostgresBackend
    from synapse_channel.pgstore import connect, open_postgres

    journal = await open_postgres(url, hub_id="syn-bench00", snapshot_every=SNAPSHOT_EVERY, group_commit=True)
    assert await journal.try_lead("bench")
    core = HubCore(journal.hub_id)
    await journal.replay(core)
    await journal.settle_tail(core)
    journal.snapshot_source = core.snapshot
    compactor = None
    if compaction:
        compactor = AutoCompactor(PostgresBackend(journal), retain_days)
        journal.snapshot_source = compactor.watch(core.snapshot)
        compactor.start()
    mode = "with" if compaction else "without"

    async def measure(seq: int) -> dict[str, Any]:
        p = await _pg_measure(url, seq)
        print(
            f"postgresql {mode} compaction: {p['events']:>9} events  {p['bytes'] / 2**20:7.1f} MiB  "
            f"{p['rows']:>8} rows",
            flush=True,
        )
        return p

    t0 = time.perf_counter()
    points = await drive(core, journal, events, step, measure)
    seconds = time.perf_counter() - t0
    if compactor is not None:
        await compactor.compact_now()
        await compactor.stop()
    await journal.close()
    final = await _pg_measure(url, events)
    con = await connect(url)
    try:
        await con.execute("VACUUM events")
    finally:
        await con.close()
    vacuumed = await _pg_measure(url, events)
    deleted = compactor.deleted if compactor is not None else 0
    return {"points": points, "seconds": seconds, "final": final, "after_vacuum": vacuumed, "deleted": deleted}


async def pg_main_async(events: int, step: int, retain_days: float) -> dict[str, Any]:
    from tests.pgcluster import Cluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("benchmarks/compaction.py --postgresql: PostgreSQL server binaries not found")
    cluster = Cluster(bindir, fsync=False).start()
    try:
        version = bindir.parent.name
        results: dict[str, Any] = {
            "events": events,
            "step": step,
            "retain_days": retain_days,
            "snapshot_every": SNAPSHOT_EVERY,
            "postgresql": version,
        }
        for compaction in (True, False):
            key = "with_compaction" if compaction else "without_compaction"
            results[key] = r = await pg_churn(
                cluster.create_db(), events, step, compaction=compaction, retain_days=retain_days
            )
            print(f"postgresql {key}: {r['seconds']:.0f}s, final {r['final']}, after VACUUM {r['after_vacuum']}")
    finally:
        cluster.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--step", type=int, default=100_000)
    parser.add_argument("--retain-days", type=float, default=0.0)
    parser.add_argument("--quick", action="store_true", help="200k events, a point every 20k")
    parser.add_argument("--postgresql", action="store_true", help="the churn on a throw-away PostgreSQL cluster")
    args = parser.parse_args()
    if args.postgresql:
        events, step = (args.events, args.step) if not args.quick else (200_000, 20_000)
        pg = asyncio.run(pg_main_async(events, step, args.retain_days))
        print(f"wrote {write_results('compaction_pg', pg)}")
        return
    events, step = (200_000, 20_000) if args.quick else (args.events, args.step)
    results = asyncio.run(main_async(events, step, args.retain_days))
    print(f"wrote {write_results('compaction', results)}")


if __name__ == "__main__":
    main()
