"""The human attention queue: ask-human end to end, who may answer, restarts and compaction keep open questions."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.api import Forbidden, Question, Refused, Session, Timeout
from synapse_channel.hub.server import Hub
from synapse_channel.seats import SeatStore

from .conftest import SYNAPSE, TIMEOUT, HubFactory, finish, run_cli, start_cli, start_waiter


async def listed(uri: str, *args: str) -> list[dict[str, Any]]:
    code, out, err = await run_cli("attention", "list", "--json", "--uri", uri, *args)
    assert code == 0, err
    questions: list[dict[str, Any]] = json.loads(out)
    return questions


async def until_listed(uri: str, n: int = 1) -> list[dict[str, Any]]:
    """Poll `attention list` until ``n`` questions are open (the asker runs in another process)."""
    async with asyncio.timeout(TIMEOUT):
        while len(found := await listed(uri)) < n:
            await asyncio.sleep(0.05)
    return found


async def test_ask_human_end_to_end_wakes_the_asker_and_its_wait(hub: Hub) -> None:
    waiter = await start_waiter(hub.uri, "--name", "api/claude-1", "--timeout", str(TIMEOUT))
    asker = await start_cli(
        "ask-human", "Deploy to prod now?", "--choices", "yes,no", "--name", "api/claude-1", "--uri", hub.uri
    )
    (question,) = await until_listed(hub.uri)
    assert (question["id"], question["asker"], question["choices"], question["status"]) == (
        "q-1",
        "api/claude-1",
        ["yes", "no"],
        "open",
    )
    code, _, err = await run_cli("attention", "answer", "q-1", "maybe", "--name", "ops/alice", "--uri", hub.uri)
    assert code == 1 and "one of: yes, no" in err and err.count("\n") == 1, err
    code, _, err = await run_cli("attention", "answer", "q-1", "yes", "--name", "api/claude-1", "--uri", hub.uri)
    assert code == 1 and "its own question" in err, err
    code, out, err = await run_cli("attention", "answer", "q-1", "yes", "--name", "ops/alice", "--uri", hub.uri)
    assert code == 0 and out.startswith("answered q-1 for api/claude-1: yes"), err

    code, out, err = await finish(asker)
    assert (code, out) == (0, "yes\n"), err
    code, out, err = await finish(waiter)
    assert code == 0 and "answer to q-1" in out and out.rstrip().endswith(": yes"), (out, err)
    assert await listed(hub.uri) == []
    (closed,) = await listed(hub.uri, "--all")
    assert (closed["status"], closed["answer"], closed["answered_by"]) == ("answered", "yes", "ops/alice")
    code, out, _ = await run_cli("attention", "answer", "q-1", "no", "--name", "ops/alice", "--uri", hub.uri)
    assert code == 1


async def test_answer_reaches_the_mailbox_of_an_offline_asker(hub: Hub) -> None:
    async with Session("api/bot", uri=hub.uri) as bot:
        filed = await bot.file_question("Which database?")
    async with Session("ops/alice", uri=hub.uri) as alice:
        done = await alice.answer(filed.id, "postgres")
    assert done.status == "answered" and done.answer == "postgres"
    code, out, err = await run_cli("wait", "--name", "api/bot", "--timeout", "5", "--uri", hub.uri)
    assert code == 0 and "postgres" in out, err


async def test_ask_human_times_out_with_exit_2_and_can_expire_the_question(hub: Hub) -> None:
    base = ("--name", "api/slow", "--uri", hub.uri, "--timeout", "0.3")
    code, out, err = await run_cli("ask-human", "still there?", *base)
    assert (code, out) == (2, "") and "still open" in err and err.count("\n") == 1, err
    assert [q["status"] for q in await listed(hub.uri)] == ["open"]
    code, _, err = await run_cli("ask-human", "and now?", *base, "--cancel-on-timeout")
    assert code == 2 and "expired" in err, err
    statuses = {q["question"]: q["status"] for q in await listed(hub.uri, "--all")}
    assert statuses == {"still there?": "open", "and now?": "expired"}


async def test_json_outcomes_of_ask_answer_and_cancel(hub: Hub) -> None:
    base = ("--name", "api/js", "--uri", hub.uri, "--timeout", "0.3", "--json")
    code, out, _ = await run_cli("ask-human", "json?", *base)
    timed_out = json.loads(out)
    assert code == 2 and (timed_out["ok"], timed_out["outcome"], timed_out["open"]) == (False, "timeout", True)
    qid = timed_out["id"]
    code, out, _ = await run_cli("attention", "answer", qid, "yes", "--name", "ops/h", "--uri", hub.uri, "--json")
    answered = json.loads(out)
    assert code == 0 and (answered["ok"], answered["outcome"], answered["question"]["id"]) == (True, "answered", qid)
    code, out, _ = await run_cli("attention", "cancel", qid, "--name", "ops/h", "--uri", hub.uri, "--json")
    refused = json.loads(out)
    assert code == 1 and (refused["ok"], refused["outcome"]) == (False, "refused") and refused["error"]


async def test_bad_ask_human_input_is_one_line(hub: Hub) -> None:
    for args in (["q?"], ["q?", "--name", "api/a", "--timeout", "0"], ["q?", "--name", "api/a", "--choices", " , "]):
        code, _, err = await run_cli("ask-human", *args, "--uri", hub.uri)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (args, err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_open_question_survives_a_restart_and_the_asker_rides_it_out(hub_factory: HubFactory) -> None:
    port = _free_port()
    hub = await hub_factory(port=port)
    asker = Session("api/claude-2", uri=hub.uri)
    filed = await asker.file_question("Merge the migration?", choices=["merge", "wait"])
    waiting = asyncio.create_task(asker.await_answer(filed.id, timeout=TIMEOUT))
    await asyncio.sleep(0.2)  # let the asker settle into its wait (it must survive the restart either way)
    await hub.stop()

    again = await hub_factory(port=port)
    async with Session("ops/carol", uri=again.uri) as carol:
        (still,) = await carol.attention()
        assert (still.id, still.status, still.choices) == (filed.id, "open", ("merge", "wait"))
        await carol.answer(filed.id, "merge")
    done = await waiting
    assert (done.status, done.answer, done.answered_by) == ("answered", "merge", "ops/carol")
    await asker.close()
    async with Session("api/claude-2", uri=again.uri) as asker_again:
        nxt = await asker_again.file_question("next one")
    assert nxt.id == "q-2"  # ids are not reused after a restart


async def test_api_timeout_leaves_or_expires_the_question(hub: Hub) -> None:
    async with Session("api/bot", uri=hub.uri) as bot:
        with pytest.raises(Timeout):
            await bot.ask_human("anyone?", timeout=0.2)
        with pytest.raises(Timeout):
            await bot.ask_human("anyone at all?", timeout=0.2, cancel_on_timeout=True)
        statuses = [(q.text, q.status) for q in await bot.attention(status="all")]
        assert statuses == [("anyone?", "open"), ("anyone at all?", "expired")]
        with pytest.raises(Refused) as unknown:
            await bot.question("q-99")
        assert unknown.value.code == "UNKNOWN_QUESTION"


async def test_who_may_answer_on_a_seated_hub(hub_factory: HubFactory, tmp_path: Path) -> None:
    with SeatStore(tmp_path / "hub.db") as store:
        secret = {
            "api/agent": store.add("api/agent", "agent"),
            "shop/web": store.add("shop/web", "agent"),
            "ops/watch": store.add("ops/watch", "observer"),
            "human/ana": store.add("human/ana", "agent"),
            "ops/boss": store.add("ops/boss", "admin"),
        }
    hub = await hub_factory()

    def session(name: str) -> Session:
        return Session(name, uri=hub.uri, token=secret[name])

    async with session("api/agent") as agent:
        first = await agent.file_question("Rotate the keys?")
        second = await agent.file_question("And the certs?")
        with pytest.raises(Forbidden):
            await agent.answer(first.id, "yes")  # not its own question
    async with session("ops/watch") as watch:
        assert [q.id for q in await watch.attention()] == [first.id, second.id]  # an observer reads
        with pytest.raises(Forbidden):
            await watch.answer(first.id, "yes")
    async with session("shop/web") as web:
        with pytest.raises(Forbidden) as refused:
            await web.answer(first.id, "yes")
        assert "human" in str(refused.value)
    async with session("human/ana") as ana:
        assert (await ana.answer(first.id, "yes")).answered_by == "human/ana"
    async with session("ops/boss") as boss:
        assert (await boss.answer(second.id, "no")).answered_by == "ops/boss"

    env = {"SYNAPSE_TOKEN": secret["ops/watch"]}
    async with session("api/agent") as agent:
        third = await agent.file_question("Ship on Friday?")
    code, _, err = await run_cli(
        "attention", "answer", third.id, "no", "--name", "ops/watch", "--uri", hub.uri, env=env
    )
    assert code == 1 and "observer" in err and err.count("\n") == 1, err
    kinds = [k for (k,) in _rows(tmp_path / "hub.db", "SELECT kind FROM events WHERE kind = 'access_denied'")]
    assert len(kinds) == 4


def _rows(db: Path, query: str) -> list[Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


async def test_compaction_keeps_open_questions_and_ages_closed_ones(hub_factory: HubFactory, tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    hub = await hub_factory(snapshot_every=5, retain_days=0)
    async with Session("api/bot", uri=hub.uri) as bot, Session("ops/alice", uri=hub.uri) as alice:
        keep = await bot.file_question("keep me")
        gone = await bot.file_question("answer me")
        await alice.answer(gone.id, "done")
        for i in range(10):
            await bot.broadcast(f"filler {i}")  # past snapshot_every: the questions are covered by a snapshot
    await hub.stop()

    again = await hub_factory(snapshot_every=5, retain_days=0)
    assert again.compactor is not None
    report = await again.compactor.compact_now()
    assert report is not None and report.deleted > 0
    kept = [json.loads(d)["question"] for (d,) in _rows(db, "SELECT data FROM events WHERE kind = 'attention'")]
    assert [(q["id"], q["status"]) for q in kept] == [(keep.id, "open")]
    await again.stop()

    third = await hub_factory(snapshot_every=5, retain_days=0)
    async with Session("ops/alice", uri=third.uri) as alice:
        assert [q.id for q in await alice.attention()] == [keep.id]
        assert isinstance(await alice.question(gone.id), Question)  # closed ones stay listable from the snapshot


def _hub_process(db: Path) -> tuple[subprocess.Popen[str], str]:
    """`synapse hub` on a free port in its own process; returns it and its URI."""
    proc = subprocess.Popen(
        [SYNAPSE, "hub", "--port", "0", "--db", str(db), "--relay-log", ""],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            proc.stderr.close()
            return proc, line.split("listening on ", 1)[1].split()[0]
    raise AssertionError(f"hub did not start (rc={proc.wait()})")


async def test_an_open_question_survives_a_hub_killed_without_a_snapshot(tmp_path: Path) -> None:
    """SIGKILL: no final snapshot, so the question comes back from the journal's events alone."""
    db = tmp_path / "hub.db"
    proc, uri = _hub_process(db)
    try:
        code, _, err = await run_cli("ask-human", "Rewrite it?", "--name", "api/x", "--uri", uri, "--timeout", "0.2")
        assert code == 2, err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _rows(db, "SELECT COUNT(*) FROM snapshots") == [(0,)]
    proc, uri = _hub_process(db)
    try:
        (question,) = await listed(uri)
        assert (question["id"], question["asker"], question["status"]) == ("q-1", "api/x", "open")
        code, out, err = await run_cli("attention", "answer", "q-1", "no", "--name", "human/ana", "--uri", uri)
        assert code == 0, err
        code, out, err = await run_cli("wait", "--name", "api/x", "--timeout", "5", "--uri", uri)
        assert code == 0 and out.rstrip().endswith(": no"), err
    finally:
        proc.terminate()
        proc.wait()
