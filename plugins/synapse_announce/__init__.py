"""Bundled plugin: ``synapse announce``, staggered fleet-wide messages.

``--target all`` wakes every agent at once, and their providers rate-limit
the burst. ``announce`` sends one directed message per recipient (or per
online seat of a project), ``--stagger`` seconds apart, so the fleet wakes in
a trickle.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from synapse_channel.cli.common import connection_options
from synapse_channel.hookspecs import hookimpl


async def online_seats(uri: str, name: str, token: str | None, project: str) -> list[str]:
    """The identities of ``project`` that are online now (agents or waiters)."""
    from synapse_channel.client.connection import HubClient
    from synapse_channel.protocol import owner_of

    client = HubClient(uri, name, token=token)
    try:
        await client.connect(client.frame("who_request", payload="who"))
        snap = await client.wait_for(lambda f: f.get("type") == "who_snapshot", 5.0)
    finally:
        await client.close()
    names = {owner_of(n) for n in (snap or {}).get("online_agents", [])}
    return sorted(n for n in names if n.startswith(project + "/"))


async def expand(uri: str, name: str, token: str | None, to: list[str]) -> list[str]:
    """Recipients: each name as given; a bare project becomes its online seats."""
    out: list[str] = []
    for item in to:
        if "/" in item:
            out.append(item)
        else:
            seats = await online_seats(uri, name, token, item)
            out += seats or [item]  # nobody online: the project's mailbox keeps it
    return list(dict.fromkeys(out))


async def announce_all(uri: str, name: str, token: str | None, recipients: list[str], text: str, stagger: float) -> int:
    """Send one directed message per recipient; exit 1 if any was not delivered or queued."""
    from synapse_channel.cli.messaging import SendRequest, _send

    failures = 0
    for i, target in enumerate(recipients):
        if i:
            await asyncio.sleep(stagger)
        code = await _send(SendRequest(uri, name, token, target, text))
        click.echo(f"{target}: {'ok' if code == 0 else 'NOT delivered'}")
        failures += code != 0
    return 1 if failures else 0


@click.command()
@click.argument("message", nargs=-1, required=True)
@click.option("--to", "to", required=True, help="Comma list of identities or projects (a project = its online seats).")
@click.option("--stagger", default=2.0, show_default=True, type=click.FloatRange(0), help="Seconds between sends.")
@connection_options(name_help="Sender identity (default $SYN_IDENTITY).")
def announce(
    message: tuple[str, ...],
    to: str,
    stagger: float,
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
) -> None:
    """Send MESSAGE to each recipient in turn, --stagger seconds apart."""
    import os
    import sys

    from synapse_channel.cli.common import default_identity, refuse_insecure, resolve_token

    sender = name or default_identity() or f"announce-{os.getpid()}"
    secret = resolve_token(token, token_file)
    refuse_insecure(uri, secret)
    targets = [t.strip() for t in to.split(",") if t.strip()]
    if not targets:
        raise click.UsageError("--to needs at least one recipient")

    async def go() -> int:
        recipients = await expand(uri, f"{sender}-announce", secret, targets)
        return await announce_all(uri, sender, secret, recipients, " ".join(message), stagger)

    sys.exit(asyncio.run(go()))


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``synapse announce``."""
    cli.add_command(announce)
