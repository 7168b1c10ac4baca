"""The Claude Code adapter against the real, pinned ``claude`` CLI, a fake model API and a real hub.

``synapse adapters install claude-code`` writes the hooks into a throw-away
git project; ``claude -p`` then runs there against :mod:`.fake_anthropic`
(every model request is recorded) with ``SYN_IDENTITY`` and ``SYNAPSE_URI``
pointing its hooks at the in-process hub. The assertions read the recorded
model requests: what the model was actually shown, not what a hook printed.

The hub runs in the test's event loop, so Claude Code (whose hooks call the
hub) is always driven with ``asyncio.create_subprocess_exec`` and every wait
on the fake server runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.hub.server import Hub

from ..conftest import run_cli
from .conftest import installed
from .fake_anthropic import serve, setup
from .fakebase import FakeModelServer, Recorded, _decoded
from .install import Pin

ID = "api/claude-1"
RUN_TIMEOUT = 90.0


@pytest.fixture
def claude() -> Pin:
    return installed("claude-code")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository as the working directory (where ``adapters install`` writes)."""
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    with serve() as server:
        yield server


def claude_env(model: FakeModelServer, project: Path, hub: Hub) -> dict[str, str]:
    """Claude Code in a temp HOME pointed at the fake model; its hooks at the hub, as ``ID``."""
    home = Path(os.environ["HOME"])
    return {**os.environ, **setup(model, home, project), "SYN_IDENTITY": ID, "SYNAPSE_URI": hub.uri}


async def start_claude(pin: Pin, project: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(pin.path),
        *args,
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = RUN_TIMEOUT) -> tuple[int, str, str]:
    """Wait for Claude Code to exit (killing it if it does not); return (code, stdout, stderr)."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"claude did not exit within {timeout}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def install(env: dict[str, str]) -> None:
    code, out, err = await run_cli("adapters", "install", "claude-code", env=env)
    assert code == 0, out + err
    assert "they will run" in out


async def send(hub: Hub, text: str) -> None:
    code, out, err = await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", ID, text)
    assert code in (0, 1), out + err  # 1: nobody online, but the message waits in the mailbox


def turns(model: FakeModelServer, marker: str) -> list[Recorded]:
    """The main-loop model requests of the session whose prompt carries ``marker``, in order."""
    return [
        r
        for r in list(model.requests)
        if r.method == "POST" and r.path.split("?")[0].endswith("/v1/messages") and marker in _decoded(r.body)
    ]


def text_of(rec: Recorded) -> str:
    return _decoded(rec.body)


async def test_queued_message_reaches_the_first_model_request(
    claude: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """SessionStart: a message waiting in the mailbox is in the context of the session's first request."""
    env = claude_env(model, project, hub)
    await install(env)
    await send(hub, "alpha: rebase on main before you start")
    code, out, err = await finish(await start_claude(claude, project, env, "-p", "say hi PROMPT-A"))
    assert code == 0, err
    assert out.strip() == "Done."
    requests = turns(model, "PROMPT-A")
    assert len(requests) == 1, [text_of(r)[-300:] for r in requests]  # nothing more waited: it just stopped
    first = text_of(requests[0])
    assert "alpha: rebase on main before you start" in first
    assert f"synapse: you are {ID}." in first and f"1 new message(s) for {ID}" in first
    # handed over once: the mailbox cursor moved past it, so the next hook has nothing to say
    code, out, _ = await run_cli("hook", "claude-code", "prompt", stdin=b"{}", env=env)
    assert (code, out.strip()) == (0, "")


async def test_message_sent_while_busy_continues_the_session_then_it_ends(
    claude: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """Stop: a message that arrives while the model works becomes the next instruction; then Claude stops."""
    env = claude_env(model, project, hub)
    await install(env)
    model.hold()
    proc = await start_claude(claude, project, env, "-p", "work on it PROMPT-B")
    try:
        await asyncio.to_thread(model.wait_until, lambda: bool(turns(model, "PROMPT-B")), 60, "the first model request")
        await send(hub, "beta: also update the changelog")
    finally:
        model.release()
    code, _, err = await finish(proc)
    assert code == 0, err
    requests = turns(model, "PROMPT-B")
    assert len(requests) == 2, [text_of(r)[-300:] for r in requests]
    assert "beta: also update the changelog" not in text_of(requests[0])
    second = requests[1].json()
    last = json.dumps(second["messages"][-1])
    assert "beta: also update the changelog" in _decoded(last) and "Stop hook" in last
    assert "Handle these, then stop." in _decoded(last)


async def test_status_reports_the_project_install_will_run(project: Path, hub: Hub) -> None:
    """``adapters status --json``: not installed before; installed, current and will run after."""

    def row(out: str) -> dict[str, Any]:
        found: dict[str, Any] = next(r for r in json.loads(out) if r["adapter"] == "claude-code")
        return found

    code, out, _ = await run_cli("adapters", "status", "--json")
    before = row(out)["project"]
    assert code == 0 and not before["installed"] and not before["will_run"]
    assert before["step"] == "synapse adapters install claude-code"
    code, out, err = await run_cli("adapters", "install", "claude-code")
    assert code == 0, err
    code, out, _ = await run_cli("adapters", "status", "--json")
    after = row(out)["project"]
    assert after["file"] == str(project / ".claude" / "settings.json")
    assert after["installed"] and after["current"] and after["will_run"] and after["step"] is None
    assert after["trusted"] is None  # Claude Code has no hook-review gate of its own
    assert set(after["events"]) >= {"SessionStart", "UserPromptSubmit", "Stop"}
