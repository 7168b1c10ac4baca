"""Re-install keeps hooks current, and install/status/doctor say whether the assistant will run them.

These use Claude Code (no trust gate of its own); the trust gates of Codex and
Gemini are proven against the real CLIs in tests/assistants/.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import run_cli


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    return root


def stop_timeouts(path: Path) -> list[int]:
    doc = json.loads(path.read_text())
    return [h["timeout"] for g in doc["hooks"]["Stop"] for h in g["hooks"] if "synapse hook" in h["command"]]


async def status_row(scope: str = "project") -> dict[str, object]:
    code, out, _ = await run_cli("adapters", "status", "--json")
    assert code == 0
    row = next(r for r in json.loads(out) if r["adapter"] == "claude-code")
    return dict(row[scope])


async def test_reinstall_after_a_setting_changed_updates_the_stop_timeout(project: Path) -> None:
    """A longer stop wait must reach the installed hook, or the assistant kills the waiting hook."""
    settings = project / ".claude" / "settings.json"
    code, out, _ = await run_cli("adapters", "install", "claude-code")
    assert code == 0 and "they will run" in out
    assert stop_timeouts(settings) == [15]
    (project / "synapse.toml").write_text("[adapters.claude_code]\nstop_wait_seconds = 40\n")
    row = await status_row()
    assert row["installed"] is True and row["current"] is False
    assert row["step"] == "synapse adapters install claude-code" and "out of date" in str(row["why"])
    code, out, _ = await run_cli("doctor", "--no-hub")
    assert "claude-code hooks (project) installed hooks are out of date" in out
    code, out, _ = await run_cli("adapters", "install", "claude-code")
    assert code == 0 and f"updated {settings}" in out
    assert stop_timeouts(settings) == [55]  # 15 s for the hook itself + the 40 s wait
    row = await status_row()
    assert row["current"] is True and row["will_run"] is True and row["step"] is None
    code, out, _ = await run_cli("adapters", "install", "claude-code")
    assert f"unchanged {settings}" in out  # idempotent again


async def test_reinstall_moves_a_stale_command_in_place_and_drops_duplicates(project: Path) -> None:
    """A venv that moved leaves our command pointing nowhere: re-install rewrites it where it stands."""
    settings = project / ".claude" / "settings.json"
    settings.parent.mkdir()
    stale = {"type": "command", "command": "/old/venv/bin/synapse hook claude-code stop", "timeout": 15}
    user = {"type": "command", "command": "notify-send done"}
    doc = {"hooks": {"Stop": [{"hooks": [user, stale]}, {"hooks": [dict(stale)]}]}}
    settings.write_text(json.dumps(doc))
    code, _, _ = await run_cli("adapters", "install", "claude-code")
    assert code == 0
    groups = json.loads(settings.read_text())["hooks"]["Stop"]
    ours = [h["command"] for g in groups for h in g["hooks"] if "synapse hook" in h["command"]]
    assert len(ours) == 1 and not ours[0].startswith("/old/")
    assert len(groups) == 1  # the group only the duplicate filled is gone
    assert groups[0]["hooks"][0] == user  # the user's hook and its group stay first


async def test_status_reports_not_installed_with_the_install_step(project: Path) -> None:
    row = await status_row("project")
    assert row["installed"] is False and row["will_run"] is False
    assert row["step"] == "synapse adapters install claude-code"
    user = await status_row("user")
    assert user["step"] == "synapse adapters install claude-code --scope user"
