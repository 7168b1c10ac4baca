"""The public Python API of synapse-channel: the one supported way to talk to a hub.

The CLI, the bundled plugins and the MCP server stand on this package;
third-party code should too. Everything here is stable across minor
releases; anything imported from elsewhere in ``synapse_channel`` is not.

Async first::

    from synapse_channel.api import Session

    async with Session("shop/api") as s:
        claim = await s.claim("API-12", ["src/api/"])
        await s.send("shop/web", "API-12 is mine until lunch")
        await s.release("API-12", claim.epoch)

and blocking for scripts (:class:`SyncSession`, :func:`wait_sync`). See
docs/api.md.
"""

from __future__ import annotations

from .errors import (
    Closed,
    Conflict,
    Forbidden,
    InsecureTransport,
    Refused,
    Superseded,
    SynapseError,
    Timeout,
    Unreachable,
)
from .session import Session
from .sync import SyncSession
from .sync import wait as wait_sync
from .types import Board, Claim, InboxPage, Message, PathHold, Roster, SendResult, Task
from .waiting import wait

__all__ = [
    "Board",
    "Claim",
    "Closed",
    "Conflict",
    "Forbidden",
    "InboxPage",
    "InsecureTransport",
    "Message",
    "PathHold",
    "Refused",
    "Roster",
    "SendResult",
    "Session",
    "Superseded",
    "SynapseError",
    "SyncSession",
    "Task",
    "Timeout",
    "Unreachable",
    "wait",
    "wait_sync",
]
