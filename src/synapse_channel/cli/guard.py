"""``synapse guard install|uninstall|status|check``: the git guard (see docs/claims.md)."""

from __future__ import annotations

import sys

import click


def _repo() -> object:
    from ..guard.install import GuardError, find_repo

    try:
        return find_repo()
    except GuardError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def guard() -> None:
    """Git hooks that refuse commits and pushes of files other agents have claimed."""


@guard.command("install")
@click.option("--strict", is_flag=True, help="Also refuse files the committer has not claimed.")
def install_(strict: bool) -> None:
    """Install pre-commit and pre-push guards here; existing hooks keep running after them."""
    from ..guard.install import GuardError, Repo, install

    repo = _repo()
    assert isinstance(repo, Repo)
    try:
        for line in install(repo, strict=strict):
            click.echo(line)
    except (GuardError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@guard.command("uninstall")
def uninstall_() -> None:
    """Remove the guard and restore the previous hooks setup exactly."""
    from ..guard.install import GuardError, Repo, uninstall

    repo = _repo()
    assert isinstance(repo, Repo)
    try:
        for line in uninstall(repo):
            click.echo(line)
    except (GuardError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@guard.command("status")
def status_() -> None:
    """Is the guard installed and in force here? Exit 0 if so, 1 if not."""
    from ..guard.install import Repo, status

    repo = _repo()
    assert isinstance(repo, Repo)
    active, lines = status(repo)
    for line in lines:
        click.echo(line)
    sys.exit(0 if active else 1)


@guard.command("check", context_settings={"ignore_unknown_options": True})
@click.argument("hook", type=click.Choice(["pre-commit", "pre-push"]))
@click.option("--strict", is_flag=True, help="Also refuse files the committer has not claimed.")
def check(hook: str, strict: bool) -> None:
    """Run the guard as the hook would (what the installed hooks call, without click)."""
    from ..guard.__main__ import main

    sys.exit(main([hook, *(["--strict"] if strict else [])]))
