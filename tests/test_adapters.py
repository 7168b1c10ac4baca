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
    assert sum(f"hook {name} " in c for c in commands) == 4  # session-start, prompt, stop and the pre-edit guard
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
    assert len(row["project"]["events"]) == 4
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


async def _bridge(hub: Hub, sock: str, env: dict[str, str], *server: str) -> asyncio.subprocess.Process:
    """`synapse tmux-bridge --once` on the test's own tmux server (``--socket``, or ``server``), armed."""
    bridge = await asyncio.create_subprocess_exec(
        SYNAPSE,
        "tmux-bridge",
        "--session",
        "agent",
        "--identity",
        ID,
        "--uri",
        hub.uri,
        *(server or ("--socket", sock)),
        "--once",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + 60  # generous: a loaded 2-core machine, not a speed check
    while f"{ID}-pane-rx" not in hub.core.roster.names:
        assert time.monotonic() < deadline, "bridge never armed"
        assert bridge.returncode is None, await bridge.communicate()
        await asyncio.sleep(0.05)
    return bridge


async def _log_line(proc: asyncio.subprocess.Process, *needles: str, timeout: float = 60) -> str:
    """The first stderr line of ``proc`` that contains one of ``needles`` (fails at EOF or timeout)."""
    assert proc.stderr is not None
    async with asyncio.timeout(timeout):
        while line := (await proc.stderr.readline()).decode():
            if any(n in line for n in needles):
                return line
    raise AssertionError(f"the bridge ended without logging any of {needles}")


async def _typed(log: Path, lines: int, timeout: float = 20) -> list[str]:
    """The fake agent's typed lines once it has logged ``lines`` of them (it reads the pane on its own time)."""
    deadline = time.monotonic() + timeout
    while True:
        typed = log.read_text().splitlines() if log.exists() else []
        if len(typed) >= lines:
            await asyncio.sleep(0.3)  # a second, unwanted line would land now: the caller checks the count
            return log.read_text().splitlines()
        assert time.monotonic() < deadline, f"the agent logged {len(typed)} typed line(s), expected {lines}"
        await asyncio.sleep(0.05)


async def test_tmux_bridge_types_only_into_an_idle_pane(hub: Hub, tmp_path: Path) -> None:
    """Busy or a permission dialog: nothing typed; idle again: the fixed prompt, once, without message text.

    Then the restart case: a wake left pending by a stopped bridge whose
    message the agent has meanwhile read (acked on the hub) is dropped, not
    typed; the next message is typed as usual. Every tmux call goes to the
    test's own server through ``--socket`` (the default server does not exist).
    """
    needs(shutil.which("tmux") is not None, "tmux")
    state, log, script = tmp_path / "state", tmp_path / "typed.log", tmp_path / "agent.py"
    state.write_text("busy")
    script.write_text(FAKE_AGENT)
    sock = str(tmp_path / "tmux.sock")
    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path / "tmux-tmpdir")}  # -L servers here; no default server
    (tmp_path / "tmux-tmpdir").mkdir()
    env.pop("TMUX", None)
    tmux, named = ["tmux", "-S", sock], ["tmux", "-L", "synapse-test"]
    subprocess.run(
        [
            *tmux,
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
        bridge = await _bridge(hub, sock, env)
        await queue(hub, "secret instructions")
        await asyncio.sleep(1.5)
        assert not log.exists()  # busy: nothing typed
        state.write_text("dialog")
        await asyncio.sleep(1.5)
        assert not log.exists()  # a permission dialog: never Enter into it
        state.write_text("idle")
        _, err = await asyncio.wait_for(bridge.communicate(), 20)
        assert bridge.returncode == 0, err.decode()
        typed = await _typed(log, 1)
        assert len(typed) == 1 and typed[0].startswith("idle|")
        assert "run syn-inbox" in typed[0] and ID in typed[0] and "secret" not in typed[0]

        # A wake is pending (the agent is busy) when the bridge stops ...
        state.write_text("busy")
        bridge = await _bridge(hub, sock, env)
        await queue(hub, "second")
        await _log_line(bridge, "wake for")
        pending = json.loads((Path(os.environ["SYN_HOME"]) / "tmux-bridge" / "api%2Fclaude-1.json").read_text())
        assert pending["pending_wake"] and len(pending["seqs"]) == 1
        bridge.kill()
        await bridge.communicate()  # drains and closes its pipes
        # ... the agent reads the message itself (a hook acks it on the hub) ...
        reader = await open_raw(hub.uri, f"{ID}~hook-1")
        await reader.send("heartbeat", payload="online", protocol_version=7, quiet=True)
        await reader.expect("welcome")
        await reader.send("ack", "all", "", seq=pending["seqs"][0], mailbox_for=ID)
        await reader.sync()
        await reader.close()
        # ... so the restarted bridge drops that wake instead of typing it into the idle pane.
        state.write_text("idle")
        bridge = await _bridge(hub, sock, env)
        line = await _log_line(bridge, "dropped", "woke")
        assert "dropped" in line and str(pending["seqs"][0]) in line
        assert len(log.read_text().splitlines()) == 1
        await queue(hub, "third")
        await _log_line(bridge, "woke")
        assert await asyncio.wait_for(bridge.wait(), 10) == 0
        typed = await _typed(log, 2)
        assert len(typed) == 2 and typed[1].startswith("idle|") and "run syn-inbox" in typed[1]

        # -L NAME reaches the server `tmux -L NAME` runs; without a server option, tmux's default (absent here).
        subprocess.run([*named, "new-session", "-d", "-s", "agent", "sleep 60"], check=True, env=env)
        bridge = await _bridge(hub, sock, env, "-L", "synapse-test")
        bridge.kill()
        await bridge.communicate()  # drains and closes its pipes
        for server, code in (((), 1), (("--socket", sock, "-L", "synapse-test"), 2)):
            refused = await asyncio.create_subprocess_exec(
                SYNAPSE, "tmux-bridge", "--session", "agent", "--identity", ID, "--uri", hub.uri, *server,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(refused.communicate(), 20)
            assert refused.returncode == code, err.decode()
            assert ("tmux:" if code == 1 else "two different tmux servers") in err.decode()
    finally:
        if bridge is not None and bridge.returncode is None:
            bridge.kill()
        subprocess.run([*tmux, "kill-server"], env=env, check=False)
        subprocess.run([*named, "kill-server"], env=env, check=False, capture_output=True)


# Real Gemini CLI 0.61.0 screens in a 120x40 tmux pane (capture-pane -p -J; blank lines dropped).
GEMINI_FOOTER = """
                                                                                                        ? for shortcuts
────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
 Shift+Tab to accept edits

 >   Type your message or @path/to/file

 workspace (/directory)                                        sandbox                                           /model
 /tmp/tb/g/proj2                                               no sandbox                                          Auto
"""
GEMINI_TIPS = """
 Gemini CLI v0.61.0

Tips for getting started:
1. Create GEMINI.md files to customize your interactions
2. /help for more information
3. Ask coding questions, edit code or run commands
4. Be specific for the best results
"""
GEMINI_HOOKS_WARNING = """
⚠  WARNING: The following project-level hooks have been detected in this workspace:
     - /usr/bin/synapse hook gemini session-start
     - /usr/bin/synapse hook gemini prompt
   These hooks will be executed. If you did not configure these hooks or do not trust this project,
   please review the project settings (.gemini/settings.json) and remove them.
"""
GEMINI_TRUST_DIALOG = """
 ╭────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╮
 │                                                                                                                    │
 │ Do you trust the files in this folder?                                                                             │
 │                                                                                                                    │
 │ Trusting a folder allows Gemini CLI to load its local configurations, including custom commands, hooks, MCP        │
 │ servers, agent skills, and settings. These configurations could execute code on your behalf or change the behavior │
 │ of the CLI.                                                                                                        │
 │                                                                                                                    │
 │ ● 1. Trust folder (proj2)                                                                                          │
 │   2. Trust parent folder (g)                                                                                       │
 │   3. Don't trust                                                                                                   │
 │                                                                                                                    │
 ╰────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯
"""
# After "Trust folder" the CLI relaunched: the answered dialog's top has scrolled off the screen.
GEMINI_RELAUNCHED = """
 │ Trusting a folder allows Gemini CLI to load its local configurations, including custom commands, hooks, MCP        │
 │ servers, agent skills, and settings. These configurations could execute code on your behalf or change the behavior │
 │ of the CLI.                                                                                                        │
 │                                                                                                                    │
 │ ● 1. Trust folder (proj)                                                                                           │
 │   2. Trust parent folder (gem4)                                                                                    │
 │   3. Don't trust                                                                                                   │
 │                                                                                                                    │
 ╰────────────────────────────────────────────────────────────────────────────────────────────────────────────────────╯
 Gemini CLI is restarting to apply the trust changes...
 ▝▜▄     Gemini CLI v0.61.0
   ▝▜▄
  ▗▟▀    Authenticated with gemini-api-key /auth
 ▝▀
"""
GEMINI_BUSY = """
 > hi
 ⠙ Thinking... (esc to cancel, 0s)                                                                      ? for shortcuts
"""
GEMINI_HOOK_RUNNING = """
 > hi
 ⠧ Executing Hook: sleep 5; echo {} (esc to cancel, 1s)                                                 ? for shortcuts
"""


def test_pane_rules() -> None:
    """Idle composers pass; spinners, dialogs and numbered menus never do; harmless banners do not block."""
    sys.path.insert(0, str(ROOT / "plugins"))
    from synapse_tmux_bridge.patterns import WINDOW_LINES, PaneRules

    codex = PaneRules.for_agent("codex")
    assert codex.safe_to_type("OpenAI Codex\n\n› ")
    assert not codex.safe_to_type("› Working (3s • esc to interrupt)")
    assert not codex.safe_to_type("Allow Codex to run `make`?\n› 1. Yes\n  2. No")
    # Real Codex 0.171.0: idle after a turn, and working (the composer stays on screen below).
    codex_idle = (
        "› hello there\n\n• Done.\n\n  Worked for 4s • 19:34\n\n› Ask Codex to do anything\n\n  gpt-fake default"
    )
    assert codex.safe_to_type(codex_idle)
    assert not codex.safe_to_type("› hello there\n\n• Working (3s • esc to interrupt)\n\n› Ask Codex to do anything\n")
    claude = PaneRules.for_agent("claude")
    assert claude.safe_to_type("╭──╮\n│ > \n╰──╯\n  ? for shortcuts")
    assert not claude.safe_to_type("Do you want to proceed?\n❯ 1. Yes\n  2. No\n  ? for shortcuts")
    # Real Claude Code 2.1.197: idle, and working (an empty composer under the spinner).
    rule = "─" * 40
    assert claude.safe_to_type(f"❯ hello there\n\n● Done.\n\n✻ Churned for 3s\n\n{rule}\n❯\n{rule}\n  ? for shortcuts")
    assert not claude.safe_to_type(f"❯ hello there\n\n✢ Symbioting…\n\n{rule}\n❯\n{rule}\n  esc to interrupt")

    gemini = PaneRules.for_agent("gemini")
    # A fresh session: the numbered tips and the "do not trust this project" hooks warning are banners.
    assert gemini.safe_to_type(GEMINI_TIPS + GEMINI_FOOTER)
    assert gemini.safe_to_type(GEMINI_TIPS + GEMINI_HOOKS_WARNING + GEMINI_FOOTER)
    # The trust dialog left on screen after "Trust folder" restarted the CLI is history, not a dialog.
    restarted = "\n Gemini CLI is restarting to apply the trust changes...\n"
    assert gemini.safe_to_type(GEMINI_TRUST_DIALOG + restarted + GEMINI_TIPS + GEMINI_FOOTER)
    assert gemini.safe_to_type(GEMINI_RELAUNCHED + GEMINI_TIPS + GEMINI_FOOTER)
    assert not gemini.safe_to_type(GEMINI_RELAUNCHED + GEMINI_TIPS + GEMINI_TRUST_DIALOG)  # a new dialog below
    # Busy (the placeholder stays visible below the spinner), a hook running, the live trust dialog: never.
    assert not gemini.safe_to_type(GEMINI_TIPS + GEMINI_BUSY + GEMINI_FOOTER)
    assert not gemini.safe_to_type(GEMINI_TIPS + GEMINI_HOOKS_WARNING + GEMINI_HOOK_RUNNING + GEMINI_FOOTER)
    assert not gemini.safe_to_type(GEMINI_TIPS + GEMINI_TRUST_DIALOG)
    # A numbered list that is not the tips (a model's answer) still counts as a possible menu.
    assert not gemini.safe_to_type(" 1. Delete the branch\n 2. Keep it\n" + GEMINI_FOOTER)
    # Overrides replace a pattern; an empty ignore turns the banners back into blockers.
    assert not PaneRules.for_agent("gemini", ignore="").safe_to_type(GEMINI_TIPS + GEMINI_FOOTER)
    assert PaneRules.for_agent("gemini", unsafe=r"NEVER").safe_to_type(">   Type your message or @path/to/file")

    # The check after typing reads the same window as the one before: a menu above it blocks neither.
    prompt = "new synapse messages for api/claude-1: run syn-inbox, handle what is addressed to you"
    above = " 1. Delete the branch\n 2. Keep it\n" + "\n".join(f"line {n}" for n in range(WINDOW_LINES))
    before = above + GEMINI_FOOTER
    assert gemini.safe_to_type(before)
    after = before.replace("Type your message or @path/to/file", prompt)
    assert gemini.typed_safely(after, prompt)
    # A prompt the TUI wrapped over two lines still counts as shown.
    wrapped = before.replace("Type your message or @path/to/file", prompt[:30] + "\n   " + prompt[30:])
    assert gemini.typed_safely(wrapped, prompt)
    # Not shown (typed into something else), or the pane went busy meanwhile: do not press Enter.
    assert not gemini.typed_safely(before, prompt)
    assert not gemini.typed_safely(after + GEMINI_BUSY, prompt)
