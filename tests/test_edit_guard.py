"""The assistants' pre-edit hooks, fed their documented JSON, against a real hub and a real repository."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from synapse_channel.api import Session
from synapse_channel.hub.server import Hub

from .conftest import SYNAPSE, TIMEOUT


async def hook(
    assistant: str, payload: Any, env: dict[str, str], cwd: Path, event: str = "pre-edit"
) -> tuple[int, str, str]:
    """Run ``synapse hook ASSISTANT EVENT`` with ``payload`` on stdin; (exit code, stdout, stderr)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    proc = await asyncio.create_subprocess_exec(
        SYNAPSE,
        "hook",
        assistant,
        event,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(data.encode()), TIMEOUT * 2)
    assert proc.returncode is not None
    return proc.returncode, out.decode().strip(), err.decode()


@pytest.fixture
async def repo(tmp_path: Path) -> Path:
    top = tmp_path / "repo"
    (top / "src").mkdir(parents=True)
    (top / "src" / "api.py").write_text("x = 1\n")
    proc = await asyncio.create_subprocess_exec("git", "init", "-q", str(top))
    assert await proc.wait() == 0
    return top.resolve()


def claude(tool: str, **tool_input: Any) -> dict[str, Any]:
    return {"cwd": "/", "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input}


async def test_claude_code_denies_another_agents_file_and_allows_its_own(hub: Hub, repo: Path) -> None:
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri}
    async with Session("shop/web", uri=hub.uri) as web, Session("shop/api", uri=hub.uri) as api:
        await web.claim("WEB-3", ["src/api.py", "nb/"], worktree=str(repo), ttl=1800)
        await api.claim("API-1", ["docs/"], worktree=str(repo))
        write = claude("Write", file_path=str(repo / "src/api.py"), content="y")
        code, out, _ = await hook("claude-code", write, me, repo)
        assert code == 0
        decision = json.loads(out)["hookSpecificOutput"]
        assert (decision["hookEventName"], decision["permissionDecision"]) == ("PreToolUse", "deny")
        reason = decision["permissionDecisionReason"]
        assert "src/api.py is claimed by shop/web" in reason and "task WEB-3" in reason
        assert "lease until" in reason and "synapse send shop/web" in reason
        notebook = claude("NotebookEdit", notebook_path=str(repo / "nb/a.ipynb"), new_source="")
        code, out, _ = await hook("claude-code", notebook, me, repo)  # a new file inside a claimed directory
        assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
        for allowed in (
            claude("Edit", file_path=str(repo / "docs/guide.md"), old_string="a", new_string="b"),  # my claim
            claude("MultiEdit", file_path=str(repo / "README.md"), edits=[]),  # unclaimed
            claude("Read", file_path=str(repo / "src/api.py")),  # not a write
        ):
            code, out, err = await hook("claude-code", allowed, me, repo)
            assert (code, out) == (0, ""), err
        code, out, _ = await hook(
            "claude-code", claude("Edit", file_path=str(repo / "src/api.py")), {**me, "SYN_IDENTITY": "shop/web"}, repo
        )
        assert (code, out) == (0, "")  # the holder edits its own file


async def test_gemini_before_tool_denies_relative_paths_from_its_cwd(hub: Hub, repo: Path) -> None:
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri}
    async with Session("shop/web", uri=hub.uri) as web:
        await web.claim("WEB-4", ["src/"], worktree=str(repo))
        payload = {
            "session_id": "g1",
            "cwd": str(repo / "src"),
            "hook_event_name": "BeforeTool",
            "timestamp": "2026-12-04T18:00:00Z",
            "tool_name": "replace",
            "tool_input": {"file_path": "api.py", "old_string": "1", "new_string": "2"},
        }
        code, out, _ = await hook("gemini", payload, me, repo)
        answer = json.loads(out)
        assert code == 0 and answer["decision"] == "deny" and "src/api.py is claimed by shop/web" in answer["reason"]
        payload["tool_input"] = {"file_path": str(repo / "README.md"), "content": "hi"}
        payload["tool_name"] = "write_file"
        assert (await hook("gemini", payload, me, repo))[:2] == (0, "{}")


async def test_codex_apply_patch_is_denied_by_its_target_files(hub: Hub, repo: Path) -> None:
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri}
    patch = "*** Begin Patch\n*** Update File: README.md\n@@\n-a\n+b\n*** Update File: src/api.py\n*** End Patch\n"
    payload = {"cwd": str(repo), "hook_event_name": "PreToolUse", "tool_name": "apply_patch"}
    async with Session("shop/web", uri=hub.uri) as web:
        await web.claim("WEB-5", ["src/api.py"], worktree=str(repo))
        code, out, _ = await hook("codex", {**payload, "tool_input": {"command": patch}}, me, repo)
        decision = json.loads(out)["hookSpecificOutput"]
        assert code == 0 and decision["permissionDecision"] == "deny"
        assert "src/api.py is claimed by shop/web (task WEB-5" in decision["permissionDecisionReason"]
        free = patch.replace("src/api.py", "src/new.py")
        assert (await hook("codex", {**payload, "tool_input": {"command": free}}, me, repo))[:2] == (0, "{}")


async def test_unreachable_hub_allows_with_a_note_or_refuses_when_configured(repo: Path) -> None:
    down = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": "ws://127.0.0.1:9"}
    payload = claude("Write", file_path=str(repo / "src/api.py"), content="y")
    code, out, err = await hook("claude-code", payload, down, repo)
    assert (code, out) == (0, "") and "claims not checked" in err and "Traceback" not in err
    code, out, err = await hook("claude-code", payload, {**down, "SYNAPSE_GUARD_REFUSE_OFFLINE": "1"}, repo)
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny" and "Traceback" not in err


async def test_garbage_input_allows_without_a_traceback(hub: Hub, repo: Path) -> None:
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri}
    for junk in ("not json", "[1, 2]", json.dumps({"tool_name": "Write", "tool_input": "x"}), ""):
        code, out, err = await hook("claude-code", junk, me, repo)
        assert (code, out) == (0, "") and "Traceback" not in err


def test_install_entries_carry_the_edit_matchers() -> None:
    from synapse_claude_code import ClaudeCode
    from synapse_codex import Codex
    from synapse_gemini import Gemini

    for adapter, event, matcher in (
        (ClaudeCode(), "PreToolUse", "Write|Edit|MultiEdit|NotebookEdit"),
        (Gemini(), "BeforeTool", "write_file|replace"),
        (Codex(), "PreToolUse", "apply_patch"),
    ):
        group = adapter.entries()[event]
        assert group["matcher"] == matcher
        assert group["hooks"][0]["command"].endswith(f"hook {adapter.name} pre-edit")


async def owned(session: Session, owner: str) -> dict[str, Any]:
    """The live claims of ``owner``, by task id (their raw fields)."""
    return {c.task_id: dict(c.raw) for c in await session.claims() if c.owner == owner}


async def test_auto_claim_claims_on_first_edit_extends_and_is_released_when_the_turn_ends(hub: Hub, repo: Path) -> None:
    assert (
        await (await asyncio.create_subprocess_exec("git", "-C", str(repo), "checkout", "-q", "-b", "feat")).wait() == 0
    )
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri, "SYNAPSE_CLAIMS_AUTO": "1"}
    async with Session("shop/obs", uri=hub.uri) as obs:
        code, out, err = await hook(
            "claude-code", claude("Write", file_path=str(repo / "src/api.py"), content="y"), me, repo
        )
        assert (code, out) == (0, ""), err
        claims = await owned(obs, "shop/api")
        assert list(claims) == ["auto/shop/api/feat"]
        claim = claims["auto/shop/api/feat"]
        assert claim["paths"] == ["src/api.py"] and claim["worktree"] == str(repo)
        assert claim["git"] == {"branch": "feat", "auto_release_on": "merge"}
        edit = claude("Edit", file_path=str(repo / "docs/new.md"), old_string="", new_string="x")
        assert (await hook("claude-code", edit, me, repo))[:2] == (0, "")
        claim = (await owned(obs, "shop/api"))["auto/shop/api/feat"]
        assert claim["paths"] == ["docs/new.md", "src/api.py"]  # one claim, extended
        # the claim now keeps another agent out, through its own guard
        other = {**me, "SYN_IDENTITY": "shop/web", "SYNAPSE_CLAIMS_AUTO": "0"}
        code, out, _ = await hook("claude-code", claude("Write", file_path=str(repo / "src/api.py")), other, repo)
        reason = json.loads(out)["hookSpecificOutput"]["permissionDecisionReason"]
        assert "src/api.py is claimed by shop/api (task auto/shop/api/feat" in reason
        # the same file again: nothing new to claim, the epoch stays
        assert (await hook("claude-code", claude("Write", file_path=str(repo / "src/api.py")), me, repo))[:2] == (0, "")
        assert (await owned(obs, "shop/api"))["auto/shop/api/feat"]["epoch"] == claim["epoch"]
        # the turn ends: the stop hook lets the agent stop and releases the auto-claim
        code, out, err = await hook("claude-code", {"session_id": "s1", "stop_hook_active": False}, me, repo, "stop")
        assert (code, out) == (0, "") and "released auto/shop/api/feat" in err
        assert await owned(obs, "shop/api") == {}


async def test_auto_claim_merge_mode_outlives_the_turn_and_never_takes_another_agents_file(
    hub: Hub, repo: Path
) -> None:
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri, "SYNAPSE_CLAIMS_AUTO": "1", "SYN_TASK": "API-7"}
    (repo / "synapse.toml").write_text('[claims]\nauto_release = "merge"\nauto_ttl = 600\n')
    async with Session("shop/obs", uri=hub.uri) as obs, Session("shop/web", uri=hub.uri) as web:
        assert (await hook("claude-code", claude("Write", file_path=str(repo / "a.py")), me, repo))[:2] == (0, "")
        claim = (await owned(obs, "shop/api"))["auto/shop/api/API-7"]
        assert claim["paths"] == ["a.py"] and 590 < claim["lease_expires_at"] - claim["claimed_at"] <= 600
        assert (await hook("claude-code", {"session_id": "s2"}, me, repo, "stop"))[:2] == (0, "")
        assert "auto/shop/api/API-7" in await owned(obs, "shop/api")  # merge mode: still held after the turn
        await web.claim("WEB-9", ["b.py"], worktree=str(repo))
        code, out, _ = await hook("claude-code", claude("Write", file_path=str(repo / "b.py")), me, repo)
        assert code == 0
        assert (
            "b.py is claimed by shop/web (task WEB-9"
            in json.loads(out)["hookSpecificOutput"]["permissionDecisionReason"]
        )
        assert (await owned(obs, "shop/api"))["auto/shop/api/API-7"]["paths"] == ["a.py"]  # nothing of b.py taken


async def test_auto_claim_after_its_lease_lapsed_keeps_the_new_file_when_an_old_one_was_taken(
    hub: Hub, repo: Path
) -> None:
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri, "SYNAPSE_CLAIMS_AUTO": "1", "SYN_TASK": "API-8"}
    (repo / "synapse.toml").write_text("[claims]\nauto_ttl = 1\n")
    async with Session("shop/obs", uri=hub.uri) as obs, Session("shop/web", uri=hub.uri) as web:
        assert (await hook("claude-code", claude("Write", file_path=str(repo / "a.py")), me, repo))[:2] == (0, "")
        assert "auto/shop/api/API-8" in await owned(obs, "shop/api")
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while "auto/shop/api/API-8" in await owned(obs, "shop/api"):  # the 1 s lease lapses
            assert asyncio.get_running_loop().time() < deadline, "the auto-claim's lease never lapsed"
            await asyncio.sleep(0.2)
        await web.claim("WEB-1", ["a.py"], worktree=str(repo))
        code, out, err = await hook("claude-code", claude("Write", file_path=str(repo / "c.py")), me, repo)
        assert (code, out) == (0, ""), err
        assert (await owned(obs, "shop/api"))["auto/shop/api/API-8"]["paths"] == ["c.py"]


async def test_the_pre_edit_hook_does_not_import_asyncio(hub: Hub, repo: Path) -> None:
    """It runs before every file write the assistant makes: the blocking guard client, no event loop to start."""
    import sys

    payload = json.dumps(claude("Write", file_path=str(repo / "src/api.py"), content="y"))
    script = (
        "import io, sys\n"
        f"sys.stdin = io.StringIO({payload!r})\n"
        "from synapse_channel.cli import main\n"
        "try:\n"
        "    main(['hook', 'claude-code', 'pre-edit'])\n"
        "finally:\n"
        "    print('asyncio' in sys.modules, file=sys.stderr)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=repo,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri},
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    assert err.decode().strip().splitlines()[-1] == "False", err.decode()


async def test_auto_claim_is_renewed_by_an_edit_once_half_its_lease_is_gone(hub: Hub, repo: Path) -> None:
    me = {"SYN_IDENTITY": "shop/api", "SYNAPSE_URI": hub.uri, "SYNAPSE_CLAIMS_AUTO": "1", "SYN_TASK": "API-9"}
    (repo / "synapse.toml").write_text("[claims]\nauto_ttl = 8\n")
    write = claude("Write", file_path=str(repo / "a.py"))
    async with Session("shop/obs", uri=hub.uri) as obs:
        assert (await hook("claude-code", write, me, repo))[:2] == (0, "")
        first = (await owned(obs, "shop/api"))["auto/shop/api/API-9"]
        assert (await hook("claude-code", write, me, repo))[:2] == (0, "")  # at once: nothing to renew yet
        assert (await owned(obs, "shop/api"))["auto/shop/api/API-9"]["epoch"] == first["epoch"]
        await asyncio.sleep(4.5)  # past half of the 8 s lease
        assert (await hook("claude-code", write, me, repo))[:2] == (0, "")
        again = (await owned(obs, "shop/api"))["auto/shop/api/API-9"]
        assert again["lease_expires_at"] > first["lease_expires_at"] and again["paths"] == ["a.py"]
