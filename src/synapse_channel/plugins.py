"""Plugin manager factory and entry-point loading.

There is no global manager: the hub, the client and each CLI call build their
own with :func:`make_plugin_manager`, so tests can pass explicit plugins.
Entry points of group ``synapse_channel`` are loaded one by one; a plugin that
fails to import is reported by name and the others still load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "synapse_channel"


class PluginLoadFailure:
    """Why one entry point could not be loaded (kept for ``synapse plugins``)."""

    def __init__(self, name: str, error: str) -> None:
        self.name = name
        self.error = error


def make_plugin_manager(
    *,
    entrypoints: bool = True,
    disabled: Iterable[str] = (),
    extra: Iterable[object] = (),
) -> pluggy.PluginManager:
    """Build a plugin manager with the hookspecs, entry points and ``extra`` plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    failures: list[PluginLoadFailure] = []
    if entrypoints:
        failures = _load_entrypoints(pm)
    for plugin in extra:
        pm.register(plugin)
    pm.load_failures = failures  # type: ignore[attr-defined]  # read by `synapse plugins`
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> list[PluginLoadFailure]:
    from importlib.metadata import entry_points

    failures = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others
            log.error("plugin %r failed to load: %s: %s", ep.name, type(exc).__name__, exc)
            failures.append(PluginLoadFailure(ep.name, f"{type(exc).__name__}: {exc}"))
            continue
        pm.register(plugin, name=ep.name)
    return failures
