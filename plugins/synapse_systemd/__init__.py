"""Bundled plugin: ``synapse service install|status|uninstall`` (systemd user units).

Writes ``synapse-hub.service`` and ``synapse-presence@.service`` (from
``deploy/``, with ``ExecStart`` pointed at this installation's ``synapse``)
into ``~/.config/systemd/user``, then runs ``daemon-reload`` and
``enable --now`` when ``systemctl --user`` works; otherwise it prints the
exact steps, ``loginctl enable-linger`` included. Units never carry a token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from synapse_channel.hookspecs import hookimpl

HUB_UNIT = "synapse-hub.service"
PRESENCE_UNIT = "synapse-presence@.service"
PLACEHOLDER = "%h/.local/bin/synapse"


def unit_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user`` (default ``~/.config/systemd/user``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "systemd" / "user"


def synapse_path() -> str:
    """The absolute path of the ``synapse`` executable this command runs from."""
    beside = Path(sys.executable).parent / "synapse"
    return str(beside) if beside.exists() else (shutil.which("synapse") or PLACEHOLDER)


def render(name: str, uri: str | None = None) -> str:
    """A unit from ``deploy/`` with ExecStart (and the hub URI) filled in."""
    from synapse_channel.resources import data_path

    text = (data_path("deploy") / name).read_text().replace(PLACEHOLDER, synapse_path())
    if uri and name == PRESENCE_UNIT:
        text = text.replace("Environment=SYNAPSE_URI=ws://localhost:8876", f"Environment=SYNAPSE_URI={uri}")
    return text


def instance(project: str) -> str:
    """``synapse-presence@<escaped project>.service``."""
    try:
        escaped = subprocess.run(["systemd-escape", project], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        escaped = project.replace("/", "-")
    return f"synapse-presence@{escaped}.service"


def systemctl_works() -> bool:
    """True when a user systemd manager answers."""
    if shutil.which("systemctl") is None:
        return False
    probe = subprocess.run(["systemctl", "--user", "is-system-running"], capture_output=True, text=True)
    return probe.stdout.strip() not in ("", "offline") and "Failed to connect" not in probe.stderr


def _steps(units: list[str]) -> list[str]:
    return [
        "mkdir -p ~/synapse",
        "systemctl --user daemon-reload",
        *(f"systemctl --user enable --now {u}" for u in units),
        'loginctl enable-linger "$USER"   # keep services running after you log out',
    ]


@click.group()
def service() -> None:
    """Install, inspect and remove the systemd user services."""


@service.command()
@click.option("--hub", "with_hub", is_flag=True, help="The hub unit.")
@click.option("--presence", "projects", multiple=True, help="A presence holder for this project (repeatable).")
@click.option("--uri", help="Hub URI for the presence holders (default ws://localhost:8876).")
@click.option("--dry-run", is_flag=True, help="Show what would be written and run; change nothing.")
def install(with_hub: bool, projects: tuple[str, ...], uri: str | None, dry_run: bool) -> None:
    """Write the units and enable them (or print the steps when systemctl cannot)."""
    if not with_hub and not projects:
        raise click.UsageError("say what to install: --hub and/or --presence PROJECT")
    files = ([HUB_UNIT] if with_hub else []) + ([PRESENCE_UNIT] if projects else [])
    enable = ([HUB_UNIT] if with_hub else []) + [instance(p) for p in projects]
    target = unit_dir()
    for name in files:
        if dry_run:
            click.echo(f"--- would write {target / name}\n{render(name, uri)}")
            continue
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(render(name, uri))
        click.echo(f"wrote {target / name}")
    if dry_run:
        click.echo("would run:\n  " + "\n  ".join(_steps(enable)))
        return
    Path("~/synapse").expanduser().mkdir(mode=0o700, parents=True, exist_ok=True)  # ReadWritePaths needs it
    if not systemctl_works():
        click.echo(
            "systemctl --user is not available here; run these steps where it is:\n  " + "\n  ".join(_steps(enable))
        )
        return
    subprocess.run(["systemctl", "--user", "daemon-reload"], check=False)
    for unit in enable:
        done = subprocess.run(["systemctl", "--user", "enable", "--now", unit], capture_output=True, text=True)
        click.echo(f"{'ok' if done.returncode == 0 else 'FAILED'}: enable --now {unit} {done.stderr.strip()}")
    click.echo('To keep them running after you log out: loginctl enable-linger "$USER"')


@service.command()
def status() -> None:
    """Which units are installed, and their state when systemctl works."""
    target = unit_dir()
    works = systemctl_works()
    for name in (HUB_UNIT, PRESENCE_UNIT):
        path = target / name
        line = f"{name}: {'installed' if path.exists() else 'not installed'} ({path})"
        if works and path.exists() and "@" not in name:
            state = subprocess.run(["systemctl", "--user", "is-active", name], capture_output=True, text=True)
            line += f", {state.stdout.strip()}"
        click.echo(line)
    if not works:
        click.echo("(systemctl --user is not available here: states not shown)")


@service.command()
@click.option("--hub", "with_hub", is_flag=True)
@click.option("--presence", "projects", multiple=True)
@click.option("--all", "everything", is_flag=True, help="Every synapse unit.")
def uninstall(with_hub: bool, projects: tuple[str, ...], everything: bool) -> None:
    """Stop, disable and remove units."""
    works = systemctl_works()
    units = ([HUB_UNIT] if with_hub or everything else []) + [instance(p) for p in projects]
    for unit in units:
        if works:
            subprocess.run(["systemctl", "--user", "disable", "--now", unit], capture_output=True)
        click.echo(f"disabled {unit}" if works else f"run: systemctl --user disable --now {unit}")
    files = ([HUB_UNIT] if with_hub or everything else []) + ([PRESENCE_UNIT] if everything else [])
    for name in files:
        path = unit_dir() / name
        if path.exists():
            path.unlink()
            click.echo(f"removed {path}")
    if works:
        subprocess.run(["systemctl", "--user", "daemon-reload"], check=False)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``synapse service``."""
    cli.add_command(service)
