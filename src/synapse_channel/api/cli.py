"""Click helpers for commands that talk to a hub: what a plugin's ``synapse`` subcommand needs.

A plugin command decorated with :func:`connection_options` takes exactly the
flags every built-in command takes (``--uri``, ``--name``, ``--token``,
``--token-file``, and the hidden 0.99 aliases ``--id``/``--identity``), with
the same defaults and checks. The built-in commands use these same helpers
(``synapse_channel.cli.common`` re-exports them), so the grammar cannot drift.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from .context import DEFAULT_URI

F = TypeVar("F", bound=Callable[..., Any])

#: The connection options every command that talks to a hub takes (the contract tests/test_cli_grammar.py checks).
CONNECTION_OPTIONS = ("--uri", "--name", "--token", "--token-file")
#: Older spellings of ``--name``, accepted everywhere and hidden from --help.
NAME_ALIASES = ("--id", "--identity")

__all__ = [
    "CONNECTION_OPTIONS",
    "DEFAULT_URI",
    "NAME_ALIASES",
    "checked_uri",
    "connection_options",
    "finite",
    "name_option",
    "read_token_file",
    "refuse_insecure",
    "resolve_token",
    "run",
    "say",
]


def connection_options(
    default_name: str | None = None, name_help: str = "Connection name (identity)."
) -> Callable[[F], F]:
    """Add ``--uri``, ``--name``, ``--token``, ``--token-file`` to a command (and ``--id``/``--identity`` hidden).

    One definition, so every client command speaks the same grammar: the
    0.99 flags, the same token lookup, the same URI check. The command
    receives ``uri`` (checked), ``name``, ``token`` and ``token_file``.
    """

    def decorate(fn: F) -> F:
        fn = click.option(
            "--token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the hub token from this owner-only file (env SYNAPSE_TOKEN_FILE).",
        )(fn)
        fn = click.option("--token", help="Hub token (prefer --token-file or SYNAPSE_TOKEN).")(fn)
        fn = name_option(default_name, name_help)(fn)
        fn = click.option(
            "--uri",
            envvar="SYNAPSE_URI",
            callback=_uri_default,
            help=(
                f"Hub URI (ws:// or wss://), or a comma-separated list tried in order; "
                f"env SYNAPSE_URI, then [hub] uri, then {DEFAULT_URI}."
            ),
        )(fn)
        return fn

    return decorate


def name_option(default_name: str | None = None, help_text: str = "Connection name (identity).") -> Callable[[F], F]:
    """``--name`` with ``--id`` and ``--identity`` as hidden aliases (for commands with no hub options)."""

    def decorate(fn: F) -> F:
        for alias in reversed(NAME_ALIASES):
            fn = click.option(
                alias,
                "_name_alias_" + alias.strip("-"),
                hidden=True,
                expose_value=False,
                callback=_name_alias,
                help="Same as --name.",
            )(fn)
        return click.option("--name", default=default_name, callback=_name_value, help=help_text)(fn)

    return decorate


def _name_alias(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    current = ctx.params.get("name")
    named = "name" in ctx.params and ctx.get_parameter_source("name") != click.core.ParameterSource.DEFAULT
    if named and current != value:
        raise click.BadParameter(f"--name {current!r} and an alias {value!r} disagree; pass --name once")
    ctx.meta["synapse.name_alias"] = value
    if "name" in ctx.params:
        ctx.params["name"] = value


def _name_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    alias = ctx.meta.get("synapse.name_alias")
    if alias is not None:
        if ctx.get_parameter_source("name") != click.core.ParameterSource.DEFAULT and value != alias:
            raise click.BadParameter(f"--name {value!r} and an alias {alias!r} disagree; pass --name once")
        return str(alias)
    return value


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Refuse ``nan`` and ``inf`` for seconds (click's FloatRange lets them through)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


def _uri_default(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    from ..client.context import settings

    return checked_uri(value or str(settings().get("hub.uri")))


def checked_uri(uri: str) -> str:
    """``uri`` if it is a ws:// or wss:// URI with a host, or a comma-separated list of them; else a usage error.

    An ``http://`` URI is a typo for the hub's address, not an unreachable hub,
    so it is reported as a bad argument rather than as "could not reach hub".
    A list (``ws://h1:8876,ws://h2:8876``) is tried in order by every command;
    one bad element fails the whole value (exit 2), naming that element.
    """
    from ..client.addresses import AddressError, parse_addresses

    try:
        return ",".join(parse_addresses(uri))
    except AddressError as exc:
        raise click.BadParameter(str(exc), param_hint="'--uri' / SYNAPSE_URI") from None


def read_token_file(path: Path) -> str:
    """Read a token file, refusing one that others can read or that is empty (a usage error)."""
    from ..client import context

    try:
        return context.read_token_file(path)
    except context.TokenFileError as exc:
        raise click.UsageError(str(exc)) from None


def resolve_token(token: str | None, token_file: Path | None, config: Any = None) -> str | None:
    """The token to present (``--token`` > ``--token-file`` > env > config); a bad token file is a usage error."""
    from ..client import context

    try:
        return context.resolve_token(token, token_file, config)
    except context.TokenFileError as exc:
        raise click.UsageError(str(exc)) from None


def refuse_insecure(uri: str, token: str | None) -> None:
    """Fail fast (one line, exit 1) when ``token`` would go over plain ws:// off this machine.

    A session refuses this anyway (:class:`~synapse_channel.api.InsecureTransport`);
    long-running commands call this first so they stop instead of retrying forever.
    """
    if token:
        from ..trust import transport_problem

        problem = transport_problem(uri)  # every address of a list
        if problem is not None:
            raise click.ClickException(problem)


def run(coro: Coroutine[Any, Any, int]) -> None:
    """Run a command coroutine and exit with its code; Ctrl-C exits 130 quietly."""
    import asyncio

    try:
        code = asyncio.run(coro)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def say(name: str, message: str) -> None:
    """A one-line status message on stderr, prefixed with the connection name."""
    click.echo(f"[{name}] {message}", err=True)
