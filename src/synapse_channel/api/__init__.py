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

and blocking for scripts (:class:`SyncSession`, :func:`wait_sync`). A
plugin's click command takes the standard connection flags from
:mod:`synapse_channel.api.cli`. See docs/api.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are loaded on first use (a plugin's `synapse --help` stays quick)
    from .context import default_identity, default_uri, one_shot, owner_of, resolve_token, setting, settings
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
    from .paging import merge_pages
    from .scope import OutsideWorktree, claim_scope, git_toplevel
    from .session import Session
    from .sync import SyncSession
    from .sync import wait as wait_sync
    from .types import (
        Board,
        Claim,
        InboxPage,
        Message,
        PathHold,
        Question,
        Roster,
        SearchHit,
        SearchPage,
        SendResult,
        Task,
    )
    from .waiting import wait

#: Public name -> (submodule, attribute).
_LAZY = {
    **{n: ("errors", n) for n in ("Closed", "Conflict", "Forbidden", "InsecureTransport", "Refused")},
    **{n: ("errors", n) for n in ("Superseded", "SynapseError", "Timeout", "Unreachable")},
    **{
        n: ("types", n)
        for n in ("Board", "Claim", "InboxPage", "Message", "PathHold", "Question", "Roster", "SendResult", "Task")
    },
    "SearchHit": ("types", "SearchHit"),
    "SearchPage": ("types", "SearchPage"),
    **{n: ("scope", n) for n in ("OutsideWorktree", "claim_scope", "git_toplevel")},
    **{n: ("context", n) for n in ("default_identity", "default_uri", "one_shot", "owner_of", "resolve_token")},
    "setting": ("context", "setting"),
    "settings": ("context", "settings"),
    "Session": ("session", "Session"),
    "merge_pages": ("paging", "merge_pages"),
    "SyncSession": ("sync", "SyncSession"),
    "wait_sync": ("sync", "wait"),
    "wait": ("waiting", "wait"),
}

__all__ = [
    "Board",
    "Claim",
    "Closed",
    "Conflict",
    "Forbidden",
    "InboxPage",
    "InsecureTransport",
    "Message",
    "OutsideWorktree",
    "PathHold",
    "Question",
    "Refused",
    "Roster",
    "SearchHit",
    "SearchPage",
    "SendResult",
    "Session",
    "Superseded",
    "SynapseError",
    "SyncSession",
    "Task",
    "Timeout",
    "Unreachable",
    "claim_scope",
    "default_identity",
    "default_uri",
    "git_toplevel",
    "merge_pages",
    "one_shot",
    "owner_of",
    "resolve_token",
    "setting",
    "settings",
    "wait",
    "wait_sync",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
