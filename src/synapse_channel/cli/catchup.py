"""Catch-up without a live socket: ``synapse relay``, ``syn-inbox``, ``syn-resume``.

``relay`` and ``syn-inbox`` read only the relay feed the hub writes
(``$SYN_HOME/feed.ndjson``), so they work while the hub is down. ``syn-resume``
reads the feed for the project's missed chats and, when the hub answers,
adds the claims its seats hold and the board's ready tasks. Cursors live
under ``$SYN_HOME``, one per identity, and move only past what was printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import click

from ..feed import FeedCursor, FeedLine, read_feed
from ..paths import syn_home
from ..protocol import addresses, target_parts
from .common import connection_options, name_option, one_shot, resolve_token

_CONTROL = dict.fromkeys(range(32), "?") | {9: " ", 10: " "}


def render_line(frame: dict[str, Any], *, local_time: bool = False, mark: str = "") -> str:
    """``[ts] sender -> target (type): payload`` with control characters neutralised.

    ``synapse relay`` keeps 0.99's epoch seconds (scripts parse them); the
    catch-up commands people read (``syn-inbox``, ``syn-resume``) show local time.
    """
    payload = frame.get("payload", "")
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    ts = frame.get("timestamp", 0)
    ts = ts if isinstance(ts, int | float) else 0
    when = _local(ts) if local_time else f"{ts:.3f}"
    line = f"[{when}] {mark}{frame.get('sender')} -> {frame.get('target')} ({frame.get('type')}): "
    return (line + text).translate(_CONTROL)


def _local(ts: float) -> str:
    import time

    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return f"{ts:.3f}"


def for_identity(frame: dict[str, Any], name: str, roles: tuple[str, ...]) -> bool:
    """Chats that reach ``name`` (broadcasts included), not sent by it."""
    return (
        frame.get("type") == "chat"
        and frame.get("sender") != name
        and addresses(str(frame.get("target", "")), name, roles)
    )


def for_project(frame: dict[str, Any], project: str) -> bool:
    """Chats to everyone, to the project, to one of its seats, or to a glob covering it."""
    if frame.get("type") != "chat":
        return False
    target = str(frame.get("target", ""))
    if target.strip() in ("", "all"):
        return True
    for part in target_parts(target):
        if part == project or part.startswith(project + "/"):
            return True
        if any(c in part for c in "*?[") and (fnmatchcase(project, part) or fnmatchcase(project + "/x", part)):
            return True
    return False


def select(
    lines: list[FeedLine], *, for_name: str | None, project: str | None, roles: tuple[str, ...]
) -> list[FeedLine]:
    """Apply the ``--for`` / ``--project`` filters (none: every line)."""
    if for_name:
        return [ln for ln in lines if for_identity(ln.frame, for_name, roles)]
    if project:
        return [ln for ln in lines if for_project(ln.frame, project)]
    return lines


def show(line: FeedLine, as_json: bool, *, local_time: bool = False, mark: str = "") -> None:
    """Print one feed line as text or JSON."""
    if as_json:
        click.echo(json.dumps(line.frame, separators=(",", ":")))
    else:
        click.echo(render_line(line.frame, local_time=local_time, mark=mark))


def waited_seq(identity: str) -> int:
    """The highest seq ``synapse wait`` printed and acknowledged for ``identity`` (its mailbox cursor)."""
    from ..paths import mailbox_cursor_path, read_int

    return read_int(mailbox_cursor_path(identity))


def already_waited(frame: dict[str, Any], cursor: int) -> bool:
    """A directed chat at or below the wait cursor: the mailbox replays every one in order, so wait printed it."""
    from ..protocol import is_broadcast

    seq = frame.get("seq")
    return isinstance(seq, int) and seq <= cursor and not is_broadcast(str(frame.get("target", "")))


@click.command()
@click.argument("feed", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--for", "for_name", help="Only chats that reach this identity (broadcasts included).")
@click.option("--project", help="Only chats to the project, its seats, or everyone.")
@click.option("--role", "roles", multiple=True, help="Roles of --for (P/R); repeatable.")
@click.option("--since", type=click.IntRange(0), help="Start at this byte offset (ignores --cursor).")
@click.option("--cursor", type=click.Path(dir_okay=False, path_type=Path), help="Resume from, and save to, this file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def relay(
    feed: Path,
    for_name: str | None,
    project: str | None,
    roles: tuple[str, ...],
    since: int | None,
    cursor: Path | None,
    as_json: bool,
) -> None:
    """Print the hub's relay FEED (no hub needed); with --cursor, only what is new."""
    cur = FeedCursor(None if since is not None else cursor)
    if since is not None:
        cur.offset = since
    lines, offset, last = read_feed(feed, cur)
    for line in select(lines, for_name=for_name, project=project, roles=roles):
        show(line, as_json)
    if cursor is not None and since is None:
        cur.save(offset, last)


# --------------------------------------------------------------------------- identity


def git_project() -> str | None:
    """The basename of the git top level of the working directory, if any."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(top.stdout.strip()).name if top.returncode == 0 and top.stdout.strip() else None


def resolve(identity: str | None, project: str | None) -> tuple[str | None, str | None]:
    """Flags beat ``SYN_IDENTITY``/``SYN_PROJECT``, which beat the project config, then the git top level."""
    from .common import default_identity, settings

    identity = identity or default_identity()
    project = project or settings().project or (identity.split("/", 1)[0] if identity else None)
    return identity, project or git_project()


def _check_name(name: str) -> None:
    """A usage error for a name no hub would accept: its cursor file is named after it."""
    from ..protocol import name_problem

    problem = name_problem(name)
    if problem is not None:
        raise click.UsageError(f"{name!r} is not an identity or project: {problem}")


def cursor_file(name: str, suffix: str = ".cursor") -> Path:
    """``$SYN_HOME/<name with / as __><suffix>``, the layout the 0.99 tools share."""
    return syn_home() / (name.replace("/", "__") + suffix)


@click.command()
@name_option(help_text="Identity to read for (default $SYN_IDENTITY).")
@click.option("--project", help="Project (default $SYN_PROJECT, the identity's prefix, or the git top level).")
@click.option("--project-wide", is_flag=True, help="Everything for the project, with its own cursor.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--peek", is_flag=True, help="Do not move the cursor.")
@click.option("--count", is_flag=True, help="Print only how many messages are new (for a prompt).")
@click.option("--all", "show_all", is_flag=True, help="Also show messages `wait` already printed, marked [waited].")
def inbox(
    name: str | None,
    project: str | None,
    project_wide: bool,
    as_json: bool,
    peek: bool,
    count: bool,
    show_all: bool,
) -> None:
    """What is new for this identity since its last read (from the relay feed).

    Directed messages that ``wait`` already printed (and acknowledged) are
    left out, or marked ``[waited]`` with --all: the agent has seen them.
    """
    identity, project = resolve(name, project)
    key = project if project_wide else identity
    if not key:
        raise click.UsageError("no identity: pass --name (or --project with --project-wide), or set SYN_IDENTITY")
    _check_name(key)
    cur = FeedCursor(cursor_file(key))
    lines, offset, last = read_feed(syn_home() / "feed.ndjson", cur)
    chosen = select(
        lines, for_name=None if project_wide else identity, project=project if project_wide else None, roles=()
    )
    waited = waited_seq(identity) if identity and not project_wide else 0
    seen = [ln for ln in chosen if already_waited(ln.frame, waited)] if waited else []
    if not show_all and seen:
        chosen = [ln for ln in chosen if not already_waited(ln.frame, waited)]
    if count:
        click.echo(str(len(chosen)))
    else:
        for line in chosen:
            mark = "[waited] " if show_all and waited and already_waited(line.frame, waited) else ""
            show(line, as_json, local_time=True, mark=mark)
        if seen and not show_all and not as_json:
            click.echo(f"({len(seen)} already printed by wait; --all shows them)", err=True)
    if not peek:
        cur.save(offset, last)


def inbox_main() -> None:
    """Console script ``syn-inbox``."""
    from . import run_command

    run_command(inbox, "syn-inbox")


@click.command()
@connection_options(name_help="This seat's identity (default $SYN_IDENTITY).")
@click.option("--project", help="Project to catch up on (default $SYN_PROJECT or the identity's prefix).")
@click.option("--limit", default=30, show_default=True, type=click.IntRange(1), help="Most messages to print per run.")
@click.option("--no-hub", is_flag=True, help="Do not ask the hub for claims and tasks.")
def resume(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    project: str | None,
    limit: int,
    no_hub: bool,
) -> None:
    """The returning agent's catch-up: missed chats, held claims, ready tasks.

    Everything shown comes from one hub, the --uri one: the local relay feed
    is read only for the lines that hub wrote (its hub_id), so a feed left by
    another hub never mixes in. --name (or --id) is the identity.
    """
    identity, project = resolve(name, project)
    if not project:
        raise click.UsageError("no project: pass --project or --name, or set SYN_PROJECT / SYN_IDENTITY")
    hub_id: str | None = None
    sections: list[str] = []
    if not no_hub:
        hub_id, sections = _hub_sections(uri, token, token_file, project)
    # one cursor per hub: reading as one hub must not consume another hub's lines
    suffix = f".{re.sub(r'[^A-Za-z0-9_-]', '_', hub_id)}.resume.cursor" if hub_id else ".resume.cursor"
    cur = FeedCursor(cursor_file(project, suffix))
    lines, offset, last = read_feed(syn_home() / "feed.ndjson", cur)
    if hub_id is not None:
        others = {str(ln.frame.get("hub_id")) for ln in lines if ln.frame.get("hub_id") not in (None, hub_id)}
        lines = [ln for ln in lines if ln.frame.get("hub_id") in (None, hub_id)]
    else:
        others = set()
    missed = select(lines, for_name=None, project=project, roles=())
    shown = missed[:limit]
    where = f"hub {hub_id} at {uri}" if hub_id else "the local feed (no hub asked)"
    click.echo(f"# synapse catch-up for {project}" + (f" (as {identity})" if identity else "") + f" from {where}")
    click.echo(f"Missed messages ({len(missed)}):" if missed else "Missed messages: none")
    for line in shown:
        click.echo("  " + render_line(line.frame, local_time=True))
    if others:
        click.echo(f"  ({len(others)} other hub(s) wrote to {syn_home() / 'feed.ndjson'}; their lines are not shown)")
    if len(missed) > limit:
        click.echo(f"  ... {len(missed) - limit} more: run syn-resume again")
        offset, last = shown[-1].end, shown[-1].hash
    for section in sections:
        click.echo(section)
    cur.save(offset, last)


def _hub_sections(uri: str, token: str | None, token_file: Path | None, project: str) -> tuple[str | None, list[str]]:
    """The hub's id and its claims/tasks sections; ``(None, [why])`` when it cannot be asked."""
    import asyncio

    try:
        secret = resolve_token(token, token_file)  # flags, SYNAPSE_TOKEN(_FILE), [hub] token_file
    except click.UsageError as exc:
        return None, [f"(hub not asked: {exc.format_message()})"]
    try:
        return asyncio.run(_ask_hub(uri, secret, project))
    except Exception as exc:  # catch-up must never fail because the hub is away
        return None, [f"(hub not reachable at {uri}: {exc}; claims and tasks not shown)"]


async def _ask_hub(uri: str, token: str | None, project: str) -> tuple[str | None, list[str]]:
    from ..client.connection import HubClient, whole_snapshot

    client = HubClient(uri, one_shot("resume"), token=token, ready_timeout=2.0)
    lines: list[str] = []
    try:
        welcome = await client.connect(
            client.frame("state_request", payload="snapshot"), client.frame("board_request", payload="board")
        )
        for _ in range(2):
            frame = await client.wait_for(lambda f: f.get("type") in ("state_snapshot", "board_snapshot", "error"), 2.0)
            if frame is None:
                break
            lines += _render_hub_section(await whole_snapshot(client, frame), project)
    finally:
        await client.close()
    hub_id = welcome.get("hub_id") if isinstance(welcome, dict) else None
    return (str(hub_id) if hub_id else None), lines


def _render_hub_section(frame: dict[str, Any], project: str) -> list[str]:
    def mine(owner: object) -> bool:
        return isinstance(owner, str) and (owner == project or owner.startswith(project + "/"))

    if frame.get("type") == "state_snapshot":
        claims = [c for c in (frame.get("snapshot") or {}).get("active_claims", []) if mine(c.get("owner"))]
        out = [f"Claims held by {project} seats ({len(claims)}):"] if claims else [f"Claims held by {project}: none"]
        out += [
            f"  {c.get('task_id')} owner={c.get('owner')} paths={','.join(c.get('paths') or []) or '(worktree)'}"
            for c in claims
        ]
        return out
    if frame.get("type") == "board_snapshot":
        board = frame.get("board") or {}
        ready = [t for t in board.get("ready", []) if t.get("project") in ("", None, project)]
        out = [f"Ready tasks ({len(ready)}):"] if ready else ["Ready tasks: none"]
        return out + [f"  {t.get('task_id')} — {t.get('title')}" for t in ready]
    return []


def resume_main() -> None:
    """Console script ``syn-resume``."""
    from . import run_command

    run_command(resume, "syn-resume")


def syn_wait_main() -> None:
    """Console script ``syn-wait``: one mailbox wait for ``$SYN_IDENTITY``, directed only."""
    from . import run_command
    from .waiting import wait

    identity = os.environ.get("SYN_IDENTITY")
    args = sys.argv[1:]
    if identity and not any(a in ("--name", "--for") or a.startswith(("--name=", "--for=")) for a in args):
        args = ["--name", identity, *args]
    run_command(wait, "syn-wait", ["--directed-only", *args])
