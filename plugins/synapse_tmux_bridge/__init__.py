"""Bundled plugin: ``synapse tmux-bridge``, a safe wake for assistants in tmux panes.

Idle, unsafe and ignored screen patterns per assistant are data (``patterns.py``),
overridable in ``[adapters.tmux_bridge]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from synapse_channel.api.cli import connection_options
from synapse_channel.hookspecs import hookimpl

from .patterns import PATTERNS


@click.command("tmux-bridge")
@click.option("--session", "target", required=True, help="tmux target: session, or session:window.pane.")
@connection_options(name_help="The seat whose directed messages wake this pane (required; --identity is an alias).")
@click.option("--agent", type=click.Choice(sorted(PATTERNS)), default="generic", show_default=True)
@click.option("--prompt", help="What to type (no message text is ever typed); {identity} is filled in.")
@click.option("--once", is_flag=True, help="Exit after the first typed wake.")
@click.option("--socket", "-S", "socket", type=click.Path(dir_okay=False), help="tmux server socket path (as tmux -S).")
@click.option("--socket-name", "-L", "socket_name", help="tmux server socket name (as tmux -L).")
def tmux_bridge(
    target: str,
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    agent: str,
    prompt: str | None,
    once: bool,
    socket: str | None,
    socket_name: str | None,
) -> None:
    """Type a fixed wake prompt into an idle assistant pane when a message for IDENTITY arrives.

    Without --socket/-L, tmux's own default applies ($TMUX inside tmux, else
    the default server).
    """
    import asyncio
    import logging
    import sys

    from synapse_channel.api import setting
    from synapse_channel.api.cli import refuse_insecure, resolve_token

    from .bridge import DEFAULT_PROMPT, Bridge, Tmux, TmuxError
    from .patterns import PaneRules

    if not name:
        raise click.UsageError("say whose messages wake the pane: --name IDENTITY")
    identity = name
    if socket and socket_name:
        raise click.UsageError("--socket and --socket-name (-L) name two different tmux servers; pass one")

    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")

    def override(key: str) -> str | None:
        value = setting(f"adapters.tmux_bridge.{key}")
        return None if value is None else str(value)

    rules = PaneRules.for_agent(
        agent, override(f"{agent}_idle"), override(f"{agent}_unsafe"), override(f"{agent}_ignore")
    )
    secret = resolve_token(token, token_file)
    refuse_insecure(uri, secret)
    bridge = Bridge(uri, target, identity, rules, secret, prompt or DEFAULT_PROMPT, Tmux(socket, socket_name))
    try:
        sys.exit(asyncio.run(bridge.run(once=once)))
    except TmuxError as exc:
        raise click.ClickException(f"tmux: {exc}") from None


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``synapse tmux-bridge``."""
    cli.add_command(tmux_bridge)


@hookimpl
def register_settings(register: Any) -> None:
    """Pattern overrides: ``[adapters.tmux_bridge] <agent>_idle`` / ``_unsafe`` / ``_ignore`` (regexes)."""
    for agent in PATTERNS:
        register(f"adapters.tmux_bridge.{agent}_idle", str, None, f"Regex for {agent}'s idle composer.")
        register(f"adapters.tmux_bridge.{agent}_unsafe", str, None, f"Regex for {agent} screens never to type into.")
        register(f"adapters.tmux_bridge.{agent}_ignore", str, None, f"Regex for {agent}'s harmless banners.")
