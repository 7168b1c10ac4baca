"""High availability on PostgreSQL: real hub processes on a throw-away cluster.

Each test gets a fresh database (``pg_url``) on one session-wide cluster
(``cluster`` in conftest.py, ``tests/pgcluster.py``).
Without PostgreSQL's server binaries or asyncpg these tests skip; under
``CI=true`` they fail (``make ci-deps`` installs PostgreSQL, the ``test``
extra installs asyncpg). Assertions are on exact event sets read back from
the database, never on timings.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TIMEOUT, open_raw, run_cli
from .hubproc import HubProcess

pytestmark = pytest.mark.postgres

#: Short lease so a paused leader loses the lock quickly (the CLI's minimum is 1 s).
LEASE = ("--lease", "1.5")


@pytest.fixture
async def hubs() -> AsyncIterator[list[HubProcess]]:
    """Hub processes started by a test; SIGCONT+SIGKILL at the end whatever state they are in."""
    started: list[HubProcess] = []
    yield started
    for hub in started:
        if hub.proc is not None and hub.proc.returncode is None:
            hub.proc.send_signal(signal.SIGCONT)
            await hub.kill()


async def start_hub(hubs: list[HubProcess], url: str, *extra: str) -> HubProcess:
    hub = HubProcess(url, extra=(*LEASE, *extra))  # type: ignore[arg-type]  # a URL where a path usually goes
    hubs.append(hub)
    await hub.start()
    return hub


async def wait_log(hub: HubProcess, needle: str, timeout: float = 30) -> str:
    """The first log line containing ``needle`` (bounded wait, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while True:
            for line in hub.log:
                if needle in line:
                    return line
            await asyncio.sleep(0.05)


async def events(url: str) -> list[tuple[int, str, dict[str, Any]]]:
    """Every event row of the database, in seq order."""
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch("SELECT seq, kind, data FROM events ORDER BY seq")
    finally:
        await con.close()
    return [(int(r["seq"]), str(r["kind"]), json.loads(r["data"])) for r in rows]


def metrics_page(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def chat_tags(rows: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
    return [str(d["frame"].get("client_msg_id")) for _, k, d in rows if k == "chat"]


async def storm(uri: str, clients: int, acked: dict[str, Any], prefix: str) -> None:
    """Directed chats and claims until the hub goes away; records each one whose acknowledgement arrived."""

    async def one(i: int) -> None:
        try:
            c = await open_raw(uri, f"storm{i}")
            await c.send("heartbeat")
            n = 0
            while True:
                tag = f"{prefix}-{i}-{n}"
                await c.send("chat", f"box{i % 3}", tag, client_msg_id=tag, receipt_requested=True)
                acked["chat"][tag] = (await c.expect("delivery_receipt", client_msg_id=tag, timeout=5))["message_seq"]
                await c.send("claim", task_id=f"K{tag}", paths=[f"c{i}/{n}"], worktree="/w")
                acked["claim"][f"K{tag}"] = (await c.expect("claim_granted", task_id=f"K{tag}", timeout=5))["epoch"]
                n += 1
        except Exception:  # the hub was killed under us: that is the point
            pass

    await asyncio.gather(*(one(i) for i in range(clients)))


async def test_committed_events_survive_a_restart(pg_url: str, hubs: list[HubProcess]) -> None:
    """Acked chats and claims are in PostgreSQL; a restarted hub replays them (same hub id, seq continues)."""
    hub = await start_hub(hubs, pg_url, "--snapshot-every", "7")
    c = await open_raw(hub.uri, "a/one")
    await c.send("heartbeat")
    seqs = [await c.chat_seq("b/two", f"m{i}") for i in range(20)]
    await c.send("claim", task_id="T1", paths=["src/x.py"], worktree="/w")
    granted = await c.expect("claim_granted", task_id="T1")
    await c.close()
    hub_id = hub.banner.split()[2]
    assert await hub.stop() == 0
    stored = await events(pg_url)
    assert [s for s, k, _ in stored if k == "chat"] == seqs

    again = await start_hub(hubs, pg_url)
    assert again.banner.split()[2] == hub_id and "epoch 2" in again.banner
    rc, out, err = await run_cli("state", "--json", "--uri", again.uri)
    assert rc == 0, err
    assert [(c["task_id"], c["epoch"]) for c in json.loads(out)] == [("T1", granted["epoch"])]
    c = await open_raw(again.uri, "a/one")
    await c.send("heartbeat")
    welcome = await c.expect("welcome")
    assert welcome["hub_id"] == hub_id
    assert await c.chat_seq("b/two", "after") > max(s for s, _, _ in stored)
    await c.close()


async def test_standby_turns_clients_away_with_the_leader_address(pg_url: str, hubs: list[HubProcess]) -> None:
    """Two hubs on one database: the second is a standby that closes 4018 naming the leader; /healthz says 503."""
    leader = await start_hub(hubs, pg_url)
    standby = await start_hub(hubs, pg_url)
    assert "as STANDBY" in standby.banner and leader.uri in standby.banner
    c = await open_raw(standby.uri, "a/x")
    code, reason = await c.closed()
    assert (code, reason) == (4018, f"standby; leader={leader.uri}")

    rc, out, _ = await run_cli("hub", "status", "--uri", standby.uri, "--json")
    body = json.loads(out)
    assert rc == 1 and body["role"] == "standby" and body["leader"] == leader.uri and body["epoch"] == 1
    rc, out, _ = await run_cli("hub", "status", "--uri", leader.uri, "--json")
    assert rc == 0 and json.loads(out)["role"] == "leader"
    page = await asyncio.to_thread(metrics_page, standby.port)
    assert 'synapse_ha_role{role="standby"} 1' in page and "synapse_ha_epoch 1" in page
    assert 'synapse_ha_role{role="leader"} 1' in await asyncio.to_thread(metrics_page, leader.port)

    c = await open_raw(leader.uri, "a/x")
    await c.send("heartbeat")
    await c.expect("welcome")
    await c.close()


async def test_sigkill_leader_standby_takes_over_with_every_acked_event_once(
    pg_url: str, hubs: list[HubProcess]
) -> None:
    """SIGKILL the leader mid-storm: the standby leads, and every acknowledged chat and claim is there exactly once."""
    leader = await start_hub(hubs, pg_url)
    standby = await start_hub(hubs, pg_url)
    acked: dict[str, Any] = {"chat": {}, "claim": {}}
    task = asyncio.ensure_future(storm(leader.uri, 4, acked, "k"))
    while len(acked["chat"]) < 40:
        await asyncio.sleep(0.02)
    await leader.kill()
    await task
    await wait_log(standby, "now leading at epoch 2")

    rc, out, err = await run_cli("state", "--json", "--uri", standby.uri)
    assert rc == 0, err
    live = {c["task_id"]: c["epoch"] for c in json.loads(out)}
    assert acked["claim"].items() <= live.items(), "an acknowledged claim is missing on the new leader"
    stored = await events(pg_url)
    tags = chat_tags(stored)
    assert len(tags) == len(set(tags)), "a chat was journalled twice"
    by_tag = {str(d["frame"]["client_msg_id"]): s for s, k, d in stored if k == "chat"}
    assert all(by_tag.get(t) == s for t, s in acked["chat"].items()), "an acknowledged chat was lost"

    c = await open_raw(standby.uri, "a/late")
    await c.send("heartbeat")
    await c.expect("welcome")
    assert await c.chat_seq("b/x", "after the failover") > stored[-1][0]
    await c.close()


async def test_paused_leader_is_fenced_and_steps_down(pg_url: str, hubs: list[HubProcess]) -> None:
    """SIGSTOP the leader: the standby takes over; after SIGCONT the old one writes nothing more and exits."""
    old = await start_hub(hubs, pg_url)
    new = await start_hub(hubs, pg_url)
    c = await open_raw(old.uri, "a/old")
    await c.send("heartbeat")
    await c.expect("welcome")
    before = await c.chat_seq("b/x", "before the pause")
    assert old.proc is not None
    old.proc.send_signal(signal.SIGSTOP)
    for i in range(5):  # read by the old leader only once it runs again, after it was deposed
        await c.send("chat", "b/x", f"late{i}", client_msg_id=f"late{i}", receipt_requested=True)
    await wait_log(new, "now leading at epoch 2")
    old.proc.send_signal(signal.SIGCONT)

    code, reason = await c.closed(timeout=TIMEOUT * 2)
    assert (code, reason) == (4018, f"standby; leader={new.uri}")
    rc = await asyncio.wait_for(old.proc.wait(), 30)
    assert rc == 1 and any("stepped down" in line for line in old.log)

    stored = await events(pg_url)
    assert "before the pause" in [d["frame"]["payload"] for _, k, d in stored if k == "chat"]
    assert not [t for t in chat_tags(stored) if t.startswith("late")], "a deposed leader appended"
    assert max(s for s, _, _ in stored) >= before
    c = await open_raw(new.uri, "a/old")
    await c.send("heartbeat")
    await c.expect("welcome")
    await c.close()


async def test_migrate_copies_a_sqlite_log(pg_url: str, hubs: list[HubProcess], tmp_path: Path) -> None:
    """``synapse db migrate --to`` copies every row; the PostgreSQL hub has the same id, state and seq."""
    db = tmp_path / "hub.db"
    lite = HubProcess(db, extra=("--snapshot-every", "5"))
    hubs.append(lite)
    await lite.start()
    c = await open_raw(lite.uri, "a/one")
    await c.send("heartbeat")
    seqs = [await c.chat_seq("b/two", f"m{i}") for i in range(12)]
    await c.send("claim", task_id="T1", paths=["src/x.py"], worktree="/w")
    granted = await c.expect("claim_granted", task_id="T1")
    await c.close()
    hub_id = lite.banner.split()[2]

    rc, _, err = await run_cli("db", "migrate", "--db", str(db), "--to", pg_url)
    assert rc == 1 and "stop the hub" in err and "Traceback" not in err
    assert await lite.stop() == 0
    rc, out, err = await run_cli("db", "migrate", "--db", str(db), "--to", pg_url)
    assert rc == 0, err
    assert f"hub {hub_id}" in out
    stored = await events(pg_url)
    with sqlite3.connect(db) as con:
        assert [(s, k) for s, k, _ in stored] == con.execute("SELECT seq, kind FROM events ORDER BY seq").fetchall()
    assert [s for s, k, _ in stored if k == "chat"] == seqs
    rc, _, err = await run_cli("db", "migrate", "--db", str(db), "--to", pg_url)
    assert rc == 1 and "empty database" in err and "Traceback" not in err

    hub = await start_hub(hubs, pg_url)
    assert hub.banner.split()[2] == hub_id
    rc, out, err = await run_cli("state", "--json", "--uri", hub.uri)
    assert rc == 0, err
    assert [(c["task_id"], c["epoch"]) for c in json.loads(out)] == [("T1", granted["epoch"])]
    c = await open_raw(hub.uri, "a/one")
    await c.send("heartbeat")
    await c.expect("welcome")
    assert await c.chat_seq("b/two", "after") == stored[-1][0] + 1
    await c.close()


async def test_standby_follows_the_log_warm(pg_url: str, hubs: list[HubProcess]) -> None:
    """A standby applies the leader's commits as they happen: its seq reaches the leader's, lag 0."""
    leader = await start_hub(hubs, pg_url)
    standby = await start_hub(hubs, pg_url)
    c = await open_raw(leader.uri, "a/x")
    await c.send("heartbeat")
    await c.expect("welcome")
    last = max([await c.chat_seq("b/y", f"m{i}") for i in range(15)])
    await c.close()
    async with asyncio.timeout(30):
        while True:
            _, out, _ = await run_cli("hub", "status", "--uri", standby.uri, "--json")
            body = json.loads(out)
            if body["seq"] >= last:
                break
            await asyncio.sleep(0.1)
    assert body["role"] == "standby" and body["lag_events"] == 0 and body["leader_seq"] == body["seq"]
    await leader.kill()
    line = await wait_log(standby, "now leading at epoch 2")
    assert line.rstrip().endswith(f"seq {(await events(pg_url))[-1][0]})")  # caught up to the last committed event


def test_standby_reason_fits_a_close_frame() -> None:
    """The leader hint is dropped rather than cut when the reason would pass 123 bytes."""
    from synapse_channel.hub.ha import standby_reason

    assert standby_reason("ws://h1:8876") == "standby; leader=ws://h1:8876"
    assert standby_reason("ws://" + "h" * 200 + ":1") == "standby; leader="


async def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    """A PostgreSQL URL nobody answers: one line and exit 1, never a traceback; a bad --to is a usage error."""
    rc, _, err = await run_cli("hub", "--port", "0", "--db", "postgresql://nobody@127.0.0.1:1/x")
    assert (
        rc == 1
        and err.startswith("synapse hub: cannot use postgresql://nobody@127.0.0.1:1/x")
        and "Traceback" not in err
    )
    rc, _, err = await run_cli("db", "migrate", "--db", str(tmp_path / "none.db"), "--to", "mysql://x/y")
    assert rc == 2 and "postgresql://" in err


async def test_a_client_list_follows_the_real_standby_to_the_leader(pg_url: str, hubs: list[HubProcess]) -> None:
    """The client side of the contract against real hubs: standby first in the list, the send lands on the leader."""
    leader = await start_hub(hubs, pg_url)
    standby = await start_hub(hubs, pg_url)
    rc, _, err = await run_cli(
        "send", "--uri", f"{standby.uri},{leader.uri}", "--name", "a/x", "-t", "b/y", "via the list"
    )
    assert rc == 0, err
    assert [d["frame"]["payload"] for _, k, d in await events(pg_url) if k == "chat"] == ["via the list"]
    await leader.kill()
    await wait_log(standby, "now leading at epoch 2")
    rc, _, err = await run_cli("send", "--uri", f"{leader.uri},{standby.uri}", "--name", "a/x", "-t", "b/y", "after")
    assert rc == 0, err
    assert [d["frame"]["payload"] for _, k, d in await events(pg_url) if k == "chat"] == ["via the list", "after"]


async def test_a_damaged_tail_is_quarantined_and_its_seq_never_reused(pg_url: str, hubs: list[HubProcess]) -> None:
    """A row failing its checksum stops replay there (as on SQLite); the new leader moves it aside and skips its seq."""
    import asyncpg

    hub = await start_hub(hubs, pg_url, "--snapshot-every", "5")
    c = await open_raw(hub.uri, "a/one")
    await c.send("heartbeat")
    seqs = [await c.chat_seq("b/two", f"m{i}") for i in range(8)]
    await c.close()
    await hub.kill()  # no final snapshot: the rows after the last periodic one are replayed
    con = await asyncpg.connect(pg_url)
    try:
        assert 0 < await con.fetchval("SELECT MAX(seq) FROM snapshots") < seqs[-1]
        top = await con.fetchval("SELECT MAX(seq) FROM events")
        await con.execute("UPDATE events SET crc = crc + 1 WHERE seq = $1", top)
    finally:
        await con.close()

    again = await start_hub(hubs, pg_url)
    c = await open_raw(again.uri, "a/one")
    await c.send("heartbeat")
    await c.expect("welcome")
    assert await c.chat_seq("b/two", "after") > top
    await c.close()
    con = await asyncpg.connect(pg_url)
    try:
        assert [r["seq"] for r in await con.fetch("SELECT seq FROM quarantine")] == [top]
    finally:
        await con.close()
    assert top not in [s for s, _, _ in await events(pg_url)] and seqs[-1] <= top
