"""synapse_channel.api against a real hub: typed results, typed refusals, one connection reused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from synapse_channel.api import (
    Conflict,
    Forbidden,
    Refused,
    Session,
    Superseded,
    SyncSession,
    Timeout,
    Unreachable,
    wait,
)
from synapse_channel.hub.server import Hub
from synapse_channel.seats import SeatStore

from .conftest import HubFactory


async def test_send_queues_for_an_offline_agent_and_its_inbox_pages_it(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api:
        queued = await api.send("shop/web", "API-12 is mine")
        assert (queued.outcome, queued.ok) == ("queued", True) and queued.seq
        broadcast = await api.broadcast("hello all")
        assert broadcast.outcome == "broadcast"
    async with Session("shop/web", uri=hub.uri) as web:
        page = await web.inbox()
        assert [(m.sender, m.text, m.seq) for m in page.messages] == [("shop/api", "API-12 is mine", queued.seq)]
        assert page.cursor == queued.seq and not page.has_more
        await web.ack(page.cursor)
        assert (await web.inbox(after=page.cursor)).messages == ()
        with pytest.raises(TypeError):
            page.messages[0].raw["payload"] = "rewritten"  # type: ignore[index]


async def test_send_to_a_live_agent_is_delivered_and_seen_by_next_message(hub: Hub) -> None:
    async with Session("shop/web", uri=hub.uri, announce=True) as web, Session("shop/api", uri=hub.uri) as api:
        await web.connect()
        sent = await api.send("shop/web", "are you there?", priority=True)
        assert sent.outcome == "delivered"
        got = await web.next_message(timeout=5)
        assert got is not None and (got.sender, got.text, got.priority, got.seq) == (
            "shop/api",
            "are you there?",
            True,
            sent.seq,
        )
        assert await web.next_message(timeout=0.2) is None


async def test_one_session_reuses_one_connection(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api:
        await api.who()
        before = len(hub.core.roster.conns)
        for _ in range(5):
            await api.board()
            await api.claims()
        assert len(hub.core.roster.conns) == before


async def test_claims_conflict_renew_release(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api, Session("shop/web", uri=hub.uri) as web:
        claim = await api.claim("API-12", ["src/api/"], worktree="/w", ttl=60, note="routes")
        assert (claim.task_id, claim.owner, claim.paths, claim.worktree) == ("API-12", "shop/api", ("src/api/",), "/w")
        with pytest.raises(Conflict) as denied:
            await web.claim("WEB-1", ["src/api/routes.py"], worktree="/w")
        assert denied.value.code == "SCOPE_CONFLICT" and "API-12" in str(denied.value)
        assert (denied.value.held_by, denied.value.held_task) == ("shop/api", "API-12")
        assert denied.value.held_until == claim.lease_expires_at
        renewed = await api.renew("API-12", claim.epoch, ttl=120)
        assert renewed.lease_expires_at > claim.lease_expires_at
        with pytest.raises(Refused) as stale:
            await api.renew("API-12", claim.epoch + 99)
        assert stale.value.code == "STALE_EPOCH"
        assert [c.task_id for c in await web.claims()] == ["API-12"]
        with pytest.raises(Refused):
            await web.release("API-12")  # not the owner
        await api.release("API-12", renewed.epoch, evidence=["tests pass"])
        assert await web.claims() == ()
        assert (await web.claim("WEB-1", ["src/api/routes.py"], worktree="/w")).owner == "shop/web"
        await web.release("WEB-1")  # no epoch kept: the session looks it up
        assert await api.claims() == ()


async def test_board_declare_update_conflict(hub: Hub) -> None:
    async with Session("shop/lead", uri=hub.uri) as lead:
        base = await lead.declare_task("T-1", "schema")
        await lead.declare_task("T-2", "api", depends_on=["T-1"])
        assert (base.task_id, base.status) == ("T-1", "open")
        board = await lead.board()
        assert {t.task_id for t in board.tasks} == {"T-1", "T-2"} and board.ready == ("T-1",)
        done = await lead.update_task("T-1", status="done", expected_version=base.version)
        assert done.status == "done" and done.version > base.version
        with pytest.raises(Conflict) as stale:
            await lead.update_task("T-1", title="again", expected_version=base.version)
        assert stale.value.code == "VERSION_CONFLICT"
        with pytest.raises(Refused) as unknown:
            await lead.declare_task("T-3", "x", depends_on=["NOPE"])
        assert unknown.value.code == "UNKNOWN_DEPENDENCY"
        assert (await lead.board()).ready == ("T-2",)
        await lead.progress("T-2", "halfway")


async def test_who_shows_announced_agents_and_pending_mail(hub: Hub) -> None:
    async with Session("shop/web", uri=hub.uri, announce=True) as web, Session("shop/api", uri=hub.uri) as api:
        await web.connect()
        await api.send("shop/db", "later")
        roster = await api.who()
        assert "shop/web" in roster.online and roster.liveness["shop/web"]["proven_live"] is True
        assert roster.pending.get("shop/db") == 1


async def test_wait_returns_mail_once_and_times_out_empty(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api:
        sent = await api.send("shop/web", "wake up")
    got = await wait("shop/web", uri=hub.uri, timeout=5)
    assert [(m.text, m.seq) for m in got] == [("wake up", sent.seq)]
    assert await wait("shop/web", uri=hub.uri, timeout=0.5) == ()
    waiter = asyncio.create_task(wait("shop/web", uri=hub.uri, timeout=10))
    await asyncio.sleep(0.3)
    async with Session("shop/api", uri=hub.uri) as api:
        await api.send("shop/web", "second")
    assert [m.text for m in await waiter] == ["second"]


async def test_errors_are_typed(hub_factory: HubFactory, tmp_path: Path) -> None:
    with pytest.raises(Unreachable):
        async with Session("a", uri="ws://127.0.0.1:9", timeout=1) as s:
            await s.who()
    with SeatStore(tmp_path / "hub.db") as store:
        alice = store.add("alice", "agent")
        mallory = store.add("mallory", "agent")
    hub = await hub_factory()
    async with Session("alice", uri=hub.uri, token=alice) as s:
        await s.send("carol", "hi")
        with pytest.raises(Forbidden):
            await s.inbox(identity="carol")
        with pytest.raises(Forbidden):
            await s.ack(1, identity="carol")
    with pytest.raises(Forbidden, match="may not use that name"):  # another seat's name: closed, "not granted"
        async with Session("alice", uri=hub.uri, token=mallory) as s:
            await s.who()
    holder = Session("alice", uri=hub.uri, token=alice, announce=True)
    await holder.connect()
    async with Session("alice", uri=hub.uri, token=alice, announce=True, registration={"takeover": True}) as taker:
        await taker.connect()
        with pytest.raises(Superseded):
            await holder.who()
    await holder.close()


async def test_a_refused_frame_leaves_the_session_usable(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api:
        with pytest.raises(Refused) as bad:
            await api.request(api.frame("renew", task_id="NOPE", epoch=1), lambda f: f.get("type") == "claim_renewed")
        assert bad.value.code == "NOT_CLAIMED" and bad.value.frame.get("type") == "error"
        with pytest.raises(Timeout):
            await api.request(api.frame("who_request"), lambda f: False, timeout=0.3)
        assert (await api.send("shop/web", "still fine")).outcome == "queued"


def test_sync_session_and_wait_from_plain_code(hub_uri_thread: str) -> None:
    with SyncSession("shop/api", uri=hub_uri_thread) as api:
        assert api.send("shop/web", "from a script").outcome == "queued"
        claim = api.claim("S-1", ["a.py"])
        assert [c.task_id for c in api.claims()] == ["S-1"]
        api.release("S-1", claim.epoch)
        api.broadcast("a scripted search target")
        assert [h.text for h in api.search("scripted", limit=1).hits] == ["a scripted search target"]
    from synapse_channel.api import wait_sync

    assert [m.text for m in wait_sync("shop/web", uri=hub_uri_thread, timeout=5)] == ["from a script"]


@pytest.fixture
def hub_uri_thread(tmp_path: Path) -> object:
    """A hub on its own event loop in a thread, for the blocking facade (which runs its own loop)."""
    import threading

    from synapse_channel.hub.config import HubConfig

    ready = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            hub = Hub(HubConfig(host="127.0.0.1", port=0, db=tmp_path / "t.db", relay_log=tmp_path / "f.ndjson"))
            await hub.start()
            box["uri"], box["stop"] = hub.uri, asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await box["stop"].wait()  # type: ignore[attr-defined]
            await hub.stop()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(20), "the hub thread did not start"
    yield box["uri"]
    box["loop"].call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
    thread.join(20)


async def test_ask_human_waits_for_a_person_and_returns_the_answer(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api, Session("ops/ana", uri=hub.uri) as ana:
        asking = asyncio.create_task(api.ask_human("Drop the legacy table?", choices=["drop", "keep"], timeout=10))
        async with asyncio.timeout(10):
            while not (open_ := await ana.attention()):
                await asyncio.sleep(0.02)
        (question,) = open_
        assert (question.asker, question.text, question.choices, question.is_open) == (
            "shop/api",
            "Drop the legacy table?",
            ("drop", "keep"),
            True,
        )
        with pytest.raises(Refused) as bad:
            await ana.answer(question.id, "burn it")
        assert bad.value.code == "BAD_ANSWER"
        answered = await ana.answer(question.id, "keep")
        got = await asking
        assert (got.id, got.status, got.answer, got.answered_by) == (question.id, "answered", "keep", "ops/ana")
        assert answered.answer == "keep" and await ana.attention() == ()
    mail = await wait("shop/api", uri=hub.uri, timeout=5)
    assert [(m.sender, m.raw.get("attention_id")) for m in mail] == [("ops/ana", question.id)]


async def test_events_streams_chats_until_stopped_and_raises_superseded_on_takeover(hub: Hub) -> None:
    stop = asyncio.Event()
    async with Session("shop/web", uri=hub.uri, announce=True) as web, Session("shop/api", uri=hub.uri) as api:
        await web.connect()
        for text in ("one", "two"):
            await api.send("shop/web", text)
        seen = []
        async for message in web.events(stop):
            seen.append(message.text)
            if len(seen) == 2:
                stop.set()
        assert seen == ["one", "two"]  # and the loop ended because stop was set
        async with Session("shop/web", uri=hub.uri, announce=True, registration={"takeover": True}) as taker:
            await taker.connect()
            with pytest.raises(Superseded) as gone:
                async for _ in web.events():
                    pass
            assert gone.value.code == 4010 and gone.value.exit_code == 4


async def test_wake_capability_reaches_the_hub(hub: Hub) -> None:
    async with Session(
        "shop-presence", uri=hub.uri, announce=True, wake_capability="presence", registration={"presence_for": "shop"}
    ) as holder:
        await holder.connect()
        async with Session("ops", uri=hub.uri) as ops:
            sent = await ops.send("shop/web", "anyone?")  # the project is held: queued, not a dead letter
        assert sent.outcome == "queued"
        caps = {c.name: c.wake_capability for c in hub.core.roster.conns.values()}
        assert caps["shop-presence"] == "presence"


async def test_message_status_follows_a_message_to_its_ack(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api, Session("shop/web", uri=hub.uri) as web:
        sent = await api.send("shop/web", "track me")
        assert sent.seq is not None
        assert await web.message_status(sent.seq) == "stored"
        await web.ack(sent.seq)
        assert await web.message_status(sent.seq) == "acked"
        assert await web.message_status(10**9) == "unknown"


async def test_a_bystander_wait_has_its_own_receiver_and_cursor_and_never_acks(hub: Hub, tmp_path: Path) -> None:
    cursor = tmp_path / "bystander.cursor"
    async with Session("shop/api", uri=hub.uri) as api:
        sent = await api.send("shop/web", "for web")
    got = await wait("shop/web", uri=hub.uri, timeout=5, ack=False, receiver="shop/web-pane-rx", cursor=cursor)
    assert [m.seq for m in got] == [sent.seq] and cursor.read_text().strip() == str(sent.seq)
    assert await wait("shop/web", uri=hub.uri, timeout=0.5, receiver="shop/web-pane-rx", cursor=cursor) == ()
    async with Session("shop/web", uri=hub.uri) as web:
        assert sent.seq is not None and await web.message_status(sent.seq) != "acked"
    assert [m.text for m in await wait("shop/web", uri=hub.uri, timeout=5)] == ["for web"]  # the agent still gets it


def test_context_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synapse_channel.api import one_shot, owner_of, resolve_token, setting

    assert owner_of("shop/web-rx") == owner_of("shop/web-pane-rx") == "shop/web"
    assert one_shot("tool", "shop/web").startswith("shop/web~tool-")
    monkeypatch.setenv("SYNAPSE_TOKEN", "from-env")
    assert resolve_token() == "from-env" and resolve_token("given") == "given"
    loose = tmp_path / "token"
    loose.write_text("secret\n")
    loose.chmod(0o644)
    with pytest.raises(Refused) as bad:
        resolve_token(token_file=loose)
    assert bad.value.code == "TOKEN_FILE" and "chmod 600" in str(bad.value)
    assert setting("adapters.no_such_plugin.key") is None


def test_api_cli_does_not_load_the_session_machinery() -> None:
    """A plugin's command module imports api.cli at load time; that must stay as light as the CLI's own options."""
    import subprocess
    import sys

    code = (
        "import sys, synapse_channel.api.cli\n"
        "print(sorted(m for m in sys.modules if m.endswith(('.session', '.connection'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_a_board_broadcast_already_in_flight_is_not_taken_for_the_answer(hub: Hub) -> None:
    """web is connected when api updates a task: that broadcast, still unread, must not answer web's own update."""
    async with Session("shop/api", uri=hub.uri) as api, Session("shop/web", uri=hub.uri) as web:
        await web.connect()
        await api.declare_task("T-1", "one")
        task = await api.update_task("T-1", status="in_progress")
        with pytest.raises(Conflict) as stale:
            await web.update_task("T-1", status="done", expected_version=task.version - 1)
        assert stale.value.code == "VERSION_CONFLICT"
        done = await web.update_task("T-1", status="done", expected_version=task.version)
        assert (done.status, done.version) == ("done", task.version + 1)
        await web.progress("T-1", "shipped")


async def test_search_returns_typed_hits_and_never_another_identitys_mail(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api:
        await api.send("shop/secret", "zebra launch code for secret only")
        await api.send("shop/web", "zebra review for web")
        await api.broadcast("zebra crossing news")
        await api.declare_task("Z-1", "Zebra stripes", description="paint them")
        await api.progress("Z-1", "zebra paint dried")
    async with Session("shop/web", uri=hub.uri) as web:
        page = await web.search("zebra")
        assert [(h.kind, h.sender, h.target) for h in page.hits] == [
            ("note", "shop/api", "board"),
            ("task", "shop/api", "board"),
            ("chat", "shop/api", "all"),
            ("chat", "shop/api", "shop/web"),
        ]
        note, task, news, review = page.hits
        assert (note.task_id, task.task_id, news.task_id) == ("Z-1", "Z-1", None)
        assert review.text == "zebra review for web" and "[zebra]" in review.snippet and review.msg_id is not None
        assert review.seq < news.seq and review.timestamp > 0
        assert (page.has_more, page.cursor) == (False, None)
        for probe in ("secret", "launch OR zebra", '"launch code"', "zeb*"):
            for to in (None, "shop/secret"):
                found = await web.search(probe, to=to, limit=500)
                assert all("secret only" not in h.text for h in found.hits), (probe, to)
        assert [h.text for h in (await web.search("zebra", sender="shop/api", to="shop/web")).hits] == [
            "zebra review for web"
        ]
        assert (await web.search("zebra", since=note.timestamp + 3600)).hits == ()
        with pytest.raises(TypeError):
            review.raw["text"] = "rewritten"  # type: ignore[index]
    async with Session("shop/secret", uri=hub.uri) as secret:
        assert [h.text for h in (await secret.search("launch")).hits] == ["zebra launch code for secret only"]


async def test_search_follows_pages_past_the_hubs_page_size_and_continues_from_a_cursor(hub: Hub) -> None:
    async with Session("shop/api", uri=hub.uri) as api:
        for i in range(205):
            await api.broadcast(f"tick {i}")
        everything = await api.search("tick", limit=1000)
        assert len(everything.hits) == 205 and not everything.has_more and everything.cursor is None
        assert [h.text for h in everything.hits[:2]] == ["tick 204", "tick 203"]
        first = await api.search("tick", limit=3)
        assert [h.text for h in first.hits] == ["tick 204", "tick 203", "tick 202"]
        assert first.has_more and first.cursor is not None
        second = await api.search("tick", limit=2, after=first.cursor)
        assert [h.text for h in second.hits] == ["tick 201", "tick 200"]


async def test_search_refusals_are_typed_and_the_session_stays_usable(hub_factory: HubFactory) -> None:
    hub = await hub_factory()
    async with Session("shop/api", uri=hub.uri) as api:
        await api.broadcast("a parser fix")
        with pytest.raises(Refused) as bad:
            await api.search('"unbalanced')
        assert bad.value.code == "BAD_QUERY"
        with pytest.raises(Refused) as empty:
            await api.search("  ")
        assert empty.value.code == "BAD_FIELD"
        with pytest.raises(Refused) as zero:
            await api.search("parser", limit=0)
        assert zero.value.code == "BAD_FIELD"
        assert [h.text for h in (await api.search("parser")).hits] == ["a parser fix"]
    memory = await hub_factory(db=":memory:", relay_log=None)
    async with Session("shop/api", uri=memory.uri) as api:
        with pytest.raises(Refused) as unavailable:
            await api.search("parser")
        assert unavailable.value.code == "SEARCH_UNAVAILABLE"


async def test_frames_streams_presence_and_chats_as_sent_until_stopped(hub: Hub) -> None:
    stop = asyncio.Event()
    async with Session("shop/mon", uri=hub.uri, announce=True) as mon:
        await mon.connect()
        async with Session("shop/api", uri=hub.uri, announce=True) as api:
            await api.connect()
            await api.broadcast("hello all")
        seen: list[tuple[object, ...]] = []
        async for frame in mon.frames(stop):
            if frame.get("type") == "presence_update" and frame.get("agent") == "shop/api":
                seen.append(("presence", frame.get("event")))
            elif frame.get("type") == "chat":
                seen.append(("chat", frame.get("sender"), frame.get("payload")))
            if ("chat", "shop/api", "hello all") in seen:
                stop.set()
        assert ("presence", "joined") in seen and seen[-1] == ("chat", "shop/api", "hello all")


def test_merge_pages_joins_the_listed_keys_and_keeps_the_first_pages_other_fields() -> None:
    from synapse_channel.api import merge_pages

    pages = [
        {"type": "board_snapshot", "board": {"version": 7, "tasks": [{"task_id": "A"}], "ready": ["A"]}},
        {"type": "board_snapshot", "board": {"version": 8, "tasks": [{"task_id": "B"}], "ready": []}},
    ]
    merged = merge_pages(pages, "board", "tasks", "ready")
    assert merged == {"version": 7, "tasks": [{"task_id": "A"}, {"task_id": "B"}], "ready": ["A"]}
    assert pages[0]["board"]["tasks"] == [{"task_id": "A"}]  # the pages are not changed


def test_an_anonymous_session_presents_no_token_whatever_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNAPSE_TOKEN", "configured-secret")
    assert Session("a", uri="ws://127.0.0.1:9").token == "configured-secret"
    assert Session("a", uri="ws://127.0.0.1:9", anonymous=True).token is None
