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


#: The name the 0.99 CLI acts under when given no ``--name`` (it ignores the environment).
FALLBACK_NAME = "USER"


def caller(uri: str, name: str | None, token: str | None, token_file: Path | None) -> Caller:
    """Resolve the identity: ``--name``, ``SYN_IDENTITY``, the project's ``[identity]``, else ``USER``.

    The 0.99 CLI acts as ``USER`` when no name is given, and its users' scripts
    rely on that; we do the same, but say so on stderr so a forgotten
    ``--name`` is noticed (every anonymous caller shares that one owner).
    """
    who = name or default_identity()
    if not who:
        who = FALLBACK_NAME
        click.echo(f"note: no --name or SYN_IDENTITY; acting as {FALLBACK_NAME} (the 0.99 default name)", err=True)
    return Caller(uri, who, resolve_token(token, token_file))


class Verdict(Exception):
    """A settled request that is not a success.

    ``code`` is the exit code; ``outcome`` names it for ``--json``
    (``refused``, ``denied``, ``unreachable``, ``unknown``); ``reason`` is the
    hub's reason code (``reason_code`` or an error's ``code``) when it gave one.
    """

    def __init__(self, message: str, code: int = 1, *, outcome: str = "refused", reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.outcome = outcome
        self.reason = reason

    def as_json(self, **fields: Any) -> dict[str, Any]:
        """The ``--json`` object for this verdict: ``ok`` false, the outcome, the hub's ``code``."""
        return {"ok": False, "outcome": self.outcome, "code": self.reason, "error": str(self), **fields}


def emit_json(obj: dict[str, Any]) -> None:
    """One JSON object on one line of stdout (the ``--json`` contract: one object per outcome)."""
    import json

    click.echo(json.dumps(obj, sort_keys=True, default=str))


async def ask(
    who: Caller,
    frame_type: str,
    settles: Callable[[Frame], bool],
    timeout: float = 5.0,
    *,
    where: list[str] | None = None,
    **fields: Any,
) -> Frame:
    """Send one request through the public API's :class:`~synapse_channel.api.Session`; the frame that settles it.

    Raises :class:`Verdict` for an ``error`` addressed to us, an unreachable
    hub (1) or no answer in time (3). ``where`` receives the address that
    answered (``who.uri`` may be a list of several).
    """
    from ..api import Session, SynapseError

    try:
        async with Session(who.name, uri=who.uri, token=who.token, timeout=timeout) as session:
            reply = await session.request(session.frame(frame_type, **fields), settles, timeout)
            if where is not None and session.address:
                where.append(session.address)
            return reply
    except SynapseError as exc:
        raise verdict_of(who, exc) from None


def verdict_of(who: Caller, exc: Exception) -> Verdict:
    """The CLI's verdict for an API exception: same message, exit code and ``--json`` outcome as always."""
    from ..api import Closed, Forbidden, Refused, Timeout, Unreachable

    if isinstance(exc, Timeout):
        return Verdict(str(exc), 3, outcome="unknown")
    if isinstance(exc, Refused) and exc.frame:  # the hub answered with a refusal
        return Verdict(str(exc), 1, reason=_code(exc.frame))
    if isinstance(exc, Unreachable):
        return Verdict(f"[{who.name}] {exc}", 1, outcome="unreachable")
    if isinstance(exc, Closed):
        return Verdict(f"[{who.name}] {exc}", 1, reason=None if exc.code is None else str(exc.code))
    reason = "4010" if isinstance(exc, Forbidden) and exc.code == "AUTH_DENIED" else None
    return Verdict(f"[{who.name}] {exc}", 1, reason=reason)


def _code(frame: Any) -> str | None:
    code = frame.get("reason_code") or frame.get("code")
    return None if code is None else str(code)


async def ask_pages(
    who: Caller, frame_type: str, settles: Callable[[Frame], bool], timeout: float = 5.0, **fields: Any
) -> list[Frame]:
    """Like :func:`ask` for a reply the hub may split by bytes: every page, following ``has_more``/``after``."""
    from ..api import Session, SynapseError

    try:
        async with Session(who.name, uri=who.uri, token=who.token, timeout=timeout) as session:
            pages = await session.pages(session.frame(frame_type, **fields), settles, **fields)
    except SynapseError as exc:
        raise verdict_of(who, exc) from None
    for page in pages:
        if page.get("type") == "error":
            raise Verdict(str(page.get("payload")), 1, reason=_code(page))
    return pages


def run_request(coro: Any, as_json: bool = False, **json_fields: Any) -> None:
    """Run a request coroutine; print a verdict's message (or its JSON object) and exit with its code.

    Exit codes do not depend on ``--json``: 0 accepted, 1 refused or
    unreachable, 3 no verdict in time.
    """
    import asyncio
    import sys

    try:
        code = asyncio.run(coro)
    except Verdict as verdict:
        if as_json:
            emit_json(verdict.as_json(**json_fields))
        else:
            click.echo(str(verdict), err=verdict.code != 1)
        code = verdict.code
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def epoch_file(name: str, task: str) -> Path:
    """Where the granted epoch of ``task`` for ``name`` is kept (to fence later calls)."""
    from urllib.parse import quote

    from ..paths import syn_home

    def part(text: str) -> str:  # "." and ".." would name a directory, not a file under it
        quoted = quote(text, safe="")
        return "%2E" + quoted[1:] if quoted.startswith(".") else quoted

    return syn_home() / "claims" / part(name) / part(task)


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
