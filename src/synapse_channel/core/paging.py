"""Byte budgets for what the hub sends: pages split by encoded size.

Every reply that carries a list (an inbox page, history, a resume, the
claims in a state snapshot, the board) is cut so that the whole frame, once
encoded, stays within the hub's ``max_frame_bytes``. A cut page says
``has_more: true`` and carries a cursor to ask for the rest. Counting is done
on the exact encoding the hub sends (compact JSON, UTF-8), so the bound is
exact, not estimated.

An item too big for any page on its own (one stored before the budget was
lowered) is replaced by a small stub marked ``truncated: true``, so the
cursor always moves on and no page can be stuck.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_MAX_FRAME_BYTES = 1 << 20
#: Bytes of every budget kept for the envelope and page fields around a chat, so a
#: chat accepted at send time always fits a page of its own (names are <= 200 chars).
CHAT_RESERVE = 2048
#: Room left for the fields a page adds after it is measured (``has_more``, a cursor).
PAGE_FIELDS = 96
_CHAT_KEYS = ("type", "sender", "target", "timestamp", "hub_id", "msg_id", "seq", "client_msg_id", "replayed")
_ITEM_KEYS = ("task_id", "owner", "status", "epoch", "version", "author", "kind", "posted_at", "project")


def encoded_size(obj: Any) -> int:
    """UTF-8 length of ``obj`` as the hub encodes frames (compact, non-ASCII kept)."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def chat_limit(max_frame_bytes: int) -> int:
    """Largest encoded chat frame the hub accepts: it must fit a page of its own."""
    return max_frame_bytes - CHAT_RESERVE


def chat_stub(frame: dict[str, Any], size: int) -> dict[str, Any]:
    """What stands in for a stored chat too big to send: its identity, no body."""
    stub = {k: frame[k] for k in _CHAT_KEYS if k in frame}
    stub.update(payload=f"[message of {size} bytes left out: over this hub's frame limit]", truncated=True)
    return stub


def item_stub(item: dict[str, Any], size: int) -> dict[str, Any]:
    """What stands in for a claim, task or note too big to send."""
    stub = {k: item[k] for k in _ITEM_KEYS if k in item and encoded_size(item[k]) <= 256}
    stub.update(truncated=True, size=size)
    return stub


def fit(
    items: Sequence[dict[str, Any]],
    room: int,
    stub: Callable[[dict[str, Any], int], dict[str, Any]] = item_stub,
) -> list[dict[str, Any]]:
    """The longest prefix of ``items`` whose JSON array fits in ``room`` bytes.

    At least one item is always returned (as a stub if it alone is too
    big), so paging always advances.
    """
    page: list[dict[str, Any]] = []
    used = 2  # the brackets
    for item in items:
        size = encoded_size(item)
        if not page and size + 2 > room:
            item = stub(item, size)
            size = encoded_size(item)
        cost = size + (1 if page else 0)
        if page and used + cost > room:
            break
        page.append(item)
        used += cost
    return page


def room_for(frame: dict[str, Any], budget: int) -> int:
    """Bytes left for a list inside ``frame`` (measured with that list empty)."""
    return budget - encoded_size(frame) - PAGE_FIELDS


def after_field(raw: dict[str, Any]) -> str | None:
    """The optional ``after`` cursor of a keyed page request (a task id)."""
    from ..protocol import ProtocolError

    after = raw.get("after")
    if after is not None and not isinstance(after, str):
        raise ProtocolError("BAD_FIELD", "field 'after' must be a string (the cursor of the previous page)")
    return after


def keyed_page(
    items: list[dict[str, Any]], key: str, after: str | None, room: int
) -> tuple[list[dict[str, Any]], bool]:
    """Items ordered by ``key`` after the cursor ``after``, as many as fit; True when more follow.

    Without a cursor and when everything fits, the items keep their order.
    """
    if after is None and encoded_size(items) <= room:
        return items, False
    ordered = sorted((i for i in items if after is None or str(i.get(key)) > after), key=lambda i: str(i.get(key)))
    page = fit(ordered, room)
    return page, len(page) < len(ordered)
