"""Client failover across a list of hub addresses (issue 16, client side).

Real hubs on port 0 or in subprocesses, the real ``synapse`` CLI. The
standby is a stand-in: a tiny websockets server that closes every
connection with 4018 and ``standby; leader=<uri>``, which is exactly what a
standby hub answers (the real one lives with the PostgreSQL store).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from synapse_channel.api import Refused, Session, Unreachable, wait
from synapse_channel.client.addresses import (
    STANDBY_CLOSE,
    STANDBY_PREFIX,
    AddressError,
    listed,
    parse_addresses,
    standby_hint,
)
from synapse_channel.hub.server import Hub
from synapse_channel.protocol import REASON_STANDBY_PREFIX, Close
from synapse_channel.trust import is_loopback_uri, project_refusal, transport_problem

from .conftest import TIMEOUT, HubFactory, finish, read_line_containing, run_cli, start_cli
from .hubproc import HubProcess, free_port


def dead() -> str:
    """An address nothing listens on (a port that was free a moment ago)."""
    return f"ws://127.0.0.1:{free_port()}"


class Standby:
    """A stand-in standby hub: accepts the socket, closes it with 4018 naming ``leader``; counts connections."""

    def __init__(self, leader: str) -> None:
        self.leader = leader
        self.connections = 0
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.close(Close.STANDBY, f"{REASON_STANDBY_PREFIX}{self.leader}")

    @property
    def uri(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"


class Deposed(Standby):
    """A leader that steps down: welcomes the first connection, then turns it away with 4018 naming ``leader``."""

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        if self.connections > 1:
            await ws.close(Close.STANDBY, f"{REASON_STANDBY_PREFIX}{self.leader}")
            return
        await ws.recv()  # the registration
        await ws.send(json.dumps({"type": "welcome", "hub_id": "deposed", "protocol_version": 7}))
        await ws.close(Close.STANDBY, f"{REASON_STANDBY_PREFIX}{self.leader}")


class Recorder:
    """A server that only counts who connects (a hint target that must never be contacted)."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.close()

    @property
    def uri(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{next(iter(self.server.sockets)).getsockname()[1]}"


ServerFactory = Callable[[Standby | Recorder], Awaitable[str]]  # Deposed is a Standby


@pytest.fixture
async def servers() -> AsyncIterator[ServerFactory]:
    """Start stand-in servers on port 0; all closed at teardown."""
    started: list[Server] = []

    async def start(stub: Standby | Recorder) -> str:
        stub.server = await serve(stub.handler, "127.0.0.1", 0)
        started.append(stub.server)
        return stub.uri

    yield start
    for server in started:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------- one parser


def test_a_list_parses_in_order_and_drops_duplicates() -> None:
    assert parse_addresses("ws://h1:8876, ws://h2:8876,WS://H1:8876") == ("ws://h1:8876", "ws://h2:8876")
    assert parse_addresses("wss://hub.example") == ("wss://hub.example",)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("ws://h1:8876,http://h2:8876", "element 2 of"),
        ("ws://h1:8876,,ws://h2:8876", "element 2 of"),
        ("ws://h1:8876,", "element 2 of"),
        ("ws://h1:99999", "is not a hub URI"),
        ("", "no hub URI"),
    ],
)
def test_a_bad_element_is_named(value: str, needle: str) -> None:
    with pytest.raises(AddressError, match=needle):
        parse_addresses(value)


def test_standby_hint_and_the_list_decide_where_a_hint_may_lead() -> None:
    mine = ("ws://h1:8876", "wss://h2:8876")
    assert standby_hint(4018, "standby; leader=ws://H1:8876/") == "ws://H1:8876/"
    assert standby_hint(4018, "standby; leader=") == ""
    assert standby_hint(1001, "going away") is None
    assert listed("ws://H1:8876/", mine) == "ws://h1:8876"  # the user's own spelling is what gets used
    assert listed("ws://evil:8876", mine) is None
    assert listed("ws://h2:8876", mine) is None  # never a downgrade from wss:// to ws://
    assert listed("not a uri", mine) is None
    assert (Close.STANDBY, REASON_STANDBY_PREFIX) == (STANDBY_CLOSE, STANDBY_PREFIX) == (4018, "standby; leader=")


def test_the_trust_rules_hold_for_every_element_of_a_list() -> None:
    assert is_loopback_uri("ws://127.0.0.1:1,ws://localhost:2")
    assert not is_loopback_uri("ws://127.0.0.1:1,ws://hub.example:8876")
    reason = project_refusal("hub.uri", "ws://localhost:1,ws://hub.example:8876", trusted=False)
    assert reason is not None and "non-loopback" in reason
    assert transport_problem("ws://127.0.0.1:1,wss://hub.example") is None
    problem = transport_problem("ws://127.0.0.1:1,ws://hub.example:8876")
    assert problem is not None and "hub.example" in problem


# ---------------------------------------------------------------------------- CLI and API


async def test_a_dead_first_address_passes_the_turn_to_the_second(hub: Hub) -> None:
    uris = f"{dead()},{hub.uri}"
    code, out, err = await run_cli("health", "--json", "--uri", uris)
    assert code == 0, err
    assert json.loads(out)["uri"] == hub.uri  # says which address answered
    code, out, err = await run_cli("send", "--uri", uris, "--name", "shop/b", "--target", "shop/a", "over the list")
    assert code == 0, err
    code, out, err = await run_cli("wait", "--name", "shop/a", "--timeout", "30", env={"SYNAPSE_URI": uris})
    assert (code, out) == (0, "shop/b: over the list\n"), err
    async with Session("shop/c", uri=uris) as session:
        await session.connect()
        assert hub.core is not None and session.hub_id == hub.core.hub_id


async def test_the_dashboard_link_points_at_the_hub_that_answered(hub: Hub) -> None:
    code, out, err = await run_cli("dashboard", "--print-url", "--uri", f"{dead()},{hub.uri}")
    assert code == 0, err
    assert out.startswith(f"http://127.0.0.1:{hub.port}/dashboard/login?nonce="), out  # its nonce is good there only


async def test_when_every_address_fails_one_line_names_each(tmp_path: Path) -> None:
    first, second = dead(), dead()
    code, _, err = await run_cli("who", "--uri", f"{first},{second}")
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "could not reach any hub" in lines[0]
    assert f"{first} (connection refused)" in lines[0] and f"{second} (connection refused)" in lines[0]
    with pytest.raises(Unreachable, match="could not reach any hub"):
        async with Session("shop/a", uri=f"{first},{second}") as session:
            await session.connect()


@pytest.mark.parametrize("value", ["ws://127.0.0.1:1,http://127.0.0.1:2", "ws://127.0.0.1:1,,ws://127.0.0.1:2"])
async def test_a_bad_list_element_is_a_usage_error(value: str) -> None:
    for args, env in ((("who", "--uri", value), None), (("who",), {"SYNAPSE_URI": value})):
        code, _, err = await run_cli(*args, env=env)
        assert code == 2 and "element 2 of" in err and "Traceback" not in err, err
    code, out, err = await run_cli("doctor", "--no-hub", "--uri", value)
    assert code == 1 and "PROBLEM:     hub uri: element 2 of" in out, out + err
    with pytest.raises(Refused) as caught:
        Session("shop/a", uri=value)
    assert caught.value.code == "BAD_URI"
    with pytest.raises(Refused):
        await wait("shop/a", uri=value, timeout=1)


async def test_a_listed_leader_hint_is_followed(
    hub_factory: HubFactory, tmp_path: Path, servers: ServerFactory
) -> None:
    one = await hub_factory(db=tmp_path / "one.db")
    two = await hub_factory(db=tmp_path / "two.db")
    standby = Standby(two.uri)
    uris = f"{await servers(standby)},{one.uri},{two.uri}"
    code, out, err = await run_cli("health", "--json", "--uri", uris)
    assert code == 0, err
    assert json.loads(out)["uri"] == two.uri  # the hint jumped the queue over `one`
    assert standby.connections == 1
    async with Session("shop/a", uri=uris) as session:
        await session.connect()
        assert two.core is not None and session.hub_id == two.core.hub_id


async def test_an_unlisted_leader_hint_is_never_contacted(hub: Hub, servers: ServerFactory, tmp_path: Path) -> None:
    elsewhere = Recorder()
    hint = await servers(elsewhere)
    standby = Standby(hint)
    alone = await servers(standby)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    code, out, err = await run_cli("who", "--uri", alone, "--token-file", str(token))
    assert code == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert f"its leader {hint} is not in your hub URI list" in err
    assert elsewhere.connections == 0  # neither the token nor anything else went there
    # the other configured addresses are still tried, in order
    code, out, err = await run_cli("health", "--json", "--uri", f"{alone},{hub.uri}")
    assert code == 0 and json.loads(out)["uri"] == hub.uri, err
    assert elsewhere.connections == 0


async def test_a_standby_with_no_leader_yet_is_reported(servers: ServerFactory) -> None:
    alone = await servers(Standby(""))
    code, _, err = await run_cli("who", "--uri", alone)
    assert code == 1 and "a standby; no leader elected yet" in err and "Traceback" not in err


async def test_the_git_guard_follows_the_list(hub: Hub, servers: ServerFactory, repo: Path) -> None:
    async with Session("shop/web", uri=hub.uri) as web:
        await web.claim("WEB-7", ["src/a.py"], worktree=str(repo), ttl=900)
        (repo / "src" / "a.py").write_text("x = 2\n")
        proc = await asyncio.create_subprocess_exec("git", "add", "src/a.py", cwd=repo)
        assert await proc.wait() == 0
        standby = Standby(hub.uri)
        uris = f"{dead()},{await servers(standby)},{hub.uri}"
        env = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": uris}
        code, out, err = await run_cli("guard", "check", "pre-commit", env=env)
        assert code != 0 and "task WEB-7 held by shop/web" in out + err, out + err
        assert standby.connections == 1


# ---------------------------------------------------------------------------- wait across a failover


async def test_wait_rearms_on_the_other_address_and_delivers_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "ha.db"
    first, second = HubProcess(db), HubProcess(db)  # one database, two addresses: only one may hold it
    uris = f"{first.uri},{second.uri}"
    me = ("--name", "shop/a")
    try:
        await first.start()
        code, _, err = await run_cli("send", "--uri", first.uri, "--name", "shop/b", "--target", "shop/a", "before")
        assert code == 0, err
        code, out, err = await run_cli("wait", "--uri", uris, *me, "--timeout", "30")
        assert (code, out) == (0, "shop/b: before\n"), err
        waiter = await start_cli("wait", "--uri", uris, *me, "--timeout", "60")
        assert waiter.stderr is not None
        await read_line_containing(waiter.stderr, f"waiting for messages to shop/a at {first.uri}")
        assert await first.stop() == 0
        await second.start()
        code, _, err = await run_cli("send", "--uri", uris, "--name", "shop/b", "--target", "shop/a", "after")
        assert code == 0, err
        code, out, err = await finish(waiter, TIMEOUT * 3)
        assert (code, out) == (0, "shop/b: after\n"), err  # re-armed from its cursor: not "before" again
        code, _, err = await run_cli("send", "--uri", second.uri, "--name", "shop/b", "--target", "shop/a", "later")
        assert code == 0, err
        code, out, err = await run_cli("wait", "--uri", uris, *me, "--timeout", "30")
        assert (code, out) == (0, "shop/b: later\n"), err
    finally:
        await first.kill()
        await second.kill()


async def test_listen_with_a_list_reconnects_across_a_failover(tmp_path: Path) -> None:
    """``synapse listen`` over a hub list rides a failover (says so once); over one address it exits on the drop."""
    import signal

    db = tmp_path / "ha.db"
    first, second = HubProcess(db), HubProcess(db)
    uris = f"{first.uri},{second.uri}"
    listener = None
    try:
        await first.start()
        listener = await start_cli("listen", "--uri", uris, "--name", "shop/ear")
        assert listener.stderr is not None and listener.stdout is not None
        await read_line_containing(listener.stderr, f"listening on {first.uri}")
        assert await first.stop() == 0
        await read_line_containing(listener.stderr, "reconnecting to the next hub")
        await second.start()
        await read_line_containing(listener.stderr, f"listening on {second.uri}")
        code, _, err = await run_cli("send", "--uri", second.uri, "--name", "shop/b", "--target", "all", "after")
        assert code == 0, err
        await read_line_containing(listener.stdout, "shop/b: after")
        listener.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(listener.wait(), TIMEOUT) == 0
        single = await start_cli("listen", "--uri", second.uri, "--name", "shop/ear2")
        assert single.stderr is not None
        await read_line_containing(single.stderr, "listening on")
        assert await second.stop() == 0
        assert await asyncio.wait_for(single.wait(), TIMEOUT) != 0  # one address: the drop ends it
    finally:
        if listener is not None and listener.returncode is None:
            listener.kill()
        await first.kill()
        await second.kill()


async def test_api_wait_rides_a_failover_too(tmp_path: Path) -> None:
    db = tmp_path / "ha.db"
    first, second = HubProcess(db), HubProcess(db)
    uris = f"{first.uri},{second.uri}"
    try:
        await first.start()
        waiting = asyncio.ensure_future(wait("shop/a", uri=uris, timeout=60))
        async with asyncio.timeout(TIMEOUT), Session("shop/watch", uri=first.uri) as watch:
            while "shop/a-rx" not in (await watch.who()).online:  # armed once the hub lists the receiver
                await asyncio.sleep(0.05)
        assert await first.stop() == 0
        await second.start()
        code, _, err = await run_cli("send", "--uri", second.uri, "--name", "shop/b", "--target", "shop/a", "via two")
        assert code == 0, err
        got = await asyncio.wait_for(waiting, TIMEOUT * 3)
        assert [(m.sender, m.text) for m in got] == [("shop/b", "via two")]
    finally:
        await first.kill()
        await second.kill()


async def test_a_waiter_turned_away_by_a_stepping_down_leader_goes_to_the_named_one(
    hub: Hub, servers: ServerFactory
) -> None:
    deposed = Deposed(hub.uri)
    uris = f"{await servers(deposed)},{hub.uri}"
    waiter = await start_cli("wait", "--uri", uris, "--name", "shop/a", "--timeout", "60")
    assert waiter.stderr is not None
    await read_line_containing(waiter.stderr, f"waiting for messages to shop/a at {hub.uri}")
    code, _, err = await run_cli("send", "--uri", hub.uri, "--name", "shop/b", "--target", "shop/a", "new leader")
    assert code == 0, err
    code, out, err = await finish(waiter, TIMEOUT * 3)
    assert (code, out) == (0, "shop/b: new leader\n"), err
    assert deposed.connections == 1  # the re-arm went straight to the leader it named
