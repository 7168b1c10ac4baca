"""``synapse send`` and ``synapse listen``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

from .common import connection_options, default_identity, one_shot, resolve_token, run, say


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
    """Send MESSAGE. Exit 0 delivered (or broadcast accepted), 1 refused or no
    recipient, 3 outcome unknown."""
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
    from ..client.connection import EXIT_DROPPED, HubClient, HubError, new_client_msg_id
    from ..protocol import HUB_SENDER, is_broadcast

    client = HubClient(req.uri, req.name, token=req.token, ready_timeout=req.timeout, registration=QUIET)
    msg_id = new_client_msg_id()
    want_receipt = not is_broadcast(req.target) or req.require_recipient
    extra: dict[str, object] = {"client_msg_id": msg_id}
    if want_receipt:
        extra["receipt_requested"] = True
    if req.priority:
        extra["priority"] = True

    def answers(f: dict[str, object]) -> bool:
        if f.get("type") == "error" and f.get("sender") == HUB_SENDER:
            return True  # the only frame this connection sent was the chat: the hub refused it
        if f.get("client_msg_id") != msg_id:
            return False
        if not want_receipt:
            return f.get("type") == "chat"
        return (
            f.get("type") == "delivery_receipt"
            and f.get("sender") == HUB_SENDER
            and isinstance(f.get("delivered"), bool)
        )

    try:
        await client.connect(client.frame("chat", req.target, req.text, **extra))
        reply = await client.wait_for(answers, req.timeout)
    except HubError as exc:
        say(req.name, str(exc) + (f" ({req.uri})" if "reach" not in str(exc) else ""))
        return EXIT_DROPPED if exc.exit_code == EXIT_DROPPED else 1
    finally:
        await client.close()
    return _report(req, reply, msg_id, want_receipt)


def _report(req: SendRequest, reply: dict[str, object] | None, msg_id: str, want_receipt: bool) -> int:
    if reply is None:
        click.echo(
            f"delivery unknown: no answer from the hub for {req.target} within {req.timeout:g}s; client_msg_id={msg_id}"
        )
        return 3
    if req.as_json:
        click.echo(json.dumps(reply, sort_keys=True))
    if reply.get("type") == "error":
        if not req.as_json:
            click.echo(f"refused by the hub ({reply.get('code', 'error')}): {reply.get('payload')}")
        return 1
    if not want_receipt or reply.get("delivered") is True:
        return 0
    if reply.get("queued") is True and reply.get("held_by"):
        if not req.as_json:
            click.echo(str(reply.get("payload", "queued")))
        return 0
    if not req.as_json:
        click.echo(str(reply.get("payload") or f"delivery failed: no online recipient matched {req.target}"))
    return 1


@click.command()
@connection_options()
@click.option(
    "--for",
    "for_name",
    help="Only print chats addressed to this identity (connects as IDENTITY~listen-PID to see its directed chats).",
)
def listen(uri: str, name: str | None, token: str | None, token_file: Path | None, for_name: str | None) -> None:
    """Print chats (and, without --for, presence changes) until interrupted."""
    run(
        _listen(
            uri,
            name or (f"{for_name}~listen-{os.getpid()}" if for_name else one_shot("listen")),
            resolve_token(token, token_file),
            for_name,
        )
    )


async def _listen(uri: str, name: str, token: str | None, for_name: str | None) -> int:
    import asyncio
    import signal

    from ..client.connection import HubClient, HubError
    from ..protocol import addresses

    client = HubClient(uri, name, token=token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await client.connect()
        say(name, f"listening{' for ' + for_name if for_name else ''} on {uri}")
        while (frame := await client.recv_until(stop)) is not None:
            _print_frame(frame, for_name, addresses)
    except HubError as exc:
        say(name, str(exc))
        return exc.exit_code
    finally:
        await client.close()
    return 0


def _print_frame(frame: dict[str, object], for_name: str | None, addresses: object) -> None:
    ftype = frame.get("type")
    if ftype == "chat":
        target = str(frame.get("target", ""))
        if for_name and not addresses(target, for_name):  # type: ignore[operator]
            return
        click.echo(f"{frame.get('sender')}: {frame.get('payload')}")
    elif ftype == "presence_update" and not for_name:
        click.echo(f"* {frame.get('agent')} {frame.get('event')}")
