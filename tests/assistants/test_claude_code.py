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
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.hub.server import Hub
from synapse_channel.paths import mailbox_cursor_path, read_int

from ..conftest import SYNAPSE, RawFactory, needs, run_cli
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


def text_blocks(rec: Recorded) -> list[str]:
    """The text of every content block of every message in a model request (not the system prompt)."""
    out = []
    for message in (rec.json() or {}).get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return out


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


# --------------------------------------------------------------------------- idle wake (asyncRewake)

IDLE_CONFIG = "[adapters.claude_code]\nidle_wake = true\nidle_wake_seconds = 300\n"


def user_turn(text: str) -> bytes:
    """One user message in Claude Code's ``--input-format stream-json``."""
    return (json.dumps({"type": "user", "message": {"role": "user", "content": text}}) + "\n").encode()


async def read_until_result(proc: asyncio.subprocess.Process, timeout: float = 60) -> list[dict[str, Any]]:
    """Read ``--output-format stream-json`` events until a turn's ``result``; fail if the stream ends first."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"claude's output ended before a result; saw {[e.get('type') for e in events]}")
            event = json.loads(line)
            events.append(event)
            if event.get("type") == "result":
                return events


async def until(check: Any, what: str, timeout: float = 30) -> None:
    """Wait for ``check()`` while the event loop (and the hub in it) keeps running; fail on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_idle_session_is_woken_by_a_message(claude: Pin, project: Path, model: FakeModelServer, hub: Hub) -> None:
    """idle_wake: a session idle after its turn is woken by a message; the text reaches a new model request."""
    (project / "synapse.toml").write_text(IDLE_CONFIG)
    env = claude_env(model, project, hub)
    await install(env)
    doc = json.loads((project / ".claude" / "settings.json").read_text())
    for event in ("SessionStart", "Stop"):
        idle = [
            h for g in doc["hooks"][event] for h in g["hooks"] if h["command"].endswith("hook claude-code idle-wait")
        ]
        assert idle == [{**idle[0], "asyncRewake": True, "timeout": 360}], doc["hooks"][event]
    proc = await asyncio.create_subprocess_exec(
        str(claude.path),
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(user_turn("look around PROMPT-C"))
        await proc.stdin.drain()
        await read_until_result(proc)
        await until(lambda: f"{ID}-rx" in hub.core.roster.names, "the idle wait to arm")
        armed = hub.core.roster.names[f"{ID}-rx"]
        assert len(turns(model, "PROMPT-C")) == 1  # idle: nothing more was asked of the model
        await send(hub, "gamma: wake up and review PR 7")
        await read_until_result(proc)  # the woken turn
        requests = turns(model, "PROMPT-C")
        assert len(requests) == 2, [text_of(r)[-300:] for r in requests]
        woken = _decoded(json.dumps(requests[1].json()["messages"][-1]))
        assert "gamma: wake up and review PR 7" in woken and f"1 new message(s) for {ID}" in woken
        assert "gamma" not in text_of(requests[0])
        # handed over once: the next hook has nothing to say
        code, out, _ = await run_cli("hook", "claude-code", "prompt", stdin=b"{}", env=env)
        assert (code, out.strip()) == (0, "")
        rearmed = "the Stop of the woken turn to arm a new idle wait"
        await until(lambda: hub.core.roster.names.get(f"{ID}-rx") not in (None, armed), rearmed)
        # End the session. (Closing stdin would also end it, but Claude Code then waits up to
        # 30 s, its ASYNC_REWAKE_FLUSH_TIMEOUT_MS, for background rewake hooks to finish.)
        proc.terminate()
        await finish(proc)
        await until(lambda: f"{ID}-rx" not in hub.core.roster.names, "the idle wait to end with its session")
        await until(lambda: not idle_waits_in(project), "every idle wait process to end with its session")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def start_streaming(pin: Pin, project: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    """A Claude Code session that stays open between turns (``--input-format stream-json``)."""
    return await asyncio.create_subprocess_exec(
        str(pin.path),
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        cwd=project,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_idle_wake_hands_a_busy_message_over_once(
    claude: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """A mid-turn message taken by the idle wait (armed at SessionStart) wakes a new turn; Stop does not repeat it."""
    (project / "synapse.toml").write_text(IDLE_CONFIG)
    env = claude_env(model, project, hub)
    await install(env)
    model.hold()
    proc = await start_streaming(claude, project, env)
    assert proc.stdin is not None
    cursor = mailbox_cursor_path(ID)
    try:
        proc.stdin.write(user_turn("busy work PROMPT-D"))
        await proc.stdin.drain()
        try:
            await asyncio.to_thread(model.wait_until, lambda: bool(turns(model, "PROMPT-D")), 60, "the first request")
            await until(lambda: f"{ID}-rx" in hub.core.roster.names, "the SessionStart idle wait to arm")
            await send(hub, "delta: handle me exactly once")
            await until(lambda: read_int(cursor) == 1, "the idle wait to take the message while the model is busy")
        finally:
            model.release()
        await read_until_result(proc)  # the busy turn ends: its Stop hook finds nothing left
        await read_until_result(proc)  # the turn the idle wait's rewake started
        requests = turns(model, "PROMPT-D")
        assert len(requests) == 2, [text_of(r)[-300:] for r in requests]
        assert "delta" not in text_of(requests[0])
        last = [_decoded(json.dumps(r.json()["messages"][-1])) for r in requests]
        assert "delta: handle me exactly once" in last[1] and "<task-notification>" in last[1]
        assert sum(text_of(r).count("delta: handle me exactly once") for r in requests) == 1
    finally:
        proc.terminate()
        await finish(proc)


async def test_plain_print_run_is_not_held_by_the_idle_wait(
    claude: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """``claude -p`` runs asyncRewake hooks in the foreground: the idle wait must return at once, not wait."""
    (project / "synapse.toml").write_text(IDLE_CONFIG)
    env = claude_env(model, project, hub)
    await install(env)
    code, out, err = await finish(await start_claude(claude, project, env, "-p", "quick one PROMPT-E"))
    assert (code, out.strip()) == (0, "Done."), err
    requests = turns(model, "PROMPT-E")
    assert len(requests) == 1, [text_of(r)[-300:] for r in requests]  # no "Stop hook feedback" continuation
    assert f"{ID}-rx" not in hub.core.roster.names


async def test_idle_wake_setting_installs_and_removes_the_background_hook(project: Path) -> None:
    """Turning idle_wake on adds the asyncRewake hook to SessionStart and Stop; off again, re-install drops it."""
    settings = project / ".claude" / "settings.json"
    settings.parent.mkdir()
    original = (
        '{\n  "hooks": {\n    "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]\n  }\n}\n'
    )
    settings.write_text(original)

    def idle_hooks() -> dict[str, int]:
        doc = json.loads(settings.read_text())
        return {
            event: sum(h["command"].endswith("hook claude-code idle-wait") for g in groups for h in g["hooks"])
            for event, groups in doc["hooks"].items()
        }

    def project_row(out: str) -> dict[str, Any]:
        found: dict[str, Any] = next(r for r in json.loads(out) if r["adapter"] == "claude-code")["project"]
        return found

    assert (await run_cli("adapters", "install", "claude-code"))[0] == 0
    assert idle_hooks() == {"Stop": 0, "SessionStart": 0, "UserPromptSubmit": 0, "PreToolUse": 0}
    (project / "synapse.toml").write_text(IDLE_CONFIG)
    code, out, _ = await run_cli("adapters", "status", "--json")
    assert code == 0 and not project_row(out)["current"]  # the setting asks for a hook that is not there yet
    assert (await run_cli("adapters", "install", "claude-code"))[0] == 0
    assert idle_hooks() == {"Stop": 1, "SessionStart": 1, "UserPromptSubmit": 0, "PreToolUse": 0}
    code, out, _ = await run_cli("adapters", "install", "claude-code")
    assert code == 0 and "unchanged" in out and idle_hooks()["Stop"] == 1  # idempotent
    _, out, _ = await run_cli("adapters", "status", "--json")
    assert project_row(out)["current"] and project_row(out)["will_run"]
    (project / "synapse.toml").write_text("[adapters.claude_code]\nidle_wake = false\n")
    assert (await run_cli("adapters", "install", "claude-code"))[0] == 0
    assert idle_hooks() == {"Stop": 0, "SessionStart": 0, "UserPromptSubmit": 0, "PreToolUse": 0}
    stop = json.loads(settings.read_text())["hooks"]["Stop"]
    assert stop[0] == {"hooks": [{"type": "command", "command": "notify-send done"}]}  # the user's hook stays
    assert (await run_cli("adapters", "uninstall", "claude-code"))[0] == 0
    assert settings.read_text() == original


async def test_idle_wait_fails_open(project: Path, hub: Hub) -> None:
    """Outside a backgrounded Claude Code hook, or with no identity, idle-wait exits 0 at once and says why."""
    (project / "synapse.toml").write_text(IDLE_CONFIG)
    env = {"SYN_IDENTITY": ID, "SYNAPSE_URI": hub.uri, "CLAUDE_CODE_ENTRYPOINT": "sdk-cli"}
    code, out, err = await run_cli("hook", "claude-code", "idle-wait", stdin=b"{}", env=env)
    assert (code, out) == (0, "") and "not waiting" in err
    code, out, err = await run_cli("hook", "codex", "idle-wait", stdin=b"{}", env=env)
    assert (code, out) == (0, "") and "no background idle wait" in err


async def tmux(sock: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run one tmux command against our own server (``-S sock``); return its stdout."""
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-S", str(sock), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_idle_interactive_session_is_woken_by_a_message(
    claude: Pin, project: Path, model: FakeModelServer, hub: Hub, tmp_path: Path
) -> None:
    """The interactive TUI, never prompted, sits idle at its composer; a message wakes it into a turn."""
    needs(shutil.which("tmux") is not None, "tmux")
    (project / "synapse.toml").write_text(IDLE_CONFIG)
    env = claude_env(model, project, hub)
    env.pop("TMUX", None)
    await install(env)
    sock = tmp_path / "tmux.sock"
    await tmux(
        sock, "new-session", "-d", "-s", "cc", "-x", "120", "-y", "40", "-c", str(project), str(claude.path), env=env
    )
    try:

        async def screen() -> str:
            return await tmux(sock, "capture-pane", "-p", "-t", "cc")

        await until_async(lambda: _shows(screen, "for shortcuts"), "the TUI's idle composer", 60)
        await until(lambda: f"{ID}-rx" in hub.core.roster.names, "the SessionStart idle wait to arm")
        assert not turns(model, ""), "the idle TUI asked the model something"
        await send(hub, "epsilon: the build on main is red")
        await asyncio.to_thread(
            model.wait_until, lambda: model.seen("epsilon: the build on main is red"), 60, "the woken request"
        )
        requests = [r for r in turns(model, "") if "epsilon" in text_of(r)]
        assert requests
        woken = [b for b in text_blocks(requests[0]) if "epsilon: the build on main is red" in b]
        assert len(woken) == 1 and "<task-notification>" in woken[0], woken
        await until_async(lambda: _shows(screen, "Done."), "the woken turn's answer on screen", 30)
    finally:
        await tmux(sock, "kill-server")
    await until(lambda: f"{ID}-rx" not in hub.core.roster.names, "the idle wait to end with its session")
    await until(lambda: not idle_waits_in(project), "every idle wait process to end with its session")


async def until_async(check: Any, what: str, timeout: float = 30) -> None:
    """:func:`until` for an async ``check``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


async def _shows(screen: Any, text: str) -> bool:
    return text in await screen()


async def test_message_between_turns_reaches_the_next_prompt(
    claude: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    """UserPromptSubmit: a message that arrives between two turns rides along with the next prompt, once."""
    env = claude_env(model, project, hub)
    await install(env)
    proc = await start_streaming(claude, project, env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(user_turn("first turn PROMPT-F"))
        await proc.stdin.drain()
        await read_until_result(proc)
        await send(hub, "zeta: the API freeze starts at noon")
        proc.stdin.write(user_turn("second turn PROMPT-G"))
        await proc.stdin.drain()
        await read_until_result(proc)
        requests = turns(model, "PROMPT-F")
        assert len(requests) == 2, [text_of(r)[-300:] for r in requests]
        assert "zeta" not in text_of(requests[0])
        with_prompt = [b for b in text_blocks(requests[1]) if "zeta: the API freeze starts at noon" in b]
        assert len(with_prompt) == 1 and "UserPromptSubmit hook" in with_prompt[0], text_blocks(requests[1])[-3:]
    finally:
        proc.terminate()
        await finish(proc)


# --------------------------------------------------------------------------- the idle wait on its own


async def idle_wait(env: dict[str, str]) -> asyncio.subprocess.Process:
    """``synapse hook claude-code idle-wait`` as an interactive Claude Code starts it: under a process named claude.

    The stand-in parent is ``sh`` started under the name ``claude`` (the idle
    wait only waits for a Claude Code process it can find and watch); it
    stays the hook's parent, as Claude Code's own ``sh -c`` does.
    """
    fake = Path(os.environ["HOME"]) / "bin" / "claude"
    if not fake.exists():
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.symlink_to(shutil.which("sh") or "/bin/sh")
    return await asyncio.create_subprocess_exec(
        str(fake),
        "-c",
        f'{SYNAPSE} hook claude-code idle-wait; exit "$?"',
        env={**os.environ, **env, "CLAUDE_CODE_ENTRYPOINT": "cli"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_idle_wait_wakes_with_exit_2_yields_and_times_out_quietly(project: Path, hub: Hub) -> None:
    """Exit 2 with the message on stderr; a newer wait takes over (the older exits 0); exit 0 at the timeout."""
    (project / "synapse.toml").write_text("[adapters.claude_code]\nidle_wake = true\nidle_wake_seconds = 60\n")
    env = {"SYN_IDENTITY": ID, "SYNAPSE_URI": hub.uri}
    older = await idle_wait(env)
    await until(lambda: f"{ID}-rx" in hub.core.roster.names, "the first idle wait to arm")
    first = hub.core.roster.names[f"{ID}-rx"]
    newer = await idle_wait(env)
    code, out, err = await finish(older, 30)
    assert (code, out) == (0, ""), err  # superseded: it yields without a word to the model
    await until(lambda: hub.core.roster.names.get(f"{ID}-rx") not in (None, first), "the newer idle wait to arm")
    await send(hub, "eta: ship it")
    code, out, err = await finish(newer, 30)
    assert code == 2 and out == "", err
    assert f"synapse: 1 new message(s) for {ID}:" in err and "boss -> api/claude-1: eta: ship it" in err
    assert f"[seq {read_int(mailbox_cursor_path(ID))}] boss" in err  # the cursor moved past it
    (project / "synapse.toml").write_text("[adapters.claude_code]\nidle_wake = true\nidle_wake_seconds = 1\n")
    code, out, err = await finish(await idle_wait(env), 30)
    assert (code, out) == (0, "") and "eta" not in err  # nothing new: it gives up quietly


async def test_stop_hook_and_idle_wait_of_one_stop_hand_a_message_over_once(project: Path, hub: Hub) -> None:
    """The Stop hook and the idle wait Claude Code starts with it race for the same message: it is handed over once."""
    (project / "synapse.toml").write_text("[adapters.claude_code]\nidle_wake = true\nidle_wake_seconds = 2\n")
    env = {"SYN_IDENTITY": ID, "SYNAPSE_URI": hub.uri}
    stop_input = json.dumps({"session_id": "s1", "hook_event_name": "Stop", "stop_hook_active": False}).encode()
    cursor = 0
    for i in range(3):
        text = f"theta-{i}: one copy only"
        await send(hub, text)
        waiter = await idle_wait(env)
        stop = await run_cli("hook", "claude-code", "stop", stdin=stop_input, env=env)
        woke = await finish(waiter, 30)
        handed = stop[1].count(text) + woke[2].count(text)
        assert handed == 1, (stop, woke)
        assert read_int(mailbox_cursor_path(ID)) > cursor  # it moved past this message, never back
        cursor = read_int(mailbox_cursor_path(ID))


async def test_an_idle_wait_that_outlives_its_session_takes_nothing(project: Path, hub: Hub, raw: RawFactory) -> None:
    """Its Claude Code gone, the idle wait ends and leaves a new message in the mailbox for the next session."""
    (project / "synapse.toml").write_text(IDLE_CONFIG)
    env = {"SYN_IDENTITY": ID, "SYNAPSE_URI": hub.uri}
    boss = await raw("boss")  # sends at once, inside the wait's one-second liveness poll
    waiter = await idle_wait(env)
    await until(lambda: f"{ID}-rx" in hub.core.roster.names, "the idle wait to arm")
    hook_pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _child_of(p, waiter.pid))
    waiter.kill()  # the session's process dies; its hook lives on, orphaned
    await until(lambda: _gone(waiter.pid), "the stand-in session to die")  # (wait() would wait for the hook too)
    await boss.chat_seq(ID, "iota: for whoever starts next")
    await until(lambda: not Path(f"/proc/{hook_pid}").exists(), "the orphaned idle wait to end")
    assert read_int(mailbox_cursor_path(ID)) == 0  # not taken
    code, out, _ = await run_cli("hook", "claude-code", "prompt", stdin=b"{}", env=env)
    assert code == 0 and "iota: for whoever starts next" in out
    await waiter.wait()


def idle_waits_in(project: Path) -> list[int]:
    """Pids of ``synapse hook claude-code idle-wait`` processes running in ``project`` (none may outlive a test)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if b"idle-wait" in (entry / "cmdline").read_bytes() and (entry / "cwd").resolve() == project.resolve():
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _gone(pid: int) -> bool:
    """No such process, or only its zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _child_of(proc_dir: Path, parent: int) -> bool:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent
    except (OSError, IndexError, ValueError):
        return False
