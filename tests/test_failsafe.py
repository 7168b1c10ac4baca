"""Fail-safe hub: refuses what it cannot hold, stops on a failed write, always restarts from its own file.

Start-up: a hub that cannot bind or whose database is taken exits at once,
non-zero. Running: the brick attempt (large chats to names that do not exist)
is refused by the mailbox bounds; snapshots span rows; a real write failure
stops the hub with exit 1 and no snapshot over it.

Real ``synapse hub`` processes on real ports and SQLite files. Timeouts here
bound a hang (the bug these catch), they are not speed assertions.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from synapse_channel.hub.config import HubConfig
from synapse_channel.hub.server import Hub
from synapse_channel.store import DatabaseBusy, SqliteJournal

from .conftest import HubFactory, open_raw, report, run_cli
from .hubproc import HubProcess


async def test_hub_exits_non_zero_when_the_port_is_taken(tmp_path: Path) -> None:
    """A second `make hub` used to print "address already in use" and never exit."""
    first = HubProcess(tmp_path / "a.db")
    await first.start()
    try:
        code, _, err = await run_cli("hub", "--port", str(first.port), "--db", str(tmp_path / "b.db"), timeout=20)
        assert code == 1
        assert "cannot listen" in err and "address already in use" in err
        assert "Traceback" not in err
    finally:
        await first.stop()


async def test_a_second_hub_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    """Two writers on one journal lost an acked message and replayed an uncommitted one: refuse the second."""
    db = tmp_path / "hub.db"
    first = HubProcess(db)
    await first.start()
    try:
        code, _, err = await run_cli("hub", "--port", "0", "--db", str(db), timeout=20)
        assert code == 1 and "in use by another hub" in err and "Traceback" not in err
        assert first.proc is not None and f"pid {first.proc.pid}" in err
        # the first hub is unharmed: it still takes and keeps a message
        code, out, _ = await run_cli(
            "send", "--uri", first.uri, "--name", "boss", "--target", "w", "--json", "still here"
        )
        assert '"queued": true' in out, out
    finally:
        await first.kill()  # SIGKILL: the kernel drops the lock with the process, no stale lock file
    second = HubProcess(db)
    await second.start()
    try:
        code, out, _ = await run_cli("wait", "--uri", second.uri, "--name", "w", "--timeout", "10")
        assert code == 0 and "still here" in out  # the mailbox survived the refused second hub
    finally:
        await second.stop()


async def test_in_process_hubs_share_the_lock_rule(tmp_path: Path) -> None:
    """The lock is taken by the journal itself, so any embedding of the hub obeys it, and released on stop."""
    config = HubConfig(host="127.0.0.1", port=0, db=tmp_path / "hub.db")
    async with Hub(config):
        try:
            async with Hub(config):
                raise AssertionError("a second hub started on a database already in use")
        except DatabaseBusy as exc:
            assert "in use by another hub" in str(exc)
    async with Hub(config) as again:  # released by the first one's stop()
        assert again.port > 0


# ---------------------------------------------------------------------- the brick attempt and its causes

KIB = 1024


def _rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise AssertionError("no VmRSS")


def _disk(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(con.execute(sql))
    finally:
        con.close()


async def _who_pending(uri: str) -> dict[str, int]:
    client = await open_raw(uri, "observer")
    try:
        await client.send("heartbeat", payload="online", protocol_version=7)
        await client.expect("welcome")
        await client.send("who_request")
        pending: dict[str, int] = (await client.expect("who_snapshot"))["mailbox_pending"]
        return {k: v for k, v in pending.items() if v}
    finally:
        await client.close()


async def test_the_brick_attempt_is_refused_and_the_hub_keeps_committing(tmp_path: Path) -> None:
    """Large chats to names that do not exist, then many small events: refusals, bounded RSS and disk, a restart.

    The full-scale attempt (500 x 1,000 KiB, then 9,500 acks) took the hub to
    975 MB and bricked its journal at the snapshot. Here the bounds are small
    (1 MiB in all, 0.25 MiB per recipient) and snapshots come every 40 events.
    """
    db = tmp_path / "hub.db"
    bounds = ("--mailbox-max-mb", "1", "--mailbox-recipient-mb", "0.25", "--mailbox-recipient-messages", "3")
    hub = HubProcess(db, extra=(*bounds, "--snapshot-every", "40"))
    await hub.start()
    assert hub.proc is not None
    rss_before, disk_before = _rss(hub.proc.pid), _disk(db)
    flood = await open_raw(hub.uri, "flood")
    await flood.send("heartbeat", payload="online", protocol_version=7)
    await flood.expect("welcome")
    big = "x" * (200 * KIB)
    accepted, refused = 0, 0
    for i in range(100):  # 20 MB attempted
        tag = f"big-{i}"
        await flood.send("chat", f"ghost-{i}/x", big, receipt_requested=True, client_msg_id=tag)
        while True:
            frame = await flood.recv()
            if frame.get("client_msg_id") == tag:
                break
        if frame["type"] == "delivery_receipt":
            accepted += 1
        else:
            assert frame["type"] == "error" and frame["code"] == "MAILBOX_FULL" and frame["limit"] == "total_bytes"
            refused += 1
    assert accepted == 5 and refused == 95  # 5 x ~200 KiB fill the 1 MiB total
    for _ in range(60):  # then small events past several snapshots: notes to self, each acked
        seq = await flood.chat_seq("flood", "tiny")
        await flood.send("ack", seq=seq)
    await flood.sync()
    # the CLI sender hears a one-line reason and exits 1 (here: the per-recipient count bound)
    for n in range(3):
        code, out, _ = await run_cli("send", "--uri", hub.uri, "--target", "ghost/one", f"note {n}")
        assert code == 0 and "queued for ghost/one" in out and "MAILBOX_FULL" not in out, out  # kept
    code, out, err = await run_cli("send", "--uri", hub.uri, "--target", "ghost/one", "one too many")
    assert code == 1 and out.count("\n") == 1 and "MAILBOX_FULL" in out and "ghost/one" in out, out
    assert "Traceback" not in err
    rss_after, disk_after = _rss(hub.proc.pid), _disk(db)
    report(
        f"brick attempt (small): RSS {rss_before >> 20} -> {rss_after >> 20} MiB, disk {disk_before} -> {disk_after}"
    )
    # 20 MB attempted, about 1 MiB kept; unbounded, the mailbox and history each held all 20 MB (40+ MB).
    # The margin is for the allocator keeping freed receive buffers on a loaded machine.
    assert rss_after - rss_before < 32 * 1024 * KIB
    # journal + WAL hold the 5 accepted chats and a few ~2 MiB snapshots (mailbox + history), never the 95 refused
    assert disk_after < 20 * 1024 * KIB
    before = await _who_pending(hub.uri)
    assert before == {"ghost-0/x": 1, "ghost-1/x": 1, "ghost-2/x": 1, "ghost-3/x": 1, "ghost-4/x": 1, "ghost/one": 3}
    await flood.close()
    assert await hub.stop() == 0
    chats = _rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'chat'")[0][0]
    assert chats == 5 + 60 + 3  # nothing of a refused chat was journalled
    assert _rows(db, "SELECT MAX(seq) FROM snapshots")[0][0] == _rows(db, "SELECT MAX(seq) FROM events")[0][0]
    again = HubProcess(db, extra=bounds)
    await again.start()
    try:
        assert await _who_pending(again.uri) == before
        assert "snapshot at seq" in again.banner and ", 0 events replayed" in again.banner
    finally:
        await again.stop()


async def test_a_snapshot_larger_than_one_chunk_round_trips(hub_factory: HubFactory, tmp_path: Path) -> None:
    """A snapshot spans many rows, none bigger than the chunk; a restart reads it back whole, and `db check` agrees."""
    hub = await hub_factory(snapshot_every=1_000_000)
    assert isinstance(hub.journal, SqliteJournal)
    hub.journal.snapshot_chunk = 64 * KIB
    sender = await open_raw(hub.uri, "boss")
    await sender.send("heartbeat", payload="online", protocol_version=7)
    await sender.expect("welcome")
    for i in range(20):
        await sender.chat_seq(f"team/w{i % 4}", f"{i}:" + "é" * (20 * KIB))  # non-ASCII: bytes, not characters
    await sender.close()
    assert hub.core is not None
    state = hub.core.snapshot()
    await hub.stop()
    parts = _rows(tmp_path / "hub.db", "SELECT part, length(data) FROM snapshot_chunks ORDER BY part")
    assert len(parts) > 10 and all(size <= 64 * KIB for _, size in parts)
    again = await hub_factory()
    assert again.core is not None and again.journal is not None
    assert again.journal.report.snapshot_seq == state["seq"] and again.journal.report.replayed == 0
    assert again.core.snapshot() == state
    code, out, _ = await run_cli("db", "check", str(tmp_path / "hub.db"))
    assert code == 0 and "snapshot at " + str(state["seq"]) in out, out


async def test_an_old_single_row_snapshot_is_still_read(hub_factory: HubFactory, tmp_path: Path) -> None:
    """Databases written before chunking keep their snapshot: migration is reading both forms."""
    hub = await hub_factory()
    sender = await open_raw(hub.uri, "boss")
    await sender.send("heartbeat", payload="online", protocol_version=7)
    await sender.expect("welcome")
    await sender.chat_seq("team/w", "kept across the format change")
    await sender.close()
    assert hub.core is not None
    state = hub.core.snapshot()
    await hub.stop()
    con = sqlite3.connect(tmp_path / "hub.db")
    with con:  # rewrite it the way the old hub stored it: the whole state in one row
        con.execute("DELETE FROM snapshot_chunks")
        con.execute("UPDATE snapshots SET state = ?", (json.dumps(state),))
    con.close()
    again = await hub_factory()
    assert again.core is not None and again.journal is not None
    assert again.journal.report.snapshot_seq == state["seq"]
    assert again.core.mailbox.pending_counts(set()) == {"team/w": 1}


async def test_a_fatal_journal_error_stops_the_hub_and_a_restart_recovers(tmp_path: Path) -> None:
    """A real write failure (RLIMIT_FSIZE: the WAL cannot grow): exit 1, no snapshot over it, nothing acked lost."""
    db = tmp_path / "hub.db"
    limit = 1024 * KIB

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    hub = HubProcess(db, preexec=small_files)
    await hub.start()
    assert hub.proc is not None
    boss = await open_raw(hub.uri, "boss")
    await boss.send("heartbeat", payload="online", protocol_version=7)
    await boss.expect("welcome")
    seqs = [await boss.chat_seq("p/w", f"m{n}") for n in range(3)]
    worker = await open_raw(hub.uri, "p/w")
    await worker.send("heartbeat", payload="online", protocol_version=7)
    await worker.expect("welcome")
    await worker.send("ack", seq=seqs[0])
    await worker.sync()  # the ack is durable
    await worker.close()
    durable, failed = 0, False
    for n in range(20):  # 20 x 120 KiB: the WAL reaches the 1 MiB file limit long before the end
        tag = f"big-{n}"
        try:
            await boss.send("chat", "p/x", "y" * (120 * KIB), receipt_requested=True, client_msg_id=tag)
            await boss.expect("delivery_receipt", client_msg_id=tag)
            durable += 1
        except (ConnectionClosed, TimeoutError):
            failed = True
            break
    assert failed and durable >= 1
    code = await asyncio.wait_for(hub.proc.wait(), 20)
    assert hub._drainer is not None
    await hub._drainer
    log = "".join(hub.log)
    assert code == 1, log
    assert "journal write failed" in log and "no snapshot" in log and "Traceback" not in log
    top = _rows(db, "SELECT MAX(seq) FROM events")[0][0]
    snaps = _rows(db, "SELECT seq FROM snapshots")
    assert all(seq <= top for (seq,) in snaps)  # nothing snapshotted past the last good commit
    again = HubProcess(db)  # room again
    await again.start()
    try:
        assert await _who_pending(again.uri) == {"p/w": 2, "p/x": durable}
        code, out, _ = await run_cli("wait", "--uri", again.uri, "--name", "p/w", "--timeout", "10")
        assert code == 0 and "m1" in out and "m0" not in out, out  # the acked one stays acked
    finally:
        await again.stop()


async def test_the_hub_raises_its_open_files_limit(tmp_path: Path) -> None:
    """Thousands of agents need thousands of descriptors: the soft limit goes up to the hard one at start."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    hub = HubProcess(tmp_path / "hub.db", preexec=lower)
    await hub.start()
    try:
        assert hub.proc is not None
        line = next(x for x in Path(f"/proc/{hub.proc.pid}/limits").read_text().splitlines() if "open files" in x)
        got_soft, got_hard = line.split()[3:5]
        assert got_soft == got_hard == str(hard), line
    finally:
        assert await hub.stop() == 0
