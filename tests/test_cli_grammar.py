"""One CLI grammar: a contract over the whole click command tree (plugins' commands included).

Every command that talks to a hub takes the connection options from the one
shared decorator (``--uri``, ``--name``, ``--token``, ``--token-file``), with
``--id`` and ``--identity`` as hidden aliases of ``--name``; no command shows
those aliases in its help. A new command that breaks this fails here.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from synapse_channel.cli import cli
from synapse_channel.cli.common import CONNECTION_OPTIONS, NAME_ALIASES

# Commands that open a connection to a hub as a client.
TALKS_TO_HUB = {
    "announce",
    "board",
    "checkpoint",
    "handoff",
    "health",
    "listen",
    "lock",
    "presence",
    "receipt",
    "release",
    "renew",
    "resume",
    "search",
    "send",
    "state",
    "task declare",
    "task progress",
    "task update",
    "tmux-bridge",
    "wait",
    "who",
    "claim",
}
# Take --uri but are not client connections of an agent, and why.
NOT_CLIENTS = {
    "doctor": "reports what a command given --uri/--token/--token-file would do; it has no identity to check",
    "service install": "--uri is written into unit files, not connected to",
}


def commands() -> Iterator[tuple[str, click.Command]]:
    """Every leaf command as ("group sub", command)."""
    ctx = click.Context(cli)

    def walk(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            path = f"{prefix}{name}"
            if isinstance(command, click.Group):
                yield from walk(command, path + " ")
            else:
                yield path, command

    return walk(cli, "")


def options(command: click.Command) -> dict[str, click.Option]:
    return {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}


def test_every_hub_command_takes_the_shared_connection_options() -> None:
    """--uri, --name, --token, --token-file (and the hidden aliases) on every hub client command."""
    seen = dict(commands())
    missing_commands = TALKS_TO_HUB - set(seen)
    assert not missing_commands, missing_commands
    problems = []
    for path, command in seen.items():
        opts = options(command)
        if path in NOT_CLIENTS:
            continue
        if path in TALKS_TO_HUB or "--uri" in opts:
            problems += [f"{path}: no {o}" for o in (*CONNECTION_OPTIONS, *NAME_ALIASES) if o not in opts]
            problems += [f"{path}: {o} is not hidden" for o in NAME_ALIASES if o in opts and not opts[o].hidden]
    assert not problems, problems


def test_no_command_shows_an_odd_name_for_the_identity() -> None:
    """--id and --identity exist only as hidden aliases of --name."""
    shown = [
        f"{path}: {opt}"
        for path, command in commands()
        for opt, param in options(command).items()
        if opt in NAME_ALIASES and not param.hidden
    ]
    assert not shown, shown


async def test_aliases_mean_name() -> None:
    """`inbox --id X` reads X's inbox, and a disagreeing --name is refused (exit 2)."""
    from .conftest import run_cli

    code, _, err = await run_cli("inbox", "--id", "api/x", "--peek")
    assert code == 0, err
    code, _, err = await run_cli("inbox", "--id", "api/x", "--name", "api/y")
    assert code == 2 and "disagree" in err, err
