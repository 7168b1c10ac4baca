"""``search_request``: check the request and who asks; the hub runs the query.

The core does no I/O, so it only validates the fields (a bad one is an
``error`` frame with a code, like every verb) and hands the hub a
:class:`SearchQuery` in ``Outcome.queries``. The hub runs it on its store's
search backend (SQLite FTS5: :mod:`synapse_channel.search`; PostgreSQL:
:mod:`synapse_channel.pgsearch`) and sends the ``search_results`` frame, or
an ``error`` for a query the backend refuses. Both backends feed their hits,
newest first, to one :class:`Page`, so visibility is decided per hit by the
same code on either store: the history rule (:func:`access.may_see_as`), so
search shows nothing history would not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol import ProtocolError, base_identity, number_field, target_parts
from . import access, paging

if TYPE_CHECKING:
    from ..protocol import Command
    from .hubcore import HubCore
    from .outcome import Outcome
    from .roster import Conn

LIMIT_DEFAULT = 20
LIMIT_MAX = 200
#: Longest query accepted (characters).
QUERY_MAX_CHARS = 1000
NAME_MAX_CHARS = 512
#: Hits a query examines at most (hits it may not see count too); past it the reply says ``has_more``.
SCAN_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who asks, as plain data: the worker thread decides visibility from it."""

    name: str | None
    roles: tuple[str, ...] = ()
    admin: bool = False


@dataclass(slots=True)
class SearchQuery:
    """A validated ``search_request``; ``reply`` is the ``search_results`` envelope to fill."""

    conn_id: int
    viewer: Viewer
    reply: dict[str, Any]
    error: Callable[[str, str], dict[str, Any]]
    query: str
    budget: int
    sender: str | None = None
    target: str | None = None
    since: float | None = None
    after: int | None = None
    limit: int = LIMIT_DEFAULT


def result_item(seq: int, ts: float, kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """One result item from an event row (None for a shape we do not know)."""
    if kind == "chat":
        frame = data.get("frame") or {}
        return {
            "seq": seq,
            "ts": ts,
            "kind": "chat",
            "from": frame.get("sender", ""),
            "to": frame.get("target", ""),
            "text": frame.get("payload", ""),
            "snippet": "",
            "msg_id": frame.get("msg_id", 0),
        }
    if kind == "ledger_task":
        task = data.get("task") or {}
        return {
            "seq": seq,
            "ts": ts,
            "kind": "task",
            "from": task.get("created_by") or "",
            "to": "board",
            "text": f"{task.get('title', '')}\n{task.get('description', '')}".strip(),
            "snippet": "",
            "task_id": task.get("task_id", ""),
            "status": task.get("status", ""),
            "version": task.get("version", 0),
        }
    if kind == "ledger_progress":
        note = data.get("note") or {}
        return {
            "seq": seq,
            "ts": ts,
            "kind": "note",
            "from": note.get("author") or "",
            "to": "board",
            "text": note.get("text", ""),
            "snippet": "",
            "task_id": note.get("task_id", ""),
        }
    return None


def visible(q: SearchQuery, kind: str, data: dict[str, Any]) -> bool:
    """Tasks and notes are on the board (everyone reads it); a chat follows the history rule."""
    if kind != "chat":
        return True
    frame = data.get("frame")
    return isinstance(frame, dict) and access.may_see_as(q.viewer.name, q.viewer.roles, q.viewer.admin, frame)


def passes_filters(q: SearchQuery, item: dict[str, Any]) -> bool:
    """The optional ``from``/``to`` filters (a base identity or a target part matches too)."""
    if q.sender is not None:
        sender = str(item["from"])
        if sender != q.sender and base_identity(sender) != q.sender:
            return False
    if q.target is not None:
        target = str(item["to"])
        if target != q.target and q.target not in target_parts(target):
            return False
    return True


class Page:
    """The results of one query, filled hit by hit (newest first) by a store's search backend.

    Both stores use it, so what a caller may see, the filters, the scan
    budget (:data:`SCAN_ROWS`), ``limit`` and the frame's byte budget are
    applied by one piece of code whatever the store.
    """

    def __init__(self, q: SearchQuery) -> None:
        self.q = q
        self.items: list[dict[str, Any]] = []
        self.examined = 0
        #: The last seq examined (the cursor of a cut page); hits are read below it.
        self.last = q.after if q.after is not None else 2**62
        self.more = False

    def add(self, seq: int, ts: float, kind: str, text: str) -> bool:
        """Take one hit (an event row); False once the page is full (stop reading)."""
        self.examined += 1
        if len(self.items) >= self.q.limit or self.examined > SCAN_ROWS:
            self.more = True
            return False
        self.last = seq
        try:
            data = json.loads(text)
        except ValueError:
            return True
        item = result_item(seq, ts, kind, data) if isinstance(data, dict) else None
        if item is not None and visible(self.q, kind, data) and passes_filters(self.q, item):
            self.items.append(item)
        return True

    def snippets(self, by_seq: dict[int, str | None]) -> None:
        """Set each item's ``snippet`` (made by the backend for the chosen hits only)."""
        for item in self.items:
            item["snippet"] = by_seq.get(item["seq"]) or ""

    def reply(self) -> dict[str, Any]:
        """The ``search_results`` frame: the items that fit, ``has_more`` and ``cursor`` when cut."""
        reply = dict(self.q.reply)
        page = paging.fit(self.items, paging.room_for({**reply, "results": []}, self.q.budget))
        more, last = self.more, self.last
        if len(page) < len(self.items):
            more, last = True, int(page[-1]["seq"])
        reply["results"] = page
        reply["has_more"] = more
        reply["cursor"] = last if more else None
        return reply


def _name(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > NAME_MAX_CHARS:
        raise ProtocolError("BAD_FIELD", f"field '{key}' must be a non-empty name")
    return value


def _int(raw: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError("BAD_FIELD", f"field '{key}' must be an integer from {low} to {high}")
    return value


def parse(core: HubCore, conn: Conn, raw: dict[str, Any], now: float) -> SearchQuery:
    """A :class:`SearchQuery` from a request's fields, or :class:`ProtocolError` (``BAD_FIELD``)."""
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ProtocolError("BAD_FIELD", "field 'query' must be a non-empty string (FTS5 syntax)")
    if len(query) > QUERY_MAX_CHARS:
        raise ProtocolError("BAD_FIELD", f"field 'query' is over {QUERY_MAX_CHARS} characters")
    since = number_field(raw, "since", 0.0) if raw.get("since") is not None else None
    limit = _int(raw, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX)
    after = _int(raw, "after", None, 1, 2**62)
    asker = conn.name or "self"

    def error(code: str, message: str) -> dict[str, Any]:
        return core.frame("error", asker, message, now, code=code, request_type="search_request")

    reply = core.frame(
        "search_results",
        asker,
        "Search results",
        now,
        query=query,
        request_id=raw.get("request_id") if isinstance(raw.get("request_id"), str | int) else None,
    )
    return SearchQuery(
        conn_id=conn.conn_id,
        viewer=Viewer(conn.name, conn.roles, access.is_admin(conn)),
        reply=reply,
        error=error,
        query=query,
        budget=core.max_frame_bytes,
        sender=_name(raw, "from"),
        target=_name(raw, "to"),
        since=since,
        after=after,
        limit=limit or LIMIT_DEFAULT,
    )


def handle(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``search_request``: validated here, run by the hub off the loop; a bad field is an ``error`` naming the verb."""
    try:
        out.queries.append(parse(core, conn, cmd.raw, now))
    except ProtocolError as exc:
        core.error(out, conn, str(exc), now, code=exc.code, request_type="search_request")
