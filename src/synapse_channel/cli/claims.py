"""Claim commands: ``claim``, ``release``, ``lock``, ``renew``, ``checkpoint``, ``handoff``, ``state``."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import click

from .common import connection_options, one_shot
from .requests import (
    Caller,
    Frame,
    Verdict,
    ask,
    ask_pages,
    caller,
    emit_json,
    forget_epoch,
    load_epoch,
    run_request,
    save_epoch,
)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object for the outcome.")


def expand_paths(args: list[str], command: click.Command, option: str = "--paths") -> list[str]:
    """Rewrite ``args`` so that ``--paths a b c`` gives each word to ``--paths``.

    The grammar, for people who type 0.99 habits: ``--paths`` takes every
    following word up to the next option or ``--``. When the command's
    positional arguments (TASK, and lock's COMMAND) are not all given outside
    those words, the last word(s) of the last ``--paths`` run are the missing
    positionals, so ``claim --paths a b T-1`` and ``lock --paths x T-6 -- cmd``
    mean what they look like. At least one word always stays a path. A
    command whose trailing positional is itself a command line (``lock``)
    is greedy only when ``--`` follows; without it ``--paths`` takes one
    value, as in 0.99.
    """
    greedy = not isinstance(command, PathsCommand) or not command.separator_needed or "--" in args
    takes_value = {
        opt
        for p in command.params
        if isinstance(p, click.Option) and not p.is_flag and not p.count
        for opt in (*p.opts, *p.secondary_opts)
    }
    items: list[str | tuple[str]] = []  # a 1-tuple is a word given to --paths
    runs: list[list[int]] = []
    outside: list[str] = []  # the bare words click will see as positionals
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            # after --, click gives every word to the positionals in order; a variadic last
            # argument (lock's COMMAND) takes them all, so they fill one positional at most
            after = args[i + 1 :]
            variadic = any(isinstance(p, click.Argument) and p.nargs == -1 for p in command.params)
            outside += after[:1] if variadic else after
            items += args[i:]
            break
        if arg == option and greedy:
            run: list[int] = []
            i += 1
            while i < len(args) and args[i] != "--" and not (args[i].startswith("-") and len(args[i]) > 1):
                run.append(len(items))
                items.append((args[i],))
                i += 1
            if run:
                runs.append(run)
            else:
                items.append(arg)  # no word follows: let click report the missing value
            continue
        if arg in takes_value:
            items += args[i : i + 2]
            i += 2
            continue
        if not (arg.startswith("-") and len(arg) > 1):
            outside.append(arg)
        items.append(arg)
        i += 1
    wanted = command.needed_positionals(args) if isinstance(command, PathsCommand) else 0
    missing = wanted - len(outside)
    if missing > 0 and runs:
        last = runs[-1]
        for index in last[len(last) - min(missing, len(last) - 1) :]:
            word = items[index]
            items[index] = word[0] if isinstance(word, tuple) else word
    out: list[str] = []
    for item in items:
        out += [option, item[0]] if isinstance(item, tuple) else [item]
    return out


class PathsCommand(click.Command):
    """A command whose ``--paths`` option takes several words (see :func:`expand_paths`)."""

    #: True for ``lock``: its COMMAND is bare words too, so ``--paths`` is greedy only before ``--``.
    separator_needed = False

    def needed_positionals(self, args: list[str]) -> int:
        """How many positional arguments must be given (a required ``nargs=-1`` counts once)."""
        return sum(1 for p in self.params if isinstance(p, click.Argument) and p.required)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_paths(args, self))


class LockCommand(PathsCommand):
    separator_needed = True


class GitClaimCommand(PathsCommand):
    def needed_positionals(self, args: list[str]) -> int:
        """TASK, unless ``--task-id`` names it."""
        return 0 if any(a == "--task-id" or a.startswith("--task-id=") for a in args) else 1


def git_toplevel(cwd: Path) -> str:
    """The git top level of ``cwd`` ("" outside a repository)."""
    from ..api.scope import git_toplevel as top

    return top(cwd)


def scope(paths: tuple[str, ...], worktree: str | None) -> tuple[str, list[str]]:
    """The worktree (default: git top level) and paths made relative to it (a usage error outside it)."""
    from ..api.scope import OutsideWorktree, claim_scope

    try:
        return claim_scope(paths, worktree)
    except OutsideWorktree as exc:
        raise click.UsageError(str(exc)) from None


def claim_options(fn: Any) -> Any:
    fn = click.option("--note", default="", help="What you are doing (shown to others).")(fn)
    fn = click.option("--ttl", type=click.FloatRange(1), help="Lease seconds (default 3600).")(fn)
    fn = click.option("--worktree", help="Worktree the paths live in (default: the git top level, or none).")(fn)
    fn = click.option(
        "--paths",
        "paths",
        multiple=True,
        help="Files or folders to claim; several may follow (the last is TASK if TASK is not given elsewhere).",
    )(fn)
    return fn


def current_branch(cwd: Path) -> str | None:
    """The branch checked out in ``cwd`` (None when detached or outside a repository)."""
    try:
        out = subprocess.run(["git", "symbolic-ref", "--short", "-q", "HEAD"], cwd=cwd, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


async def _claim(
    who: Caller, task: str, worktree: str, paths: list[str], ttl: float | None, note: str, **extra: Any
) -> Frame:
    fields: dict[str, Any] = {"task_id": task, "note": note, "worktree": worktree, "paths": paths, **extra}
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
        raise Verdict(
            f"claim denied for '{task}': {reply.get('payload')} ({reply.get('reason_code')})",
            outcome="denied",
            reason=str(reply.get("reason_code") or "") or None,
        )
    save_epoch(who.name, task, int(reply["epoch"]), str(reply.get("hub_id")))
    return reply


def claim_json(outcome: str, reply: Frame) -> dict[str, Any]:
    """The ``--json`` object for a granted, renewed or handed-over claim."""
    keys = ("task_id", "owner", "epoch", "paths", "worktree", "lease_expires_at", "git")
    return {"ok": True, "outcome": outcome, **{k: reply.get(k) for k in keys if k in reply}}


def _lease_text(reply: Frame) -> str:
    left = max(0, int(float(reply.get("lease_expires_at", 0)) - time.time()))
    where = ", ".join(reply.get("paths") or []) or "the whole worktree"
    return f"claimed '{reply['task_id']}' (epoch {reply['epoch']}): {where}; lease {left // 60}m{left % 60:02d}s"


@click.command(cls=PathsCommand)
@connection_options()
@claim_options
@JSON_OPTION
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
    as_json: bool,
    task: str,
) -> None:
    """Lease TASK with a file scope; refused if it overlaps a live claim (exit 1).

    Both orders work: 'claim T-1 --paths a b' and 'claim --paths a b T-1'. With no
    --name, SYN_IDENTITY or [identity], the claim is USER's (as in 0.99).
    """
    who = caller(uri, name, token, token_file)
    wt, rel = scope(paths, worktree)
    branch = current_branch(Path(wt)) if wt else None
    git = {"branch": branch, "auto_release_on": "merge"} if branch else None

    async def go() -> int:
        reply = await _claim(who, task, wt, rel, ttl, note, **({"git": git} if git else {}))
        emit_json(claim_json("claimed", reply)) if as_json else click.echo(_lease_text(reply))
        return 0

    run_request(go(), as_json, task_id=task)


def git_branch(worktree: str) -> str:
    """The checked-out branch of ``worktree``; exit 1 with one line on a detached HEAD or no checkout."""
    try:
        out = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "HEAD"],
            cwd=worktree,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise click.ClickException(f"git-claim cannot ask git for the branch in {worktree}: {exc}") from None
    branch = out.stdout.strip()
    if out.returncode != 0 or not branch:
        raise click.ClickException(
            f"git-claim needs a checked-out branch in {worktree} (a detached HEAD, or not a git checkout)"
        )
    return branch


@click.command("git-claim", cls=GitClaimCommand)
@connection_options()
@claim_options
@click.option("--task-id", "task_flag", help="The task id, instead of the positional TASK (do not pass both).")
@click.option("--base", default="main", show_default=True, help="The branch this work merges back into.")
@click.option(
    "--auto-release-on",
    type=click.Choice(["manual", "commit", "merge"]),
    default="merge",
    show_default=True,
    help="When the claim is released (merge: by the guard's post-merge hook or release --merged).",
)
@JSON_OPTION
@click.argument("task", required=False)
def git_claim(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    paths: tuple[str, ...],
    worktree: str | None,
    ttl: float | None,
    note: str,
    task_flag: str | None,
    base: str,
    auto_release_on: str,
    as_json: bool,
    task: str | None,
) -> None:
    """Claim TASK scoped to the current git branch (the 0.99 git-claim).

    Like ``claim``, with the worktree taken from git and the branch, base and
    auto-release policy recorded on the claim (the ``git`` field), so 0.99
    tools see a branch-scoped claim. Exit 0 claimed, 1 refused or not in a
    git checkout.
    """
    if task and task_flag and task != task_flag:
        raise click.UsageError(f"TASK {task!r} and --task-id {task_flag!r} disagree; pass one")
    task_id = task or task_flag
    if not task_id:
        raise click.UsageError("Missing argument 'TASK' (or --task-id)")
    top = worktree or git_toplevel(Path.cwd())
    if not top:
        raise click.ClickException("git-claim must run inside a git checkout (or pass --worktree)")
    git = {"branch": git_branch(top), "base": base, "auto_release_on": auto_release_on}
    who = caller(uri, name, token, token_file)
    wt, rel = scope(paths, top)

    async def go() -> int:
        reply = await _claim(who, task_id, wt, rel, ttl, note, git=git)
        if as_json:
            emit_json(claim_json("claimed", reply))
            return 0
        click.echo(f"claimed '{task_id}' on branch {git['branch']} (base {base}, auto-release on {auto_release_on})")
        if auto_release_on != "manual":
            click.echo(
                f"note: no hook of this CLI releases it on {auto_release_on}; "
                f"run `synapse release {task_id}` when done",
                err=True,
            )
        return 0

    run_request(go(), as_json, task_id=task_id)


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
        raise Verdict(
            f"release refused for '{task}': {reply.get('payload')}",
            reason=str(reply.get("reason_code") or "") or None,
        )
    forget_epoch(who.name, task)
    return reply


@click.command()
@connection_options()
@click.option("--evidence", multiple=True, help="What shows the work is done (repeatable).")
@EPOCH_OPTION
@JSON_OPTION
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
    as_json: bool,
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
        run_request(_release_merged(who, str(Path(top).resolve()), into, as_json))
        return
    if not task:
        raise click.UsageError("missing TASK (or --merged)")

    async def go() -> int:
        await _release(who, task, evidence, epoch)
        if as_json:
            emit_json({"ok": True, "outcome": "released", "task_id": task, "owner": who.name})
        else:
            click.echo(f"released '{task}'")
        return 0

    run_request(go(), as_json, task_id=task)


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


async def _release_merged(who: Caller, wt: str, into: str, as_json: bool = False) -> int:
    """Release the caller's claims in ``wt`` whose ``git.branch`` is merged into ``into``; board -> done."""
    from ..api import Session
    from ..core.scope_index import worktree_key

    async with Session(who.name, uri=who.uri, token=who.token) as session:
        released: list[dict[str, str]] = []
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
            released.append({"task_id": claim.task_id, "evidence": proof})
            if not as_json:
                click.echo(f"released '{claim.task_id}': {proof}")
            await _board_done(session, claim.task_id, proof, quiet=as_json)
    if as_json:
        emit_json({"ok": True, "outcome": "released" if released else "none_merged", "released": released})
    elif not released:
        click.echo("no claim of yours here is on a merged branch")
    return 0


async def _board_done(session: Any, task_id: str, proof: str, quiet: bool = False) -> None:
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
        if not quiet:
            click.echo(f"board: '{task_id}' done")
    except SynapseError as exc:
        click.echo(f"board: '{task_id}' not updated ({exc})", err=True)


@click.command(cls=LockCommand)
@connection_options()
@claim_options
@click.option("--wait-timeout", default=0.0, type=click.FloatRange(0), help="Keep retrying the claim this long.")
@click.option(
    "--json", "as_json", is_flag=True, help="End stdout with one JSON object: the lock's outcome and COMMAND's exit."
)
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
    as_json: bool,
    task: str,
    command: tuple[str, ...],
) -> None:
    """Claim TASK, run COMMAND (after --), release even if it fails; exit with its code.

    'lock --paths a b T-1 -- cmd' works too: before '--' the last word of
    --paths is TASK. Without '--', --paths takes one value (as in 0.99).
    """
    import asyncio
    import sys

    who = caller(uri, name, token, token_file)
    wt, rel = scope(paths, worktree)
    deadline = time.monotonic() + wait_timeout
    while True:
        try:
            granted = asyncio.run(_claim(who, task, wt, rel, ttl, note))
            break
        except Verdict as verdict:
            if verdict.code != 1 or time.monotonic() >= deadline or verdict.outcome != "denied":
                click.echo(f"Could not acquire lock '{task}': {verdict}", err=True)
                if as_json:
                    emit_json(verdict.as_json(task_id=task))
                sys.exit(verdict.code)
            time.sleep(1.0)
    try:
        code = subprocess.call(list(command))
    except OSError as exc:
        click.echo(f"cannot run {command[0]}: {exc.strerror}", err=True)
        code = 127
    except KeyboardInterrupt:
        code = 130
    released = True
    try:
        asyncio.run(_release(who, task))
    except Verdict as verdict:
        released = False
        click.echo(f"warning: {verdict}; the lease stays until it expires", err=True)
    if as_json:
        emit_json(
            {
                "ok": code == 0,
                "outcome": "ran",
                "task_id": task,
                "owner": who.name,
                "epoch": granted.get("epoch"),
                "exit_code": code,
                "released": released,
            }
        )
    sys.exit(code)


async def _owned_call(who: Caller, verb: str, task: str, answer: str, epoch: int | None, **fields: Any) -> Frame:
    fields.update(_epoch_field(who, task, epoch))
    return await ask(who, verb, lambda f: f.get("type") == answer and f.get("task_id") == task, task_id=task, **fields)


@click.command()
@connection_options()
@click.option("--ttl", default=3600.0, show_default=True, type=click.FloatRange(1))
@EPOCH_OPTION
@JSON_OPTION
@click.argument("task")
def renew(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    ttl: float,
    epoch: int | None,
    as_json: bool,
    task: str,
) -> None:
    """Extend your lease on TASK by --ttl seconds from now."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        reply = await _owned_call(who, "renew", task, "claim_renewed", epoch, ttl_seconds=ttl)
        if as_json:
            emit_json(claim_json("renewed", reply))
        else:
            click.echo(_lease_text(reply).replace("claimed", "renewed", 1))
        return 0

    run_request(go(), as_json, task_id=task)


@click.command()
@connection_options()
@EPOCH_OPTION
@JSON_OPTION
@click.argument("task")
@click.argument("note", nargs=-1, required=True)
def checkpoint(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    epoch: int | None,
    as_json: bool,
    task: str,
    note: tuple[str, ...],
) -> None:
    """Store a resume NOTE on your claim of TASK."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        await _owned_call(who, "checkpoint", task, "claim_checkpointed", epoch, checkpoint=" ".join(note))
        if as_json:
            emit_json({"ok": True, "outcome": "checkpointed", "task_id": task, "checkpoint": " ".join(note)})
        else:
            click.echo(f"checkpointed '{task}'")
        return 0

    run_request(go(), as_json, task_id=task)


@click.command()
@connection_options()
@click.option("--to", "to", required=True, help="The online agent that takes the claim over.")
@EPOCH_OPTION
@JSON_OPTION
@click.argument("task")
def handoff(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    to: str,
    epoch: int | None,
    as_json: bool,
    task: str,
) -> None:
    """Hand your claim on TASK to another online agent, atomically."""
    who = caller(uri, name, token, token_file)

    async def go() -> int:
        reply = await _owned_call(who, "handoff", task, "claim_handoff", epoch, to=to)
        forget_epoch(who.name, task)
        if as_json:
            emit_json({**claim_json("handed_off", reply), "from": who.name})
        else:
            click.echo(f"handed '{task}' to {reply.get('owner')} (epoch {reply.get('epoch')})")
        return 0

    run_request(go(), as_json, task_id=task)


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
        from ..api import merge_pages

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
