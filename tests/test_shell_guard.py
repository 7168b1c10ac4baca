"""``[guard] enforce_shell``: the assistants' shell tool runs under ``synapse run --enforce``.

The hook commands are fed the JSON Claude Code and Gemini CLI document for
their pre-tool events and must answer with exactly the rewritten input; the
rewritten command is then run for real (as the assistant's shell would run
it) in a real git repository against a real hub where another agent holds a
claim.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from synapse_channel import landlock
from synapse_channel.api import Session
from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, run_cli
from .test_edit_guard import hook as run_hook
from .test_run_enforce import make_repo, needs_landlock, run

ON = {"SYNAPSE_GUARD_ENFORCE_SHELL": "true"}
PREFIX = f"{shlex.quote(SYNAPSE)} run --enforce --no-claims-ok -- bash -c "


async def hook(assistant: str, payload: Any, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``synapse hook ASSISTANT pre-shell`` with ``payload`` on stdin; (exit code, stdout, stderr)."""
    return await run_hook(assistant, payload, env, cwd, "pre-shell")


async def shell(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``command`` the way the assistants' shell tools do: a ``bash -c`` in the tool's directory."""
    return await run("bash", "-c", command, cwd=cwd, env=env)


@pytest.fixture
async def repo(tmp_path: Path) -> Path:
    return await make_repo(tmp_path)


def claude_bash(command: str, cwd: Path) -> dict[str, Any]:
    """Claude Code's PreToolUse input for its Bash tool."""
    return {
        "session_id": "abc123",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": str(cwd),
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "write a file", "timeout": 120000},
        "tool_use_id": "toolu_01",
    }


def gemini_shell(command: str, cwd: Path) -> dict[str, Any]:
    """Gemini CLI's BeforeTool input for ``run_shell_command``."""
    return {
        "session_id": "s1",
        "transcript_path": "/tmp/t.json",
        "cwd": str(cwd),
        "hook_event_name": "BeforeTool",
        "timestamp": "2026-12-05T07:00:00.000Z",
        "tool_name": "run_shell_command",
        "tool_input": {"command": command, "description": "write a file", "dir_path": "mine"},
    }


@needs_landlock
async def test_claude_code_and_gemini_get_exactly_the_wrapped_command_once(repo: Path) -> None:
    me = {"SYN_IDENTITY": "shop/api", **ON}
    command = "printf '%s\\n' \"it's $HOME\" > other.txt && echo done"
    wrapped = PREFIX + shlex.quote(command)
    code, out, err = await hook("claude-code", claude_bash(command, repo), me, repo)
    assert code == 0, err
    expected = {"command": wrapped, "description": "write a file", "timeout": 120000}
    assert json.loads(out) == {"hookSpecificOutput": {"hookEventName": "PreToolUse", "updatedInput": expected}}
    assert "permissionDecision" not in out  # never auto-approves: Claude Code still asks as it would
    code, out, _ = await hook("claude-code", claude_bash(wrapped, repo), me, repo)
    assert (code, out) == (0, "")  # a second pass leaves it alone
    code, out, err = await hook("gemini", gemini_shell(command, repo), me, repo)
    assert code == 0, err
    expected = {"command": wrapped, "description": "write a file", "dir_path": "mine"}
    assert json.loads(out) == {"hookSpecificOutput": {"hookEventName": "BeforeTool", "tool_input": expected}}
    code, out, _ = await hook("gemini", gemini_shell(wrapped, repo), me, repo)
    assert (code, out) == (0, "{}")
    # a real prefix with something riding along after it is wrapped again, whole
    sneaky = f"{PREFIX}true; echo x > other.txt"
    _, out, _ = await hook("claude-code", claude_bash(sneaky, repo), me, repo)
    assert json.loads(out)["hookSpecificOutput"]["updatedInput"]["command"] == PREFIX + shlex.quote(sneaky)


async def test_other_tools_and_the_setting_off_pass_through_unchanged(repo: Path) -> None:
    me = {"SYN_IDENTITY": "shop/api", **ON}
    write = {**claude_bash("x", repo), "tool_name": "Write", "tool_input": {"file_path": "a", "content": "b"}}
    assert (await hook("claude-code", write, me, repo))[:2] == (0, "")
    off = {"SYN_IDENTITY": "shop/api"}
    assert (await hook("claude-code", claude_bash("echo x > other.txt", repo), off, repo))[:2] == (0, "")
    assert (await hook("gemini", gemini_shell("echo x > other.txt", repo), off, repo))[:2] == (0, "{}")
    (repo / "synapse.toml").write_text("[guard]\nenforce_shell = true\n")  # the project file turns it on too
    _, out, _ = await hook("claude-code", claude_bash("ls", repo), {**off, landlock.FAKE_ABSENT_ENV: "1"}, repo)
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"


async def test_refuses_with_a_way_out_when_it_cannot_confine(repo: Path) -> None:
    """No Landlock, no identity, unreadable input: a refusal naming enforce_shell, never an unconfined run."""
    me = {"SYN_IDENTITY": "shop/api", **ON}
    code, out, err = await hook("claude-code", claude_bash("ls", repo), {**me, landlock.FAKE_ABSENT_ENV: "1"}, repo)
    decision = json.loads(out)["hookSpecificOutput"]
    assert code == 0 and decision["permissionDecision"] == "deny" and "Traceback" not in err
    reason = decision["permissionDecisionReason"]
    assert "Landlock reported absent" in reason and "enforce_shell = false" in reason
    _, out, _ = await hook("gemini", gemini_shell("ls", repo), {**me, landlock.FAKE_ABSENT_ENV: "1"}, repo)
    assert json.loads(out)["decision"] == "deny" and "enforce_shell = false" in json.loads(out)["reason"]
    if not _has_landlock():
        return  # the identity check comes after Landlock's
    _, out, _ = await hook("claude-code", claude_bash("ls", repo), ON, repo)
    assert "SYN_IDENTITY" in json.loads(out)["hookSpecificOutput"]["permissionDecisionReason"]
    for junk in ("not json", "[1, 2]"):
        code, out, err = await hook("claude-code", junk, me, repo)
        assert code == 0 and json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
        assert "Traceback" not in err


def _has_landlock() -> bool:
    try:
        landlock.abi_version()
    except landlock.Unavailable:
        return False
    return True


@needs_landlock
async def test_rewritten_commands_cannot_clobber_another_agents_file(hub: Hub, repo: Path) -> None:
    scratch = repo.parent / "scratch"
    scratch.mkdir()
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri, "TMPDIR": str(scratch), **ON}

    async def rewritten(command: str) -> str:
        code, out, err = await hook("claude-code", claude_bash(command, repo), me, repo)
        assert code == 0, err
        return str(json.loads(out)["hookSpecificOutput"]["updatedInput"]["command"])

    async with Session("shop/web", uri=hub.uri) as web:
        await web.claim("WEB-1", ["other.txt"], worktree=str(repo))
        # holding nothing: reading works, writing in the work tree does not
        code, out, err = await shell(await rewritten("cat other.txt"), repo, me)
        assert (code, out) == (0, "v1\n") and "holds no claim" in err
        code, _, err = await shell(await rewritten("echo x > free.txt"), repo, me)
        assert code != 0 and "Permission denied" in err and (repo / "free.txt").read_text() == "v1\n"
        async with Session("shop/api", uri=hub.uri) as api:
            await api.claim("API-1", ["mine/"], worktree=str(repo))
            code, _, err = await shell(await rewritten("echo x > other.txt"), repo, me)
            assert code != 0 and "Permission denied" in err  # EACCES, from the shell's own redirection
            assert (repo / "other.txt").read_text() == "v1\n"
            grandchild = 'python3 -c \'import sys; open(sys.argv[1], "w").write("x")\' other.txt'
            code, _, err = await shell(await rewritten(grandchild), repo, me)
            assert code != 0 and "PermissionError" in err and (repo / "other.txt").read_text() == "v1\n"
            quoted = "printf '%s\\n' \"it's mine\" > mine/a.txt && cd mine && echo more >> a.txt"
            code, _, err = await shell(await rewritten(quoted), repo, me)
            assert code == 0, err
            assert (repo / "mine/a.txt").read_text() == "it's mine\nmore\n"  # own claimed file, quoting intact
            code, out, _ = await shell(await rewritten("exit 3"), repo, me)
            assert code == 3  # the command's exit status comes back unchanged
    code, _, err = await shell(await rewritten("echo x > free.txt"), repo, {**me, "SYNAPSE_URI": "ws://127.0.0.1:9"})
    assert code != 0 and "cannot read your claims" in err  # hub away: not run at all, never unconfined
    assert (repo / "free.txt").read_text() == "v1\n"


def groups_of(path: Path, event: str) -> list[tuple[str | None, str]]:
    doc = json.loads(path.read_text())
    return [
        (g.get("matcher"), h["command"].rsplit(" ", 1)[-1])
        for g in doc["hooks"].get(event, [])
        for h in g["hooks"]
        if "synapse hook" in h["command"]
    ]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


async def test_install_status_and_uninstall_round_trip_with_enforce_shell(project: Path) -> None:
    claude = project / ".claude" / "settings.json"
    gemini = project / ".gemini" / "settings.json"
    claude.parent.mkdir()
    audit = '{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit"}]}'
    original = '{\n  "hooks": {\n    "PreToolUse": [' + audit + "]\n  }\n}\n"
    claude.write_text(original)
    (project / "synapse.toml").write_text("[guard]\nenforce_shell = true\n")
    for args in (["claude-code"], ["gemini", "--trust"]):
        code, out, err = await run_cli("adapters", "install", *args)
        assert code == 0, out + err
    assert groups_of(claude, "PreToolUse") == [
        ("Write|Edit|MultiEdit|NotebookEdit", "pre-edit"),
        ("Bash", "pre-shell"),  # its own group beside the user's Bash group, not inside it
    ]
    assert groups_of(gemini, "BeforeTool") == [("write_file|replace", "pre-edit"), ("run_shell_command", "pre-shell")]
    user_hooks = [h for g in json.loads(claude.read_text())["hooks"]["PreToolUse"] for h in g["hooks"]]
    assert {"type": "command", "command": "audit"} in user_hooks  # the user's own Bash hook stays
    code, out, _ = await run_cli("adapters", "status", "--json")
    rows = {r["adapter"]: r["project"] for r in json.loads(out)}
    assert rows["claude-code"]["current"] is True and rows["gemini"]["current"] is True
    code, out, _ = await run_cli("adapters", "install", "claude-code")
    assert f"unchanged {claude}" in out  # idempotent
    (project / "synapse.toml").write_text("[guard]\nenforce_shell = false\n")
    code, out, _ = await run_cli("adapters", "status", "--json")
    row = next(r for r in json.loads(out) if r["adapter"] == "claude-code")["project"]
    assert row["current"] is False and "out of date" in row["why"]
    code, out, _ = await run_cli("adapters", "install", "claude-code")
    assert code == 0 and ("Bash", "pre-shell") not in groups_of(claude, "PreToolUse")
    assert ("Write|Edit|MultiEdit|NotebookEdit", "pre-edit") in groups_of(claude, "PreToolUse")
    (project / "synapse.toml").write_text("[guard]\nenforce_shell = true\n")
    code, out, _ = await run_cli("adapters", "install", "claude-code")
    assert ("Bash", "pre-shell") in groups_of(claude, "PreToolUse")
    for name in ("claude-code", "gemini"):
        code, out, err = await run_cli("adapters", "uninstall", name)
        assert code == 0, out + err
    assert claude.read_text() == original  # byte for byte
    assert not gemini.exists()
