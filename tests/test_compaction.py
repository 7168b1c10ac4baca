"""Journal compaction: what it keeps, that replay still rebuilds the same state, and its CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from synapse_channel.hub.server import Hub

from .conftest import HubFactory, Raw, open_raw, run_cli


def _rows(db: Path, query: str, args: tuple[Any, ...] = ()) -> list[Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def _state(hub: Hub) -> dict[str, Any]:
    assert hub.core is not None
    return json.loads(json.dumps(hub.core.snapshot()))  # as a snapshot stores it (tuples become lists)


async def _claim(c: Raw, task: str, **extra: Any) -> dict[str, Any]:
    await c.send("claim", "System", task_id=task, worktree="/repo", paths=[f"src/{task}.py"], **extra)
    return await c.expect("claim_granted", task_id=task)


async def _churn(c: Raw, rounds: int, first_epoch: int = 1) -> None:
    """Claim and release one task ``rounds`` times, pipelined (epochs are predictable), then sync."""
    for i in range(rounds):
        await c.send("claim", "System", task_id="churn", worktree="/repo", paths=["src/churn.py"])
        await c.send("release", "System", task_id="churn", epoch=first_epoch + i)
    await c.sync()


async def _busy_history(hub: Hub) -> tuple[list[int], int]:
    """Unacked mail to ``box``, acked mail to ``acker``, broadcasts, a live claim renewed, claim churn.

    Returns the unacked messages' seqs and the live claim's epoch.
    """
    s = await open_raw(hub.uri, "s")
    unacked = [await s.chat_seq("box", f"keep {i}") for i in range(30)]
    acked = [await s.chat_seq("acker", f"done {i}") for i in range(20)]
    for i in range(10):
        await s.send("chat", "all", f"news {i}")
    live = await _claim(s, "live")
    await s.send("renew", "System", task_id="live", epoch=live["epoch"], ttl_seconds=7200)
    await s.expect("claim_renewed")
    await _churn(s, 100, first_epoch=live["epoch"] + 1)
    a = await open_raw(hub.uri, "acker")
    await a.send("ack", "System", seq=acked[-1])
    await a.sync()
    await a.close()
    await s.close()
    return unacked, live["epoch"]


async def test_compaction_keeps_unacked_mail_and_live_claims_and_replays_the_same_state(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    """Covered rows go; unacked mail and the live claim's grant stay; a restart rebuilds the same state."""
    db = tmp_path / "hub.db"
    hub = await hub_factory(snapshot_every=50, retain_days=0)
    unacked, epoch = await _busy_history(hub)
    before = _state(hub)
    total = _rows(db, "SELECT COUNT(*) FROM events")[0][0]
    await hub.stop()

    again = await hub_factory(snapshot_every=50, retain_days=0)  # starts from the final snapshot alone
    assert again.compactor is not None
    report = await again.compactor.compact_now()
    assert report is not None and report.through_seq == before["seq"]
    assert _state(again) == before
    kept = _rows(db, "SELECT seq, kind, data FROM events ORDER BY seq")
    assert len(kept) < total
    assert [s for s, k, _ in kept if k == "chat"] == unacked  # acked mail and broadcasts older than 0 days went
    claims = [json.loads(d)["claim"] for _, k, d in kept if k in ("claim", "claim_updated")]
    assert [(c["task_id"], c["epoch"], c["version"]) for c in claims] == [("live", epoch, 1)]
    assert not [k for _, k, _ in kept if k in ("release", "claim_expired")]
    assert [json.loads(d)["identity"] for _, k, d in kept if k == "mailbox_watermark"] == ["acker"]
    await again.stop()

    third = await hub_factory(snapshot_every=50, retain_days=0)
    assert _state(third) == before
    w = await open_raw(third.uri, "box-rx")
    await w.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="box")
    got = [(await w.expect("chat", replayed=True))["seq"] for _ in unacked]
    assert got == unacked
    await w.close()
    s = await open_raw(third.uri, "s")
    assert await s.chat_seq("box", "after") == before["seq"] + 1  # no seq is reused
    await s.close()


async def test_retention_keeps_recent_chats(hub_factory: HubFactory, tmp_path: Path) -> None:
    """With the default retention, covered chats younger than N days stay; superseded claim rows still go."""
    db = tmp_path / "hub.db"
    hub = await hub_factory(snapshot_every=50)
    await _busy_history(hub)
    chats = _rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'chat'")[0][0]
    await hub.stop()
    again = await hub_factory(snapshot_every=50)
    assert again.compactor is not None
    await again.compactor.compact_now()
    assert _rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'chat'")[0][0] == chats
    assert _rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'release'")[0][0] == 0


async def test_size_stays_bounded_under_claim_churn(hub_factory: HubFactory, tmp_path: Path) -> None:
    """A few thousand claim/release events: the compacted journal stays near one snapshot interval."""
    sizes: dict[bool, tuple[int, int]] = {}
    for compaction in (True, False):
        db = tmp_path / f"churn-{compaction}.db"
        hub = await hub_factory(db=db, snapshot_every=200, compaction=compaction)
        c = await open_raw(hub.uri, "worker")
        for block in range(4):
            await _churn(c, 500, first_epoch=block * 500 + 1)
        await c.close()
        if hub.compactor is not None:
            await hub.compactor.compact_now()
        rows = _rows(db, "SELECT COUNT(*) FROM events")[0][0]
        pages = _rows(db, "PRAGMA page_count")[0][0] - _rows(db, "PRAGMA freelist_count")[0][0]
        sizes[compaction] = (rows, pages)
        await hub.stop()
    assert sizes[False][0] >= 4000
    assert sizes[True][0] <= 2 * 200  # at most the events since the newest snapshot (and a batch in flight)
    assert sizes[True][1] < sizes[False][1]


async def test_db_compact_is_refused_while_a_hub_runs_and_db_check_passes_after(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    """`synapse db compact` refuses a database a hub holds (one line, exit 1); offline it compacts and vacuums."""
    db = tmp_path / "hub.db"
    hub = await hub_factory(compaction=False)
    unacked, _ = await _busy_history(hub)
    before = _state(hub)
    code, out, err = await run_cli("db", "compact", "--db", str(db), "--retain-days", "0")
    assert code == 1 and "in use" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    await hub.stop()
    total = _rows(db, "SELECT COUNT(*) FROM events")[0][0]
    code, out, err = await run_cli("db", "compact", "--db", str(db), "--retain-days", "0")
    assert code == 0, err
    assert f"compacted through seq {before['seq']}" in out
    assert _rows(db, "PRAGMA auto_vacuum")[0][0] == 2  # converted by the VACUUM: later deletes free space
    chats = [s for (s,) in _rows(db, "SELECT seq FROM events WHERE kind = 'chat' ORDER BY seq")]
    assert chats == unacked and _rows(db, "SELECT COUNT(*) FROM events")[0][0] < total
    code, out, _ = await run_cli("db", "check", str(db))
    assert code == 0 and out.strip().endswith("ok") and f"compacted through seq {before['seq']}" in out
    again = await hub_factory(compaction=False)
    assert _state(again) == before


async def test_a_compacted_journal_without_its_snapshot_is_refused(hub_factory: HubFactory, tmp_path: Path) -> None:
    """Losing the snapshot a compaction relied on stops the hub at start and fails `db check`, never a silent loss."""
    db = tmp_path / "hub.db"
    hub = await hub_factory(compaction=False)
    await _busy_history(hub)
    await hub.stop()
    code, _, err = await run_cli("db", "compact", "--db", str(db), "--retain-days", "0")
    assert code == 0, err
    con = sqlite3.connect(db)
    con.execute("DELETE FROM snapshots")
    con.commit()
    con.close()
    code, out, _ = await run_cli("db", "check", str(db))
    assert code == 1 and "compacted through" in out
    code, _, err = await run_cli("hub", "--port", "0", "--db", str(db), "--relay-log", "", timeout=20)
    assert code == 1 and "compacted through seq" in err and "Traceback" not in err


async def test_db_compact_on_a_missing_database_is_one_line(tmp_path: Path) -> None:
    code, _, err = await run_cli("db", "compact", "--db", str(tmp_path / "none.db"))
    assert code == 1 and "no database" in err and "Traceback" not in err


def test_retention_rules_per_kind() -> None:
    """Each kind by its own rule: superseded state goes at once, history after the cutoff, unknown kinds stay."""
    from synapse_channel.compaction import Keep, droppable

    keep = Keep(
        seq=100,
        mailbox=frozenset({5}),
        claims=frozenset({("t", 3, 1)}),
        watermarks=frozenset({("a", 40)}),
        tasks=frozenset({("b1", 2)}),
    )
    old, new, cutoff = 10.0, 30.0, 20.0

    def drops(seq: int, ts: float, kind: str, data: dict[str, Any] | None = None) -> bool:
        return droppable(seq, ts, kind, json.dumps(data or {}), keep, cutoff)

    assert not drops(5, old, "chat")  # unacked: never
    assert drops(6, old, "chat") and not drops(7, new, "chat")
    claim = {"task_id": "t", "epoch": 3, "version": 1}
    assert not drops(8, old, "claim_updated", {"claim": claim})
    assert drops(9, new, "claim", {"claim": {**claim, "version": 0}})
    assert drops(10, new, "release") and drops(11, new, "claim_expired")
    assert not drops(12, old, "mailbox_watermark", {"identity": "a", "through_seq": 40})
    assert drops(13, new, "mailbox_watermark", {"identity": "a", "through_seq": 39})
    assert not drops(14, old, "ledger_task", {"task": {"task_id": "b1", "version": 2}})
    assert drops(15, new, "ledger_task", {"task": {"task_id": "b1", "version": 1}})
    assert drops(16, old, "access_denied") and not drops(17, new, "claim_denial")
    assert drops(18, old, "ledger_progress") and not drops(19, new, "ledger_progress")
    assert not drops(20, old, "some_future_kind")
    assert not droppable(21, old, "claim", "not json", keep, cutoff)
