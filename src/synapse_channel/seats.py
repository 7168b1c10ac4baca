"""Seats: per-agent credentials, stored hashed in the hub's database.

A seat is a name, a role (agent, observer, admin) and the identities it may
register (its own name plus optional glob patterns such as ``api/*``). Its
secret, ``synseat_<key id>_<random>``, is shown once when the seat is made or
rotated; the database keeps only its SHA-256 (the secret carries 256 random
bits, so a fast hash is enough) and the key id that finds the row, so the
hub compares one hash in constant time instead of searching by secret.

Seats are managed on the hub's host by whoever can write its database (the
hub's owner): ``synapse seat add|list|revoke|rotate`` open the file with plain
``sqlite3`` while the hub runs, and the hub notices the change within half a
second (``PRAGMA data_version``). Every change is written to ``seat_log`` in
the same transaction, which ``synapse audit`` shows.

A hub on PostgreSQL keeps the same two tables in its database
(:mod:`.pgseats`): the rules, messages and row shapes below are shared, only
the SQL dialect and driver differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .core.access import SEAT_ROLES, Grant
from .protocol import name_problem

SECRET_PREFIX = "synseat_"
#: Shortest shared token or secret the hub accepts: anything shorter is guessable.
MIN_SECRET_LEN = 16

SEAT_SCHEMA = """
CREATE TABLE IF NOT EXISTS seats (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, patterns TEXT NOT NULL, key_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL, created_at REAL NOT NULL, rotated_at REAL, revoked_at REAL);
CREATE TABLE IF NOT EXISTS seat_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, action TEXT NOT NULL,
    seat TEXT NOT NULL, detail TEXT NOT NULL);
"""


class SeatError(ValueError):
    """A seat request that cannot be carried out; the message is for the user."""


@dataclass(frozen=True, slots=True)
class SeatRecord:
    """One seat as listed (never with its secret or hash)."""

    name: str
    role: str
    patterns: tuple[str, ...]
    key_id: str
    created_at: float
    rotated_at: float | None
    revoked_at: float | None

    def public(self) -> dict[str, Any]:
        """JSON-ready, secret-free."""
        return {
            "name": self.name,
            "role": self.role,
            "names": list(self.patterns),
            "key_id": self.key_id,
            "created_at": self.created_at,
            "rotated_at": self.rotated_at,
            "revoked_at": self.revoked_at,
            "active": self.revoked_at is None,
        }


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The key id inside a seat secret, or None when ``secret`` is not one."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    key_id, sep, rest = secret[len(SECRET_PREFIX) :].partition("_")
    return key_id if sep and key_id and len(rest) >= MIN_SECRET_LEN else None


def new_secret() -> tuple[str, str]:
    """A fresh ``(key id, secret)`` pair."""
    key_id = secrets.token_hex(6)
    return key_id, f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def check_new_seat(name: str, role: str, patterns: tuple[str, ...]) -> None:
    """Refuse a bad name, an unknown role or a bad pattern before anything is written."""
    problem = name_problem(name)
    if problem is not None:
        raise SeatError(f"bad seat name {name!r}: {problem}")
    if role not in SEAT_ROLES:
        raise SeatError(f"unknown role {role!r}: choose one of {', '.join(SEAT_ROLES)}")
    check_patterns(patterns)


def check_addable(name: str, found: bool, revoked_at: float | None) -> None:
    """A name is free unless an active seat holds it (a revoked one may be added again)."""
    if found and revoked_at is None:
        raise SeatError(f"seat {name!r} already exists; use 'synapse seat rotate {name}' for a new secret")


def check_active(name: str, found: bool, revoked_at: float | None) -> None:
    """Rotate and revoke need an active seat."""
    if not found:
        raise SeatError(f"no seat named {name!r} (see 'synapse seat list')")
    if revoked_at is not None:
        raise SeatError(f"seat {name!r} is revoked; add it again to reuse the name")


def log_detail(**detail: Any) -> str:
    """A ``seat_log.detail`` value (the same JSON text on both databases)."""
    return json.dumps(detail, sort_keys=True)


def record_of(row: Any) -> SeatRecord:
    """A :class:`SeatRecord` from ``(name, role, patterns, key_id, created_at, rotated_at, revoked_at)``."""
    return SeatRecord(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], row[5], row[6])


def table_of(rows: list[Any], total: int) -> SeatTable:
    """The hub's table from ``(name, role, patterns, key_id, secret_hash)`` rows of active seats."""
    entries = {
        key_id: (Grant(name, role, tuple(json.loads(patterns)), key_id), digest)
        for name, role, patterns, key_id, digest in rows
    }
    return SeatTable(entries, configured=total > 0)


def change_of(row: Any) -> dict[str, Any]:
    """An audit entry from a ``(ts, action, seat, detail)`` row of ``seat_log``."""
    return {"ts": row[0], "kind": row[1], "seat": row[2], **json.loads(row[3])}


def check_patterns(patterns: tuple[str, ...]) -> None:
    """Each ``--names`` pattern is a name with ``*``/``?`` globs; refuse anything else."""
    for pattern in patterns:
        probe = pattern.replace("*", "x").replace("?", "x")
        problem = name_problem(probe)
        if problem is not None or "[" in pattern:
            raise SeatError(f"bad --names pattern {pattern!r}: use names with * and ? only ({problem or 'no ['})")


class SeatStore:
    """The ``seats`` and ``seat_log`` tables of one hub database."""

    def __init__(self, path: Path) -> None:
        from .store import touch_private

        self.path = path = touch_private(path)
        self.db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SEAT_SCHEMA)

    def close(self) -> None:
        """Release the database."""
        self.db.close()

    def __enter__(self) -> SeatStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log(self, action: str, seat: str, **detail: Any) -> None:
        self.db.execute(
            "INSERT INTO seat_log (ts, action, seat, detail) VALUES (?,?,?,?)",
            (time.time(), action, seat, log_detail(**detail)),
        )

    def add(self, name: str, role: str, patterns: tuple[str, ...] = (), *, by: str = "") -> str:
        """Create a seat and return its secret (the only time it is shown)."""
        check_new_seat(name, role, patterns)
        key_id, secret = new_secret()
        with self._transaction():
            row = self.db.execute("SELECT revoked_at FROM seats WHERE name = ?", (name,)).fetchone()
            check_addable(name, row is not None, row[0] if row else None)
            self.db.execute(
                "INSERT OR REPLACE INTO seats VALUES (?,?,?,?,?,?,NULL,NULL)",
                (name, role, json.dumps(list(patterns)), key_id, hash_secret(secret), time.time()),
            )
            self._log("seat_added", name, role=role, names=list(patterns), key_id=key_id, by=by)
        return secret

    def rotate(self, name: str, *, by: str = "") -> str:
        """Give an active seat a new secret; the old one stops working at once."""
        key_id, secret = new_secret()
        with self._transaction():
            self._active_row(name)
            self.db.execute(
                "UPDATE seats SET key_id = ?, secret_hash = ?, rotated_at = ? WHERE name = ?",
                (key_id, hash_secret(secret), time.time(), name),
            )
            self._log("seat_rotated", name, key_id=key_id, by=by)
        return secret

    def revoke(self, name: str, *, by: str = "") -> None:
        """Disable a seat; the hub closes its live sockets."""
        with self._transaction():
            self._active_row(name)
            self.db.execute("UPDATE seats SET revoked_at = ? WHERE name = ?", (time.time(), name))
            self._log("seat_revoked", name, by=by)

    def _active_row(self, name: str) -> None:
        row = self.db.execute("SELECT revoked_at FROM seats WHERE name = ?", (name,)).fetchone()
        check_active(name, row is not None, row[0] if row else None)

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def seats(self) -> list[SeatRecord]:
        """Every seat, active and revoked, by name."""
        rows = self.db.execute(
            "SELECT name, role, patterns, key_id, created_at, rotated_at, revoked_at FROM seats ORDER BY name"
        ).fetchall()
        return [record_of(r) for r in rows]


class SeatTable:
    """The hub's view of the active seats: key id -> (grant, hash), reloaded on change."""

    def __init__(self, entries: dict[str, tuple[Grant, str]] | None = None, *, configured: bool = False) -> None:
        self.entries = entries or {}
        #: True once any seat was ever added: revoking every seat locks the hub, it never reopens it.
        self.configured = configured or bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def verify(self, secret: str) -> Grant | None:
        """The grant ``secret`` proves, or None. One constant-time hash comparison."""
        key_id = key_id_of(secret)
        entry = self.entries.get(key_id) if key_id else None
        if entry is None:
            return None
        grant, stored = entry
        return grant if hmac.compare_digest(hash_secret(secret), stored) else None

    def still_valid(self, grant: Grant) -> bool:
        """False once ``grant``'s seat was revoked or rotated to another key."""
        entry = self.entries.get(grant.key_id)
        return entry is not None and entry[0] == grant


def read_seat_table(db: sqlite3.Connection) -> SeatTable:
    """Load the active seats (an empty table when the database has none yet)."""
    try:
        rows = db.execute(
            "SELECT name, role, patterns, key_id, secret_hash FROM seats WHERE revoked_at IS NULL"
        ).fetchall()
    except sqlite3.OperationalError:
        return SeatTable()
    (total,) = db.execute("SELECT COUNT(*) FROM seats").fetchone()
    return table_of(rows, total)


def seat_changes(db: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` seat changes, newest first (none when no seat was ever made)."""
    try:
        rows = db.execute("SELECT ts, action, seat, detail FROM seat_log ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    except sqlite3.OperationalError:
        return []
    return [change_of(r) for r in rows]


class SeatSource(Protocol):
    """Where a running hub reads seats from: its SQLite file or its PostgreSQL database."""

    async def mark(self) -> int:
        """The newest ``seat_log`` id (0 when none): the table is re-read only when it moves."""
        ...

    async def table(self) -> SeatTable:
        """The active seats."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class SqliteSeatSource:
    """The hub's reader of the seat tables in its SQLite file (reads run in a thread: sqlite3 blocks)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, timeout=5.0, check_same_thread=False)

    def _mark(self) -> int:
        try:
            row = self.db.execute("SELECT MAX(id) FROM seat_log").fetchone()
        except sqlite3.Error:  # no seat table yet: nothing was ever added
            return 0
        return int(row[0] or 0)

    async def mark(self) -> int:
        return await asyncio.to_thread(self._mark)

    async def table(self) -> SeatTable:
        return await asyncio.to_thread(read_seat_table, self.db)

    async def close(self) -> None:
        self.db.close()
