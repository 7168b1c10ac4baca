"""Bundled adapter: Gemini CLI (``.gemini/settings.json`` hooks).

SessionStart and BeforeAgent add ``hookSpecificOutput.additionalContext``;
AfterAgent answers ``{"decision": "deny", "reason": ...}``, which Gemini CLI
turns into a new prompt (the equivalent of Claude Code's stop block). stdout
must be JSON only, so "nothing to say" is ``{}``; timeouts are milliseconds.
See docs/adapters.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from synapse_channel.adapters import HookAdapter, project_root
from synapse_channel.hookspecs import hookimpl


class Gemini(HookAdapter):
    """Gemini CLI: command hooks in settings.json, JSON in and out, timeouts in milliseconds."""

    name = "gemini"
    title = "Gemini CLI"
    events: ClassVar[dict[str, str]] = {"session-start": "SessionStart", "prompt": "BeforeAgent", "stop": "AfterAgent"}
    timeout_in_ms = True
    empty_output = "{}"
    docs_url = "https://geminicli.com/docs/hooks/reference"

    def config_path(self, scope: str) -> Path:
        return (Path("~/.gemini").expanduser() if scope == "user" else project_root() / ".gemini") / "settings.json"

    def block_output(self, text: str) -> str:
        return json.dumps({"decision": "deny", "reason": text})


@hookimpl
def register_wake_adapters(register: Any) -> None:
    """Offer the Gemini CLI adapter."""
    register(Gemini.name, Gemini())


@hookimpl
def register_settings(register: Any) -> None:
    """``[adapters.gemini] stop_wait_seconds``."""
    register(
        "adapters.gemini.stop_wait_seconds",
        float,
        0.0,
        "On AfterAgent with nothing waiting, wait up to this long for a message before letting Gemini stop.",
    )
