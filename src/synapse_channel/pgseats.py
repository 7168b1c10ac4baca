"""Seats on PostgreSQL: per-agent credentials for hubs on ``--db postgresql://``.

The same two tables as on SQLite (``seats`` and ``seat_log``, created with the
journal's schema), the same rules, messages and row shapes (shared from
:mod:`.seats`): secrets stored only as SHA-256, found by key id, roles and
name globs, every change logged in the same transaction. Because every hub
of a group reads the one database, the leader and its standbys hold the same
credentials, and a standby that takes over keeps them.

Seat changes are serialized by a transaction-level advisory lock: ``seat_log``
ids are then committed in increasing order, so a hub that polls ``MAX(id)``
(as it polls SQLite) can never read a newer id while an older change is
still uncommitted and miss that change.

``synapse seat`` is synchronous; it runs each command's one transaction with
:func:`asyncio.run` (:class:`PgSeatClient`). asyncpg is imported only here and
in :mod:`.pgstore`, never by a SQLite hub or CLI run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .pgstore import LOCK_KEY, _asyncpg, connect, ensure_seat_schema
from .seats import (
    SeatRecord,
    SeatTable,
    change_of,
    check_active,
    check_addable,
    check_new_seat,
    hash_secret,
    log_detail,
    new_secret,
    record_of,
    table_of,
)

if TYPE_CHECKING:
    import asyncpg

#: Held (per transaction) by every seat change, so ``seat_log`` ids commit in order.
SEAT_LOCK = LOCK_KEY + 2

T = TypeVar("T")


class PgSeatStore:
    """The ``seats`` and ``seat_log`` tables of one PostgreSQL hub database (async)."""

    def __init__(self, con: asyncpg.Connection) -> None:
        self.con = con

    @classmethod
    async def open(cls, url: str, *, create: bool = True) -> PgSeatStore:
        """Connect and (``create``) make the seat tables if no hub has yet."""
        con = await connect(url)
        try:
            if create:
                await ensure_seat_schema(con)
        except BaseException:
            con.terminate()
            raise
        return cls(con)

    async def close(self) -> None:
        """Disconnect."""
        await self.con.close()

    @asynccontextmanager
    async def _change(self) -> AsyncIterator[None]:
        async with self.con.transaction():
            await self.con.execute("SELECT pg_advisory_xact_lock($1)", SEAT_LOCK)
            yield

    async def _revoked_at(self, name: str) -> tuple[bool, float | None]:
        row = await self.con.fetchrow("SELECT revoked_at FROM seats WHERE name = $1", name)
        return row is not None, row[0] if row is not None else None

    async def _log(self, action: str, seat: str, **detail: Any) -> None:
        await self.con.execute(
            "INSERT INTO seat_log (ts, action, seat, detail) VALUES ($1,$2,$3,$4)",
            time.time(),
            action,
            seat,
            log_detail(**detail),
        )

    async def add(self, name: str, role: str, patterns: tuple[str, ...] = (), *, by: str = "") -> str:
        """Create a seat and return its secret (the only time it is shown)."""
        check_new_seat(name, role, patterns)
        key_id, secret = new_secret()
        async with self._change():
            check_addable(name, *await self._revoked_at(name))
            await self.con.execute(
                "INSERT INTO seats VALUES ($1,$2,$3,$4,$5,$6,NULL,NULL) ON CONFLICT (name) DO UPDATE SET "
                "role = EXCLUDED.role, patterns = EXCLUDED.patterns, key_id = EXCLUDED.key_id, "
                "secret_hash = EXCLUDED.secret_hash, created_at = EXCLUDED.created_at, rotated_at = NULL, "
                "revoked_at = NULL",
                name,
                role,
                json.dumps(list(patterns)),
                key_id,
                hash_secret(secret),
                time.time(),
            )
            await self._log("seat_added", name, role=role, names=list(patterns), key_id=key_id, by=by)
        return secret

    async def rotate(self, name: str, *, by: str = "") -> str:
        """Give an active seat a new secret; the old one stops working at once."""
        key_id, secret = new_secret()
        async with self._change():
            check_active(name, *await self._revoked_at(name))
            await self.con.execute(
                "UPDATE seats SET key_id = $1, secret_hash = $2, rotated_at = $3 WHERE name = $4",
                key_id,
                hash_secret(secret),
                time.time(),
                name,
            )
            await self._log("seat_rotated", name, key_id=key_id, by=by)
        return secret

    async def revoke(self, name: str, *, by: str = "") -> None:
        """Disable a seat; every hub closes its live sockets."""
        async with self._change():
            check_active(name, *await self._revoked_at(name))
            await self.con.execute("UPDATE seats SET revoked_at = $1 WHERE name = $2", time.time(), name)
            await self._log("seat_revoked", name, by=by)

    async def seats(self) -> list[SeatRecord]:
        """Every seat, active and revoked, by name."""
        rows = await self.con.fetch(
            "SELECT name, role, patterns, key_id, created_at, rotated_at, revoked_at FROM seats ORDER BY name"
        )
        return [record_of(r) for r in rows]

    async def audit(self, kinds: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
        """Refusals journalled by the hubs (``kinds``) and seat changes: the newest ``limit`` of each (reads only)."""
        rows = await self._fetch_if_there(
            "SELECT seq, ts, kind, data FROM events WHERE kind = ANY($1::text[]) ORDER BY seq DESC LIMIT $2",
            list(kinds),
            limit,
        )
        entries = [{"ts": ts, "kind": kind, "seq": seq, **json.loads(data)} for seq, ts, kind, data in rows]
        changes = await self._fetch_if_there(
            "SELECT ts, action, seat, detail FROM seat_log ORDER BY id DESC LIMIT $1", limit
        )
        return entries + [change_of(r) for r in changes]

    async def _fetch_if_there(self, query: str, *args: Any) -> list[Any]:
        try:
            return list(await self.con.fetch(query, *args))
        except _asyncpg().UndefinedTableError:  # no hub and no seat command has run on this database yet
            return []


class PgSeatClient:
    """Synchronous seat commands for the CLI: each call connects, runs one transaction and disconnects."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, op: Callable[[PgSeatStore], Awaitable[T]], *, create: bool = True) -> T:
        async def go() -> T:
            store = await PgSeatStore.open(self.url, create=create)
            try:
                return await op(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def add(self, name: str, role: str, patterns: tuple[str, ...] = (), *, by: str = "") -> str:
        return self._run(lambda s: s.add(name, role, patterns, by=by))

    def rotate(self, name: str, *, by: str = "") -> str:
        return self._run(lambda s: s.rotate(name, by=by))

    def revoke(self, name: str, *, by: str = "") -> None:
        self._run(lambda s: s.revoke(name, by=by))

    def seats(self) -> list[SeatRecord]:
        return self._run(lambda s: s.seats())

    def audit(self, kinds: tuple[str, ...], limit: int) -> list[dict[str, Any]]:
        return self._run(lambda s: s.audit(kinds, limit), create=False)

    def close(self) -> None:
        """Nothing stays open between calls."""


class PgSeatSource:
    """A hub's reader of the seat tables in its PostgreSQL database (one connection of its own).

    The connection is opened on first use and dropped after an error, so a
    database restart costs one failed poll (the hub keeps its previous table
    meanwhile), not a dead reader.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._con: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _query(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._lock:  # one connection: the poll and a check at authentication take turns
            if self._con is None or self._con.is_closed():
                self._con = await connect(self.url)
            try:
                return await op(self._con)
            except BaseException:
                con, self._con = self._con, None
                con.terminate()
                raise

    async def mark(self) -> int:
        return int(await self._query(lambda con: con.fetchval("SELECT COALESCE(MAX(id), 0) FROM seat_log")))

    async def table(self) -> SeatTable:
        async def read(con: asyncpg.Connection) -> SeatTable:
            async with con.transaction(isolation="repeatable_read", readonly=True):  # rows and count agree
                rows = await con.fetch(
                    "SELECT name, role, patterns, key_id, secret_hash FROM seats WHERE revoked_at IS NULL"
                )
                total = await con.fetchval("SELECT COUNT(*) FROM seats")
            return table_of([tuple(r) for r in rows], int(total))

        return await self._query(read)

    async def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            try:
                await asyncio.wait_for(con.close(), 2.0)
            except Exception:
                con.terminate()
