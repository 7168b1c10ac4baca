"""Bundled plugin: shell integration (``synapse shell-init bash|zsh|fish``).

The integration exports ``SYN_PROJECT``/``SYN_IDENTITY`` from the project's
``synapse.toml`` whenever the working directory changes (an identity set by
hand is left alone), defines ``synapse_prompt`` (the inbox count, for your
prompt) and loads click's completion for ``synapse``. The snippets live in
``shell/`` so they can be read, and are printed from the installed copy, so
an upgrade reaches every shell without re-installing.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

import click

from synapse_channel.hookspecs import hookimpl

SHELLS = ("bash", "zsh", "fish")


@click.command("shell-init")
@click.argument("shell", type=click.Choice(SHELLS))
def shell_init(shell: str) -> None:
    """Print the integration for SHELL (bash/zsh: eval "$(...)"; fish: ... | source)."""
    from synapse_channel.resources import data_path

    click.echo((data_path("shell") / f"synapse.{shell}").read_text(), nl=False)


def _assign(shell: str, name: str, value: str | None) -> str:
    if shell == "fish":
        return f"set -e {name}" if value is None else f"set -gx {name} {shlex.quote(value)}"
    return f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}"


@click.command("shell-env", hidden=True)
@click.option("--shell", type=click.Choice(SHELLS), default="bash")
def shell_env(shell: str) -> None:
    """Print the SYN_PROJECT/SYN_IDENTITY assignments for this directory's config."""
    from synapse_channel.config import load_config

    auto = os.environ.get("__SYNAPSE_AUTO") == "1"
    if not auto and (os.environ.get("SYN_IDENTITY") or os.environ.get("SYN_PROJECT")):
        return  # set by hand: explicit beats ambient
    cfg = load_config(strict=False, environ={}, warn=False)  # runs at every prompt; `synapse doctor` reports
    project, identity = cfg.project, cfg.identity
    if project is None and identity is None:
        if auto:
            for name in ("SYN_PROJECT", "SYN_IDENTITY", "__SYNAPSE_AUTO"):
                click.echo(_assign(shell, name, None))
        return
    click.echo(_assign(shell, "SYN_PROJECT", project))
    click.echo(_assign(shell, "SYN_IDENTITY", identity))
    click.echo(_assign(shell, "__SYNAPSE_AUTO", "1"))


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``synapse shell-init`` (and the helper ``shell-env`` it calls)."""
    cli.add_command(shell_init)
    cli.add_command(shell_env)
