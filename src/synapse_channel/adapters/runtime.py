"""What ``synapse hook ASSISTANT EVENT`` does, for every adapter.

* ``session-start``: the seat's catch-up (directed messages since its mailbox
  cursor, the claims it holds, ready tasks) as context;
* ``prompt``: messages that arrived since the last turn, as context;
* ``stop``: if directed messages are waiting, keep the agent going with them
  (each adapter's "block" output), acking them once handed over; otherwise let
  it stop, after an optional bounded wait (``[adapters.NAME]
  stop_wait_seconds``). A loop guard honours the assistant's own
  stop-hook-active flag and a cap of consecutive continuations per session.

* ``idle-wait`` (adapters that offer it: Claude Code's ``asyncRewake``): run
  in the assistant's background while it is idle, block until a directed
  message arrives (``synapse wait``'s policy: directed and priority mail wakes,
  one-to-many jitter, the identity's mailbox cursor), then exit 2 with the
  messages for the model; exit 0 quietly at its timeout, when a newer wait
  takes over, or when the session is gone.

Every path fails open: no identity, no hub, bad input or any error prints the
adapter's empty output, a note on stderr, and exits 0. A hook must never block
an agent.

The mailbox cursor is read and advanced under a file lock by every hook, so a
synchronous Stop hook and a background idle wait started by the same event
never hand the same message over twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.waiter import Waiter
from . import HookAdapter
from .edits import note, run_pre_edit  # noqa: F401 (pre-edit lives in .edits: it must not import asyncio)

Frame = dict[str, Any]

MAX_CONTINUES = 3
MAX_SHOWN = 20
HUB_TIMEOUT = 3.0
#: What an idle wait exits with to wake the model (Claude Code: asyncRewake's "blocking error").
EXIT_WAKE = 2


def run_hook(adapter: HookAdapter, event: str, stdin_text: str) -> str:
    """The hook's stdout for ``event``; never raises."""
    try:
        payload = json.loads(stdin_text) if stdin_text.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("hook input is not a JSON object")
    except ValueError as exc:
        note(f"ignoring unreadable hook input ({exc})")
        payload = {}
    try:
        return asyncio.run(_handle(adapter, event, payload)) or adapter.empty_output
    except Exception as exc:  # fail open: never block the agent
        note(f"{type(exc).__name__}: {exc}; continuing without synapse")
        return adapter.empty_output


def run_idle_wait(adapter: HookAdapter, stdin_text: str) -> tuple[int, str]:
    """``idle-wait``: (exit code, text for the model); never raises.

    Exit 2 with the messages when one arrives, else exit 0 with nothing (its
    timeout, a newer wait took over, the session ended, or any error).
    """
    check = getattr(adapter, "idle_wait_check", None)
    seconds = getattr(adapter, "idle_wait_seconds", None)
    if check is None or seconds is None:
        note(f"{adapter.name} has no background idle wait; nothing to do")
        return 0, ""
    try:
        alive, why = check()
        if alive is None:
            note(f"{why}; not waiting")
            return 0, ""
        return asyncio.run(_idle_wait(float(seconds()), alive))
    except Exception as exc:  # fail open: an idle wait that breaks just ends
        note(f"idle wait: {type(exc).__name__}: {exc}")
        return 0, ""


async def _idle_wait(seconds: float, alive: Any) -> tuple[int, str]:
    from ..api.cli import resolve_token
    from ..client.connection import EXIT_OK, EXIT_TIMEOUT, EXIT_YIELD
    from ..client.context import default_identity, runtime, settings
    from ..client.waiter import RETRY_MAX, RETRY_MIN, WaitSpec
    from ..paths import mailbox_cursor_path

    identity = default_identity()
    if not identity:
        note("no identity (set SYN_IDENTITY or [identity] in synapse.toml); not waiting")
        return 0, ""
    cfg = settings()
    try:
        pm = runtime()[1]  # the wake_delay / wake_* plugin hooks, as for `synapse wait`
    except Exception:
        pm = None
    deadline = time.monotonic() + seconds
    watch = asyncio.ensure_future(_until_gone(alive))
    delay = RETRY_MIN
    try:
        while (left := deadline - time.monotonic()) > 0:
            spec = WaitSpec(
                uri=str(cfg.get("hub.uri")),
                for_name=identity,
                connect_name=f"{identity}-rx",
                token=resolve_token(None, None),
                timeout=left,
                directed_only=True,
                jitter=float(cfg.get("wake.jitter")),
                mailbox=True,
                cursor_path=mailbox_cursor_path(identity),
                pm=pm,
            )
            waiter = IdleWaiter(spec, alive=alive)
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                run = asyncio.ensure_future(waiter.run())
                done, _ = await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
                if run not in done:
                    run.cancel()
                    with contextlib.suppress(BaseException):
                        await run
            if waiter.taken:
                return EXIT_WAKE, render_messages(identity, waiter.taken) + "\nHandle these, then stop."
            if watch in done:
                note("the session ended; idle wait over")
                return 0, ""
            code = run.result()
            if code in (EXIT_TIMEOUT, EXIT_YIELD) or waiter.final:
                return 0, ""  # nothing came, a newer wait took over, or retrying cannot help
            if code == EXIT_OK:
                if not alive():
                    return 0, ""  # it woke after its session ended: the message stays in the mailbox
                continue  # it woke for messages another hook handed over meanwhile: wait on
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))  # hub away: ride it out
            delay = min(RETRY_MAX, delay * 2)
        return 0, ""
    finally:
        watch.cancel()


async def _until_gone(alive: Any) -> None:
    """Return once the assistant session that started this wait is gone."""
    while True:  # a liveness poll: nothing to await on a process we did not start
        if not alive():
            return
        await asyncio.sleep(1.0)


@dataclass(slots=True)
class IdleWaiter(Waiter):
    """``synapse wait``'s waiter that keeps what woke it instead of printing it.

    What it hands over is decided under the cursor lock against the cursor
    on disk, so a message another hook took meanwhile is not handed over
    again, and the cursor only moves forward; and only while the session
    that started it is alive, so a wait that outlives its session never
    swallows a message.
    """

    alive: Any = None  # the session probe: nothing is taken for a session that is gone
    taken: list[Frame] = field(default_factory=list)

    def _surface(self, frames: list[Frame]) -> None:
        from ..paths import read_int, write_private

        path = self.spec.cursor_path
        assert path is not None
        with cursor_lock(path):
            cursor = read_int(path)
            fresh = [f for f in frames if isinstance(f.get("seq"), int) and f["seq"] > cursor]
            if self.alive is not None and not self.alive():
                fresh = []  # nobody would read it: leave it in the mailbox for the next session
            if fresh:
                write_private(path, f"{max(f['seq'] for f in fresh)}\n")
        self.seen.update(f["seq"] for f in frames if isinstance(f.get("seq"), int))
        self.taken = fresh

    async def _ack(self, client: Any, frames: list[Frame]) -> None:
        from ..client.connection import HubError

        if not self.taken:
            return
        top = max(f["seq"] for f in self.taken)
        self.cursor = max(self.cursor, top)
        with contextlib.suppress(HubError):
            await client.send(client.frame("ack", "all", "", seq=top, mailbox_for=self.spec.for_name))
        if self.spec.pm is not None:
            from ..dispatch import notify

            await notify(self.spec.pm, "wake_delivered", identity=self.spec.for_name, frames=self.taken)


@contextlib.contextmanager
def cursor_lock(path: Path) -> Iterator[None]:
    """An exclusive lock beside the mailbox cursor ``path`` (``flock``; a no-op where there is none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


async def _handle(adapter: HookAdapter, event: str, payload: dict[str, Any]) -> str:
    from ..api.cli import resolve_token
    from ..client.context import default_identity, settings

    identity = default_identity()
    if not identity:
        note("no identity (set SYN_IDENTITY or [identity] in synapse.toml); nothing to do")
        return ""
    cfg = settings()
    seat = Seat(str(cfg.get("hub.uri")), identity, resolve_token(None, None))
    if event == "session-start":
        return await _session_start(adapter, seat)
    if event == "prompt":
        messages, _, _ = await seat.take()
        return adapter.context_output(event, render_messages(identity, messages)) if messages else ""
    if event == "stop":
        return await _stop(adapter, seat, payload, adapter.stop_wait())
    note(f"unknown event {event!r} for {adapter.name}")
    return ""


async def _session_start(adapter: HookAdapter, seat: Seat) -> str:
    messages, claims, ready = await seat.take(catchup=True)
    lines = [f"synapse: you are {seat.identity}."]
    if messages:
        lines.append(render_messages(seat.identity, messages))
    if claims:
        lines.append(
            "Claims you hold: "
            + "; ".join(f"{c.get('task_id')} ({', '.join(c.get('paths') or []) or 'whole worktree'})" for c in claims)
        )
    if ready:
        lines.append("Ready tasks: " + "; ".join(f"{t.get('task_id')} {t.get('title')}" for t in ready[:10]))
    if len(lines) == 1:
        return ""
    return adapter.context_output("session-start", "\n".join(lines))


async def _stop(adapter: HookAdapter, seat: Seat, payload: dict[str, Any], wait: float) -> str:
    guard = LoopGuard(adapter.name, str(payload.get("session_id") or "default"))
    if adapter.stop_active(payload) and guard.count >= MAX_CONTINUES:
        note(f"{guard.count} continuations in a row; letting the agent stop (loop guard)")
        guard.reset()
        await _end_turn(seat)
        return ""
    messages, _, _ = await seat.take()
    deadline = time.monotonic() + wait
    while not messages and time.monotonic() < deadline:
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        messages, _, _ = await seat.take()
    if not messages:
        guard.reset()
        await _end_turn(seat)
        return ""
    guard.bump()
    return adapter.block_output(render_messages(seat.identity, messages) + "\nHandle these, then stop.")


async def _end_turn(seat: Seat) -> None:
    """The agent stops: release its auto-claims (``[claims] auto``, ``auto_release = "turn"``)."""
    from ..client.context import settings

    cfg = settings()
    if not cfg.get("claims.auto") or str(cfg.get("claims.auto_release")) == "merge":
        return
    from ..guard.auto import release_turn

    released = await release_turn(seat.identity, seat.uri, seat.token)
    if released:
        note(f"turn over: released {', '.join(released)}")


def render_messages(identity: str, messages: list[dict[str, Any]]) -> str:
    """The messages as the model should see them (newest last, bounded)."""
    shown = messages[-MAX_SHOWN:]
    head = f"synapse: {len(messages)} new message(s) for {identity}"
    if len(messages) > len(shown):
        head += f" (showing the last {len(shown)}; run syn-inbox for all)"
    lines = [head + ":"]
    for m in shown:
        lines.append(f"- [seq {m.get('seq')}] {m.get('sender')} -> {m.get('target')}: {m.get('payload')}")
    return "\n".join(lines)


class LoopGuard:
    """Consecutive stop continuations per assistant session, kept under $SYN_HOME."""

    def __init__(self, adapter: str, session: str) -> None:
        from urllib.parse import quote

        from ..paths import read_int, syn_home

        self.path = syn_home() / "hook-state" / f"{adapter}-{quote(session, safe='')}"
        self.count = read_int(self.path)

    def bump(self) -> None:
        from ..paths import write_private

        write_private(self.path, f"{self.count + 1}\n")

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()


class Seat:
    """One identity's view of the hub for a hook: pending mail, catch-up, acks."""

    def __init__(self, uri: str, identity: str, token: str | None) -> None:
        from ..paths import mailbox_cursor_path, read_int

        self.uri = uri
        self.identity = identity
        self.token = token
        self.cursor_path = mailbox_cursor_path(identity)
        self.cursor = read_int(self.cursor_path)

    def _client(self) -> Any:
        from ..client.connection import HubClient
        from ..protocol import one_shot_name

        return HubClient(
            self.uri,
            one_shot_name("hook", self.identity, os.getpid()),
            token=self.token,
            ready_timeout=HUB_TIMEOUT,
            registration={"quiet": True},
        )

    def _inbox_query(self, client: Any, since: int | None = None) -> dict[str, Any]:
        since = self.cursor if since is None else since
        query = {"version": 1, "identity": self.identity, "since_seq": since, "limit": 100}
        return client.frame("history_request", payload="history", inbox_query=query)  # type: ignore[no-any-return]

    async def _inbox(self, client: Any, first: Frame) -> list[Frame]:
        """Every message of the inbox, following ``has_more`` (the hub pages by bytes and count)."""

        def after(page: Frame) -> dict[str, Any] | None:
            body = page.get("inbox_page") or {}
            cursor = body.get("cursor")
            if not body.get("has_more") or not isinstance(cursor, int) or not body.get("messages"):
                return None
            return self._inbox_query(client, cursor)

        def is_page(f: Frame) -> bool:
            return f.get("type") == "history_snapshot" or (f.get("type") == "error" and f.get("target") == client.name)

        pages = await client.follow_pages(first, after, is_page, HUB_TIMEOUT)
        return [m for p in pages for m in (p.get("inbox_page") or {}).get("messages", [])]

    async def take(self, *, catchup: bool = False) -> tuple[list[Frame], list[Frame], list[Frame]]:
        """Messages after the cursor (acked on the same connection: they are being handed over).

        With ``catchup`` also the claims this identity holds and the ready
        tasks, all in one round trip.
        """
        from ..paths import read_int

        with cursor_lock(self.cursor_path):
            self.cursor = read_int(self.cursor_path)  # another hook may have moved it since
            return await self._take(catchup)

    async def _take(self, catchup: bool) -> tuple[list[Frame], list[Frame], list[Frame]]:
        client = self._client()
        wanted = {"history_snapshot"} | ({"state_snapshot", "board_snapshot"} if catchup else set())
        got: dict[str, Frame] = {}
        try:
            extra = [client.frame("state_request", payload="snapshot"), client.frame("board_request", payload="board")]
            await client.connect(self._inbox_query(client), *(extra if catchup else []))
            while wanted - set(got):
                frame = await client.wait_for(lambda f: f.get("type") in wanted, HUB_TIMEOUT)
                if frame is None:
                    break
                got[frame["type"]] = frame
            first = got.get("history_snapshot")
            inbox = await self._inbox(client, first) if first is not None else []
            messages = [m for m in inbox if isinstance(m.get("seq"), int) and m["seq"] > self.cursor]
            if messages:
                await self._ack(client, messages)
            from ..client.connection import whole_snapshot

            for kind in ("state_snapshot", "board_snapshot"):
                if kind in got:
                    got[kind] = await whole_snapshot(client, got[kind])
        finally:
            await client.close()
        snapshot = (got.get("state_snapshot") or {}).get("snapshot") or {}
        claims = [c for c in snapshot.get("active_claims", []) if c.get("owner") == self.identity]
        board = (got.get("board_snapshot") or {}).get("board") or {}
        return messages, claims, list(board.get("ready", []))

    async def _ack(self, client: Any, messages: list[Frame]) -> None:
        from ..paths import write_private

        top = max(m["seq"] for m in messages)
        self.cursor = top
        write_private(self.cursor_path, f"{top}\n")
        await client.send(client.frame("ack", "all", "", seq=top, mailbox_for=self.identity))
