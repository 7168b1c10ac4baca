"""Durable acknowledged mutations/s, restart time and replay throughput.

1. Acknowledged mutations/s: N concurrent clients each send a directed chat
   with ``receipt_requested`` and wait for the receipt (sent only after the
   fsync'd commit) before sending the next. Measured with group commit and
   with one fsync per outcome (``--commit-mode each``) in the same run.
2. Restart time: a journal of 100k / 1M events with periodic snapshots; time
   from starting ``synapse hub`` until it accepts a WebSocket connection.
3. Full replay throughput without a snapshot, in events/s.

    python benchmarks/durability.py [--quick] [--only ROWS] [--baseline SRC]

``--only mutations:16,replay`` re-measures those rows and keeps the others of
the committed results; ``--baseline ../main/src`` runs that tree's hub (and
replay) alternately with ours in the same run, for before/after figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import (
    OUR_BIN,
    RESULTS,
    free_port,
    host_context,
    ref_available,
    ref_hub_args,
    summary,
    wait_for_hub,
    write_results,
)

from synapse_channel.core import HubCore
from synapse_channel.protocol import parse_frame
from synapse_channel.store import checksum, encode_data, open_journal

SYNAPSE = str(Path(OUR_BIN, "synapse"))


async def start_hub(db: Path, *extra: str, src: str | None = None) -> tuple[asyncio.subprocess.Process, int]:
    """Our hub on a free port; ``src``: run the package from that source tree instead (a baseline)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": src} if src else None
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
        env=env,
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


async def mutations(clients: int, mode: str, seconds: float, src: str | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "ref":
            proc, port = await start_ref_hub(Path(tmp))
        else:
            proc, port = await start_hub(Path(tmp, "hub.db"), "--commit-mode", mode, "--private-directed", src=src)
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


async def replay_rate_in(src: str, db: Path, runs: int) -> dict[str, Any]:
    """:func:`replay_rate` with the package from another source tree (a subprocess)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--replay-db",
        str(db),
        "--runs",
        str(runs),
        env={**os.environ, "PYTHONPATH": src},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return dict(json.loads(out.decode().splitlines()[-1]))


def wanted(only: set[str] | None, row: str, size: int | None = None) -> bool:
    """Whether ``--only`` asks for ``row`` (``row`` alone means every size of it)."""
    return only is None or row in only or (size is not None and f"{row}:{size}" in only)


async def main_async(quick: bool, only: set[str] | None = None, baseline: str | None = None) -> dict[str, Any]:
    """Measure every row, or the rows ``only`` names; with ``baseline``, that tree's hub alternates with ours."""
    runs = 5
    seconds = 1.0 if quick else 2.0
    results: dict[str, Any] = {
        "mutations_per_s": {},
        "journal_commits_per_s": {},
        "restart_s": {},
        "replay_events_per_s": {},
    }
    base: dict[str, Any] = {"mutations_per_s": {}, "replay_events_per_s": {}}
    for producers in (1, 4, 16, 64):
        if not wanted(only, "journal", producers):
            continue
        for group in (True, False):
            key = f"{producers}/{'group' if group else 'each'}"
            rates = [await journal_rate(producers, group, seconds / 2) for _ in range(runs)]
            results["journal_commits_per_s"][key] = summary(rates)
            median = summary(rates)["median"]
            print(f"journal commits/s  producers={producers:<3} {key.split('/')[1]:<5} median {median:9.0f}")
        g = results["journal_commits_per_s"][f"{producers}/group"]["median"]
        e = results["journal_commits_per_s"][f"{producers}/each"]["median"]
        results["journal_commits_per_s"][f"{producers}/speedup"] = g / e
    for clients in (1, 4, 16, 64):
        if wanted(only, "mutations", clients):
            await mutation_rows(clients, runs, seconds, results["mutations_per_s"], base["mutations_per_s"], baseline)
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            restart, replay = wanted(only, "restart", n), wanted(only, "replay", n)
            if not (restart or replay):
                continue
            db = Path(tmp, f"j{n}.db")
            t0 = time.perf_counter()
            build_journal(db, n, snapshot_every=10_000)
            size = os.path.getsize(db) / 2**20
            print(f"built {n} events in {time.perf_counter() - t0:.1f}s ({size:.0f} MiB)")
            if restart:
                results["restart_s"][str(n)] = await restart_time(db, runs)
                print(f"restart with {n} events: median {results['restart_s'][str(n)]['median']:.3f}s")
            if replay:
                await replay_rows(db, n, 3 if n > 100_000 else runs, results, base, baseline)
            os.unlink(db)
    if baseline:
        results["baseline"] = base
    return results


async def mutation_rows(
    clients: int, runs: int, seconds: float, into: dict[str, Any], base: dict[str, Any], baseline: str | None
) -> None:
    """One client count: group, one-at-a-time and the reference (and the baseline tree), alternating per run."""
    modes = ["group", "each", "ref"] if ref_available() else ["group", "each"]
    samples: dict[str, list[float]] = {m: [] for m in modes}
    base_samples: dict[str, list[float]] = {"group": [], "each": []}
    for _ in range(runs):
        for mode in modes:
            samples[mode].append(await mutations(clients, mode, seconds))
        if baseline:
            for mode in base_samples:
                base_samples[mode].append(await mutations(clients, mode, seconds, src=baseline))
    for mode, rates in samples.items():
        into[f"{clients}/{mode}"] = summary(rates)
        print(f"acked mutations/s  clients={clients:<3} {mode:<5} median {summary(rates)['median']:9.0f}")
    into[f"{clients}/speedup"] = into[f"{clients}/group"]["median"] / into[f"{clients}/each"]["median"]
    if baseline:
        for mode, rates in base_samples.items():
            base[f"{clients}/{mode}"] = summary(rates)
            print(f"acked mutations/s  clients={clients:<3} {mode:<5} baseline median {summary(rates)['median']:9.0f}")
        base[f"{clients}/speedup"] = base[f"{clients}/group"]["median"] / base[f"{clients}/each"]["median"]


async def replay_rows(
    db: Path, n: int, runs: int, results: dict[str, Any], base: dict[str, Any], baseline: str | None
) -> None:
    """Full replay of ``db``, ours and (alternating) the baseline tree's."""
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        ours.append((await replay_rate(db, 1))["median"])
        if baseline:
            theirs.append((await replay_rate_in(baseline, db, 1))["median"])
    results["replay_events_per_s"][str(n)] = summary(ours)
    print(f"full replay {n}: median {summary(ours)['median']:.0f} events/s")
    if baseline:
        base["replay_events_per_s"][str(n)] = summary(theirs)
        print(f"full replay {n}: baseline median {summary(theirs)['median']:.0f} events/s")


def merge_rows(measured: dict[str, Any], only: set[str], baseline: str | None) -> dict[str, Any]:
    """The committed results with only the re-measured rows replaced (and when and how they were taken)."""
    path = RESULTS / "durability.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    merged = {k: v for k, v in old.items() if k not in ("benchmark", "host")}
    for table in ("mutations_per_s", "journal_commits_per_s", "restart_s", "replay_events_per_s"):
        merged.setdefault(table, {}).update(measured.get(table, {}))
    earlier = old.get("rerun", {})  # rows re-measured earlier stay listed, with their baseline figures
    rerun: dict[str, Any] = {"when": host_context()["when"], "rows": sorted({*earlier.get("rows", []), *only})}
    if baseline:
        base = earlier.get("baseline", {})
        for table, rows in measured["baseline"].items():
            base.setdefault(table, {}).update(rows)
        rerun["baseline"] = {**base, "commit": git_commit(baseline)}
    merged["rerun"] = rerun
    merged["host_first"] = old.get("host_first") or old.get("host", {})  # where the rows not re-run came from
    return merged


def git_commit(tree: str) -> str:
    """The commit a baseline source tree is at (its ``src`` folder's repository)."""
    out = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller, for a smoke run")
    parser.add_argument(
        "--only",
        help="comma list of rows to re-measure (journal, mutations, restart, replay, each optionally :N, "
        "e.g. mutations:16,replay); the other rows of the committed results are kept",
    )
    parser.add_argument("--baseline", help="a source tree (its src folder) whose hub and replay alternate with ours")
    parser.add_argument("--replay-db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay_db is not None:  # the baseline's replay, in its own interpreter
        print(json.dumps(asyncio.run(replay_rate(args.replay_db, args.runs))))
        return
    only = set(args.only.split(",")) if args.only else None
    load_before = os.getloadavg()[0]
    results = asyncio.run(main_async(args.quick, only, args.baseline))
    if only is not None:
        results = merge_rows(results, only, args.baseline)
        results["rerun"]["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f"wrote {write_results('durability', results)}")


if __name__ == "__main__":
    main()
