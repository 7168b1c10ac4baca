"""``claim_check``: who holds these paths, answered from the scope index, paged by bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from synapse_channel.api import Refused, Session, SyncSession
from synapse_channel.hub.server import Hub
from synapse_channel.seats import SeatStore

from .conftest import HubFactory, RawFactory, open_raw

WT = "/repo"


async def test_check_names_every_overlapping_claim_with_owner_and_lease(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api, Session("shop/web", uri=hub.uri) as web:
        mine = await api.claim("API-1", ["src/api/"], worktree=WT, ttl=600)
        theirs = await web.claim("WEB-1", ["src/web/page.py"], worktree=WT)
        await web.claim("ELSE", ["src/api/"], worktree="/other")  # another worktree never overlaps
        holds = await web.check_paths(["src/api/routes.py", "src/web/page.py", "src/", "README.md"], worktree=WT)
    got = sorted((h.path, h.task_id, h.owner, h.epoch) for h in holds)
    assert got == [
        ("src/", "API-1", "shop/api", mine.epoch),  # a checked directory reports the claims inside it
        ("src/", "WEB-1", "shop/web", theirs.epoch),
        ("src/api/routes.py", "API-1", "shop/api", mine.epoch),  # an ancestor claim covers the file
        ("src/web/page.py", "WEB-1", "shop/web", theirs.epoch),
    ]
    assert all(h.lease_expires_at > 0 for h in holds)
    assert next(h for h in holds if h.task_id == "API-1").lease_expires_at == mine.lease_expires_at


async def test_a_released_claim_no_longer_shows(hub: Hub) -> None:
    def script() -> None:  # the blocking facade, in a thread (it owns its own loop)
        with SyncSession("shop/api", uri=hub.uri) as api:
            claim = api.claim("API-1", ["a.py"], worktree=WT)
            assert [h.task_id for h in api.check_paths(["a.py"], worktree=WT)] == ["API-1"]
            api.release("API-1", claim.epoch)
            assert api.check_paths(["a.py"], worktree=WT) == ()

    await asyncio.to_thread(script)


async def test_malformed_check_gets_an_error_and_the_connection_stays_usable(hub: Hub, raw: RawFactory) -> None:
    client = await raw("shop/api")
    for bad in ({"paths": "a.py"}, {"paths": [1, 2]}, {}, {"paths": ["../../etc/passwd"], "worktree": WT}):
        await client.send("claim_check", **bad)
        error = await client.expect("error")
        assert error["code"] in ("BAD_FIELD", "BAD_PATH"), error
    await client.send("claim_check", paths=["a.py"], worktree=WT, request_id="ok")
    reply = await client.expect("claim_check_result", request_id="ok")
    assert (reply["conflicts"], reply["checked"]) == ([], 1)
    async with Session("shop/api2", uri=hub.uri) as api:
        with pytest.raises(Refused):
            await api.check_paths(["/etc/passwd"], worktree=WT)


async def test_a_long_check_is_paged_by_bytes_and_the_api_follows(hub_factory: HubFactory) -> None:
    hub = await hub_factory(max_frame_bytes=16 * 1024)
    paths = [f"pkg/module_{i:04d}.py" for i in range(400)]
    async with Session("shop/api", uri=hub.uri) as api:
        for start in range(0, 400, 100):
            await api.claim(f"T-{start}", paths[start : start + 100], worktree=WT)
        raw = await open_raw(hub.uri, "shop/raw")
        await raw.send("claim_check", paths=paths, worktree=WT, request_id="p1")
        first = await raw.expect("claim_check_result", request_id="p1")
        assert first["has_more"] is True and 0 < first["checked"] < 400
        assert len(first["conflicts"]) == first["checked"]
        await raw.close()
        holds = await api.check_paths(paths, worktree=WT)
    assert [h.path for h in holds] == paths
    assert {h.task_id for h in holds[:100]} == {"T-0"}


async def test_an_observer_seat_may_check(hub_factory: HubFactory, tmp_path: Path) -> None:
    with SeatStore(tmp_path / "hub.db") as store:
        watcher = store.add("watcher", "observer")
        agent = store.add("alice", "agent")
    hub = await hub_factory()
    async with Session("alice", uri=hub.uri, token=agent) as alice:
        await alice.claim("A-1", ["x.py"], worktree=WT)
    async with Session("watcher", uri=hub.uri, token=watcher) as obs:
        assert [(h.owner, h.task_id) for h in await obs.check_paths(["x.py"], worktree=WT)] == [("alice", "A-1")]
