"""``synapse db migrate --to postgresql://...``: copy a SQLite event log into an empty PostgreSQL database.

The rows are copied as they are (same seq, timestamp, payload text and
CRC), so the PostgreSQL hub replays exactly what the SQLite hub would have:
the newest snapshot and the events after it. Everything goes in one
transaction: a failed copy leaves the target as empty as it was. The source
must not be in use (its writer lock is taken for the copy) and the target
must hold no events and no running hub (the leader lock is tried).

Seats and their log come along (same hashes and key ids, so every secret
keeps working): a seated SQLite hub must not become an open PostgreSQL one.
Seats already added to the target with ``synapse seat --db postgresql://``
are kept when the source has none; when both have seats the copy refuses.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .pgstore import LOCK_KEY, connect, ensure_schema, redact

#: Rows per ``COPY`` round trip.
BLOCK = 5000


class MigrateError(RuntimeError):
    """The copy cannot start or did not check out (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class Migrated:
    """What was copied."""

    hub_id: str
    events: int
    last_seq: int
    snapshot_seq: int | None
    quarantined: int
    seats: int = 0

    def __str__(self) -> str:
        snap = f"snapshot at seq {self.snapshot_seq}" if self.snapshot_seq is not None else "no snapshot"
        return (
            f"hub {self.hub_id}: {self.events} events through seq {self.last_seq}, {snap}, "
            f"{self.quarantined} quarantined, {self.seats} seats"
        )


async def migrate(source: Path, url: str) -> Migrated:
    """Copy ``source`` (a SQLite hub database) into the empty PostgreSQL database at ``url``."""
    from .store import DatabaseBusy, WriterLock

    try:
        lock = WriterLock(source)
    except DatabaseBusy as exc:
        raise MigrateError(f"{exc}; stop the hub before migrating") from None
    try:
        con = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            return await _copy(con, url)
        finally:
            con.close()
    finally:
        lock.release()


async def _copy(src: sqlite3.Connection, url: str) -> Migrated:
    try:
        meta = dict(src.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise MigrateError(f"not a hub database: {exc}") from None
    hub_id = meta.get("hub_id")
    if not hub_id:
        raise MigrateError("the source has no hub_id: not a hub database")
    pg = await connect(url)
    try:
        stored = await ensure_schema(pg, hub_id)
        if not await pg.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            raise MigrateError(f"a hub is running on {redact(url)}; stop it before migrating into it")
        if await pg.fetchval("SELECT EXISTS (SELECT 1 FROM events)"):
            raise MigrateError(f"{redact(url)} already holds hub {stored}'s log; migrate into an empty database")
        async with pg.transaction():
            await pg.execute("DELETE FROM meta")
            await pg.copy_records_to_table("meta", records=list(meta.items()))
            events = await _copy_table(src, pg, "events", "SELECT seq, ts, kind, data, crc FROM events ORDER BY seq")
            await _copy_table(src, pg, "snapshots", "SELECT seq, ts, state FROM snapshots")
            await _copy_table(src, pg, "snapshot_chunks", "SELECT seq, part, data FROM snapshot_chunks")
            quarantined = await _copy_table(
                src, pg, "quarantine", "SELECT seq, ts, kind, data, crc, reason FROM quarantine"
            )
            last = int(await pg.fetchval("SELECT COALESCE(MAX(seq), 0) FROM events"))
            await pg.execute("UPDATE leader SET seq = $1 WHERE id = 1", last)
            seats = await _copy_seats(src, pg, url)
            snap = await pg.fetchval("SELECT MAX(seq) FROM snapshots")
            top, count = src.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM events").fetchone()
            if (int(top), int(count)) != (last, events):
                raise MigrateError(f"copy check failed: source has {count} events through {top}, copied {events}")
    finally:
        await pg.close()
    return Migrated(hub_id, events, last, None if snap is None else int(snap), quarantined, seats)


async def _copy_seats(src: sqlite3.Connection, pg: Any, url: str) -> int:
    """Copy ``seats`` and ``seat_log`` (ids kept, the identity moved past them); returns the seat count."""
    try:
        (count,) = src.execute("SELECT COUNT(*) FROM seats").fetchone()
    except sqlite3.OperationalError:  # no seat was ever added on the SQLite hub
        return 0
    if not count:
        return 0
    if await pg.fetchval("SELECT EXISTS (SELECT 1 FROM seats) OR EXISTS (SELECT 1 FROM seat_log)"):
        raise MigrateError(f"both the source and {redact(url)} have seats; remove one set before migrating")
    columns = "name, role, patterns, key_id, secret_hash, created_at, rotated_at, revoked_at"
    copied = await _copy_table(src, pg, "seats", f"SELECT {columns} FROM seats")
    await _copy_table(src, pg, "seat_log", "SELECT id, ts, action, seat, detail FROM seat_log ORDER BY id")
    await pg.execute("SELECT setval(pg_get_serial_sequence('seat_log', 'id'), (SELECT MAX(id) FROM seat_log))")
    return copied


async def _copy_table(src: sqlite3.Connection, pg: object, table: str, query: str) -> int:
    """Stream ``query``'s rows from SQLite into ``table`` with ``COPY``; returns the row count."""
    copied = 0
    cur = src.execute(query)
    while rows := cur.fetchmany(BLOCK):
        records = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
        await pg.copy_records_to_table(table, records=records)  # type: ignore[attr-defined]
        copied += len(rows)
    return copied
