"""Journal compaction: drop event rows the newest complete snapshot already covers.

Replay starts from the newest snapshot, so rows at or below its ``seq`` are
never read again by the hub; they are only history. Compaction deletes them,
except what someone may still want from the journal itself:

* a directed chat still in the snapshot's mailbox (unacked) is never dropped,
  whatever its age; neither is the event that granted a live claim (its
  current epoch and version), a task's current board entry, the newest
  ack watermark of each identity, or any event of a question still open
  in the human attention queue (``ask-human``);
* chats (broadcasts and acked mail), audit refusals (``synapse audit``),
  board progress notes and the events of answered, cancelled or expired
  questions are kept ``retain_days`` after they were journalled;
* superseded claim and lease events (grants and renewals of claims since
  released, expired or re-granted; releases; expiries), superseded board
  entries and watermarks go at once;
* any other kind (one this module does not know) is kept.

``meta.compacted_through`` records the highest snapshot ``seq`` a compaction
relied on: from then on the journal alone no longer rebuilds the state, so
replay refuses to start without a snapshot at or above it rather than
silently reusing a seq or a claim epoch.

Rows are deleted in bounded batches, each its own short write transaction on
a separate connection (the hub's writer waits at most one batch), so the hub
runs compaction in a worker thread without blocking its event loop. Freed
pages are reused by later events; ``PRAGMA incremental_vacuum`` returns them
to the file system when the database allows it (new databases do), and the
offline ``synapse db compact`` ends with a ``VACUUM``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import snapshots

#: Days chats, audit refusals and progress notes stay in the journal after a snapshot covers them.
DEFAULT_RETAIN_DAYS = 7.0
#: Rows examined per write transaction: a batch takes milliseconds, so the hub's writer barely waits.
BATCH_ROWS = 2000
#: Pages returned to the file system per ``incremental_vacuum`` step.
VACUUM_PAGES = 512
#: Kinds ``synapse audit`` lists: kept for the retention period like chats.
AUDIT_KINDS = frozenset({"auth_denied", "access_denied", "claim_denial", "release_denial"})
_AGED_KINDS = AUDIT_KINDS | {"chat", "ledger_progress"}
_CLAIM_KINDS = frozenset({"claim", "claim_updated"})
_ENDED_KINDS = frozenset({"release", "claim_expired"})
_AUTO_VACUUM_INCREMENTAL = 2


@dataclass(frozen=True, slots=True)
class Keep:
    """What the snapshot at ``seq`` still points at in the journal (built from that snapshot's state)."""

    seq: int
    mailbox: frozenset[int] = frozenset()
    claims: frozenset[tuple[str, int, int]] = frozenset()
    watermarks: frozenset[tuple[str, int]] = frozenset()
    tasks: frozenset[tuple[str, int]] = frozenset()
    #: Ids of the questions still open in the attention queue.
    questions: frozenset[str] = frozenset()


def keep_of(state: dict[str, Any]) -> Keep:
    """The :class:`Keep` of a snapshot state (``HubCore.snapshot()`` or a decoded snapshot)."""
    mailbox = state.get("mailbox") or {}
    claims = state.get("claims") or {}
    board = state.get("board") or {}
    attention = state.get("attention") or {}
    return Keep(
        seq=int(state["seq"]),
        mailbox=frozenset(int(m["seq"]) for m in mailbox.get("messages", ())),
        claims=frozenset(_claim_key(c) for c in claims.get("live", ())),
        watermarks=frozenset((str(k), int(v)) for k, v in (mailbox.get("watermarks") or {}).items()),
        tasks=frozenset((str(t["task_id"]), int(t.get("version", 0))) for t in board.get("tasks", ())),
        questions=frozenset(str(q["id"]) for q in attention.get("questions", ()) if q.get("status") == "open"),
    )


def _claim_key(claim: dict[str, Any]) -> tuple[str, int, int]:
    return str(claim["task_id"]), int(claim["epoch"]), int(claim.get("version", 0))


def droppable(seq: int, ts: float, kind: str, text: str, keep: Keep, cutoff: float) -> bool:
    """True when the row ``seq`` (at or below ``keep.seq``) may go; ``cutoff`` is the oldest ``ts`` retained."""
    if kind == "chat":
        return seq not in keep.mailbox and ts < cutoff
    if kind in _ENDED_KINDS:
        return True
    if kind in _AGED_KINDS:
        return ts < cutoff
    try:
        if kind in _CLAIM_KINDS:
            return _claim_key(json.loads(text)["claim"]) not in keep.claims
        if kind == "mailbox_watermark":
            data = json.loads(text)
            return (str(data["identity"]), int(data["through_seq"])) not in keep.watermarks
        if kind == "ledger_task":
            task = json.loads(text)["task"]
            return (str(task["task_id"]), int(task.get("version", 0))) not in keep.tasks
        if kind == "attention":
            return str(json.loads(text)["question"]["id"]) not in keep.questions and ts < cutoff
    except (ValueError, KeyError, TypeError):
        return False  # a row we cannot read is not ours to judge: keep it (db check reports it)
    return False


def droppable_seqs(rows: Iterable[tuple[int, float, str, str]], keep: Keep, cutoff: float) -> list[int]:
    """The seqs among ``rows`` (``seq, ts, kind, data``, all at or below ``keep.seq``) that may go.

    The whole decision, free of any database: the SQLite and PostgreSQL
    compactors only differ in how they read the rows and delete the result.
    """
    return [int(seq) for seq, ts, kind, text in rows if droppable(int(seq), float(ts), kind, text, keep, cutoff)]


def snapshot_whole(header: str, parts: int, size: int) -> bool:
    """True when a stored snapshot (its ``state`` text, and its parts' count and bytes) is complete."""
    if not header.startswith('{"chunked":'):
        return True
    try:
        chunked = json.loads(header)["chunked"]
        return bool(parts == chunked["parts"] and size == chunked["bytes"])
    except (ValueError, KeyError, TypeError):
        return False


@dataclass(slots=True)
class Report:
    """What one compaction did."""

    through_seq: int = 0
    examined: int = 0
    deleted: int = 0
    snapshots_dropped: int = 0
    pages_freed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    batches: int = 0

    def __str__(self) -> str:
        return (
            f"compacted through seq {self.through_seq}: {self.deleted} of {self.examined} rows dropped, "
            f"{_mib(self.bytes_before)} -> {_mib(self.bytes_after)}"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def file_bytes(path: Path) -> int:
    """The database's size on disk, WAL included."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(f"{path}{suffix}")
    return total


def connect(path: Path) -> sqlite3.Connection:
    """A connection for compaction: autocommit (each batch opens its own ``BEGIN IMMEDIATE``)."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    con.execute("PRAGMA busy_timeout=5000")
    con.execute("PRAGMA synchronous=FULL")
    return con


def stored_snapshot_seq(con: sqlite3.Connection) -> int | None:
    """The seq of the newest snapshot whose parts are all present (count and bytes), or None.

    The checksum was verified by whoever wrote or decoded it; this cheap check
    only makes sure the snapshot a compaction relies on is committed and whole.
    """
    for seq, text in con.execute("SELECT seq, state FROM snapshots ORDER BY seq DESC").fetchall():
        parts, size = con.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM snapshot_chunks WHERE seq = ?", (seq,)
        ).fetchone()
        if snapshot_whole(text, parts, size):
            return int(seq)
    return None


def compacted_through(con: sqlite3.Connection) -> int:
    """The highest snapshot seq a compaction relied on (0: never compacted)."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'compacted_through'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def compact_batch(
    con: sqlite3.Connection, keep: Keep, cutoff: float, after: int, report: Report, limit: int = BATCH_ROWS
) -> int | None:
    """Examine up to ``limit`` rows after ``after`` (through ``keep.seq``) in one write transaction.

    Returns the last seq examined, or None when nothing is left. Raises
    :class:`NotCovered` if no whole snapshot at or above ``keep.seq`` is
    stored (yet): then the rows are still needed.
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        _covered(con, keep.seq)
        rows = con.execute(
            "SELECT seq, ts, kind, data FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, keep.seq, limit),
        ).fetchall()
        if not rows:
            con.execute("COMMIT")
            return None
        gone = droppable_seqs(rows, keep, cutoff)
        con.executemany("DELETE FROM events WHERE seq = ?", [(seq,) for seq in gone])
        if keep.seq > compacted_through(con):
            con.execute("INSERT OR REPLACE INTO meta VALUES ('compacted_through', ?)", (str(keep.seq),))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    report.examined += len(rows)
    report.deleted += len(gone)
    report.batches += 1
    report.through_seq = keep.seq
    return int(rows[-1][0])


class NotCovered(RuntimeError):
    """No whole snapshot at or above the seq a compaction would rely on is stored (yet)."""


def _covered(con: sqlite3.Connection, seq: int) -> int:
    stored = stored_snapshot_seq(con)
    if stored is None or stored < seq:
        raise NotCovered(f"no complete snapshot at or above seq {seq} is stored")
    return stored


def drop_old_snapshots(con: sqlite3.Connection, seq: int) -> int:
    """Drop snapshots older than ``seq`` (the verified one a compaction relies on) and parts no header names.

    Replay only ever needs the newest whole snapshot; older ones and the parts
    of an interrupted write are dead weight. A newer snapshot than ``seq`` is
    left alone even if it is damaged (replay then falls back to ``seq``'s).
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        _covered(con, seq)
        dropped = con.execute("DELETE FROM snapshots WHERE seq < ?", (seq,)).rowcount
        con.execute("DELETE FROM snapshot_chunks WHERE seq NOT IN (SELECT seq FROM snapshots)")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(dropped)


def vacuum_step(con: sqlite3.Connection, pages: int = VACUUM_PAGES) -> int:
    """Return up to ``pages`` free pages to the file system (only with ``auto_vacuum=INCREMENTAL``)."""
    if con.execute("PRAGMA auto_vacuum").fetchone()[0] != _AUTO_VACUUM_INCREMENTAL:
        return 0
    before = con.execute("PRAGMA freelist_count").fetchone()[0]
    if not before:
        return 0
    con.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
    return int(before - con.execute("PRAGMA freelist_count").fetchone()[0])


def read_newest_sync(con: sqlite3.Connection) -> tuple[int, dict[str, Any]] | None:
    """The newest snapshot that decodes and passes its checksum, as ``(seq, state)`` (plain sqlite3)."""
    for (seq,) in con.execute("SELECT seq FROM snapshots ORDER BY seq DESC").fetchall():
        try:
            return int(seq), snapshots.decode_sync(con, int(seq))
        except (ValueError, KeyError, TypeError):
            continue
    return None


def compact_file(path: Path, retain_days: float, *, now: float | None = None) -> Report:
    """Compact a database no hub is running on, then ``VACUUM`` it (``synapse db compact``).

    Takes the hub's writer lock for the whole run, so a hub cannot start on
    the file meanwhile; raises :class:`~synapse_channel.store.DatabaseBusy`
    when a hub holds it. Returns with nothing done when no snapshot is stored.
    """
    from .store import WriterLock

    lock = WriterLock(path)
    try:
        report = Report(bytes_before=file_bytes(path))
        con = connect(path)
        try:
            found = read_newest_sync(con)
            if found is not None:
                keep = keep_of(found[1])
                cutoff = (time.time() if now is None else now) - retain_days * 86400
                report.through_seq = keep.seq
                report.snapshots_dropped = drop_old_snapshots(con, keep.seq)
                after: int | None = 0
                while after is not None:
                    after = compact_batch(con, keep, cutoff, after, report)
            if con.execute("PRAGMA auto_vacuum").fetchone()[0] != _AUTO_VACUUM_INCREMENTAL:
                con.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect with the VACUUM below
            free = con.execute("PRAGMA freelist_count").fetchone()[0]
            con.execute("VACUUM")
            report.pages_freed = int(free)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            con.close()
        report.bytes_after = file_bytes(path)
        return report
    finally:
        lock.release()
