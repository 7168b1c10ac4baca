"""``synapse search``: full-text search of the hub's chats, tasks and notes.

The request/reply logic is :meth:`synapse_channel.api.Session.search` (one
connection, every page followed until ``--limit`` results or the last page);
this module only maps its failures to exit codes and prints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from .common import connection_options, one_shot, resolve_token
from .requests import Caller, Verdict, run_request, verdict_of

_CONTROL = dict.fromkeys(range(32), " ")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Said after a query FTS5 refused: how to write what was probably meant.
SYNTAX_HINT = "put words with punctuation in double quotes, e.g. synapse search '\"foo-bar\" OR baz'"


def parse_since(value: str, now: float) -> float:
    """``30m``, ``2h``, ``7d``, ``1w`` ago, or an ISO 8601 time (local time when no offset), as epoch seconds."""
    from datetime import datetime

    m = _DURATION.match(value)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise click.BadParameter(
            f"{value!r} is neither a duration (30m, 2h, 7d) nor an ISO time (2026-12-04T09:00)", param_hint="'--since'"
        ) from None


async def search_pages(
    who: Caller,
    query: str,
    *,
    sender: str | None = None,
    target: str | None = None,
    since: float | None = None,
    limit: int = 20,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """:meth:`Session.search` on one connection, up to ``limit`` results; the hub's result objects, newest first.

    Raises :class:`Verdict` for a refusal (bad query syntax, a bad field) or
    an unreachable hub (1), or no answer in time (3).
    """
    from ..api import Refused, Session, SynapseError

    try:
        async with Session(who.name, uri=who.uri, token=who.token, timeout=timeout) as session:
            page = await session.search(query, sender=sender, to=target, since=since, limit=limit)
    except Refused as exc:
        hint = f" ({SYNTAX_HINT})" if exc.code == "BAD_QUERY" else ""
        raise Verdict(f"{exc}{hint}", 1, reason=exc.code or None) from None
    except SynapseError as exc:
        raise verdict_of(who, exc) from None
    return [dict(hit.raw) for hit in page.hits]


def render(result: dict[str, Any]) -> str:
    """``[local time] sender -> target (kind): snippet`` on one line."""
    import time

    ts = result.get("ts", 0)
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError, OSError):
        when = "?"
    kind = result.get("kind", "")
    label = f"task {result.get('task_id')}" if kind in ("task", "note") else kind
    text = result.get("snippet") or result.get("text") or ""
    if not isinstance(text, str):
        text = json.dumps(text, separators=(",", ":"))
    if len(text) > 200:
        text = text[:197] + "..."
    line = f"[{when}] {result.get('from')} -> {result.get('to')} ({label}): {text}"
    return line.translate(_CONTROL)


@click.command()
@connection_options()
@click.option("--from", "sender", help="Only what this identity sent (or created, for tasks).")
@click.option("--to", "target", help="Only chats to this target (an identity, project, role or 'all').")
@click.option("--since", help="Only newer than a duration ago (30m, 2h, 7d) or an ISO time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Results at most.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result (a failure: one, ok false).")
@click.argument("query")
def search(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    sender: str | None,
    target: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    query: str,
) -> None:
    """Search chats, board tasks and notes you may see (QUERY in SQLite FTS5 syntax), newest first.

    Words match whole tokens (``parser`` finds "the parser"), ``pars*`` a
    prefix, ``"exact phrase"`` a phrase; combine with AND, OR, NOT.
    Exit 0 with results or none, 1 on a bad query or an unreachable hub.
    """
    import time

    if not query.strip():
        raise click.BadParameter("the query is empty", param_hint="'QUERY'")
    after = parse_since(since, time.time()) if since else None
    who = Caller(uri, name or one_shot("search"), resolve_token(token, token_file))

    async def go() -> int:
        results = await search_pages(who, query, sender=sender or None, target=target or None, since=after, limit=limit)
        if as_json:
            for r in results:
                click.echo(json.dumps(r, separators=(",", ":"), ensure_ascii=False))
        elif not results:
            click.echo("no matches")
        else:
            for r in results:
                click.echo(render(r))
        return 0

    run_request(go(), as_json)
