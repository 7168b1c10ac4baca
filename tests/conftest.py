"""Shared fixtures: a real hub on an ephemeral loopback port, raw clients, the CLI.

Nothing here mocks the hub, the store or the socket. ``hub_factory`` starts
the real :class:`Hub` in the test's event loop (port 0, read back);
``run_cli`` runs the real ``synapse`` console script as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from synapse_channel.hub.config import HubConfig
from synapse_channel.hub.server import Hub

from .pgcluster import Cluster, find_bindir

BIN = Path(sys.executable).parent
SYNAPSE = str(BIN / "synapse")
TIMEOUT = float(os.environ.get("SYNAPSE_TEST_TIMEOUT", "10"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $SYN_HOME and no ambient identity or token."""
    home = tmp_path / "synhome"
    monkeypatch.setenv("SYN_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the config parse cache
    for var in ("SYN_IDENTITY", "SYN_PROJECT", "SYNAPSE_TOKEN", "SYNAPSE_TOKEN_FILE", "SYNAPSE_URI"):
        monkeypatch.delenv(var, raising=False)
    return home


def needs(available: bool, what: str) -> None:
    """Skip a test whose external dependency is missing; under ``CI=true`` fail instead.

    CI installs every dependency (``make ci-deps``, ``make test``), so a missing
    one there is a broken set-up that must not pass as a silent skip.
    """
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing under CI=true; `make ci-deps` and `make test` must provide it")
    pytest.skip(f"{what} is not available here (CI installs it)")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """One throw-away PostgreSQL cluster for the whole run (``tests/pgcluster.py``), shared by the PG test files."""
    bindir = find_bindir()
    needs(bindir is not None, "PostgreSQL server binaries (Debian package postgresql)")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        needs(False, "asyncpg (pip install -e '.[test]')")
    assert bindir is not None
    pg = Cluster(bindir, fsync=False).start()
    yield pg
    pg.stop()


@pytest.fixture
def pg_url(cluster: Cluster) -> str:
    """A fresh, empty database on the session's cluster."""
    return cluster.create_db()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository to claim files in (the CLI's worktree default)."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "init"],
        cwd=root,
        check=True,
    )
    monkeypatch.chdir(root)
    return root


HubFactory = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def hub_factory(tmp_path: Path) -> AsyncIterator[HubFactory]:
    """Start hubs with chosen settings; all are stopped at teardown."""
    hubs: list[Hub] = []

    async def start(**overrides: Any) -> Hub:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "db": tmp_path / "hub.db",
            "relay_log": tmp_path / "feed.ndjson",
        }
        settings.update(overrides)
        pm = settings.pop("pm", None)
        hub = Hub(HubConfig(**settings), pm=pm)
        await hub.start()
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        await hub.stop()


@pytest.fixture
async def hub(hub_factory: HubFactory) -> Hub:
    """A default hub: open, journal in tmp, feed in tmp."""
    return await hub_factory()


class Raw:
    """A raw protocol client: send dicts, read dicts, inspect the close code."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name

    async def send(self, ftype: str, target: str = "System", payload: Any = "", **extra: Any) -> None:
        frame = {"sender": self.name, "target": target, "type": ftype, "payload": payload, "timestamp": 1.0}
        frame.update(extra)
        await self.ws.send(json.dumps(frame))

    async def chat_seq(self, target: str, payload: str) -> int:
        """Send a chat and return its ``seq`` from the receipt (a sender gets no copy of its directed chat)."""
        self._n = getattr(self, "_n", 0) + 1
        tag = f"{self.name}-{self._n}"
        await self.send("chat", target, payload, receipt_requested=True, client_msg_id=tag)
        return int((await self.expect("delivery_receipt", client_msg_id=tag))["message_seq"])

    async def sync(self) -> None:
        """Return once everything this socket sent before is applied and durable (a who round trip)."""
        await self.send("who_request")
        await self.expect("who_snapshot")

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = json.loads(data)
        return frame

    async def expect(self, ftype: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """Read until a frame of ``ftype`` (matching ``match``) arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - loop.time()))
            if frame.get("type") == ftype and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def nothing(self, ftype: str, within: float = 0.3) -> None:
        """Assert no frame of ``ftype`` arrives within ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (left := deadline - loop.time()) > 0:
            try:
                frame = await self.recv(left)
            except TimeoutError:
                return
            assert frame.get("type") != ftype, frame

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Wait for the hub to close us; return (code, reason)."""
        try:
            async with asyncio.timeout(timeout):
                async for _ in self.ws:
                    pass
        except Exception:  # the close itself is what we inspect
            pass
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def close(self) -> None:
        await self.ws.close()


RawFactory = Callable[..., Awaitable[Raw]]


async def open_ws(uri: str, **kwargs: Any) -> ClientConnection:
    """A test socket that never stops reading (so closes are never stuck)."""
    return await connect(uri, compression=None, max_queue=None, close_timeout=1, **kwargs)


async def open_raw(uri: str, name: str, **kwargs: Any) -> Raw:
    """A :class:`Raw` client on a fresh socket (not registered)."""
    return Raw(await open_ws(uri, **kwargs), name)


@pytest.fixture
async def raw(hub: Hub) -> AsyncIterator[RawFactory]:
    """Open raw clients to ``hub``: ``await raw("name", register=True)``."""
    opened: list[Raw] = []

    async def open_(name: str, *, register: bool = True, uri: str | None = None, **reg: Any) -> Raw:
        client = await open_raw(uri or hub.uri, name)
        opened.append(client)
        if register:
            await client.send("heartbeat", payload="online", protocol_version=7, **reg)
            await client.expect("welcome")
        return client

    yield open_
    for client in opened:
        await client.ws.close()


async def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run ``synapse ARGS`` to completion; return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        SYNAPSE,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start ``synapse ARGS`` in the background (stdout/stderr piped)."""
    return await asyncio.create_subprocess_exec(
        SYNAPSE,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def read_line_containing(stream: asyncio.StreamReader, needle: str, timeout: float = TIMEOUT) -> str:
    """Read lines from ``stream`` until one contains ``needle``."""
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}")
            if needle in line:
                return line


async def start_waiter(uri: str, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start ``synapse wait`` and return once it says it is waiting."""
    proc = await start_cli("wait", "--uri", uri, *args, env=env)
    assert proc.stderr is not None
    await read_line_containing(proc.stderr, "waiting for messages")
    return proc


async def finish(proc: asyncio.subprocess.Process, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    """Wait for a background CLI process; return (code, stdout, stderr)."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


#: Counts the reliability suite reports (kill points, frames, restarts); printed after the run.
RELIABILITY: list[str] = []


def report(line: str) -> None:
    """Record a reliability count for the terminal summary (and print it for -s runs)."""
    RELIABILITY.append(line)
    print(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the reliability suite's counts in CI output, passing or not."""
    if RELIABILITY:
        terminalreporter.section("reliability counts")
        for line in RELIABILITY:
            terminalreporter.write_line(line)
