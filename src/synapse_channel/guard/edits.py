"""The assistants' edit guard: may this agent write these files? (``synapse hook ASSISTANT pre-edit``).

The assistant hands its file-writing tool call to the hook before running
it; the adapter pulls the target paths out of the tool input, and this
module asks the hub who holds them. A file claimed by another agent is
refused with a reason the model can act on: who holds it, until when, and
the exact ``synapse send`` to ask for it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from .check import GitFailed, Hold, HubDown, ask, context, git, judge, lease_left


def _top(directory: str, cache: dict[str, str]) -> str:
    """The git top level holding ``directory`` (the nearest existing ancestor), "" outside a repository."""
    probe = directory
    while probe and not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return ""
        probe = parent
    if probe not in cache:
        try:
            found = git("-C", probe, "rev-parse", "--show-toplevel")
            cache[probe] = os.path.realpath(found[0].strip()) if found else ""
        except (GitFailed, OSError):
            cache[probe] = ""
    return cache[probe]


def _real(path: str) -> str:
    """``path`` with symlinks resolved as far as it exists (a new file's directory may exist)."""
    head, tail = os.path.split(path)
    if os.path.exists(path) or not head or head == path:
        return os.path.realpath(path)
    return os.path.join(_real(head), tail)


def by_worktree(paths: list[str], cwd: str) -> dict[str, list[str]]:
    """Group target files by their git worktree, as paths relative to it (files outside a repository are left out)."""
    groups: dict[str, list[str]] = {}
    cache: dict[str, str] = {}
    for raw in paths:
        full = _real(os.path.normpath(os.path.join(cwd, os.path.expanduser(raw))))
        top = _top(os.path.dirname(full), cache)
        if not top:
            continue
        rel = os.path.relpath(full, top)
        if rel == ".." or rel.startswith("../"):
            continue
        groups.setdefault(top, []).append(rel)
    return groups


def refusal(hold: Hold, me: str | None) -> str:
    """The reason shown to the model: who holds the file, until when, how to ask."""
    until = time.strftime("%H:%M UTC", time.gmtime(hold.lease_expires_at))
    ask_text = f"I need to change {hold.path}; could you release {hold.task_id} or hand it off to {me or 'me'}?"
    return (
        f"synapse: {hold.path} is claimed by {hold.owner} (task {hold.task_id}, lease until {until}, "
        f"{lease_left(hold.lease_expires_at)} left, holder {'online' if hold.holder_online else 'offline'}). "
        "Do not edit it or work around this with another tool. "
        f'Ask the holder: synapse send {hold.owner} "{ask_text}" '
        "and work on other files meanwhile; `synapse state` lists live claims."
    )


def check_edit(paths: list[str], cwd: str | None = None) -> str | None:
    """The refusal reason for writing ``paths`` as this identity, or None to allow.

    Hub unreachable: allow with a note on stderr, or refuse with
    ``[guard] refuse_offline = true``. With ``[claims] auto = true`` the
    files found free are claimed for this identity before the edit goes on
    (see :mod:`synapse_channel.guard.auto`).
    """
    ctx = context()
    where = cwd or os.getcwd()
    auto: Any = None  # the [claims] auto settings, read once a file turns out to be free
    for worktree, rel in by_worktree(paths, where).items():
        try:
            holds = ask(ctx, worktree, rel)
        except HubDown as exc:
            if ctx.refuse_offline:
                return f"synapse: cannot check file claims ({exc}) and [guard] refuse_offline is set; do not edit now."
            sys.stderr.write(f"synapse hook: {exc}; claims not checked, edit allowed\n")
            return None
        verdict = judge(ctx.identity, rel, holds, strict=False)
        if verdict.others:
            return refusal(verdict.others[0], ctx.identity)
        if auto is None:
            from . import auto as auto_claims

            auto = auto_claims.settings(ctx.identity, ctx.uri, ctx.token, ctx.timeout) or False
        if auto:
            from .auto import claim_for_edit

            in_way = claim_for_edit(auto, worktree, rel, holds)
            if in_way is not None:  # taken between the check and our claim
                return refusal(in_way, ctx.identity)
    return None
