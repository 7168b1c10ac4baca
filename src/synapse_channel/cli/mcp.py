"""``synapse mcp``: serve the hub's tools over MCP, and install the server into assistants' configs.

``serve`` needs the optional ``mcp`` extra and imports it only when it runs;
``install``/``uninstall`` need nothing extra.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import connection_options, default_identity, refuse_insecure, resolve_token

NO_IDENTITY = (
    "no identity: set SYN_IDENTITY where the assistant starts, or [identity] in the project's synapse.toml,"
    " or reinstall with `synapse mcp install ASSISTANT --name NAME`"
)
CHANNEL_STEP = (
    "Channel push (research preview; Claude Code >= 2.1.80 on Anthropic's API with a qualifying login; "
    "Team/Enterprise: an admin enables channels): start each session with "
    "`claude --dangerously-load-development-channels server:synapse`. Without the flag the server pushes "
    "nothing and the hooks and tools deliver the mail (docs/mcp.md)"
)
EXTRA_HINT = "the MCP server needs the mcp extra: pip install 'synapse-channel[mcp]'"


@click.group()
def mcp() -> None:
    """Serve the hub's tools to MCP clients (Claude Code, Codex, Gemini, ...)."""


@mcp.command()
@connection_options(name_help="The agent's identity the tools act as (env SYN_IDENTITY).")
@click.option("--http", "use_http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address (loopback unless a token).")
@click.option("--port", type=click.IntRange(0, 65535), default=8877, show_default=True, help="HTTP port (0: any).")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 120),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the hub per request.",
)
@click.option(
    "--channel",
    is_flag=True,
    help="Claude Code channel push (research preview; stdio): declare claude/channel and push new mail "
    "to the session as it arrives.",
)
def serve(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    use_http: bool,
    host: str,
    port: int,
    timeout: float,
    channel: bool,
) -> None:
    """Serve the tools as NAME over stdio (default) or streamable HTTP (--http).

    Over HTTP, when a token is configured (--token, --token-file,
    SYNAPSE_TOKEN, [hub] token_file) every request must carry it as
    ``Authorization: Bearer TOKEN``; without one the server binds loopback
    only.

    With --channel (stdio only) the server offers Claude Code's channel
    capability and pushes each directed message to the session while it is
    open; Claude Code must be started with
    ``--dangerously-load-development-channels server:synapse`` (docs/mcp.md).
    """
    if channel and use_http:
        raise click.UsageError(
            "--channel works over stdio only: Claude Code starts a channel server as its own subprocess"
        )
    identity = name or default_identity() or ""
    if not identity:
        # Still serve: an assistant shows a server that will not start only as "failed to connect", while a
        # running one answers every tool call with the missing step, where the model and the user read it.
        click.echo(f"synapse mcp serve: warning: {NO_IDENTITY}", err=True)
    secret = resolve_token(token, token_file)
    refuse_insecure(uri, secret)
    try:
        import mcp as _sdk  # noqa: F401
    except ImportError:
        raise click.ClickException(EXTRA_HINT) from None
    from ..mcp.server import is_loopback

    if use_http and not secret and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve MCP on {host} without a token: anyone who reaches it would act as {identity or 'you'}; "
            "bind 127.0.0.1, or configure a token (--token-file) that clients must send as a bearer token"
        )
    if use_http and secret and not is_loopback(host):
        click.echo(
            f"synapse mcp serve: warning: clients send the token in clear over http:// to {host}; "
            "put a TLS proxy in front, or reach it through an SSH tunnel",
            err=True,
        )
    import asyncio

    from .. import __version__
    from ..api.scope import git_toplevel
    from ..mcp.server import Tools, serve_http, serve_stdio

    cwd = Path.cwd()
    tools = Tools(
        identity,
        uri=uri,
        token=secret,
        timeout=timeout,
        missing=NO_IDENTITY if not identity else "",
        worktree=str(Path(top).resolve()) if (top := git_toplevel(cwd)) else "",
        cwd=str(cwd),
    )

    def ready(url: str) -> None:
        gate = "bearer token required" if secret else "no token: loopback only"
        click.echo(f"[{identity or '?'}] MCP on {url} ({gate})", err=True)

    try:
        if use_http:
            asyncio.run(serve_http(tools, host, port, secret, __version__, ready))
        else:
            asyncio.run(serve_stdio(tools, __version__, channel=channel))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def _assistant(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option(
        "--scope",
        type=click.Choice(["project", "user"]),
        default="project",
        show_default=True,
        help="project: this repository's config; user: your home config.",
    )(fn)
    return click.argument("assistant", type=click.Choice(["claude-code", "codex", "gemini"]))(fn)


@mcp.command()
@_assistant
@click.option("--name", "identity", help="Bake this identity into the server's command (default: SYN_IDENTITY).")
@click.option("--uri", help="Bake this hub URI in (default: SYNAPSE_URI, then [hub] uri).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bake this token file in (never the token itself).",
)
@click.option(
    "--channel/--no-channel",
    default=None,
    help="Claude Code only: serve with --channel (push new mail into the session). "
    "Default: [adapters.claude_code] channel.",
)
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
def install(
    assistant: str,
    scope: str,
    identity: str | None,
    uri: str | None,
    token_file: Path | None,
    channel: bool | None,
    dry_run: bool,
) -> None:
    """Write the server into ASSISTANT's MCP config (merged, idempotent; the original kept beside it)."""
    from ..adapters.settings_file import SettingsError
    from ..mcp import install as setup

    if channel and assistant != "claude-code":
        raise click.UsageError("--channel is for claude-code only: channels are a Claude Code feature")
    if channel is None and assistant == "claude-code":
        from ..api import setting

        channel = setting("adapters.claude_code.channel") is True
    args: list[str] = []
    for flag, value in (("--name", identity), ("--uri", uri), ("--token-file", token_file)):
        if value:
            args += [flag, str(Path(value).expanduser().resolve()) if flag == "--token-file" else str(value)]
    if channel:
        args.append("--channel")
    try:
        if dry_run:
            click.echo(setup.plan(assistant, scope, True, args).diff(), nl=False)
            return
        change = setup.install(assistant, scope, args)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'updated' if change.changed else 'unchanged'} {change.path}")
    click.echo(_next_step(assistant, scope))
    if channel:
        click.echo(CHANNEL_STEP)


@mcp.command()
@_assistant
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
def uninstall(assistant: str, scope: str, dry_run: bool) -> None:
    """Remove the server install added; the file comes back byte for byte when nothing else changed."""
    from ..adapters.settings_file import SettingsError
    from ..mcp import install as setup

    try:
        if dry_run:
            click.echo(setup.plan(assistant, scope, False).diff(), nl=False)
            return
        change = setup.uninstall(assistant, scope)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if not change.changed:
        click.echo(f"unchanged {change.path}")
    else:
        click.echo(f"{'removed' if change.after is None else 'restored' if change.after else 'updated'} {change.path}")


def _next_step(assistant: str, scope: str) -> str:
    """What the user does next for the assistant to start the server."""
    if assistant == "claude-code":
        extra = " (it asks once to approve a project's .mcp.json servers)" if scope == "project" else ""
        return f"Claude Code: start a new session; `claude mcp list` shows synapse{extra}"
    if assistant == "codex":
        extra = (
            "; Codex reads a project's .codex/config.toml only when the project is trusted"
            if scope == "project"
            else ""
        )
        return f"Codex: start a new session; `codex mcp list` shows synapse{extra}"
    return "Gemini CLI: start a new session; `gemini mcp list` shows synapse"
