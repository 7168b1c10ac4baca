"""Board commands: ``task declare|update|progress`` and ``board``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import connection_options, one_shot, resolve_token
from .requests import Caller, ask, ask_pages, caller, emit_json, run_request

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object for the outcome.")


@click.group()
def task() -> None:
    """Declare, update and report progress on board tasks."""


def _posted(kind: str, task_id: str) -> Any:
    return lambda f: f.get("type") == kind and (f.get("task") or f.get("note") or {}).get("task_id") == task_id


@task.command()
@connection_options()
@click.option("--title", required=True)
@click.option("--description", default="")
@click.option("--depends-on", "depends_on", multiple=True, help="A task this one waits for (repeatable).")
@click.option("--project", default="")
@click.option("--suggested-owner", default="")
@JSON_OPTION
@click.argument("task_id")
def declare(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    title: str,
    description: str,
    depends_on: tuple[str, ...],
    project: str,
    suggested_owner: str,
    as_json: bool,
    task_id: str,
) -> None:
    """Put TASK_ID on the board (unknown dependencies and cycles are refused)."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        fields: dict[str, Any] = {
            "task_id": task_id,
            "title": title,
            "description": description,
            "depends_on": list(depends_on),
            "project": project,
            "suggested_owner": suggested_owner,
        }
        reply = await ask(who, "ledger_task", _posted("ledger_task_posted", task_id), **fields)
        if as_json:
            emit_json({"ok": True, "outcome": "declared", "task_id": task_id, "task": reply.get("task")})
        else:
            click.echo(f"declared {task_id} — {title} (deps: {', '.join(depends_on) or 'none'})")
        return 0

    run_request(go(), as_json, task_id=task_id)


@task.command()
@connection_options()
@click.option("--status", type=click.Choice(["open", "in_progress", "done", "blocked", "cancelled"]))
@click.option("--expected-version", type=int, help="Only update if the board still has this version.")
@click.option("--title")
@click.option("--description")
@click.option("--suggested-owner")
@click.option("--depends-on", "depends_on", multiple=True)
@JSON_OPTION
@click.argument("task_id")
def update(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    status: str | None,
    expected_version: int | None,
    title: str | None,
    description: str | None,
    suggested_owner: str | None,
    depends_on: tuple[str, ...],
    as_json: bool,
    task_id: str,
) -> None:
    """Change TASK_ID's status or fields (exit 1 on a version conflict)."""
    who = caller(uri, name, token, token_file)
    fields: dict[str, Any] = {"task_id": task_id}
    for key, value in (
        ("status", status),
        ("expected_version", expected_version),
        ("title", title),
        ("description", description),
        ("suggested_owner", suggested_owner),
    ):
        if value is not None:
            fields[key] = value
    if depends_on:
        fields["depends_on"] = list(depends_on)

    async def go() -> int:
        reply = await ask(who, "ledger_task_update", _posted("ledger_task_updated", task_id), **fields)
        if as_json:
            emit_json({"ok": True, "outcome": "updated", "task_id": task_id, "task": reply.get("task")})
        else:
            click.echo(f"updated {task_id} -> status={reply['task']['status']} (v{reply['task']['version']})")
        return 0

    run_request(go(), as_json, task_id=task_id)


@task.command()
@connection_options()
@click.option("--kind", default="note", show_default=True)
@JSON_OPTION
@click.argument("task_id")
@click.argument("text", nargs=-1, required=True)
def progress(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    kind: str,
    as_json: bool,
    task_id: str,
    text: tuple[str, ...],
) -> None:
    """Post a progress note on TASK_ID."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        await ask(
            who,
            "ledger_progress",
            _posted("ledger_progress_posted", task_id),
            payload=" ".join(text),
            task_id=task_id,
            kind=kind,
        )
        if as_json:
            emit_json({"ok": True, "outcome": "posted", "task_id": task_id, "kind": kind, "text": " ".join(text)})
        else:
            click.echo(f"posted {kind} on {task_id}: {' '.join(text)}")
        return 0

    run_request(go(), as_json, task_id=task_id)


@click.command()
@connection_options()
@click.option("--json", "as_json", is_flag=True)
def board(uri: str, name: str | None, token: str | None, token_file: Path | None, as_json: bool) -> None:
    """Show the board: tasks, ready tasks, recent progress."""
    who = Caller(uri, name or one_shot("board"), resolve_token(token, token_file))

    async def go() -> int:
        from ..api import merge_pages

        pages = await ask_pages(who, "board_request", lambda f: f.get("type") == "board_snapshot", payload="board")
        snap = merge_pages(pages, "board", "tasks", "ready")
        if as_json:
            click.echo(json.dumps(snap, indent=2, sort_keys=True))
            return 0
        click.echo(render_board(snap))
        return 0

    run_request(go())


def render_board(snap: dict[str, Any]) -> str:
    """Human text for a board snapshot."""
    tasks = snap.get("tasks", [])
    lines = [f"Tasks ({len(tasks)}):"]
    for t in tasks:
        deps = f"  (deps: {', '.join(t['depends_on'])})" if t.get("depends_on") else ""
        lines.append(f"  [{t.get('status')}] {t.get('task_id')} — {t.get('title')}{deps}")
    ready = snap.get("ready", [])
    lines.append("Ready: " + (", ".join(t["task_id"] for t in ready) if ready else "(none)"))
    notes = snap.get("progress", [])[-10:]
    if notes:
        lines.append("Recent progress:")
        lines += [f"  {n.get('author')} [{n.get('kind')}] {n.get('task_id')}: {n.get('text')}" for n in notes]
    return "\n".join(lines)
