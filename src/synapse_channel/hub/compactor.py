"""Automatic journal compaction for a running hub (see :mod:`synapse_channel.compaction`).

Each snapshot the journal writes is offered here (its :class:`Keep`, built on
the loop from the state being written, so it matches that snapshot exactly).
A background task then compacts the rows that snapshot covers on its own
connection in a worker thread, one bounded batch (a short write transaction)
at a time with a pause between batches: the event loop never waits on it,
and the hub's writer waits at most one batch for the database lock.

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
from typing import Any

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

log = logging.getLogger("synapse_channel.store")

#: Seconds between two batches: room for the hub's own commits.
BATCH_PAUSE = 0.002
#: Runs between full scans of the covered journal (the others start where the last one ended).
FULL_SCAN_EVERY = 8
#: How long a run waits for the snapshot it was offered to be committed.
COMMIT_WAIT = 5.0


class AutoCompactor:
    """Compacts one database after each snapshot, off the event loop, in bounded batches."""

    def __init__(self, path: Path, retain_days: float) -> None:
        self.path = path
        self.retain_days = retain_days
        self.runs = 0
        self.deleted = 0
        self.last: Report | None = None
        self._keep: Keep | None = None
        self._scanned = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._con: sqlite3.Connection | None = None
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
            except sqlite3.Error as exc:
                log.warning("journal compaction skipped: %s", exc)

    async def compact_now(self) -> Report | None:
        """Compact through the newest offered snapshot now; None when there is nothing new to rely on."""
        async with self._lock:
            keep = self._keep
            if keep is None or self._stopping:
                return None
            if self._con is None:
                self._con = await asyncio.to_thread(connect, self.path)
            con = self._con
            await self._await_commit(con, keep)
            report = Report(through_seq=keep.seq, bytes_before=file_bytes(self.path))
            report.snapshots_dropped = await asyncio.to_thread(drop_old_snapshots, con, keep.seq)
            cutoff = time.time() - self.retain_days * 86400
            full = self.runs % FULL_SCAN_EVERY == 0
            after: int | None = 0 if full else self._scanned
            while after is not None and not self._stopping:
                after = await asyncio.to_thread(compact_batch, con, keep, cutoff, after, report)
                await asyncio.sleep(BATCH_PAUSE)
            while not self._stopping and (freed := await asyncio.to_thread(vacuum_step, con)):
                report.pages_freed += freed
                await asyncio.sleep(BATCH_PAUSE)
            if after is None:
                self._scanned = keep.seq
                self.runs += 1
            report.bytes_after = file_bytes(self.path)
            self.deleted += report.deleted
            self.last = report
            log.info("journal %s: %s", self.path, report)
            return report

    async def _await_commit(self, con: sqlite3.Connection, keep: Keep) -> None:
        """Wait until the snapshot ``keep`` stands for is on disk (it commits with its batch, moments later)."""
        deadline = time.monotonic() + COMMIT_WAIT
        while True:
            stored = await asyncio.to_thread(stored_snapshot_seq, con)
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
            if self._con is not None:
                self._con.close()
                self._con = None
