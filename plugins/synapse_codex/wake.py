"""Opt-in idle wake for Codex: wait for mail after a turn, then ``codex queue`` it into the idle thread.

Codex runs ``config.toml``'s ``notify`` program after every turn, without
waiting for it, with ``{"type": "agent-turn-complete", "thread-id": ...}`` as
its last argument. With ``[adapters.codex] queue_wake = true`` install sets
``notify`` to this module. It then waits (up to ``queue_wake_seconds``) for
a directed message to the seat, takes it from the mailbox like the hooks do
(under the cursor lock, acked), and runs ``codex queue --thread <id>
--message <text>``: the app server holding the thread (the TUI's
auto-started daemon, or ``queue_wake_remote``) starts a new turn with it.

A newer turn's wait supersedes an older one (one wait per thread), the wait
ends with the Codex process that started it, a ``codex exec`` thread is
never woken (its process is gone), and every failure ends quietly with a
note on stderr: a wake is best effort, the message stays in the hub's
history either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POLL_SECONDS = 1.0


def notify_command() -> list[str]:
    """The ``notify`` value install writes: this interpreter running this module."""
    return [sys.executable, "-m", "synapse_codex.wake"]


def is_our_notify(value: Any) -> bool:
    return isinstance(value, list) and value[-2:] == ["-m", "synapse_codex.wake"]


def codex_binary() -> str | None:
    """The Codex CLI that called us (its npm package root is in our environment), else ``codex`` on PATH."""
    root = os.environ.get("CODEX_MANAGED_PACKAGE_ROOT")
    if root:
        for candidate in (Path(root).parent / ".bin" / "codex", Path(root) / "bin" / "codex.js"):
            if candidate.exists():
                return str(candidate)
    return shutil.which("codex")


def enqueue(thread: str, text: str, remote: str | None) -> tuple[bool, str]:
    """``codex queue`` ``text`` into ``thread``.

    An app server that holds the thread (the TUI's daemon) runs it at once as
    a new turn; a thread nobody holds keeps it for its next resume (we do not
    pass ``--resume``, which would run it headless in the daemon).
    """
    codex = codex_binary()
    if codex is None:
        return False, "codex is not on PATH"
    args = [codex, "queue", "--thread", thread, "--message", text]  # no --resume: never revive a closed session
    if remote:
        args += ["--remote", remote]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


class Turn:
    """The one live wait per Codex thread (a newer turn's wait takes over)."""

    def __init__(self, thread: str) -> None:
        from urllib.parse import quote

        from synapse_channel.paths import syn_home, write_private

        self.path = syn_home() / "hook-state" / f"codex-wake-{quote(thread, safe='')}"
        self.me = f"{os.getpid()}\n"
        write_private(self.path, self.me)

    def current(self) -> bool:
        try:
            return self.path.read_text() == self.me
        except OSError:
            return False

    def done(self) -> None:
        if self.current():
            self.path.unlink()


async def wait_and_queue(thread: str, seconds: float, remote: str | None) -> str:
    """Wait for directed mail for this seat; queue it into ``thread``. Returns what happened (for the note)."""
    from synapse_channel.adapters.runtime import Seat, render_messages
    from synapse_channel.cli.common import default_identity, resolve_token, settings

    identity = default_identity()
    if not identity:
        return "no identity (set SYN_IDENTITY or [identity] in synapse.toml); not waiting"
    seat = Seat(str(settings().get("hub.uri")), identity, resolve_token(None, None))
    codex = os.getppid()  # the Codex process that ran us: the thread is only wakeable while it lives
    if codex == 1:
        return "Codex is gone"  # it exited before we started: we were handed to init
    turn = Turn(thread)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not turn.current():
                return "a newer turn took over"
            if os.getppid() != codex:
                return "Codex is gone"
            try:
                messages, _, _ = await seat.take()
            except Exception:  # hub away for a moment: keep waiting, it may come back
                messages = []
            if messages:
                ok, detail = enqueue(thread, render_messages(identity, messages) + "\nHandle these, then stop.", remote)
                seqs = ", ".join(str(m.get("seq")) for m in messages)
                return f"queued seq {seqs} into thread {thread}" if ok else f"codex queue failed ({detail})"
            await asyncio.sleep(POLL_SECONDS)
        return "nothing arrived"
    finally:
        turn.done()


def main(argv: list[str] | None = None) -> int:
    """``notify`` entry point: never fails Codex, always exits 0."""
    args = sys.argv[1:] if argv is None else argv
    try:
        event = json.loads(args[-1]) if args else {}
        thread = event.get("thread-id") if isinstance(event, dict) else None
        if event.get("type") != "agent-turn-complete" or not isinstance(thread, str):
            return 0
        if event.get("client") == "codex_exec":
            return 0  # a one-shot run: nothing holds the thread to wake
        from . import Codex

        adapter = Codex()
        outcome = asyncio.run(wait_and_queue(thread, adapter.queue_wake_seconds(), adapter.queue_wake_remote()))
        sys.stderr.write(f"synapse codex wake: {outcome}\n")
    except Exception as exc:  # best effort, never in Codex's way
        sys.stderr.write(f"synapse codex wake: {type(exc).__name__}: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
