"""`synapse mcp install` against the real, pinned assistants: their own `mcp list` shows our server.

In a fresh project Claude Code lists a ``.mcp.json`` server as pending the
user's approval (its own gate, which we leave to the user); once approved
(``enabledMcpjsonServers``, what its approval prompt records) its health
check starts ``synapse mcp serve`` and completes the MCP handshake.
After ``mcp uninstall`` it is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ..conftest import run_cli
from .conftest import installed


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


def mcp_list(claude: Path, cwd: Path) -> str:
    out = subprocess.run(
        [str(claude), "mcp", "list"], cwd=cwd, capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    return out.stdout + out.stderr


async def test_claude_mcp_list_shows_the_installed_server(project: Path) -> None:
    claude = installed("claude-code").path
    assert "synapse" not in mcp_list(claude, project)
    code, _, err = await run_cli("mcp", "install", "claude-code", "--name", "proj/alice")
    assert code == 0, err
    listed = mcp_list(claude, project)
    assert "synapse:" in listed and "mcp serve --name proj/alice" in listed, listed

    (project / ".claude").mkdir()
    (project / ".claude" / "settings.local.json").write_text(json.dumps({"enabledMcpjsonServers": ["synapse"]}))
    listed = mcp_list(claude, project)
    line = next(line for line in listed.splitlines() if line.startswith("synapse:"))
    assert "Connected" in line, listed  # Claude Code started our server and completed the MCP handshake

    code, _, err = await run_cli("mcp", "uninstall", "claude-code")
    assert code == 0, err
    assert not (project / ".mcp.json").exists()
    assert "synapse:" not in mcp_list(claude, project)


async def test_codex_and_gemini_list_the_installed_server(project: Path) -> None:
    """Their own `mcp list` reads what we wrote (Gemini shows it disabled until the folder is trusted)."""
    for assistant, scope, argv in (
        ("codex", "user", ["mcp", "list"]),
        ("gemini", "project", ["mcp", "list"]),
    ):
        pin = installed(assistant)
        code, _, err = await run_cli("mcp", "install", assistant, "--scope", scope, "--name", "proj/alice")
        assert code == 0, err
        out = subprocess.run([str(pin.path), *argv], cwd=project, capture_output=True, text=True, timeout=120)
        line = next((x for x in (out.stdout + out.stderr).splitlines() if "synapse" in x and "mcp serve" in x), "")
        assert "--name proj/alice" in line, (assistant, out.stdout, out.stderr)
        code, _, err = await run_cli("mcp", "uninstall", assistant, "--scope", scope)
        assert code == 0, err
