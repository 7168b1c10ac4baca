"""Journal compaction on PostgreSQL: same rules as SQLite, only by the leader, fenced by its epoch.

In-process hubs on a fresh database of the session's throw-away cluster
(``pg_url``); assertions are on exact row sets read back from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from synapse_channel.compaction import Report, keep_of
from synapse_channel.hub.server import Hub

from .conftest import HubFactory, open_raw, run_cli
from .test_compaction import _busy_history, _state

pytestmark = pytest.mark.postgres


async def _fetch(url: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        return list(await con.fetch(query, *args))
    finally:
        await con.close()


async def _rows(url: str) -> list[tuple[int, str, dict[str, Any]]]:
    rows = await _fetch(url, "SELECT seq, kind, data FROM events ORDER BY seq")
    return [(int(r["seq"]), str(r["kind"]), json.loads(r["data"])) for r in rows]


async def _mark(url: str) -> int | None:
    rows = await _fetch(url, "SELECT value FROM meta WHERE key = 'compacted_through'")
    return int(rows[0]["value"]) if rows else None


def _claims(rows: list[tuple[int, str, dict[str, Any]]], upto: int) -> list[tuple[str, int, int]]:
    return [
        (d["claim"]["task_id"], d["claim"]["epoch"], d["claim"]["version"])
        for s, k, d in rows
        if k in ("claim", "claim_updated") and s <= upto
    ]


async def _pg_hub(hub_factory: HubFactory, url: str, **extra: Any) -> Hub:
    return await hub_factory(database_url=url, snapshot_every=50, retain_days=0, **extra)


async def test_compaction_keeps_unacked_mail_and_live_claims_and_replays_the_same_state(
    pg_url: str, hub_factory: HubFactory
) -> None:
    """Covered rows go, unacked mail and the live claim's grant stay; a restart rebuilds the same state."""
    hub = await _pg_hub(hub_factory, pg_url, compaction=False)
    unacked, epoch = await _busy_history(hub)
    before = _state(hub)
    await hub.stop()
    stored = await _rows(pg_url)
    assert [k for _, k, _ in stored].count("release") >= 100 and await _mark(pg_url) is None

    again = await _pg_hub(hub_factory, pg_url)  # starts from the final snapshot alone: compacts at once
    assert again.compactor is not None
    report = await again.compactor.compact_now()
    assert report is not None and report.through_seq == before["seq"]
    assert _state(again) == before
    kept = await _rows(pg_url)
    assert await _mark(pg_url) == before["seq"]
    assert report.deleted == len(stored) - len(kept) > 0
    assert [s for s, k, _ in kept if k == "chat"] == unacked  # acked mail and broadcasts older than 0 days went
    assert _claims(kept, before["seq"]) == [("live", epoch, 1)]  # the renewal that stands; the grant it replaced went
    assert not [k for _, k, _ in kept if k in ("release", "claim_expired")]
    assert [d["identity"] for _, k, d in kept if k == "mailbox_watermark"] == ["acker"]
    dropped = {s for s, _, _ in stored} - {s for s, _, _ in kept}
    assert {k for s, k, _ in stored if s in dropped} <= {
        "chat",
        "claim",
        "claim_updated",
        "release",
        "mailbox_watermark",
    }
    await again.stop()

    third = await _pg_hub(hub_factory, pg_url)
    assert _state(third) == before
    w = await open_raw(third.uri, "box-rx")
    await w.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="box")
    assert [(await w.expect("chat", replayed=True))["seq"] for _ in unacked] == unacked
    await w.close()
    s = await open_raw(third.uri, "s")
    assert await s.chat_seq("box", "after") == before["seq"] + 1  # no seq (and no epoch) is reused
    await s.close()


async def test_a_standby_never_compacts_and_takes_over_a_compacted_log(pg_url: str, hub_factory: HubFactory) -> None:
    """The leader compacts as it runs; the standby has no compactor, then takes over with the same claims and mail."""
    leader = await _pg_hub(hub_factory, pg_url)
    unacked, epoch = await _busy_history(leader)
    assert leader.compactor is not None
    report = await leader.compactor.compact_now()  # waits for the run in flight, then covers the newest snapshot
    assert report is not None and leader.compactor.deleted > 0
    through = report.through_seq
    assert await _mark(pg_url) == through
    rows = await _rows(pg_url)
    assert not [s for s, k, _ in rows if k in ("release", "claim_expired") and s <= through]
    assert set(unacked) <= {s for s, k, _ in rows if k == "chat"}  # acked mail goes at the next full scan

    standby = await _pg_hub(hub_factory, pg_url)
    assert standby.role == "standby" and standby.compactor is None
    before = _state(leader)
    await leader.stop()
    async with asyncio.timeout(30):
        while standby.role != "leader":
            await asyncio.sleep(0.05)
    after = _state(standby)
    assert after["claims"] == before["claims"] and after["mailbox"] == before["mailbox"]
    assert [c["epoch"] for c in after["claims"]["live"]] == [epoch]
    assert standby.compactor is not None  # the new leader compacts from now on


async def test_a_lagging_follower_reloads_the_snapshot_instead_of_a_gapped_log(
    pg_url: str, hub_factory: HubFactory
) -> None:
    """A follower whose state predates the compaction would miss deleted rows (history): it reloads the snapshot."""
    from synapse_channel.core import HubCore
    from synapse_channel.pgstore import open_postgres

    leader = await _pg_hub(hub_factory, pg_url)
    follower = await open_postgres(pg_url, hub_id="x", snapshot_every=50, group_commit=True)
    try:
        core = HubCore(follower.hub_id)
        await follower.replay(core)
        behind = core.seq
        await _busy_history(leader)
        assert leader.compactor is not None and await leader.compactor.compact_now() is not None
        mark = await _mark(pg_url)
        assert mark is not None and mark > behind
        await follower.catch_up(core)  # rows behind it were deleted meanwhile
        ours, theirs = json.loads(json.dumps(core.snapshot())), _state(leader)
        assert ours == theirs  # history, claims, mailbox: all of it
        assert core.seq == theirs["seq"] and follower.report.snapshot_seq >= mark
    finally:
        follower.snapshot_source = None
        await follower.close()


async def test_a_deposed_leader_deletes_nothing(pg_url: str, hub_factory: HubFactory) -> None:
    """A compaction batch under a stale epoch rolls back whole; under the current epoch the same batch deletes."""
    from synapse_channel.pgcompaction import compact_batch
    from synapse_channel.pgstore import Fenced, connect, read_newest_snapshot

    hub = await _pg_hub(hub_factory, pg_url, compaction=False)
    await _busy_history(hub)
    await hub.stop()
    rows = await _rows(pg_url)
    con = await connect(pg_url)
    try:
        found = await read_newest_snapshot(con)
        assert found is not None
        keep = keep_of(found[1])
        stale = int(await con.fetchval("SELECT epoch FROM leader"))
        await con.execute("UPDATE leader SET epoch = epoch + 1")  # another hub took over
        with pytest.raises(Fenced):
            await compact_batch(con, stale, keep, math.inf, 0, Report())
        assert await _rows(pg_url) == rows and await _mark(pg_url) is None
        report = Report()
        assert await compact_batch(con, stale + 1, keep, math.inf, 0, report) is not None
        assert report.deleted > 0 and len(await _rows(pg_url)) == len(rows) - report.deleted
        assert await _mark(pg_url) == keep.seq
    finally:
        await con.close()


async def test_a_compacted_log_without_its_snapshot_is_refused(pg_url: str, hub_factory: HubFactory) -> None:
    """Losing the snapshot a compaction relied on stops the hub at start: one line, exit 1, never a silent loss."""
    hub = await _pg_hub(hub_factory, pg_url, compaction=False)
    await _busy_history(hub)
    await hub.stop()
    again = await _pg_hub(hub_factory, pg_url)
    assert again.compactor is not None and await again.compactor.compact_now() is not None
    await again.stop()
    await _fetch(pg_url, "DELETE FROM snapshots")
    code, _, err = await run_cli("hub", "--port", "0", "--db", pg_url, "--relay-log", "", timeout=30)
    assert code == 1 and "compacted through seq" in err and "Traceback" not in err
