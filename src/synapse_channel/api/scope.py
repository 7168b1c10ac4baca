"""Claim scopes as ``synapse claim`` sends them: the git top level and paths relative to it.

Two claims collide only when the hub sees the same worktree and overlapping
relative paths, so every client (the CLI, the MCP server, a plugin) must
name a scope the same way; this is that one way.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path


class OutsideWorktree(ValueError):
    """A path to claim is not inside the worktree the claim is scoped to."""


def git_toplevel(cwd: Path | str | None = None) -> str:
    """The git top level of ``cwd`` (default: the current directory); "" outside a repository or without git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=cwd or None,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def claim_scope(
    paths: Iterable[str], worktree: str | None = None, cwd: Path | str | None = None
) -> tuple[str, list[str]]:
    """``(worktree, paths relative to it)`` for :meth:`Session.claim`.

    ``worktree`` defaults to the git top level of ``cwd`` (the current
    directory); outside a repository the paths go as given with no worktree.
    Relative paths start at ``cwd``. A path outside the worktree raises
    :class:`OutsideWorktree`.
    """
    here = Path(cwd) if cwd is not None else Path.cwd()
    wt = worktree if worktree is not None else git_toplevel(here)
    if not wt:
        return "", list(paths)
    root = Path(wt).resolve()
    rel = []
    for p in paths:
        full = Path(p).resolve() if os.path.isabs(p) else (here / p).resolve()
        try:
            rel.append(full.relative_to(root).as_posix() or ".")
        except ValueError:
            raise OutsideWorktree(f"path {p} is outside the worktree {root}") from None
    return str(root), rel
