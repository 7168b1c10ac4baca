"""Crash safety: SIGKILL the hub at random moments under a storm of mutations.

Clients do directed messages, claims, releases and task declarations; after
each kill and restart every mutation whose acknowledgement a client received
is in the journal, ``seq`` and epochs only go up, a released claim does not
come back, and ``hub_id`` never changes. 20 kill points in the default run,
100 (with 16 clients) in the slow run, which passes a snapshot and so also
kills the hub around journal compaction.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from synapse_channel import snapshots

from ..conftest import open_raw, report
from ..hubproc import HubProcess
from ..test_durability import rows


async def storm(uri: str, clients: int, acked: dict[str, Any], stop: asyncio.Event, cycle: int) -> None:
    """Each client loops: a directed message, a claim, its release, a task declare; records what was acked."""

    async def one(i: int) -> None:
        try:
            c = await open_raw(uri, f"storm{i}")
            await c.send("heartbeat")
            n = 0
            while not stop.is_set():
                tag = f"{cycle}-{i}-{n}"
                await c.send("chat", f"box{i % 3}", tag, client_msg_id=tag, receipt_requested=True)
                acked["chat"][tag] = (await c.expect("delivery_receipt", client_msg_id=tag, timeout=5))["message_seq"]
                await c.send("claim", task_id=f"K{tag}", paths=[f"c{i}/{n}"], worktree="/w")
                epoch = (await c.expect("claim_granted", task_id=f"K{tag}", timeout=5))["epoch"]
                acked["claim"][f"K{tag}"] = epoch
                await c.send("release", task_id=f"K{tag}", idem_key=f"r{tag}", epoch=epoch)
                await c.expect("release_granted", task_id=f"K{tag}", timeout=5)
                acked["release"].add(f"K{tag}")
                await c.send("ledger_task", task_id=f"B{tag}", title="storm task")
                while (await c.expect("ledger_task_posted", timeout=5))["task"]["task_id"] != f"B{tag}":
                    pass  # another client's task: every socket sees every post
                acked["task"].add(f"B{tag}")
                n += 1
        except Exception:  # the hub was killed under us: that is the point
            pass

    await asyncio.gather(*(one(i) for i in range(clients)))


def compacted(db: Path) -> tuple[int, int, set[str]]:
    """``(compacted_through, epoch counter and live claims of the snapshot there)``; zeros before any compaction."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'compacted_through'").fetchone()
        if row is None:
            return 0, 0, set()
        # the oldest snapshot at or above it (a newer run drops the older one before it moves the mark)
        seq = con.execute("SELECT MIN(seq) FROM snapshots WHERE seq >= ?", (int(row[0]),)).fetchone()[0]
        state = snapshots.decode_sync(con, seq)
        return int(row[0]), int(state["claims"]["epoch"]), {c["task_id"] for c in state["claims"]["live"]}
    finally:
        con.close()


def check_durable(db: Path, acked: dict[str, Any]) -> int:
    """Every acknowledged mutation is in the journal (or compacted away legitimately); return the top epoch.

    The hub compacts its journal after each snapshot (every 10,000 events, which
    the soak reaches): a claim granted and released at or below that snapshot's
    seq is then gone from the journal with its release. Epochs rise with seq, so
    an acked claim missing from the journal passes only if the snapshot the
    compaction relied on had already granted its epoch and no longer holds it.
    """
    events = rows(db)
    through, snap_epoch, snap_live = compacted(db)
    chats = {d["frame"]["client_msg_id"]: s for s, k, d in events if k == "chat"}
    claims = {d["claim"]["task_id"]: d["claim"]["epoch"] for _, k, d in events if k == "claim"}
    releases = {d["task_id"] for _, k, d in events if k == "release"}
    tasks = {d["task"]["task_id"] for _, k, d in events if k == "ledger_task"}
    assert all(chats.get(t) == seq for t, seq in acked["chat"].items()), "an acknowledged chat was lost"
    for task, epoch in acked["claim"].items():
        if task in claims:
            assert claims[task] == epoch, f"claim {task}: epoch {claims[task]} in the journal, {epoch} acked"
        else:
            covered = epoch <= snap_epoch and task not in snap_live
            assert covered, f"an acknowledged claim was lost: {task} epoch {epoch} (compacted through {through})"
    for task in acked["release"] - releases:
        covered = task not in claims and acked["claim"][task] <= snap_epoch and task not in snap_live
        assert covered, f"an acknowledged release was lost: {task}"
    assert acked["task"] <= tasks, "an acknowledged task update was lost"
    epochs = [d["claim"]["epoch"] for _, k, d in events if k == "claim"]
    assert epochs == sorted(epochs) and len(epochs) == len(set(epochs)), "epochs were reused or went backwards"
    return max([snap_epoch, *epochs])


async def kill_cycles(tmp_path: Path, points: int, clients: int = 4) -> dict[str, Any]:
    """Run ``points`` SIGKILL/restart cycles under a storm; check every acked mutation after each."""
    db = tmp_path / "kill.db"
    hub = HubProcess(db)
    acked: dict[str, Any] = {"chat": {}, "claim": {}, "release": set(), "task": set()}
    hub_ids = set()
    last_seq = last_epoch = 0
    for cycle in range(points):
        await hub.start()
        hub_ids.add(hub.banner.split()[2])
        stop = asyncio.Event()
        task = asyncio.create_task(storm(hub.uri, clients, acked, stop, cycle))
        await asyncio.sleep(random.uniform(0.05, 0.3))
        await hub.kill()
        stop.set()
        await task
        epoch = check_durable(db, acked)
        assert epoch >= last_epoch
        last_epoch = epoch
        top = max((s for s, _, _ in rows(db)), default=0)
        assert top >= last_seq
        last_seq = top
    await hub.start()
    c = await open_raw(hub.uri, "after")
    await c.send("chat", "x", "after all kills", receipt_requested=True)
    after = (await c.expect("delivery_receipt"))["message_seq"]
    await c.send("claim", task_id="AFTER", paths=["after"])
    after_epoch = (await c.expect("claim_granted"))["epoch"]
    await c.send("state_request", payload="snapshot")
    live = {cl["task_id"] for cl in (await c.expect("state_snapshot"))["snapshot"]["active_claims"]}
    await c.close()
    await hub.stop()
    assert after > last_seq, "seq went backwards after a crash"
    assert after_epoch > last_epoch, "an epoch was reused after a crash"
    assert not (live & acked["release"]), "a released claim came back"
    assert len(hub_ids) == 1, f"hub_id changed across restarts: {hub_ids}"
    counts = {k: len(v) for k, v in acked.items()}
    through = compacted(db)[0]
    return {"kill_points": points, "clients": clients, **counts, "last_seq": after, "compacted_through": through}


async def test_sigkill_loses_no_acknowledged_message(tmp_path: Path) -> None:
    """20 SIGKILLs at random moments: every receipted message survives, seq keeps rising."""
    stats = await kill_cycles(tmp_path, 20)
    report(f"kill test: {stats}")
    assert stats["chat"] > 0 and stats["claim"] > 0


@pytest.mark.slow
async def test_sigkill_soak(tmp_path: Path) -> None:
    """The same with 100 kill points (slow; CI runs it)."""
    stats = await kill_cycles(tmp_path, 100, clients=16)
    report(f"kill soak: {stats}")
