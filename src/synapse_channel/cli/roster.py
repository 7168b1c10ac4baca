"""``synapse who`` and ``synapse health``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import connection_options, one_shot, resolve_token, run, say

WAITER_SUFFIXES = ("-pane-rx", "-rx")
PRESENCE_SUFFIX = "-presence"


@click.command()
@connection_options()
@click.option("--project", help="Only show this project's agents (P and P/...).")
@click.option("--json", "as_json", is_flag=True, help="Print the hub's snapshot as JSON.")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1))
def who(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    project: str | None,
    as_json: bool,
    timeout: float,
) -> None:
    """Show who is online, their waiters and pending mailboxes."""
    run(_who(uri, name or one_shot("who"), resolve_token(token, token_file), project, as_json, timeout))


async def _who(uri: str, name: str, token: str | None, project: str | None, as_json: bool, timeout: float) -> int:
    """Every page of the roster through :meth:`synapse_channel.api.Session.who`, printed."""
    from ..api import Session, SynapseError, Timeout

    try:
        async with Session(name, uri=uri, token=token, timeout=timeout) as session:
            snap = dict((await session.who()).raw)
    except Timeout:
        click.echo("synapse: no who_snapshot from the hub before the deadline", err=True)
        return 1
    except SynapseError as exc:
        say(name, str(exc))
        return 1
    if as_json:
        click.echo(json.dumps(_filtered(snap, name, project), indent=2, sort_keys=True))
    else:
        click.echo(render_who(snap, name, project))
    return 0


def _in_project(agent: str, project: str | None) -> bool:
    if project is None:
        return True
    base = _owner(agent)
    return base in (project, project + PRESENCE_SUFFIX) or base.startswith(project + "/")


def _owner(name: str) -> str:
    for suffix in WAITER_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _filtered(snap: dict[str, Any], me: str, project: str | None) -> dict[str, Any]:
    out = dict(snap)
    out["online_agents"] = [a for a in snap.get("online_agents", []) if a != me and _in_project(a, project)]
    pending = snap.get("mailbox_pending")
    if isinstance(pending, dict):
        out["mailbox_pending"] = {k: v for k, v in pending.items() if _in_project(k, project)}
    return out


def render_who(snap: dict[str, Any], me: str, project: str | None) -> str:
    """Human text for a ``who_snapshot``."""
    snap = _filtered(snap, me, project)
    names = snap["online_agents"]
    caps = snap.get("wake_capabilities") or {}
    holders = [n for n in names if caps.get(n) == "presence"]
    agents = [n for n in names if _owner(n) == n and n not in holders]
    waiters = [n for n in names if _owner(n) != n]
    where = f" in {project}" if project else ""
    lines = [f"Online{where} ({len(agents)} agents · {len(waiters)} waiters):"]
    lines += [f"  {n}  ({caps.get(n, 'direct')} agent)" for n in agents] or ["  (none)"]
    if waiters:
        lines.append(f"Waiters ({len(waiters)}):")
        lines += [f"  {n}  (passive receiver)" for n in waiters]
    if holders:
        lines.append(f"Presence holders ({len(holders)}): " + ", ".join(holders))
    pending = snap.get("mailbox_pending")
    if not isinstance(pending, dict):
        lines.append("Mailbox pending: unavailable")
    else:
        waiting = {k: v for k, v in pending.items() if v}
        if not waiting:
            lines.append("Mailbox pending: none")
        else:
            lines.append(f"Mailbox pending ({len(waiting)} identities, {sum(waiting.values())} messages):")
            lines += [f"  {v} pending for {k}" for k, v in sorted(waiting.items())]
    return "\n".join(lines)


@click.command()
@connection_options()
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(0.1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: ok, outcome, hub_id, clients.")
def health(
    uri: str, name: str | None, token: str | None, token_file: Path | None, timeout: float, as_json: bool
) -> None:
    """Exit 0 if the hub answers with welcome, 1 if not."""
    run(_health(uri, name or one_shot("health"), resolve_token(token, token_file), timeout, as_json))


def _failure(exc: Exception) -> dict[str, Any]:
    """The ``--json`` object for a connection that failed: unreachable, or refused with the close code."""
    from ..api import Closed, Forbidden, Unreachable

    code = exc.code if isinstance(exc, Closed) else None
    if isinstance(exc, Forbidden) and exc.code == "AUTH_DENIED":
        code = 4010  # the close code the hub sent (the API names it)
    outcome = "unreachable" if isinstance(exc, Unreachable) else "refused"
    return {"ok": False, "outcome": outcome, "code": None if code is None else str(code), "error": str(exc)}


async def _health(uri: str, name: str, token: str | None, timeout: float, as_json: bool = False) -> int:
    from ..api import Closed, Forbidden, Session, SynapseError, Unreachable

    session = None
    try:
        session = Session(name, uri=uri, token=token, timeout=timeout)
        welcome = await session.connect()
        uri = session.address or uri  # with a list of hubs: the one that answered
    except SynapseError as exc:
        if as_json:
            code = exc.code if isinstance(exc, Closed) else None
            if isinstance(exc, Forbidden) and exc.code == "AUTH_DENIED":
                code = 4010  # the close code the hub sent (the API names it)
            outcome = "unreachable" if isinstance(exc, Unreachable) else "refused"
            body = {"ok": False, "outcome": outcome, "code": None if code is None else str(code), "error": str(exc)}
            click.echo(json.dumps({**body, "uri": uri}, sort_keys=True))
        else:
            click.echo(f"unhealthy: {exc}", err=True)
        return 1
    finally:
        if session is not None:
            await session.close()
    n = welcome.get("connected_clients")
    if as_json:
        body = {
            "ok": True,
            "outcome": "healthy",
            "uri": uri,
            "hub_id": welcome.get("hub_id"),
            "protocol_version": welcome.get("protocol_version"),
            "connected_clients": n,
        }
        click.echo(json.dumps(body, sort_keys=True))
        return 0
    click.echo(
        f"ok: hub {welcome.get('hub_id')} at {uri} (protocol {welcome.get('protocol_version')}, "
        f"{n} client{'' if n == 1 else 's'})"
    )
    return 0


@click.command()
@connection_options()
@click.argument("seq", type=click.IntRange(1))
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: ok, outcome (the state), seq.")
def receipt(
    uri: str, name: str | None, token: str | None, token_file: Path | None, seq: int, timeout: float, as_json: bool
) -> None:
    """Print the state of directed message SEQ: stored, delivered, acked (exit 1 if unknown)."""
    run(_receipt(uri, name or one_shot("receipt"), resolve_token(token, token_file), seq, timeout, as_json))


def _unconnected(exc: Exception, name: str, seq: int, as_json: bool) -> int:
    """Report a ``receipt`` that never reached the hub (the ``--json`` object, then the one stderr line)."""
    if as_json:
        click.echo(json.dumps({**_failure(exc), "seq": seq}, sort_keys=True))
    say(name, str(exc))
    return 1


async def _receipt(uri: str, name: str, token: str | None, seq: int, timeout: float, as_json: bool = False) -> int:
    from ..api import Refused, Session, SynapseError, Timeout

    # No request_id: a 0.99 hub does not echo it, and the reply is the only message_status on this connection.
    reply: dict[str, Any] | None = None
    session = None
    try:
        session = Session(name, uri=uri, token=token, timeout=timeout)
        frame = session.frame("message_status_request", seq=seq)
        reply = dict(await session.request(frame, lambda f: f.get("type") == "message_status"))
    except Timeout:
        reply = None
    except Refused as exc:
        if exc.frame.get("type") != "error":  # refused before any answer (a malformed URI): a failed connection
            return _unconnected(exc, name, seq, as_json)
        reply = exc.frame
    except SynapseError as exc:
        return _unconnected(exc, name, seq, as_json)
    finally:
        if session is not None:
            await session.close()
    if reply is None or reply.get("type") != "message_status":
        if as_json:
            body = {
                "ok": False,
                "outcome": "refused" if reply else "unknown",
                "code": reply.get("code") if reply else None,
                "error": str(reply.get("payload")) if reply else "no answer before the timeout",
                "seq": seq,
            }
            click.echo(json.dumps(body, sort_keys=True))
        click.echo(f"no answer: {reply.get('payload') if reply else 'timeout'}", err=True)
        return 1
    if as_json:
        fields = {k: v for k, v in reply.items() if k not in ("type", "sender", "target", "timestamp", "payload")}
        click.echo(
            json.dumps(
                {**fields, "ok": reply.get("state") != "unknown", "outcome": reply.get("state"), "seq": seq},
                sort_keys=True,
            )
        )
        return 0 if reply.get("state") != "unknown" else 1
    click.echo(f"{seq}: {reply.get('state')}")
    return 0 if reply.get("state") != "unknown" else 1
