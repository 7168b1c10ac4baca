"""``search_request``: check the request and who asks; the hub runs the query.

The core does no I/O, so it only validates the fields (a bad one is an
``error`` frame with a code, like every verb) and hands the hub a
:class:`SearchQuery` in ``Outcome.queries``. The hub runs it on a read-only
connection in a worker thread (:mod:`synapse_channel.search`) and sends the
``search_results`` frame, or an ``error`` for a query SQLite refuses.
Visibility is decided per hit with the history rule
(:func:`access.may_see_as`), so search shows nothing history would not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol import ProtocolError, number_field
from . import access

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
