"""The hub over real sockets: handshake, presence, chat, who, refusals, limits."""

from __future__ import annotations

import asyncio
import json

import pytest

from synapse_channel.hub.server import Hub

from .conftest import HubFactory, RawFactory, open_raw


async def test_open_hub_sends_welcome_before_any_frame(hub: Hub, raw: RawFactory) -> None:
    """An open hub greets a new socket at once, with the fields clients read."""
    first = await raw("early", register=False)
    welcome = await first.recv()
    assert welcome["type"] == "welcome"
    assert welcome["target"] == "self"
    assert welcome["protocol_version"] == 7
    assert welcome["hub_id"] == hub.core.hub_id and welcome["hub_id"].startswith("syn-")
    assert welcome["online_agents"] == []
    assert welcome["connected_clients"] == 1


async def test_first_frame_binds_name_and_presence_is_broadcast(raw: RawFactory) -> None:
    """Any first frame binds its sender; joins and leaves reach everyone."""
    watcher = await raw("watcher")
    await watcher.expect("presence_update", agent="watcher", event="joined")
    chatter = await raw("chatter", register=False)
    await chatter.expect("welcome")
    await chatter.send("chat", "all", "hi without heartbeat")
    joined = await watcher.expect("presence_update", agent="chatter")
    assert joined["event"] == "joined" and joined["online_agents"] == ["chatter", "watcher"]
    chat = await watcher.expect("chat")
    assert chat["sender"] == "chatter"
    await chatter.close()
    left = await watcher.expect("presence_update", agent="chatter", event="left")
    assert left["online_agents"] == ["watcher"]


async def test_welcome_lists_agents_online_before_the_newcomer(raw: RawFactory) -> None:
    """``welcome.online_agents`` never includes the socket being greeted."""
    await raw("a1")
    second = await raw("b2", register=False)
    welcome = await second.expect("welcome")
    assert welcome["online_agents"] == ["a1"]
    assert welcome["connected_clients"] == 2


async def test_chat_is_stamped_by_the_hub(hub: Hub, raw: RawFactory) -> None:
    """The hub's clock wins; the client's stamp moves to client_timestamp."""
    a = await raw("a")
    b = await raw("b")
    await a.send("chat", "all", "stamped", client_msg_id="cli-1")
    got = await b.expect("chat")
    assert got["client_timestamp"] == 1.0
    assert got["timestamp"] > 1_000_000_000
    assert got["hub_id"] == hub.core.hub_id
    assert isinstance(got["msg_id"], int) and isinstance(got["seq"], int)
    assert got["client_msg_id"] == "cli-1"
    await a.send("chat", "all", "second")
    nxt = await b.expect("chat", payload="second")
    assert nxt["msg_id"] == got["msg_id"] + 1 and nxt["seq"] > got["seq"]


async def test_token_is_never_relayed(hub_factory: HubFactory, raw: RawFactory, tmp_path) -> None:
    """A token riding a chat frame is stripped from the relay and the feed."""
    a = await raw("a", token="ignored-on-open-hub")
    b = await raw("b")
    await a.send("chat", "all", "x", token="s3cret")
    got = await b.expect("chat")
    assert "token" not in got
    assert "s3cret" not in (tmp_path / "feed.ndjson").read_text()


@pytest.mark.parametrize(
    ("target", "reached"),
    [
        ("alice", {"alice", "alice-rx"}),
        ("proj", {"proj/a1", "proj/a1-rx"}),
        ("proj/a1", {"proj/a1", "proj/a1-rx"}),
        ("proj/*", {"proj/a1", "proj/a1-rx"}),
        ("alice,proj/a1", {"alice", "alice-rx", "proj/a1", "proj/a1-rx"}),
    ],
)
async def test_private_directed_reaches_only_matching_sockets(
    hub_factory: HubFactory, target: str, reached: set[str]
) -> None:
    """By default a directed chat goes to matching sockets only."""
    hub = await hub_factory()
    names = ["alice", "alice-rx", "proj/a1", "proj/a1-rx", "other/c3"]
    clients = {}
    for n in names:
        c = await open_raw(hub.uri, n)
        await c.send("heartbeat", payload="online")
        await c.expect("welcome")
        clients[n] = c
    sender = await open_raw(hub.uri, "sender")
    await sender.send("chat", target, "directed")
    for n, c in clients.items():
        if n in reached:
            got = await c.expect("chat")
            assert got["payload"] == "directed"
        else:
            await c.nothing("chat")
    for c in [*clients.values(), sender]:
        await c.close()


async def test_directed_chat_goes_to_every_socket_with_compat_fanout(hub_factory: HubFactory) -> None:
    """With --compat-fanout every socket gets it (the 0.99 clients filter for themselves)."""
    hub = await hub_factory(compat_fanout=True)
    bystander, sender = await open_raw(hub.uri, "bystander"), await open_raw(hub.uri, "sender")
    for client in (bystander, sender):
        await client.send("heartbeat")
        await client.expect("welcome")
    await sender.send("chat", "alice", "for alice")
    assert (await bystander.expect("chat"))["target"] == "alice"
    assert (await sender.expect("chat"))["payload"] == "for alice"


async def test_receipt_delivered_and_not_delivered(raw: RawFactory) -> None:
    """receipt_requested gets a private delivery_receipt with a JSON bool."""
    await raw("alice-rx", wake_capability="passive")
    s = await raw("s")
    await s.send("chat", "alice", "hi", client_msg_id="c1", receipt_requested=True)
    ok = await s.expect("delivery_receipt")
    assert ok["delivered"] is True
    assert ok["client_msg_id"] == "c1" and ok["message_target"] == "alice"
    assert ok["target"] == "s" and ok["sender"] == "SynapseHub"
    assert ok["matched_recipients"] == ["alice"]
    await s.send("chat", "nobody", "hi", client_msg_id="c2", receipt_requested=True)
    bad = await s.expect("delivery_receipt")
    assert bad["delivered"] is False and bad["client_msg_id"] == "c2"
    assert bad["reason"] == "no_online_recipient"
    assert bad["payload"] == "delivery failed: no online recipient matched nobody"


async def test_broadcast_with_receipt_counts_other_sockets(raw: RawFactory) -> None:
    """A broadcast receipt is negative when nobody else is online."""
    s = await raw("s")
    await s.send("chat", "all", "anyone?", client_msg_id="c", receipt_requested=True)
    assert (await s.expect("delivery_receipt"))["delivered"] is False
    await raw("other")
    await s.send("chat", "all", "anyone?", client_msg_id="d", receipt_requested=True)
    assert (await s.expect("delivery_receipt", client_msg_id="d"))["delivered"] is True


async def test_who_snapshot(raw: RawFactory) -> None:
    """who_request gets a private who_snapshot with roster, capabilities, liveness."""
    await raw("proj/a1")
    await raw("proj/a1-rx", wake_capability="passive")
    me = await raw("me")
    await me.send("who_request", payload="who")
    snap = await me.expect("who_snapshot")
    assert snap["target"] == "me"
    assert snap["online_agents"] == ["me", "proj/a1", "proj/a1-rx"]
    assert snap["wake_capabilities"]["proj/a1-rx"] == "passive"
    assert snap["agent_liveness"]["proj/a1"]["has_live_waiter"] is True
    assert snap["mailbox_pending"] == {"me": 0, "proj/a1": 0}


async def test_name_conflict_closes_4009(raw: RawFactory) -> None:
    """A second socket for an online name gets name_conflict and 4009."""
    first = await raw("dave")
    second = await raw("dave", register=False)
    await second.send("heartbeat", payload="online")
    conflict = await second.expect("name_conflict")
    assert "already online" in conflict["payload"]
    assert await second.closed() == (4009, "name conflict")
    await first.send("who_request")
    assert (await first.expect("who_snapshot"))["online_agents"] == ["dave"]


async def test_reserved_names_are_refused(raw: RawFactory) -> None:
    """Nobody can register as the hub itself."""
    fake = await raw("SynapseHub", register=False)
    await fake.send("heartbeat")
    assert (await fake.closed())[0] == 4009


async def test_takeover_supersedes_old_socket_then_cooldown(raw: RawFactory) -> None:
    """takeover closes the old socket 4010; a second one within 2 s gets 4014."""
    old = await raw("frank-rx", takeover=True)
    new = await raw("frank-rx", takeover=True)
    assert await old.closed() == (4010, "superseded")
    third = await raw("frank-rx", register=False)
    await third.send("heartbeat", takeover=True)
    assert await third.closed() == (4014, "takeover cooldown")
    await new.send("who_request")
    assert (await new.expect("who_snapshot"))["online_agents"] == ["frank-rx"]


async def test_takeover_does_not_announce_a_leave(raw: RawFactory) -> None:
    """The swap is atomic: watchers see no left/joined for the name."""
    watcher = await raw("watcher")
    await raw("gina-rx", takeover=True)
    await watcher.expect("presence_update", agent="gina-rx")
    await raw("gina-rx", takeover=True)
    await watcher.nothing("presence_update", within=0.3)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("{not json", "MALFORMED_JSON"),
        ("[1, 2]", "NOT_AN_OBJECT"),
        ('{"sender": "m", "target": "all", "payload": "x"}', "BAD_FIELD"),
        ('{"sender": 5, "target": "all", "type": "chat"}', "BAD_FIELD"),
        ('{"sender": "m", "target": "all", "type": "warp"}', "UNKNOWN_TYPE"),
        ('{"sender": "m", "target": "all", "type": "chat", "timestamp": NaN}', "MALFORMED_JSON"),
        ('{"sender": "m", "target": "all", "type": "ack", "seq": "x"}', "BAD_FIELD"),
        ('{"sender": "other", "target": "all", "type": "chat"}', "SENDER_MISMATCH"),
        (b"\x00\xff", "BINARY_FRAME"),
    ],
)
async def test_bad_frames_get_an_error_and_the_connection_stays_usable(
    raw: RawFactory, data: str | bytes, code: str
) -> None:
    """Malformed input earns a private error frame; the socket keeps working."""
    m = await raw("m")
    await m.send_raw(data)
    err = await m.expect("error")
    assert err["code"] == code and err["sender"] == "SynapseHub"
    await m.send("who_request")
    assert (await m.expect("who_snapshot"))["target"] == "m"


async def test_deep_nesting_is_an_error_not_a_crash(raw: RawFactory) -> None:
    """A pathologically nested frame is refused cleanly."""
    m = await raw("m")
    await m.send_raw("[" * 100_000 + "]" * 100_000)
    assert (await m.expect("error"))["code"] in {"MALFORMED_JSON", "NOT_AN_OBJECT"}
    await m.send("who_request")
    await m.expect("who_snapshot")


async def test_oversized_frame_closes_1009(hub_factory: HubFactory) -> None:
    """A frame over --max-msg-kb closes the connection with 1009."""
    hub = await hub_factory(max_msg_kb=1)
    c = await open_raw(hub.uri, "big")
    await c.send("chat", "all", "x" * 4096)
    assert (await c.closed())[0] == 1009


async def test_client_close_1011_is_a_normal_goodbye(raw: RawFactory) -> None:
    """One-shot 0.99 clients leave with 1011; the hub just marks them left."""
    watcher = await raw("watcher")
    quitter = await raw("quitter")
    await quitter.ws.close(1011)
    await watcher.expect("presence_update", agent="quitter", event="left")
    again = await raw("quitter")
    await again.send("who_request")
    await again.expect("who_snapshot")


async def test_max_clients_closes_4013(hub_factory: HubFactory) -> None:
    """Connections beyond --max-clients are closed with 4013."""
    hub = await hub_factory(max_clients=2)
    keep = [await open_raw(hub.uri, f"k{i}") for i in range(2)]
    for client in keep:
        await client.send("heartbeat")
        await client.expect("welcome")
    extra = await open_raw(hub.uri, "x")
    assert await extra.closed() == (4013, "hub at capacity")
    for client in keep:
        await client.close()


async def test_silent_sockets_cannot_take_the_slots_of_agents(hub_factory: HubFactory) -> None:
    """256 sockets that never sent a frame used to fill --max-clients for over 40 s.

    Now a silent socket holds no slot, is closed with 4012 after --auth-timeout,
    and a flood of them evicts the oldest silent one first, never an agent.
    """
    hub = await hub_factory(max_clients=4, auth_timeout=0.5)
    silent = [await open_raw(hub.uri, f"s{i}") for i in range(40)]
    agent = await open_raw(hub.uri, "agent")
    await agent.send("who_request")
    await agent.expect("who_snapshot")
    closes = [await s.closed() for s in silent]
    assert closes == [(4012, "registration timeout")] * 40
    await agent.send("who_request")
    assert (await agent.expect("who_snapshot"))["type"] == "who_snapshot"  # the agent was never evicted
    await agent.close()


async def test_auth_missing_wrong_and_right_token(hub_factory: HubFactory) -> None:
    """A secured hub refuses missing/wrong tokens with 4010 and welcomes the right one."""
    hub = await hub_factory(token="s3cret-tok-0123456789")
    for extra, text in [({}, "required"), ({"token": "wrong"}, "Invalid")]:
        c = await open_raw(hub.uri, "u")
        await c.send("heartbeat", **extra)
        denied = await c.expect("auth_denied")
        assert text in denied["payload"]
        assert await c.closed() == (4010, "auth denied")
    ok = await open_raw(hub.uri, "u")
    await ok.send("who_request", token="s3cret-tok-0123456789")
    assert (await ok.recv())["type"] == "welcome"
    await ok.expect("who_snapshot")
    await ok.close()


async def test_secured_hub_sends_nothing_before_the_token(hub_factory: HubFactory) -> None:
    """No welcome (or fan-out) reaches a socket that has not authenticated."""
    hub = await hub_factory(token="t" * 16, auth_timeout=0.5)
    idle = await open_raw(hub.uri, "idle")
    authed = await open_raw(hub.uri, "authed")
    await authed.send("heartbeat", token="t" * 16)
    await authed.expect("welcome")
    assert await idle.closed(timeout=5) == (4012, "auth timeout")


async def test_ghost_is_reaped_by_keepalive(hub_factory: HubFactory) -> None:
    """A client that stops answering pings loses its name within interval+timeout."""
    hub = await hub_factory(ping_interval=0.2, ping_timeout=0.2)
    ghost = await open_raw(hub.uri, "ghost", ping_interval=None)
    ghost_ws = ghost.ws
    await ghost.send("heartbeat")
    await ghost.expect("welcome")
    ghost_ws.transport.pause_reading()  # alive at TCP level, deaf at WebSocket level
    loop = asyncio.get_running_loop()
    start = loop.time()
    while "ghost" in hub.core.roster.names:
        assert loop.time() - start < 5, "ghost was not reaped"
        await asyncio.sleep(0.05)
    ghost_ws.transport.abort()
    fresh = await open_raw(hub.uri, "ghost")
    await fresh.send("heartbeat")
    await fresh.expect("welcome")
    await fresh.send("who_request")
    assert (await fresh.expect("who_snapshot"))["online_agents"] == ["ghost"]
    await fresh.close()


async def test_stop_closes_every_socket_with_1001(hub_factory: HubFactory) -> None:
    """Shutdown says 'going away' to every client."""
    hub = await hub_factory()
    c = await open_raw(hub.uri, "c")
    await c.send("heartbeat")
    await c.expect("welcome")
    await hub.stop()
    assert (await c.closed())[0] == 1001


async def test_plugin_hooks_fire_and_bad_plugins_are_skipped(hub_factory: HubFactory) -> None:
    """message_received and presence_changed reach plugins; raising or hanging ones do no harm."""
    from synapse_channel.hookspecs import hookimpl
    from synapse_channel.plugins import make_plugin_manager

    seen: list[tuple[str, object]] = []

    class Recorder:
        @hookimpl
        def message_received(self, message: dict[str, object]) -> None:
            seen.append(("message", message["payload"]))

        @hookimpl
        async def presence_changed(self, agent: str, event: str) -> None:
            seen.append((event, agent))

    class Broken:
        @hookimpl
        def message_received(self) -> None:
            raise RuntimeError("boom")

        @hookimpl
        async def presence_changed(self) -> None:
            await asyncio.sleep(3600)

    pm = make_plugin_manager(entrypoints=False, extra=[Recorder(), Broken()])
    hub = await hub_factory(pm=pm)
    a = await open_raw(hub.uri, "a")
    await a.send("chat", "all", "hello plugins")
    await a.expect("chat")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while ("message", "hello plugins") not in seen or ("joined", "a") not in seen:
        assert loop.time() < deadline, seen
        await asyncio.sleep(0.05)
    await a.send("who_request")
    await a.expect("who_snapshot")
    await a.close()


async def test_frames_arrive_in_seq_order_under_concurrency(raw: RawFactory) -> None:
    """Concurrent senders: every socket sees chats in strictly increasing seq."""
    watcher = await raw("watcher")
    senders = [await raw(f"s{i}") for i in range(8)]
    await asyncio.gather(*(s.send("chat", "all", f"{s.name}-{k}") for s in senders for k in range(20)))
    seqs = []
    while len(seqs) < 160:
        frame = await watcher.recv()
        if frame["type"] == "chat":
            seqs.append(frame["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 160


def test_frame_json_roundtrip_is_compact() -> None:
    """Hub frames are encoded without spaces (one encoding per fan-out)."""
    from synapse_channel.protocol import encode

    assert encode({"a": 1, "b": "é"}) == json.dumps({"a": 1, "b": "é"}, separators=(",", ":"), ensure_ascii=False)


async def test_quiet_registration_announces_no_presence(raw: RawFactory) -> None:
    """A one-shot client registering with quiet=true joins and leaves without presence broadcasts."""
    watcher = await raw("watcher")
    quick = await raw("quick", quiet=True)
    await quick.send("who_request")
    assert "quick" in (await quick.expect("who_snapshot"))["online_agents"]
    await quick.close()
    await raw("loud")
    joined = await watcher.expect("presence_update", event="joined", agent="loud")
    assert "quick" not in joined["online_agents"]


async def test_presence_frames_drop_the_roster_for_large_fleets(hub: Hub, raw: RawFactory) -> None:
    """Above the limit a presence frame carries online_count, not the list (no O(N^2) ramp-up)."""
    from synapse_channel.core import hubcore

    watcher = await raw("watcher")
    hubcore.PRESENCE_ROSTER_LIMIT, old = 2, hubcore.PRESENCE_ROSTER_LIMIT
    try:
        await raw("second")
        small = await watcher.expect("presence_update", agent="second")
        assert small["online_agents"] == ["second", "watcher"]
        await raw("third")
        big = await watcher.expect("presence_update", agent="third")
        assert "online_agents" not in big and big["online_count"] == 3
    finally:
        hubcore.PRESENCE_ROSTER_LIMIT = old


async def test_a_wait_rearm_is_silent_for_everyone_else(hub_factory: HubFactory) -> None:
    """Each `wait` re-arm used to cost every other socket a `left` and a `joined` frame.

    A name that comes back within --presence-grace is not announced at all; one
    that stays away is announced `left` once, when the grace has passed.
    """
    hub = await hub_factory(presence_grace=0.5)
    observer = await open_raw(hub.uri, "observer")
    await observer.send("heartbeat")
    await observer.expect("presence_update", agent="observer", event="joined")
    for _ in range(10):  # ten re-arms in a row, as a waiter loop does
        waiter = await open_raw(hub.uri, "api/w")
        await waiter.send("heartbeat")
        await waiter.expect("welcome")
        await waiter.close()
    seen: list[tuple[str, str]] = []
    while ("api/w", "left") not in seen:  # a batch lists its changes in `joined` / `left`
        frame = await observer.expect("presence_update")
        seen += [(name, event) for event in ("joined", "left") for name in frame.get(event, [])]
    assert seen == [("api/w", "joined"), ("api/w", "left")]  # the first arm, then one left; no pair per re-arm
    assert frame["event"] == "left" and frame["agent"] == "api/w" and "api/w" not in frame["online_agents"]
    await observer.nothing("presence_update", within=0.7)
    await observer.close()


async def test_presence_grace_zero_announces_at_once(hub_factory: HubFactory) -> None:
    hub = await hub_factory(presence_grace=0)
    observer = await open_raw(hub.uri, "observer")
    await observer.send("heartbeat")
    waiter = await open_raw(hub.uri, "api/w")
    await waiter.send("heartbeat")
    await observer.expect("presence_update", agent="api/w", event="joined")
    await waiter.close()
    await observer.expect("presence_update", agent="api/w", event="left", timeout=2)
    await observer.close()
