"""The durable mailbox: messages for an absent agent wake its next wait, exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from synapse_channel.hub.server import Hub

from .conftest import HubFactory, finish, open_raw, run_cli, start_waiter
from .hubproc import HubProcess
from .test_interop import need_ref, ref


async def test_offline_message_wakes_next_wait_exactly_once(hub: Hub) -> None:
    """Sent while nobody waits: the next wait prints it; the one after does not."""
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "w1", "do the thing")
    assert code == 0 and "queued for w1 (offline)" in out  # not delivered now ...
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "w1", "--timeout", "5")
    assert (code, out) == (0, "boss: do the thing\n")  # ... but kept
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "w1", "--timeout", "0.5")
    assert (code, out) == (2, "")


async def test_several_missed_messages_are_printed_in_order(hub: Hub) -> None:
    """A backlog is surfaced whole, oldest first, in one wake."""
    for i in range(5):
        await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "w2", f"step {i}")
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "w2", "--timeout", "5")
    assert code == 0
    assert out.splitlines() == [f"boss: step {i}" for i in range(5)]


async def test_acked_messages_are_not_replayed_even_without_the_cursor(hub: Hub, tmp_path: Path) -> None:
    """The hub's watermark alone stops replays (a fresh machine has no cursor file)."""
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "w3", "once")
    assert (await run_cli("wait", "--uri", hub.uri, "--name", "w3", "--timeout", "5"))[0] == 0
    for cursor in (tmp_path / "synhome" / "mailbox-cursor").iterdir():
        cursor.unlink()
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "w3", "--timeout", "0.5")
    assert (code, out) == (2, "")


async def test_project_message_reaches_a_seat(hub: Hub) -> None:
    """A message to the project is kept for, and wakes, a seat of that project."""
    await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "api", "api-wide note")
    code, out, _ = await run_cli(
        "wait", "--uri", hub.uri, "--name", "api/claude-1", "--timeout", "20", "--wake-jitter", "0"
    )
    assert (code, out) == (0, "boss: api-wide note\n")


async def test_message_state_stored_delivered_acked(hub: Hub) -> None:
    """A sender can ask where its directed message is: stored, delivered, acked."""
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "w4", "--json", "hello")
    import json

    seq = json.loads(out)["message_seq"]
    assert (await run_cli("receipt", "--uri", hub.uri, "--name", "boss", str(seq)))[1].strip() == f"{seq}: stored"
    watcher = await open_raw(hub.uri, "w4-rx")
    await watcher.send("heartbeat", mailbox=True, since_seq=0, mailbox_for="w4")
    await watcher.expect("chat", replayed=True)
    assert (await run_cli("receipt", "--uri", hub.uri, "--name", "boss", str(seq)))[1].strip() == f"{seq}: delivered"
    await watcher.send("ack", "all", seq=seq, mailbox_for="w4")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while (await run_cli("receipt", "--uri", hub.uri, "--name", "boss", str(seq)))[1].strip() != f"{seq}: acked":
        assert loop.time() < deadline
    await watcher.close()
    code, out, _ = await run_cli("receipt", "--uri", hub.uri, "99999")
    assert code == 1 and "unknown" in out


async def test_who_counts_pending_mail(hub: Hub) -> None:
    """who shows unacknowledged directed messages per identity."""
    await run_cli("send", "--uri", hub.uri, "--target", "w5", "a")
    await run_cli("send", "--uri", hub.uri, "--target", "w5", "b")
    code, out, _ = await run_cli("who", "--uri", hub.uri)
    assert code == 0 and "2 pending for w5" in out


async def test_message_sent_while_hub_down_period_survives_restart(tmp_path: Path) -> None:
    """Queued before a SIGKILL of the hub, delivered after its restart."""
    hub = HubProcess(tmp_path / "h.db")
    await hub.start()
    assert (await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "w6", "survive"))[0] == 0  # queued
    await hub.kill()
    await hub.start()
    code, out, _ = await run_cli("wait", "--uri", hub.uri, "--name", "w6", "--timeout", "5")
    assert (code, out) == (0, "boss: survive\n")
    await hub.stop()


async def test_unbounded_wait_rearms_across_restart_and_gets_gap_message(tmp_path: Path) -> None:
    """`wait --timeout 0` rides out a hub restart; a message sent in the gap wakes it once."""
    hub = HubProcess(tmp_path / "h.db")
    await hub.start()
    waiter = await start_waiter(hub.uri, "--name", "w7", "--timeout", "0")
    await hub.stop()
    await hub.start()
    code, out, _ = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", "w7", "after restart")
    code, out, err = await finish(waiter, timeout=30)
    assert (code, out) == (0, "boss: after restart\n"), err
    await hub.stop()


async def test_reference_syn_wait_gets_the_replay(hub_factory: HubFactory, tmp_path: Path) -> None:
    """The 0.99.38 syn-wait (mailbox) receives a message queued on our hub."""
    need_ref()
    hub = await hub_factory()
    await run_cli("send", "--uri", hub.uri, "--name", "mbx/sender", "--target", "mbx/w1", "offline directed 1")
    env = {"SYN_IDENTITY": "mbx/w1", "SYN_PROJECT": "mbx"}
    code, out, err = await ref("--uri", hub.uri, tool="syn-wait", env=env, timeout=20)
    assert code == 0, err
    assert "offline directed 1" in out


async def test_history_resume_and_inbox_page(hub: Hub) -> None:
    """history_request, its inbox_page form, and resume_request answer from the journal's projection."""
    s = await open_raw(hub.uri, "s")
    for i in range(4):
        await s.send("chat", "mbx/w1" if i % 2 else "all", f"m{i}")
    last = (await s.expect("chat", payload="m2"))["msg_id"] + 1  # its own directed m3 is not echoed back
    await s.send("history_request", payload="history", limit=2)
    hist = await s.expect("history_snapshot")
    assert [f["payload"] for f in hist["history"]] == ["m2", "m3"] and hist["requested_limit"] == 2
    await s.send("resume_request", payload="resume", since=last - 2)
    res = await s.expect("resume_snapshot")
    assert [f["payload"] for f in res["messages"]] == ["m2", "m3"] and res["since"] == last - 2
    query = {"version": 1, "identity": "mbx/w1", "hub_id": hub.core.hub_id, "since_seq": 0, "limit": 1}
    await s.send("history_request", payload="history", inbox_query=query)
    assert (await s.expect("error"))["code"] == "FORBIDDEN"  # only mbx/w1 (or an admin) may page its inbox
    s_own, s = s, await open_raw(hub.uri, "mbx/w1-rx")
    await s.send("heartbeat")
    await s.send("history_request", payload="history", inbox_query=query)
    page = (await s.expect("history_snapshot"))["inbox_page"]
    assert page["available"] is True and page["identity"] == "mbx/w1" and page["has_more"] is True
    assert [f["payload"] for f in page["messages"]] == ["m1"]
    await s.send("history_request", payload="history", inbox_query={**query, "since_seq": page["cursor"]})
    page2 = (await s.expect("history_snapshot"))["inbox_page"]
    assert [f["payload"] for f in page2["messages"]] == ["m3"] and page2["has_more"] is False
    await s.send("history_request", inbox_query={"identity": 5})
    assert (await s.expect("error"))["code"] == "BAD_FIELD"
    await s.close()
    await s_own.close()
