"""Async-safe dispatch of event hooks.

pluggy is synchronous. :func:`notify` calls every implementation of an event
hook itself, awaits whatever it returns if that is awaitable (bounded by a
timeout), and logs and skips an implementation that raises or hangs, naming
its plugin. One bad plugin therefore never breaks the hub, a connection or a
command, and never starves the plugins after it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import pluggy

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


async def notify(pm: pluggy.PluginManager, hook_name: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
    """Call every implementation of ``hook_name`` with the arguments it accepts."""
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        try:
            result = impl.function(**args)
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, timeout)
        except TimeoutError:
            log.error("plugin %r: %s did not finish within %.1fs; skipped", impl.plugin_name, hook_name, timeout)
        except Exception:
            log.exception("plugin %r raised in %s; skipped", impl.plugin_name, hook_name)


def decide(pm: pluggy.PluginManager, hook_name: str, default: Any, **kwargs: Any) -> Any:
    """Call a ``firstresult`` decision hook; a raising plugin yields ``default``."""
    try:
        result = getattr(pm.hook, hook_name)(**kwargs)
    except Exception:
        log.exception("decision hook %s raised; using the default", hook_name)
        return default
    return default if result is None else result
