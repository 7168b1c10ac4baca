"""Assistant adapters: hook I/O against a real hub, install/uninstall round trips, the tmux bridge."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, needs, open_raw, run_cli

ROOT = Path(__file__).resolve().parent.parent
ID = "api/claude-1"


async def hook(
    name: str, event: str, payload: dict[str, Any] | str, hub_uri: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run `synapse hook NAME EVENT` with ``payload`` on stdin, as the assistant does."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return await run_cli(
        "hook", name, event, stdin=data.encode(), env={"SYN_IDENTITY": ID, "SYNAPSE_URI": hub_uri, **(env or {})}
    )


def claude_input(event: str, **extra: Any) -> dict[str, Any]:
    """The documented Claude Code / Codex hook input fields."""
    return {"session_id": "sess-1", "transcript_path": "/tmp/t.jsonl", "cwd": "/tmp", "hook_event_name": event, **extra}


async def queue(hub: Hub, *texts: str, target: str = ID) -> None:
    for text in texts:
        await run_cli("send", "--uri", hub.uri, "--name", "boss", "--target", target, text)


@pytest.mark.parametrize(("name", "empty"), [("claude-code", ""), ("codex", "{}")])
async def test_session_start_prompt_and_stop(name: str, empty: str, hub: Hub) -> None:
    """Catch-up at session start, new messages on prompt, a block on stop, then quiet."""
    c = await open_raw(hub.uri, ID)
    await c.send("claim", task_id="API-7", paths=["src/api"])
    await c.expect("claim_granted")
    await c.send("ledger_task", task_id="T-1", title="Parser")
    await c.expect("ledger_task_posted")
    await c.close()
    await queue(hub, "first", "second")
    code, out, _ = await hook(name, "session-start", claude_input("SessionStart", source="startup"), hub.uri)
    ctx = json.loads(out)["hookSpecificOutput"]
    assert code == 0 and ctx["hookEventName"] == "SessionStart"
    text = ctx["additionalContext"]
    assert "2 new message(s) for api/claude-1" in text and "boss -> api/claude-1: first" in text
    assert "API-7 (src/api)" in text and "T-1 Parser" in text
    code, out, _ = await hook(name, "prompt", claude_input("UserPromptSubmit", prompt="go on"), hub.uri)
    assert (code, out.strip()) == (0, empty)  # already handed over at session start
    await queue(hub, "third")
    code, out, _ = await hook(name, "prompt", claude_input("UserPromptSubmit", prompt="go on"), hub.uri)
    ctx = json.loads(out)["hookSpecificOutput"]
    assert ctx["hookEventName"] == "UserPromptSubmit" and "third" in ctx["additionalContext"]
    await queue(hub, "fourth")
    code, out, _ = await hook(name, "stop", claude_input("Stop", stop_hook_active=False), hub.uri)
    decision = json.loads(out)
    assert code == 0 and decision["decision"] == "block" and "fourth" in decision["reason"]
    code, out, _ = await hook(name, "stop", claude_input("Stop", stop_hook_active=True), hub.uri)
    assert (code, out.strip()) == (0, empty)  # handed over once: now it may stop


async def test_gemini_events_and_deny(hub: Hub) -> None:
    """Gemini: BeforeAgent context, AfterAgent deny (a retry prompt), JSON-only stdout."""
    await queue(hub, "for gemini")
    base = {"session_id": "g1", "transcript_path": "/tmp/g", "cwd": "/tmp", "timestamp": "2026-11-28T00:00:00Z"}
    code, out, _ = await hook("gemini", "prompt", {**base, "hook_event_name": "BeforeAgent", "prompt": "hi"}, hub.uri)
    ctx = json.loads(out)["hookSpecificOutput"]
    assert ctx["hookEventName"] == "BeforeAgent" and "for gemini" in ctx["additionalContext"]
    await queue(hub, "later")
    after = {
        **base,
        "hook_event_name": "AfterAgent",
        "prompt": "hi",
        "prompt_response": "done",
        "stop_hook_active": False,
    }
    code, out, _ = await hook("gemini", "stop", after, hub.uri)
    assert json.loads(out)["decision"] == "deny" and "later" in json.loads(out)["reason"]
    code, out, _ = await hook("gemini", "stop", after, hub.uri)
    assert (code, json.loads(out)) == (0, {})


async def test_stop_loop_guard_caps_continuations(hub: Hub) -> None:
    """With stop_hook_active and 3 continuations in a row, the agent may stop even with mail waiting."""
    for i in range(4):
        await queue(hub, f"burst {i}")
        code, out, _ = await hook("claude-code", "stop", claude_input("Stop", stop_hook_active=i > 0), hub.uri)
        if i < 3:
            assert json.loads(out)["decision"] == "block"
        else:
            assert (code, out) == (0, ""), out
    code, out, _ = await hook("claude-code", "stop", claude_input("Stop", stop_hook_active=False), hub.uri)
    assert json.loads(out)["decision"] == "block" and "burst 3" in json.loads(out)["reason"]


async def test_stop_wait_keeps_a_finished_agent_available(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[adapters.claude_code] stop_wait_seconds: a message arriving within the window keeps it going."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synapse.toml").write_text("[adapters.claude_code]\nstop_wait_seconds = 10\n")
    task = asyncio.ensure_future(hook("claude-code", "stop", claude_input("Stop", stop_hook_active=False), hub.uri))
    await asyncio.sleep(1.0)
    assert not task.done()
    await queue(hub, "just in time")
    code, out, _ = await asyncio.wait_for(task, 20)
    assert code == 0
    assert json.loads(out)["decision"] == "block" and "just in time" in json.loads(out)["reason"]


@pytest.mark.parametrize(("name", "empty"), [("claude-code", ""), ("codex", "{}"), ("gemini", "{}")])
async def test_hooks_fail_open(name: str, empty: str, hub: Hub) -> None:
    """Hub down, garbage stdin or no identity: exit 0, the assistant's empty output, a note on stderr."""
    code, out, err = await hook(name, "stop", claude_input("Stop"), "ws://127.0.0.1:9")
    assert (code, out.strip()) == (0, empty) and "synapse hook:" in err
    code, out, err = await hook(name, "prompt", "{not json", hub.uri)
    assert (code, out.strip()) == (0, empty) and "unreadable" in err
    code, out, err = await run_cli("hook", name, "prompt", stdin=b"{}", env={"SYNAPSE_URI": hub.uri})
    assert (code, out.strip()) == (0, empty) and "no identity" in err


# --------------------------------------------------------------------------- install / uninstall

CLAUDE_SETTINGS = """{
  "model": "opus",
  "permissions": {"allow": ["Bash(npm test:*)"]},
  "hooks": {
    "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./guard.sh"}]}],
    "Stop": [{"hooks": [{"type": "command", "command": "notify-send done", "timeout": 5}]}]
  }
}
"""

GEMINI_SETTINGS = '{\n    "theme": "Default",\n    "hooks": {\n        "BeforeTool": []\n    }\n}\n'


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize(
    ("name", "rel", "original"),
    [
        ("claude-code", ".claude/settings.json", CLAUDE_SETTINGS),
        ("codex", ".codex/hooks.json", None),
        ("gemini", ".gemini/settings.json", GEMINI_SETTINGS),
    ],
)
async def test_install_uninstall_roundtrip_is_byte_exact(
    name: str, rel: str, original: str | None, project: Path, tmp_path: Path
) -> None:
    """Install merges (keeping every user key and hook), is idempotent, and uninstall restores the bytes."""
    path = project / rel
    if original is not None:
        path.parent.mkdir(parents=True)
        path.write_text(original)
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text('model = "o4"\n\n[features]\nweb_search = true\n')
    env = {"CODEX_HOME": str(codex_home)}
    code, out, _ = await run_cli("adapters", "install", name, "--dry-run", env=env)
    assert code == 0 and f"synapse hook {name} stop" in out
    assert (path.read_text() if path.exists() else None) == original  # dry run changed nothing
    code, out, _ = await run_cli("adapters", "install", name, env=env)
    gated = {"gemini", "codex"}  # folder/hook trust: installed, but exit 3 with the step left
    assert code == (3 if name in gated else 0), out
    doc = json.loads(path.read_text())
    commands = [h["command"] for groups in doc["hooks"].values() for g in groups for h in g.get("hooks", [])]
    assert sum(f"hook {name} " in c for c in commands) == 3
    if original:
        before = json.loads(original)
        for key, value in before.items():
            if key != "hooks":
                assert doc[key] == value
        for event, groups in before["hooks"].items():
            assert all(g in doc["hooks"][event] for g in groups)
    first = path.read_bytes()
    code, out, _ = await run_cli("adapters", "install", name, env=env)
    assert path.read_bytes() == first and "unchanged" in out  # idempotent
    if name == "codex":  # current Codex runs hooks without a feature flag: config.toml is left alone
        assert (codex_home / "config.toml").read_text() == 'model = "o4"\n\n[features]\nweb_search = true\n'
    code, out, _ = await run_cli("adapters", "status", "--json", env=env)
    row = next(r for r in json.loads(out) if r["adapter"] == name)
    assert len(row["project"]["events"]) == 3
    assert (await run_cli("adapters", "uninstall", name, env=env))[0] == 0
    if original is None:
        assert not path.exists()
    else:
        assert path.read_text() == original
    assert (codex_home / "config.toml").read_text() == 'model = "o4"\n\n[features]\nweb_search = true\n'
    assert not list(path.parent.glob("*.synapse-*")) if path.parent.exists() else True


async def test_uninstall_keeps_later_user_edits(project: Path) -> None:
    """If the user edited the file after install, uninstall removes only our hooks and keeps the edit."""
    path = project / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(CLAUDE_SETTINGS)
    await run_cli("adapters", "install", "claude-code")
    doc = json.loads(path.read_text())
    doc["model"] = "sonnet"
    path.write_text(json.dumps(doc, indent=2))
    await run_cli("adapters", "uninstall", "claude-code")
    after = json.loads(path.read_text())
    expected = json.loads(CLAUDE_SETTINGS)
    expected["model"] = "sonnet"
    assert after == expected


async def test_install_refuses_a_broken_file(project: Path) -> None:
    """A settings file that is not JSON is reported and left untouched."""
    path = project / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text("{ this is not json")
    code, _, err = await run_cli("adapters", "install", "claude-code")
    assert code == 1 and "not valid JSON" in err and path.read_text() == "{ this is not json"


# --------------------------------------------------------------------------- tmux bridge

FAKE_AGENT = r"""
import os, sys, threading, time
state_file, log_file = sys.argv[1], sys.argv[2]
screens = {
    "idle": "fake-agent ready\n\n> ",
    "busy": "Working on it... (esc to interrupt)\n",
    "dialog": "Allow command `rm -rf build`?\n  1. Yes\n  2. No\n",
}
shown = None
def render():
    global shown
    while True:
        try:
            state = open(state_file).read().strip()
        except OSError:
            state = "busy"
        if state != shown:
            shown = state
            sys.stdout.write("\x1b[2J\x1b[H" + screens[state])
            sys.stdout.flush()
        time.sleep(0.05)
threading.Thread(target=render, daemon=True).start()
for line in sys.stdin:
    state = open(state_file).read().strip()
    with open(log_file, "a") as fh:
        fh.write(f"{state}|{line.rstrip()}\n")
"""


async def test_tmux_bridge_types_only_into_an_idle_pane(hub: Hub, tmp_path: Path) -> None:
    """Busy or a permission dialog: nothing typed; idle again: the fixed prompt, once, without message text."""
    needs(shutil.which("tmux") is not None, "tmux")
    state, log, script = tmp_path / "state", tmp_path / "typed.log", tmp_path / "agent.py"
    state.write_text("busy")
    script.write_text(FAKE_AGENT)
    sock = str(tmp_path / "tmux.sock")
    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path)}
    env.pop("TMUX", None)
    subprocess.run(
        [
            "tmux",
            "-S",
            sock,
            "new-session",
            "-d",
            "-s",
            "agent",
            "-x",
            "120",
            "-y",
            "30",
            f"{sys.executable} {script} {state} {log}",
        ],
        check=True,
        env=env,
    )
    bridge = None
    try:
        wrapper = tmp_path / "tmux"
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("tmux")} -S {sock} "$@"\n')
        wrapper.chmod(0o755)
        benv = {**env, "PATH": f"{tmp_path}:{Path(SYNAPSE).parent}:{env['PATH']}"}
        bridge = await asyncio.create_subprocess_exec(
            SYNAPSE,
            "tmux-bridge",
            "--session",
            "agent",
            "--identity",
            ID,
            "--uri",
            hub.uri,
            "--once",
            env=benv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while f"{ID}-pane-rx" not in hub.core.roster.names:
            assert time.monotonic() < deadline, "bridge never armed"
            await asyncio.sleep(0.05)
        await queue(hub, "secret instructions")
        await asyncio.sleep(1.5)
        assert not log.exists()  # busy: nothing typed
        state.write_text("dialog")
        await asyncio.sleep(1.5)
        assert not log.exists()  # a permission dialog: never Enter into it
        state.write_text("idle")
        _, err = await asyncio.wait_for(bridge.communicate(), 20)
        assert bridge.returncode == 0, err.decode()
        await asyncio.sleep(0.3)
        typed = log.read_text().splitlines()
        assert len(typed) == 1 and typed[0].startswith("idle|")
        assert "run syn-inbox" in typed[0] and ID in typed[0] and "secret" not in typed[0]
    finally:
        if bridge is not None and bridge.returncode is None:
            bridge.kill()
        subprocess.run(["tmux", "-S", sock, "kill-server"], env=env, check=False)


def test_pane_rules() -> None:
    """Idle composers pass; spinners, dialogs and numbered menus never do."""
    sys.path.insert(0, str(ROOT / "plugins"))
    from synapse_tmux_bridge.patterns import PaneRules

    codex = PaneRules.for_agent("codex")
    assert codex.safe_to_type("OpenAI Codex\n\n› ")
    assert not codex.safe_to_type("› Working (3s • esc to interrupt)")
    assert not codex.safe_to_type("Allow Codex to run `make`?\n› 1. Yes\n  2. No")
    claude = PaneRules.for_agent("claude")
    assert claude.safe_to_type("╭──╮\n│ > \n╰──╯\n  ? for shortcuts")
    assert not claude.safe_to_type("Do you want to proceed?\n❯ 1. Yes\n  2. No\n  ? for shortcuts")
    gemini = PaneRules.for_agent("gemini", unsafe=r"NEVER")
    assert gemini.safe_to_type(">   Type your message or @path/to/file")
