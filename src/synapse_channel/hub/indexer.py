"""The background full-text indexer of a running hub (see :mod:`synapse_channel.search`).

Indexing used to happen in a trigger inside the group commit, so every ack
waited for it (about 35 us an event). Here it happens after the commit: the
journal wakes the indexer after each commit (and it runs once at start to
catch up from the stored watermark); it then indexes the rows above the
watermark on its own connection in one worker thread, in batches of at most
:data:`~synapse_channel.search.BATCH_ROWS` rows, each a short write
transaction, with a pause between full batches. The event loop never waits
on it, and the hub's writer waits at most one batch for the database lock.

``search_request`` calls :meth:`Indexer.wait_for` first, so a search sent
right after an acked chat finds it (bounded: see :data:`WAIT_SECONDS`).

The store-specific part is an :class:`IndexBackend` (read the watermark,
index one batch): :class:`SqliteIndex` (FTS5, a worker thread) and
:class:`PostgresIndex` (a ``tsvector`` side table, :mod:`..pgsearch`). The
scheduling above is the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from .. import search

log = logging.getLogger("synapse_channel.store")

#: Seconds between two full batches: room for the hub's own commits.
BATCH_PAUSE = 0.002
#: Seconds the indexer lets commits gather after a wake-up before indexing them (a waiting search cuts it short).
COALESCE = 0.005
#: How long a ``search_request`` waits for the indexer to reach the committed journal.
WAIT_SECONDS = 0.2
#: Seconds before a batch that failed (e.g. the database was busy) is tried again (sooner for a waiting search).
RETRY_PAUSE = 1.0


class IndexBackend(Protocol):
    """A store's side of indexing: the watermark and one batch above it."""

    #: Errors that pause indexing (retried) rather than stop it.
    errors: tuple[type[BaseException], ...]

    async def watermark(self) -> int: ...

    async def batch(self, rows: int) -> tuple[int, int, int]:
        """Index up to ``rows`` journal rows above the watermark: ``(watermark, examined, indexed)``."""
        ...

    async def close(self) -> None: ...


class SqliteIndex:
    """The FTS5 index of a SQLite journal, written on its own connection in one worker thread."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synapse-index")
        self._con: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            con.execute("PRAGMA busy_timeout=5000")
            con.execute("PRAGMA synchronous=NORMAL")  # the index is rebuilt from events, never trusted over them
            self._con = con
        return self._con

    async def watermark(self) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: search.watermark(self._connect()))

    async def batch(self, rows: int) -> tuple[int, int, int]:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: search.index_batch(self._connect(), rows)
        )

    async def close(self) -> None:
        def shut() -> None:
            if self._con is not None:
                self._con.close()
                self._con = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)


class PostgresIndex:
    """The ``tsvector`` side table of a PostgreSQL journal, written by the leader on its own connection."""

    def __init__(self, url: str) -> None:
        import asyncpg

        self.url = url
        self.errors: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
        self._con: Any = None

    async def _connect(self) -> Any:
        from .. import pgsearch
        from ..pgstore import connect

        if self._con is None or self._con.is_closed():
            con = await connect(self.url)
            await pgsearch.ensure(con)
            self._con = con
        return self._con

    async def watermark(self) -> int:
        from .. import pgsearch

        return await pgsearch.watermark(await self._connect())

    async def batch(self, rows: int) -> tuple[int, int, int]:
        from .. import pgsearch

        return await pgsearch.index_batch(await self._connect(), rows)

    async def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            try:
                await asyncio.wait_for(con.close(), 2.0)
            except Exception:
                con.terminate()


class Indexer:
    """Indexes one database's journal behind its commits, off the event loop."""

    def __init__(
        self, backend: IndexBackend | Path, batch_rows: int = search.BATCH_ROWS, turn: asyncio.Lock | None = None
    ) -> None:
        self.backend: IndexBackend = SqliteIndex(backend) if isinstance(backend, Path) else backend
        self.batch_rows = batch_rows
        #: The journal's writer lock (``SqliteJournal.turn``): a batch runs between two commits, never during one.
        self.turn = turn
        #: The watermark as last read or written: everything indexable at or below it is searchable.
        self.through = 0
        #: Rows added to the index since start (for tests and ``/metrics``-style counters).
        self.indexed = 0
        self.batches = 0
        self._wake = asyncio.Event()
        self._moved = asyncio.Event()
        self._now = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Catch up from the stored watermark now, then after every :meth:`wake`, until :meth:`stop`."""
        self._wake.set()
        self._task = asyncio.create_task(self._run())

    def wake(self, _seq: int = 0) -> None:
        """Something was committed (the journal's ``on_commit``): index it soon."""
        self._wake.set()

    async def _run(self) -> None:
        try:  # what is already indexed is searchable before the first batch
            self._advance(await self.backend.watermark())
        except self.backend.errors as exc:
            log.warning("search index watermark not read: %s", exc)
        while not self._stopping:
            await self._wake.wait()
            await self._pause(COALESCE)  # more commits land meanwhile: fewer, larger batches
            self._wake.clear()
            while not self._stopping:
                try:
                    async with self.turn or contextlib.nullcontext():
                        through, examined, added = await self.backend.batch(self.batch_rows)
                except self.backend.errors as exc:
                    log.warning("search indexing paused (%s); retrying", exc)
                    await self._pause(RETRY_PAUSE)  # a waiting search asks for a retry at once
                    continue
                self.batches += 1
                self.indexed += added
                self._advance(through)
                if examined < self.batch_rows:
                    break
                await asyncio.sleep(BATCH_PAUSE)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a search waits for the indexer (:meth:`wait_for`)."""
        self._now.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._now.wait(), seconds)

    def _advance(self, through: int) -> None:
        self.through = through
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def wait_for(self, seq: int, timeout: float = WAIT_SECONDS) -> int:
        """Wait (at most ``timeout`` s) until everything through ``seq`` is indexed; the watermark then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.through < seq and not self._stopping:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._wake.set()
            self._now.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)
        return self.through

    async def stop(self) -> None:
        """Finish the batch in flight, stop, and close the connection (in its thread)."""
        self._stopping = True
        self._wake.set()
        self._now.set()
        self._moved.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self.backend.close()
