"""Install and remove the git guard without touching any existing hook.

How it coexists: the guard never writes into a hooks directory someone else
owns (``.git/hooks``, a ``core.hooksPath`` such as husky's ``.husky/_``, the
pre-commit framework's scripts). It writes its own directory
(``<git-common-dir>/synapse-guard/hooks``) and points ``core.hooksPath`` at
it. Its ``pre-commit`` and ``pre-push`` run the guard (``post-merge``:
``synapse release --merged``) and then the hook of the same name in the
previous directory, by its own path (so ``$0`` is what that
hook expects). Every other hook name that exists there gets a forwarder
script; the rest get a symbolic link to where that hook would be: dangling,
so git spawns nothing for it (a forwarder costs a shell start, and git runs
``reference-transaction`` and ``post-index-change`` several times a commit),
yet a hook written there later runs through the link (its ``$0`` is then
the link). With a relative previous ``core.hooksPath`` (resolved per work
tree) every name gets a forwarder.
Uninstall puts ``core.hooksPath`` back: byte-for-byte the previous
``.git/config`` when nothing else changed it since, else the previous value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GUARDED = ("pre-commit", "pre-push")
#: Every hook git runs (githooks(5)); each gets a forwarder so no existing hook goes silent.
ALL_HOOKS = (
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "fsmonitor-watchman",
    "p4-changelist",
    "p4-prepare-changelist",
    "p4-post-changelist",
    "p4-pre-submit",
    "post-index-change",
)
#: What the hooks run: ``python -c`` (not ``-m synapse_channel.guard``: runpy and its imports cost ~2 ms a commit).
ENTRY = "from synapse_channel.guard.__main__ import run; run()"
MARK = "# Written by `synapse guard install`; `synapse guard uninstall` restores the previous hooks."


class GuardError(Exception):
    """Why the guard cannot be installed or removed here (one line for the user)."""


@dataclass(frozen=True, slots=True)
class Repo:
    """The repository the guard is installed in."""

    top: Path
    common: Path

    @property
    def state_dir(self) -> Path:
        """Where the guard keeps its hooks and what it must restore."""
        return self.common / "synapse-guard"

    @property
    def hooks_dir(self) -> Path:
        """The guard's own hooks directory (what ``core.hooksPath`` points at while installed)."""
        return self.state_dir / "hooks"

    @property
    def state_file(self) -> Path:
        """The record of the previous state."""
        return self.state_dir / "state.json"

    @property
    def config_file(self) -> Path:
        """The repository's local git config."""
        return self.common / "config"


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)
    except FileNotFoundError:
        raise GuardError("git is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise GuardError(f"git {' '.join(args)} failed: {exc.stderr.strip() or exc.returncode}") from None


def find_repo(cwd: Path | None = None) -> Repo:
    """The repository containing ``cwd``; :class:`GuardError` outside one or in a bare one."""
    where = cwd or Path.cwd()
    out = _git(where, "rev-parse", "--show-toplevel", "--git-common-dir", check=False)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) != 2:
        raise GuardError(f"{where} is not inside a git work tree")
    top = Path(lines[0])
    common = Path(lines[1])
    return Repo(top.resolve(), (common if common.is_absolute() else where / common).resolve())


def _local_hooks_path(repo: Repo) -> str | None:
    out = _git(repo.top, "config", "--local", "--get", "core.hooksPath", check=False)
    return out.stdout.rstrip("\n") if out.returncode == 0 else None


def _effective_hooks_path(repo: Repo) -> str | None:
    out = _git(repo.top, "config", "--get", "core.hooksPath", check=False)
    return out.stdout.rstrip("\n") if out.returncode == 0 else None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_state(repo: Repo) -> dict[str, Any] | None:
    """The install record, or None when the guard is not installed here."""
    try:
        state: dict[str, Any] = json.loads(repo.state_file.read_text())
    except (OSError, ValueError):
        return None
    return state


def _script(hook: str, previous: str, python: str, strict: bool) -> str:
    prev = shlex.quote(f"{previous}/{hook}")
    if hook == "post-merge":  # release the claims of branches this merge brought in; never fails the merge
        release = f"{shlex.quote(python)} -m synapse_channel release --merged"
        return f'#!/bin/sh\n{MARK}\n{release} || true\n[ -x {prev} ] && exec {prev} "$@"\nexit 0\n'
    if hook not in GUARDED:
        return f'#!/bin/sh\n{MARK}\n[ -x {prev} ] && exec {prev} "$@"\nexit 0\n'
    guard = f"{shlex.quote(python)} -c {shlex.quote(ENTRY)} {hook}{' --strict' if strict else ''}"
    if hook == "pre-commit":
        return f'#!/bin/sh\n{MARK}\n{guard} || exit $?\n[ -x {prev} ] && exec {prev} "$@"\nexit 0\n'
    # pre-push reads the refs on stdin: keep them for the chained hook too
    return (
        f"#!/bin/sh\n{MARK}\n"
        'input=$(mktemp) || exit 1\ncat > "$input"\n'
        f'{guard} < "$input" || {{ s=$?; rm -f "$input"; exit $s; }}\n'
        f'if [ -x {prev} ]; then {prev} "$@" < "$input"; s=$?; rm -f "$input"; exit $s; fi\n'
        'rm -f "$input"\nexit 0\n'
    )


def install(repo: Repo, *, strict: bool = False, python: str | None = None) -> list[str]:
    """Install (or re-install, e.g. to change ``strict``) the guard; returns what was done."""
    state = read_state(repo)
    if state is None:
        before = repo.config_file.read_bytes()
        local = _local_hooks_path(repo)
        effective = _effective_hooks_path(repo)
        if effective and Path(os.path.expanduser(effective)).resolve() == repo.hooks_dir.resolve():
            raise GuardError("core.hooksPath already points at the guard's directory but no install record exists")
        previous = os.path.expanduser(effective) if effective else str(repo.common / "hooks")
        state = {
            "version": 1,
            "local_hooks_path": local,
            "previous_dir": previous,
            "config_before": base64.b64encode(before).decode(),
        }
    state["strict"] = strict
    state["python"] = python or sys.executable
    repo.hooks_dir.mkdir(parents=True, exist_ok=True)
    chained = Path(state["previous_dir"])
    for hook in ALL_HOOKS:
        path = repo.hooks_dir / hook
        path.unlink(missing_ok=True)  # never write through a link left by an earlier install
        if hook in GUARDED or hook == "post-merge" or not chained.is_absolute() or os.path.lexists(chained / hook):
            path.write_text(_script(hook, state["previous_dir"], state["python"], strict))
            path.chmod(0o755)
        else:
            path.symlink_to(chained / hook)
    _git(repo.top, "config", "--local", "core.hooksPath", str(repo.hooks_dir))
    state["config_after"] = _sha(repo.config_file.read_bytes())
    repo.state_file.write_text(json.dumps(state, indent=2) + "\n")
    mode = "strict: also refuses files you have not claimed" if strict else "refuses files other agents claimed"
    return [
        f"guard installed in {repo.top} ({mode})",
        f"core.hooksPath -> {repo.hooks_dir}; existing hooks in {state['previous_dir']} still run after the guard",
    ]


def uninstall(repo: Repo) -> list[str]:
    """Remove the guard and put the previous ``core.hooksPath`` back."""
    state = read_state(repo)
    if state is None:
        return [f"guard not installed in {repo.top}; nothing to do"]
    current = repo.config_file.read_bytes()
    if _sha(current) == state.get("config_after"):
        with open(repo.config_file, "r+b") as fh:  # same file, same mode: the exact previous bytes
            fh.write(base64.b64decode(state["config_before"]))
            fh.truncate()
        how = "restored .git/config byte for byte"
    else:
        previous = state.get("local_hooks_path")
        if _local_hooks_path(repo) == str(repo.hooks_dir):
            if previous is None:
                _git(repo.top, "config", "--local", "--unset", "core.hooksPath")
            else:
                _git(repo.top, "config", "--local", "core.hooksPath", previous)
        how = "restored core.hooksPath (.git/config changed since install, other edits kept)"
    shutil.rmtree(repo.state_dir)
    return [f"guard removed from {repo.top}; {how}"]


def status(repo: Repo) -> tuple[bool, list[str]]:
    """(active, lines): is the guard installed and in force here?"""
    state = read_state(repo)
    if state is None:
        return False, [f"guard not installed in {repo.top}"]
    effective = _effective_hooks_path(repo)
    active = effective is not None and Path(os.path.expanduser(effective)).resolve() == repo.hooks_dir.resolve()
    lines = [
        f"guard installed in {repo.top} ({'strict' if state.get('strict') else 'others-only'})",
        f"chains to hooks in {state.get('previous_dir')}",
        f"python: {state.get('python')}",
    ]
    if not active:
        lines.append(
            f"NOT ACTIVE: core.hooksPath is {effective!r}, not the guard's directory "
            "(a tool such as husky reset it); run `synapse guard install` again"
        )
    elif not Path(str(state.get("python"))).exists():
        active = False
        lines.append("NOT ACTIVE: the python it runs is gone; run `synapse guard install` again")
    return active, lines
