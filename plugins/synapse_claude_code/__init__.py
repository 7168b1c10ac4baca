"""Bundled adapter: Claude Code (``.claude/settings.json`` hooks).

SessionStart and UserPromptSubmit add ``hookSpecificOutput.additionalContext``;
Stop answers ``{"decision": "block", "reason": ...}`` to keep Claude working on
waiting messages, and honours ``stop_hook_active``. See docs/adapters.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from synapse_channel.adapters import HookAdapter, project_root
from synapse_channel.hookspecs import hookimpl


class ClaudeCode(HookAdapter):
    """Claude Code: command hooks in settings.json, JSON in and out, timeouts in seconds."""

    name = "claude-code"
    title = "Claude Code"
    events: ClassVar[dict[str, str]] = {"session-start": "SessionStart", "prompt": "UserPromptSubmit", "stop": "Stop"}
    empty_output = ""
    docs_url = "https://docs.claude.com/en/docs/claude-code/hooks"

    def config_path(self, scope: str) -> Path:
        if scope == "user":
            base = os.environ.get("CLAUDE_CONFIG_DIR") or str(Path("~/.claude").expanduser())
            return Path(base) / "settings.json"
        return project_root() / ".claude" / "settings.json"


@hookimpl
def register_wake_adapters(register: Any) -> None:
    """Offer the Claude Code adapter."""
    register(ClaudeCode.name, ClaudeCode())


@hookimpl
def register_settings(register: Any) -> None:
    """``[adapters.claude_code] stop_wait_seconds``."""
    register(
        "adapters.claude_code.stop_wait_seconds",
        float,
        0.0,
        "On Stop with nothing waiting, wait up to this long for a message before letting Claude stop.",
    )
