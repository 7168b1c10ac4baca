"""A badly behaved plugin: one hook raises, another hangs. Neither may break anything."""

from __future__ import annotations

import asyncio
from typing import Any

from synapse_channel.hookspecs import hookimpl


@hookimpl
def message_received(message: dict[str, Any]) -> None:
    raise RuntimeError("example_broken always fails")


@hookimpl
async def presence_changed(agent: str) -> None:
    await asyncio.sleep(3600)


@hookimpl
def wake_delivered(identity: str) -> None:
    raise RuntimeError("example_broken fails on wake too")
