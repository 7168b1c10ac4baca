"""The tmux bridge: wake an idle interactive assistant that no hook can reach.

It waits for directed messages to an identity (as ``ID-pane-rx``, on its own
cursor, never acking the identity's mailbox) and, when one arrives, types a
fixed prompt that carries no message text into the assistant's pane and
presses Enter, but only when the pane is provably idle. Otherwise the wake
stays pending (kept on disk with the messages' ``seq``) and is retried;
Enter is never sent into a dialog: the screen is checked again, in the same
window, between typing and Enter. A pending wake whose messages the agent
has meanwhile read (a hook or ``synapse wait`` moved the identity's mailbox
cursor past them) is dropped instead of typed: it would only cost a turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from synapse_channel.paths import mailbox_cursor_path, read_int, syn_home, write_private

from .patterns import PaneRules

if TYPE_CHECKING:
    from synapse_channel.api import Message

log = logging.getLogger("synapse_tmux_bridge")

DEFAULT_PROMPT = "new synapse messages for {identity}: run syn-inbox, handle what is addressed to you"
STATUS_TIMEOUT = 5.0
MAX_BACKOFF = 10.0


class TmuxError(RuntimeError):
    """tmux refused (no server, no such session)."""


@dataclass(frozen=True, slots=True)
class Tmux:
    """The tmux server to talk to: ``socket`` (``tmux -S``), ``name`` (``tmux -L``) or the default.

    Every tmux call goes through one instance, so a bridge never reads one
    server's pane and types into another's.
    """

    socket: str | None = None
    name: str | None = None

    @property
    def server_args(self) -> tuple[str, ...]:
        if self.socket:
            return ("-S", self.socket)
        if self.name:
            return ("-L", self.name)
        return ()

    def __call__(self, *args: str) -> str:
        """Run one tmux command; raise :class:`TmuxError` on failure."""
        try:
            done = subprocess.run(["tmux", *self.server_args, *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TmuxError(str(exc)) from None
        if done.returncode != 0:
            raise TmuxError(done.stderr.strip() or f"tmux {args[0]} failed")
        return done.stdout


@dataclass(frozen=True, slots=True)
class Wake:
    """A wake not yet typed: the messages (``seq``) it is for and the hub that numbered them."""

    seqs: tuple[int, ...] = ()
    hub_id: str | None = None


@dataclass(slots=True)
class Bridge:
    """One identity bridged into one tmux target (session, or session:window.pane)."""

    uri: str
    target: str
    identity: str
    rules: PaneRules
    token: str | None = None
    prompt: str = DEFAULT_PROMPT
    tmux: Tmux = field(default_factory=Tmux)
    poll: float = 0.5
    submit_delay: float = 0.3
    checkpoint: float = 5.0

    @property
    def state_path(self) -> Path:
        return syn_home() / "tmux-bridge" / f"{quote(self.identity, safe='')}.json"

    # ------------------------------------------------------------------ pending wake (on disk)

    def pending(self) -> Wake | None:
        """The wake still to type, if any (kept across restarts)."""
        try:
            doc = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or not doc.get("pending_wake"):
            return None
        seqs = tuple(s for s in doc.get("seqs") or () if isinstance(s, int))
        hub_id = doc.get("hub_id")
        return Wake(seqs, hub_id if isinstance(hub_id, str) else None)

    def set_pending(self, wake: Wake | None) -> None:
        doc: dict[str, Any] = {"identity": self.identity, "target": self.target, "pending_wake": wake is not None}
        if wake is not None:
            doc.update(seqs=list(wake.seqs), hub_id=wake.hub_id)
        doc["updated_at"] = time.time()
        write_private(self.state_path, json.dumps(doc))

    # ------------------------------------------------------------------ was it read meanwhile?

    async def already_read(self, wake: Wake) -> bool | None:
        """Has the identity read every message of ``wake``? None: cannot tell now (the hub did not answer).

        The identity's own mailbox cursor is what its hooks and ``synapse
        wait`` advance: first the local cursor file, then the hub's
        watermark (``message_status`` says ``acked``), which also covers an
        agent whose hooks run under another ``$SYN_HOME``.
        """
        if not wake.seqs:
            return False  # a wake from an older bridge: nothing to check it against
        if read_int(mailbox_cursor_path(self.identity)) >= max(wake.seqs):
            return True
        states = await self.hub_states(wake)
        if states is None:
            return None
        return all(states.get(seq) == "acked" for seq in wake.seqs)

    async def hub_states(self, wake: Wake) -> dict[int, str] | None:
        """``message_status`` of each seq, asked on one quiet one-shot connection (None: no answer)."""
        from synapse_channel.api import Session, SynapseError, one_shot

        states: dict[int, str] = {}
        try:
            async with Session(
                one_shot("tmux-bridge", self.identity), uri=self.uri, token=self.token, timeout=STATUS_TIMEOUT
            ) as session:
                await session.connect()
                if wake.hub_id and session.hub_id not in (wake.hub_id, "unknown"):
                    return {}  # another hub numbers differently: nothing to say about these seqs
                for seq in wake.seqs:
                    states[seq] = await session.message_status(seq)
        except SynapseError as exc:
            log.warning("could not ask the hub whether the wake was read: %s", exc)
            return None
        return states

    # ------------------------------------------------------------------ the pane

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", self.target)

    def idle_window(self) -> str | None:
        """The checked window of the screen when the pane looks idle, else None."""
        screen = self.screen()
        return self.rules.window(screen) if self.rules.safe_to_type(screen) else None

    def try_deliver(self) -> bool:
        """Type the prompt and press Enter if, and only if, the pane is idle before and after typing.

        Both checks read the same window of the screen (:meth:`PaneRules.window`).
        """
        text = self.prompt.format(identity=self.identity)
        if self.idle_window() is None:
            return False
        self.tmux("send-keys", "-t", self.target, "-l", text)
        time.sleep(self.submit_delay)
        if not self.rules.typed_safely(self.screen(), text):
            log.warning("pane changed while typing; wake stays pending (Enter not sent)")
            self.tmux("send-keys", "-t", self.target, "C-u")  # clear what we typed; never press Enter
            return False
        self.tmux("send-keys", "-t", self.target, "Enter")
        log.info("woke %s in %s", self.identity, self.target)
        return True

    async def deliver_pending(self) -> bool:
        """Type the pending wake once the pane is idle; True if typed, False if none or dropped as read."""
        failures = 0
        said_busy = False
        settled: str | None = None
        while (wake := self.pending()) is not None:
            delay = self.poll
            window = await asyncio.to_thread(self.idle_window)
            if window is None and not said_busy:
                log.info("pane %s is not idle (busy, a dialog or a menu); the wake waits", self.target)
                said_busy = True
            # Idle twice in a row with the same window: a TUI that flashes its composer while
            # starting (Gemini does, just before its trust dialog) is not yet idle.
            stable, settled = window is not None and window == settled, window
            if stable:
                read = await self.already_read(wake)
                if read:
                    log.info("wake for seq %s dropped: %s already read them", list(wake.seqs), self.identity)
                    self.set_pending(None)
                    return False
                if read is False and await asyncio.to_thread(self.try_deliver):
                    self.set_pending(None)
                    return True
                # The hub did not answer, or we typed and cleared: back off (never flicker the composer).
                failures += 1
                delay = min(MAX_BACKOFF, self.poll * 2**failures)
            await asyncio.sleep(delay)
        return False

    async def run(self, once: bool = False) -> int:
        """Wait, wake, repeat (``once``: stop after the first typed wake)."""
        self.tmux("has-session", "-t", self.target.split(":", 1)[0])
        cursor = syn_home() / "mailbox-cursor" / f"{quote(self.identity, safe='')}~pane"
        while True:
            if await self.deliver_pending() and once:
                return 0
            code, messages = await self._wait(cursor)
            if code == 0:
                seqs = tuple(sorted(m.seq for m in messages if m.seq))
                hub_ids = {m.raw.get("hub_id") for m in messages if isinstance(m.raw.get("hub_id"), str)}
                self.set_pending(Wake(seqs, hub_ids.pop() if len(hub_ids) == 1 else None))
                log.info("wake for %s: seq %s", self.identity, list(seqs))  # after it is on disk: a restart keeps it
                if await self.deliver_pending() and once:
                    return 0
            elif code == 4:
                return 4  # another bridge owns this identity's pane receiver
            elif code not in (2, 3):
                await asyncio.sleep(min(30.0, self.poll * 4))
            self.tmux("has-session", "-t", self.target.split(":", 1)[0])

    async def _wait(self, cursor: Path) -> tuple[int, tuple[Message, ...]]:
        """One checkpoint-long wait for directed mail, as ``ID-pane-rx`` on the bridge's own cursor, never acking.

        Returns ``synapse wait``'s exit code (0 woke, 2 timed out, 3 dropped,
        4 another bridge took the receiver over, else 1) and the messages.
        """
        from synapse_channel.api import Superseded, SynapseError, wait

        try:
            messages = await wait(
                self.identity,
                uri=self.uri,
                token=self.token,
                timeout=self.checkpoint,
                directed_only=True,
                ack=False,
                receiver=f"{self.identity}-pane-rx",
                cursor=cursor,
            )
        except Superseded:
            return 4, ()
        except SynapseError as exc:
            log.warning("waiting for %s: %s", self.identity, exc)
            return exc.exit_code, ()
        return (0, messages) if messages else (2, ())
