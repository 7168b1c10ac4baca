"""What plugin hooks receive: immutable views, never the hub's live objects.

Event hooks run after the fact, off the hot path, often in another task;
a plugin that changed a relayed frame would change what the hub keeps for
replay and what later recipients read, and one holding the ``Hub`` could
reach anything inside it. So every hook argument is a snapshot: a frame is
a read-only mapping (nested dicts are read-only too, lists are tuples), the
hub is a :class:`HubInfo`, a client a :class:`ClientInfo`. Mutating one
raises ``TypeError`` (or ``FrozenInstanceError``), which the dispatcher logs
and skips like any other plugin failure.

Public: plugins may import this module (``from synapse_channel.events import HubInfo``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["ClientInfo", "HubInfo", "freeze"]


_AS_IS = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """A deep read-only copy: mappings become ``MappingProxyType``, lists and tuples tuples, sets frozensets.

    Anything else (numbers, strings, the frozen info objects) is returned as is.
    Runs once per hook event on the hub's event loop, so the common JSON types
    are tested by exact type first (an ABC ``isinstance`` costs more).
    """
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if kind is list:
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class HubInfo:
    """The hub as hooks see it (``hub`` in ``hub_started``, ``message_received``, ...).

    ``uri`` is a URI clients on this machine can use; ``hub_id`` names this
    hub's journal (message ``seq`` numbers are per hub id); ``security`` is
    what ``welcome`` advertises (``auth``, ``tls``, ``loopback_only``, ...).
    """

    uri: str
    hub_id: str
    version: str
    security: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client connection as hooks see it (``client`` in ``client_connected``/``client_disconnected``)."""

    name: str
    uri: str
    hub_id: str
