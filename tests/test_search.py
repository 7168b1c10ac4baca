"""Full-text search: the FTS5 index in the journal, ``search_request`` over the wire, ``synapse search``.

Real hubs on loopback, real databases in tmp, the real CLI as a subprocess.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from synapse_channel.hub.server import Hub
from synapse_channel.seats import SeatStore

from .conftest import HubFactory, Raw, open_raw, run_cli


async def register(uri: str, name: str, **reg: Any) -> Raw:
    client = await open_raw(uri, name)
    await client.send("heartbeat", payload="online", protocol_version=7, **reg)
    await client.expect("welcome")
    return client


async def search(c: Raw, query: Any, **fields: Any) -> dict[str, Any]:
    """One ``search_request``; the ``search_results`` or ``error`` that answers it."""
    await c.send("search_request", query=query, **fields)
    while True:
        frame = await c.recv()
        if frame.get("type") in ("search_results", "error"):
            return frame


async def texts(c: Raw, query: str, **fields: Any) -> list[str]:
    reply = await search(c, query, **fields)
    assert reply["type"] == "search_results", reply
    return [r["text"] for r in reply["results"]]


def _db_rows(db: Path, sql: str) -> list[Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_chats_tasks_and_notes_are_found_newest_first_with_their_fields(hub: Hub) -> None:
    a = await register(hub.uri, "api/alice")
    await a.send("chat", "all", "the tokenizer drops unicode quotes")
    await a.send("ledger_task", task_id="TOK-1", title="Tokenizer rewrite", description="handle unicode input")
    await a.expect("ledger_task_posted")
    await a.send("ledger_task_update", task_id="TOK-1", status="in_progress")
    await a.expect("ledger_task_updated")
    await a.send("ledger_progress", task_id="TOK-1", payload="unicode table generated")
    await a.expect("ledger_progress_posted")
    reply = await search(a, "unicode")
    kinds = [(r["kind"], r["seq"]) for r in reply["results"]]
    assert [k for k, _ in kinds] == ["note", "task", "task", "chat"]
    assert [s for _, s in kinds] == sorted((s for _, s in kinds), reverse=True)
    note, updated, declared, chat = reply["results"]
    assert chat["from"] == "api/alice" and chat["to"] == "all" and "[unicode]" in chat["snippet"]
    assert chat["text"] == "the tokenizer drops unicode quotes" and chat["ts"] > 0
    assert declared["task_id"] == "TOK-1" and declared["status"] == "open" and updated["status"] == "in_progress"
    assert note["text"] == "unicode table generated" and note["from"] == "api/alice"
    assert reply["has_more"] is False and reply["cursor"] is None
    assert await texts(a, "tokeni*") == [
        "Tokenizer rewrite\nhandle unicode input",
        "Tokenizer rewrite\nhandle unicode input",
        "the tokenizer drops unicode quotes",
    ]
    assert await texts(a, '"drops unicode"') == ["the tokenizer drops unicode quotes"]
    assert await texts(a, "nothingmatchesthis") == []
    assert await texts(a, "unicode", **{"from": "api/bob"}) == []
    assert len(await texts(a, "unicode", since=reply["results"][0]["ts"])) == 1


async def test_another_identitys_directed_mail_is_never_found(hub_factory: HubFactory) -> None:
    """B cannot find A->C mail however it asks: filters, cursors, globs, prefixes, column syntax."""
    hub = await hub_factory(allowed_roles=frozenset({"reviewer"}))
    a = await register(hub.uri, "api/alice")
    b = await register(hub.uri, "api/bob", roles=["reviewer"])
    await a.send("chat", "api/carol", "launch code zebra-42 for carol only")
    await a.send("chat", "api/bob", "zebra review for bob")
    await a.send("chat", "reviewer", "zebra for every reviewer")
    await a.send("chat", "all", "zebra crossing news")
    await a.sync()
    probes: list[dict[str, Any]] = [
        {},
        {"from": "api/alice"},
        {"to": "api/carol"},
        {"after": 10**6},
        {"limit": 200},
        {"since": 0},
    ]
    for query in ("zebra", "zeb*", "carol", "body:zebra", "launch OR zebra", '"launch code"', "NOT bob AND zebra"):
        for extra in probes:
            reply = await search(b, query, **extra)
            if reply["type"] == "error":
                continue  # a query FTS5 refuses leaks nothing either
            for r in reply["results"]:
                assert "carol only" not in r["text"], (query, extra, r)
    assert sorted(await texts(b, "zebra")) == [
        "zebra crossing news",
        "zebra for every reviewer",
        "zebra review for bob",
    ]
    c = await register(hub.uri, "api/carol")
    assert await texts(c, "launch") == ["launch code zebra-42 for carol only"]
    assert len(await texts(a, "zebra")) == 4  # the sender sees what it sent
    # a one-shot ~tag connection of carol is carol
    c2 = await register(hub.uri, "api/carol~search-1")
    assert await texts(c2, "launch") == ["launch code zebra-42 for carol only"]


async def test_observer_sees_what_history_shows_it_and_admin_sees_all(hub_factory: HubFactory, tmp_path: Path) -> None:
    with SeatStore(tmp_path / "hub.db") as store:
        secrets = {
            "alice": store.add("alice", "agent"),
            "watcher": store.add("watcher", "observer"),
            "boss": store.add("boss", "admin"),
        }
    hub = await hub_factory()
    a = await register(hub.uri, "alice", token=secrets["alice"])
    await a.send("chat", "carol", "quartz private to carol")
    await a.send("chat", "watcher", "quartz note for the watcher")
    await a.send("chat", "all", "quartz for everyone")
    await a.sync()
    w = await register(hub.uri, "watcher", token=secrets["watcher"])
    assert sorted(await texts(w, "quartz")) == ["quartz for everyone", "quartz note for the watcher"]
    boss = await register(hub.uri, "boss", token=secrets["boss"])
    assert len(await texts(boss, "quartz")) == 3


async def test_bad_requests_get_an_error_frame_and_the_socket_stays_usable(hub: Hub) -> None:
    a = await register(hub.uri, "api/alice")
    await a.send("chat", "all", "still here")
    bad: list[tuple[Any, dict[str, Any], str]] = [
        ("still AND (", {}, "BAD_QUERY"),
        ('"unterminated', {}, "BAD_QUERY"),
        ("nosuchcolumn:still", {}, "BAD_QUERY"),
        ("", {}, "BAD_FIELD"),
        (5, {}, "BAD_FIELD"),
        ("still", {"limit": 0}, "BAD_FIELD"),
        ("still", {"limit": 10_000}, "BAD_FIELD"),
        ("still", {"limit": True}, "BAD_FIELD"),
        ("still", {"after": "x"}, "BAD_FIELD"),
        ("still", {"since": "yesterday"}, "BAD_FIELD"),
        ("still", {"from": ["a"]}, "BAD_FIELD"),
        ("x" * 1001, {}, "BAD_FIELD"),
    ]
    for query, extra, code in bad:
        reply = await search(a, query, **extra)
        assert reply["type"] == "error" and reply["code"] == code, (query, extra, reply)
        assert reply["target"] == "api/alice" and reply["request_type"] == "search_request"
        assert await texts(a, "still") == ["still here"]  # the same socket answers at once
    assert hub.internal_errors == 0


async def test_the_index_survives_a_restart_and_is_rebuilt_or_caught_up_when_missing(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    db = tmp_path / "hub.db"
    hub = await hub_factory()
    a = await register(hub.uri, "api/alice")
    for i in range(30):
        await a.send("chat", "all", f"walrus {i}")
    await a.sync()
    await a.close()
    await hub.stop()

    async def found() -> int:
        again = await hub_factory()
        c = await register(again.uri, "api/bob")
        n = len(await texts(c, "walrus", limit=200))
        await c.close()
        await again.stop()
        return n

    assert await found() == 30
    con = sqlite3.connect(db)  # a database from before the index: no index objects at all
    for statement in (
        "DROP TRIGGER search_events_ad",
        "DROP TABLE search_index",
        "DROP VIEW search_source",
        "DELETE FROM meta WHERE key IN ('search_version', 'search_indexed_through')",
    ):
        con.execute(statement)
    con.commit()
    con.close()
    assert await found() == 30
    con = sqlite3.connect(db)  # an index that fell behind the journal: emptied
    con.execute("INSERT INTO search_index(search_index) VALUES ('delete-all')")
    con.commit()
    con.close()
    assert _db_rows(db, "SELECT COUNT(*) FROM search_index_docsize") == [(0,)]
    assert await found() == 30
    assert _db_rows(db, "SELECT COUNT(*) FROM search_index_docsize") == [(30,)]
    con = sqlite3.connect(db)
    con.execute("INSERT INTO search_index(search_index, rank) VALUES ('integrity-check', 1)")  # raises if corrupt
    con.close()
    # a watermark ahead of the journal (a restored journal, a newer index): indexed again from the journal
    _exec(db, "UPDATE meta SET value = '1000000' WHERE key = 'search_indexed_through'")
    assert await found() == 30
    assert _watermark(db) < 1000000
    _integrity(db)
    # the index an insert trigger kept complete (version 2) is kept: the watermark moves to the journal's end
    _exec(
        db,
        "UPDATE meta SET value = '2' WHERE key = 'search_version'",
        "CREATE TRIGGER search_events_ai AFTER INSERT ON events WHEN 0 BEGIN SELECT 1; END",
    )
    upgraded = await hub_factory()
    c = await register(upgraded.uri, "api/carol")
    assert len(await texts(c, "walrus", limit=200)) == 30
    assert upgraded.indexer is not None and upgraded.indexer.indexed == 0
    await c.close()
    await upgraded.stop()
    assert _db_rows(db, "SELECT name FROM sqlite_master WHERE name = 'search_events_ai'") == []
    _integrity(db)


async def test_compaction_removes_dropped_chats_from_the_index(hub_factory: HubFactory, tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    hub = await hub_factory(snapshot_every=20, retain_days=0)
    a = await register(hub.uri, "api/alice")
    for i in range(10):
        await a.send("chat", "all", f"ocelot broadcast {i}")
    kept = await a.chat_seq("api/offline", "ocelot unacked mail")  # unacked: compaction keeps it
    await a.send("ledger_task", task_id="T", title="filler")  # its updates take the journal past a snapshot
    for i in range(25):
        await a.send("ledger_task_update", task_id="T", description=f"filler {i}")
    await a.sync()
    assert hub.compactor is not None
    await hub.compactor.compact_now()
    gone = _db_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'chat'")
    assert gone == [(1,)], "the broadcasts should be compacted away"
    reply = await search(a, "ocelot")
    assert [r["seq"] for r in reply["results"]] == [kept]
    # the index holds no rows for dropped events (not merely filtered out by the join)
    indexed = _db_rows(db, "SELECT rowid FROM search_index WHERE search_index MATCH 'ocelot'")
    assert indexed == [(kept,)]
    con = sqlite3.connect(db)
    con.execute("INSERT INTO search_index(search_index, rank) VALUES ('integrity-check', 1)")
    con.close()


async def test_offline_db_compact_drops_index_rows_too(hub_factory: HubFactory, tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    hub = await hub_factory(compaction=False)
    a = await register(hub.uri, "api/alice")
    for i in range(5):
        await a.send("chat", "all", f"heron {i}")
    await a.sync()
    await a.close()
    await hub.stop()
    code, _, err = await run_cli("db", "compact", "--db", str(db), "--retain-days", "0")
    assert code == 0, err
    assert _db_rows(db, "SELECT rowid FROM search_index WHERE search_index MATCH 'heron'") == []
    again = await hub_factory(compaction=False)
    b = await register(again.uri, "api/bob")
    assert await texts(b, "heron") == []


async def test_results_are_paged_by_bytes_under_a_tiny_frame_budget(hub_factory: HubFactory) -> None:
    budget = 16 * 1024
    hub = await hub_factory(max_frame_bytes=budget, max_queue_bytes=4 * budget)
    a = await register(hub.uri, "api/alice")
    for i in range(40):
        await a.send("chat", "all", f"gecko {i} " + "x" * 1500)
    await a.sync()
    seen: list[int] = []
    after: int | None = None
    pages = 0
    while True:
        extra = {"after": after} if after is not None else {}
        await a.send("search_request", query="gecko", limit=200, **extra)
        data = await a.ws.recv()
        assert len(data.encode() if isinstance(data, str) else data) <= budget
        reply = json.loads(data)
        assert reply["type"] == "search_results", reply
        pages += 1
        seen += [r["seq"] for r in reply["results"]]
        if not reply["has_more"]:
            assert reply["cursor"] is None
            break
        assert reply["cursor"] == reply["results"][-1]["seq"]
        after = reply["cursor"]
    assert pages > 2
    assert len(seen) == 40 and seen == sorted(set(seen), reverse=True)


async def test_limit_cuts_with_has_more(hub: Hub) -> None:
    a = await register(hub.uri, "api/alice")
    for i in range(5):
        await a.send("chat", "all", f"lynx {i}")
    first = await search(a, "lynx", limit=2)
    assert [r["text"] for r in first["results"]] == ["lynx 4", "lynx 3"] and first["has_more"] is True
    rest = await search(a, "lynx", limit=3, after=first["cursor"])
    assert [r["text"] for r in rest["results"]] == ["lynx 2", "lynx 1", "lynx 0"] and rest["has_more"] is False


async def test_in_memory_hub_says_search_is_unavailable(hub_factory: HubFactory) -> None:
    hub = await hub_factory(db=None)
    a = await register(hub.uri, "api/alice")
    reply = await search(a, "anything")
    assert reply["type"] == "error" and reply["code"] == "SEARCH_UNAVAILABLE"
    await a.sync()


async def test_cli_search_json_human_and_errors(hub: Hub) -> None:
    a = await register(hub.uri, "api/alice")
    await a.send("chat", "all", "the parser\x1b[31m broke on tabs")
    await a.send("chat", "api/carol", "parser secret for carol")
    await a.send("ledger_task", task_id="P-1", title="Parser tabs")
    await a.expect("ledger_task_posted")
    base = ("--uri", hub.uri, "--name", "api/bob")
    code, out, err = await run_cli("search", "parser", "--json", *base)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in rows] == ["task", "chat"] and rows[1]["text"].startswith("the parser")
    assert {"seq", "ts", "from", "to", "text", "kind"} <= set(rows[0])
    code, out, err = await run_cli("search", "parser", *base)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "api/alice -> all (chat): the [parser]" in lines[1] and "\x1b" not in out
    assert "(task P-1)" in lines[0]
    code, out, _ = await run_cli("search", "parser", "--from", "api/alice", "--to", "all", "--limit", "1", *base)
    assert code == 0 and len(out.splitlines()) == 1 and "-> all" in out
    code, out, _ = await run_cli("search", "parser", "--since", "1h", *base)
    assert code == 0 and len(out.splitlines()) == 2
    code, out, _ = await run_cli("search", "parser", "--since", "2000-01-01T00:00", "--to", "nobody", *base)
    assert code == 0 and out.strip() == "no matches"
    code, out, err = await run_cli("search", "parser AND (", *base)
    assert code == 1 and "bad search query" in err + out and "Traceback" not in err
    code, _, err = await run_cli("search", "parser", "--since", "last tuesday", *base)
    assert code == 2 and "--since" in err and "Traceback" not in err
    code, _, err = await run_cli("search", "parser", "--uri", "ws://127.0.0.1:1", "--name", "api/bob")
    assert code == 1 and "Traceback" not in err
    # --json: a failure is one JSON object too (ok false, the outcome, the hub's code)
    code, out, _ = await run_cli("search", "parser AND (", "--json", *base)
    failure = json.loads(out)
    assert code == 1 and (failure["ok"], failure["outcome"], failure["code"]) == (False, "refused", "BAD_QUERY")
    code, out, _ = await run_cli("search", "parser", "--json", "--uri", "ws://127.0.0.1:1", "--name", "api/bob")
    assert code == 1 and (json.loads(out)["ok"], json.loads(out)["outcome"]) == (False, "unreachable")


async def test_cli_follows_pages_up_to_the_limit(hub_factory: HubFactory) -> None:
    budget = 16 * 1024
    hub = await hub_factory(max_frame_bytes=budget, max_queue_bytes=4 * budget)
    a = await register(hub.uri, "api/alice")
    for i in range(30):
        await a.send("chat", "all", f"ibis {i} " + "y" * 1500)
    await a.sync()
    code, out, err = await run_cli("search", "ibis", "--json", "--limit", "25", "--uri", hub.uri, "--name", "b")
    assert code == 0, err
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert len(seqs) == 25 and seqs == sorted(set(seqs), reverse=True)


#: Makes the indexer's every batch fail (it cannot move the watermark) while the journal commits on.
HOLD_INDEXER = (
    "CREATE TRIGGER test_hold_indexer BEFORE INSERT ON meta WHEN new.key = 'search_indexed_through' "
    "BEGIN SELECT RAISE(ABORT, 'indexer held by the test'); END"
)


def _exec(db: Path, *statements: str) -> None:
    con = sqlite3.connect(db)
    try:
        for statement in statements:
            con.execute(statement)
        con.commit()
    finally:
        con.close()


def _integrity(db: Path, content: int = 1) -> None:
    """Raises if the index is corrupt; ``content=1`` also compares it with the journal (nothing left to index)."""
    _exec(db, f"INSERT INTO search_index(search_index, rank) VALUES ('integrity-check', {content})")


def _watermark(db: Path) -> int:
    return int(_db_rows(db, "SELECT value FROM meta WHERE key = 'search_indexed_through'")[0][0])


async def test_a_search_right_after_a_burst_waits_for_the_indexer_and_finds_every_chat(hub: Hub) -> None:
    """Chats are indexed after their commit; a search sent right behind them still finds them all."""
    assert hub.indexer is not None
    hub.indexer.batch_rows = 10  # many small batches: the indexer is still behind when the search arrives
    a = await register(hub.uri, "api/alice")
    n = 200
    for i in range(n):
        await a.send("chat", "all", f"kestrel burst {i}")
    reply = await search(a, "kestrel", limit=200)  # no sync: the search is the next frame after the burst
    assert reply["type"] == "search_results", reply
    assert sorted(r["text"] for r in reply["results"]) == sorted(f"kestrel burst {i}" for i in range(n))
    assert reply["indexed_through"] >= max(r["seq"] for r in reply["results"])
    assert hub.indexer.batches > 1


async def test_the_watermark_persists_and_a_restart_indexes_only_the_rest(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    db = tmp_path / "hub.db"
    hub = await hub_factory()
    a = await register(hub.uri, "api/alice")
    for i in range(30):
        await a.send("chat", "all", f"puffin {i}")
    assert len(await texts(a, "puffin", limit=200)) == 30
    assert hub.indexer is not None and hub.indexer.indexed == 30
    await a.close()
    await hub.stop()
    mark = _watermark(db)
    assert mark == _db_rows(db, "SELECT MAX(seq) FROM events")[0][0] or mark >= 30

    again = await hub_factory()
    b = await register(again.uri, "api/bob")
    assert len(await texts(b, "puffin", limit=200)) == 30
    assert again.indexer is not None and again.indexer.indexed == 0, "nothing below the watermark is indexed again"
    for i in range(12):
        await b.send("chat", "all", f"puffin later {i}")
    assert len(await texts(b, "puffin", limit=200)) == 42
    assert again.indexer.indexed == 12
    await b.close()
    await again.stop()
    assert _watermark(db) > mark
    _integrity(db)


async def test_compaction_of_rows_not_yet_indexed_leaves_the_index_exact(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    """The delete trigger skips rows above the watermark (an FTS5 delete of an unindexed row would corrupt it)."""
    db = tmp_path / "hub.db"
    hub = await hub_factory(snapshot_every=20, retain_days=0)
    a = await register(hub.uri, "api/alice")
    await a.send("chat", "all", "gannet indexed before the hold")
    assert len(await texts(a, "gannet")) == 1
    _exec(db, HOLD_INDEXER)
    for i in range(10):
        await a.send("chat", "all", f"gannet held {i}")
    kept = await a.chat_seq("api/offline", "gannet unacked mail")
    await a.send("ledger_task", task_id="T", title="filler")
    for i in range(25):
        await a.send("ledger_task_update", task_id="T", description=f"filler {i}")
    await a.sync()
    assert hub.compactor is not None
    await hub.compactor.compact_now()
    assert _db_rows(db, "SELECT seq FROM events WHERE kind = 'chat'") == [(kept,)]
    _integrity(db, content=0)  # the compacted, never-indexed rows touched nothing in the index
    _exec(db, "DROP TRIGGER test_hold_indexer")
    reply = await search(a, "gannet")
    assert [r["seq"] for r in reply["results"]] == [kept]
    assert _db_rows(db, "SELECT rowid FROM search_index WHERE search_index MATCH 'gannet'") == [(kept,)]
    _integrity(db)


async def test_a_hub_killed_between_commit_and_indexing_indexes_the_rest_on_restart(
    hub_factory: HubFactory, tmp_path: Path
) -> None:
    from .hubproc import HubProcess

    db = tmp_path / "hub.db"
    proc = HubProcess(db, extra=("--no-compaction",))
    await proc.start()
    try:
        a = await register(proc.uri, "api/alice")
        await a.send("chat", "all", "osprey before")
        assert len(await texts(a, "osprey")) == 1
        await a.close()
    finally:
        assert await proc.stop() == 0
    before = _watermark(db)
    _exec(db, HOLD_INDEXER)  # the indexer of the next run never gets past `before`
    await proc.start()
    try:
        a = await register(proc.uri, "api/alice")
        seqs = [await a.chat_seq("all", f"osprey acked {i}") for i in range(20)]  # each receipt: committed
        reply = await search(a, "osprey", limit=200)
        assert reply["indexed_through"] == before and len(reply["results"]) == 1  # answered after the bounded wait
    finally:
        await proc.kill()
    assert [s for (s,) in _db_rows(db, "SELECT seq FROM events WHERE kind = 'chat' ORDER BY seq")][1:] == seqs
    assert _watermark(db) == before
    assert _db_rows(db, "SELECT COUNT(*) FROM search_index_docsize") == [(1,)]
    _exec(db, "DROP TRIGGER test_hold_indexer")
    hub = await hub_factory(compaction=False)
    b = await register(hub.uri, "api/bob")
    found = await search(b, "osprey", limit=200)
    assert sorted(r["seq"] for r in found["results"] if r["text"].startswith("osprey acked")) == seqs
    assert hub.indexer is not None and hub.indexer.indexed == 20
    _integrity(db)
