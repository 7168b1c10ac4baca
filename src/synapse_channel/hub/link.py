"""One connection's outbound side: an ordered, bounded queue and its writer task.

The hub never awaits a socket while it fans out: frames are queued here
synchronously, in the order the core produced them, and one task per
connection writes them. A consumer that stops reading fills its own queue
and is closed; it cannot delay anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from websockets.asyncio.server import broadcast
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)

#: Above this many bytes waiting in the socket's write buffer, frames queue here instead.
HIGH_WATER = 256 * 1024


class Link:
    """Ordered delivery to one websocket, with close frames kept in order."""

    def __init__(self, ws: Any, limit: int) -> None:
        self.ws = ws
        self.limit = limit
        self._items: deque[str | tuple[int, str]] = deque()
        self._ready = asyncio.Event()
        self._closing = False
        self._busy = False
        self.task = asyncio.create_task(self._run())

    def put(self, data: str) -> None:
        """Send or queue a text frame; a full queue drops the connection as too slow.

        Fast path: with nothing queued ahead and room in the socket's write
        buffer, the frame is written synchronously (no task switch per frame,
        which is what makes fan-out to hundreds of sockets cheap). Otherwise it
        waits in order behind the others.
        """
        if self._closing:
            return
        transport = getattr(self.ws, "transport", None)
        if (
            not self._items
            and not self._busy
            and transport is not None
            and transport.get_write_buffer_size() < HIGH_WATER
        ):
            broadcast([self.ws], data)
            return
        if len(self._items) >= self.limit:
            log.warning("dropping a slow consumer (%d frames queued)", len(self._items))
            self.abort()
            return
        self._items.append(data)
        self._ready.set()

    @property
    def closing(self) -> bool:
        """True once the hub decided to close this connection."""
        return self._closing

    def close(self, code: int, reason: str) -> None:
        """Queue a close after everything already queued; later frames are dropped."""
        if self._closing:
            return
        self._closing = True
        self._items.append((code, reason))
        self._ready.set()

    def abort(self) -> None:
        """Drop the connection now: a peer that does not read cannot be sent a close frame either."""
        self._closing = True
        self._items.clear()
        self.task.cancel()
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._items:
                    item = self._items.popleft()
                    if isinstance(item, tuple):
                        await self.ws.close(item[0], item[1])
                        return
                    self._busy = True
                    try:
                        await self.ws.send(item)
                    finally:
                        self._busy = False

    async def stop(self) -> None:
        """Stop the writer (the socket is already closed or closing)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
