"""Bundled plugin: ``synapse announce``, staggered fleet-wide messages.

``--target all`` wakes every agent at once, and their providers rate-limit
the burst. ``announce`` sends one directed message per recipient (or per
online seat of a project), ``--stagger`` seconds apart, so the fleet wakes in
a trickle.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from synapse_channel.api.cli import connection_options
from synapse_channel.hookspecs import hookimpl

if TYPE_CHECKING:
    from synapse_channel.api import Session


async def online_seats(session: Session, project: str) -> list[str]:
    """The identities of ``project`` that are online now (agents or their waiters)."""
    from synapse_channel.api import owner_of

    roster = await session.who()
    return sorted({owner_of(n) for n in roster.online if owner_of(n).startswith(project + "/")})


async def expand(session: Session, to: list[str]) -> list[str]:
    """Recipients: each name as given; a bare project becomes its online seats."""
    out: list[str] = []
    for item in to:
        if "/" in item:
            out.append(item)
        else:
            seats = await online_seats(session, item)
            out += seats or [item]  # nobody online: the project's mailbox keeps it
    return list(dict.fromkeys(out))


async def announce_all(session: Session, recipients: list[str], text: str, stagger: float) -> int:
    """Send one directed message per recipient; exit 1 if any was neither delivered nor queued."""
    from synapse_channel.api import SynapseError

    failures = 0
    for i, target in enumerate(recipients):
        if i:
            await asyncio.sleep(stagger)
        try:
            sent = await session.send(target, text)
        except SynapseError as exc:
            click.echo(f"{target}: NOT delivered ({exc})")
            failures += 1
            continue
        if sent.outcome == "queued":
            click.echo(f"queued for {target} (offline); it reaches them when they next wait")
        click.echo(f"{target}: {'ok' if sent.ok else 'NOT delivered'}")
        failures += not sent.ok
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

    from synapse_channel.api import Session, SynapseError, default_identity
    from synapse_channel.api.cli import refuse_insecure, resolve_token, run, say

    sender = name or default_identity() or f"announce-{os.getpid()}"
    secret = resolve_token(token, token_file)
    refuse_insecure(uri, secret)
    targets = [t.strip() for t in to.split(",") if t.strip()]
    if not targets:
        raise click.UsageError("--to needs at least one recipient")

    async def go() -> int:
        try:
            async with Session(sender, uri=uri, token=secret) as session:
                recipients = await expand(session, targets)
                return await announce_all(session, recipients, " ".join(message), stagger)
        except SynapseError as exc:
            say(sender, str(exc))
            return exc.exit_code

    run(go())


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``synapse announce``."""
    cli.add_command(announce)
