"""``[guard] enforce_shell`` against the real, pinned assistant CLIs: their shell commands run confined.

The fake model (:mod:`.fake_anthropic`, :mod:`.fake_gemini`) asks for one
shell call; the CLI runs our pre-tool hook, which rewrites the command to run
under ``synapse run --enforce``; the tool result the CLI sends back to the
model is read from the recorded request. Codex has no such hook: its whole
session runs under ``synapse run --enforce`` instead. Needs Landlock (skips without it, fails
under ``CI=true``), a real hub and a real git repository.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from synapse_channel.api import Session
from synapse_channel.hub.server import Hub

from ..conftest import SYNAPSE, run_cli
from ..test_run_enforce import needs_landlock
from .conftest import installed
from .fake_anthropic import call_tool
from .fake_gemini import call_tool as gemini_call
from .fake_gemini import serve as gemini_serve
from .fake_gemini import setup as gemini_setup
from .fake_openai import serve as openai_serve
from .fakebase import FakeModelServer
from .install import Pin
from .test_claude_code import ID, claude, claude_env, finish, install, model, project, start_claude, turns
from .test_codex import ID as CODEX_ID
from .test_codex import codex_env
from .test_codex import finish as codex_finish
from .test_gemini import GEMINI_TIMEOUT, IDENTITY, SCRUB, start_gemini

__all__ = ["claude", "model", "project"]  # fixtures, imported for pytest


def tool_results(model: FakeModelServer, marker: str) -> list[dict[str, Any]]:
    """Every ``tool_result`` block Claude Code sent back to the model in the session marked ``marker``."""
    found = []
    for rec in turns(model, marker):
        for message in (rec.json() or {}).get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                found += [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    return found


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return str(content)


async def bash_once(pin: Pin, project: Path, env: dict[str, str], model: FakeModelServer, command: str, marker: str,
                    *flags: str) -> list[dict[str, Any]]:  # fmt: skip
    call_tool(model, "Bash", {"command": command, "description": "write a file"})
    code, _, err = await finish(await start_claude(pin, project, env, "-p", f"do it {marker}", *flags))
    assert code == 0, err
    return tool_results(model, marker)


@needs_landlock
async def test_bash_cannot_clobber_another_agents_file_but_writes_its_own(
    claude: Pin, project: Path, model: FakeModelServer, hub: Hub
) -> None:
    for name in ("other.txt", "mine.txt"):
        (project / name).write_text("v1\n")
    (project / "synapse.toml").write_text("[guard]\nenforce_shell = true\n")
    env = claude_env(model, project, hub)
    await install(env)
    doc = json.loads((project / ".claude" / "settings.json").read_text())
    shell = [g for g in doc["hooks"]["PreToolUse"] if g.get("matcher") == "Bash"]
    assert [h["command"].rsplit(" ", 2)[-2:] for g in shell for h in g["hooks"]] == [["claude-code", "pre-shell"]]
    async with Session("shop/web", uri=hub.uri) as web, Session(ID, uri=hub.uri) as me:
        await web.claim("WEB-1", ["other.txt"], worktree=str(project.resolve()))
        await me.claim("API-1", ["mine.txt"], worktree=str(project.resolve()))
        allowed = ("--allowedTools", "Bash")
        results = await bash_once(claude, project, env, model, "echo x > other.txt", "SHELL-A", *allowed)
        assert len(results) == 1, results
        text = result_text(results[0])
        assert "other.txt: Permission denied" in text and results[0].get("is_error") is True, results[0]
        assert f"writes limited to 1 claim(s) of {ID}" in text  # what the model is told, from synapse run
        assert (project / "other.txt").read_text() == "v1\n"
        results = await bash_once(claude, project, env, model, "echo mine > mine.txt", "SHELL-B", *allowed)
        assert len(results) == 1 and results[0].get("is_error") is not True, results
        assert (project / "mine.txt").read_text() == "mine\n"
        # Claude Code checks its permission rules against the rewritten command: a prefix rule no longer
        # matches (docs/adapters.md says so), a rule naming the confined form does
        prefix = ("--allowedTools", "Bash(echo:*)")
        results = await bash_once(claude, project, env, model, "echo p > mine.txt", "SHELL-P", *prefix)
        assert len(results) == 1 and "requires approval" in result_text(results[0]), results
        confined = ("--allowedTools", f"Bash({SYNAPSE} run --enforce --no-claims-ok -- bash -c:*)")
        results = await bash_once(claude, project, env, model, "echo mine > mine.txt", "SHELL-Q", *confined)
        assert len(results) == 1 and results[0].get("is_error") is not True, results
        # no auto-approval: without a rule allowing Bash, claude -p still refuses to run it at all
        results = await bash_once(claude, project, env, model, "echo again > mine.txt", "SHELL-C")
        assert len(results) == 1 and results[0].get("is_error") is True, results
        assert (project / "mine.txt").read_text() == "mine\n"


# --------------------------------------------------------------------------- Gemini CLI


def function_responses(server: FakeModelServer) -> list[dict[str, Any]]:
    """Every ``functionResponse`` part Gemini sent back to the model."""
    found = []
    for rec in list(server.requests):
        if not rec.path.split("?")[0].endswith(":streamGenerateContent"):
            continue
        for content in (rec.json() or {}).get("contents", []):
            for part in content.get("parts") or []:
                if isinstance(part, dict) and "functionResponse" in part:
                    found.append(part["functionResponse"])
    return found


@needs_landlock
async def test_gemini_shell_cannot_clobber_another_agents_file(project: Path, hub: Hub) -> None:
    """Gemini CLI 0.61 (``--approval-mode yolo``): a ``run_shell_command`` call runs confined, dir and all."""
    pin = installed("gemini")
    for name in ("other.txt", "mine.txt"):
        (project / name).write_text("v1\n")
    (project / "synapse.toml").write_text("[guard]\nenforce_shell = true\n")
    home = Path(os.environ["HOME"])
    with gemini_serve() as server:
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        env.update({**gemini_setup(server, home, project), "SYN_IDENTITY": IDENTITY, "SYNAPSE_URI": hub.uri})
        code, out, err = await run_cli("adapters", "install", "gemini", "--trust", env=env)
        assert code == 0, out + err
        async with Session("shop/web", uri=hub.uri) as web, Session(IDENTITY, uri=hub.uri) as me:
            await web.claim("WEB-1", ["other.txt"], worktree=str(project.resolve()))
            await me.claim("G-1", ["mine.txt"], worktree=str(project.resolve()))
            for command, marker in (("echo x > other.txt", "G-A"), ("echo mine > mine.txt", "G-B")):
                gemini_call(server, "run_shell_command", {"command": command, "description": "write a file"})
                proc = await start_gemini(pin, env, project, "-p", f"do it {marker}", "--approval-mode", "yolo")
                _, err = await asyncio.wait_for(proc.communicate(), GEMINI_TIMEOUT)
                assert proc.returncode == 0, err.decode()
        responses = [str(r["response"].get("output")) for r in function_responses(server)]
    assert len(responses) == 2, responses
    assert "other.txt: Permission denied" in responses[0] and f"1 claim(s) of {IDENTITY}" in responses[0]
    assert "modified by a hook" in responses[0]  # Gemini tells the model its input was rewritten
    assert (project / "other.txt").read_text() == "v1\n"
    assert "Permission denied" not in responses[1] and (project / "mine.txt").read_text() == "mine\n"


# --------------------------------------------------------------------------- Codex CLI: the whole session confined


@needs_landlock
async def test_codex_session_runs_whole_under_synapse_run_enforce(project: Path, hub: Hub) -> None:
    """No shell hook for Codex: ``synapse run --enforce --allow $CODEX_HOME -- codex`` runs the session confined.

    Codex 0.171 needs its home writable (it refuses to start otherwise, as docs/claims.md says); every
    process it then starts inherits the rule set, as tests/test_run_enforce.py shows for any grandchild.
    """
    pin = installed("codex")
    (project / "mine.txt").write_text("v1\n")
    with openai_serve() as server:
        env = codex_env(server, project, hub)
        async with Session(CODEX_ID, uri=hub.uri) as me:
            await me.claim("C-1", ["mine.txt"], worktree=str(project.resolve()))
            for allow in ((), ("--allow", env["CODEX_HOME"])):
                argv = ("run", "--enforce", *allow, "--", str(pin.path), "exec", f"say hi PROMPT-{len(allow)}")
                proc = await asyncio.create_subprocess_exec(
                    SYNAPSE, *argv, cwd=project, env=env, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                code, out, err = await codex_finish(proc)
                if not allow:
                    assert code != 0 and "Permission denied" in err, err
                else:
                    assert code == 0 and out.strip() == "Done.", err
                    assert f"writes limited to 1 claim(s) of {CODEX_ID}" in err
