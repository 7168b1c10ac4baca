"""The plugin contract: every hook the hub, the client and the CLI call.

Decision hooks (``firstresult=True``) are plain functions and must not do I/O.
Event hooks are dispatched by :func:`synapse_channel.dispatch.notify`: an
implementation may be ``async def``; it runs with a timeout, and one that
raises or hangs is logged with its plugin name and skipped, so a bad plugin
never breaks the hub or a command. The docstrings here are the reference;
``docs/plugins.md`` repeats each signature and a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "synapse_channel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def message_received(hub: Any, message: dict[str, Any], recipients: list[str]) -> None:
    """The hub accepted and journalled a chat and is fanning it out.

    ``message`` is the relayed frame (with ``seq``, ``msg_id`` and ``hub_id``);
    ``recipients`` are the identities that were online to receive it.
    """


@hookspec
def presence_changed(hub: Any, agent: str, event: str, online_agents: list[str]) -> None:
    """A name joined or left the roster (``event`` is ``joined`` or ``left``)."""


@hookspec
def message_acked(hub: Any, identity: str, seq: int) -> None:
    """``identity`` acknowledged its mailbox through ``seq`` (journalled)."""


@hookspec(firstresult=True)
def wake_delay(identity: str, frame: dict[str, Any], one_to_many: bool, jitter: float) -> float | None:
    """Seconds a waiter should sleep before it reports ``frame`` and exits.

    Decision hook: plain ``def`` only, no I/O; stops at the first non-None
    result. ``one_to_many`` is true for broadcasts, globs, comma lists and
    project-wide messages; ``jitter`` is the configured spread in seconds.
    The bundled ``wake_jitter`` plugin answers ``uniform(0, jitter)`` for
    one-to-many wakes and ``0`` for directed ones.
    """


@hookspec
def wake_delivered(identity: str, frames: list[dict[str, Any]]) -> None:
    """A waiter for ``identity`` printed ``frames`` and is about to exit 0."""


@hookspec
def hub_started(hub: Any) -> None:
    """The hub replayed its journal and is listening (``hub.uri`` is set)."""


@hookspec
def hub_stopping(hub: Any) -> None:
    """The hub is shutting down; sockets are about to close with 1001."""
