"""Byte budgets: no frame the hub sends exceeds --max-frame-bytes, list replies are paged with
``has_more``, oversized chats are refused, and a slow consumer is closed 4017 by queued bytes.

Every case runs a real hub on a loopback port with its journal in tmp; the
sizes of every frame received are asserted, never timings.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from synapse_channel.protocol import Close

from .conftest import HubFactory, Raw, open_raw, run_cli
from .test_adapters import claude_input, hook

BUDGET = 64 * 1024
ID = "api/claude-1"


class Sized(Raw):
    """A raw client that records the byte size of every frame it receives."""

    sizes: list[int]

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        self.sizes = [*getattr(self, "sizes", []), len(data.encode() if isinstance(data, str) else data)]
        frame: dict[str, Any] = json.loads(data)
        return frame


async def sized(uri: str, name: str) -> Sized:
    raw = await open_raw(uri, name)
    client = Sized(raw.ws, name)
    await client.send("heartbeat", payload="online", protocol_version=7, quiet=True)
    await client.expect("welcome")
    return client


async def fill_inbox(uri: str, target: str, count: int, size: int) -> list[int]:
    """``count`` directed chats of about ``size`` bytes to ``target`` while it is offline; their seqs."""
    sender = await open_raw(uri, "boss")
    await sender.send("heartbeat", quiet=True)
    seqs = [await sender.chat_seq(target, f"m{i:02d} " + "x" * size) for i in range(count)]
    await sender.close()
    return seqs


async def test_inbox_pages_split_by_bytes_with_has_more(hub_factory: HubFactory) -> None:
    """24 chats of 30 KB under a 64 KiB budget: pages of at most 64 KiB, has_more until the last, nothing lost."""
    hub = await hub_factory(max_frame_bytes=BUDGET, max_queue_bytes=4 * BUDGET)
    seqs = await fill_inbox(hub.uri, ID, 24, 30_000)
    me = await sized(hub.uri, ID + "~reader")
    got: list[int] = []
    since, pages = 0, 0
    while True:
        query = {"version": 1, "identity": ID, "since_seq": since, "limit": 100}
        await me.send("history_request", payload="history", inbox_query=query)
        page = (await me.expect("history_snapshot"))["inbox_page"]
        pages += 1
        got += [m["seq"] for m in page["messages"]]
        since = page["cursor"]
        if not page["has_more"]:
            break
        assert page["messages"], "a page with has_more always advances"
    assert got == seqs and pages >= 12
    assert max(me.sizes) <= BUDGET, me.sizes


async def test_history_and_resume_split_and_continue_by_cursor(hub_factory: HubFactory) -> None:
    """history_snapshot and resume_snapshot stay under the budget; resume from the cursor gets the rest."""
    hub = await hub_factory(max_frame_bytes=BUDGET, max_queue_bytes=4 * BUDGET)
    me = await sized(hub.uri, "reader")
    talker = await open_raw(hub.uri, "talker")
    await talker.send("heartbeat", quiet=True)
    for i in range(10):
        await talker.send("chat", "all", f"b{i} " + "y" * 20_000)
    await talker.sync()
    await me.send("history_request", limit=10)
    first = await me.expect("history_snapshot")
    assert first["has_more"] is True and first["history"]
    ids = [m["msg_id"] for m in first["history"]]
    cursor = first["cursor"]
    while True:
        await me.send("resume_request", since=cursor)
        page = await me.expect("resume_snapshot")
        ids += [m["msg_id"] for m in page["messages"]]
        if not page.get("has_more"):
            break
        cursor = page["cursor"]
    assert len(ids) == 10 and ids == sorted(set(ids))
    assert max(me.sizes) <= BUDGET, me.sizes
    await talker.close()


async def test_oversized_chat_is_refused_and_nothing_stored(hub_factory: HubFactory) -> None:
    """A chat whose frame would pass the budget gets TOO_LARGE; the socket stays usable; no seq is used."""
    hub = await hub_factory(max_frame_bytes=BUDGET, max_queue_bytes=4 * BUDGET)
    me = await sized(hub.uri, "big")
    before = hub.core.seq if hub.core else 0
    await me.send("chat", "someone/else", "z" * BUDGET)
    error = await me.expect("error")
    assert error["code"] == "TOO_LARGE" and "nothing was stored" in error["payload"]
    assert hub.core is not None and hub.core.seq == before and not hub.core.mailbox.messages
    assert await me.chat_seq("someone/else", "small is fine") == before + 1


async def test_state_and_board_pages_via_cli(hub_factory: HubFactory, tmp_path: Path) -> None:
    """Claims and tasks beyond one frame are paged (has_more, after); `synapse state`/`board` show them all."""
    hub = await hub_factory(max_frame_bytes=16 * 1024, max_queue_bytes=64 * 1024, max_claims_per_agent=0)
    owner = await open_raw(hub.uri, "proj/a1")
    await owner.send("heartbeat")
    for i in range(60):
        await owner.send("claim", task_id=f"T-{i:03d}", paths=[f"src/{i}/" + "p" * 300])
        await owner.expect("claim_granted")
        await owner.send("ledger_task", task_id=f"B-{i:03d}", title="t" * 400)
        await owner.expect("ledger_task_posted")
    me = await sized(hub.uri, "viewer")
    await me.send("state_request", payload="snapshot")
    page = await me.expect("state_snapshot")
    assert page["has_more"] is True and 0 < len(page["snapshot"]["active_claims"]) < 60
    await me.send("board_request", payload="board")
    assert (await me.expect("board_snapshot"))["has_more"] is True
    assert max(me.sizes) <= 16 * 1024, me.sizes
    code, out, err = await run_cli("state", "--uri", hub.uri, "--json")
    assert code == 0, err
    assert sorted(c["task_id"] for c in json.loads(out)) == [f"T-{i:03d}" for i in range(60)]
    code, out, err = await run_cli("board", "--uri", hub.uri, "--json")
    assert code == 0, err
    assert len(json.loads(out)["tasks"]) == 60
    await owner.close()


async def test_hook_reads_every_message_of_a_big_inbox(hub_factory: HubFactory) -> None:
    """The 24 x 900 KB case at small scale: the hook follows has_more and hands over (and acks) all 24."""
    hub = await hub_factory(max_frame_bytes=BUDGET, max_queue_bytes=4 * BUDGET)
    seqs = await fill_inbox(hub.uri, ID, 24, 50_000)
    code, out, err = await hook("claude-code", "prompt", claude_input("UserPromptSubmit", prompt="go"), hub.uri)
    assert code == 0, err
    text = json.loads(out)["hookSpecificOutput"]["additionalContext"]
    assert f"24 new message(s) for {ID}" in text and "m23 " in text
    assert hub.core is not None and hub.core.mailbox.watermarks.get(ID) == seqs[-1]
    code, out, _ = await hook("claude-code", "prompt", claude_input("UserPromptSubmit", prompt="go"), hub.uri)
    assert (code, out.strip()) == (0, "")


async def test_old_client_ignoring_has_more_gets_a_valid_first_page(hub_factory: HubFactory) -> None:
    """A 0.99-style client (plain websocket, reads one reply, knows nothing of has_more) gets a usable page."""
    hub = await hub_factory(max_frame_bytes=BUDGET, max_queue_bytes=4 * BUDGET)
    await fill_inbox(hub.uri, ID, 6, 30_000)
    from websockets.asyncio.client import connect

    async with connect(hub.uri, max_size=16 * 2**20) as ws:
        await ws.recv()  # welcome
        query = {"version": 1, "identity": ID, "hub_id": "", "since_seq": 0, "limit": 50}
        frame = {"sender": ID + "~old", "target": "System", "type": "history_request", "payload": "history"}
        await ws.send(json.dumps({**frame, "timestamp": 1.0, "inbox_query": query}))
        while True:
            data = await asyncio.wait_for(ws.recv(), 10)
            reply = json.loads(data)
            if reply["type"] == "history_snapshot":
                break
    assert len(data.encode()) <= BUDGET
    page = reply["inbox_page"]
    assert page["version"] == 1 and page["available"] is True and page["identity"] == ID
    assert page["messages"] and all(m["type"] == "chat" and m["payload"].startswith("m0") for m in page["messages"])
    assert page["cursor"] == page["messages"][-1]["seq"]


async def test_mailbox_replay_is_bounded_and_the_rest_follows(hub_factory: HubFactory) -> None:
    """A returning waiter gets at most half its queue budget replayed; after its ack the next one gets the rest."""
    hub = await hub_factory(max_frame_bytes=BUDGET, max_queue_bytes=4 * BUDGET)
    seqs = await fill_inbox(hub.uri, "mbx/w1", 12, 30_000)
    got: list[int] = []
    for _ in range(12):
        code, out, err = await run_cli("wait", "--uri", hub.uri, "--name", "mbx/w1", "--timeout", "5")
        assert code == 0, err
        got += [int(line.split()[1][1:]) for line in out.splitlines() if line.startswith("boss: m")]
        if len(got) >= len(seqs):
            break
    assert got == list(range(12))


async def test_slow_consumer_closed_4017_while_others_keep_chatting(hub_factory: HubFactory) -> None:
    """A socket that stops reading is closed with 4017 once its unsent bytes pass the bound; others still get chats."""
    hub = await hub_factory(max_frame_bytes=BUDGET, max_queue_bytes=4 * BUDGET, relay_log=None)
    slow = await open_raw(hub.uri, "slow")
    await slow.send("heartbeat")
    await slow.expect("welcome")
    slow.ws.transport.pause_reading()  # alive, but reads nothing
    fast = await open_raw(hub.uri, "fast")
    await fast.send("heartbeat")
    sender = await open_raw(hub.uri, "sender")
    await sender.send("heartbeat", quiet=True)
    body = "w" * 60_000
    count = 400  # 24 MB: past the kernel's socket buffers and the 256 KiB bound
    for i in range(count):
        await sender.send("chat", "all", f"{i} {body}")
    got = 0
    while got < count:
        frame = await fast.recv(timeout=30)
        if frame["type"] == "chat" and frame["sender"] == "sender":
            got += 1
    slow.ws.transport.resume_reading()
    code, reason = await slow.closed(timeout=30)
    assert (code, reason) == (Close.SLOW_CONSUMER, "slow consumer: send queue over limit")
    await fast.close()
    await sender.close()


async def test_who_pages_by_name_and_the_cli_follows(hub_factory: HubFactory) -> None:
    """Mail for 600 offline names, a 16 KiB budget: who pages (has_more, cursor, after); `synapse who` shows all."""
    budget = 16 * 1024
    hub = await hub_factory(max_frame_bytes=budget, max_queue_bytes=4 * budget)
    sender = await open_raw(hub.uri, "boss")
    await sender.send("heartbeat", quiet=True)
    names = [f"fleet/worker-with-a-long-name-{i:03d}" for i in range(600)]
    for name in names:
        await sender.send("chat", name, "hi")
    await sender.sync()
    me = await sized(hub.uri, "viewer")
    pending: dict[str, int] = {}
    await me.send("who_request", payload="who")
    pages = 0
    while True:
        page = await me.expect("who_snapshot")
        pages += 1
        assert not set(page["mailbox_pending"]) & set(pending)  # pages never repeat a name
        pending.update(page["mailbox_pending"])
        if not page.get("has_more"):
            break
        assert page["cursor"] == max(page["mailbox_pending"])
        await me.send("who_request", payload="who", after=page["cursor"])
    assert pages > 1 and max(me.sizes) <= budget, me.sizes
    assert {n: pending[n] for n in names} == dict.fromkeys(names, 1)
    code, out, err = await run_cli("who", "--uri", hub.uri, "--json")
    assert code == 0, err
    assert sum(1 for n in json.loads(out)["mailbox_pending"] if n.startswith("fleet/")) == 600
    await sender.close()


async def test_presence_and_welcome_fit_the_budget_with_long_names(hub_factory: HubFactory) -> None:
    """180 agents with 121-character names under a 16 KiB budget: the roster list (22 KB) would not fit.

    Every newcomer still gets its ``welcome`` and an observer hears every join
    in presence frames within the budget; past a third of the budget the
    frames carry ``online_count`` instead of the list (CI once saw a 17.8 KB
    ``presence_update`` refused as FRAME_TOO_LARGE here).
    """
    budget = 16 * 1024
    hub = await hub_factory(max_frame_bytes=budget, max_queue_bytes=64 * budget)
    raw = await open_raw(hub.uri, "observer")
    observer = Sized(raw.ws, "observer")  # a listener (not quiet): it hears presence
    await observer.send("heartbeat", payload="online", protocol_version=7)
    await observer.expect("welcome")
    names = [f"fleet/agent-{i:03d}-" + "n" * 105 for i in range(180)]
    agents = []
    for name in names:
        agent = await open_raw(hub.uri, name)
        await agent.send("heartbeat", payload="online", protocol_version=7)
        await agent.expect("welcome")
        agents.append(agent)
    heard: set[str] = set()
    last: dict[str, Any] = {}
    while not heard >= set(names):  # recv raises after its timeout: a lost join fails the test
        got = await observer.recv()
        assert got["type"] != "error", got
        if got["type"] == "presence_update":
            heard.update(got.get("joined", []))
            last = got
    assert max(observer.sizes) <= budget, observer.sizes
    assert "online_agents" not in last and last["online_count"] == len(names) + 1
    for agent in agents:
        await agent.close()
