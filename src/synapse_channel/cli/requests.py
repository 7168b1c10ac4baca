"""One request, one verdict: the shape shared by the claim and board commands.

Each command connects under the caller's identity, sends one frame and waits
for the first frame that settles it (a grant, a snapshot, a refusal or an
``error`` addressed to us). Exit codes: 0 accepted, 1 refused or unreachable,
3 no verdict in time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .common import default_identity, resolve_token

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, and where the hub is."""

    uri: str
    name: str
    token: str | None


def caller(uri: str, name: str | None, token: str | None, token_file: Path | None) -> Caller:
    """Resolve the identity (``--name`` or ``SYN_IDENTITY``); claims need a real owner."""
    who = name or default_identity()
    if not who:
        raise click.UsageError("say who you are: --name PROJECT/SEAT (or set SYN_IDENTITY)")
    return Caller(uri, who, resolve_token(token, token_file))


class Verdict(Exception):
    """A settled request that is not a success: message and exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


async def ask(
    who: Caller, frame_type: str, settles: Callable[[Frame], bool], timeout: float = 5.0, **fields: Any
) -> Frame:
    """Send one request and return the frame that settles it.

    Raises :class:`Verdict` for an ``error`` addressed to us, an unreachable
    hub (1) or no answer in time (3).
    """
    from ..client.connection import HubClient, HubError

    client = HubClient(who.uri, who.name, token=who.token, ready_timeout=timeout, registration={"quiet": True})
    try:
        await client.connect(client.frame(frame_type, **fields))

        def done(f: Frame) -> bool:
            return settles(f) or (f.get("type") == "error" and f.get("target") == who.name)

        reply = await client.wait_for(done, timeout)
    except HubError as exc:
        raise Verdict(f"[{who.name}] {exc}", 1) from None
    finally:
        await client.close()
    if reply is None:
        raise Verdict(f"no answer from the hub within {timeout:g}s; the outcome is unknown", 3)
    if reply.get("type") == "error":
        raise Verdict(str(reply.get("payload")), 1)
    return reply


async def ask_pages(
    who: Caller, frame_type: str, settles: Callable[[Frame], bool], timeout: float = 5.0, **fields: Any
) -> list[Frame]:
    """Like :func:`ask` for a reply the hub may split by bytes: every page, following ``has_more``/``after``."""
    from ..client.connection import HubClient, HubError, next_after

    client = HubClient(who.uri, who.name, token=who.token, ready_timeout=timeout, registration={"quiet": True})

    def done(f: Frame) -> bool:
        return settles(f) or (f.get("type") == "error" and f.get("target") == who.name)

    try:
        await client.connect(client.frame(frame_type, **fields))
        reply = await client.wait_for(done, timeout)
        if reply is None:
            raise Verdict(f"no answer from the hub within {timeout:g}s; the outcome is unknown", 3)
        pages = await client.follow_pages(reply, next_after(client, frame_type, **fields), done, timeout)
    except HubError as exc:
        raise Verdict(f"[{who.name}] {exc}", 1) from None
    finally:
        await client.close()
    for page in pages:
        if page.get("type") == "error":
            raise Verdict(str(page.get("payload")), 1)
    return pages


def run_request(coro: Any) -> None:
    """Run a request coroutine; print a verdict's message and exit with its code."""
    import asyncio
    import sys

    try:
        code = asyncio.run(coro)
    except Verdict as verdict:
        click.echo(str(verdict), err=verdict.code != 1)
        code = verdict.code
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def epoch_file(name: str, task: str) -> Path:
    """Where the granted epoch of ``task`` for ``name`` is kept (to fence later calls)."""
    from urllib.parse import quote

    from ..paths import syn_home

    return syn_home() / "claims" / quote(name, safe="") / quote(task, safe="")


def save_epoch(name: str, task: str, epoch: int, hub_id: str) -> None:
    """Remember the epoch we were granted (with the hub that granted it)."""
    import json

    from ..paths import write_private

    write_private(epoch_file(name, task), json.dumps({"epoch": epoch, "hub_id": hub_id}))


def load_epoch(name: str, task: str) -> int | None:
    """The epoch we were granted for ``task``, if we have one."""
    import json

    try:
        data = json.loads(epoch_file(name, task).read_text())
        return int(data["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_epoch(name: str, task: str) -> None:
    """Drop a remembered epoch after a release."""
    with contextlib.suppress(OSError):
        os.unlink(epoch_file(name, task))
