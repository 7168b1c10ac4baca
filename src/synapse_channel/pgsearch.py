"""Full-text search on PostgreSQL: the documented FTS5 query subset over a ``tsvector`` side table.

Storage: ``search_docs (seq, tsv)`` with a GIN index on ``tsv``, filled by the
leader's background indexer behind the commits (:mod:`.hub.indexer`, as on
SQLite), with the watermark ``meta.search_indexed_through`` moved in the same
transaction as each batch. Chosen over a generated column on ``events``
because that would tokenize and update the GIN index inside every group
commit (the ack path), and a malformed row would fail the commit; here the
commit is untouched and a bad row is indexed as empty text. Every hit is
joined back to ``events``, so a row compaction deleted is never returned;
compaction also deletes its ``search_docs`` rows in its own transaction.

Tokens: the text and the query are tokenized here, in Python, the way FTS5's
``unicode61 remove_diacritics 2`` tokenizer does (runs of letters, digits and
private-use characters; case folded; diacritics removed), and handed to
PostgreSQL as ``tsvector``/``tsquery`` literals. PostgreSQL's own parser
(even with the ``simple`` configuration) splits differently: ``foo-bar`` and
e-mail addresses or URLs become extra compound tokens, and non-ASCII letters
depend on the cluster's locale; doing it here makes a word match the same
whole tokens on both stores.

Queries: :func:`to_tsquery` translates words, ``pre*`` prefixes,
``"phrases"`` (``<->``), ``AND``/``OR``/``NOT`` and parentheses, with FTS5's
precedence (NOT, then AND, then OR; implicit AND between terms); anything
else FTS5 accepts (``col:``, ``NEAR()``, ``^``, ``+``) is ``BAD_QUERY``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from .core.searching import Page, SearchQuery
from .search import INDEXED_KINDS, QUERY_SECONDS, WATERMARK, SearchError

if TYPE_CHECKING:
    import asyncpg

#: Bumped when tokenizing changes: the leader then empties ``search_docs`` and indexes the journal again.
PG_SEARCH_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS search_docs (seq BIGINT PRIMARY KEY, tsv TSVECTOR NOT NULL);
CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING GIN (tsv);
"""
#: tsvector limits: positions above 16383 are not stored, lexemes must be under 2 KiB.
MAX_POSITION = 16383
MAX_LEXEME_BYTES = 2000
#: A tsvector is at most 1 MiB; the literal is cut well below (a longer text is indexed by its start).
MAX_LITERAL_CHARS = 512 * 1024


def _is_token_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LN" or cat == "Co"


def _fold(token: str) -> str:
    """Case folded, diacritics removed (``remove_diacritics 2``)."""
    decomposed = unicodedata.normalize("NFKD", token.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` as FTS5's unicode61 tokenizer yields them (approximately; see the module doc)."""
    out: list[str] = []
    run: list[str] = []
    for ch in text:
        if _is_token_char(ch):
            run.append(ch)
        elif run:
            out.append(_fold("".join(run)))
            run = []
    if run:
        out.append(_fold("".join(run)))
    return [t for t in out if t and len(t.encode()) <= MAX_LEXEME_BYTES]


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(text: str) -> str:
    """``text`` as a tsvector literal with positions (phrases need them)."""
    positions: dict[str, list[int]] = {}
    for i, tok in enumerate(tokens(text), start=1):
        if i > MAX_POSITION:
            break
        positions.setdefault(tok, []).append(i)
    parts: list[str] = []
    size = 0
    for t, p in positions.items():
        part = f"{_lexeme(t)}:{','.join(map(str, p[:256]))}"
        size += len(part.encode()) + 1
        if size > MAX_LITERAL_CHARS:
            break
        parts.append(part)
    return " ".join(parts)


def body_text(kind: str, data: str) -> str:
    """The searchable text of an event row: the same fields the SQLite ``search_source`` view reads."""
    try:
        d = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(d, dict):
        return ""

    def field(obj: object, key: str) -> str:
        value = obj.get(key) if isinstance(obj, dict) else None
        return value if isinstance(value, str) else ""

    if kind == "chat":
        return field(d.get("frame"), "payload")
    if kind == "ledger_task":
        task = d.get("task")
        return "\n".join(field(task, k) for k in ("task_id", "title", "description"))
    note = d.get("note")
    return "\n".join(field(note, k) for k in ("task_id", "text"))


# ---------------------------------------------------------------------- the query language

_TOKEN = re.compile(r'\s+|"(?:[^"]|"")*"|"|[()*]|[A-Za-z0-9_\x1a\u0080-\U0010ffff]+|.', re.S)
_OPS = {"AND", "OR", "NOT"}


def _bad(near: str) -> SearchError:
    return SearchError("BAD_QUERY", f'bad search query: syntax error near "{near}"')


class _Parser:
    """Recursive descent over FTS5's grammar subset; builds a tsquery string (None: matches nothing)."""

    def __init__(self, query: str) -> None:
        self.toks: list[str] = []
        for m in _TOKEN.finditer(query):
            tok = m.group(0)
            if tok.isspace():
                continue
            if tok == '"':
                raise SearchError("BAD_QUERY", "bad search query: unterminated string")
            self.toks.append(tok)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> str | None:
        if not self.toks:
            raise _bad("")
        expr = self.or_expr()
        if self.peek() is not None:
            raise _bad(self.peek() or "")
        return expr

    def or_expr(self) -> str | None:
        parts = [self.and_expr()]
        while self.peek() == "OR":
            self.take()
            parts.append(self.and_expr())
        kept = [p for p in parts if p is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else "(" + " | ".join(kept) + ")"

    def and_expr(self) -> str | None:
        expr = self.not_expr()
        nothing = expr is None
        parts = [expr]
        while (tok := self.peek()) is not None and tok not in ("OR", ")"):
            if tok == "AND":
                self.take()
            part = self.not_expr()
            nothing = nothing or part is None
            parts.append(part)
        if nothing:
            return None
        kept = [p for p in parts if p is not None]
        return kept[0] if len(kept) == 1 else "(" + " & ".join(kept) + ")"

    def not_expr(self) -> str | None:
        expr = self.term()
        while self.peek() == "NOT":
            self.take()
            right = self.term()
            if expr is not None and right is not None:
                expr = f"({expr} & !{right})"
        return expr

    def term(self) -> str | None:
        tok = self.peek()
        if tok is None:
            raise _bad("")
        if tok == "(":
            self.take()
            expr = self.or_expr()
            if self.peek() != ")":
                raise _bad(self.peek() or "")
            self.take()
            return expr
        if tok in _OPS or tok in (")", "*") or not (tok[0] == '"' or _is_word(tok)):
            raise _bad(tok)
        self.take()
        if tok == "NEAR" and self.peek() == "(":
            raise SearchError("BAD_QUERY", "bad search query: NEAR() is not supported on a PostgreSQL hub")
        text = tok[1:-1].replace('""', '"') if tok[0] == '"' else tok
        prefix = self.peek() == "*"
        if prefix:
            self.take()
        words = tokens(text)
        if not words:
            return None  # FTS5: a phrase with no tokens matches nothing
        lexemes = [_lexeme(w) for w in words]
        if prefix:
            lexemes[-1] += ":*"
        return lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")"


def _is_word(tok: str) -> bool:
    return all(c.isalnum() or c in "_\x1a" or ord(c) >= 0x80 for c in tok)


def to_tsquery(query: str) -> str | None:
    """The tsquery text for an FTS5-syntax ``query`` (None: it can match nothing), or ``BAD_QUERY``."""
    return _Parser(query).parse()


# ---------------------------------------------------------------------- indexing and querying


async def ensure(con: asyncpg.Connection) -> None:
    """Create the side table and index; empty them when the tokenizer version changed."""
    async with con.transaction():
        await con.execute(SCHEMA)
        stored = await con.fetchval("SELECT value FROM meta WHERE key = 'pg_search_version'")
        if stored != PG_SEARCH_VERSION:
            await con.execute("TRUNCATE search_docs")
            await con.execute(
                "INSERT INTO meta VALUES ($1, '0'), ('pg_search_version', $2) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                WATERMARK,
                PG_SEARCH_VERSION,
            )


async def watermark(con: asyncpg.Connection) -> int:
    """The stored watermark (0 when none is stored)."""
    value = await con.fetchval("SELECT value FROM meta WHERE key = $1", WATERMARK)
    return int(value) if value is not None else 0


_KINDS = list(INDEXED_KINDS)


async def index_batch(con: asyncpg.Connection, rows: int) -> tuple[int, int, int]:
    """Index the journal rows above the watermark (at most ``rows``) in one transaction; as :func:`.search.index_batch`.

    The rows read are locked ``FOR KEY SHARE``, so a compaction deleting one
    waits for this batch (and then deletes its ``search_docs`` row too).
    """
    async with con.transaction():
        mark = await watermark(con)
        found = await con.fetch(
            "SELECT seq, kind, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2 FOR KEY SHARE", mark, rows
        )
        if not found:
            return mark, 0, 0
        docs = [
            (int(r["seq"]), tsvector_literal(body_text(r["kind"], r["data"]))) for r in found if r["kind"] in _KINDS
        ]
        if docs:
            seqs, vectors = zip(*docs, strict=True)
            await con.execute(
                "INSERT INTO search_docs SELECT * FROM unnest($1::bigint[], $2::tsvector[]) "
                "ON CONFLICT (seq) DO NOTHING",
                list(seqs),
                list(vectors),
            )
        through = int(found[-1]["seq"])
        await con.execute(
            "INSERT INTO meta VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
            "WHERE meta.value::bigint < EXCLUDED.value::bigint",
            WATERMARK,
            str(through),
        )
    return through, len(found), len(docs)


#: The hits, newest first, joined back to their rows (a compacted row is never returned). Read in chunks
#: of growing size (:data:`CHUNKS`), each a plain ``LIMIT`` query rather than one cursor: the planner then
#: picks per chunk between walking the seq index backwards (a common word) and the GIN index (a rare one).
SELECT = """
SELECT e.seq, e.ts, e.kind, e.data FROM search_docs d JOIN events e ON e.seq = d.seq
WHERE d.tsv @@ $1::tsquery AND d.seq < $2 AND e.ts >= $3 ORDER BY d.seq DESC LIMIT $4
"""
CHUNKS = (64, 256, 1024, 4096)
HEADLINE = "StartSel=[, StopSel=], MaxWords=16, MinWords=6, ShortWord=0, FragmentDelimiter=..., MaxFragments=1"


def _headline_query(tsquery: str) -> str:
    """A plain-words tsquery for ``ts_headline`` (its parser, not ours, splits the text)."""
    return " | ".join(re.findall(r"'(?:[^']|'')*'(?::\*)?", tsquery)) or tsquery


class PgSearcher:
    """Runs ``search_request`` queries on its own connection to the leader's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._con: asyncpg.Connection | None = None

    async def search(self, q: SearchQuery) -> dict[str, Any]:
        """The reply frame for ``q`` (results or an ``error``)."""
        try:
            return await self._run(q)
        except SearchError as exc:
            return q.error(exc.code, str(exc))

    async def _run(self, q: SearchQuery) -> dict[str, Any]:
        import asyncpg

        from .pgstore import connect

        tsquery = to_tsquery(q.query)
        page = Page(q)
        if tsquery is None:
            return page.reply()
        if self._con is None or self._con.is_closed():
            self._con = await connect(self.url)
        con = self._con
        since = q.since if q.since is not None else float("-inf")
        try:
            async with con.transaction(readonly=True):
                await con.execute(f"SET LOCAL statement_timeout = {int(QUERY_SECONDS * 1000)}")
                bound, chunk = page.last, 0
                while True:
                    size = CHUNKS[min(chunk, len(CHUNKS) - 1)]
                    chunk += 1
                    rows = await con.fetch(SELECT, tsquery, bound, since, size)
                    if not all(page.add(r["seq"], r["ts"], r["kind"], r["data"]) for r in rows) or len(rows) < size:
                        break
                    bound = int(rows[-1]["seq"])
                if page.items:
                    await self._snippets(con, page, tsquery)
        except asyncpg.QueryCanceledError:
            raise SearchError("SEARCH_TIMEOUT", f"search took over {QUERY_SECONDS:g}s; narrow the query") from None
        except (asyncpg.PostgresError, OSError) as exc:
            raise SearchError("SEARCH_FAILED", f"search failed: {exc}") from None
        return page.reply()

    async def _snippets(self, con: asyncpg.Connection, page: Page, tsquery: str) -> None:
        """The page's snippets (``ts_headline``); in a savepoint: a failure leaves them empty, not the search."""
        import asyncpg

        texts = [_item_text(i) for i in page.items]
        try:
            async with con.transaction():
                made = await con.fetch(
                    "SELECT ts_headline('simple', t, to_tsquery('simple', $2), $3) AS h "
                    "FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
                    texts,
                    _headline_query(tsquery),
                    HEADLINE,
                )
        except asyncpg.QueryCanceledError:
            raise
        except asyncpg.PostgresError:
            return
        page.snippets({int(i["seq"]): r["h"] for i, r in zip(page.items, made, strict=True)})

    async def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            try:
                await con.close(timeout=2.0)
            except Exception:
                con.terminate()


def _item_text(item: dict[str, Any]) -> str:
    """The text a snippet is cut from (a task: its id, title and description, as indexed)."""
    if item["kind"] == "task":
        return f"{item.get('task_id', '')}\n{item['text']}"
    if item["kind"] == "note":
        return f"{item.get('task_id', '')}\n{item['text']}"
    return str(item["text"])
