"""``synapse adapters ...`` and ``synapse hook ASSISTANT EVENT``."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click

#: Bundled adapters load without scanning entry points (hooks run on every turn).
BUNDLED = {
    "claude-code": ("synapse_claude_code", "ClaudeCode"),
    "codex": ("synapse_codex", "Codex"),
    "gemini": ("synapse_gemini", "Gemini"),
}


def all_adapters() -> dict[str, Any]:
    """Every adapter plugins offer (``register_wake_adapters``), by name."""
    from ..plugins import wake_adapters
    from .common import runtime

    return wake_adapters(runtime()[1])


def find_adapter(name: str) -> Any:
    """One adapter by name: bundled ones directly, others through the plugins."""
    if name in BUNDLED:
        module, cls = BUNDLED[name]
        return getattr(importlib.import_module(module), cls)()
    adapter = all_adapters().get(name)
    if adapter is None:
        known = ", ".join(sorted(all_adapters()))
        raise click.UsageError(f"unknown adapter {name!r}; known: {known}")
    return adapter


@click.group()
def adapters() -> None:
    """Install assistant hooks that deliver synapse messages inside and between turns."""


@adapters.command("list")
def list_() -> None:
    """Adapters available (bundled and from plugins)."""
    for name, adapter in sorted(all_adapters().items()):
        click.echo(f"{name:<12} {getattr(adapter, 'title', '')}  {getattr(adapter, 'docs_url', '')}")


def _scope_option(fn: Any) -> Any:
    return click.option(
        "--scope",
        type=click.Choice(["project", "user"]),
        default="project",
        show_default=True,
        help="project: this repository's config; user: your home config.",
    )(fn)


def _run(name: str, scope: str, dry_run: bool, installing: bool) -> None:
    from ..adapters.settings_file import SettingsError

    adapter = find_adapter(name)
    try:
        changes = (
            adapter.plan(scope, installing)
            if dry_run
            else (adapter.install(scope) if installing else adapter.uninstall(scope))
        )
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    for change in changes:
        if dry_run:
            click.echo(change.diff(), nl=False)
        elif change.changed:
            click.echo(f"{'updated' if change.after is not None else 'removed'} {change.path}")
        else:
            click.echo(f"unchanged {change.path}")


@adapters.command()
@click.argument("name")
@_scope_option
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
def install(name: str, scope: str, dry_run: bool) -> None:
    """Merge NAME's hooks into its config (idempotent; the original is kept beside it)."""
    _run(name, scope, dry_run, True)


@adapters.command()
@click.argument("name")
@_scope_option
@click.option("--dry-run", is_flag=True)
def uninstall(name: str, scope: str, dry_run: bool) -> None:
    """Remove exactly the hooks install added."""
    _run(name, scope, dry_run, False)


@adapters.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Where each adapter is installed, and with which events."""
    rows = [adapter.status() for _, adapter in sorted(all_adapters().items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        for scope in ("project", "user"):
            events = row[scope]["events"]
            state = ", ".join(events) if events else "not installed"
            click.echo(f"{row['adapter']:<12} {scope:<8} {state}  ({row[scope]['file']})")


@click.command()
@click.argument("assistant")
@click.argument("event", type=click.Choice(["session-start", "prompt", "stop"]))
def hook(assistant: str, event: str) -> None:
    """Run by the assistant itself: read its hook JSON on stdin, print its answer (always exit 0)."""
    from ..adapters.runtime import note, run_hook

    try:
        adapter = find_adapter(assistant)
    except click.UsageError as exc:
        note(str(exc))
        return
    out = run_hook(adapter, event, sys.stdin.read() if not sys.stdin.isatty() else "")
    if out:
        click.echo(out)
