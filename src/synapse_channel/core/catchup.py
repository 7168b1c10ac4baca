"""Catch-up verbs: recent history, resume since a msg_id, an identity's inbox page,
and the delivery state of one directed message.

All are read-only: they answer from the core's projections and journal
nothing, except an audit event when a connection asks for another identity's
inbox. Each answer holds only what the asking connection may see
(:func:`access.may_see`): broadcasts, and directed chats it sent or that
address it; an admin seat sees everything.

Every answer fits the hub's frame budget (:mod:`paging`): a cut answer says
``has_more: true`` and carries ``cursor``, the last ``seq`` (inbox) or
``msg_id`` (history, resume) it holds, to ask for the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol import Command, ProtocolError, addresses, int_field
from . import access, paging

if TYPE_CHECKING:
    from .hubcore import HubCore
    from .outcome import Outcome
    from .roster import Conn

HISTORY_LIMIT = 500
INBOX_PAGE_MAX = 100


def _limit(raw: dict[str, Any], name: str, default: int, cap: int) -> int:
    value = int_field(raw, name, default=default)
    if value < 0:
        raise ProtocolError("BAD_FIELD", f"field '{name}' must not be negative")
    return min(value, cap)


def history(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``history_request``: recent chats, or an identity's inbox page (``inbox_query``)."""
    query = cmd.raw.get("inbox_query")
    if query is not None:
        _inbox_page(core, conn, query, now, out)
        return
    limit = _limit(cmd.raw, "limit", 50, HISTORY_LIMIT)
    visible = [f for f in core.history if access.may_see(conn, f)]
    chats = visible[-limit:] if limit else []
    frame = core.frame("history_snapshot", conn.name or "self", "History snapshot", now, requested_limit=limit)
    _paged(core, out, conn, frame, "history", chats)


def _paged(core: HubCore, out: Outcome, conn: Conn, frame: dict[str, Any], key: str, chats: list[Any]) -> None:
    """Send ``frame`` with as many of ``chats`` (oldest first) as fit; mark a cut with ``has_more``.

    The cursor is the last ``msg_id`` sent: ``resume_request`` with
    ``since`` set to it returns the rest.
    """
    page = paging.fit(chats, paging.room_for({**frame, key: []}, core.max_frame_bytes), paging.chat_stub)
    frame[key] = page
    if len(page) < len(chats):
        frame.update(has_more=True, cursor=page[-1].get("msg_id", 0))
    out.send(conn.conn_id, frame)


def _inbox_page(core: HubCore, conn: Conn, query: Any, now: float, out: Outcome) -> None:
    if not isinstance(query, dict):
        raise ProtocolError("BAD_FIELD", "field 'inbox_query' must be an object")
    identity = query.get("identity")
    if not isinstance(identity, str) or not identity:
        raise ProtocolError("BAD_FIELD", "inbox_query.identity must be a non-empty string")
    if not access.speaks_for(conn, identity):
        core.deny(out, conn, "inbox_query", f"{conn.name!r} may not page the inbox of {identity!r}", now)
        return
    since = _limit(query, "since_seq", 0, 2**62)
    limit = _limit(query, "limit", INBOX_PAGE_MAX, INBOX_PAGE_MAX)
    hub_id = query.get("hub_id")
    if hub_id not in (None, "", core.hub_id):
        since = 0  # a cursor from another hub means nothing here: start over
    messages = [
        f
        for f in core.mailbox.messages_since(since)
        if f.get("sender") != identity and addresses(f.get("target", ""), identity, directed_only=True)
    ]
    inbox: dict[str, Any] = {
        "version": 1,
        "available": True,
        "identity": identity,
        "hub_id": core.hub_id,
        "cursor": since,
        "has_more": False,
        "messages": [],
    }
    frame = core.frame("history_snapshot", conn.name or "self", "Inbox page", now, inbox_page=inbox)
    page = paging.fit(messages[:limit], paging.room_for(frame, core.max_frame_bytes), paging.chat_stub)
    inbox.update(messages=page, has_more=len(messages) > len(page), cursor=page[-1]["seq"] if page else since)
    out.send(conn.conn_id, frame)


def resume(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``resume_request``: every recent chat with ``msg_id`` above ``since``."""
    since = _limit(cmd.raw, "since", 0, 2**62)
    messages = [f for f in core.history if f.get("msg_id", 0) > since and access.may_see(conn, f)]
    frame = core.frame("resume_snapshot", conn.name or "self", "Resume snapshot", now, since=since)
    _paged(core, out, conn, frame, "messages", messages)


def message_status(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    """``message_status_request {seq}``: stored, delivered, acked or unknown."""
    seq = int_field(cmd.raw, "seq")
    frame = core.mailbox.messages.get(seq)
    state = core.mailbox.state_of(seq) if frame is None or access.may_see(conn, frame) else "unknown"
    if state is None:
        state = "acked" if 0 < seq <= core.seq and core.mailbox.is_acked_elsewhere(seq) else "unknown"
    out.send(
        conn.conn_id,
        core.frame(
            "message_status",
            conn.name or "self",
            state,
            now,
            seq=seq,
            state=state,
            request_id=cmd.raw.get("request_id"),
        ),
    )
