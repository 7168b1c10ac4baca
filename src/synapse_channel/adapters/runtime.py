"""What ``synapse hook ASSISTANT EVENT`` does, for every adapter.

* ``session-start``: the seat's catch-up (directed messages since its mailbox
  cursor, the claims it holds, ready tasks) as context;
* ``prompt``: messages that arrived since the last turn, as context;
* ``stop``: if directed messages are waiting, keep the agent going with them
  (each adapter's "block" output), acking them once handed over; otherwise let
  it stop, after an optional bounded wait (``[adapters.NAME]
  stop_wait_seconds``). A loop guard honours the assistant's own
  stop-hook-active flag and a cap of consecutive continuations per session.

Every path fails open: no identity, no hub, bad input or any error prints the
adapter's empty output, a note on stderr, and exits 0. A hook must never block
an agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from . import HookAdapter

Frame = dict[str, Any]

MAX_CONTINUES = 3
MAX_SHOWN = 20
HUB_TIMEOUT = 3.0


def note(message: str) -> None:
    """A line on stderr (assistants show it to the user, not the model)."""
    sys.stderr.write(f"synapse hook: {message}\n")


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


async def _handle(adapter: HookAdapter, event: str, payload: dict[str, Any]) -> str:
    from ..cli.common import default_identity, resolve_token, settings

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
        return ""
    messages, _, _ = await seat.take()
    deadline = time.monotonic() + wait
    while not messages and time.monotonic() < deadline:
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        messages, _, _ = await seat.take()
    if not messages:
        guard.reset()
        return ""
    guard.bump()
    return adapter.block_output(render_messages(seat.identity, messages) + "\nHandle these, then stop.")


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

    def _inbox_query(self, client: Any) -> dict[str, Any]:
        query = {"version": 1, "identity": self.identity, "since_seq": self.cursor, "limit": 100}
        return client.frame("history_request", payload="history", inbox_query=query)  # type: ignore[no-any-return]

    async def take(self, *, catchup: bool = False) -> tuple[list[Frame], list[Frame], list[Frame]]:
        """Messages after the cursor (acked on the same connection: they are being handed over).

        With ``catchup`` also the claims this identity holds and the ready
        tasks, all in one round trip.
        """
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
            page = (got.get("history_snapshot") or {}).get("inbox_page") or {}
            messages = [m for m in page.get("messages", []) if isinstance(m.get("seq"), int) and m["seq"] > self.cursor]
            if messages:
                await self._ack(client, messages)
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
