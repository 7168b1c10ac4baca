"""Async-safe dispatch of event hooks.

pluggy is synchronous. :func:`notify` calls every implementation of an event
hook itself, awaits whatever it returns if that is awaitable (bounded by a
timeout), and logs and skips an implementation that raises or hangs, naming
its plugin. One bad plugin therefore never breaks the hub, a connection or a
command, and never starves the plugins after it.

Every argument is handed over frozen (:func:`synapse_channel.events.freeze`):
a plugin reads the event, it cannot change the frame the hub keeps or what
the next plugin sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from typing import Any

import pluggy

from .events import freeze

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


async def notify(pm: pluggy.PluginManager, hook_name: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
    """Call every implementation of ``hook_name`` with the arguments it accepts."""
    caller = getattr(pm.hook, hook_name)
    impls = caller.get_hookimpls()
    if impls:
        kwargs = {k: freeze(v) for k, v in kwargs.items()}
    for impl in reversed(impls):
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
        result = getattr(pm.hook, hook_name)(**{k: freeze(v) for k, v in kwargs.items()})
    except Exception:
        log.exception("decision hook %s raised; using the default", hook_name)
        return default
    return default if result is None else result


class Dispatcher:
    """Background delivery of hub events to plugins: one ordered queue per plugin.

    Each plugin sees its events in order, and a plugin that is slow or hangs
    only delays itself: its queue is bounded (events beyond ``limit`` are
    dropped and logged) and every call is bounded by ``timeout``.
    """

    def __init__(self, pm: pluggy.PluginManager, timeout: float = DEFAULT_TIMEOUT, limit: int = 1000) -> None:
        self.pm = pm
        self.timeout = timeout
        self.limit = limit
        self._queues: dict[str, asyncio.Queue[tuple[Any, dict[str, Any]]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    def emit(self, hook_name: str, **kwargs: Any) -> None:
        """Queue ``hook_name`` for every plugin implementing it (never blocks); the arguments are frozen once."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        if impls:
            kwargs = {k: freeze(v) for k, v in kwargs.items()}
        for impl in reversed(impls):
            queue = self._queues.get(impl.plugin_name)
            if queue is None:
                queue = self._queues[impl.plugin_name] = asyncio.Queue()
                self._workers[impl.plugin_name] = asyncio.create_task(self._work(queue))
            if queue.qsize() >= self.limit:
                log.error("plugin %r is %d events behind; dropping %s", impl.plugin_name, self.limit, hook_name)
                continue
            args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
            queue.put_nowait((impl, {"__hook": hook_name, **args}))

    async def _work(self, queue: asyncio.Queue[tuple[Any, dict[str, Any]]]) -> None:
        while True:
            impl, args = await queue.get()
            hook_name = args.pop("__hook")
            try:
                result = impl.function(**args)
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, self.timeout)
            except TimeoutError:
                log.error(
                    "plugin %r: %s did not finish within %.1fs; skipped", impl.plugin_name, hook_name, self.timeout
                )
            except Exception:
                log.exception("plugin %r raised in %s; skipped", impl.plugin_name, hook_name)
            finally:
                queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Let queued events finish (bounded), then stop the workers."""
        pending = [q.join() for q in self._queues.values()]
        if pending:
            await asyncio.wait([asyncio.ensure_future(p) for p in pending], timeout=timeout)
        for worker in self._workers.values():
            worker.cancel()
        for worker in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await worker
