"""``synapse run --enforce [--task T] [--allow PATH]... -- CMD``: CMD may write only inside your live claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from .common import connection_options


def _git_dirs(cwd: Path) -> tuple[str, list[str]]:
    """(work tree top, [git dir, common git dir]) of ``cwd``; UsageError outside a work tree."""
    out = subprocess.run(
        ["git", "rev-parse", "--show-toplevel", "--git-dir", "--git-common-dir"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != 3:
        raise click.UsageError("--enforce works inside a git work tree (claims are scoped to one)")
    top = str(Path(lines[0]).resolve())
    dirs = [str((cwd / d).resolve()) for d in lines[1:]]
    return top, dirs


def build_allowed(
    worktree: str, claim_paths: list[list[str]], git_dirs: list[str], extra: tuple[str, ...]
) -> tuple[list[str], list[str], list[str]]:
    """(paths writable beneath, claimed paths not there yet, build paths left out because they hold the work tree)."""
    from ..core.scope_index import normalise_path

    allowed: list[str] = []
    missing: list[str] = []
    dropped: list[str] = []
    for paths in claim_paths:
        for raw in paths or [""]:
            parts = normalise_path(raw, worktree)
            full = os.path.join(worktree, *parts)
            (allowed if os.path.exists(full) else missing).append(full)
    home = Path.home()
    needs = [
        "/dev",
        "/tmp",
        "/var/tmp",
        os.environ.get("TMPDIR", ""),
        os.environ.get("XDG_CACHE_HOME") or str(home / ".cache"),
        os.environ.get("SYN_HOME") or str(home / "synapse"),
        *git_dirs,
        *(str(Path(p).resolve()) for p in extra),
    ]
    for path in needs:
        if not path or not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if worktree == real or worktree.startswith(real.rstrip("/") + "/"):
            dropped.append(path)  # allowing it would allow the whole work tree
            continue
        allowed.append(path)
    return list(dict.fromkeys(allowed)), missing, dropped


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--enforce", is_flag=True, help="Confine CMD's writes to your live claims (Linux Landlock).")
@click.option("--task", "task", help="Only this task's claim (default: all your claims in this work tree).")
@click.option("--allow", "allow", multiple=True, type=click.Path(), help="Also allow writes beneath PATH.")
@click.option(
    "--no-claims-ok",
    is_flag=True,
    help="Holding no claim, run CMD anyway with nothing in the work tree writable (default: refuse).",
)
@connection_options(name_help="Whose claims (default: SYN_IDENTITY or the project config's identity).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    enforce: bool,
    task: str | None,
    allow: tuple[str, ...],
    no_claims_ok: bool,
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    command: tuple[str, ...],
) -> None:
    """Run CMD so that it (and every process it starts) can write only inside your live claims.

    Also writable: /dev, temp dirs, ~/.cache, $SYN_HOME, the repository's .git
    and each --allow PATH. Reading is not restricted. Refuses (never runs
    unconfined) where Landlock is not available. New claims need a new run.
    """
    if not enforce:
        raise click.UsageError("run needs --enforce (without it, just run the command)")
    from .. import landlock
    from ..api import Session, SynapseError, default_identity, one_shot
    from ..core.scope_index import ScopeError, worktree_key
    from ..protocol import owner_of

    try:
        abi = landlock.abi_version()
    except landlock.Unavailable as exc:
        raise click.ClickException(f"--enforce refused: {exc}; not running {command[0]} unconfined") from None
    identity = name or default_identity()
    if not identity:
        raise click.UsageError("--enforce needs your identity (SYN_IDENTITY or [identity] in synapse.toml)")
    worktree, git_dirs = _git_dirs(Path.cwd())

    async def mine() -> list[list[str]]:
        async with Session(
            one_shot("run"), uri=uri, token=token, token_file=token_file
        ) as session:  # reads only: a one-shot name
            found = []
            for claim in await session.claims():
                raw = dict(claim.raw)
                if owner_of(str(raw.get("owner", ""))) != identity or (task and raw.get("task_id") != task):
                    continue
                try:
                    if worktree_key(raw.get("worktree")) != worktree:
                        continue
                except ScopeError:
                    continue
                paths = raw.get("paths")
                found.append([p for p in paths if isinstance(p, str)] if isinstance(paths, list) else [])
            return found

    import asyncio

    try:
        claims = asyncio.run(mine())
    except SynapseError as exc:
        raise click.ClickException(f"cannot read your claims: {exc}") from None
    if not claims and not no_claims_ok:
        what = f"task {task!r}" if task else "any live claim"
        raise click.ClickException(f"{identity} holds {what} in {worktree}: nothing would be writable; claim first")
    if not claims:
        click.echo(
            f"synapse run: {identity} holds no claim in {worktree}: nothing in it is writable"
            " (synapse claim TASK PATH... first)",
            err=True,
        )
    allowed, missing, dropped = build_allowed(worktree, claims, git_dirs, allow)
    for path in missing:
        click.echo(
            f"synapse run: {path} does not exist yet: read-only (create it first, or claim its directory)", err=True
        )
    for path in dropped:
        click.echo(f"synapse run: {path} contains the work tree: read-only", err=True)
    try:
        landlock.restrict_writes(allowed)
    except OSError as exc:
        raise click.ClickException(
            f"--enforce refused: could not apply Landlock ({exc}); not running unconfined"
        ) from None
    click.echo(
        f"synapse run: writes limited to {len(claims)} claim(s) of {identity} in {worktree} "
        f"(plus temp, caches, .git); Landlock ABI {abi}",
        err=True,
    )
    sys.stdout.flush()
    try:
        os.execvp(command[0], list(command))
    except OSError as exc:
        click.echo(f"synapse run: cannot run {command[0]}: {exc.strerror}", err=True)
        sys.exit(127)
