"""Bundled plugin: ``synapse presence PROJECT``, the per-project presence holder.

Run it under systemd (``deploy/synapse-presence@.service``, or
``synapse service install --presence PROJECT``) so a project stays on the
roster, and messages to it are queued, while its agents are down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from synapse_channel.api.cli import connection_options
from synapse_channel.hookspecs import hookimpl


@click.command()
@click.argument("project")
@connection_options(name_help="Connection name: PROJECT-presence (the only name a holder may take).")
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING"], case_sensitive=False))
def presence(
    project: str, uri: str, name: str | None, token: str | None, token_file: Path | None, log_level: str
) -> None:
    """Hold PROJECT's presence as PROJECT-presence until stopped (SIGTERM exits 0)."""
    import asyncio
    import logging
    import sys

    from synapse_channel.api.cli import refuse_insecure, resolve_token

    from .holder import Holder

    if "/" in project or not project.strip():
        raise click.UsageError("PROJECT is a project name (the part before '/'), not a seat")
    if name not in (None, f"{project}-presence"):
        raise click.UsageError(f"a presence holder registers as {project}-presence, not {name!r}")
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    secret = resolve_token(token, token_file)
    refuse_insecure(uri, secret)
    holder = Holder(uri, project, secret)
    sys.exit(asyncio.run(holder.run()))


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``synapse presence``."""
    cli.add_command(presence)
