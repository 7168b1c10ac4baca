"""The git hooks' entry point: ``python -m synapse_channel.guard pre-commit|pre-push [--strict]``.

Runs on every commit, so it imports neither click nor asyncio (see
:mod:`synapse_channel.client.blocking`). Exit 0 lets git go on, 1 refuses.
"""

from __future__ import annotations

import os
import sys

from .check import GitFailed, HubDown, Verdict, ask, context, describe, judge
from .check import git as _git

ZERO = "0" * 40
SHOWN = 20


def staged() -> list[str]:
    """Files the commit adds, changes or deletes (a rename counts as both of its paths)."""
    return _git("diff", "--cached", "--name-only", "-z", "--no-renames")


def pushed(lines: list[str]) -> list[str]:
    """Files changed by the commits a push sends (git feeds ``local-ref sha remote-ref sha`` lines)."""
    files: dict[str, None] = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 4 or parts[1].strip("0") == "":
            continue  # malformed, or a deletion: nothing is sent
        local, remote = parts[1], parts[3]
        try:
            if remote.strip("0"):
                found = _git("diff", "--name-only", "-z", "--no-renames", remote, local)
            else:
                found = _git("log", "--format=", "--name-only", "-z", "--no-renames", local, "--not", "--remotes")
        except GitFailed:  # the remote tip is not here: every commit not on a remote
            found = _git("log", "--format=", "--name-only", "-z", "--no-renames", local, "--not", "--remotes")
        files.update(dict.fromkeys(p.strip("\n") for p in found if p.strip("\n")))
    return list(files)


def report(verdict: Verdict, what: str) -> str:
    """The refusal, naming each file's task, holder and lease, and what to do."""
    lines = []
    if verdict.others:
        lines.append(f"synapse guard: {what} refused: {len(verdict.others)} file(s) claimed by other agents:")
        lines += [f"  {describe(h)}" for h in verdict.others[:SHOWN]]
        if len(verdict.others) > SHOWN:
            lines.append(f"  ... and {len(verdict.others) - SHOWN} more")
        holders = sorted({h.owner for h in verdict.others})
        way_out = "unstage those files (git restore --staged FILE)" if what == "commit" else "push later"
        lines.append(
            f'Ask the holder (synapse send {holders[0]} "may I change {verdict.others[0].path}?"), '
            f"wait for the release, or {way_out}."
        )
    if verdict.unclaimed:
        who = verdict.identity or "you (no identity: set SYN_IDENTITY)"
        lines.append(f"synapse guard (strict): {len(verdict.unclaimed)} file(s) not claimed by {who}:")
        lines += [f"  {p}" for p in verdict.unclaimed[:SHOWN]]
        if len(verdict.unclaimed) > SHOWN:
            lines.append(f"  ... and {len(verdict.unclaimed) - SHOWN} more")
        lines.append("Claim them first: synapse claim TASK --paths FILE...")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run one hook; 0 allows, 1 refuses. Never a traceback."""
    if not argv or argv[0] not in ("pre-commit", "pre-push"):
        sys.stderr.write("usage: python -m synapse_channel.guard pre-commit|pre-push [--strict]\n")
        return 2
    hook, strict = argv[0], "--strict" in argv[1:]
    try:
        ctx = context()
    except Exception as exc:  # a broken config file: say so, do not guess
        sys.stderr.write(f"synapse guard: cannot read the configuration: {exc}\n")
        return 1
    try:
        paths = staged() if hook == "pre-commit" else pushed(sys.stdin.read().splitlines())
    except OSError as exc:
        sys.stderr.write(f"synapse guard: cannot list the files ({exc}); allowing\n")
        return 0
    if not paths:
        return 0
    worktree = os.path.realpath(os.getcwd())  # git runs hooks at the top of the work tree
    try:
        holds = ask(ctx, worktree, paths)
    except HubDown as exc:
        if ctx.refuse_offline:
            sys.stderr.write(f"synapse guard: {exc}; refusing ([guard] refuse_offline = true)\n")
            return 1
        sys.stderr.write(f"synapse guard: {exc}; claims not checked, allowing\n")
        return 0
    verdict = judge(ctx.identity, paths, holds, strict=strict)
    if verdict.ok:
        return 0
    sys.stderr.write(report(verdict, "commit" if hook == "pre-commit" else "push") + "\n")
    return 1


def run() -> None:
    """The installed hooks' entry: :func:`main`, then exit without tearing the interpreter down.

    Why: finalizing the modules and the garbage collector costs ~3 ms of every
    commit, and the hook has nothing to finalize (its socket is closed, its
    output flushed here).
    """
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
