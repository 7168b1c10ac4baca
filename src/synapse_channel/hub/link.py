"""One connection's outbound side: an ordered, bounded queue and its writer task.

The hub never awaits a socket while it fans out: frames are queued here
synchronously, in the order the core produced them, and one task per
connection writes them. The queue is bounded by bytes (what waits here plus
what sits in the socket's write buffer), not frames: a consumer that stops
reading fills its own queue and is closed with 4017; it cannot delay anyone
else, and one big page cannot be mistaken for a backlog of small ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from websockets.asyncio.server import broadcast
from websockets.exceptions import ConnectionClosed

from ..protocol import REASON_SLOW_CONSUMER, Close

log = logging.getLogger(__name__)

#: Above this many bytes waiting in the socket's write buffer, frames queue here instead.
HIGH_WATER = 256 * 1024
#: Seconds a slow consumer has to read its close frame before the TCP connection is dropped.
SLOW_CLOSE_GRACE = 5.0


class Link:
    """Ordered delivery to one websocket, with close frames kept in order."""

    def __init__(self, ws: Any, max_bytes: int) -> None:
        self.ws = ws
        self.max_bytes = max_bytes
        #: The fast path writes straight to the socket only below this, so the socket's
        #: buffer never holds more than a quarter of the budget plus one frame.
        self.high_water = min(HIGH_WATER, max_bytes // 4)
        self._items: deque[tuple[str, int]] = deque()
        self._close_with: tuple[int, str] | None = None
        #: Bytes of the text frames waiting in ``_items``.
        self.queued = 0
        self._ready = asyncio.Event()
        self._closing = False
        self._busy = False
        self.task = asyncio.create_task(self._run())

    def put(self, data: str, size: int | None = None) -> None:
        """Send or queue a text frame (``size``: its UTF-8 length, if the caller knows it).

        When the bytes waiting for this socket would pass ``max_bytes`` the
        connection is closed as a slow consumer (4017) instead.

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
            and transport.get_write_buffer_size() < self.high_water
        ):
            broadcast([self.ws], data)
            return
        if size is None:
            size = len(data.encode())
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        if self.queued + buffered + size > self.max_bytes:
            log.warning(
                "closing a slow consumer: %d bytes queued and %d in its socket buffer (limit %d)",
                self.queued,
                buffered,
                self.max_bytes,
            )
            self.close_slow()
            return
        self._items.append((data, size))
        self.queued += size
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
        self._close_with = (code, reason)
        self._ready.set()

    def close_slow(self) -> None:
        """Close a consumer that stopped reading with 4017, without waiting for it.

        Everything still queued is dropped; the close frame goes into the
        socket buffer behind what is already there, so a peer that reads
        again within :data:`SLOW_CLOSE_GRACE` learns why it was closed. One
        that does not is cut off then.
        """
        self._closing = True
        self._items.clear()
        self.queued = 0
        self.task.cancel()
        self.task = asyncio.create_task(self._close_now(Close.SLOW_CONSUMER, REASON_SLOW_CONSUMER))

    async def _close_now(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code, reason), SLOW_CLOSE_GRACE)
        except (TimeoutError, ConnectionClosed, OSError):
            self.abort()

    def abort(self) -> None:
        """Drop the connection now (a peer that never reads its close frame)."""
        self._closing = True
        self._items.clear()
        self.queued = 0
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._items:
                    data, size = self._items.popleft()
                    self.queued -= size
                    self._busy = True
                    try:
                        await self.ws.send(data)
                    finally:
                        self._busy = False
                if self._close_with is not None:
                    await self.ws.close(*self._close_with)
                    return

    async def stop(self) -> None:
        """Stop the writer (the socket is already closed or closing)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
