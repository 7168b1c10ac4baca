"""The tmux bridge: wake an idle interactive assistant that no hook can reach.

It waits for directed messages to an identity (as ``ID-pane-rx``, on its own
cursor, never acking the identity's mailbox) and, when one arrives, types a
fixed prompt that carries no message text into the assistant's pane and
presses Enter, but only when the pane is provably idle. Otherwise the wake
stays pending (kept on disk) and is retried; Enter is never sent into a
dialog: the screen is checked again between typing and Enter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from synapse_channel.client.waiter import Waiter, WaitSpec
from synapse_channel.paths import syn_home, write_private

from .patterns import PaneRules

log = logging.getLogger("synapse_tmux_bridge")

DEFAULT_PROMPT = "new synapse messages for {identity}: run syn-inbox, handle what is addressed to you"


class TmuxError(RuntimeError):
    """tmux refused (no server, no such session)."""


def tmux(*args: str) -> str:
    """Run one tmux command; raise :class:`TmuxError` on failure."""
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise TmuxError(done.stderr.strip() or f"tmux {args[0]} failed")
    return done.stdout


@dataclass(slots=True)
class Bridge:
    """One identity bridged into one tmux target (session, or session:window.pane)."""

    uri: str
    target: str
    identity: str
    rules: PaneRules
    token: str | None = None
    prompt: str = DEFAULT_PROMPT
    poll: float = 0.5
    submit_delay: float = 0.3
    checkpoint: float = 5.0

    @property
    def state_path(self) -> Path:
        return syn_home() / "tmux-bridge" / f"{quote(self.identity, safe='')}.json"

    def pending(self) -> bool:
        try:
            return bool(json.loads(self.state_path.read_text()).get("pending_wake"))
        except (OSError, ValueError):
            return False

    def set_pending(self, pending: bool) -> None:
        write_private(
            self.state_path,
            json.dumps(
                {"identity": self.identity, "target": self.target, "pending_wake": pending, "updated_at": time.time()}
            ),
        )

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-J", "-t", self.target)

    def try_deliver(self) -> bool:
        """Type the prompt and press Enter if, and only if, the pane is idle before and after typing."""
        text = self.prompt.format(identity=self.identity)
        if not self.rules.safe_to_type(self.screen()):
            return False
        tmux("send-keys", "-t", self.target, "-l", text)
        time.sleep(self.submit_delay)
        after = self.screen()
        if text[:40] not in after.replace("\n", "") or self.rules.unsafe.search(after):
            log.warning("pane changed while typing; wake stays pending (Enter not sent)")
            tmux("send-keys", "-t", self.target, "C-u")  # clear what we typed; never press Enter
            return False
        tmux("send-keys", "-t", self.target, "Enter")
        log.info("woke %s in %s", self.identity, self.target)
        return True

    async def deliver_pending(self) -> None:
        while self.pending():
            delivered = await asyncio.to_thread(self.try_deliver)
            if delivered:
                self.set_pending(False)
                return
            await asyncio.sleep(self.poll)

    async def run(self, once: bool = False) -> int:
        """Wait, wake, repeat (``once``: stop after the first delivered wake)."""
        tmux("has-session", "-t", self.target.split(":", 1)[0])
        cursor = syn_home() / "mailbox-cursor" / f"{quote(self.identity, safe='')}~pane"
        while True:
            await self.deliver_pending()
            spec = WaitSpec(
                uri=self.uri,
                for_name=self.identity,
                connect_name=f"{self.identity}-pane-rx",
                token=self.token,
                timeout=self.checkpoint,
                directed_only=True,
                jitter=0.0,
                cursor_path=cursor,
                ack=False,
            )
            code = await Waiter(spec).run()
            if code == 0:
                self.set_pending(True)
                await self.deliver_pending()
                if once:
                    return 0
            elif code == 4:
                return 4  # another bridge owns this identity's pane receiver
            elif code not in (2, 3):
                await asyncio.sleep(min(30.0, self.poll * 4))
            tmux("has-session", "-t", self.target.split(":", 1)[0])
