"""``synapse send`` and ``synapse listen``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

from .common import connection_options, default_identity, finite, one_shot, resolve_token, run, say


def _send_name(name: str | None) -> str:
    name = name or default_identity() or f"send-{os.getpid()}"
    return name[: -len("-rx")] if name.endswith("-rx") else name


@click.command()
@connection_options()
@click.option(
    "--target", "-t", default="all", show_default=True, help="Recipient: name, project, glob, comma list or 'all'."
)
@click.option("--priority", is_flag=True, help="Mark as priority (wakes --directed-only waiters).")
@click.option("--require-recipient", is_flag=True, help="For a broadcast, fail unless someone else is online.")
@click.option(
    "--receipt-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1),
    callback=finite,
    help="Seconds to wait for the hub's answer.",
)
@click.option(
    "--wait-seconds", default=0.0, type=click.FloatRange(0), hidden=True, help="Accepted for compatibility; ignored."
)
@click.option("--json", "as_json", is_flag=True, help="Print the hub's answer (receipt or echo) as JSON.")
@click.argument("message", nargs=-1, required=True)
def send(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    target: str,
    priority: bool,
    require_recipient: bool,
    receipt_timeout: float,
    wait_seconds: float,
    as_json: bool,
    message: tuple[str, ...],
) -> None:
    """Send MESSAGE. Exit 0 delivered, queued for an offline recipient or broadcast
    accepted; 1 refused or unreachable; 3 outcome unknown; 4 nobody online and
    nothing kept (--require-recipient). --json adds "outcome"."""
    request = SendRequest(
        uri,
        _send_name(name),
        resolve_token(token, token_file),
        target.strip(),
        " ".join(message),
        priority,
        require_recipient,
        receipt_timeout,
        as_json,
    )
    run(_send(request))


QUIET = {"quiet": True}  # one-shot connections do not announce presence (our extension)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Everything one ``synapse send`` needs."""

    uri: str
    name: str
    token: str | None
    target: str
    text: str
    priority: bool = False
    require_recipient: bool = False
    timeout: float = 5.0
    as_json: bool = False


async def _send(req: SendRequest) -> int:
    """One chat through :meth:`synapse_channel.api.Session.send`; print the outcome, return the exit code."""
    import uuid

    from ..api import Refused, Session, SynapseError, Timeout
    from ..protocol import is_broadcast

    msg_id = f"cli-{uuid.uuid4().hex}"  # ours, so a send with no answer can still name it
    want_receipt = not is_broadcast(req.target) or req.require_recipient
    session: Session | None = None
    try:
        session = Session(req.name, uri=req.uri, token=req.token, timeout=req.timeout)
        result = await session.send(
            req.target, req.text, priority=req.priority, require_recipient=req.require_recipient, client_msg_id=msg_id
        )
        reply: dict[str, object] | None = dict(result.raw)
    except Timeout:
        reply = None
    except Refused as exc:
        if not exc.frame:  # refused before anything was sent (a bad address, a seat, a name)
            return _failed(req, exc, session.address if session else None)
        reply = dict(exc.frame)  # the hub refused the chat itself
    except SynapseError as exc:
        return _failed(req, exc, session.address if session else None)
    finally:
        if session is not None:
            await session.close()
    return _report(req, reply, msg_id, want_receipt)


def _failed(req: SendRequest, exc: Exception, address: str | None) -> int:
    """A connection-level failure: one line (and the ``--json`` object); 3 when the chat may have reached the hub."""
    from ..api import Closed

    say(req.name, str(exc) + (f" ({address or req.uri})" if "reach" not in str(exc) else ""))
    dropped = isinstance(exc, Closed) and exc.exit_code == SEND_UNKNOWN  # it may have reached the hub
    if req.as_json:
        outcome = "unknown" if dropped else "refused"
        body = {"ok": False, "outcome": outcome, "code": None, "error": str(exc)}
        click.echo(json.dumps(body, sort_keys=True))
    return SEND_UNKNOWN if dropped else SEND_REFUSED


# ``synapse send`` exit codes. 0, 1 and 3 mean what they meant in 0.99; a queued
# message is 0 (0.99 said 1: it read ``delivered: false`` as a failure), and
# "nobody online and nothing kept" has its own code so scripts need not parse text.
SEND_OK = 0
SEND_REFUSED = 1
SEND_UNKNOWN = 3
SEND_NO_RECIPIENT = 4


def outcome_of(reply: dict[str, object], want_receipt: bool) -> str:
    """``delivered``, ``queued``, ``broadcast``, ``refused`` or ``no_recipient`` for the hub's answer."""
    from ..protocol import is_broadcast

    if reply.get("type") == "error":
        return "refused"
    if not want_receipt:
        return "broadcast"
    if reply.get("delivered") is True:
        return "delivered"
    # A 0.99 hub sends no "queued" but journals every directed chat for the next mailbox wait.
    if reply.get("queued", not is_broadcast(str(reply.get("message_target", "all")))) is True:
        return "queued"
    return "no_recipient"


_EXIT = {
    "delivered": SEND_OK,
    "queued": SEND_OK,
    "broadcast": SEND_OK,
    "refused": SEND_REFUSED,
    "no_recipient": SEND_NO_RECIPIENT,
}


def _report(req: SendRequest, reply: dict[str, object] | None, msg_id: str, want_receipt: bool) -> int:
    if reply is None:
        if req.as_json:
            body = {"ok": False, "outcome": "unknown", "code": None, "client_msg_id": msg_id}
            click.echo(json.dumps(body, sort_keys=True))
        else:
            click.echo(
                f"delivery unknown: no answer from the hub for {req.target} within {req.timeout:g}s;"
                f" client_msg_id={msg_id}"
            )
        return SEND_UNKNOWN
    outcome = outcome_of(reply, want_receipt)
    if req.as_json:
        ok = _EXIT[outcome] == SEND_OK
        click.echo(json.dumps({**reply, "ok": ok, "outcome": outcome, "code": reply.get("code")}, sort_keys=True))
    elif outcome == "refused":
        click.echo(f"refused by the hub ({reply.get('code', 'error')}): {reply.get('payload')}")
    elif outcome == "queued":
        holder = reply.get("held_by")
        if holder:
            click.echo(str(reply.get("payload", "queued")))
        elif reply.get("recipient_known") is False:  # our hub says so; a 0.99 hub sends no such field
            click.echo(
                f"queued for {req.target} (offline), but the hub does not know that name or its project"
                " (check the spelling); it reaches them when they first wait"
            )
        else:
            click.echo(f"queued for {req.target} (offline); it reaches them when they next wait")
    elif outcome == "no_recipient":
        click.echo(str(reply.get("payload") or f"delivery failed: no online recipient matched {req.target}"))
    return _EXIT[outcome]


@click.command()
@connection_options()
@click.option(
    "--for",
    "for_name",
    help="Only print chats addressed to this identity (connects as IDENTITY~listen-PID to see its directed chats).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: each chat or presence frame as sent.")
def listen(
    uri: str, name: str | None, token: str | None, token_file: Path | None, for_name: str | None, as_json: bool
) -> None:
    """Print chats (and, without --for, presence changes) until interrupted."""
    run(
        _listen(
            uri,
            name or (f"{for_name}~listen-{os.getpid()}" if for_name else one_shot("listen")),
            resolve_token(token, token_file),
            for_name,
            as_json,
        )
    )


async def _listen(uri: str, name: str, token: str | None, for_name: str | None, as_json: bool = False) -> int:
    """Print what arrives until interrupted.

    With a list of hubs (a failover group), a lost connection is not the end:
    it reconnects to whichever address answers (backing off up to 2 s) and
    says so on stderr. With one address it exits as before, so a script sees
    the drop.
    """
    import asyncio
    import signal

    from ..api import Closed, Session, SynapseError, Unreachable
    from ..protocol import addresses

    dropped = 3  # the exit code of a ready connection the hub closed (docs/cli.md)
    several = "," in uri
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    delay, lost = 0.25, False
    while True:
        session = None
        try:
            session = Session(name, uri=uri, token=token, announce=True)
            await session.connect()
            say(name, f"listening{' for ' + for_name if for_name else ''} on {session.address or uri}")
            delay, lost = 0.25, False
            async for frame in session.frames(stop):
                _print_frame(frame, for_name, addresses, as_json)
            return 0
        except SynapseError as exc:
            drop = isinstance(exc, Closed) and exc.exit_code == dropped
            failover = several and (drop or (lost and isinstance(exc, Unreachable)))
            if not failover or stop.is_set():
                say(name, str(exc))
                if as_json:
                    from .roster import _failure

                    click.echo(json.dumps(_failure(exc), sort_keys=True))
                return exc.exit_code
            if not lost:
                say(name, f"{exc}; reconnecting to the next hub of {uri}")
            lost = True
        finally:
            if session is not None:
                await session.close()
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return 0  # interrupted while waiting to reconnect
        except TimeoutError:
            delay = min(2.0, delay * 2)


def _print_frame(frame: dict[str, object], for_name: str | None, addresses: object, as_json: bool = False) -> None:
    ftype = frame.get("type")
    if ftype == "chat":
        target = str(frame.get("target", ""))
        if for_name and not addresses(target, for_name):  # type: ignore[operator]
            return
        text = f"{frame.get('sender')}: {frame.get('payload')}"
    elif ftype == "presence_update" and not for_name:
        text = f"* {frame.get('agent')} {frame.get('event')}"
    else:
        return
    click.echo(json.dumps(frame, sort_keys=True, default=str) if as_json else text)
