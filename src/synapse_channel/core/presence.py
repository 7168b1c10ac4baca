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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .outcome import Outcome

#: Changes listed in one frame: with names of at most 128 characters a frame stays far below
#: any frame budget; a bigger batch is split into several frames.
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
) -> None:
    """Queue the batch as ``presence_update`` frames for ``audience`` and one plugin notice per change.

    ``roster`` is the roster field every frame carries (``online_agents`` or
    ``online_count``); ``make_frame(payload, **fields)`` stamps a hub frame.
    """
    changes = batch.take()
    for start in range(0, len(changes), CHANGES_PER_FRAME):
        chunk = changes[start : start + CHANGES_PER_FRAME]
        agent, event = chunk[-1]
        lists: dict[str, list[str]] = {}
        for name, what in chunk:
            lists.setdefault(what, []).append(name)
        frame = make_frame("Presence update", **roster, event=event, agent=agent, **lists)
        out.send(audience, frame, public=True)
    for agent, event in changes:
        out.notify("presence_changed", agent=agent, event=event, online_agents=online)
