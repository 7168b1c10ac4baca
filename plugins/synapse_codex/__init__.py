"""Bundled adapter: Codex CLI (``.codex/hooks.json`` plus the hooks feature flag).

Codex reads the same envelope as Claude Code (``hookSpecificOutput`` with
``additionalContext``; Stop: ``decision: "block"`` + ``reason``) but rejects
an empty stdout on some events, so "nothing to say" is ``{}``. Hooks need the
feature flag in ``~/.codex/config.toml``; install adds it between marker
comments and uninstall removes exactly those lines. See docs/adapters.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

from synapse_channel.adapters import Change, HookAdapter, project_root
from synapse_channel.hookspecs import hookimpl

MARK = "# synapse-channel: codex hooks"


def codex_home() -> Path:
    """``$CODEX_HOME`` or ``~/.codex``."""
    return Path(os.environ.get("CODEX_HOME") or str(Path("~/.codex").expanduser()))


def with_flag(text: str) -> str:
    """``config.toml`` text with the hooks feature flag on (marked as ours), unless it is already set."""
    if re.search(r"^\s*(codex_hooks|hooks)\s*=", text, re.M) and "[features]" in text:
        return text  # the user already decided; never override
    line = f"codex_hooks = true  {MARK}\n"
    header = re.search(r"^\[features\][ \t]*(#.*)?\n", text, re.M)
    if header:
        return text[: header.end()] + line + text[header.end() :]
    sep = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{sep}[features]  {MARK}\n{line}"


def without_flag(text: str) -> str:
    """``config.toml`` text with exactly our marked lines removed."""
    return "".join(ln for ln in text.splitlines(keepends=True) if MARK not in ln)


class Codex(HookAdapter):
    """Codex CLI: hooks.json beside the config layer, JSON in and out, timeouts in seconds."""

    name = "codex"
    title = "Codex CLI"
    events: ClassVar[dict[str, str]] = {"session-start": "SessionStart", "prompt": "UserPromptSubmit", "stop": "Stop"}
    empty_output = "{}"
    docs_url = "https://developers.openai.com/codex/hooks"

    def config_path(self, scope: str) -> Path:
        return (codex_home() if scope == "user" else project_root() / ".codex") / "hooks.json"

    def extra_changes(self, scope: str, installing: bool) -> list[Change]:
        path = codex_home() / "config.toml"
        before = path.read_text() if path.exists() else None
        after: str | None = with_flag(before or "") if installing else without_flag(before or "")
        if not installing and (before is None or (after == "" and MARK in before)):
            after = None  # nothing there, or a file only we wrote: remove it
        return [Change(path, before, after)]


@hookimpl
def register_wake_adapters(register: Any) -> None:
    """Offer the Codex adapter."""
    register(Codex.name, Codex())


@hookimpl
def register_settings(register: Any) -> None:
    """``[adapters.codex] stop_wait_seconds``."""
    register(
        "adapters.codex.stop_wait_seconds",
        float,
        0.0,
        "On Stop with nothing waiting, wait up to this long for a message before letting Codex stop.",
    )
