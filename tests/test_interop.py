"""Wire compatibility with the synapse-channel 0.99.38 reference client and hub.

The reference is installed into a separate throw-away virtualenv (``make
refvenv``, run by CI) and found through ``SYNAPSE_REF_BIN`` (its ``bin``
directory). Its distribution and import names clash with ours, so it is never
importable here: we only run its console scripts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, HubFactory, RawFactory, needs, read_line_containing, run_cli

REF_BIN = os.environ.get("SYNAPSE_REF_BIN", "")
pytestmark = pytest.mark.interop


def need_ref() -> None:
    """The 0.99.38 reference client must be installed (skip locally, fail under CI=true)."""
    needs(bool(REF_BIN and Path(REF_BIN, "synapse").exists()), "the 0.99.38 reference client (SYNAPSE_REF_BIN)")


@pytest.fixture(autouse=True)
def _reference_client() -> None:
    need_ref()


async def ref(
    *args: str, tool: str = "synapse", env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, str, str]:
    """Run a reference console script to completion."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(REF_BIN, tool)),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SYNAPSE_NO_UPDATE_CHECK": "1", **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def ref_start(*args: str, tool: str = "synapse", env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start a reference console script in the background."""
    return await asyncio.create_subprocess_exec(
        str(Path(REF_BIN, tool)),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SYNAPSE_NO_UPDATE_CHECK": "1", **(env or {})},
    )


async def until_online(hub: Hub, name: str, timeout: float = 10) -> None:
    """Wait until ``name`` holds a connection on ``hub``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while name not in hub.core.roster.names:
        assert loop.time() < deadline, f"{name} never came online"
        await asyncio.sleep(0.02)


async def test_ref_send_and_wait(hub: Hub) -> None:
    """Reference wait is woken by reference send through our hub (rc 0 / 0)."""
    waiter = await ref_start("wait", "--uri", hub.uri, "--name", "alice", "--timeout", "20", "--wake-jitter", "0")
    await until_online(hub, "alice-rx")
    code, _, err = await ref("send", "--uri", hub.uri, "--target", "alice", "--wait-seconds", "0", "hello alice")
    assert code == 0, err
    out, _ = await asyncio.wait_for(waiter.communicate(), 20)
    assert waiter.returncode == 0
    assert "hello alice" in out.decode()


async def test_ref_send_offline_exits_1(hub: Hub) -> None:
    """Reference send to nobody gets our negative receipt and exits 1."""
    code, out, _ = await ref("send", "--uri", hub.uri, "--target", "bob", "--wait-seconds", "0", "anyone")
    assert code == 1 and "no online recipient matched bob" in out


async def test_ref_broadcast_exits_0(hub: Hub) -> None:
    """Reference broadcast exits 0."""
    assert (await ref("send", "--uri", hub.uri, "--wait-seconds", "0", "hi all"))[0] == 0


async def test_ref_wait_timeout_exits_2(hub: Hub) -> None:
    """Reference wait times out with rc 2."""
    assert (await ref("wait", "--uri", hub.uri, "--name", "erin", "--timeout", "1"))[0] == 2


async def test_ref_wait_superseded_exits_4(hub: Hub) -> None:
    """A second reference waiter takes over; the first yields with rc 4."""
    first = await ref_start("wait", "--uri", hub.uri, "--name", "frank", "--timeout", "20")
    await until_online(hub, "frank-rx")
    second = await ref_start("wait", "--uri", hub.uri, "--name", "frank", "--timeout", "3")
    await asyncio.wait_for(first.communicate(), 20)
    assert first.returncode == 4
    await asyncio.wait_for(second.communicate(), 20)


async def test_ref_wait_exits_3_when_hub_stops(hub_factory: HubFactory) -> None:
    """Reference wait exits 3 when our hub shuts down (1001)."""
    hub = await hub_factory()
    waiter = await ref_start("wait", "--uri", hub.uri, "--name", "kill", "--timeout", "30")
    await until_online(hub, "kill-rx")
    await hub.stop()
    await asyncio.wait_for(waiter.communicate(), 20)
    assert waiter.returncode == 3


async def test_ref_name_conflict_exits_1(hub: Hub, raw: RawFactory) -> None:
    """Reference send as an online name gets 4009 and exits 1."""
    await raw("dave")
    code, out, _ = await ref("send", "--uri", hub.uri, "--name", "dave", "--target", "x", "--wait-seconds", "0", "hi")
    assert code == 1 and "4009" in out


async def test_ref_who(hub: Hub, raw: RawFactory) -> None:
    """Reference who renders our snapshot (agents, waiters, mailbox)."""
    await raw("proj/a1")
    await raw("proj/a1-rx", wake_capability="passive")
    code, out, _ = await ref("who", "--uri", hub.uri)
    assert code == 0
    assert "proj/a1  (direct agent)" in out and "proj/a1-rx" in out
    code, out, _ = await ref("who", "--uri", hub.uri, "--project", "proj")
    assert code == 0 and "Online in proj" in out


async def test_ref_health(hub: Hub) -> None:
    """Reference health exits 0 against our hub."""
    assert (await ref("health", "--uri", hub.uri))[0] == 0


async def test_ref_listen(hub: Hub) -> None:
    """Reference listen prints a directed chat relayed by our hub (listening as alice~lis)."""
    proc = await ref_start("listen", "--uri", hub.uri, "--name", "alice~lis", "--for", "alice")
    await until_online(hub, "alice~lis")  # an IDENTITY~tag listener sees that identity's directed chats
    await run_cli("send", "--uri", hub.uri, "--name", "bob", "--target", "alice", "for alice")
    assert proc.stdout is not None
    line = await read_line_containing(proc.stdout, "for alice")
    assert "bob" in line
    proc.terminate()
    await proc.communicate()


async def test_ref_auth(hub_factory: HubFactory) -> None:
    """Reference client: wrong token exits 1 with the auth message; right token works."""
    hub = await hub_factory(token="s3cret-tok-0123456789")
    code, out, _ = await ref("send", "--uri", hub.uri, "--token", "wrong", "--wait-seconds", "0", "x")
    assert code == 1 and "authentication rejected" in out
    assert (await ref("health", "--uri", hub.uri, "--token", "s3cret-tok-0123456789"))[0] == 0


# --------------------------------------------------------------------------- ours against theirs


@pytest.fixture
def ref_hub(tmp_path: Path) -> str:
    """The reference hub on a free loopback port; yields its URI."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(Path(REF_BIN, "synapse")),
            "hub",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "ref.db"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "SYNAPSE_NO_UPDATE_CHECK": "1"},
    )
    uri = f"ws://127.0.0.1:{port}"
    for _ in range(200):
        if subprocess.run([SYNAPSE, "health", "--uri", uri, "--timeout", "0.5"], capture_output=True).returncode == 0:
            break
        if proc.poll() is not None:
            pytest.fail(f"the reference hub exited before it answered (rc={proc.returncode})")
    else:
        proc.terminate()
        proc.wait(10)
        pytest.fail(f"the reference hub never answered health at {uri}")
    yield uri  # type: ignore[misc]
    proc.terminate()
    proc.wait(10)


async def test_our_send_and_wait_against_reference_hub(ref_hub: str) -> None:
    """Our wait is woken by our send through the reference hub; offline send is queued."""
    waiter = await asyncio.create_subprocess_exec(
        SYNAPSE,
        "wait",
        "--uri",
        ref_hub,
        "--name",
        "alice",
        "--timeout",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert waiter.stderr is not None
    await read_line_containing(waiter.stderr, "waiting for messages")
    code, _, err = await run_cli("send", "--uri", ref_hub, "--target", "alice", "hello from ours")
    assert code == 0, err
    out, _ = await asyncio.wait_for(waiter.communicate(), 20)
    assert waiter.returncode == 0 and "hello from ours" in out.decode()
    code, out2, _ = await run_cli("send", "--uri", ref_hub, "--target", "nobody", "x")
    assert code == 0 and "queued for nobody (offline)" in out2  # the 0.99 hub journals it for the next wait
    code, out2, _ = await run_cli("send", "--uri", ref_hub, "--require-recipient", "--json", "anyone?")
    assert code == 4 and json.loads(out2)["outcome"] == "no_recipient"
    assert (await run_cli("who", "--uri", ref_hub))[0] == 0
    assert (await run_cli("health", "--uri", ref_hub))[0] == 0


async def test_ref_clients_with_seat_secrets(hub_factory: HubFactory, tmp_path: Path) -> None:
    """0.99.38 wait, send and syn-wait work unchanged with SYNAPSE_TOKEN=<seat secret>; another seat's is refused."""
    from synapse_channel.seats import SeatStore

    with SeatStore(tmp_path / "hub.db") as store:
        alice, bob = store.add("api/alice", "agent"), store.add("api/bob", "agent")
    hub = await hub_factory()
    waiter = await ref_start(
        "wait",
        "--uri",
        hub.uri,
        "--name",
        "api/alice",
        "--timeout",
        "20",
        "--wake-jitter",
        "0",
        env={"SYNAPSE_TOKEN": alice},
    )
    await until_online(hub, "api/alice-rx")
    send = ("send", "--uri", hub.uri, "--name", "api/bob", "--target", "api/alice", "--wait-seconds", "0")
    code, _, err = await ref(*send, "hello seated alice", env={"SYNAPSE_TOKEN": bob})
    assert code == 0, err
    out, _ = await asyncio.wait_for(waiter.communicate(), 20)
    assert waiter.returncode == 0 and "hello seated alice" in out.decode()
    code, out, _ = await ref(*send[:4], "api/alice", *send[5:], "spoofed", env={"SYNAPSE_TOKEN": bob})
    assert code == 1 and "authentication rejected" in out  # bob's secret cannot speak as alice
    code, _, err = await ref(*send, "queued for syn-wait", env={"SYNAPSE_TOKEN": bob})
    assert code == 1, err  # nobody online: the 0.99 send reports it, and the message waits in the mailbox
    env = {"SYNAPSE_TOKEN": alice, "SYN_IDENTITY": "api/alice", "SYN_PROJECT": "api"}
    code, out, err = await ref("--uri", hub.uri, tool="syn-wait", env=env, timeout=30)
    assert code == 0 and "queued for syn-wait" in out, (out, err)


# --------------------------------------------------------------------------- 0.99 habits, as typed

# Each line is typed exactly as a 0.99 user types it: options first, --paths before the task id,
# no --name for lock and task declare (0.99 then acts as USER).
OUR_HABITS = [
    ("claim", "--name", "a", "--paths", "src/a.py", "src/b.py", "T-1"),
    ("lock", "--paths", "x", "T-6", "--", "true"),
    ("git-claim", "--name", "a", "--paths", "src/c.py", "T-2"),
    ("task", "declare", "--title", "hello", "T-3"),
]
REF_HABITS = [  # 0.99 has no `claim`; its --paths takes one value, repeated
    ("git-claim", "--name", "r", "--paths", "src/r.py", "--paths", "src/s.py", "R-1"),
    ("lock", "--paths", "y", "R-6", "--", "true"),
    ("task", "declare", "--title", "hello", "R-3"),
]


def with_uri(line: tuple[str, ...], uri: str) -> tuple[str, ...]:
    """``line`` with ``--uri URI`` right after the command (before any ``--`` and its command)."""
    n = 2 if line[0] == "task" else 1
    return (*line[:n], "--uri", uri, *line[n:])


async def check_099_habits(uri: str) -> None:
    """Every line of OUR_HABITS (our CLI) and REF_HABITS (0.99's) exits 0 against ``uri``, meaning what it says."""
    for line in OUR_HABITS:
        code, out, err = await run_cli(*with_uri(line, uri))
        assert code == 0, (line, out, err)
    for line in REF_HABITS:
        code, out, err = await ref(*with_uri(line, uri))
        assert code == 0, (line, out, err)
    code, out, err = await run_cli("state", "--uri", uri, "--json")
    assert code == 0, err
    claims = {c["task_id"]: c for c in json.loads(out)}
    assert claims["T-1"]["owner"] == "a" and claims["T-1"]["paths"] == ["src/a.py", "src/b.py"]
    assert claims["T-2"]["git"]["branch"] == "main" and claims["R-1"]["paths"] == ["src/r.py", "src/s.py"]
    assert "T-6" not in claims and "R-6" not in claims  # each lock released after `true`
    code, out, err = await run_cli("board", "--uri", uri, "--json")
    assert code == 0, err
    creators = {t["task_id"]: t["created_by"] for t in json.loads(out)["tasks"]}
    assert creators == {"T-3": "USER", "R-3": "USER"}  # ours falls back to 0.99's default name


async def test_099_habits_against_our_hub(hub: Hub, repo: Path) -> None:
    """claim/lock/git-claim with --paths before the task, task declare with no --name: ours and 0.99's."""
    await check_099_habits(hub.uri)


async def test_099_habits_against_reference_hub(ref_hub: str, repo: Path) -> None:
    """The same lines against the 0.99.38 hub."""
    await check_099_habits(ref_hub)
