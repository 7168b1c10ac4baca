"""Durability: acknowledged means on disk, replay rebuilds, SIGKILL loses nothing acked."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.core import HubCore
from synapse_channel.hub.server import Hub
from synapse_channel.store import checksum, encode_data, open_journal

from .conftest import HubFactory, open_raw, run_cli


def rows(db: Path, kind: str | None = None) -> list[tuple[int, str, dict[str, Any]]]:
    """Every event row of a database file (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        q = "SELECT seq, kind, data FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY seq"
        return [(s, k, json.loads(d)) for s, k, d in con.execute(q, (kind,) if kind else ())]
    finally:
        con.close()


async def test_hub_id_and_seq_survive_restart(hub_factory: HubFactory, tmp_path: Path) -> None:
    """The stored hub_id is reused and seq continues after a clean restart."""
    hub = await hub_factory()
    hub_id = hub.core.hub_id
    c = await open_raw(hub.uri, "a")
    first = await c.chat_seq("b", "one")
    await c.close()
    await hub.stop()
    again = await hub_factory()
    assert again.core.hub_id == hub_id
    c = await open_raw(again.uri, "a")
    welcome = await c.expect("welcome")
    assert welcome["hub_id"] == hub_id
    assert await c.chat_seq("b", "two") > first
    await c.close()


async def test_hub_id_flag_only_names_a_new_database(hub_factory: HubFactory) -> None:
    """--hub-id seeds a new database; an existing one keeps its stored id."""
    hub = await hub_factory(hub_id="syn-00c0ffee")
    assert hub.core.hub_id == "syn-00c0ffee"
    await hub.stop()
    assert (await hub_factory(hub_id="syn-deadbeef")).core.hub_id == "syn-00c0ffee"


async def test_receipt_is_sent_only_after_commit(hub: Hub, tmp_path: Path) -> None:
    """When a receipt arrives, its chat row is already readable from another connection."""
    c = await open_raw(hub.uri, "s")
    for i in range(20):
        await c.send("chat", "nobody", f"m{i}", client_msg_id=f"c{i}", receipt_requested=True)
        receipt = await c.expect("delivery_receipt", client_msg_id=f"c{i}")
        stored = [d["frame"]["seq"] for _, _, d in rows(tmp_path / "hub.db", "chat")]
        assert receipt["message_seq"] in stored
    await c.close()


async def test_files_are_owner_only(hub: Hub, tmp_path: Path) -> None:
    """The database, its WAL and the feed are created 0600."""
    c = await open_raw(hub.uri, "s")
    await c.send("chat", "all", "x")
    await c.expect("chat")
    await c.close()
    for path in [tmp_path / "hub.db", tmp_path / "hub.db-wal", tmp_path / "feed.ndjson"]:
        assert path.exists(), path
        assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"


async def test_snapshot_bounds_replay(hub_factory: HubFactory) -> None:
    """With snapshots, a restart replays only the events after the last snapshot."""
    hub = await hub_factory(snapshot_every=50)
    c = await open_raw(hub.uri, "s")
    for i in range(120):
        await c.send("chat", "box", f"m{i}")
    await c.sync()
    await c.close()
    await hub.stop()
    again = await hub_factory(snapshot_every=50)
    assert again.journal is not None
    report = again.journal.report
    assert report.snapshot_seq >= 120 and report.replayed == 0  # clean stop writes a final snapshot
    w = await open_raw(again.uri, "box-rx")
    await w.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="box")
    replayed = [await w.expect("chat", replayed=True) for _ in range(120)]
    assert [f["payload"] for f in replayed] == [f"m{i}" for i in range(120)]
    await w.close()


async def test_corrupt_tail_is_reported_and_quarantined(hub_factory: HubFactory, tmp_path: Path) -> None:
    """A damaged row stops replay there; the hub starts from what is sound and says where."""
    hub = await hub_factory(snapshot_every=10**9)
    c = await open_raw(hub.uri, "s")
    for i in range(9):
        await c.send("chat", "box", f"m{i}")
    last = await c.chat_seq("box", "m9")
    await c.close()
    await hub.stop()
    con = sqlite3.connect(tmp_path / "hub.db")
    con.execute("DELETE FROM snapshots")
    con.execute("UPDATE events SET data = replace(data, 'm7', 'mX') WHERE seq = ?", (last - 2,))
    con.commit()
    con.close()
    again = await hub_factory(snapshot_every=10**9)
    assert again.journal is not None
    report = again.journal.report
    assert report.stopped_at == last - 2 and "checksum" in report.reason
    w = await open_raw(again.uri, "box-rx")
    await w.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="box")
    got = [(await w.expect("chat", replayed=True))["payload"] for _ in range(7)]
    assert got == [f"m{i}" for i in range(7)]
    s = await open_raw(again.uri, "s")
    assert await s.chat_seq("box", "after") > last  # quarantined seqs are never reused
    await s.close()
    await w.close()
    await again.stop()
    code, out, _ = await run_cli("db", "check", str(tmp_path / "hub.db"))
    assert code == 0 and "3 quarantined" in out


async def test_db_check_flags_a_bad_row_and_backup_copies_online(hub: Hub, tmp_path: Path) -> None:
    """`synapse backup` copies a live hub's database; `db check` verifies and flags damage."""
    c = await open_raw(hub.uri, "s")
    for i in range(5):
        await c.send("chat", "box", f"m{i}")
    await c.sync()
    dest = tmp_path / "copy.db"
    code, out, err = await run_cli("backup", str(dest), "--db", str(tmp_path / "hub.db"))
    assert code == 0, err
    assert "5 events" in out and dest.stat().st_mode & 0o077 == 0
    code, out, _ = await run_cli("db", "check", str(dest))
    assert code == 0 and out.strip().endswith("ok")
    code, _, err = await run_cli("backup", str(dest), "--db", str(tmp_path / "hub.db"))
    assert code == 1 and "exists" in err
    con = sqlite3.connect(dest)
    con.execute("UPDATE events SET data = replace(data, 'm3', 'm9') WHERE kind = 'chat'")
    con.commit()
    con.close()
    code, out, _ = await run_cli("db", "check", str(dest))
    assert code == 1 and "PROBLEM" in out
    await c.close()


@pytest.mark.parametrize(
    ("text", "why"),
    [("not json", "not a JSON value"), ('{"frame":{}} trailing', "extra data"), ('{"frame":', "JSONDecodeError")],
)
async def test_replay_stops_at_a_row_that_is_not_one_json_value(tmp_path: Path, text: str, why: str) -> None:
    """A row whose checksum matches but whose data is not exactly one JSON value stops replay there."""
    db = tmp_path / "hub.db"
    journal = await open_journal(db, hub_id="syn-test0000")
    await journal.close()
    con = sqlite3.connect(db)
    good = encode_data({"name": "x", "verb": "v", "reason": "r"})
    rows = [(1, 0.0, "audit", good), (2, 0.0, "audit", text), (3, 0.0, "audit", good)]
    con.executemany("INSERT INTO events VALUES (?,?,?,?,?)", [(*r, checksum(r[2], r[3])) for r in rows])
    con.commit()
    con.close()
    journal = await open_journal(db, hub_id="syn-test0000")
    report = await journal.replay(HubCore(journal.hub_id))
    await journal.close()
    assert (report.replayed, report.stopped_at) == (1, 2) and why in report.reason


async def test_a_large_group_commit_batch_commits_whole_and_in_order(tmp_path: Path) -> None:
    """Outcomes submitted in one tick are one batch, inserted and committed in one trip; none lost or reordered."""
    from synapse_channel.core.outcome import Event

    db = tmp_path / "hub.db"
    journal = await open_journal(db, hub_id="syn-test0000")
    sizes = [1, 198, 199, 200, 401]
    seq, futures = 0, []
    for size in sizes:  # submitted in one tick: the writer takes them as one batch
        events = []
        for _ in range(size):
            seq += 1
            events.append(Event(seq, 0.0, "audit", {"name": "x", "verb": "v", "reason": str(seq)}))
        futures.append(journal.submit(events))
    await asyncio.gather(*futures)
    await journal.close()
    con = sqlite3.connect(db)
    rows = con.execute("SELECT seq, kind, data, crc FROM events ORDER BY seq").fetchall()
    con.close()
    assert [r[0] for r in rows] == list(range(1, seq + 1))
    assert all(checksum(kind, data) == crc for _, kind, data, crc in rows)
    again = await open_journal(db, hub_id="syn-test0000")
    report = await again.replay(HubCore(again.hub_id))
    await again.close()
    assert report.replayed == seq and report.stopped_at is None
