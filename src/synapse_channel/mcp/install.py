"""``synapse mcp install``: our server in an assistant's own MCP config, merged, idempotent, restorable.

Each assistant keeps its MCP servers in its own file (checked against the
pinned CLIs' own ``mcp add``):

* Claude Code: ``.mcp.json`` (project) or ``~/.claude.json`` (user), ``mcpServers``;
* Codex: ``.codex/config.toml`` (project; Codex reads it only in a trusted
  project) or ``$CODEX_HOME/config.toml`` (user), ``[mcp_servers.NAME]``;
* Gemini CLI: ``.gemini/settings.json`` or ``~/.gemini/settings.json``, ``mcpServers``.

The merge, backup and exact restore are :mod:`synapse_channel.adapters.settings_file`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters import project_root, synapse_command
from ..adapters.settings_file import (
    Change,
    apply,
    plan_server_install,
    plan_server_uninstall,
    server_entry,
)

#: The server's name in every assistant's config.
SERVER_NAME = "synapse"
ASSISTANTS = ("claude-code", "codex", "gemini")


@dataclass(frozen=True, slots=True)
class Target:
    """Where one assistant keeps its MCP servers in one scope, and how an entry is shaped."""

    assistant: str
    scope: str
    path: Path
    section: str

    def entry(self, args: list[str]) -> dict[str, Any]:
        """Our server entry: the absolute ``synapse`` (no PATH lookup by the assistant) and ``mcp serve ARGS``."""
        body: dict[str, Any] = {"command": synapse_command(), "args": ["mcp", "serve", *args]}
        if self.assistant == "claude-code":
            body = {"type": "stdio", **body}  # what `claude mcp add` writes
        return body


def _codex_home() -> Path:
    return Path(os.environ.get("CODEX_HOME") or str(Path("~/.codex").expanduser()))


def target(assistant: str, scope: str) -> Target:
    """The config file ``assistant`` reads its MCP servers from in ``scope`` (``project`` or ``user``)."""
    home = Path("~").expanduser()
    root = project_root()
    if assistant == "claude-code":
        path = root / ".mcp.json" if scope == "project" else home / ".claude.json"
        return Target(assistant, scope, path, "mcpServers")
    if assistant == "codex":
        path = root / ".codex" / "config.toml" if scope == "project" else _codex_home() / "config.toml"
        return Target(assistant, scope, path, "mcp_servers")
    if assistant == "gemini":
        base = root if scope == "project" else home
        return Target(assistant, scope, base / ".gemini" / "settings.json", "mcpServers")
    raise ValueError(f"unknown assistant {assistant!r}; known: {', '.join(ASSISTANTS)}")


def plan(assistant: str, scope: str, installing: bool, args: list[str] | None = None) -> Change:
    """The edit an install (with ``mcp serve ARGS``) or an uninstall would make."""
    where = target(assistant, scope)
    if installing:
        return plan_server_install(where.path, where.section, SERVER_NAME, where.entry(args or []))
    return plan_server_uninstall(where.path, where.section, SERVER_NAME)


def install(assistant: str, scope: str, args: list[str] | None = None) -> Change:
    """Merge our server in (idempotent); returns the change made."""
    change = plan(assistant, scope, True, args)
    apply(change, installing=True)
    return change


def uninstall(assistant: str, scope: str) -> Change:
    """Remove exactly our server; the original bytes come back when nothing else changed."""
    change = plan(assistant, scope, False)
    apply(change, installing=False)
    return change


def installed(assistant: str, scope: str) -> dict[str, Any] | None:
    """Our entry in ``assistant``'s ``scope`` config, if there is one."""
    where = target(assistant, scope)
    return server_entry(where.path, where.section, SERVER_NAME)
