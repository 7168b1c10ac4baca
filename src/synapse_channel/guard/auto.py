"""Auto-claim (``[claims] auto = true``): an agent's first edit of an unclaimed file claims it.

An agent that never runs ``synapse claim`` then still leaves the claims the
other agents' guards respect. The pre-edit hook, having found the files free,
claims them for the editing identity under one claim per agent and task:
``auto/IDENTITY/TASK``, where TASK is ``$SYN_TASK`` (the agent's current
task) or else the checked-out branch. Each later edit adds its files to that
claim (claiming a task you hold replaces its scope) and renews the lease once
half of it is gone, so the claim lives while the agent keeps working; it is
released when the turn ends (``[claims] auto_release = "turn"``, the stop
hook) or, with ``"merge"``, when its branch is merged (the claim carries the
branch like ``git-claim``, so the guard's post-merge hook and ``release
--merged`` release it); the lease bounds it either way.

What was auto-claimed is remembered per identity under ``$SYN_HOME``
(``hook-state/auto-claims``), under a file lock: an assistant may run several
edit hooks at once, and each must extend the claim, not replace another's
files.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .check import GitFailed, Hold, git

#: The hub refuses claims over more paths than this (core.claims.MAX_PATHS).
MAX_PATHS = 1000


@dataclass(frozen=True, slots=True)
class AutoSettings:
    """The ``[claims] auto*`` settings and the connection a hook claims with."""

    identity: str
    uri: str
    token: str | None
    timeout: float
    ttl: float
    release: str  # "turn" or "merge"


def settings(identity: str | None, uri: str, token: str | None, timeout: float) -> AutoSettings | None:
    """The auto-claim settings when ``[claims] auto`` is on for this identity, else None."""
    from ..client import context as ctx

    cfg = ctx.settings()
    if not identity or not cfg.get("claims.auto"):
        return None
    release = str(cfg.get("claims.auto_release") or "turn")
    return AutoSettings(
        identity=identity,
        uri=uri,
        token=token,
        timeout=timeout,
        ttl=float(cfg.get("claims.auto_ttl") or 1800.0),
        release=release if release in ("turn", "merge") else "turn",
    )


def state_path(identity: str) -> Path:
    """Where the auto-claims of ``identity`` are remembered."""
    from urllib.parse import quote

    from ..paths import syn_home

    return syn_home() / "hook-state" / "auto-claims" / f"{quote(identity, safe='')}.json"


@contextlib.contextmanager
def _locked(identity: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The remembered auto-claims of ``identity`` under an exclusive lock; written back on exit."""
    import fcntl

    from ..paths import write_private

    path = state_path(identity)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text())
            if not isinstance(state, dict):
                state = {}
        except (OSError, ValueError):
            state = {}
        before = json.dumps(state, sort_keys=True)
        yield path, state
        if json.dumps(state, sort_keys=True) != before:
            write_private(path, json.dumps(state, sort_keys=True) + "\n")
    finally:
        os.close(fd)


def _branch(worktree: str) -> str | None:
    """The checked-out branch of ``worktree``, None on a detached HEAD."""
    try:
        out = git("-C", worktree, "symbolic-ref", "--quiet", "--short", "HEAD")
    except (GitFailed, OSError):
        return None
    return out[0].strip() if out else None


def _task(identity: str, worktree: str, branch: str | None, state: dict[str, Any]) -> str:
    """``auto/IDENTITY/TASK`` for this worktree (a second worktree on the same task gets a suffix)."""
    current = os.environ.get("SYN_TASK", "").strip() or branch or "detached"
    base = f"auto/{identity}/{current}"
    task, n = base, 1
    while task in state and state[task].get("worktree") != worktree:
        n += 1
        task = f"{base}#{n}"
    return task


def claim_for_edit(auto: AutoSettings, worktree: str, paths: list[str], holds: list[Hold]) -> Hold | None:
    """Claim the files of ``paths`` nobody holds (renewing a lease past its half); the claim in the way, if any.

    ``holds`` are the live claims the guard just found over ``paths``; only
    the caller's own count here (another agent's hold was refused before).
    Any other failure (hub gone, quota, too many paths) leaves the edit
    allowed with a note on stderr: auto-claim helps, it never blocks work.
    """
    from ..protocol import owner_of

    mine = [h for h in holds if owner_of(h.owner) == auto.identity]
    covered = {h.path for h in mine}
    todo = [p for p in dict.fromkeys(paths) if p not in covered]
    now = time.time()
    ours = f"auto/{auto.identity}/"
    if not todo and not any(h.task_id.startswith(ours) and h.lease_expires_at - now < auto.ttl / 2 for h in mine):
        return None  # the common case, an edit of a file already ours: no git, no lock, no request
    with _locked(auto.identity) as (_, state):
        branch = _branch(worktree)
        task = _task(auto.identity, worktree, branch, state)
        entry = state.get(task) or {}
        stale = any(h.task_id == task and h.lease_expires_at - now < auto.ttl / 2 for h in mine)
        if not todo and not stale:
            return None
        scope = sorted(set(entry.get("paths") or []) | set(todo))
        if len(scope) > MAX_PATHS:
            _note(f"auto-claim: {task} would cover {len(scope)} files (the hub allows {MAX_PATHS}); not claimed")
            return None
        in_way = _claim(auto, task, worktree, scope, branch, state)
        if in_way is not None and entry.get("paths") and todo:
            # the files claimed before may have been taken while our lease had lapsed: keep the new ones
            in_way = _claim(auto, task, worktree, sorted(todo), branch, state)
        return in_way


def _claim(
    auto: AutoSettings, task: str, worktree: str, scope: list[str], branch: str | None, state: dict[str, Any]
) -> Hold | None:
    from ..api import Conflict, SynapseError, SyncSession

    note = f"auto-claimed on edit ({os.environ.get('SYN_TASK') or 'no SYN_TASK'})"
    git_info = {"branch": branch, "auto_release_on": "merge"} if branch else None
    try:
        with SyncSession(auto.identity, uri=auto.uri, token=auto.token, timeout=auto.timeout) as session:
            claim = session.claim(task, scope, worktree=worktree, ttl=auto.ttl, note=note, git=git_info)
    except Conflict as exc:
        if exc.held_by is None:
            _note(f"auto-claim of {task} refused: {exc}")
            return None
        held = exc.frame.get("held_paths")
        return Hold(
            path=next((p for p in scope if isinstance(held, list) and p in held), scope[0]),
            task_id=exc.held_task or "",
            owner=exc.held_by,
            epoch=0,
            lease_expires_at=exc.held_until or 0.0,
            holder_online=False,
        )
    except (SynapseError, OSError) as exc:
        _note(f"auto-claim of {task} failed ({exc}); edit allowed unclaimed")
        return None
    state[task] = {"worktree": worktree, "paths": scope, "epoch": claim.epoch, "branch": branch}
    return None


async def release_turn(identity: str | None, uri: str, token: str | None, timeout: float = 3.0) -> list[str]:
    """At the end of a turn (``auto_release = "turn"``): release every auto-claim of ``identity``; the tasks released.

    Async: the stop hook that calls it already runs an event loop.
    """
    from ..api import Refused, Session, SynapseError

    if not identity or not state_path(identity).exists():
        return []
    released: list[str] = []
    with _locked(identity) as (_, state):
        if not state:
            return []
        try:
            async with Session(identity, uri=uri, token=token, timeout=timeout) as session:
                for task, entry in list(state.items()):
                    epoch = entry.get("epoch") if isinstance(entry, dict) else None
                    try:
                        await session.release(task, epoch if isinstance(epoch, int) else None)
                        released.append(task)
                    except Refused as exc:  # already gone: lapsed, released by hand or by merge
                        if exc.code not in ("NOT_CLAIMED", "NOT_OWNER", "STALE_EPOCH"):
                            raise
                    del state[task]
        except (SynapseError, OSError) as exc:
            _note(f"auto-claims not released ({exc}); their leases end them")
    return released


def _note(message: str) -> None:
    import sys

    sys.stderr.write(f"synapse hook: {message}\n")
