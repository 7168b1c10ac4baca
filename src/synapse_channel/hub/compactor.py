"""Automatic journal compaction for a running hub (see :mod:`synapse_channel.compaction`).

Each snapshot the journal writes is offered here (its :class:`Keep`, built on
the loop from the state being written, so it matches that snapshot exactly).
A background task then compacts the rows that snapshot covers on its own
connection in a worker thread, one bounded batch (a short write transaction)
at a time with a pause between batches: the event loop never waits on it,
and the hub's writer waits at most one batch for the database lock.

The database I/O is a small backend: :class:`SqliteBackend` (a worker
thread per step) or :class:`PostgresBackend` (asyncpg, each batch fenced by
the leader's epoch, so a deposed leader deletes nothing). What may go is
decided by :mod:`synapse_channel.compaction` for both.

Most runs only look at the rows journalled since the previous run; every
:data:`FULL_SCAN_EVERY`-th run looks at everything again, for mail acked and
chats aged out since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..compaction import (
    Keep,
    NotCovered,
    Report,
    compact_batch,
    connect,
    drop_old_snapshots,
    file_bytes,
    keep_of,
    stored_snapshot_seq,
    vacuum_step,
)
from ..store import JournalFailed

if TYPE_CHECKING:
    from ..pgstore import PostgresJournal

log = logging.getLogger("synapse_channel.store")

#: Seconds between two batches: room for the hub's own commits.
BATCH_PAUSE = 0.002
#: Runs between full scans of the covered journal (the others start where the last one ended).
FULL_SCAN_EVERY = 8
#: How long a run waits for the snapshot it was offered to be committed.
COMMIT_WAIT = 5.0


class Backend(Protocol):
    """The database side of a compaction run (each call one short step)."""

    name: str
    #: Errors that skip a run (logged) rather than stop the compactor.
    errors: tuple[type[BaseException], ...]

    async def stored_seq(self) -> int | None: ...
    async def drop_old_snapshots(self, seq: int) -> int: ...
    async def batch(self, keep: Keep, cutoff: float, after: int, report: Report) -> int | None: ...
    async def vacuum_step(self) -> int: ...
    async def size(self) -> int: ...
    async def close(self) -> None: ...


class SqliteBackend:
    """A SQLite file: its own connection, every step in a worker thread."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._con: sqlite3.Connection | None = None

    async def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = await asyncio.to_thread(connect, self.path)
        return self._con

    async def stored_seq(self) -> int | None:
        return await asyncio.to_thread(stored_snapshot_seq, await self._connection())

    async def drop_old_snapshots(self, seq: int) -> int:
        return await asyncio.to_thread(drop_old_snapshots, await self._connection(), seq)

    async def batch(self, keep: Keep, cutoff: float, after: int, report: Report) -> int | None:
        return await asyncio.to_thread(compact_batch, await self._connection(), keep, cutoff, after, report)

    async def vacuum_step(self) -> int:
        return await asyncio.to_thread(vacuum_step, await self._connection())

    async def size(self) -> int:
        return file_bytes(self.path)

    async def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class PostgresBackend:
    """The leader's PostgreSQL database: its own connection; every batch fenced by the journal's epoch.

    The journal already keeps only the newest snapshot (it drops older ones
    when it writes one); a plain ``VACUUM`` after each run makes the deleted
    rows' space reusable, so the table stops growing under steady churn.
    """

    def __init__(self, journal: PostgresJournal) -> None:
        import asyncpg

        from ..pgstore import redact

        self.journal = journal
        self.name = redact(journal.url)
        self.errors: tuple[type[BaseException], ...] = (asyncpg.PostgresError, OSError)
        self._con: Any = None
        self._vacuumed = False

    async def _connection(self) -> Any:
        from ..pgstore import Fenced, connect

        if self.journal.deposed is not None or self.journal.role != "leader":
            raise Fenced(f"not leading: {self.journal.deposed or 'standby'}")  # a standby never writes
        if self._con is None:
            self._con = await connect(self.journal.url)
        return self._con

    async def stored_seq(self) -> int | None:
        from ..pgcompaction import stored_snapshot_seq

        return await stored_snapshot_seq(await self._connection())

    async def drop_old_snapshots(self, seq: int) -> int:
        return 0

    async def batch(self, keep: Keep, cutoff: float, after: int, report: Report) -> int | None:
        from ..pgcompaction import compact_batch

        return await compact_batch(await self._connection(), self.journal.epoch, keep, cutoff, after, report)

    async def vacuum_step(self) -> int:
        """One plain ``VACUUM events`` per run (the loop calls again until this returns 0).

        It makes the deleted rows' space reusable for the next events now
        rather than whenever autovacuum next looks; it takes no lock that
        commits or readers wait on, and it deletes nothing (no fence needed).
        """
        if self._vacuumed:
            self._vacuumed = False
            return 0
        await (await self._connection()).execute("VACUUM events")
        self._vacuumed = True
        return 1

    async def size(self) -> int:
        from ..pgcompaction import table_bytes

        try:
            return await table_bytes(await self._connection())
        except Exception:
            return 0

    async def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(con.close(), 2.0)
            if not con.is_closed():
                con.terminate()


class AutoCompactor:
    """Compacts one database after each snapshot, off the event loop, in bounded batches."""

    def __init__(self, target: Path | Backend, retain_days: float) -> None:
        self.backend: Backend = SqliteBackend(target) if isinstance(target, Path) else target
        self.path = target if isinstance(target, Path) else None
        self.retain_days = retain_days
        self.runs = 0
        self.deleted = 0
        self.last: Report | None = None
        self._keep: Keep | None = None
        self._scanned = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def watch(self, source: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        """Wrap the journal's snapshot source so every snapshot taken is offered for compaction."""

        def snapshot() -> dict[str, Any]:
            state = source()
            self.offer(keep_of(state))
            return state

        return snapshot

    def offer(self, keep: Keep) -> None:
        """Compact through ``keep.seq`` once a snapshot at or above it is committed."""
        if self._keep is None or keep.seq > self._keep.seq:
            self._keep = keep
            self._wake.set()

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.compact_now()
            except NotCovered as exc:
                log.debug("journal compaction waits for the next snapshot: %s", exc)  # that one was not written
            except JournalFailed as exc:
                log.warning("journal compaction stopped: %s", exc)  # deposed: the next leader compacts
                return
            except self.backend.errors as exc:
                log.warning("journal compaction skipped: %s", exc)

    async def compact_now(self) -> Report | None:
        """Compact through the newest offered snapshot now; None when there is nothing new to rely on."""
        async with self._lock:
            keep = self._keep
            if keep is None or self._stopping:
                return None
            backend = self.backend
            await self._await_commit(keep)
            report = Report(through_seq=keep.seq, bytes_before=await backend.size())
            report.snapshots_dropped = await backend.drop_old_snapshots(keep.seq)
            cutoff = time.time() - self.retain_days * 86400
            full = self.runs % FULL_SCAN_EVERY == 0
            after: int | None = 0 if full else self._scanned
            while after is not None and not self._stopping:
                after = await backend.batch(keep, cutoff, after, report)
                await asyncio.sleep(BATCH_PAUSE)
            while not self._stopping and (freed := await backend.vacuum_step()):
                report.pages_freed += freed
                await asyncio.sleep(BATCH_PAUSE)
            if after is None:
                self._scanned = keep.seq
                self.runs += 1
            report.bytes_after = await backend.size()
            self.deleted += report.deleted
            self.last = report
            log.info("journal %s: %s", backend.name, report)
            return report

    async def _await_commit(self, keep: Keep) -> None:
        """Wait until the snapshot ``keep`` stands for is on disk (it commits with its batch, moments later)."""
        deadline = time.monotonic() + COMMIT_WAIT
        while True:
            stored = await self.backend.stored_seq()
            if stored is not None and stored >= keep.seq:
                return
            if time.monotonic() > deadline or self._stopping:
                raise NotCovered(f"the snapshot at seq {keep.seq} was not committed")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Finish the batch in flight (bounded), stop, and close the connection."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        async with self._lock:
            await self.backend.close()
