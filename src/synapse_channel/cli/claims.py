"""Claim commands: ``claim``, ``release``, ``lock``, ``renew``, ``checkpoint``, ``handoff``, ``state``."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import click

from .common import connection_options, one_shot
from .requests import Caller, Frame, Verdict, ask, ask_pages, caller, forget_epoch, load_epoch, run_request, save_epoch


def expand_paths(args: list[str], option: str = "--paths") -> list[str]:
    """Let ``--paths a b c`` take every following word, as the 0.99 CLI does."""
    out: list[str] = []
    greedy = False
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        if arg == option:
            greedy = True
            continue
        if greedy and not arg.startswith("-"):
            out += [option, arg]
            continue
        greedy = False
        out.append(arg)
    return out


class PathsCommand(click.Command):
    """A command whose ``--paths`` option is greedy."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_paths(args))


def git_toplevel(cwd: Path) -> str:
    """The git top level of ``cwd`` ("" outside a repository)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def scope(paths: tuple[str, ...], worktree: str | None) -> tuple[str, list[str]]:
    """The worktree (default: git top level) and paths made relative to it."""
    cwd = Path.cwd()
    wt = worktree if worktree is not None else git_toplevel(cwd)
    if not wt:
        return "", list(paths)
    root = Path(wt).resolve()
    rel = []
    for p in paths:
        full = (cwd / p).resolve() if not os.path.isabs(p) else Path(p).resolve()
        try:
            rel.append(full.relative_to(root).as_posix() or ".")
        except ValueError:
            raise click.UsageError(f"path {p} is outside the worktree {root}") from None
    return str(root), rel


def claim_options(fn: Any) -> Any:
    fn = click.option("--note", default="", help="What you are doing (shown to others).")(fn)
    fn = click.option("--ttl", type=click.FloatRange(1), help="Lease seconds (default 3600).")(fn)
    fn = click.option("--worktree", help="Worktree the paths live in (default: the git top level, or none).")(fn)
    fn = click.option("--paths", "paths", multiple=True, help="Files or folders to claim (several may follow).")(fn)
    return fn


def current_branch(cwd: Path) -> str | None:
    """The branch checked out in ``cwd`` (None when detached or outside a repository)."""
    try:
        out = subprocess.run(["git", "symbolic-ref", "--short", "-q", "HEAD"], cwd=cwd, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


async def _claim(
    who: Caller,
    task: str,
    worktree: str,
    paths: list[str],
    ttl: float | None,
    note: str,
    git: dict[str, Any] | None = None,
) -> Frame:
    fields: dict[str, Any] = {"task_id": task, "note": note, "worktree": worktree, "paths": paths}
    if git:
        fields["git"] = git  # the branch the work is on: `synapse release --merged` releases it once merged
    if ttl is not None:
        fields["ttl_seconds"] = ttl
    reply = await ask(
        who,
        "claim",
        lambda f: (
            f.get("type") in ("claim_granted", "claim_denied")
            and f.get("task_id") == task
            and (f.get("type") == "claim_denied" or f.get("owner") == who.name)
        ),
        payload=task,
        **fields,
    )
    if reply["type"] == "claim_denied":
        raise Verdict(f"claim denied for '{task}': {reply.get('payload')} ({reply.get('reason_code')})")
    save_epoch(who.name, task, int(reply["epoch"]), str(reply.get("hub_id")))
    return reply


def _lease_text(reply: Frame) -> str:
    left = max(0, int(float(reply.get("lease_expires_at", 0)) - time.time()))
    where = ", ".join(reply.get("paths") or []) or "the whole worktree"
    return f"claimed '{reply['task_id']}' (epoch {reply['epoch']}): {where}; lease {left // 60}m{left % 60:02d}s"


@click.command(cls=PathsCommand)
@connection_options()
@claim_options
@click.argument("task")
def claim(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    paths: tuple[str, ...],
    worktree: str | None,
    ttl: float | None,
    note: str,
    task: str,
) -> None:
    """Lease TASK with a file scope; refused if it overlaps a live claim (exit 1)."""
    who = caller(uri, name, token, token_file)
    wt, rel = scope(paths, worktree)
    branch = current_branch(Path(wt)) if wt else None
    git = {"branch": branch, "auto_release_on": "merge"} if branch else None

    async def go() -> int:
        click.echo(_lease_text(await _claim(who, task, wt, rel, ttl, note, git)))
        return 0

    run_request(go())


EPOCH_OPTION = click.option(
    "--epoch",
    type=click.IntRange(1),
    help="The claim's epoch, when this shell has no record of it (e.g. a handoff you received; see synapse state).",
)


def _epoch_field(who: Caller, task: str, given: int | None) -> dict[str, int]:
    """The fencing epoch to present: ``--epoch``, else the one saved when this name was granted TASK."""
    epoch = given if given is not None else load_epoch(who.name, task)
    return {} if epoch is None else {"epoch": epoch}


async def _release(who: Caller, task: str, evidence: tuple[str, ...] = (), epoch: int | None = None) -> Frame:
    fields: dict[str, Any] = {"task_id": task, "idem_key": uuid.uuid4().hex, **_epoch_field(who, task, epoch)}
    if evidence:
        fields["evidence"] = list(evidence)
    reply = await ask(
        who,
        "release",
        lambda f: (
            f.get("type") in ("release_granted", "release_denied")
            and f.get("release_operation_id") == fields["idem_key"]
        ),
        payload=task,
        **fields,
    )
    if reply["type"] == "release_denied":
        raise Verdict(f"release refused for '{task}': {reply.get('payload')}")
    forget_epoch(who.name, task)
    return reply


@click.command()
@connection_options()
@click.option("--evidence", multiple=True, help="What shows the work is done (repeatable).")
@EPOCH_OPTION
@click.option(
    "--merged",
    is_flag=True,
    help="Instead of TASK: release each of your claims here whose branch is merged into --into, "
    "and mark its board task done.",
)
@click.option("--into", default="HEAD", show_default=True, help="With --merged: the branch merged into.")
@click.argument("task", required=False)
def release(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    evidence: tuple[str, ...],
    epoch: int | None,
    merged: bool,
    into: str,
    task: str | None,
) -> None:
    """Release your claim on TASK (exit 1 if it is not yours); or, with --merged, every merged one."""
    who = caller(uri, name, token, token_file)
    if merged:
        if task:
            raise click.UsageError("give TASK or --merged, not both")
        top = git_toplevel(Path.cwd())
        if not top:
            raise click.UsageError("--merged works inside a git work tree")
        run_request(_release_merged(who, str(Path(top).resolve()), into))
        return
    if not task:
        raise click.UsageError("missing TASK (or --merged)")

    async def go() -> int:
        await _release(who, task, evidence, epoch)
        click.echo(f"released '{task}'")
        return 0

    run_request(go())


def merged_into(cwd: Path, branch: str, into: str) -> str | None:
    """The commit ``into`` resolves to when ``branch`` is merged into it (and is not it), else None."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    target = git("rev-parse", "--abbrev-ref", into).stdout.strip()
    if branch in (into, target):
        return None  # the work's own branch: committing on it is not merging it
    if git("rev-parse", "--verify", "-q", f"refs/heads/{branch}").returncode != 0:
        return None
    if git("merge-base", "--is-ancestor", f"refs/heads/{branch}", into).returncode != 0:
        return None
    return git("rev-parse", "--short", into).stdout.strip() or into


async def _release_merged(who: Caller, wt: str, into: str) -> int:
    """Release the caller's claims in ``wt`` whose ``git.branch`` is merged into ``into``; board -> done."""
    from ..api import Session
    from ..core.scope_index import worktree_key

    async with Session(who.name, uri=who.uri, token=who.token) as session:
        released = 0
        for claim in await session.claims():
            raw = dict(claim.raw)
            info = raw.get("git")
            branch = info.get("branch") if isinstance(info, dict) else None
            if claim.owner != who.name or not isinstance(branch, str) or worktree_key(raw.get("worktree")) != wt:
                continue
            sha = merged_into(Path(wt), branch, into)
            if sha is None:
                continue
            proof = f"branch {branch} merged into {into} ({sha})"
            await session.release(claim.task_id, claim.epoch, evidence=[proof])
            forget_epoch(who.name, claim.task_id)
            released += 1
            click.echo(f"released '{claim.task_id}': {proof}")
            await _board_done(session, claim.task_id, proof)
    if not released:
        click.echo("no claim of yours here is on a merged branch")
    return 0


async def _board_done(session: Any, task_id: str, proof: str) -> None:
    """Mark ``task_id`` done on the board if it is there (open tasks pass through in_progress)."""
    from ..api import SynapseError

    try:
        board = await session.board()
        task = next((t for t in board.tasks if t.task_id == task_id), None)
        if task is None or task.status in ("done", "cancelled"):
            return
        if task.status != "in_progress":
            await session.update_task(task_id, status="in_progress")
        await session.update_task(task_id, status="done")
        await session.progress(task_id, proof)
        click.echo(f"board: '{task_id}' done")
    except SynapseError as exc:
        click.echo(f"board: '{task_id}' not updated ({exc})", err=True)


@click.command(cls=PathsCommand)
@connection_options()
@claim_options
@click.option("--wait-timeout", default=0.0, type=click.FloatRange(0), help="Keep retrying the claim this long.")
@click.argument("task")
@click.argument("command", nargs=-1, required=True)
def lock(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    paths: tuple[str, ...],
    worktree: str | None,
    ttl: float | None,
    note: str,
    wait_timeout: float,
    task: str,
    command: tuple[str, ...],
) -> None:
    """Claim TASK, run COMMAND (after --), release even if it fails; exit with its code."""
    import asyncio
    import sys

    who = caller(uri, name, token, token_file)
    wt, rel = scope(paths, worktree)
    deadline = time.monotonic() + wait_timeout
    while True:
        try:
            asyncio.run(_claim(who, task, wt, rel, ttl, note))
            break
        except Verdict as verdict:
            if verdict.code != 1 or time.monotonic() >= deadline or "claim denied" not in str(verdict):
                click.echo(f"Could not acquire lock '{task}': {verdict}", err=True)
                sys.exit(verdict.code)
            time.sleep(1.0)
    try:
        code = subprocess.call(list(command))
    except OSError as exc:
        click.echo(f"cannot run {command[0]}: {exc.strerror}", err=True)
        code = 127
    except KeyboardInterrupt:
        code = 130
    try:
        asyncio.run(_release(who, task))
    except Verdict as verdict:
        click.echo(f"warning: {verdict}; the lease stays until it expires", err=True)
    sys.exit(code)


async def _owned_call(who: Caller, verb: str, task: str, answer: str, epoch: int | None, **fields: Any) -> Frame:
    fields.update(_epoch_field(who, task, epoch))
    return await ask(who, verb, lambda f: f.get("type") == answer and f.get("task_id") == task, task_id=task, **fields)


@click.command()
@connection_options()
@click.option("--ttl", default=3600.0, show_default=True, type=click.FloatRange(1))
@EPOCH_OPTION
@click.argument("task")
def renew(
    uri: str, name: str | None, token: str | None, token_file: Path | None, ttl: float, epoch: int | None, task: str
) -> None:
    """Extend your lease on TASK by --ttl seconds from now."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        reply = await _owned_call(who, "renew", task, "claim_renewed", epoch, ttl_seconds=ttl)
        click.echo(_lease_text(reply).replace("claimed", "renewed", 1))
        return 0

    run_request(go())


@click.command()
@connection_options()
@EPOCH_OPTION
@click.argument("task")
@click.argument("note", nargs=-1, required=True)
def checkpoint(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    epoch: int | None,
    task: str,
    note: tuple[str, ...],
) -> None:
    """Store a resume NOTE on your claim of TASK."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        await _owned_call(who, "checkpoint", task, "claim_checkpointed", epoch, checkpoint=" ".join(note))
        click.echo(f"checkpointed '{task}'")
        return 0

    run_request(go())


@click.command()
@connection_options()
@click.option("--to", "to", required=True, help="The online agent that takes the claim over.")
@EPOCH_OPTION
@click.argument("task")
def handoff(
    uri: str, name: str | None, token: str | None, token_file: Path | None, to: str, epoch: int | None, task: str
) -> None:
    """Hand your claim on TASK to another online agent, atomically."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        reply = await _owned_call(who, "handoff", task, "claim_handoff", epoch, to=to)
        forget_epoch(who.name, task)
        click.echo(f"handed '{task}' to {reply.get('owner')} (epoch {reply.get('epoch')})")
        return 0

    run_request(go())


@click.command()
@connection_options()
@click.option("--owner", help="Only claims held by this identity.")
@click.option("--json", "as_json", is_flag=True)
def state(
    uri: str, name: str | None, token: str | None, token_file: Path | None, owner: str | None, as_json: bool
) -> None:
    """List live claims."""
    who = Caller(uri, name or one_shot("state"), caller_token(token, token_file))

    async def go() -> int:
        from ..client.connection import merge_pages

        pages = await ask_pages(who, "state_request", lambda f: f.get("type") == "state_snapshot", payload="snapshot")
        snapshot = merge_pages(pages, "snapshot", "active_claims")
        claims = [c for c in snapshot.get("active_claims", []) if not owner or c.get("owner") == owner]
        if as_json:
            click.echo(json.dumps(claims, indent=2, sort_keys=True))
            return 0
        click.echo(f"Active claims ({len(claims)}):" if claims else "Active claims: none")
        now = time.time()
        for c in sorted(claims, key=lambda c: str(c.get("task_id"))):
            left = max(0, int(float(c.get("lease_expires_at", now)) - now))
            paths = ",".join(c.get("paths") or []) or "(worktree)"
            click.echo(
                f"  {c.get('task_id')} [{c.get('status')}] owner={c.get('owner')} paths={paths} "
                f"worktree={c.get('worktree') or '-'} epoch={c.get('epoch')} expires={left // 60}m "
                f"checkpoint={c.get('checkpoint') or '-'}"
            )
        return 0

    run_request(go())


def caller_token(token: str | None, token_file: Path | None) -> str | None:
    """The token for read-only commands that need no identity."""
    from .common import resolve_token

    return resolve_token(token, token_file)
