"""Presence frames to every socket, a chunk of sockets per loop tick.

One presence broadcast to 10k sockets is 10k socket writes, about 0.3 s on a
2-core host: sent in one go it stalls every other client for that long.
Presence frames carry no ``seq`` and no journalled fact, so nothing requires
them to reach all sockets in one tick; this sends them :data:`CHUNK` sockets
at a time and yields in between. The hub drains whatever is left
synchronously (:meth:`PresenceFanout.drain`) before any broadcast, so a socket
still hears a join before what the newcomer broadcasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .link import Link

#: Sockets written per loop tick (about 15 ms of writes on a 2-core host).
CHUNK = 500


class PresenceFanout:
    """Queued presence frames and how far each has got through its audience."""

    def __init__(self, links: dict[int, Link], on_done: Callable[[float], None]) -> None:
        self._links = links
        #: Called with the seconds of writing once the queue is empty (the hub spaces the next broadcast by it).
        self._on_done = on_done
        self._queue: deque[tuple[str, int, tuple[int, ...]]] = deque()
        self._next = 0
        self._spent = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """True while some socket has not been sent a queued frame yet."""
        return bool(self._queue)

    def add(self, data: str, size: int, to: tuple[int, ...]) -> None:
        """Queue one encoded frame for ``to``; it starts going out at the next tick."""
        self._queue.append((data, size, to))
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def drain(self, limit: float = math.inf) -> None:
        """Send up to ``limit`` frames now (all that are queued by default), in order."""
        started = time.perf_counter()
        sent = 0
        while self._queue and sent < limit:
            data, size, to = self._queue[0]
            end = min(len(to), self._next + int(min(limit - sent, len(to))))
            for cid in to[self._next : end]:
                link = self._links.get(cid)
                if link is not None:
                    link.put(data, size)
            sent += end - self._next
            self._next = end
            if self._next >= len(to):
                self._queue.popleft()
                self._next = 0
        self._spent += time.perf_counter() - started
        if not self._queue and self._spent:
            spent, self._spent = self._spent, 0.0
            self._on_done(spent)

    async def _run(self) -> None:
        try:
            while self._queue:
                self.drain(CHUNK)
                await asyncio.sleep(0)
        finally:
            self._task = None

    async def stop(self) -> None:
        """Stop sending (the hub is closing every socket anyway)."""
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
