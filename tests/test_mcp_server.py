"""`synapse mcp serve` driven by the MCP SDK's own client, over stdio and streamable HTTP, against a real hub.

The server is the real console script in a subprocess; the hub is real (ephemeral loopback port, SQLite in
tmp). Without the ``mcp`` SDK these tests skip locally and fail under ``CI=true`` (the test extra installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, TIMEOUT, needs, read_line_containing, run_cli, start_cli

TOOLS = {"send", "inbox", "ack", "wait", "who", "claim", "release", "board", "task_update", "search"}
#: The budget the issue sets for what a model sees of our tools.
TOOLS_LIST_BUDGET = 8 * 1024


def sdk() -> Any:
    """The MCP SDK, or skip (fail under CI=true)."""
    try:
        import mcp
    except ImportError:
        mcp = None
    needs(mcp is not None, "the mcp SDK (pip install -e '.[test]')")
    return mcp


@asynccontextmanager
async def stdio(hub: Hub, name: str, cwd: Path | None = None, token: str | None = None) -> AsyncIterator[Any]:
    """An SDK client session with `synapse mcp serve --name NAME` over stdio (started in ``cwd``)."""
    mcp = sdk()
    env = {**os.environ, **({"SYNAPSE_TOKEN": token} if token else {})}
    params = mcp.StdioServerParameters(
        command=SYNAPSE, args=["mcp", "serve", "--uri", hub.uri, "--name", name], env=env, cwd=cwd
    )
    async with mcp.Client(params, read_timeout_seconds=TIMEOUT * 3) as client:
        yield client


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def call(client: Any, tool: str, **args: Any) -> tuple[bool, str]:
    result = await client.call_tool(tool, args)
    return bool(result.is_error), text(result)


async def test_tools_list_is_the_small_set_and_fits_the_budget(hub: Hub) -> None:
    async with stdio(hub, "proj/alice") as client:
        listed = await client.list_tools()
        resources = await client.list_resources()
    assert {t.name for t in listed.tools} == TOOLS
    size = len(json.dumps(listed.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert size < TOOLS_LIST_BUDGET, size
    assert all(t.description and t.input_schema["type"] == "object" for t in listed.tools)
    assert {str(r.uri) for r in resources.resources} == {"synapse://inbox", "synapse://board", "synapse://claims"}


async def test_a_message_sent_from_one_session_is_read_and_waited_for_in_another(hub: Hub) -> None:
    async with stdio(hub, "proj/alice") as alice, stdio(hub, "proj/bob") as bob:
        failed, said = await call(alice, "send", to="proj/bob", text="review T-1 please")
        assert not failed and ("queued" in said or "delivered" in said), said
        failed, said = await call(bob, "inbox")
        assert not failed and "proj/alice -> proj/bob: review T-1 please" in said, said
        seq = int(said.split()[0].lstrip("#"))
        failed, said = await call(bob, "ack", seq=seq)
        assert not failed and f"through seq {seq}" in said
        failed, said = await call(bob, "inbox")
        assert said == "no new messages", said
        inbox = await bob.read_resource("synapse://inbox")
        assert json.loads(inbox.contents[0].text)["messages"] == []

        waiting = asyncio.create_task(call(bob, "wait", timeout=TIMEOUT * 2))
        await asyncio.sleep(0.5)  # not a timing assertion: the wait also finds mail that came first
        failed, said = await call(alice, "send", to="proj/bob", text="ping")
        assert not failed, said
        failed, said = await asyncio.wait_for(waiting, TIMEOUT * 3)
        assert not failed and "proj/alice -> proj/bob: ping" in said, said


async def test_an_overlapping_claim_is_refused_with_the_holder_and_what_to_do(hub: Hub) -> None:
    async with stdio(hub, "proj/alice") as alice, stdio(hub, "proj/bob") as bob:
        failed, said = await call(alice, "claim", task="T-1", paths=["src/a.py"], ttl=600)
        assert not failed and said.startswith("claimed T-1") and "src/a.py" in said, said
        failed, said = await call(bob, "claim", task="T-2", paths=["src/"])
        assert failed, said
        assert "proj/alice holds T-1 over src/a.py until" in said and "UTC" in said, said
        assert 'send(to="proj/alice"' in said and "other paths" in said, said
        claims = json.loads((await bob.read_resource("synapse://claims")).contents[0].text)
        assert [(c["task_id"], c["owner"]) for c in claims] == [("T-1", "proj/alice")]
        failed, said = await call(alice, "release", task="T-1")
        assert not failed, said
        failed, said = await call(bob, "claim", task="T-2", paths=["src/"])
        assert not failed, said


async def test_on_a_seated_hub_each_server_acts_only_with_its_seat(hub_factory: Any, tmp_path: Path) -> None:
    from synapse_channel.seats import SeatStore

    with SeatStore(tmp_path / "hub.db") as store:
        alice, bob = store.add("proj/alice", "agent"), store.add("proj/bob", "agent")
    hub = await hub_factory()
    async with (
        stdio(hub, "proj/alice", token=alice) as as_alice,
        stdio(hub, "proj/bob", token=bob) as as_bob,
        stdio(hub, "proj/bob", token=alice) as impostor,
    ):
        failed, said = await call(as_alice, "send", to="proj/bob", text="seated hello")
        assert not failed, said
        failed, said = await call(impostor, "inbox")
        assert failed and "may not use that name" in said and "MCP config" in said, said
        failed, said = await call(as_bob, "inbox")
        assert not failed and "seated hello" in said, said


async def test_claims_made_here_and_from_the_cli_collide(hub: Hub, tmp_path: Path, monkeypatch: Any) -> None:
    """Both scope paths to the git top level, so an MCP claim and a `synapse claim` over one file conflict."""
    import subprocess

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    monkeypatch.chdir(repo / "src")
    code, _, err = await run_cli("claim", "--uri", hub.uri, "--name", "proj/bob", "T-7", "--paths", "a.py")
    assert code == 0, err
    async with stdio(hub, "proj/alice", cwd=repo) as alice:
        failed, said = await call(alice, "claim", task="T-8", paths=["src/"])
        assert failed and "proj/bob holds T-7 over src/a.py" in said, said
        failed, said = await call(alice, "claim", task="T-8", paths=["../outside"])
        assert failed and "outside the worktree" in said, said
        failed, said = await call(alice, "claim", task="T-8", paths=["docs/"])
        assert not failed and "over docs" in said, said


async def test_board_and_task_update_and_bad_arguments(hub: Hub) -> None:
    declare = ("task", "declare", "--uri", hub.uri, "--name", "proj/lead", "T-9", "--title", "Write docs")
    code, _, err = await run_cli(*declare)
    assert code == 0, err
    async with stdio(hub, "proj/alice") as alice:
        failed, said = await call(alice, "board")
        assert not failed and "T-9 [" in said and "Write docs" in said, said
        failed, said = await call(alice, "task_update", task="T-9", status="in_progress", note="started")
        assert not failed and "T-9 is now in_progress" in said and "note posted" in said, said
        failed, said = await call(alice, "task_update", task="T-9", status="done", version=0)
        assert failed and "board" in said, said  # a stale version: says to look at the board first
        failed, said = await call(alice, "ack", seq="x")
        assert failed and "seq must be an integer" in said, said
        failed, said = await call(alice, "send", to="proj/bob")
        assert failed and "text is required" in said, said


async def test_calls_made_together_take_turns_instead_of_refusing_each_other(hub: Hub) -> None:
    """The hub lets one connection hold a name; parallel tool calls of one agent must not collide on it."""
    async with stdio(hub, "proj/alice") as alice:
        results = await asyncio.gather(*(call(alice, "send", to="proj/bob", text=f"n{i}") for i in range(4)))
    assert all(not failed for failed, _ in results), results


async def test_an_unreachable_hub_is_a_tool_error_that_says_start_it(tmp_path: Path) -> None:
    mcp = sdk()
    params = mcp.StdioServerParameters(
        command=SYNAPSE, args=["mcp", "serve", "--uri", "ws://127.0.0.1:9", "--name", "a"], env=dict(os.environ)
    )
    async with mcp.Client(params, read_timeout_seconds=TIMEOUT * 3) as client:
        failed, said = await call(client, "who")
    assert failed and "synapse hub" in said, said


@asynccontextmanager
async def http_server(hub: Hub, *extra: str) -> AsyncIterator[str]:
    """`synapse mcp serve --http --port 0 ...` in the background; yields its URL."""
    proc = await start_cli("mcp", "serve", "--http", "--port", "0", "--uri", hub.uri, "--name", "proj/web", *extra)
    try:
        assert proc.stderr is not None
        line = await read_line_containing(proc.stderr, "MCP on ")
        yield line.split("MCP on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        await proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.feed_eof()


@asynccontextmanager
async def http_client(url: str, token: str | None) -> AsyncIterator[Any]:
    mcp = sdk()
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        mcp.Client(streamable_http_client(url, http_client=http), read_timeout_seconds=TIMEOUT * 3) as client,
    ):
        yield client


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    inner = getattr(exc, "exceptions", None)
    return [leaf for e in inner for leaf in leaves(e)] if inner else [exc]


async def test_http_with_a_token_refuses_a_client_without_it(hub_factory: Any, tmp_path: Path) -> None:
    mcp = sdk()
    secret = "s3cret-token-for-the-mcp-http-test"
    hub = await hub_factory(token=secret)
    token_file = tmp_path / "token"
    token_file.write_text(secret)
    token_file.chmod(0o600)
    async with http_server(hub, "--token-file", str(token_file)) as url:
        assert url.startswith("http://127.0.0.1:")
        import httpx2

        async with httpx2.AsyncClient() as plain:
            answer = await plain.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert answer.status_code == 401 and "bearer token" in answer.text
        with pytest.raises(BaseException) as refused:
            async with http_client(url, "wrong-token") as client:
                await client.list_tools()
        assert any(isinstance(e, mcp.MCPError) for e in leaves(refused.value)), refused.value
        async with http_client(url, secret) as client:
            listed = await client.list_tools()
            assert {t.name for t in listed.tools} == TOOLS
            failed, said = await call(client, "send", to="proj/bob", text="over http")
            assert not failed and "queued" in said, said


async def test_http_off_loopback_without_a_token_is_refused(hub: Hub) -> None:
    code, _, err = await run_cli("mcp", "serve", "--http", "--host", "0.0.0.0", "--uri", hub.uri, "--name", "a")
    assert code == 2 and "refusing to serve MCP on 0.0.0.0 without a token" in err and "Traceback" not in err, err


async def test_without_an_identity_it_serves_and_every_call_says_how_to_set_one(hub: Hub) -> None:
    """An assistant shows a server that will not start only as "failed"; a running one can say what is missing."""
    mcp = sdk()
    params = mcp.StdioServerParameters(command=SYNAPSE, args=["mcp", "serve", "--uri", hub.uri], env=dict(os.environ))
    async with mcp.Client(params, read_timeout_seconds=TIMEOUT * 3) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        failed, said = await call(client, "who")
    assert failed and "SYN_IDENTITY" in said and "--name NAME" in said, said


def test_the_cli_does_not_import_the_sdk_for_other_commands() -> None:
    """`synapse --help` and the install commands stay lean: no `mcp` module loaded."""
    import subprocess
    import sys

    code = (
        "import sys; from synapse_channel.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))"
    )
    for args in (["--help"], ["mcp", "--help"], ["mcp", "install", "gemini", "--dry-run"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout, out.stderr)


async def test_search_finds_what_the_agent_may_see_pages_and_says_how_to_fix_bad_syntax(hub: Hub) -> None:
    async with stdio(hub, "proj/alice") as alice, stdio(hub, "proj/bob") as bob:
        for to, said in (("proj/carol", "zebra launch code for carol only"), ("proj/bob", "zebra review for bob")):
            failed, out = await call(alice, "send", to=to, text=said)
            assert not failed, out
        failed, out = await call(alice, "send", to="all", text="zebra-crossing news")
        assert not failed, out
        failed, out = await call(bob, "search", query="zebra")
        assert not failed, out
        lines = out.splitlines()
        assert len(lines) == 2 and "proj/alice -> all (chat): [zebra]" in lines[0], out
        assert "proj/alice -> proj/bob (chat): [zebra] review for bob" in lines[1], out
        failed, out = await call(bob, "search", query="launch OR carol", to="proj/carol")
        assert not failed and out.startswith("no matches"), out
        failed, out = await call(bob, "search", query="zebra", limit=1)
        assert not failed and "news" in out and "older matches remain: search again with after=" in out, out
        cursor = int(out.rsplit("after=", 1)[1])
        failed, out = await call(bob, "search", query="zebra", after=cursor, hours=1, **{"from": "proj/alice"})
        assert not failed and "review for bob" in out and "news" not in out, out
        failed, out = await call(bob, "search", query="zebra-crossing (")
        assert failed and "double quotes" in out and '"foo-bar"' in out, out
        failed, out = await call(bob, "search", query="zebra", limit=0)
        assert failed and "limit must be between 1 and 50" in out, out
        failed, out = await call(bob, "search", query='"zebra-crossing"')
        assert not failed and "news" in out, out
