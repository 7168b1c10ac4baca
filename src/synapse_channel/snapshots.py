"""State snapshots stored in chunks, so no single SQLite value nears its size limits.

A snapshot used to be one TEXT value holding the whole state: a large enough
mailbox made it pass ``SQLITE_MAX_LENGTH`` ("string or blob too big"), and
since it shared the transaction with the events, the hub could no longer
commit anything. Now the encoded state is split into parts of at most
:data:`CHUNK_BYTES` in ``snapshot_chunks``; the ``snapshots`` row is only a
small header (part count, total size, CRC32). Header and parts are written in
the caller's transaction, so a snapshot is either complete or absent; a reader
still checks the count and the checksum and falls back to an older complete
snapshot (or none) rather than trusting a damaged one.

Old single-row snapshots (the whole state as JSON in ``snapshots.state``) are
still read, so an existing database starts as before and the next snapshot is
written in the new form.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite

log = logging.getLogger("synapse_channel.store")

#: Largest part of a snapshot in one row: far below SQLite's 1 GB value limit.
CHUNK_BYTES = 4 * 1024 * 1024
#: Sections of a snapshot that can be mutated in place by the core later: encoded on the loop.
MUTABLE_SECTIONS = ("claims", "board", "attention")
_HEADER = '{"chunked":'

CHUNK_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot_chunks (
    seq INTEGER NOT NULL, part INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (seq, part));
"""


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def freeze(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split ``state`` into what can be encoded off the event loop and what must be encoded now.

    The mailbox and history sections are fresh lists of frames the core never
    mutates after storing them, so a worker thread may encode them while the
    loop runs on. Claims and board entries are edited in place, so they are
    encoded here, at the moment the snapshot stands for.
    """
    early = {k: _compact(state[k]) for k in MUTABLE_SECTIONS if k in state}
    rest = {k: v for k, v in state.items() if k not in early}
    return rest, early


def encode_frozen(rest: dict[str, Any], early: dict[str, str]) -> bytes:
    """The snapshot's JSON (UTF-8) from :func:`freeze`'s halves; safe to run in a thread."""
    body = _compact(rest)
    extra = "".join(f",{json.dumps(k)}:{v}" for k, v in early.items())
    return (body[:-1] + extra + "}").encode()


async def write(db: aiosqlite.Connection, seq: int, ts: float, blob: bytes, chunk: int = CHUNK_BYTES) -> int:
    """Store ``blob`` as the snapshot at ``seq`` and drop older ones; returns the part count.

    Runs inside the caller's transaction: nothing is visible until it commits.
    """
    view = memoryview(blob)  # parts are views: no second copy of a large state
    parts = [view[i : i + chunk] for i in range(0, len(blob), chunk)] or [view]
    header = _compact({"chunked": {"parts": len(parts), "bytes": len(blob), "crc": zlib.crc32(blob)}})
    await db.execute("DELETE FROM snapshot_chunks WHERE seq = ?", (seq,))
    await db.executemany("INSERT INTO snapshot_chunks VALUES (?,?,?)", [(seq, i, p) for i, p in enumerate(parts)])
    await db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?)", (seq, ts, header))
    await db.execute("DELETE FROM snapshots WHERE seq < ?", (seq,))
    await db.execute("DELETE FROM snapshot_chunks WHERE seq < ?", (seq,))
    return len(parts)


async def read_newest(db: aiosqlite.Connection) -> tuple[int, dict[str, Any]] | None:
    """The newest complete snapshot as ``(seq, state)``, or None when there is none."""
    async with db.execute("SELECT seq FROM snapshots ORDER BY seq DESC") as cur:
        seqs = [int(r[0]) for r in await cur.fetchall()]
    for seq in seqs:
        async with db.execute("SELECT state FROM snapshots WHERE seq = ?", (seq,)) as cur:
            row = await cur.fetchone()
        if row is None:
            continue
        try:
            state = await _decode(db, seq, row[0])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("snapshot at seq %d is unusable (%s); trying an older one", seq, exc)
            continue
        return seq, state
    return None


_PARTS = "SELECT part, data FROM snapshot_chunks WHERE seq = ? ORDER BY part"


async def _decode(db: aiosqlite.Connection, seq: int, text: str) -> dict[str, Any]:
    rows: list[Any] = []
    if text.startswith(_HEADER):
        async with db.execute(_PARTS, (seq,)) as cur:
            rows = list(await cur.fetchall())
    return _assemble(text, rows)


def decode_sync(con: Any, seq: int) -> dict[str, Any]:
    """The snapshot at ``seq`` read with plain sqlite3 (``synapse db compact``); ValueError when damaged."""
    row = con.execute("SELECT state FROM snapshots WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        raise ValueError(f"no snapshot at seq {seq}")
    text = row[0]
    return _assemble(text, con.execute(_PARTS, (seq,)).fetchall() if text.startswith(_HEADER) else [])


def _assemble(text: str, rows: list[Any]) -> dict[str, Any]:
    """The state from a snapshot row's text and its parts (a single-row snapshot from before chunking has none)."""
    if not text.startswith(_HEADER):
        state = json.loads(text)
    else:
        header = json.loads(text)["chunked"]
        if [r[0] for r in rows] != list(range(int(header["parts"]))):
            raise ValueError(f"{len(rows)} of {header['parts']} parts present")
        blob = b"".join(bytes(r[1]) for r in rows)
        if len(blob) != header["bytes"] or zlib.crc32(blob) != header["crc"]:
            raise ValueError("checksum mismatch")
        state = json.loads(blob)
    if not isinstance(state, dict):
        raise ValueError("not an object")
    return state


def check_sync(con: Any) -> tuple[int | None, str | None]:
    """For ``synapse db check`` (plain sqlite3): the newest snapshot's seq and a problem, if any."""
    row = con.execute("SELECT seq, state FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        return None, None
    seq, text = int(row[0]), row[1]
    try:
        if not text.startswith(_HEADER):
            json.loads(text)
            return seq, None
        header = json.loads(text)["chunked"]
        rows = con.execute("SELECT part, data FROM snapshot_chunks WHERE seq = ? ORDER BY part", (seq,)).fetchall()
        blob = b"".join(bytes(r[1]) for r in rows)
        if len(rows) != header["parts"] or zlib.crc32(blob) != header["crc"]:
            return seq, f"snapshot at seq {seq} is incomplete or fails its checksum"
        json.loads(blob)
    except (ValueError, KeyError, TypeError):
        return seq, f"snapshot at seq {seq} does not parse"
    return seq, None
