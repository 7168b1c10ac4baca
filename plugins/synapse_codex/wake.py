"""Opt-in idle wake for Codex: wait for mail after a turn, then ``codex queue`` it into the idle thread.

Codex runs ``config.toml``'s ``notify`` program after every turn, without
waiting for it, with ``{"type": "agent-turn-complete", "thread-id": ...}`` as
its last argument. With ``[adapters.codex] queue_wake = true`` install sets
``notify`` to this module. It then waits (up to ``queue_wake_seconds``) for
a directed message to the seat, takes it from the mailbox like the hooks do
(under the cursor lock), runs ``codex queue --thread <id>
--message <text>`` and acks it: the app server holding the thread (the
TUI's auto-started daemon, or ``queue_wake_remote``) starts a new turn with it.

A newer turn's wait supersedes an older one (one wait per thread), the wait
ends with the Codex process that started it, a ``codex exec`` thread and
the TUI's ephemeral side threads (no saved session) are never woken, and
every failure ends quietly with a line in ``$SYN_HOME/hook-state/
codex-wake.log`` (Codex drops notify output); mail is acked only once
``codex queue`` took it, so a refused message is left for the next hook.
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
    """The Codex that ran us (our parent: the TUI's daemon runs its own copy), else its package, else PATH."""
    try:
        parent = os.readlink(f"/proc/{os.getppid()}/exe")
        if Path(parent).name.startswith("codex"):
            return parent
    except OSError:
        pass
    root = os.environ.get("CODEX_MANAGED_PACKAGE_ROOT")
    if root:
        for candidate in (
            Path(root) / "bin" / "codex",
            Path(root) / "bin" / "codex.js",
            Path(root).parent / ".bin" / "codex",
        ):
            if candidate.exists():
                return str(candidate)
    return shutil.which("codex")


def log(line: str) -> None:
    """One line in ``$SYN_HOME/hook-state/codex-wake.log`` (Codex drops a notify program's output), bounded."""
    from synapse_channel.paths import syn_home

    path = syn_home() / "hook-state" / "codex-wake.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() and path.stat().st_size > 256 * 1024:
            path.write_text("".join(path.read_text().splitlines(keepends=True)[-200:]))
        with path.open("a") as out:
            out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}: {line}\n")
    except OSError:
        pass


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


def peeking_seat(uri: str, identity: str, token: str | None) -> Any:
    """The hooks' :class:`Seat`, except that reading the mailbox does not ack it: ``commit`` does, once queued.

    Codex may refuse a queued message; acked, the hub would already have let
    it go, so nothing is acked (nor the cursor moved) until ``codex queue``
    took it. A hook that runs in between may hand the same message over too:
    shown twice rather than lost.
    """
    from synapse_channel.adapters.runtime import Seat, cursor_lock

    class PeekingSeat(Seat):
        def __init__(self, uri: str, identity: str, token: str | None) -> None:
            super().__init__(uri, identity, token)
            self.held: list[dict[str, Any]] = []

        async def _ack(self, client: Any, messages: list[dict[str, Any]]) -> None:
            self.held = messages

        async def commit(self) -> None:
            from synapse_channel.paths import read_int

            with cursor_lock(self.cursor_path):
                fresh = [m for m in self.held if m["seq"] > read_int(self.cursor_path)]
                if fresh:
                    client = self._client()
                    try:
                        await client.connect()
                        await Seat._ack(self, client, fresh)
                    finally:
                        await client.close()

    return PeekingSeat(uri, identity, token)


def saved_session(thread: str) -> bool:
    """Does Codex keep this thread (a rollout file)? Its ephemeral side threads cannot take queued messages."""
    from . import codex_home

    return any((codex_home() / "sessions").glob(f"*/*/*/rollout-*-{thread}.jsonl"))


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
    from synapse_channel.adapters.runtime import render_messages
    from synapse_channel.api import default_identity, default_uri, resolve_token

    identity = default_identity()
    if not identity:
        return "no identity (set SYN_IDENTITY or [identity] in synapse.toml); not waiting"
    seat = peeking_seat(default_uri(), identity, resolve_token())
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
                if not ok:
                    return f"codex queue failed, seq {seqs} left for the next hook ({detail})"
                await seat.commit()
                return f"queued seq {seqs} into thread {thread}"
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
        if not saved_session(thread):
            return 0  # an ephemeral side thread (the TUI runs some): not a session anyone is in
        cwd = event.get("cwd")
        if isinstance(cwd, str) and os.path.isdir(cwd):
            os.chdir(cwd)  # the session's project decides, not wherever Codex started us
        from . import Codex

        adapter = Codex()
        if not adapter.queue_wake():
            return 0  # notify is user-wide; queue_wake is per project: off here
        log(f"thread {thread} ({event.get('client')}): waiting")
        outcome = asyncio.run(wait_and_queue(thread, adapter.queue_wake_seconds(), adapter.queue_wake_remote()))
        log(f"thread {thread}: {outcome}")
    except Exception as exc:  # best effort, never in Codex's way
        log(f"{type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
