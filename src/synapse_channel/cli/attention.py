"""The human attention queue: ``ask-human`` (an agent asks and waits) and ``attention list|answer|cancel``.

Built on :mod:`synapse_channel.api` (``Session.ask_human``, ``attention``,
``answer``). Exit codes of ``ask-human``: 0 answered (the answer on stdout),
1 refused, cancelled or unreachable, 2 no answer within ``--timeout`` (the
question stays open unless ``--cancel-on-timeout``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import connection_options, default_identity, finite, one_shot, resolve_token

if TYPE_CHECKING:
    from ..api import Question, Session

EXIT_TIMEOUT = 2
#: Longest --timeout: past a month, leave the question open and ask again later.
MAX_TIMEOUT = 30 * 86400


def _session(uri: str, name: str, token: str | None, token_file: Path | None) -> Session:
    from ..api import Refused, Session

    try:
        return Session(name, uri=uri, token=resolve_token(token, token_file))
    except Refused as exc:
        raise click.UsageError(str(exc)) from None


def _run(prog: str, go: Callable[[], Awaitable[int]], as_json: bool = False) -> None:
    """Run ``go``; an API error becomes one line on stderr (or its ``--json`` object) and its exit code."""
    import asyncio
    import sys

    from ..api import SynapseError, Timeout, Unreachable
    from . import one_line
    from .requests import emit_json

    try:
        code: int = asyncio.run(_main(go))
    except SynapseError as exc:
        if as_json:
            outcome = (
                "unreachable" if isinstance(exc, Unreachable) else "unknown" if isinstance(exc, Timeout) else "refused"
            )
            emit_json({"ok": False, "outcome": outcome, "code": getattr(exc, "code", None), "error": str(exc)})
        else:
            click.echo(f"synapse {prog}: {one_line(str(exc))}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


async def _main(go: Callable[[], Awaitable[int]]) -> int:
    return await go()


def _choices(value: str | None) -> list[str]:
    if value is None:
        return []
    choices = [c.strip() for c in value.split(",") if c.strip()]
    if not choices:
        raise click.BadParameter("give the choices separated by commas, e.g. --choices yes,no")
    return choices


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    value = finite(ctx, param, value)
    if value is not None and not 0 < value <= MAX_TIMEOUT:
        raise click.BadParameter(f"{value:g} is not a number of seconds between 0 and {MAX_TIMEOUT} (30 days)")
    return value


@click.command("ask-human")
@connection_options(name_help="Who asks (PROJECT/SEAT); default SYN_IDENTITY or synapse.toml.")
@click.option("--choices", help="Allowed answers, comma-separated (e.g. yes,no,later).")
@click.option("--timeout", type=float, callback=_positive, help="Give up after S seconds (exit 2). Default: wait.")
@click.option("--cancel-on-timeout", is_flag=True, help="On timeout close the question (expired), not leave it open.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: ok, outcome, the question (with answer).")
@click.argument("question")
def ask_human(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    choices: str | None,
    timeout: float | None,
    cancel_on_timeout: bool,
    as_json: bool,
    question: str,
) -> None:
    """Ask a person QUESTION and wait; print the answer and exit 0.

    The answer also lands in your mailbox, so a `synapse wait` wakes with it.
    """
    from ..protocol import one_shot_name

    who = name or default_identity()
    if not who:
        raise click.UsageError("say who asks: --name PROJECT/SEAT (or set SYN_IDENTITY)")
    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    listed = _choices(choices)
    session = _session(uri, one_shot_name("ask", who, os.getpid()), token, token_file)

    async def go() -> int:
        import sys

        from ..api import Timeout
        from .requests import emit_json

        async with session:
            filed = await session.file_question(question, choices=listed)
            if sys.stderr.isatty():  # for a person watching; scripts read the id from `attention list`
                click.echo(f"asked {filed.id}; waiting for an answer (attention answer {filed.id} TEXT)", err=True)
            try:
                closed = await session.await_answer(filed.id, timeout=timeout, cancel_on_timeout=cancel_on_timeout)
            except Timeout:
                left = "closed as expired" if cancel_on_timeout else "still open"
                if as_json:
                    emit_json(
                        {"ok": False, "outcome": "timeout", "code": None, "id": filed.id, "open": not cancel_on_timeout}
                    )
                else:
                    click.echo(
                        f"synapse ask-human: no answer to {filed.id} within {timeout:g}s; it is {left}", err=True
                    )
                return EXIT_TIMEOUT
        answered = closed.status == "answered"
        if as_json:
            emit_json(
                {
                    "ok": answered,
                    "outcome": closed.status,
                    "code": None,
                    "answer": closed.answer,
                    "question": dict(closed.raw),
                }
            )
        elif not answered:
            by = closed.raw.get("closed_by") or "someone"
            click.echo(f"synapse ask-human: {closed.id} was {closed.status} by {by}", err=True)
        else:
            click.echo(closed.answer)
        return 0 if answered else 1

    _run("ask-human", go, as_json)


@click.group()
def attention() -> None:
    """The human attention queue: questions agents asked with ask-human."""


def _line(q: Question) -> str:
    choices = f"  [choices: {', '.join(q.choices)}]" if q.choices else ""
    head = f"{q.id}  {q.status:<9} {q.asker}: {q.text}{choices}"
    if q.answer is not None:
        head += f"\n      -> {q.answer} (by {q.answered_by})"
    return head


@attention.command("list")
@connection_options()
@click.option("--all", "show_all", is_flag=True, help="Also show recently answered, cancelled and expired ones.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of questions.")
def list_questions(
    uri: str, name: str | None, token: str | None, token_file: Path | None, show_all: bool, as_json: bool
) -> None:
    """List open questions (oldest first)."""
    session = _session(uri, name or one_shot("attention"), token, token_file)

    async def go() -> int:
        async with session:
            questions = await session.attention(status="all" if show_all else "open")
        if as_json:
            click.echo(json.dumps([dict(q.raw) for q in questions], indent=2, sort_keys=True))
        elif not questions:
            click.echo("no open questions" if not show_all else "no questions")
        else:
            for q in questions:
                click.echo(_line(q))
        return 0

    _run("attention list", go)


@attention.command()
@connection_options()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: ok, outcome, the question.")
@click.argument("question_id")
@click.argument("text", nargs=-1, required=True)
def answer(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    as_json: bool,
    question_id: str,
    text: tuple[str, ...],
) -> None:
    """Answer QUESTION_ID with TEXT; the asker wakes with it."""
    reply = " ".join(text)
    if not reply.strip():
        raise click.BadParameter("the answer is empty", param_hint="TEXT")
    session = _session(uri, name or one_shot("attention"), token, token_file)

    async def go() -> int:
        from .requests import emit_json

        async with session:
            done = await session.answer(question_id, reply)
        if as_json:
            emit_json({"ok": True, "outcome": done.status, "code": None, "question": dict(done.raw)})
        else:
            click.echo(f"answered {done.id} for {done.asker}: {done.answer}")
        return 0

    _run("attention answer", go, as_json)


@attention.command()
@connection_options()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: ok, outcome, the question.")
@click.argument("question_id")
def cancel(
    uri: str, name: str | None, token: str | None, token_file: Path | None, as_json: bool, question_id: str
) -> None:
    """Close QUESTION_ID unanswered (its asker, or whoever may answer it)."""
    session = _session(uri, name or one_shot("attention"), token, token_file)

    async def go() -> int:
        from .requests import emit_json

        async with session:
            done = await session.cancel_question(question_id)
        if as_json:
            emit_json({"ok": True, "outcome": done.status, "code": None, "question": dict(done.raw)})
        else:
            click.echo(f"cancelled {done.id} ({done.asker}: {done.text})")
        return 0

    _run("attention cancel", go, as_json)
