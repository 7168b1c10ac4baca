"""Bundled plugin: ``synapse tmux-bridge``, a safe wake for assistants in tmux panes.

Idle and unsafe screen patterns per assistant are data (``patterns.py``),
overridable in ``[adapters.tmux_bridge]``.
"""

from __future__ import annotations

from typing import Any

import click

from synapse_channel.hookspecs import hookimpl

from .patterns import PATTERNS


@click.command("tmux-bridge")
@click.option("--session", "target", required=True, help="tmux target: session, or session:window.pane.")
@click.option("--identity", required=True, help="The seat whose directed messages wake this pane.")
@click.option("--agent", type=click.Choice(sorted(PATTERNS)), default="generic", show_default=True)
@click.option("--uri", envvar="SYNAPSE_URI")
@click.option("--prompt", help="What to type (no message text is ever typed); {identity} is filled in.")
@click.option("--once", is_flag=True, help="Exit after the first delivered wake.")
def tmux_bridge(target: str, identity: str, agent: str, uri: str | None, prompt: str | None, once: bool) -> None:
    """Type a fixed wake prompt into an idle assistant pane when a message for IDENTITY arrives."""
    import asyncio
    import logging
    import sys

    from synapse_channel.cli.common import refuse_insecure, resolve_token, settings

    from .bridge import DEFAULT_PROMPT, Bridge, TmuxError
    from .patterns import PaneRules

    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    cfg = settings()

    def override(key: str) -> str | None:
        value = cfg.deferred.get(f"adapters.tmux_bridge.{key}")
        return str(value.value) if value else None

    rules = PaneRules.for_agent(agent, override(f"{agent}_idle"), override(f"{agent}_unsafe"))
    uri = uri or str(cfg.get("hub.uri"))
    token = resolve_token(None, None)
    refuse_insecure(uri, token)
    bridge = Bridge(uri, target, identity, rules, token, prompt or DEFAULT_PROMPT)
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
    """Pattern overrides: ``[adapters.tmux_bridge] <agent>_idle`` / ``<agent>_unsafe`` (regexes)."""
    for agent in PATTERNS:
        register(f"adapters.tmux_bridge.{agent}_idle", str, None, f"Regex for {agent}'s idle composer.")
        register(f"adapters.tmux_bridge.{agent}_unsafe", str, None, f"Regex for {agent} screens never to type into.")
