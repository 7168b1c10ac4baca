"""Full-text search on a PostgreSQL hub: the same verb, visibility, query syntax and paging as on SQLite.

In-process hubs on a fresh database of the session's throw-away cluster
(``pg_url``), real clients over loopback, the real CLI as a subprocess.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from synapse_channel.hub.server import Hub
from synapse_channel.pgsearch import to_tsquery
from synapse_channel.search import SearchError

from .conftest import HubFactory, run_cli
from .test_search import register, search, texts

pytestmark = pytest.mark.postgres


async def _fetch(url: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        return list(await con.fetch(query, *args))
    finally:
        await con.close()


async def _pg_hub(hub_factory: HubFactory, url: str, **extra: Any) -> Hub:
    return await hub_factory(database_url=url, **extra)


async def test_the_documented_query_syntax_finds_the_same_rows_as_fts5(pg_url: str, hub_factory: HubFactory) -> None:
    hub = await _pg_hub(hub_factory, pg_url)
    a = await register(hub.uri, "api/alice")
    await a.send("chat", "all", "the tokenizer drops unicode quotes")
    await a.send("chat", "all", "parsing tabs in the lexer")
    await a.send("chat", "all", "the parser broke on tabs")
    await a.send("chat", "all", "Café au lait for the zebra-42 team")
    await a.send("ledger_task", task_id="TOK-1", title="Tokenizer rewrite", description="handle unicode input")
    await a.expect("ledger_task_posted")
    await a.send("ledger_progress", task_id="TOK-1", payload="unicode table generated")
    await a.expect("ledger_progress_posted")
    reply = await search(a, "unicode")
    assert reply["type"] == "search_results" and reply["indexed_through"] >= 6
    assert [r["kind"] for r in reply["results"]] == ["note", "task", "chat"]
    note, task, chat = reply["results"]
    assert chat["from"] == "api/alice" and chat["to"] == "all" and "[unicode]" in chat["snippet"]
    assert task["task_id"] == "TOK-1" and task["status"] == "open" and note["text"] == "unicode table generated"
    assert [s["seq"] for s in reply["results"]] == sorted((s["seq"] for s in reply["results"]), reverse=True)
    assert reply["has_more"] is False and reply["cursor"] is None
    # whole tokens, not substrings: "tab" is no word here, "tabs" is
    assert await texts(a, "tab") == []
    assert await texts(a, "tabs") == ["the parser broke on tabs", "parsing tabs in the lexer"]
    assert await texts(a, "pars*") == ["the parser broke on tabs", "parsing tabs in the lexer"]
    assert await texts(a, "tokeni*") == [
        "Tokenizer rewrite\nhandle unicode input",
        "the tokenizer drops unicode quotes",
    ]
    assert await texts(a, '"drops unicode"') == ["the tokenizer drops unicode quotes"]
    assert await texts(a, '"unicode drops"') == []
    assert await texts(a, "parser AND tabs") == ["the parser broke on tabs"]
    assert await texts(a, "parser tabs") == ["the parser broke on tabs"]  # implicit AND
    assert await texts(a, "lexer OR parser") == ["the parser broke on tabs", "parsing tabs in the lexer"]
    assert await texts(a, "tabs NOT lexer") == ["the parser broke on tabs"]
    assert await texts(a, "(lexer OR quotes) AND the") == [
        "parsing tabs in the lexer",
        "the tokenizer drops unicode quotes",
    ]
    assert await texts(a, "cafe") == ["Café au lait for the zebra-42 team"]  # case and diacritics folded
    assert await texts(a, "CAFÉ") == ["Café au lait for the zebra-42 team"]
    assert await texts(a, '"zebra-42"') == ["Café au lait for the zebra-42 team"]
    assert await texts(a, "nothingmatchesthis") == []
    assert await texts(a, '""') == []
    assert await texts(a, "unicode", **{"from": "api/bob"}) == []
    for bad in ("still AND (", '"unterminated', "nosuchcolumn:still", "NOT tabs", "tabs AND", "zebra-42", "NEAR(a b)"):
        reply = await search(a, bad)
        assert reply["type"] == "error" and reply["code"] == "BAD_QUERY", (bad, reply)
        assert reply["payload"].startswith("bad search query: ") and reply["request_type"] == "search_request"
    assert await texts(a, "tabs") != []  # the socket still answers
    assert hub.internal_errors == 0


def test_the_translation_keeps_fts5_precedence() -> None:
    """NOT binds tighter than AND, AND tighter than OR; a term that has no tokens matches nothing."""
    assert to_tsquery("a b OR c") == "(('a' & 'b') | 'c')"
    assert to_tsquery("a OR b NOT c") == "('a' | ('b' & !'c'))"
    assert to_tsquery('"foo bar"*') == "('foo' <-> 'bar':*)"
    assert to_tsquery('foo OR ""') == "'foo'"
    assert to_tsquery('foo ""') is None
    with pytest.raises(SearchError):
        to_tsquery("a OR")


async def test_another_identitys_directed_mail_is_never_found(pg_url: str, hub_factory: HubFactory) -> None:
    """B cannot find A->C mail however it asks: filters, cursors, prefixes, phrases, operators."""
    hub = await _pg_hub(hub_factory, pg_url, allowed_roles=frozenset({"reviewer"}))
    a = await register(hub.uri, "api/alice")
    b = await register(hub.uri, "api/bob", roles=["reviewer"])
    await a.send("chat", "api/carol", "launch code zebra-42 for carol only")
    await a.send("chat", "api/bob", "zebra review for bob")
    await a.send("chat", "reviewer", "zebra for every reviewer")
    await a.send("chat", "all", "zebra crossing news")
    await a.sync()
    probes: list[dict[str, Any]] = [{}, {"from": "api/alice"}, {"to": "api/carol"}, {"after": 10**6}, {"limit": 200}]
    for query in ("zebra", "zeb*", "carol", "launch OR zebra", '"launch code"', "zebra NOT bob", "(carol)"):
        for extra in probes:
            reply = await search(b, query, **extra)
            assert reply["type"] == "search_results", (query, extra, reply)
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


async def test_pages_follow_the_cursor_and_survive_a_restart(pg_url: str, hub_factory: HubFactory) -> None:
    hub = await _pg_hub(hub_factory, pg_url)
    a = await register(hub.uri, "api/alice")
    for i in range(5):
        await a.send("chat", "all", f"lynx {i}")
    first = await search(a, "lynx", limit=2)
    assert [r["text"] for r in first["results"]] == ["lynx 4", "lynx 3"] and first["has_more"] is True
    rest = await search(a, "lynx", limit=3, after=first["cursor"])
    assert [r["text"] for r in rest["results"]] == ["lynx 2", "lynx 1", "lynx 0"] and rest["has_more"] is False
    assert hub.indexer is not None and hub.indexer.indexed == 5
    await a.close()
    await hub.stop()
    mark = await _fetch(pg_url, "SELECT value FROM meta WHERE key = 'search_indexed_through'")
    assert int(mark[0]["value"]) >= first["results"][0]["seq"]

    again = await _pg_hub(hub_factory, pg_url)
    b = await register(again.uri, "api/bob")
    assert len(await texts(b, "lynx")) == 5
    assert again.indexer is not None and again.indexer.indexed == 0, "nothing below the watermark is indexed again"
    await b.send("chat", "all", "lynx later")
    assert (await texts(b, "lynx"))[0] == "lynx later"
    for i in range(70):  # more hits than the first chunk the backend reads (64)
        await b.send("chat", "all", f"lynx burst {i}")
    found = await texts(b, "lynx", limit=200)
    assert len(found) == 76 and found[0] == "lynx burst 69" and found[-1] == "lynx 0"


async def test_compaction_removes_dropped_chats_from_results_and_the_side_table(
    pg_url: str, hub_factory: HubFactory
) -> None:
    hub = await _pg_hub(hub_factory, pg_url, snapshot_every=20, retain_days=0)
    a = await register(hub.uri, "api/alice")
    for i in range(10):
        await a.send("chat", "all", f"ocelot broadcast {i}")
    kept = await a.chat_seq("api/offline", "ocelot unacked mail")  # unacked: compaction keeps it
    assert len(await texts(a, "ocelot")) == 11  # all indexed before any compaction
    await a.send("ledger_task", task_id="T", title="filler")  # its updates take the journal past a snapshot
    for i in range(25):
        await a.send("ledger_task_update", task_id="T", description=f"filler {i}")
    await a.sync()
    assert hub.compactor is not None
    await hub.compactor.compact_now()
    chats = await _fetch(pg_url, "SELECT seq FROM events WHERE kind = 'chat'")
    assert [r["seq"] for r in chats] == [kept], "the broadcasts should be compacted away"
    reply = await search(a, "ocelot")
    assert [r["seq"] for r in reply["results"]] == [kept]
    docs = await _fetch(pg_url, "SELECT seq FROM search_docs WHERE tsv @@ 'ocelot'::tsquery")
    assert [r["seq"] for r in docs] == [kept], "the side table holds no rows for dropped events"


async def test_cli_search_against_a_postgres_hub(pg_url: str, hub_factory: HubFactory) -> None:
    hub = await _pg_hub(hub_factory, pg_url)
    a = await register(hub.uri, "api/alice")
    await a.send("chat", "all", "the parser broke on tabs")
    await a.send("chat", "api/carol", "parser secret for carol")
    await a.send("ledger_task", task_id="P-1", title="Parser tabs")
    await a.expect("ledger_task_posted")
    base = ("--uri", hub.uri, "--name", "api/bob")
    code, out, err = await run_cli("search", "pars*", "--json", *base)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in rows] == ["task", "chat"] and rows[1]["text"] == "the parser broke on tabs"
    code, out, err = await run_cli("search", "parser", *base)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "api/alice -> all (chat): the [parser]" in lines[1] and "(task P-1)" in lines[0]
    code, out, err = await run_cli("search", "parser AND (", *base)
    assert code == 1 and "bad search query" in err + out and "Traceback" not in err
    code, out, _ = await run_cli("search", "parser AND (", "--json", *base)
    failure = json.loads(out)
    assert code == 1 and (failure["ok"], failure["outcome"], failure["code"]) == (False, "refused", "BAD_QUERY")


async def test_only_the_leader_indexes_and_a_new_leader_carries_on_from_the_watermark(
    pg_url: str, hub_factory: HubFactory
) -> None:
    import asyncio

    leader = await _pg_hub(hub_factory, pg_url)
    a = await register(leader.uri, "api/alice")
    for i in range(8):
        await a.send("chat", "all", f"heron {i}")
    assert len(await texts(a, "heron")) == 8
    standby = await _pg_hub(hub_factory, pg_url)
    assert standby.role == "standby" and standby.searcher is None and standby.indexer is None
    await a.close()
    await leader.stop()
    async with asyncio.timeout(30):
        while standby.role != "leader":
            await asyncio.sleep(0.05)
    assert standby.searcher is not None and standby.indexer is not None
    b = await register(standby.uri, "api/bob")
    await b.send("chat", "all", "heron after the takeover")
    found = await texts(b, "heron")
    assert found[0] == "heron after the takeover" and len(found) == 9
    assert standby.indexer.indexed == 1, "what the old leader indexed is not indexed again"
