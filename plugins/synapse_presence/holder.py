"""The presence holder: keep a project on the roster while its agents are down.

It connects as ``PROJECT-presence`` with ``wake_capability: "presence"``, so
the hub lists the project and answers a message to the project (or one of its
seats) with a "queued" receipt instead of a dead letter; the message waits in
the mailbox for the next ``synapse wait``. The holder never reads, acks or
consumes messages. It reconnects with exponential back-off and jitter, takes
over its own stale name, speaks sd_notify (READY, WATCHDOG, STOPPING) and
exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal

from synapse_channel.api import Closed, Session, SynapseError

from . import sdnotify

log = logging.getLogger("synapse_presence")

BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
#: Exit code when another holder took the name over (``synapse`` exit codes: 4 = yield).
EXIT_YIELD = 4


def must_yield(exc: SynapseError) -> bool:
    """The hub closed us with 4010 for a reason other than a refused credential: the name went elsewhere."""
    return isinstance(exc, Closed) and exc.code == 4010


class Holder:
    """One project's presence, held until stopped."""

    def __init__(self, uri: str, project: str, token: str | None = None) -> None:
        self.uri = uri
        self.project = project
        self.name = f"{project}-presence"
        self.token = token
        self.stop = asyncio.Event()
        self.ready = False
        self.connections = 0

    async def run(self) -> int:
        """Hold presence until SIGTERM/SIGINT (0) or until another holder takes over (4)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        watchdog = asyncio.create_task(self._watchdog())
        delay = BACKOFF_MIN
        try:
            while not self.stop.is_set():
                code = await self._hold_once()
                if code == EXIT_YIELD:
                    return EXIT_YIELD
                if code == 0:
                    delay = BACKOFF_MIN
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay * random.uniform(0.5, 1.5))
                delay = min(BACKOFF_MAX, delay * 2)
            return 0
        finally:
            watchdog.cancel()
            sdnotify.notify("STOPPING=1")

    async def _hold_once(self) -> int:
        """One connection: 0 after a session that was up, 1 if it never came up, 4 to yield."""
        session = Session(
            self.name,
            uri=self.uri,
            token=self.token,
            announce=True,
            wake_capability="presence",
            registration={"takeover": True, "presence_for": self.project},
        )
        try:
            await session.connect()
        except SynapseError as exc:
            log.warning("%s: %s", self.name, exc)
            await session.close()
            return EXIT_YIELD if must_yield(exc) else 1
        self.connections += 1
        self._announce()
        try:
            async for _ in session.events(self.stop):
                pass  # chats are ignored: presence never consumes
        except SynapseError as exc:
            code = exc.code if isinstance(exc, Closed) else None
            reason = exc.reason if isinstance(exc, Closed) else str(exc)
            log.warning("%s: hub closed the connection (%s %s)", self.name, code, reason)
            if must_yield(exc):
                return EXIT_YIELD
        finally:
            await session.close()
        return 0

    def _announce(self) -> None:
        status = f"holding presence for {self.project} as {self.name} on {self.uri}"
        log.info(status)
        if not self.ready:
            self.ready = True
            sdnotify.notify(f"READY=1\nSTATUS={status}")
        else:
            sdnotify.notify(f"STATUS={status} (reconnected)")

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
