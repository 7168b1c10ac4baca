"""Plugin manager factory and entry-point loading.

There is no global manager: the hub, the client and each CLI call build their
own with :func:`make_plugin_manager`, so tests can pass explicit plugins.
Entry points of group ``synapse_channel`` are loaded one by one; a plugin that
fails to import is reported by name and the others still load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

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
    pm.plugin_dists = {}  # type: ignore[attr-defined]
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
        pm.plugin_dists[ep.name] = ep.dist  # type: ignore[attr-defined]  # shown by `synapse plugins`
    return failures


def load_runtime(*, start: Any = None, extra: Iterable[object] = ()) -> tuple[Any, pluggy.PluginManager]:
    """Config and plugins together, each validated against the other.

    Plugins named in ``plugins.disabled`` are not loaded; plugin-declared
    settings join the schema before the config is checked strictly; then
    ``configure`` is called (historic, so later registrations see it too).
    """
    from .config import load_config, plugin_settings

    first = load_config(start=start, strict=False)
    pm = make_plugin_manager(disabled=first.get("plugins.disabled") or (), extra=extra)
    config = load_config(start=start, extra=plugin_settings(pm), strict=True)
    pm.hook.configure.call_historic(kwargs={"config": config})
    return config, pm


def wake_adapters(pm: pluggy.PluginManager) -> dict[str, Any]:
    """Every wake adapter plugins offer through ``register_wake_adapters``, by name."""
    found: dict[str, Any] = {}

    def register(name: str, adapter: Any) -> None:
        if name in found:
            log.warning("wake adapter %r registered twice; keeping the first", name)
            return
        found[name] = adapter

    pm.hook.register_wake_adapters(register=register)
    return found
