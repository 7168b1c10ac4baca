"""Seats on PostgreSQL: the least-privilege rules of a SQLite hub hold on a PostgreSQL hub group.

Real PostgreSQL (the session cluster of conftest.py), real ``synapse seat``
commands as subprocesses, and real hubs: processes where a leader is killed,
the in-process :class:`Hub` where a test needs its hostile-tenant helpers.
The important case is the takeover: the standby that leads after a SIGKILL
accepts the same seat secrets and refuses the rest, including a seat revoked
while it was standing by.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.hub.server import Hub

from .conftest import HubFactory, open_raw, run_cli
from .hubproc import HubProcess
from .test_postgres import hubs, start_hub, wait_log  # noqa: F401  (hubs: the fixture)
from .test_security import cross_identity_attempts, fill_mailbox, forbidden, pending, register, replay

pytestmark = pytest.mark.postgres

NOT_GRANTED = (4010, "auth denied: name not granted to this seat")
REVOKED = (4010, "auth denied: seat revoked or rotated")


async def seat(url: str, *args: str) -> str:
    """``synapse seat ARGS --db URL``; the secret (last stdout line) for add and rotate."""
    rc, out, err = await run_cli("seat", *args, "--db", url)
    assert rc == 0, err
    return out.strip().splitlines()[-1] if out.strip() else ""


async def refused(uri: str, name: str, token: str | None) -> tuple[int | None, str]:
    """Present ``token`` (or none) as ``name``: expect ``auth_denied`` and return the close."""
    client = await open_raw(uri, name)
    await client.send("heartbeat", payload="online", **({"token": token} if token else {}))
    await client.expect("auth_denied")
    return await client.closed()


async def pg_rows(url: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        return list(await con.fetch(query, *args))
    finally:
        await con.close()


async def seated_pg_hub(hub_factory: HubFactory, url: str) -> tuple[Hub, dict[str, str]]:
    """An in-process hub on ``url`` with the seats of test_security's seated hub."""
    from synapse_channel.pgseats import PgSeatStore

    store = await PgSeatStore.open(url)
    try:
        secrets = {
            "alice": await store.add("alice", "agent"),
            "carol": await store.add("carol", "agent"),
            "mallory": await store.add("mallory", "agent"),
            "boss": await store.add("boss", "admin"),
        }
    finally:
        await store.close()
    hub = await hub_factory(db=None, database_url=url, relay_log=None, lease=1.5)
    return hub, secrets


async def test_seat_cli_on_postgresql_admits_only_its_names(pg_url: str, hubs: list[HubProcess]) -> None:  # noqa: F811
    """`seat add --db postgresql://` before any hub ran: the hub is seated, the seat registers only its names."""
    alice = await seat(pg_url, "add", "alice", "--names", "api/*")
    assert alice.startswith("synseat_")
    rc, out, err = await run_cli("seat", "list", "--json", "--db", pg_url)
    assert rc == 0, err
    assert alice not in out and [(s["name"], s["names"], s["active"]) for s in json.loads(out)] == [
        ("alice", ["api/*"], True)
    ]
    rc, _, err = await run_cli("seat", "add", "alice", "--db", pg_url)
    assert rc == 1 and "already exists" in err and "Traceback" not in err

    hub = await start_hub(hubs, pg_url)
    for name in ("alice", "alice-rx", "api/bot"):
        await (await register(hub.uri, name, token=alice)).close()
    for name in ("bob", "carol-rx"):
        client = await open_raw(hub.uri, name)
        await client.send("heartbeat", payload="online", token=alice)
        assert "may not use the name" in (await client.expect("auth_denied"))["payload"]
        assert await client.closed() == NOT_GRANTED
    assert (await refused(hub.uri, "alice", None))[0] == 4010  # the hub is seated: no credential, no entry
    assert (await refused(hub.uri, "alice", alice[:-1] + "x"))[0] == 4010

    stored = await pg_rows(pg_url, "SELECT name, role, patterns, key_id, secret_hash FROM seats")
    assert alice not in repr([tuple(r) for r in stored]), "a seat secret is stored in clear"
    rc, out, err = await run_cli("audit", "--json", "--db", pg_url)
    assert rc == 0, err
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds.count("auth_denied") == 2 and kinds.count("seat_added") == 1


async def test_revoke_and_rotate_close_live_sockets(pg_url: str, hubs: list[HubProcess]) -> None:  # noqa: F811
    """`seat revoke|rotate --db postgresql://` on a running hub: its sockets close; only the new secret works."""
    alice = await seat(pg_url, "add", "alice")
    mallory = await seat(pg_url, "add", "mallory")
    hub = await start_hub(hubs, pg_url)
    m = await register(hub.uri, "mallory", token=mallory)
    a = await register(hub.uri, "alice", token=alice)
    await seat(pg_url, "revoke", "mallory")
    assert await m.closed() == REVOKED
    new_alice = await seat(pg_url, "rotate", "alice")
    assert await a.closed() == REVOKED
    assert (await refused(hub.uri, "mallory", mallory))[0] == 4010
    assert (await refused(hub.uri, "alice", alice))[0] == 4010
    await (await register(hub.uri, "alice", token=new_alice)).close()
    rc, _, err = await run_cli("seat", "revoke", "mallory", "--db", pg_url)
    assert rc == 1 and "is revoked" in err and "Traceback" not in err


async def test_standby_takes_over_with_the_same_seats(pg_url: str, hubs: list[HubProcess]) -> None:  # noqa: F811
    """SIGKILL the leader: the new leader admits the same secrets, refuses wrong, missing and revoked ones."""
    alice = await seat(pg_url, "add", "alice")
    mallory = await seat(pg_url, "add", "mallory")
    leader = await start_hub(hubs, pg_url)
    standby = await start_hub(hubs, pg_url)
    assert "as STANDBY" in standby.banner
    await (await register(leader.uri, "alice", token=alice)).close()
    m = await register(leader.uri, "mallory", token=mallory)
    dave = await seat(pg_url, "add", "dave")  # while the standby stands by
    await seat(pg_url, "revoke", "mallory")
    assert await m.closed() == REVOKED  # the leader applied it: the change is committed
    await leader.kill()
    await wait_log(standby, "now leading at epoch 2")

    # First the revoked secret: the standby's own view of the seats must be current at takeover
    # (a refused unknown secret would re-read the table and hide a stale one).
    assert (await refused(standby.uri, "mallory", mallory))[0] == 4010
    for name, secret in (("alice", alice), ("dave", dave)):
        await (await register(standby.uri, name, token=secret)).close()
    assert (await refused(standby.uri, "alice", alice[:-1] + "x"))[0] == 4010
    assert (await refused(standby.uri, "alice", None))[0] == 4010
    client = await open_raw(standby.uri, "mallory")
    await client.send("heartbeat", payload="online", token=dave)
    await client.expect("auth_denied")
    assert await client.closed() == NOT_GRANTED


async def test_second_seat_cannot_read_another_mailbox(hub_factory: HubFactory, pg_url: str) -> None:
    """The hostile-tenant check of test_security on a PostgreSQL hub: every cross-identity verb is FORBIDDEN."""
    hub, secrets = await seated_pg_hub(hub_factory, pg_url)
    assert hub.role == "leader" and hub.secured
    seqs = await fill_mailbox(hub.uri, "alice", token=secrets["carol"])
    before = await pending(hub.uri, "alice", token=secrets["boss"])
    mallory = await open_raw(hub.uri, "mallory")
    await mallory.send("heartbeat", payload="online", token=secrets["mallory"], mailbox=True, mailbox_for="alice")
    await mallory.expect("welcome")
    await forbidden(mallory)
    await mallory.nothing("chat", within=0.3)  # no replay of alice's mail
    await cross_identity_attempts(mallory, "alice", seqs[0])
    await mallory.close()
    assert await pending(hub.uri, "alice", token=secrets["boss"]) == before == 3
    assert await replay(hub.uri, "alice", 3, token=secrets["alice"]) == [f"secret {i} for alice" for i in range(3)]
    denied = [
        json.loads(r["data"]) for r in await pg_rows(pg_url, "SELECT data FROM events WHERE kind = 'access_denied'")
    ]
    assert {d["verb"] for d in denied} >= {"mailbox_for", "ack", "inbox_query"}
    assert {d["seat"] for d in denied} == {"mallory"}


async def test_first_seat_locks_an_open_pg_hub_and_revoking_all_never_reopens_it(
    hub_factory: HubFactory, pg_url: str
) -> None:
    """As on SQLite: the first seat closes unauthenticated sockets; revoking the last seat locks the hub."""
    hub = await hub_factory(db=None, database_url=pg_url, relay_log=None, lease=1.5)
    assert not hub.secured
    early = await register(hub.uri, "early")
    secret = await seat(pg_url, "add", "alice")
    assert await early.closed() == (4010, "auth denied: this hub now requires a seat")
    alice = await register(hub.uri, "alice", token=secret)
    await seat(pg_url, "revoke", "alice")
    assert await alice.closed() == REVOKED  # the hub has read the revocation
    assert (await refused(hub.uri, "late", secret))[0] == 4010
    assert (await refused(hub.uri, "late", None))[0] == 4010
    assert hub.core is not None and hub.core.security["auth"] == "seats"


async def test_migrate_keeps_the_seats(pg_url: str, hubs: list[HubProcess], tmp_path: Path) -> None:  # noqa: F811
    """A seated SQLite hub migrated to PostgreSQL stays seated: the same secret works, others are refused."""
    from synapse_channel.seats import SeatStore

    db = tmp_path / "hub.db"
    lite = HubProcess(db)
    hubs.append(lite)
    await lite.start()
    assert await lite.stop() == 0
    with SeatStore(db) as store:
        alice = store.add("alice", "agent")
        store.add("gone", "agent")
        store.revoke("gone")
    rc, out, err = await run_cli("db", "migrate", "--db", str(db), "--to", pg_url)
    assert rc == 0, err
    assert "2 seats" in out
    hub = await start_hub(hubs, pg_url)
    await (await register(hub.uri, "alice", token=alice)).close()
    assert (await refused(hub.uri, "x", None))[0] == 4010
    dave = await seat(pg_url, "add", "dave")  # the copied log ids do not collide with new ones
    await (await register(hub.uri, "dave", token=dave)).close()
    rc, out, _ = await run_cli("audit", "--json", "--db", pg_url)
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds.count("seat_added") == 3 and kinds.count("seat_revoked") == 1


async def test_seat_cli_errors_are_one_line(tmp_path: Path) -> None:
    """An unreachable PostgreSQL and :memory: are one line and exit 1, never a traceback."""
    rc, _, err = await run_cli("seat", "add", "x", "--db", "postgresql://nobody:pw@127.0.0.1:1/x")
    assert rc == 1 and "cannot use postgresql://nobody@127.0.0.1:1/x" in err and "pw" not in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    rc, _, err = await run_cli("audit", "--db", "postgresql://nobody@127.0.0.1:1/x")
    assert rc == 1 and "cannot use" in err and "Traceback" not in err
    rc, _, err = await run_cli("seat", "list", "--db", ":memory:")
    assert rc == 1 and "keeps no seats" in err


async def test_audit_on_a_fresh_database_reads_and_creates_nothing(pg_url: str) -> None:
    """`audit --db postgresql://` before any hub or seat: an empty log, and no table appears."""
    rc, out, err = await run_cli("audit", "--db", pg_url)
    assert rc == 0 and out.strip() == "nothing in the audit log", err
    assert await pg_rows(pg_url, "SELECT to_regclass('seat_log') AS t, to_regclass('events') AS e") == [(None, None)]
