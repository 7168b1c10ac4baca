"""``synapse wait``: block until a message arrives, then exit so the agent wakes."""

from __future__ import annotations

from pathlib import Path

import click

from .common import connection_options, default_identity, finite, resolve_token, run


@click.command()
@connection_options()
@click.option("--for", "for_name", help="Wake for this identity (default: --name); connects as --name.")
@click.option(
    "--timeout",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    callback=finite,
    help="Seconds before giving up (exit 2); 0 waits forever and re-arms across hub restarts.",
)
@click.option(
    "--directed-only/--broadcasts",
    default=None,
    help="Ignore plain broadcasts (priority and CEO messages still wake). Default: [wake] directed_only.",
)
@click.option(
    "--wake-jitter",
    type=click.FloatRange(0),
    callback=finite,
    help="Spread one-to-many wakes over this many seconds (default: [wake] jitter, 8); directed wakes are immediate.",
)
@click.option("--role", "roles", multiple=True, help="Also wake for messages to this role (P/R); repeatable.")
@click.option("--no-mailbox", is_flag=True, help="Do not replay directed messages missed since the last wait.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object: {"ok", "outcome": woken|timeout|..., "messages"}; exit codes unchanged.',
)
def wait(
    uri: str,
    name: str | None,
    token: str | None,
    token_file: Path | None,
    for_name: str | None,
    timeout: float,
    directed_only: bool | None,
    wake_jitter: float | None,
    roles: tuple[str, ...],
    no_mailbox: bool,
    as_json: bool,
) -> None:
    """Wait for a message to NAME and print it as 'sender: payload'.

    Exit 0 woken, 1 unreachable or refused, 2 timeout, 3 connection dropped
    (re-arm), 4 superseded by a newer waiter (yield).
    """
    from ..client.waiter import Waiter, WaitSpec
    from ..paths import mailbox_cursor_path
    from ..protocol import owner_of
    from .common import settings

    cfg = settings()
    directed_only = bool(cfg.get("wake.directed_only")) if directed_only is None else directed_only
    wake_jitter = float(cfg.get("wake.jitter")) if wake_jitter is None else wake_jitter
    name = name or default_identity()
    if not name and not for_name:
        raise click.UsageError("say who to wait for: --name NAME (or set SYN_IDENTITY)")
    if for_name:
        connect_name = name or f"{for_name}-rx"
    else:
        assert name is not None
        for_name = owner_of(name)
        connect_name = f"{for_name}-rx"
    _check_names(for_name, connect_name)
    spec = WaitSpec(
        uri=uri,
        for_name=for_name,
        connect_name=connect_name,
        token=resolve_token(token, token_file),
        timeout=timeout,
        directed_only=directed_only,
        jitter=wake_jitter,
        roles=roles,
        mailbox=not no_mailbox,
        cursor_path=None if no_mailbox else mailbox_cursor_path(for_name),
        pm=_plugins(),
        as_json=as_json,
    )
    waiter = Waiter(spec)
    run(_wait(waiter) if as_json else waiter.run())


#: ``--json`` outcome for each exit code of ``synapse wait`` other than 0 (which prints the wake itself).
WAIT_OUTCOMES = {1: "refused", 2: "timeout", 3: "dropped", 4: "superseded"}


async def _wait(waiter: object) -> int:
    """Run the waiter; for an exit other than a wake, print its one JSON object."""
    import json

    from ..client.waiter import Waiter

    assert isinstance(waiter, Waiter)
    code = await waiter.run()
    if code != 0:
        outcome = "unreachable" if code == 1 and waiter.last_unreachable else WAIT_OUTCOMES.get(code, "error")
        body = {"ok": False, "outcome": outcome, "code": None, "error": waiter.last_error or outcome}
        click.echo(json.dumps(body, sort_keys=True))
    return code


def _check_names(*names: str) -> None:
    """Refuse a name the hub would refuse, before any file under $SYN_HOME is named after it.

    The mailbox cursor file is named after the identity, so ``..`` or ``/``
    would otherwise point it at a directory. Exit 1, as the hub's refusal does.
    """
    from ..protocol import name_problem

    for name in names:
        problem = name_problem(name)
        if problem is not None:
            raise click.ClickException(f"cannot wait as {name!r}: {problem}")


def _plugins() -> object:
    from .common import runtime

    return runtime()[1]
