"""Presence changes, coalesced: many joins and leaves become one frame per observer.

Announcing each join to every socket costs O(N) frames per join, so N
agents connecting at once cost O(N^2) frames: 1,000 agents made ~800k
``presence_update`` frames and kept the hub busy for half a minute. The core
notes each change here instead; the hub flushes the batch at most once per
``--presence-window``, and every socket gets one frame per flush listing the
changes (``joined``/``left``), with ``event``/``agent`` holding the last of
them so a 0.99 client reads an ordinary ``presence_update``.

A name that joins and leaves (or leaves and comes back) between two flushes
cancels out: observers learn the net change, which is what presence is for.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .outcome import Outcome

#: Changes listed in one frame at most; a bigger batch is split into several frames. The
#: names' bytes are bounded too (``room``): 200 names of 200 characters outgrow a 16 KiB budget.
CHANGES_PER_FRAME = 200

JOINED = "joined"
LEFT = "left"


class PresenceBatch:
    """Net presence changes since the last flush, in the order they first happened."""

    def __init__(self) -> None:
        self._changes: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._changes)

    def __len__(self) -> int:
        return len(self._changes)

    def note(self, agent: str, event: str) -> None:
        """Record that ``agent`` joined or left; the opposite change still pending cancels it."""
        pending = self._changes.get(agent)
        if pending is not None and pending != event:
            del self._changes[agent]
        else:
            self._changes[agent] = event

    def take(self) -> list[tuple[str, str]]:
        """The pending ``(agent, event)`` changes, oldest first; the batch is empty afterwards."""
        changes, self._changes = list(self._changes.items()), {}
        return changes


def flush_into(
    out: Outcome,
    batch: PresenceBatch,
    audience: tuple[int, ...],
    online: list[str],
    roster: dict[str, Any],
    make_frame: Any,
    room: int,
) -> None:
    """Queue the batch as ``presence_update`` frames for ``audience`` and one plugin notice per change.

    ``roster`` is the roster field every frame carries (``online_agents`` or
    ``online_count``); ``make_frame(payload, **fields)`` stamps a hub frame.
    One frame lists at most ``CHANGES_PER_FRAME`` names and at most ``room``
    bytes of them, so it always fits the hub's frame budget.
    """
    changes = batch.take()
    for chunk in _chunks(changes, room):
        agent, event = chunk[-1]
        lists: dict[str, list[str]] = {}
        for name, what in chunk:
            lists.setdefault(what, []).append(name)
        frame = make_frame("Presence update", **roster, event=event, agent=agent, **lists)
        out.send(audience, frame, public=True)
    for agent, event in changes:
        out.notify("presence_changed", agent=agent, event=event, online_agents=online)


def _chunks(changes: list[tuple[str, str]], room: int) -> list[list[tuple[str, str]]]:
    """``changes`` cut into runs of at most ``CHANGES_PER_FRAME`` names and ``room`` encoded bytes (one at least)."""
    chunks: list[list[tuple[str, str]]] = []
    chunk: list[tuple[str, str]] = []
    used = 0
    for change in changes:
        size = len(json.dumps(change[0], ensure_ascii=False).encode()) + 1  # the name and its comma
        if chunk and (len(chunk) >= CHANGES_PER_FRAME or used + size > room):
            chunks.append(chunk)
            chunk, used = [], 0
        chunk.append(change)
        used += size
    if chunk:
        chunks.append(chunk)
    return chunks
