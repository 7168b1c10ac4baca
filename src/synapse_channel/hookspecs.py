"""The plugin contract: every hook the hub, the client and the CLI call.

Decision and setup hooks (``wake_delay``, ``register_*``, ``configure``) are
plain functions and must not block. Event hooks are dispatched by
:func:`synapse_channel.dispatch.notify`: an implementation may be
``async def``; it runs with a timeout, and one that raises or hangs is logged
with its plugin name and skipped, so a bad plugin never breaks the hub or a
command. An implementation may accept any subset of a hook's arguments.

Event hooks receive immutable snapshots (:mod:`synapse_channel.events`):
``hub`` is a :class:`~synapse_channel.events.HubInfo` (not the ``Hub``),
``client`` a :class:`~synapse_channel.events.ClientInfo`, every frame a
read-only mapping (nested values too) and every list a tuple. Mutating one
raises ``TypeError``; the hub's copy and other plugins' views never change.

The docstrings here are the reference; ``docs/plugins.md`` repeats each
signature and a test keeps the two in step and checks every hook has a test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .events import ClientInfo, HubInfo

Frame = Mapping[str, Any]

PROJECT = "synapse_channel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --------------------------------------------------------------------------- setup


@hookspec(historic=True)
def configure(config: Any) -> None:
    """The effective :class:`synapse_channel.config.Config` for this process.

    Historic: a plugin registered later still receives it. Read your own
    table with ``config.table("name")``.
    """


@hookspec
def register_settings(register: Callable[..., None]) -> None:
    """Declare this plugin's config keys: ``register(key, type, default, help, env=None)``.

    Declared keys may appear in ``synapse.toml``; undeclared ones are errors.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``synapse`` group: ``cli.add_command(command)``."""


@hookspec
def register_wake_adapters(register: Callable[[str, Any], None]) -> None:
    """Offer assistant wake adapters: ``register(name, adapter)``."""


# --------------------------------------------------------------------------- hub lifecycle


@hookspec
def hub_started(hub: HubInfo) -> None:
    """The hub replayed its journal and is listening: ``hub.uri``, ``hub.hub_id``, ``hub.version``."""


@hookspec
def hub_stopping(hub: HubInfo) -> None:
    """The hub is shutting down; sockets are about to close with 1001."""


# --------------------------------------------------------------------------- connections


@hookspec
def client_joined(hub: HubInfo, name: str, wake_capability: str) -> None:
    """A connection bound ``name`` (also after a takeover)."""


@hookspec
def client_left(hub: HubInfo, name: str) -> None:
    """The connection holding ``name`` closed (not fired for a superseded socket)."""


@hookspec
def presence_changed(hub: HubInfo, agent: str, event: str, online_agents: tuple[str, ...]) -> None:
    """A name joined or left the roster (``event`` is ``joined`` or ``left``); ``online_agents`` after it."""


# --------------------------------------------------------------------------- messages


@hookspec
def message_received(hub: HubInfo, message: Frame, recipients: tuple[str, ...]) -> None:
    """The hub accepted and journalled a chat and is fanning it out.

    ``message`` is a read-only copy of the relayed frame (with ``seq``,
    ``msg_id`` and ``hub_id``); ``recipients`` are the identities that were
    online to receive it.
    """


@hookspec
def message_delivered(hub: HubInfo, message: Frame, recipients: tuple[str, ...]) -> None:
    """A directed chat reached live recipients, live or by mailbox replay."""


@hookspec
def message_acked(hub: HubInfo, identity: str, seq: int) -> None:
    """``identity`` acknowledged its mailbox through ``seq`` (journalled)."""


# --------------------------------------------------------------------------- wake (client side)


@hookspec(firstresult=True)
def wake_delay(identity: str, frame: Frame, one_to_many: bool, jitter: float) -> float | None:
    """Seconds a waiter should sleep before it reports ``frame`` and exits.

    Decision hook: plain ``def`` only, no I/O; stops at the first non-None
    result. ``one_to_many`` is true for broadcasts, globs, comma lists and
    project-wide messages; ``jitter`` is the configured spread in seconds.
    The bundled ``wake_jitter`` plugin implements the ``[wake] policy``.
    """


@hookspec
def wake_requested(identity: str, frame: Frame, delay: float) -> None:
    """A waiter for ``identity`` will wake for ``frame`` after ``delay`` seconds."""


@hookspec
def wake_delivered(identity: str, frames: tuple[Frame, ...]) -> None:
    """A waiter for ``identity`` printed ``frames`` and is about to exit 0."""


@hookspec
def client_connected(client: ClientInfo, welcome: Frame) -> None:
    """A client (any command) registered with a hub; ``client.name``/``client.uri``; ``welcome`` is the greeting."""


@hookspec
def client_disconnected(client: ClientInfo, code: int | None, reason: str) -> None:
    """A registered client's connection ended (``code`` None: closed by us)."""
