"""`synapse mcp install|uninstall`: merged into each assistant's MCP config, idempotent, restored byte for byte.

Runs the real CLI on real files in a temporary project and $HOME; the
formats are the ones the pinned assistants' own `mcp add` write (checked in
tests/assistants/test_mcp_install_real.py against the real Claude Code).
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .conftest import SYNAPSE, run_cli

# The user's own file before we touch it: odd indentation, another server, other keys, a comment (TOML).
ORIGINALS: dict[str, tuple[str, str]] = {
    "claude-code": (
        ".mcp.json",
        '{\n    "mcpServers": {\n        "other": {"command": "npx", "args": ["x"]}\n    }\n}\n',
    ),
    "gemini": (
        ".gemini/settings.json",
        '{\n  "theme": "dark",\n  "mcpServers": {\n    "other": {\n      "command": "other-mcp"\n    }\n  }\n}\n',
    ),
    "codex": (
        ".codex/config.toml",
        '# my codex settings\nmodel = "o4"  # keep me\n\n[mcp_servers.other]\ncommand = "other-mcp"\nargs = ["--x"]\n',
    ),
}
USER_FILES = {"claude-code": ".claude.json", "gemini": ".gemini/settings.json", "codex": ".codex/config.toml"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


def servers(path: Path) -> dict[str, Any]:
    text = path.read_text()
    doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    found = doc.get("mcp_servers" if path.suffix == ".toml" else "mcpServers", {})
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("assistant", sorted(ORIGINALS))
async def test_install_merges_is_idempotent_and_uninstall_restores_the_bytes(assistant: str, project: Path) -> None:
    """Another server and every other key survive; a second install changes nothing; uninstall gives the bytes back."""
    rel, original = ORIGINALS[assistant]
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(original)

    code, out, err = await run_cli("mcp", "install", assistant, "--name", "proj/alice")
    assert code == 0, err
    assert f"updated {path}" in out
    found = servers(path)
    assert set(found) == {"other", "synapse"}
    assert found["synapse"]["command"] == SYNAPSE
    assert found["synapse"]["args"] == ["mcp", "serve", "--name", "proj/alice"]
    if assistant == "claude-code":
        assert found["synapse"]["type"] == "stdio"
    if assistant == "codex":
        assert path.read_text().startswith('# my codex settings\nmodel = "o4"  # keep me\n')
    if assistant == "gemini":
        assert json.loads(path.read_text())["theme"] == "dark"
    installed = path.read_bytes()

    code, out, err = await run_cli("mcp", "install", assistant, "--name", "proj/alice")
    assert code == 0 and f"unchanged {path}" in out, (out, err)
    assert path.read_bytes() == installed

    code, out, err = await run_cli("mcp", "uninstall", assistant)
    assert code == 0, err
    assert path.read_text() == original
    assert not list(path.parent.glob("*.synapse-*"))  # markers gone with the last of our entries


@pytest.mark.parametrize("assistant", sorted(ORIGINALS))
async def test_a_file_we_created_is_deleted_on_uninstall(assistant: str, project: Path) -> None:
    path = project / ORIGINALS[assistant][0]
    code, _, err = await run_cli("mcp", "install", assistant)
    assert code == 0, err
    assert servers(path)["synapse"]["args"] == ["mcp", "serve"]
    code, out, err = await run_cli("mcp", "uninstall", assistant)
    assert code == 0 and f"removed {path}" in out, (out, err)
    assert not path.exists()


@pytest.mark.parametrize("assistant", sorted(USER_FILES))
async def test_user_scope_writes_the_home_config(assistant: str, project: Path, tmp_path: Path) -> None:
    home_file = tmp_path / "home" / USER_FILES[assistant]
    home_file.parent.mkdir(parents=True, exist_ok=True)
    original = '{"numStartups": 3, "projects": {}}\n' if home_file.suffix == ".json" else 'model = "o4"\n'
    home_file.write_text(original)
    code, _, err = await run_cli("mcp", "install", assistant, "--scope", "user")
    assert code == 0, err
    assert "synapse" in servers(home_file)
    assert not (project / ORIGINALS[assistant][0]).exists()
    code, _, err = await run_cli("mcp", "uninstall", assistant, "--scope", "user")
    assert code == 0, err
    assert home_file.read_text() == original


@pytest.mark.parametrize("assistant", ["codex", "gemini"])
async def test_edits_made_after_install_survive_uninstall(assistant: str, project: Path) -> None:
    """When the user changed the file since, uninstall removes only our entry (no restore over their edit)."""
    rel, original = ORIGINALS[assistant]
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(original)
    code, _, err = await run_cli("mcp", "install", assistant)
    assert code == 0, err
    if path.suffix == ".toml":
        path.write_text(path.read_text() + '\n[mcp_servers.later]\ncommand = "later-mcp"\n')
    else:
        doc = json.loads(path.read_text())
        doc["mcpServers"]["later"] = {"command": "later-mcp"}
        path.write_text(json.dumps(doc, indent=2) + "\n")
    code, _, err = await run_cli("mcp", "uninstall", assistant)
    assert code == 0, err
    assert set(servers(path)) == {"other", "later"}
    if path.suffix == ".toml":
        assert path.read_text().startswith('# my codex settings\nmodel = "o4"  # keep me\n')


async def test_a_server_named_synapse_that_is_not_ours_is_never_overwritten(project: Path) -> None:
    path = project / ".mcp.json"
    original = '{"mcpServers": {"synapse": {"command": "someone-elses"}}}\n'
    path.write_text(original)
    code, out, err = await run_cli("mcp", "install", "claude-code")
    assert code == 1 and "synapse did not install" in err and "Traceback" not in err, (out, err)
    assert path.read_text() == original
    code, out, err = await run_cli("mcp", "uninstall", "claude-code")
    assert code == 0 and path.read_text() == original


async def test_broken_config_is_a_one_line_error(project: Path) -> None:
    (project / ".codex").mkdir()
    (project / ".codex" / "config.toml").write_text("model = \n")
    code, _, err = await run_cli("mcp", "install", "codex")
    assert code == 1 and "not valid TOML" in err and len(err.strip().splitlines()) == 1, err


async def test_hooks_and_the_server_share_geminis_settings_and_both_uninstall_exactly(project: Path) -> None:
    """Gemini keeps hooks and MCP servers in one file: either order of uninstall ends on the original bytes."""
    path = project / ".gemini" / "settings.json"
    path.parent.mkdir()
    original = '{\n    "theme": "dark"\n}\n'
    for first, second in ((("mcp",), ("adapters",)), (("adapters",), ("mcp",))):
        path.write_text(original)
        for verb in ("adapters", "mcp"):
            code, _, err = await run_cli(verb, "install", "gemini")
            assert code in (0, 3), err  # 3: Gemini's folder trust still to do (not this test's subject)
        doc = json.loads(path.read_text())
        assert "synapse" in doc["mcpServers"] and doc["hooks"]
        code, _, err = await run_cli(*first, "uninstall", "gemini")
        assert code == 0, err
        assert list(path.parent.glob("*.synapse-backup"))  # the other feature is still installed: backup kept
        code, _, err = await run_cli(*second, "uninstall", "gemini")
        assert code == 0, err
        assert path.read_text() == original, (first, path.read_text())


async def test_dry_run_prints_the_diff_and_changes_nothing(project: Path) -> None:
    code, out, err = await run_cli("mcp", "install", "gemini", "--dry-run")
    assert code == 0, err
    assert '"mcpServers"' in out and "+" in out
    assert not (project / ".gemini").exists()


def test_the_mcp_server_talks_to_the_hub_only_through_the_public_api() -> None:
    """synapse_channel.mcp stands on synapse_channel.api: no CLI internals, no client/core/hub modules."""
    import ast

    package = Path(__file__).resolve().parents[1] / "src" / "synapse_channel" / "mcp"
    forbidden = ("cli", "client", "core", "hub", "store", "protocol")
    found = []
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                names = [module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.replace("synapse_channel.", "..").lstrip(".").split(".")
                if parts[0] in forbidden:
                    found.append(f"{source.name}: {name}")
    assert not found, found
