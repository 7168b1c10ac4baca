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
@click.option("--json", "as_json", is_flag=True, help='One object per adapter: {"name", "title", "docs_url"}.')
def list_(as_json: bool) -> None:
    """Adapters available (bundled and from plugins)."""
    import json

    for name, adapter in sorted(all_adapters().items()):
        title, url = getattr(adapter, "title", ""), getattr(adapter, "docs_url", "")
        if as_json:
            click.echo(json.dumps({"name": name, "title": title, "docs_url": url}, sort_keys=True))
        else:
            click.echo(f"{name:<12} {title}  {url}")


def _scope_option(fn: Any) -> Any:
    return click.option(
        "--scope",
        type=click.Choice(["project", "user"]),
        default="project",
        show_default=True,
        help="project: this repository's config; user: your home config.",
    )(fn)


def _run(name: str, scope: str, dry_run: bool, installing: bool, trust: bool = False) -> None:
    from ..adapters.settings_file import SettingsError

    adapter = find_adapter(name)
    try:
        changes = (
            adapter.plan(scope, installing)
            if dry_run
            else (adapter.install(scope) if installing else adapter.uninstall(scope))
        )
        for change in changes:
            if dry_run:
                click.echo(change.diff(), nl=False)
            elif change.changed:
                click.echo(f"{'updated' if change.after is not None else 'removed'} {change.path}")
            else:
                click.echo(f"unchanged {change.path}")
        if not installing or dry_run:
            return
        ready = adapter.readiness(scope)
        if trust and ready.trusted is False:
            for change in adapter.trust(scope):
                click.echo(f"trusted: {'updated' if change.changed else 'unchanged'} {change.path}")
            ready = adapter.readiness(scope)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if ready.will_run:
        trusted = "and trusted" if ready.trusted else "(it has no trust step)"
        click.echo(f"{adapter.title}: hooks installed {trusted}; they will run")
    else:
        click.echo(f"{adapter.title}: hooks installed but will NOT run yet: {ready.why}")
        click.echo(f"one step left: {ready.step}")
        sys.exit(3)


@adapters.command()
@click.argument("name")
@_scope_option
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
@click.option(
    "--trust",
    is_flag=True,
    help="Also complete the assistant's own trust step (e.g. Codex hook review, Gemini folder trust).",
)
def install(name: str, scope: str, dry_run: bool, trust: bool) -> None:
    """Merge NAME's hooks into its config (idempotent; the original is kept beside it).

    Ends by saying whether the assistant will run them; exit 3 and the one
    remaining step when it will not (untrusted hooks or folder).
    """
    _run(name, scope, dry_run, True, trust)


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
    """Per adapter and scope: installed, up to date, trusted, will run, and the step left."""
    rows = [adapter.status() for _, adapter in sorted(all_adapters().items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        for scope in ("project", "user"):
            click.echo(render_readiness(row[scope]))


def render_readiness(ready: dict[str, Any]) -> str:
    """One line (two with a step) for one adapter in one scope."""
    head = f"{ready['adapter']:<12} {ready['scope']:<8}"
    if not ready["events"]:
        return f"{head} not installed  ({ready['file']})"
    trusted = {True: "trusted", False: "NOT trusted", None: "no trust gate"}[ready["trusted"]]
    run = "will run" if ready["will_run"] else "will NOT run"
    state = "installed" if ready["current"] else ("out of date" if ready["installed"] else "partly installed")
    line = f"{head} {state}, {trusted}, {run}  ({ready['file']})"
    if ready["step"]:
        line += f"\n{'':<22}{ready['why'] + ': ' if ready['why'] else ''}{ready['step']}"
    return line


@click.command()
@click.argument("assistant")
@click.argument("event", type=click.Choice(["session-start", "prompt", "stop", "idle-wait", "pre-edit", "pre-shell"]))
def hook(assistant: str, event: str) -> None:
    """Run by the assistant itself: read its hook JSON on stdin, print its answer (exit 0).

    ``idle-wait`` runs in the assistant's background (Claude Code's
    ``asyncRewake``): it exits 2 with the messages on stderr when one arrives,
    which wakes the idle model, and 0 otherwise. ``pre-edit`` answers the
    assistant's pre-tool hook: a refusal when the edit touches a file another
    agent has claimed. ``pre-shell`` (``[guard] enforce_shell``) rewrites a
    shell tool call to run under ``synapse run --enforce``.
    """
    from ..adapters.edits import note

    try:
        adapter = find_adapter(assistant)
    except click.UsageError as exc:
        note(str(exc))
        return
    stdin_text = sys.stdin.read() if not sys.stdin.isatty() else ""
    if event == "pre-edit":  # before every file write: no asyncio, no waiter
        from ..adapters.edits import run_pre_edit

        out = run_pre_edit(adapter, stdin_text)
        if out:
            click.echo(out)
        return
    if event == "pre-shell":  # before every shell command: likewise
        from ..adapters.shell import run_pre_shell

        out = run_pre_shell(adapter, stdin_text)
        if out:
            click.echo(out)
        return
    from ..adapters.runtime import run_hook, run_idle_wait

    if event == "idle-wait":
        code, text = run_idle_wait(adapter, stdin_text)
        if text:
            click.echo(text, err=True)
        sys.exit(code)
    out = run_hook(adapter, event, stdin_text)
    if out:
        click.echo(out)
