"""Options and helpers shared by the client commands.

Flags match the 0.99.x synapse CLI (``--uri``, ``--name``, ``--token``,
``--token-file``) so users' scripts keep working.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

# Resolution lives in client.context (the API and plugins share it); these names stay for the commands.
from ..client.context import TokenFileError
from ..client.context import TokenOrigin as TokenOrigin
from ..client.context import runtime as runtime
from ..client.context import settings as settings
from ..client.context import token_file_problem as token_file_problem
from ..client.context import token_origin as token_origin

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URI = "ws://localhost:8876"


#: The connection options every command that talks to a hub takes (the contract tests/test_cli_grammar.py checks).
CONNECTION_OPTIONS = ("--uri", "--name", "--token", "--token-file")
#: Older spellings of ``--name``, accepted everywhere and hidden from --help.
NAME_ALIASES = ("--id", "--identity")


def connection_options(
    default_name: str | None = None, name_help: str = "Connection name (identity)."
) -> Callable[[F], F]:
    """Add ``--uri``, ``--name``, ``--token``, ``--token-file`` to a command (and ``--id``/``--identity`` hidden).

    One definition, so every client command speaks the same grammar: the
    0.99 flags, the same token lookup, the same URI check.
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
            help=f"Hub URI (ws:// or wss://); env SYNAPSE_URI, then [hub] uri, then {DEFAULT_URI}.",
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
    return checked_uri(value or str(settings().get("hub.uri")))


def checked_uri(uri: str) -> str:
    """``uri`` if it is a ws:// or wss:// URI with a host; else a usage error (exit 2).

    An ``http://`` URI is a typo for the hub's address, not an unreachable hub,
    so it is reported as a bad argument rather than as "could not reach hub".
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        ok = parts.scheme.lower() in ("ws", "wss") and bool(parts.hostname)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        ok = False
    if not ok:
        raise click.BadParameter(
            f"{uri!r} is not a hub URI; expected ws://HOST:PORT or wss://HOST:PORT (e.g. {DEFAULT_URI})",
            param_hint="'--uri' / SYNAPSE_URI",
        )
    return uri


def read_token_file(path: Path) -> str:
    """Read a token file, refusing one that others can read or that is empty (a usage error)."""
    from ..client import context

    try:
        return context.read_token_file(path)
    except TokenFileError as exc:
        raise click.UsageError(str(exc)) from None


def resolve_token(token: str | None, token_file: Path | None, config: Any = None) -> str | None:
    """The token to present (see :func:`token_origin` for the order); a bad token file is a usage error."""
    from ..client import context

    try:
        return context.resolve_token(token, token_file, config)
    except TokenFileError as exc:
        raise click.UsageError(str(exc)) from None


def refuse_insecure(uri: str, token: str | None) -> None:
    """Fail fast (one line, exit 1) when ``token`` would go over plain ws:// off this machine.

    :meth:`HubClient.connect` refuses this anyway; long-running commands (presence,
    the tmux bridge) call this first so they stop instead of retrying forever.
    """
    if token:
        from ..trust import transport_problem

        problem = transport_problem(uri)
        if problem is not None:
            raise click.ClickException(problem)


def default_identity() -> str | None:
    """``SYN_IDENTITY``, else the project config's identity (``[identity]``)."""
    from ..client.context import default_identity as resolved

    return resolved()


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


def one_shot(tag: str) -> str:
    """This command's connection name: ``IDENTITY~tag-PID`` when an identity is configured."""
    from ..client.context import one_shot as named

    return named(tag)
