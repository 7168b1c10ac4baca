"""Durable acknowledged mutations/s, restart time and replay throughput.

1. Acknowledged mutations/s: N concurrent clients each send a directed chat
   with ``receipt_requested`` and wait for the receipt (sent only after the
   fsync'd commit) before sending the next. Measured with group commit and
   with one fsync per outcome (``--commit-mode each``) in the same run.
2. Restart time: a journal of 100k / 1M events with periodic snapshots; time
   from starting ``synapse hub`` until it accepts a WebSocket connection.
3. Full replay throughput without a snapshot, in events/s.

    python benchmarks/durability.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import OUR_BIN, free_port, ref_available, ref_hub_args, summary, wait_for_hub, write_results

from synapse_channel.core import HubCore
from synapse_channel.protocol import parse_frame
from synapse_channel.store import checksum, encode_data, open_journal

SYNAPSE = str(Path(OUR_BIN, "synapse"))


async def start_hub(db: Path, *extra: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        SYNAPSE,
        "hub",
        "--port",
        str(port),
        "--db",
        str(db),
        "--relay-log",
        "",
        "--log-level",
        "WARNING",
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_for_hub(f"ws://127.0.0.1:{port}", 120, poll=0.002)
    return proc, port


async def client_loop(port: int, idx: int, until: float, counts: list[int]) -> None:
    from synapse_channel.client.wire import WebSocketStream

    ws = await WebSocketStream.open(f"ws://127.0.0.1:{port}")
    name = f"bench{idx}"
    await ws.send(json.dumps({"sender": name, "target": "System", "type": "heartbeat", "payload": "online"}))
    n = 0
    while time.monotonic() < until:
        await ws.send(
            json.dumps(
                {
                    "sender": name,
                    "target": f"box{idx}",
                    "type": "chat",
                    "payload": "m",
                    "client_msg_id": f"c{n}",
                    "receipt_requested": True,
                }
            )
        )
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "delivery_receipt" and frame.get("client_msg_id") == f"c{n}":
                break
        n += 1
    counts[idx] = n
    await ws.close(timeout=0.5)


async def start_ref_hub(tmp: Path) -> tuple[asyncio.subprocess.Process, int]:
    """The reference hub with its rate limits off, in its default (compatibility fan-out) mode.

    Its private-directed mode declares a multi-seat profile that refuses to
    start without provisioned identities and auto-fills rate limits, so the
    reference column fans each chat out to every socket; ours does not.
    """
    port = free_port()
    env = {**os.environ, "HOME": str(tmp), "SYNAPSE_NO_UPDATE_CHECK": "1"}
    proc = await asyncio.create_subprocess_exec(
        *ref_hub_args(port, tmp / "r.db", "--max-clients", "1000"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_for_hub(f"ws://127.0.0.1:{port}", 60, poll=0.002)
    return proc, port


async def mutations(clients: int, mode: str, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "ref":
            proc, port = await start_ref_hub(Path(tmp))
        else:
            proc, port = await start_hub(Path(tmp, "hub.db"), "--commit-mode", mode, "--private-directed")
        try:
            counts = [0] * clients
            t0 = time.monotonic()
            await asyncio.gather(*(client_loop(port, i, t0 + seconds, counts) for i in range(clients)))
            elapsed = time.monotonic() - t0
        finally:
            proc.terminate()
            await proc.wait()
    return sum(counts) / elapsed


async def journal_rate(producers: int, group: bool, seconds: float) -> float:
    """Durable commits/s at the store alone: producers each await their own fsync'd commit."""
    from synapse_channel.core.outcome import Event

    with tempfile.TemporaryDirectory() as tmp:
        journal = await open_journal(Path(tmp, "j.db"), hub_id="x", group_commit=group)
        seq = 0
        done = 0
        until = time.monotonic() + seconds

        async def produce() -> None:
            nonlocal seq, done
            while time.monotonic() < until:
                seq += 1
                data = {"frame": {"sender": "a", "target": "b", "type": "chat", "payload": "m", "seq": seq}}
                await journal.submit([Event(seq, 0.0, "chat", data)])
                done += 1

        t0 = time.monotonic()
        await asyncio.gather(*(produce() for _ in range(producers)))
        rate = done / (time.monotonic() - t0)
        await journal.close()
    return rate


def build_journal(path: Path, events: int, *, snapshot_every: int | None) -> None:
    """A realistic journal: directed chats among 50 seats, acked every 100 messages."""
    core = HubCore("syn-bench00")
    core.open(1, 0.0)
    core.receive(1, parse_frame('{"sender":"boss","target":"System","type":"heartbeat"}'), 0.0)
    con = sqlite3.connect(path)
    con.executescript(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,"
        " crc INTEGER NOT NULL);"
        "CREATE TABLE snapshots (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, state TEXT NOT NULL);"
        "CREATE TABLE quarantine (seq INTEGER PRIMARY KEY, ts REAL, kind TEXT, data TEXT, crc INTEGER,"
        " reason TEXT NOT NULL);"
    )
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("hub_id", "syn-bench00"), ("schema_version", "1")])
    rows: list[tuple[Any, ...]] = []
    i = 0
    last_snap = 0
    while core.seq < events:
        target = f"proj/seat{i % 50}"
        out = core.receive(
            1,
            parse_frame(
                json.dumps(
                    {
                        "sender": "boss",
                        "target": target,
                        "type": "chat",
                        "payload": f"message {i}",
                        "client_msg_id": f"c{i}",
                    }
                )
            ),
            i,
        )
        if i % 100 == 99:
            for k in range(50):
                out.events += core.receive(
                    1,
                    parse_frame(
                        json.dumps(
                            {
                                "sender": "boss",
                                "target": "all",
                                "type": "ack",
                                "seq": core.seq,
                                "mailbox_for": f"proj/seat{k}",
                            }
                        )
                    ),
                    i,
                ).events
        for ev in out.events:
            text = encode_data(ev.data)
            rows.append((ev.seq, ev.ts, ev.kind, text, checksum(ev.kind, text)))
        i += 1
        if snapshot_every and core.seq - last_snap >= snapshot_every and core.seq < events - snapshot_every // 2:
            con.execute("INSERT INTO snapshots VALUES (?,?,?)", (core.seq, 0.0, encode_data(core.snapshot())))
            last_snap = core.seq
        if len(rows) >= 50_000:
            con.executemany("INSERT INTO events VALUES (?,?,?,?,?)", rows)
            rows.clear()
    con.executemany("INSERT INTO events VALUES (?,?,?,?,?)", rows)
    con.execute("DELETE FROM snapshots WHERE seq < (SELECT MAX(seq) FROM snapshots)")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


async def restart_time(db: Path, runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        t0 = time.monotonic()
        proc, _port = await start_hub(db)  # returns once the hub accepts a WebSocket connection
        samples.append(time.monotonic() - t0)
        proc.send_signal(9)  # no final snapshot: every run replays the same tail
        await proc.wait()
    return summary(samples)


async def replay_rate(db: Path, runs: int) -> dict[str, Any]:
    rates = []
    for _ in range(runs):
        journal = await open_journal(db, hub_id="x")
        con = sqlite3.connect(db)
        con.execute("DELETE FROM snapshots")
        con.commit()
        con.close()
        core = HubCore(journal.hub_id)
        t0 = time.perf_counter()
        report = await journal.replay(core)
        dt = time.perf_counter() - t0
        await journal.close()
        rates.append(report.replayed / dt)
    return summary(rates)


async def main_async(quick: bool) -> dict[str, Any]:
    runs = 5
    seconds = 1.0 if quick else 2.0
    results: dict[str, Any] = {
        "mutations_per_s": {},
        "journal_commits_per_s": {},
        "restart_s": {},
        "replay_events_per_s": {},
    }
    for producers in (1, 4, 16, 64):
        for group in (True, False):
            key = f"{producers}/{'group' if group else 'each'}"
            rates = [await journal_rate(producers, group, seconds / 2) for _ in range(runs)]
            results["journal_commits_per_s"][key] = summary(rates)
            median = summary(rates)["median"]
            print(f"journal commits/s  producers={producers:<3} {key.split('/')[1]:<5} median {median:9.0f}")
        g = results["journal_commits_per_s"][f"{producers}/group"]["median"]
        e = results["journal_commits_per_s"][f"{producers}/each"]["median"]
        results["journal_commits_per_s"][f"{producers}/speedup"] = g / e
    modes = ("group", "each", "ref") if ref_available() else ("group", "each")
    for clients in (1, 4, 16, 64):
        for mode in modes:
            rates = [await mutations(clients, mode, seconds) for _ in range(runs)]
            results["mutations_per_s"][f"{clients}/{mode}"] = summary(rates)
            print(f"acked mutations/s  clients={clients:<3} {mode:<5} median {summary(rates)['median']:9.0f}")
        g = results["mutations_per_s"][f"{clients}/group"]["median"]
        e = results["mutations_per_s"][f"{clients}/each"]["median"]
        results["mutations_per_s"][f"{clients}/speedup"] = g / e
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            db = Path(tmp, f"j{n}.db")
            t0 = time.perf_counter()
            build_journal(db, n, snapshot_every=10_000)
            size = os.path.getsize(db) / 2**20
            print(f"built {n} events in {time.perf_counter() - t0:.1f}s ({size:.0f} MiB)")
            results["restart_s"][str(n)] = await restart_time(db, runs)
            print(f"restart with {n} events: median {results['restart_s'][str(n)]['median']:.3f}s")
            results["replay_events_per_s"][str(n)] = await replay_rate(db, 3 if n > 100_000 else runs)
            print(f"full replay {n}: median {results['replay_events_per_s'][str(n)]['median']:.0f} events/s")
            os.unlink(db)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller, for a smoke run")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.quick))
    print(f"wrote {write_results('durability', results)}")


if __name__ == "__main__":
    main()
