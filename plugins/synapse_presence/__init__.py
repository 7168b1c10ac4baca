"""Bundled plugin: ``synapse presence PROJECT``, the per-project presence holder.

Run it under systemd (``deploy/synapse-presence@.service``, or
``synapse service install --presence PROJECT``) so a project stays on the
roster, and messages to it are queued, while its agents are down.
"""

from __future__ import annotations

from typing import Any

import click

from synapse_channel.hookspecs import hookimpl


@click.command()
@click.argument("project")
@click.option("--uri", envvar="SYNAPSE_URI", help="Hub URI (default: env SYNAPSE_URI, [hub] uri).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Owner-only file with the hub token.")
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING"], case_sensitive=False))
def presence(project: str, uri: str | None, token_file: str | None, log_level: str) -> None:
    """Hold PROJECT's presence as PROJECT-presence until stopped (SIGTERM exits 0)."""
    import asyncio
    import logging
    import sys
    from pathlib import Path

    from synapse_channel.cli.common import refuse_insecure, resolve_token, settings

    from .holder import Holder

    if "/" in project or not project.strip():
        raise click.UsageError("PROJECT is a project name (the part before '/'), not a seat")
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    token = resolve_token(None, Path(token_file) if token_file else None)
    uri = uri or str(settings().get("hub.uri"))
    refuse_insecure(uri, token)
    holder = Holder(uri, project, token)
    sys.exit(asyncio.run(holder.run()))


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``synapse presence``."""
    cli.add_command(presence)
