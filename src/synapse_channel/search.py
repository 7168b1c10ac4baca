"""Full-text search over chats, board tasks and progress notes (SQLite FTS5).

The index lives in the hub's database, next to the journal it indexes:

* ``search_source`` is a view over ``events`` giving each indexable row
  (kinds ``chat``, ``ledger_task``, ``ledger_progress``) its text, ``body``;
* ``search_index`` is an FTS5 table with **external content** (the view),
  keyed by the event ``seq`` (its rowid);
* ``meta.search_indexed_through`` (the watermark) is the seq through which
  every indexable row has been added: the background indexer
  (:mod:`synapse_channel.hub.indexer`, :func:`index_batch`) adds the rows
  above it in bounded batches, each a short transaction that also moves the
  watermark, so the group commit that journals an event does no indexing;
* one trigger on ``events`` removes an indexed row's text when the row is
  deleted (compaction, the quarantine of a bad tail), inside the deleting
  transaction, so no index entry outlives its row whichever code deleted it.
  It fires only for ``seq <= watermark``: an FTS5 external-content delete of
  a row that was never added would corrupt the index.

Why external content keyed by seq: the text is already in the journal, so the
index stores only tokens (no second copy of every chat), and every hit is
joined back to its ``events`` row: a search can never return a message the
journal no longer has. The text is defined once, in SQL, so the indexer adds
exactly what the trigger removes (FTS5 external-content deletes must name the
same text). The index is not durable the way events are (its batches commit
with ``synchronous=NORMAL``): a crash can lose the last batches, together
with the watermark they moved, and the next start indexes those rows again.

On start :func:`ensure` creates what is missing and empties an index that is
missing, damaged or out of step with the journal (watermark 0: the indexer
then indexes the whole journal in the background).

Queries (:class:`Searcher`) run on a separate read-only connection in one
worker thread: WAL lets them read while the hub's writer commits, the event
loop never waits on them, and each is bounded by a row budget
(:data:`~.core.searching.SCAN_ROWS`) and a time budget (:data:`QUERY_SECONDS`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .core.searching import Page, SearchQuery

log = logging.getLogger("synapse_channel.store")

#: Bumped when the view, table or trigger change: :func:`ensure` then recreates them (empty, watermark 0).
SEARCH_VERSION = "3"
#: The version whose index an insert trigger kept complete: upgraded in place, without reindexing.
TRIGGER_VERSION = "2"
#: ``meta`` key: every indexable event with a seq at or below it is in the index.
WATERMARK = "search_indexed_through"
INDEXED_KINDS = ("chat", "ledger_task", "ledger_progress")
#: Result ``kind`` for each indexed event kind.
RESULT_KIND = {"chat": "chat", "ledger_task": "task", "ledger_progress": "note"}
#: Wall-clock seconds one query may run before SQLite interrupts it (``error`` SEARCH_TIMEOUT).
QUERY_SECONDS = 2.0
#: Journal rows (of any kind) one indexing batch covers at most: it bounds how long it holds the writer.
BATCH_ROWS = 1000


def _body(row: str) -> str:
    """The SQL text of an indexable event row (``row`` is ``old`` or empty for the view).

    Guarded by ``json_valid`` so a corrupted row can still be deleted (quarantine).
    """
    d = f"{row}.data" if row else "data"
    k = f"{row}.kind" if row else "kind"
    return (
        f"CASE WHEN NOT json_valid({d}) THEN '' "
        f"WHEN {k} = 'chat' THEN coalesce(json_extract({d}, '$.frame.payload'), '') "
        f"WHEN {k} = 'ledger_task' THEN coalesce(json_extract({d}, '$.task.task_id'), '') || char(10) || "
        f"coalesce(json_extract({d}, '$.task.title'), '') || char(10) || "
        f"coalesce(json_extract({d}, '$.task.description'), '') "
        f"ELSE coalesce(json_extract({d}, '$.note.task_id'), '') || char(10) || "
        f"coalesce(json_extract({d}, '$.note.text'), '') END"
    )


_KINDS = ", ".join(f"'{k}'" for k in INDEXED_KINDS)
_MARK = f"(SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{WATERMARK}')"
#: One statement each (``executescript`` would commit the caller's transaction).
SCHEMA = (
    f"CREATE VIEW IF NOT EXISTS search_source AS SELECT seq, {_body('')} AS body FROM events WHERE kind IN ({_KINDS})",
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_index USING fts5("
    "body, content='search_source', content_rowid='seq', tokenize='unicode61 remove_diacritics 2', "
    "prefix='2 3')",
    f"CREATE TRIGGER IF NOT EXISTS search_events_ad AFTER DELETE ON events "
    f"WHEN old.kind IN ({_KINDS}) AND old.seq <= coalesce({_MARK}, 0) BEGIN "
    f"INSERT INTO search_index(search_index, rowid, body) VALUES ('delete', old.seq, {_body('old')}); END",
)
DROP = (
    "DROP TRIGGER IF EXISTS search_events_ai",
    "DROP TRIGGER IF EXISTS search_events_ad",
    "DROP TABLE IF EXISTS search_index",
    "DROP VIEW IF EXISTS search_source",
)


def _one(con: sqlite3.Connection, sql: str, *args: Any) -> int | None:
    row = con.execute(sql, args).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def watermark(con: sqlite3.Connection) -> int:
    """The stored watermark (0 when none is stored)."""
    return _one(con, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?", WATERMARK) or 0


def _set_watermark(con: sqlite3.Connection, seq: int) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (WATERMARK, str(seq)))


def _recreate(con: sqlite3.Connection) -> None:
    """An empty index at the current version, watermark 0: the indexer indexes the journal again."""
    for statement in (*DROP, *SCHEMA):
        con.execute(statement)
    _set_watermark(con, 0)
    con.execute("INSERT OR REPLACE INTO meta VALUES ('search_version', ?)", (SEARCH_VERSION,))


def ensure(con: sqlite3.Connection) -> str:
    """Create the index if missing and check it against the journal; returns what was done.

    Runs before the hub journals anything. ``recreated``: the index was
    missing (a database from before it), of another version, or out of step
    with its watermark and the journal (emptied, rows deleted behind its
    back, a watermark ahead of the journal after a restore): it is empty now
    and the indexer fills it in the background. ``upgraded``: the index of
    the trigger-kept version was complete, so it is kept and the watermark
    set to the journal's end. ``ok``: nothing to do (the indexer still
    catches up from the watermark). The caller commits.
    """
    version = con.execute("SELECT value FROM meta WHERE key = 'search_version'").fetchone()
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE name LIKE 'search_%'")}
    core = {"search_source", "search_index", "search_events_ad"}
    if version is not None and version[0] == TRIGGER_VERSION and core | {"search_events_ai"} <= names:
        for statement in (*DROP[:2], *SCHEMA):
            con.execute(statement)
        _set_watermark(con, _one(con, "SELECT MAX(seq) FROM events") or 0)
        con.execute("INSERT OR REPLACE INTO meta VALUES ('search_version', ?)", (SEARCH_VERSION,))
        done = "upgraded"
    elif version is None or version[0] != SEARCH_VERSION or not core <= names or "search_events_ai" in names:
        _recreate(con)
        return "recreated"
    else:
        done = "ok"
    mark = _one(con, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?", WATERMARK)
    top = max(_one(con, "SELECT MAX(seq) FROM events") or 0, _one(con, "SELECT MAX(seq) FROM quarantine") or 0)
    indexed = _one(con, "SELECT MAX(id) FROM search_index_docsize") or 0
    newest = _one(con, f"SELECT MAX(seq) FROM events WHERE kind IN ({_KINDS}) AND seq <= ?", mark or 0) or 0
    if mark is None or mark > top or indexed != newest:
        _recreate(con)
        return "recreated"
    return done


def index_batch(con: sqlite3.Connection, rows: int = BATCH_ROWS) -> tuple[int, int, int]:
    """Index the journal rows above the watermark, at most ``rows`` of them, in one short transaction.

    Returns ``(watermark, rows examined, rows indexed)``. The rows are read
    and the watermark moved under the write lock, so a compaction cannot
    delete a row between the two (its trigger would miss an entry added
    after). ``con`` is in autocommit mode (``isolation_level=None``).
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        mark = watermark(con)
        span = con.execute(
            "SELECT COUNT(*), MAX(seq) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?)", (mark, rows)
        ).fetchone()
        examined, hi = int(span[0]), span[1]
        added = 0
        if hi is not None:
            added = con.execute(
                "INSERT INTO search_index(rowid, body) SELECT seq, body FROM search_source WHERE seq > ? AND seq <= ?",
                (mark, hi),
            ).rowcount
            _set_watermark(con, int(hi))
            mark = int(hi)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return mark, examined, added


class SearchError(Exception):
    """A query SQLite refused (bad FTS syntax) or that ran out of time; ``code`` goes on the ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


#: The hits, newest first; no snippet here: it costs a re-read of the text, so it is only made for the page.
SELECT = """
SELECT e.seq, e.ts, e.kind, e.data
FROM search_index JOIN events e ON e.seq = search_index.rowid
WHERE search_index MATCH ? AND search_index.rowid < ? AND e.ts >= ?
ORDER BY search_index.rowid DESC
"""
#: Snippets of the chosen hits only: the seq range bounds the index scan; the IN list, kept out of the
#: WHERE clause (there SQLite would re-run the match once per listed rowid), limits the snippets made.
SNIPPETS = """
SELECT rowid, CASE WHEN rowid IN ({}) THEN snippet(search_index, 0, '[', ']', '...', 16) END FROM search_index
WHERE search_index MATCH ? AND rowid BETWEEN ? AND ?
"""


def run(con: sqlite3.Connection, q: SearchQuery) -> dict[str, Any]:
    """Run ``q`` on ``con`` (a worker thread) and return the filled ``search_results`` frame.

    Newest first. Reads at most :data:`~.core.searching.SCAN_ROWS` hits: a page cut by that
    budget, by ``limit`` or by the frame's bytes says ``has_more`` with
    ``cursor`` (the last seq examined): ask again with ``after`` set to it.
    """
    deadline = time.monotonic() + QUERY_SECONDS
    con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    page = Page(q)
    try:
        cur = con.execute(SELECT, (q.query, page.last, q.since if q.since is not None else float("-inf")))
        while (rows := cur.fetchmany(64)) and all(page.add(*row) for row in rows):
            pass
        cur.close()
        if page.items:
            seqs = [int(i["seq"]) for i in page.items]
            sql = SNIPPETS.format(",".join("?" * len(seqs)))
            page.snippets(dict(con.execute(sql, (*seqs, q.query, seqs[-1], seqs[0])).fetchall()))
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise SearchError("SEARCH_TIMEOUT", f"search took over {QUERY_SECONDS:g}s; narrow the query") from None
        raise SearchError("BAD_QUERY", f"bad search query: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise SearchError("SEARCH_FAILED", f"search failed: {exc}") from None
    finally:
        con.set_progress_handler(None, 0)
    return page.reply()


class Searcher:
    """A read-only connection to the hub's database, used by one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synapse-search")
        self._con: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=5.0)
            con.execute("PRAGMA busy_timeout=5000")
            self._con = con
        return self._con

    def _run(self, q: SearchQuery) -> dict[str, Any]:
        try:
            return run(self._connect(), q)
        except SearchError as exc:
            return q.error(exc.code, str(exc))

    async def search(self, q: SearchQuery) -> dict[str, Any]:
        """The reply frame for ``q`` (results or an ``error``), computed in the worker thread."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, q)

    async def close(self) -> None:
        """Wait for the query in flight, then close the connection (in its thread)."""
        import asyncio

        def shut() -> None:
            if self._con is not None:
                self._con.close()
                self._con = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)
