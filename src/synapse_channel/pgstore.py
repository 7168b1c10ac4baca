"""The event log on PostgreSQL, with one leader among several hubs (high availability).

Same promises as :class:`~synapse_channel.store.SqliteJournal`: one writer
task owns a connection and commits everything queued in one transaction
(group commit); a future resolves only after ``COMMIT`` returned, so a reply
that says granted or delivered is backed by a committed row. Snapshots are
written in the commit transaction, in the same chunked form as on SQLite.

Leadership. Every hub pointed at one database opens a *lease* connection and
tries a session advisory lock on it; the holder leads. A SIGKILLed leader's
connection closes and PostgreSQL drops the lock at once. A paused or cut-off
leader's connection would hold it forever, so the lease connection runs with
``idle_session_timeout``: the leader touches it every ``lease/4`` seconds, and
a leader that stops doing so for ``lease`` seconds loses its session, and the
lock with it, by the database's own clock (no clock of ours is trusted).

Fencing. Taking over increments ``leader.epoch`` (``UPDATE ... RETURNING``)
before the new leader reads the log. Every commit transaction runs
``UPDATE leader ... WHERE epoch = <ours>`` first; that row lock orders it
against the takeover's update, so an old leader's transaction either committed
before the takeover (and the new leader reads it) or finds a different epoch
and rolls back (:class:`Fenced`). A fenced leader never appends again.

asyncpg over psycopg 3: it is asyncio-native (no thread hop per query, unlike
aiosqlite), pipelines ``executemany`` in one round trip per batch, and has no
C library dependency beyond its wheel; we need nothing psycopg adds (sync API,
server-side binding variants). It is imported lazily: core installs stay lean.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from . import snapshots
from .store import (
    INSERT_EVENT,
    REPLAY_BLOCK,
    Batch,
    Journal,
    JournalFailed,
    ReplayReport,
    _apply_rows,
    _settle,
    checksum,
    encode_data,
    write_batches,
)

if TYPE_CHECKING:
    import asyncpg

    from .core import HubCore

log = logging.getLogger("synapse_channel.store")

SCHEMA_VERSION = 1
#: Same tables as SQLite (``synapse db migrate`` copies rows as they are) plus the leader row.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, crc BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot_chunks (
    seq BIGINT NOT NULL, part INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (seq, part));
CREATE TABLE IF NOT EXISTS quarantine (
    seq BIGINT PRIMARY KEY, ts DOUBLE PRECISION, kind TEXT, data TEXT, crc BIGINT, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leader (
    id INTEGER PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL, seq BIGINT NOT NULL,
    holder TEXT NOT NULL, address TEXT NOT NULL, since DOUBLE PRECISION NOT NULL);
INSERT INTO leader VALUES (1, 0, 0, '', '', 0) ON CONFLICT (id) DO NOTHING;
"""
#: The advisory lock every hub of a database competes for (one hub group per database).
LOCK_KEY = 0x5359_4E41_5053  # "SYNAPS"
#: The channel a leader notifies after each commit; warm standbys wake on it.
CHANNEL = "synapse_commit"
#: Default seconds a paused or partitioned leader keeps the lock (``--lease``).
DEFAULT_LEASE = 5.0
#: Seconds between a standby's attempts at the lock (it also catches up then).
STANDBY_POLL = 0.25
PG_INSERT_EVENT = "INSERT INTO events VALUES ($1,$2,$3,$4,$5)"
FENCE = "UPDATE leader SET seq = GREATEST(seq, $2) WHERE id = 1 AND epoch = $1"
assert INSERT_EVENT.count("?") == 5  # same row shape as SQLite
#: The epoch check, the rows (as column arrays) and the notification in one autocommit statement. When the
#: epoch moved, the UPDATE matches nothing, nothing is inserted and no row comes back.
APPEND = f"""
WITH fence AS ({FENCE} RETURNING 1),
ins AS (
    INSERT INTO events SELECT * FROM unnest($3::bigint[], $4::float8[], $5::text[], $6::text[], $7::bigint[])
    WHERE EXISTS (SELECT 1 FROM fence) RETURNING 1)
SELECT (SELECT count(*) FROM ins), pg_notify('{CHANNEL}', $2::text) FROM fence
"""


def is_url(db: object) -> bool:
    """True when ``db`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for banners and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Fenced(JournalFailed):
    """Another hub took over (a higher epoch): this one must never write again."""


class NoDriver(RuntimeError):
    """asyncpg is not installed (``pip install 'synapse-channel[postgresql]'``)."""


def _asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise NoDriver("a postgresql:// database needs asyncpg: pip install 'synapse-channel[postgresql]'") from None
    return asyncpg


async def connect(url: str, **settings: str) -> asyncpg.Connection:
    """One connection; ``settings`` become session settings (``server_settings``)."""
    return await _asyncpg().connect(url, server_settings=dict(settings) if settings else None, timeout=10)


async def ensure_schema(con: asyncpg.Connection, hub_id: str) -> str:
    """Create the tables if needed; return the stored hub id (``hub_id`` if none was stored yet)."""
    async with con.transaction():
        await con.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY + 1)  # two first starts: one creates
        await con.execute(SCHEMA)
        await con.execute(
            "INSERT INTO meta VALUES ('hub_id', $1), ('schema_version', $2) ON CONFLICT (key) DO NOTHING",
            hub_id,
            str(SCHEMA_VERSION),
        )
        stored = await con.fetchval("SELECT value FROM meta WHERE key = 'hub_id'")
    return str(stored)


class LeaderInfo:
    """The leader row as last read: who leads, at which epoch, how far its log goes."""

    def __init__(self, epoch: int = 0, seq: int = 0, holder: str = "", address: str = "") -> None:
        self.epoch, self.seq, self.holder, self.address = epoch, seq, holder, address


class PostgresJournal(Journal):
    """The durable journal on PostgreSQL; leads or waits as a standby (see the module docstring)."""

    def __init__(
        self,
        url: str,
        lease_con: asyncpg.Connection,
        hub_id: str,
        snapshot_every: int,
        group_commit: bool = True,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        super().__init__(hub_id)
        self.url = url
        self.lease_con = lease_con
        self.db: asyncpg.Connection | None = None
        self.snapshot_every = snapshot_every
        self.group_commit = group_commit
        self.lease = lease
        self.snapshot_chunk = snapshots.CHUNK_BYTES
        self.last_snapshot_seq = 0
        self.commits = 0
        #: ``leader`` once this hub holds the lock and bumped the epoch; ``standby`` until then.
        self.role = "standby"
        self.epoch = 0
        #: The leader row as last read (a standby's view of who leads, and how far).
        self.leader = LeaderInfo()
        #: Set when this hub lost leadership (fenced or lost its lease): the reason.
        self.deposed: str | None = None
        #: Called (on the loop) when this leader is deposed.
        self.on_deposed: Callable[[str], None] | None = None
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lease_lock = asyncio.Lock()

    # ------------------------------------------------------------------ leadership

    async def try_lead(self, address: str) -> bool:
        """Take the lock if free; then bump the epoch, publish ``address`` and become the writer."""
        async with self._lease_lock:
            got = await self.lease_con.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
            if not got:
                await self._read_leader(self.lease_con)
                return False
            row = await self.lease_con.fetchrow(
                "UPDATE leader SET epoch = epoch + 1, holder = $1, address = $2, since = $3 WHERE id = 1 "
                "RETURNING epoch, seq",
                self.hub_id,
                address,
                time.time(),
            )
        assert row is not None
        self.epoch = int(row["epoch"])
        self.leader = LeaderInfo(self.epoch, int(row["seq"]), self.hub_id, address)
        self.db = await connect(self.url)
        self.role = "leader"
        self._writer = asyncio.create_task(self._run())
        self._keeper = asyncio.create_task(self._keep_lease())
        log.info("leading at epoch %d (lease %.1fs)", self.epoch, self.lease)
        return True

    async def _read_leader(self, con: asyncpg.Connection) -> LeaderInfo:
        row = await con.fetchrow("SELECT epoch, seq, holder, address FROM leader WHERE id = 1")
        if row is not None:
            self.leader = LeaderInfo(int(row["epoch"]), int(row["seq"]), str(row["holder"]), str(row["address"]))
        return self.leader

    async def wait_to_lead(self, address: str, core: HubCore | None = None) -> None:
        """As a standby: follow the log into ``core`` (warm) and return once this hub leads."""
        with contextlib.suppress(Exception):
            await self.lease_con.add_listener(CHANNEL, self._notified)
        while not await self.try_lead(address):
            if core is not None:
                await self.catch_up(core)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), STANDBY_POLL)
            self._wake.clear()
        with contextlib.suppress(Exception):
            await self.lease_con.remove_listener(CHANNEL, self._notified)

    def _notified(self, *args: object) -> None:
        self._wake.set()

    async def _keep_lease(self) -> None:
        """Touch the lease connection often enough; step down when it is gone or the epoch moved."""
        interval = self.lease / 4
        while self.deposed is None:
            await asyncio.sleep(interval)
            try:
                async with self._lease_lock:
                    info = await asyncio.wait_for(self._read_leader(self.lease_con), self.lease / 2)
            except Exception as exc:
                self._depose(f"lost the leader lease ({type(exc).__name__}: {exc})")
                return
            if info.epoch != self.epoch:
                self._depose(f"another hub ({info.holder}) took over at epoch {info.epoch}")
                return

    def _depose(self, why: str) -> None:
        if self.deposed is not None:
            return
        self.deposed = why
        if self.failed is None:
            self.failed = Fenced(why)
        log.critical("stepping down: %s", why)
        if self.on_deposed is not None:
            self.on_deposed(why)

    async def leader_address(self) -> str:
        """The current leader's advertised address, freshly read (on a new connection: ours may be gone)."""
        con = await connect(self.url)
        try:
            await self._read_leader(con)
        finally:
            con.terminate()
        return self.leader.address

    # ------------------------------------------------------------------ writing

    def submit(self, events: list[Any]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.role != "leader":
            fut.set_exception(JournalFailed("this hub is a standby: it does not write the journal"))
            return fut
        self._queue.put_nowait((events, fut))
        return fut

    async def _run(self) -> None:
        await write_batches(self._queue, self.group_commit, self._commit)

    async def _commit(self, batch: list[Batch]) -> None:
        if self.failed is not None:
            _settle(batch, JournalFailed(f"the journal stopped: {self.failed}"))
            return
        rows = []
        for events, _ in batch:
            for ev in events:
                text = ev.text if ev.text is not None else encode_data(ev.data)
                rows.append((ev.seq, ev.ts, ev.kind, text, checksum(ev.kind, text)))
        last = rows[-1][0] if rows else 0
        assert self.db is not None
        try:
            started = time.perf_counter()
            if self.snapshot_source is not None and last - self.last_snapshot_seq >= self.snapshot_every:
                async with self.db.transaction():
                    await self._fence(self.db, last)
                    await self.db.executemany(PG_INSERT_EVENT, rows)
                    await self._try_snapshot(last, rows[-1][1])
                    await self.db.execute("SELECT pg_notify($1, $2)", CHANNEL, str(last))
            else:
                await self._append(rows, last)
            self.commit_seconds.observe(time.perf_counter() - started)
            self.commits += 1
            if last:
                self.committed_seq = last
        except Exception as exc:
            if isinstance(exc, Fenced):
                self._depose(str(exc))
            else:
                self.failed = exc
                log.critical("journal commit failed (seq %s..%s): %s", rows[0][0] if rows else "-", last, exc)
            _settle(batch, exc)
            return
        _settle(batch, None)

    async def _append(self, rows: list[tuple[int, float, str, str, int]], last: int) -> None:
        """Fence, insert and notify in one statement: its own transaction, one round trip (the common commit)."""
        assert self.db is not None
        cols = list(zip(*rows, strict=True))
        done = await self.db.fetchrow(APPEND, self.epoch, last, *cols)
        if done is None:
            info = await self._read_leader(self.db)
            raise Fenced(f"fenced: another hub ({info.holder}) leads at epoch {info.epoch} (ours was {self.epoch})")
        if done[0] != len(rows):
            raise JournalFailed(f"{done[0]} of {len(rows)} events were inserted")

    async def _fence(self, con: asyncpg.Connection, seq: int) -> None:
        """The epoch check every write transaction starts with (see the module docstring)."""
        status = await con.execute(FENCE, self.epoch, seq)
        if status != "UPDATE 1":
            info = await self._read_leader(con)
            raise Fenced(f"fenced: another hub ({info.holder}) leads at epoch {info.epoch} (ours was {self.epoch})")

    async def _try_snapshot(self, seq: int, ts: float) -> None:
        """A snapshot inside a savepoint: if it fails, the events still commit without it."""
        assert self.db is not None
        try:
            async with self.db.transaction():
                await self._write_snapshot(seq, ts)
        except Exception as exc:
            log.error("snapshot at seq %d not written (%s); the events commit without it", seq, exc)
            self.last_snapshot_seq = seq

    async def _write_snapshot(self, seq: int, ts: float) -> None:
        assert self.snapshot_source is not None and self.db is not None
        state = self.snapshot_source()
        if state.get("seq") != seq:
            return
        rest, early = snapshots.freeze(state)
        blob = await asyncio.to_thread(snapshots.encode_frozen, rest, early)
        await write_snapshot(self.db, seq, ts, blob, self.snapshot_chunk)
        self.last_snapshot_seq = seq

    # ------------------------------------------------------------------ reading

    async def replay(self, core: HubCore) -> ReplayReport:
        """Load the newest snapshot and every event after it (leader at start, or a standby warming up)."""
        report = self.report
        found = await read_newest_snapshot(self.lease_con)
        if found is not None:
            seq, state = found
            core.restore(state)
            report.snapshot_seq = self.last_snapshot_seq = seq
        compacted = await self.lease_con.fetchval("SELECT value FROM meta WHERE key = 'compacted_through'")
        if compacted is not None and int(compacted) > report.snapshot_seq:
            from .store import SnapshotMissing

            raise SnapshotMissing(
                f"{redact(self.url)} was compacted through seq {compacted} but has no usable snapshot at or after it"
            )
        await self.catch_up(core)
        log.info("journal %s: %s", redact(self.url), report)
        return report

    async def catch_up(self, core: HubCore) -> int:
        """Apply the events after ``core.seq`` (a standby following, or a new leader finishing); returns how many."""
        report = self.report
        if report.stopped_at is not None:
            return 0
        before = report.replayed
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            async with self._lease_lock, self.lease_con.transaction(readonly=True):
                cur = self.lease_con.cursor(
                    "SELECT seq, ts, kind, data, crc FROM events WHERE seq > $1 ORDER BY seq", core.seq
                )
                async for rows in _blocks(cur):
                    if not _apply_rows(core, rows, report):
                        break
        finally:
            if gc_was_on:
                gc.enable()
        if report.stopped_at is not None:
            log.error("journal %s: %s", redact(self.url), report)
        self.committed_seq = core.seq
        return report.replayed - before

    async def settle_tail(self, core: HubCore) -> None:
        """As the new leader, after catching up: move an unreadable tail aside, never reuse a seq.

        Replay stops at the first row that fails its checksum (as on SQLite);
        the rows from there on are moved to ``quarantine`` in a fenced
        transaction, and the core's seq jumps past every quarantined one.
        """
        report = self.report
        assert self.db is not None
        async with self.db.transaction():
            await self._fence(self.db, core.seq)
            if report.stopped_at is not None:
                await self.db.execute(
                    "INSERT INTO quarantine SELECT seq, ts, kind, data, crc, $1 FROM events WHERE seq >= $2 "
                    "ON CONFLICT (seq) DO NOTHING",
                    report.reason,
                    report.stopped_at,
                )
                await self.db.execute("DELETE FROM events WHERE seq >= $1", report.stopped_at)
            top = await self.db.fetchval("SELECT MAX(seq) FROM quarantine")
        if top:
            core.seq = max(core.seq, int(top))
        self.committed_seq = core.seq

    async def close(self) -> None:
        """Flush, write a final snapshot (leader, never after a failure), release the lock and disconnect."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(BaseException):
                await self._keeper
        if self._writer is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await self._writer
        if self.role == "leader" and self.snapshot_source is not None and self.failed is None:
            await self._final_snapshot()
        for con in (self.db, self.lease_con):
            if con is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(con.close(), 2.0)
                if con is not None and not con.is_closed():
                    con.terminate()

    async def _final_snapshot(self) -> None:
        assert self.db is not None and self.snapshot_source is not None
        try:
            state = self.snapshot_source()
            if state["seq"] > self.last_snapshot_seq:
                async with self.db.transaction():
                    await self._fence(self.db, int(state["seq"]))
                    await self._write_snapshot(int(state["seq"]), 0.0)
        except Exception as exc:
            log.error("final snapshot not written (%s); the next leader replays from the journal", exc)


async def _blocks(cur: Any) -> Any:
    """A cursor's rows in blocks of :data:`REPLAY_BLOCK`."""
    c = await cur
    while rows := await c.fetch(REPLAY_BLOCK):
        yield rows


async def write_snapshot(con: asyncpg.Connection, seq: int, ts: float, blob: bytes, chunk: int) -> int:
    """Store ``blob`` as the snapshot at ``seq`` (header + parts, as on SQLite) and drop older ones."""
    parts = [blob[i : i + chunk] for i in range(0, len(blob), chunk)] or [blob]
    header = snapshots._compact({"chunked": {"parts": len(parts), "bytes": len(blob), "crc": zlib.crc32(blob)}})
    await con.execute("DELETE FROM snapshot_chunks WHERE seq >= $1", seq)
    await con.executemany("INSERT INTO snapshot_chunks VALUES ($1,$2,$3)", [(seq, i, p) for i, p in enumerate(parts)])
    await con.execute(
        "INSERT INTO snapshots VALUES ($1,$2,$3) ON CONFLICT (seq) DO UPDATE SET ts = $2, state = $3", seq, ts, header
    )
    await con.execute("DELETE FROM snapshots WHERE seq < $1", seq)
    await con.execute("DELETE FROM snapshot_chunks WHERE seq < $1", seq)
    return len(parts)


async def read_newest_snapshot(con: asyncpg.Connection) -> tuple[int, dict[str, Any]] | None:
    """The newest complete snapshot as ``(seq, state)``, or None."""
    for row in await con.fetch("SELECT seq, state FROM snapshots ORDER BY seq DESC"):
        seq = int(row["seq"])
        parts = await con.fetch("SELECT part, data FROM snapshot_chunks WHERE seq = $1 ORDER BY part", seq)
        try:
            return seq, snapshots._assemble(row["state"], [(p["part"], p["data"]) for p in parts])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("snapshot at seq %d is unusable (%s); trying an older one", seq, exc)
    return None


async def open_postgres(
    url: str, *, hub_id: str, snapshot_every: int, group_commit: bool, lease: float = DEFAULT_LEASE
) -> PostgresJournal:
    """Connect, create the schema if needed, and return a journal that is not leading yet."""
    timeout_ms = str(max(1000, int(lease * 1000)))
    lease_con = await connect(url, idle_session_timeout=timeout_ms)
    try:
        hub_id = await ensure_schema(lease_con, hub_id)
    except BaseException:
        lease_con.terminate()
        raise
    return PostgresJournal(url, lease_con, hub_id, snapshot_every, group_commit, lease)
