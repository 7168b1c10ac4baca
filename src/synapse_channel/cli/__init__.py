"""The ``synapse`` command line. Subcommands load lazily to keep start-up lean.

Agents call this CLI from hooks many times a minute, so ``synapse --help``
imports only click, and each command imports asyncio and websockets only when
it runs.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from ..config import ConfigError

# name -> (module, attribute, one-line help). Help is duplicated here so that
# listing commands does not import them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "hub": ("synapse_channel.cli.hub", "hub", "Run the coordination hub."),
    "send": ("synapse_channel.cli.messaging", "send", "Send a chat message."),
    "wait": ("synapse_channel.cli.waiting", "wait", "Block until a message for NAME arrives."),
    "listen": ("synapse_channel.cli.messaging", "listen", "Print messages as they arrive."),
    "who": ("synapse_channel.cli.roster", "who", "Show who is online."),
    "health": ("synapse_channel.cli.roster", "health", "Exit 0 if the hub answers, 1 if not."),
    "relay": ("synapse_channel.cli.catchup", "relay", "Print the hub's relay feed (no hub needed)."),
    "inbox": ("synapse_channel.cli.catchup", "inbox", "What is new for this identity (syn-inbox)."),
    "resume": ("synapse_channel.cli.catchup", "resume", "A returning agent's catch-up (syn-resume)."),
    "backup": ("synapse_channel.cli.db", "backup", "Copy a running hub's database consistently."),
    "db": ("synapse_channel.cli.db", "db", "Inspect the event log (db check)."),
    "search": ("synapse_channel.cli.search", "search", "Search chats, tasks and notes (full text)."),
    "receipt": ("synapse_channel.cli.roster", "receipt", "Show a directed message's state: stored, delivered, acked."),
    "claim": ("synapse_channel.cli.claims", "claim", "Lease a task with a file scope."),
    "release": ("synapse_channel.cli.claims", "release", "Release your claim on a task."),
    "git-claim": ("synapse_channel.cli.claims", "git_claim", "Claim a task scoped to the current git branch (0.99)."),
    "lock": ("synapse_channel.cli.claims", "lock", "Claim, run a command, release."),
    "renew": ("synapse_channel.cli.claims", "renew", "Extend your lease on a task."),
    "checkpoint": ("synapse_channel.cli.claims", "checkpoint", "Store a resume note on your claim."),
    "handoff": ("synapse_channel.cli.claims", "handoff", "Hand your claim to another online agent."),
    "state": ("synapse_channel.cli.claims", "state", "List live claims."),
    "task": ("synapse_channel.cli.board", "task", "Declare, update, report progress on board tasks."),
    "board": ("synapse_channel.cli.board", "board", "Show the task board."),
    "plugins": ("synapse_channel.cli.settings", "plugins", "List plugins, their versions and hooks."),
    "config": ("synapse_channel.cli.settings", "config", "Show, create and edit synapse.toml."),
    "adapters": ("synapse_channel.cli.adapters", "adapters", "Install assistant hooks (Claude Code, Codex, Gemini)."),
    "seat": ("synapse_channel.cli.seats", "seat", "Manage seats: per-agent credentials (add, list, revoke, rotate)."),
    "audit": ("synapse_channel.cli.seats", "audit", "Show refused auth, refused access and seat changes."),
    "hook": ("synapse_channel.cli.adapters", "hook", "Run by an assistant's hook: deliver synapse messages."),
    "mcp": ("synapse_channel.cli.mcp", "mcp", "Serve the hub's tools over MCP; install them into assistants."),
    "run": ("synapse_channel.cli.run", "run", "Run a command that may write only inside your claims (--enforce)."),
    "guard": ("synapse_channel.cli.guard", "guard", "Git hooks that refuse commits of files other agents claimed."),
    "doctor": ("synapse_channel.cli.doctor", "doctor", "Report which protections are in force (token, URI, trust)."),
    "ask-human": ("synapse_channel.cli.attention", "ask_human", "Ask a person a question and wait for the answer."),
    "attention": ("synapse_channel.cli.attention", "attention", "List and answer the questions agents asked people."),
    "dashboard": ("synapse_channel.cli.dashboard", "dashboard", "Open the hub's web dashboard (one-time login link)."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    _plugins_loaded = False

    def load_plugin_commands(self) -> None:
        """Let plugins add commands (``register_commands``); only done when needed."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from .common import runtime

        runtime()[1].hook.register_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugin_commands()
        return sorted(set(COMMANDS) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            self.load_plugin_commands()
            return super().get_command(ctx, cmd_name)
        module = importlib.import_module(spec[0])
        command: click.Command = getattr(module, spec[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.load_plugin_commands()
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        rows += [(n, c.get_short_help_str()) for n, c in self.commands.items() if n not in COMMANDS and not c.hidden]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="synapse-channel", prog_name="synapse")
def cli() -> None:
    """synapse: coordinate a fleet of AI coding agents through one local hub."""


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point for ``synapse``."""
    return run_command(cli, "synapse", argv)


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so an error that quotes user input stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def run_command(command: click.Command, prog: str, argv: list[str] | None = None) -> Any:
    """Run a click command; user mistakes become one line on stderr and exit 2, never a traceback."""
    try:
        return command.main(args=argv if argv is not None else sys.argv[1:], prog_name=prog, standalone_mode=False)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else prog
        where = prog + path[len(path.split(" ", 1)[0]) :]  # the full path (synapse config get), as invoked
        click.echo(f"{where}: error: {one_line(exc.format_message())} (see --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"{prog}: error: {one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except ConfigError as exc:
        click.echo(f"{prog}: error: {one_line(str(exc))}", err=True)
        sys.exit(2)
