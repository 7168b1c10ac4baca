"""What the pure core hands back to the hub: events, frames to send, closes.

The core never performs I/O. Each call returns an :class:`Outcome` describing
what happened; the hub journals ``events`` first (group commit), then performs
``sends`` and ``closes`` in order, appends public frames to the relay feed and
notifies plugins. Keeping this as data is what makes the core deterministic
and replayable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def compact_json(data: Any) -> str:
    """The one JSON form events are stored in (compact, UTF-8 text as is)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Event:
    """One journalled fact. ``seq`` is assigned by the core, strictly increasing.

    ``text`` is ``data`` already encoded (the journal stores it as is instead of
    encoding twice) and ``size`` its length: the core sizes a chat to hold the
    mailbox to its byte bounds, and replay reads the size from the stored row.
    Both are optional; 0/None mean unknown.
    """

    seq: int
    ts: float
    kind: str
    data: dict[str, Any]
    size: int = 0
    text: str | None = None


@dataclass(slots=True)
class Send:
    """A frame for a set of connections. ``public`` frames also go to the feed."""

    to: tuple[int, ...]
    frame: dict[str, Any]
    public: bool = False
    #: The frame already encoded by the core (a chat measured against the budget), reused by the hub.
    encoded: str | None = None


@dataclass(slots=True)
class Notice:
    """A plugin event to dispatch after delivery (hook name plus arguments)."""

    hook: str
    kwargs: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """Everything one core call decided, in the order it must be carried out."""

    events: list[Event] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    closes: list[tuple[int, int, str]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    #: Reads the hub runs off the loop after delivering the rest (``search_request``), each answered to its asker.
    queries: list[Any] = field(default_factory=list)

    def send(
        self, to: tuple[int, ...] | int, frame: dict[str, Any], *, public: bool = False, encoded: str | None = None
    ) -> None:
        """Queue ``frame`` for one connection id or a tuple of them."""
        self.sends.append(Send((to,) if isinstance(to, int) else to, frame, public, encoded))

    def close(self, conn_id: int, code: int, reason: str) -> None:
        """Queue a close; it is performed after every send queued before it."""
        self.closes.append((conn_id, code, reason))

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Queue a plugin notification."""
        self.notices.append(Notice(hook, kwargs))
