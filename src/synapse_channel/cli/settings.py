"""``synapse plugins`` and ``synapse config show|init|get|set``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import runtime


@click.command()
@click.option("--json", "as_json", is_flag=True)
def plugins(as_json: bool) -> None:
    """List loaded plugins with their version and the hooks each implements."""
    config, pm = runtime()
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda x: str(x[0])):
        if plugin is None:
            continue
        dist = getattr(pm, "plugin_dists", {}).get(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append(
            {
                "name": name,
                "version": dist.version if dist else None,
                "distribution": dist.metadata["Name"] if dist else None,
                "hooks": hooks,
            }
        )
    failures = [{"name": f.name, "error": f.error} for f in getattr(pm, "load_failures", [])]
    disabled = list(config.get("plugins.disabled") or [])
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failures, "disabled": disabled}, indent=2))
        return
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        click.echo(f"{row['name']}{version}: {', '.join(row['hooks'])}")
    for failure in failures:
        click.echo(f"{failure['name']}: FAILED to load: {failure['error']}")
    if disabled:
        click.echo(f"disabled: {', '.join(disabled)}")


@click.group()
def config() -> None:
    """Show, create and edit configuration (synapse.toml)."""


@config.command()
@click.option("--json", "as_json", is_flag=True)
def show(as_json: bool) -> None:
    """Print every effective value and the source it came from."""
    cfg, _ = runtime()
    rows = [
        {"key": k, "value": cfg.get(k), "source": cfg.source(k), "help": s.help}
        for k, s in sorted(cfg.settings.items())
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "project_file": str(cfg.project_file or ""),
                    "project_trusted": cfg.project_trusted,
                    "user_file": str(cfg.user_file or ""),
                    "ignored": [{"key": i.key, "file": i.file, "reason": i.reason} for i in cfg.ignored],
                    "settings": rows,
                },
                indent=2,
            )
        )
        return
    trust = (" (trusted)" if cfg.project_trusted else " (untrusted)") if cfg.project_file else ""
    click.echo(f"# project file: {cfg.project_file or '(none)'}{trust}")
    click.echo(f"# user file:    {cfg.user_file or '(none)'}")
    for ignored in cfg.ignored:
        click.echo(f"# ignored:      {ignored.key} from the project file ({ignored.reason})")
    for row in rows:
        click.echo(f"{row['key']} = {json.dumps(row['value'])}    # {row['source']}")


@config.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help='{"key", "value", "source"} as one JSON object.')
def get(key: str, as_json: bool) -> None:
    """Print one effective value."""
    cfg, _ = runtime()
    if key not in cfg.settings:
        raise click.UsageError(f"unknown key '{key}' (see `synapse config show`)")
    value = cfg.get(key)
    if as_json:
        click.echo(json.dumps({"key": key, "value": value, "source": cfg.source(key)}, sort_keys=True))
        return
    click.echo(",".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value)))


def _parse(setting: Any, text: str) -> Any:
    from ..config import ConfigError, _coerce

    if setting.type is str:
        return text
    try:
        return _coerce(setting, text, "value")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@config.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--user", "user_scope", is_flag=True, help="Write the user file instead of the project's synapse.toml.")
def set_(key: str, value: str, user_scope: bool) -> None:
    """Set KEY to VALUE in synapse.toml (rewrites the file: comments are not kept)."""
    import tomli_w

    from ..config import read_toml, user_file

    cfg, _ = runtime()
    setting = cfg.settings.get(key)
    if setting is None:
        raise click.UsageError(f"unknown key '{key}' (see `synapse config show`)")
    if "token" in key and not key.endswith("token_file"):
        raise click.UsageError("tokens are never written to config; put the token in a file and set hub.token_file")
    if key.startswith("trust.") and not user_scope:
        raise click.UsageError(f"{key} is read from the user config only; pass --user")
    target = user_file() if user_scope else cfg.project_file
    if target is None:
        raise click.UsageError("no synapse.toml here or above; run `synapse config init` first (or pass --user)")
    if target.name == "pyproject.toml":
        raise click.UsageError(f"{target} is a pyproject.toml; edit its [tool.synapse] table by hand")
    data = read_toml(target) if target.exists() else {}
    node = data
    *tables, name = key.split(".")
    for table in tables:
        node = node.setdefault(table, {})
    node[name] = _parse(setting, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(tomli_w.dumps(data))
    click.echo(f"{key} = {json.dumps(node[name])} in {target} (file rewritten; comments are not kept)")
    if not user_scope and not cfg.project_trusted and key in ("hub.token_file", "hub.uri"):
        click.echo(f"note: an untrusted project's {key} may be ignored; trust it with [trust] projects (--user)")


STARTER = """\
# synapse.toml: per-project settings for synapse-channel.
# Precedence: command-line flag > environment > this file > user config
# ($XDG_CONFIG_HOME/synapse/config.toml) > built-in default.
# `synapse config show` prints every effective value and where it came from.
# Tokens never go here: put the token in an owner-only file (chmod 600) and
# point hub.token_file at it, in your user config. This file may set
# token_file (or a non-loopback uri) only if your user config trusts the
# project: [trust] projects = ["/path/to/this/folder"].

[hub]
# uri = "ws://localhost:8876"
# token_file = "~/.config/synapse/token"   # ignored unless this project is trusted

[identity]
project = "{project}"
{seat_line}

[wake]
# jitter = 8.0               # seconds over which broadcast / fleet-wide wakes are spread
# policy = "uniform"         # uniform | none | offset (a fixed per-identity delay)
# directed_only = false      # waits ignore plain broadcasts

[presence]
# enabled = true             # keep the project on the roster with a presence holder

[adapters]
# enabled = ["claude_code"]

[claims]
# auto = false               # an agent's first edit of a free file claims it (the assistants' edit hook)
# auto_release = "turn"      # turn: released when its turn ends | merge: when its branch is merged

[guard]
# edits = true               # `adapters install` adds the hook refusing edits of others' claimed files
# enforce_shell = false      # run the assistants' shell commands under `synapse run --enforce` (Linux)

[plugins]
# disabled = []              # entry-point names of plugins not to load
"""


@config.command()
@click.option("--force", is_flag=True, help="Overwrite an existing synapse.toml.")
@click.option("--project", help="Project name (default: the git top level's or this folder's name).")
@click.option("--seat", help="This seat (identity = project/seat; default: the seat of $SYN_IDENTITY, if any).")
def init(force: bool, project: str | None, seat: str | None) -> None:
    """Write a commented starter synapse.toml in the current folder, with this project and seat.

    It says which identity the commands here will use, since `claim`, `send`
    and `wait` need one and a newcomer should not have to guess.
    """
    import os

    from ..protocol import name_problem
    from .catchup import git_project

    target = Path.cwd() / "synapse.toml"
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists; pass --force to overwrite it")
    project = project or git_project() or Path.cwd().name
    env_identity = os.environ.get("SYN_IDENTITY", "")
    if seat is None and env_identity.startswith(project + "/"):
        seat = env_identity[len(project) + 1 :]
    for what, value in (("project", project), ("seat", seat)):
        problem = name_problem(value) if value is not None else None
        if problem is not None or (value and "/" in value):
            raise click.UsageError(f"--{what} {value!r} cannot be part of an identity: {problem or 'no / allowed'}")
    seat_line = (
        f'seat = "{seat}"                # identity = project/seat (SYN_IDENTITY overrides it per terminal)'
        if seat
        else '# seat = "claude-1"          # identity = project/seat (or set SYN_IDENTITY per terminal)'
    )
    target.write_text(STARTER.format(project=project, seat_line=seat_line))
    if seat:
        click.echo(f"wrote {target}: project {project}, identity {project}/{seat}")
    else:
        click.echo(
            f"wrote {target}: project {project}, no seat yet: pass --seat NAME "
            f"(or export SYN_IDENTITY={project}/NAME) before claim, send or wait"
        )
