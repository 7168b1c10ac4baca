"""Journal compaction on PostgreSQL: the rules of :mod:`.compaction`, asyncpg I/O, fenced by the epoch.

Which rows go is decided by :func:`.compaction.droppable_seqs` exactly as on
SQLite; this module only reads the rows and deletes the result. Each batch is
one short transaction on the compactor's own connection, and ends with the
same epoch check every commit of the leader runs (``pgstore.FENCE``): a hub
that was deposed meanwhile finds another epoch, the batch rolls back and
nothing is deleted (:class:`~.pgstore.Fenced`). The fence comes last so the
leader row is locked only for the commit, not for the whole batch.

The deleted rows' search entries (:mod:`.pgsearch`) go in the same
transaction: a search never returns them anyway (hits are joined back to
``events``), and the side table does not keep growing.

``meta.compacted_through`` is raised in the same transaction, so replay and
takeover (:meth:`.pgstore.PostgresJournal.replay`) refuse a journal whose
snapshot at or above it is gone. PostgreSQL reuses the space of deleted rows
after (auto)vacuum; the table file itself does not shrink without
``VACUUM FULL``, but it stops growing under steady churn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .compaction import BATCH_ROWS, Keep, NotCovered, Report, droppable_seqs, snapshot_whole
from .pgstore import FENCE, Fenced

if TYPE_CHECKING:
    import asyncpg

#: Raise ``compacted_through``, never lower it.
_RAISE_MARK = (
    "INSERT INTO meta VALUES ('compacted_through', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
    "WHERE meta.value::bigint < EXCLUDED.value::bigint"
)


async def stored_snapshot_seq(con: asyncpg.Connection) -> int | None:
    """The seq of the newest snapshot whose parts are all present (count and bytes), or None."""
    rows = await con.fetch(
        "SELECT s.seq, s.state, COUNT(c.part) AS parts, COALESCE(SUM(octet_length(c.data)), 0) AS size "
        "FROM snapshots s LEFT JOIN snapshot_chunks c ON c.seq = s.seq GROUP BY s.seq, s.state ORDER BY s.seq DESC"
    )
    for row in rows:
        if snapshot_whole(str(row["state"]), int(row["parts"]), int(row["size"])):
            return int(row["seq"])
    return None


async def compacted_through(con: asyncpg.Connection) -> int:
    """The highest snapshot seq a compaction relied on (0: never compacted)."""
    value = await con.fetchval("SELECT value FROM meta WHERE key = 'compacted_through'")
    return int(value) if value is not None else 0


async def compact_batch(
    con: asyncpg.Connection,
    epoch: int,
    keep: Keep,
    cutoff: float,
    after: int,
    report: Report,
    limit: int = BATCH_ROWS,
) -> int | None:
    """Examine up to ``limit`` rows after ``after`` (through ``keep.seq``) in one fenced transaction.

    Returns the last seq examined, or None when nothing is left. Raises
    :class:`~.compaction.NotCovered` when no whole snapshot at or above
    ``keep.seq`` is stored, and :class:`~.pgstore.Fenced` when ``epoch`` is no
    longer the leader's (then nothing of the batch is deleted).
    """
    async with con.transaction():
        stored = await stored_snapshot_seq(con)
        if stored is None or stored < keep.seq:
            raise NotCovered(f"no complete snapshot at or above seq {keep.seq} is stored")
        rows = await con.fetch(
            "SELECT seq, ts, kind, data FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            after,
            keep.seq,
            limit,
        )
        if not rows:
            return None
        gone = droppable_seqs([(r["seq"], r["ts"], r["kind"], r["data"]) for r in rows], keep, cutoff)
        if gone:
            await con.execute("DELETE FROM events WHERE seq = ANY($1::bigint[])", gone)
            await con.execute("DELETE FROM search_docs WHERE seq = ANY($1::bigint[])", gone)
        await con.execute(_RAISE_MARK, str(keep.seq))
        if await con.execute(FENCE, epoch, keep.seq) != "UPDATE 1":
            raise Fenced(f"fenced: the leader epoch is no longer {epoch}; the compaction batch rolled back")
    report.examined += len(rows)
    report.deleted += len(gone)
    report.batches += 1
    report.through_seq = keep.seq
    return int(rows[-1]["seq"])


async def table_bytes(con: asyncpg.Connection) -> int:
    """The journal's size on disk: the events table with its index and TOAST."""
    return int(await con.fetchval("SELECT pg_total_relation_size('events')") or 0)
