"""The event log: an append-only SQLite journal with group commit and snapshots.

One writer task owns the connection. The hub submits each outcome's events
and gets a future; the writer commits everything queued in one transaction
with ``synchronous=FULL`` (group commit) and then resolves the futures in
order. A reply that says granted or delivered is only sent after that, so it
is always backed by an fsync'd row.

State snapshots are written in the same transaction as the event that
triggered them (in chunks, see :mod:`snapshots`), so start-up loads the newest
snapshot and replays only what follows. Replay goes through ``HubCore.apply``,
the path live frames take.

A failed commit is fatal: the core has already applied those events, so the
in-memory state is ahead of the disk. The journal refuses every later batch
and never writes a snapshot again; the hub stops and a restart replays what
is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import json.scanner
import logging
import os
import sqlite3
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import snapshots
from .core.outcome import Event, compact_json
from .metrics import Histogram

if TYPE_CHECKING:
    import aiosqlite

    from .core import HubCore

log = logging.getLogger("synapse_channel.store")

SCHEMA_VERSION = 1
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY, ts REAL, kind TEXT, data TEXT, crc INTEGER, reason TEXT NOT NULL);
"""
    + snapshots.CHUNK_SCHEMA
)
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000")

Batch = tuple[list[Event], "asyncio.Future[None]"]
#: Rows fetched per round trip to the database thread during replay (the next block is fetched while one is applied).
REPLAY_BLOCK = 20_000
#: The C scanner behind ``json.loads``, without its whitespace handling (stored rows are compact JSON).
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


#: One statement for every batch (executemany): SQLite keeps a cached statement's last
#: bound values, so a multi-row INSERT per batch size would keep big chats alive in memory.
INSERT_EVENT = "INSERT INTO events VALUES (?,?,?,?,?)"


def encode_data(data: dict[str, Any]) -> str:
    """Compact JSON for an event payload (stable key order is not needed)."""
    return compact_json(data)


class JournalFailed(RuntimeError):
    """A commit failed earlier: the in-memory state is ahead of the disk, so nothing more is written."""


@functools.cache
def _kind_crc(kind: str) -> int:
    return zlib.crc32(kind.encode())


def checksum(kind: str, text: str) -> int:
    """CRC32 over kind and payload: catches a flipped byte that still parses."""
    return zlib.crc32(text.encode(), _kind_crc(kind))


class ReplayReport:
    """What start-up found: how far replay got and why it stopped, if it did."""

    def __init__(self) -> None:
        self.snapshot_seq = 0
        self.replayed = 0
        self.stopped_at: int | None = None
        self.reason = ""

    def __str__(self) -> str:
        base = f"snapshot at seq {self.snapshot_seq}, {self.replayed} events replayed"
        if self.stopped_at is None:
            return base
        return f"{base}; replay STOPPED at seq {self.stopped_at}: {self.reason}"


class Journal:
    """In-memory journal: commits are immediate, nothing survives a restart."""

    def __init__(self, hub_id: str) -> None:
        self.hub_id = hub_id
        self.report = ReplayReport()
        self.snapshot_source: Callable[[], dict[str, Any]] | None = None
        #: The error of the first failed commit; once set, nothing more is written.
        self.failed: BaseException | None = None
        #: Seconds each durable commit (the fsync) took, for ``/metrics``; empty in memory.
        self.commit_seconds = Histogram()
        #: The newest seq known to be on disk (replayed or committed since).
        self.committed_seq = 0
        #: Called on the loop with the newest seq after each durable commit (the search indexer's wake-up).
        self.on_commit: Callable[[int], None] | None = None

    def submit(self, events: list[Event]) -> asyncio.Future[None]:
        """Queue ``events``; the future resolves once they are durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def replay(self, core: HubCore) -> ReplayReport:
        """Rebuild ``core`` from what is stored (nothing, in memory)."""
        return self.report

    async def close(self) -> None:
        """Flush and release resources."""


async def write_batches(
    queue: asyncio.Queue[Batch | None], group: bool, commit: Callable[[list[Batch]], Awaitable[None]]
) -> None:
    """The writer loop of every durable journal: commit what is queued, in order; ``None`` ends it.

    With ``group`` each commit takes everything queued meanwhile (one fsync or
    transaction for many outcomes), else one outcome at a time.
    """
    while True:
        first = await queue.get()
        if first is None:
            return
        batch = [first]
        stop = False
        while group and not queue.empty():
            item = queue.get_nowait()
            if item is None:
                stop = True
                break
            batch.append(item)
        await commit(batch)
        if stop:
            return


class SqliteJournal(Journal):
    """The durable journal on one aiosqlite connection owned by a writer task."""

    def __init__(
        self, db: aiosqlite.Connection, path: Path, hub_id: str, snapshot_every: int, group_commit: bool = True
    ) -> None:
        super().__init__(hub_id)
        self.db = db
        self.path = path
        self.snapshot_every = snapshot_every
        self.group_commit = group_commit
        self.last_snapshot_seq = 0
        self.commits = 0
        self.snapshot_chunk = snapshots.CHUNK_BYTES
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        #: Held by the writer around each commit; the search indexer takes it around each batch, so the two
        #: take turns on the database lock instead of SQLite's busy handler sleeping one of them in backoff.
        self.turn = asyncio.Lock()
        self._writer = asyncio.create_task(self._run())
        self.lock: WriterLock | None = None

    def submit(self, events: list[Event]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((events, fut))
        return fut

    async def _run(self) -> None:
        await write_batches(self._queue, self.group_commit, self._take_turn)

    async def _take_turn(self, batch: list[Batch]) -> None:
        async with self.turn:
            await self._commit(batch)

    async def _commit(self, batch: list[Batch]) -> None:
        if self.failed is not None:
            _settle(batch, JournalFailed(f"the journal stopped after a failed commit: {self.failed}"))
            return
        rows = event_rows(batch)
        last = rows[-1][0] if rows else 0
        try:
            await self.db.executemany(INSERT_EVENT, rows)
            if self.snapshot_source is not None and last - self.last_snapshot_seq >= self.snapshot_every:
                await self._try_snapshot(last, rows[-1][1])
            started = time.perf_counter()
            await self.db.commit()
            self.commit_seconds.observe(time.perf_counter() - started)
            self.commits += 1
            if last:
                self.committed_seq = last
        except Exception as exc:
            self.failed = exc
            log.critical("journal commit failed (seq %s..%s): %s", rows[0][0] if rows else "-", last, exc)
            with contextlib.suppress(Exception):
                await self.db.rollback()
            _settle(batch, exc)
            return
        _settle(batch, None)
        if rows and self.on_commit is not None:
            self.on_commit(last)

    async def _try_snapshot(self, seq: int, ts: float) -> None:
        """Write a snapshot inside a savepoint: if it fails, the events still commit without it."""
        await self.db.execute("SAVEPOINT snapshot")
        try:
            await self._write_snapshot(seq, ts)
        except sqlite3.Error as exc:
            log.error("snapshot at seq %d not written (%s); the events commit without it", seq, exc)
            await self.db.execute("ROLLBACK TO snapshot")
            self.last_snapshot_seq = seq  # try again after another snapshot_every events, not at every commit
        await self.db.execute("RELEASE snapshot")

    async def _write_snapshot(self, seq: int, ts: float) -> None:
        assert self.snapshot_source is not None
        state = self.snapshot_source()
        if state.get("seq") != seq:
            return  # the core has moved on past this batch; snapshot at a later commit
        rest, early = snapshots.freeze(state)
        blob = await asyncio.to_thread(snapshots.encode_frozen, rest, early)  # large states: off the loop
        await snapshots.write(self.db, seq, ts, blob, self.snapshot_chunk)
        self.last_snapshot_seq = seq

    async def replay(self, core: HubCore) -> ReplayReport:
        report = self.report
        found = await snapshots.read_newest(self.db)
        if found is not None:
            seq, state = found
            core.restore(state)
            report.snapshot_seq = self.last_snapshot_seq = seq
        compacted = await _meta(self.db, "compacted_through")
        if compacted is not None and int(compacted) > report.snapshot_seq:
            raise SnapshotMissing(
                f"{self.path} was compacted through seq {compacted} but has no usable snapshot at or after it "
                f"(newest usable: {report.snapshot_seq or 'none'}); the journal alone cannot rebuild the state: "
                "restore a backup"
            )
        await self._replay_events(core, report)
        if report.stopped_at is not None:
            log.error("journal %s: %s", self.path, report)
            await self._quarantine(report)
        async with self.db.execute("SELECT MAX(seq) FROM quarantine") as cur:
            qrow = await cur.fetchone()
        if qrow and qrow[0]:
            core.seq = max(core.seq, int(qrow[0]))  # a seq is never reused, even a bad one's
        self.committed_seq = core.seq
        log.info("journal %s: %s", self.path, report)
        return report

    async def _replay_events(self, core: HubCore, report: ReplayReport) -> None:
        """Apply every stored event after the snapshot, stopping at the first bad one.

        Three things keep this fast (it bounds restart time): the next block
        of rows is fetched by the database thread while this one is applied;
        the cyclic garbage collector is paused, since replay only allocates
        state that stays alive and each collection would rescan all of it;
        and rows are decoded with the JSON scanner directly (every row's CRC
        was checked first, so only our own compact JSON reaches it).
        """
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            async with self.db.execute(
                "SELECT seq, ts, kind, data, crc FROM events WHERE seq > ? ORDER BY seq",
                (report.snapshot_seq,),
            ) as cur:
                ahead = asyncio.ensure_future(cur.fetchmany(REPLAY_BLOCK))
                while rows := list(await ahead):
                    ahead = asyncio.ensure_future(cur.fetchmany(REPLAY_BLOCK))
                    if not _apply_rows(core, rows, report):
                        await asyncio.gather(ahead, return_exceptions=True)
                        return
        except sqlite3.DatabaseError as exc:
            report.stopped_at = core.seq + 1
            report.reason = f"database error: {exc}"
        finally:
            if gc_was_on:
                gc.enable()

    async def _quarantine(self, report: ReplayReport) -> None:
        """Move the unreadable tail aside (kept for inspection, never replayed)."""
        assert report.stopped_at is not None
        with contextlib.suppress(sqlite3.DatabaseError):
            await self.db.execute(
                "INSERT OR REPLACE INTO quarantine SELECT seq, ts, kind, data, crc, ? FROM events WHERE seq >= ?",
                (report.reason, report.stopped_at),
            )
            await self.db.execute("DELETE FROM events WHERE seq >= ?", (report.stopped_at,))
            await self.db.commit()

    async def close(self) -> None:
        """Flush the queue, write a final snapshot (never after a failed commit) and close."""
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._writer
        if self.snapshot_source is not None and self.failed is None:
            try:
                state = self.snapshot_source()
                if state["seq"] > self.last_snapshot_seq:
                    await self._write_snapshot(state["seq"], 0.0)
                    await self.db.commit()
            except Exception as exc:
                log.error("final snapshot not written (%s); the next start replays from the journal", exc)
                with contextlib.suppress(Exception):
                    await self.db.rollback()
        elif self.failed is not None:
            log.error("no snapshot written: a commit failed, the journal on disk is the truth")
        await self.db.close()
        if self.lock is not None:
            self.lock.release()


def _apply_rows(core: HubCore, rows: list[Any], report: ReplayReport) -> bool:
    """Check and apply one block of rows; False (with ``report`` filled in) at the first bad one."""
    apply, scan, crc32, kind_crc = core.apply, _SCAN, zlib.crc32, _kind_crc
    for done, (seq, ts, kind, text, crc) in enumerate(rows):
        if crc32(text.encode(), kind_crc(kind)) != crc:
            reason = "checksum mismatch"
        else:
            try:
                data, end = scan(text, 0)
                if end != len(text):
                    raise ValueError(f"extra data after the JSON value at {end}")
                apply(Event(seq, ts, kind, data, size=len(text)))
                continue
            except StopIteration:
                reason = "JSONDecodeError: not a JSON value"
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
        report.replayed += done
        report.stopped_at, report.reason = seq, reason
        return False
    report.replayed += len(rows)
    return True


def event_rows(batch: list[Batch]) -> list[tuple[int, float, str, str, int]]:
    """The journal rows ``(seq, ts, kind, text, checksum)`` of a group-commit batch, for either store."""
    rows = []
    for events, _ in batch:
        for ev in events:
            text = ev.text if ev.text is not None else encode_data(ev.data)
            rows.append((ev.seq, ev.ts, ev.kind, text, checksum(ev.kind, text)))
    return rows


def _settle(batch: list[Batch], exc: BaseException | None) -> None:
    """Resolve every waiter of ``batch``: durable (``exc`` None) or failed."""
    for _, fut in batch:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


class SnapshotMissing(RuntimeError):
    """The journal was compacted and the snapshot it relied on is gone or damaged: replay would lose state."""


class DatabaseBusy(RuntimeError):
    """Another hub already writes this database (it holds the writer lock)."""


class WriterLock:
    """An exclusive OS lock (``flock``) on ``<db>.lock``: one writing hub per database.

    A pid file can be stale after a crash and a second hub would believe it;
    the kernel drops an ``flock`` when its holder dies, so the lock is never
    stale and a crashed hub's successor always starts. The holder's pid is
    written into the file only to name it in the refusal.
    """

    def __init__(self, db: Path) -> None:
        import fcntl

        self.path = db.with_name(db.name + ".lock")
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise DatabaseBusy(
                f"{db} is in use by another hub (pid {holder}); one hub writes a database: "
                "stop it, or give this hub its own --db"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


async def open_journal(
    path: Path | str | None,
    *,
    hub_id: str,
    snapshot_every: int = 10_000,
    group_commit: bool = True,
    lease: float = 5.0,
) -> Journal:
    """Open (creating if needed) the journal at ``path``; None means in memory.

    A ``postgresql://`` URL opens a :class:`~synapse_channel.pgstore.PostgresJournal`
    (not leading yet: the hub asks it to). The stored ``hub_id`` wins over
    ``hub_id`` unless none is stored yet, so the hub keeps its identity across
    restarts. Raises :class:`DatabaseBusy` when another hub holds a SQLite
    database's writer lock.
    """
    if path is None or str(path) == ":memory:":
        return Journal(hub_id)
    url = str(path)
    if url.startswith(("postgresql://", "postgres://")):
        from .pgstore import open_postgres

        return await open_postgres(
            url, hub_id=hub_id, snapshot_every=snapshot_every, group_commit=group_commit, lease=lease
        )
    import aiosqlite

    path = touch_private(Path(path))
    lock = WriterLock(path)
    try:
        db = await aiosqlite.connect(path)
    except BaseException:
        lock.release()
        raise
    try:
        await db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a no-op once tables exist: new databases only
        for pragma in PRAGMAS:
            await db.execute(pragma)
        await db.executescript(SCHEMA)
        stored = await _meta(db, "hub_id")
        if stored is None:
            await _set_meta(db, {"hub_id": hub_id, "schema_version": str(SCHEMA_VERSION)})
        else:
            hub_id = stored
        await db.commit()
        await asyncio.to_thread(_ensure_search, path)
    except BaseException:
        await db.close()
        lock.release()
        raise
    _restrict_siblings(path)
    journal = SqliteJournal(db, path, hub_id, snapshot_every, group_commit)
    journal.lock = lock
    return journal


def _ensure_search(path: Path) -> None:
    """Create, check or recreate the full-text index (:mod:`search`) before anything is journalled.

    On its own short-lived connection (the journal's is idle until it starts),
    in one transaction; the hub's indexer then catches up from the watermark.
    """
    from . import search

    con = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        con.execute("PRAGMA synchronous=FULL")
        con.execute("BEGIN IMMEDIATE")
        try:
            done = search.ensure(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    if done != "ok":
        log.info("search index of %s: %s", path, done)


def touch_private(path: Path) -> Path:
    """Create the database file (and its folder) owner-only before SQLite opens it."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    return path


def _restrict_siblings(path: Path) -> None:
    """Make the -wal and -shm files owner-only whatever the umask was."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            Path(f"{path}{suffix}").chmod(0o600)


async def _meta(db: aiosqlite.Connection, key: str) -> str | None:
    async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    return None if row is None else str(row[0])


async def _set_meta(db: aiosqlite.Connection, values: dict[str, str]) -> None:
    await db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))


def iter_rows(path: Path) -> Iterable[tuple[int, float, str, str, int]]:
    """Read every event row of a database file (for ``synapse db check``)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield from con.execute("SELECT seq, ts, kind, data, crc FROM events ORDER BY seq")
    finally:
        con.close()
