"""Presence changes are batched: N agents joining cost each observer a few frames, not N.

Announcing every join to every socket made 1,000 agents connecting at once
cost ~800k ``presence_update`` frames (O(N^2)). These tests count frames and
names; none of them times anything.
"""

from __future__ import annotations

import json
from typing import Any

from synapse_channel.core import HubCore
from synapse_channel.core.presence import CHANGES_PER_FRAME
from synapse_channel.protocol import parse_frame

from .conftest import HubFactory, open_raw


def frame(sender: str, ftype: str, target: str = "System", **extra: object) -> str:
    return json.dumps({"sender": sender, "target": target, "type": ftype, "payload": "", **extra})


def changes(frames: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every (agent, event) the presence frames announce, from their ``joined`` / ``left`` lists."""
    return [(name, event) for f in frames for event in ("joined", "left") for name in f.get(event, [])]


def presence_to(core_out: Any, conn_id: int) -> list[dict[str, Any]]:
    return [s.frame for s in core_out.sends if conn_id in s.to and s.frame["type"] == "presence_update"]


def test_a_thousand_joins_between_flushes_make_five_frames_per_observer() -> None:
    """1,000 registrations, then one flush: each observer gets ceil(1000 / 200) frames listing every join once."""
    core = HubCore("syn-test")
    core.open(1, 100.0)
    core.receive(1, parse_frame(frame("observer", "heartbeat")), 100.0)
    core.flush_presence(100.0)
    for i in range(2, 1002):
        core.open(i, 100.0)
        out = core.receive(i, parse_frame(frame(f"fleet/a{i}", "heartbeat")), 100.0)
        assert not presence_to(out, 1)  # nothing is broadcast per join
    out = core.flush_presence(101.0)
    got = presence_to(out, 1)
    assert len(got) == -(-1000 // CHANGES_PER_FRAME) == 5
    assert changes(got) == [(f"fleet/a{i}", "joined") for i in range(2, 1002)]
    # The 0.99 fields: an ordinary presence_update (the last change of the frame), the count above 200 names.
    assert all(f["event"] == "joined" and f["agent"] == f["joined"][-1] for f in got)
    assert all(f["online_count"] == 1001 and "online_agents" not in f for f in got)
    assert [s.to for s in out.sends] == [tuple(range(1, 1002))] * 5  # every socket, the newcomers included
    assert len(out.notices) == 1000  # plugins still hear each change
    assert not core.flush_presence(102.0).sends  # the batch is empty afterwards


def test_a_burst_of_long_names_is_cut_by_bytes_under_a_small_budget() -> None:
    """190 joins of 128-character names in one flush under 16 KiB: several frames, each within the budget."""
    budget = 16 * 1024
    core = HubCore("syn-test", max_frame_bytes=budget)
    core.open(1, 100.0)
    core.receive(1, parse_frame(frame("observer", "heartbeat")), 100.0)
    core.flush_presence(100.0)
    names = [f"fleet/a{i:03d}-" + "n" * 117 for i in range(2, 192)]
    for cid, name in enumerate(names, start=2):
        core.open(cid, 100.0)
        core.receive(cid, parse_frame(frame(name, "heartbeat")), 100.0)
    got = presence_to(core.flush_presence(101.0), 1)
    assert len(got) > 1 and changes(got) == [(n, "joined") for n in names]
    assert max(len(json.dumps(f, separators=(",", ":")).encode()) for f in got) <= budget
    assert all(f["online_count"] == 191 and "online_agents" not in f for f in got)  # 24 KB of names, 191 < 200


def test_a_join_and_leave_between_flushes_cancel_out() -> None:
    """Observers learn net changes: a name that came and went before the flush is not announced."""
    core = HubCore("syn-test", presence_grace=0)
    for cid, name in ((1, "observer"), (2, "stays"), (3, "flicker")):
        core.open(cid, 100.0)
        core.receive(cid, parse_frame(frame(name, "heartbeat")), 100.0)
    core.flush_presence(100.0)
    core.close(2, 101.0)
    core.open(4, 101.0)
    core.receive(4, parse_frame(frame("stays", "heartbeat")), 101.0)  # back before the flush
    core.close(3, 101.0)
    core.open(5, 101.0)
    core.receive(5, parse_frame(frame("brief", "heartbeat")), 101.0)
    core.close(5, 101.0)  # joined and left before the flush
    got = presence_to(core.flush_presence(102.0), 1)
    assert changes(got) == [("flicker", "left")]
    assert got[0]["online_agents"] == ["observer", "stays"]


def test_welcome_drops_the_roster_above_the_limit(monkeypatch: Any) -> None:
    """A welcome per registration listing everyone was O(N) per socket; above the limit it carries the count."""
    from synapse_channel.core import hubcore

    monkeypatch.setattr(hubcore, "PRESENCE_ROSTER_LIMIT", 2)
    core = HubCore("syn-test")
    for cid in (1, 2):
        core.open(cid, 100.0)
        core.receive(cid, parse_frame(frame(f"a{cid}", "heartbeat")), 100.0)
    welcome = core.open(3, 100.0).sends[0].frame
    assert welcome["online_agents"] == ["a1", "a2"]
    core.receive(3, parse_frame(frame("a3", "heartbeat")), 100.0)
    welcome = core.open(4, 100.0).sends[0].frame
    assert welcome["online_count"] == 3 and "online_agents" not in welcome


async def test_a_burst_of_joins_reaches_an_observer_in_a_few_frames(hub_factory: HubFactory) -> None:
    """300 agents join while the window is closed; the next broadcast flushes them in 2 frames, before it.

    A window of an hour means only the first join and the broadcast can flush,
    so the count does not depend on timing: before batching it was 300 frames.
    """
    hub = await hub_factory(presence_window=3600.0, max_clients=400)
    observer = await open_raw(hub.uri, "observer")
    await observer.send("heartbeat")
    assert changes([await observer.expect("presence_update")]) == [("observer", "joined")]
    agents = []
    for i in range(300):
        agent = await open_raw(hub.uri, f"fleet/a{i}")
        await agent.send("heartbeat")
        agents.append(agent)
    presence: list[dict[str, Any]] = []

    async def until(ftype: str) -> dict[str, Any]:
        while (got := await observer.recv())["type"] != ftype:
            if got["type"] == "presence_update":
                presence.append(got)
        return got

    online: list[str] = []
    while len(online) < 301:  # every agent registered
        await observer.send("who_request")
        online = (await until("who_snapshot"))["online_agents"]
    assert presence == []  # the window is closed: nothing was broadcast per join
    await observer.send("chat", "all", "roll call")
    await until("chat")
    before_chat = presence
    assert len(before_chat) == 2  # ceil(300 / 200), not 300
    assert sorted(changes(before_chat)) == sorted((f"fleet/a{i}", "joined") for i in range(300))
    for agent in agents:
        await agent.close()
    await observer.close()


async def test_a_broadcast_never_overtakes_a_join_still_being_fanned_out(
    hub_factory: HubFactory, monkeypatch: Any
) -> None:
    """Presence goes out a chunk of sockets per tick; a broadcast first finishes it, so no socket
    sees the newcomer's chat before its join (one socket per tick makes the overlap certain)."""
    from synapse_channel.hub import fanout

    monkeypatch.setattr(fanout, "CHUNK", 1)
    hub = await hub_factory(presence_window=0)
    observers = []
    for i in range(30):
        observer = await open_raw(hub.uri, f"obs/o{i}")
        await observer.send("heartbeat", quiet=True)  # quiet: only the newcomer's join is announced
        observers.append(observer)
    await observers[-1].sync()
    newcomer = await open_raw(hub.uri, "fleet/new")
    await newcomer.send("heartbeat")
    await newcomer.send("chat", "all", "hello")
    for observer in observers:
        joined = []
        while (got := await observer.recv())["type"] != "chat":
            joined += got.get("joined", []) if got["type"] == "presence_update" else []
        assert joined == ["fleet/new"], observer.name
    for ws in (*observers, newcomer):
        await ws.close()
