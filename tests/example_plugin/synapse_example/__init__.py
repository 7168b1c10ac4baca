"""An example third-party plugin: records every hook it sees to $SYNAPSE_EXAMPLE_LOG."""

from __future__ import annotations

import json
import os
from typing import Any

from synapse_channel.hookspecs import hookimpl


def _log(hook: str, **data: Any) -> None:
    path = os.environ.get("SYNAPSE_EXAMPLE_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"hook": hook, **data}) + "\n")


@hookimpl
def hub_started(hub: Any) -> None:
    _log("hub_started", uri=hub.uri)


@hookimpl
async def message_received(message: dict[str, Any], recipients: list[str]) -> None:
    _log("message_received", payload=message["payload"], recipients=recipients)


@hookimpl
def presence_changed(agent: str, event: str) -> None:
    _log("presence_changed", agent=agent, event=event)


@hookimpl
def wake_requested(identity: str, delay: float) -> None:
    _log("wake_requested", identity=identity, delay=delay)


@hookimpl
def wake_delivered(identity: str, frames: list[dict[str, Any]]) -> None:
    _log("wake_delivered", identity=identity, payloads=[f["payload"] for f in frames])


@hookimpl
def register_settings(register: Any) -> None:
    register("example.greeting", str, "hello", "What the example plugin says.")
