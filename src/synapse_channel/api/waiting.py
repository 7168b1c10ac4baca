""":func:`wait`: block until mail for an identity arrives (the ``synapse wait`` loop, as a call).

It shares ``synapse wait``'s mailbox cursor file for the identity, so a
message is surfaced once whichever of the two waited for it, across hub
restarts too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import SynapseError
from .types import Message


async def wait(
    name: str | None = None,
    *,
    uri: str | None = None,
    token: str | None = None,
    token_file: Path | None = None,
    timeout: float = 60.0,
    directed_only: bool = False,
    roles: Iterable[str] = (),
    ack: bool = True,
    plugins: Any = None,
    receiver: str | None = None,
    cursor: Path | None = None,
) -> tuple[Message, ...]:
    """Wait up to ``timeout`` seconds (0: forever, riding out hub restarts) for messages to ``name``.

    ``uri`` may list several hubs of one failover group (``ws://h1:8876,ws://h2:8876``):
    a dropped connection re-arms on the next that answers, from the same
    mailbox cursor, so a message is neither lost nor returned twice.

    Returns the messages that woke it, oldest first (several when they came
    together), or ``()`` on timeout. With ``ack`` (the default) the
    identity's mailbox is acknowledged through them, so the hub will not
    offer them again; ``ack=False`` only looks (like the tmux bridge).
    ``plugins`` is a plugin manager whose wake hooks (``wake_delay``, ...)
    should run, as ``synapse wait`` does.

    A bystander that watches someone else's mail (a pane bridge) passes
    ``ack=False``, its own ``cursor`` file and its own ``receiver``
    connection name (default ``NAME-rx``, the name ``synapse wait`` uses;
    the hub lets one receiver per name live, so two waits under one
    receiver name take each other over: the older raises
    :class:`~synapse_channel.api.Superseded`).
    """
    from ..client import context
    from ..client.connection import EXIT_OK, EXIT_TIMEOUT
    from ..client.waiter import Waiter, WaitSpec
    from ..paths import mailbox_cursor_path
    from ..protocol import name_problem, owner_of
    from .errors import Refused
    from .session import checked_addresses, translate

    who = name or context.default_identity()
    if not who:
        raise Refused("say who to wait for: pass a name (or set SYN_IDENTITY)", "NAME_REQUIRED")
    for_name = owner_of(who)
    if problem := name_problem(for_name):
        raise Refused(f"cannot wait as {for_name!r}: {problem}", "BAD_NAME")
    try:
        secret = context.resolve_token(token, token_file)
    except context.TokenFileError as exc:
        raise Refused(str(exc), "TOKEN_FILE") from None
    got: list[dict[str, Any]] = []
    spec = WaitSpec(
        uri=checked_addresses(uri or context.default_uri()),
        for_name=for_name,
        connect_name=receiver or f"{for_name}-rx",
        token=secret,
        timeout=timeout,
        directed_only=directed_only,
        jitter=0.0,
        roles=tuple(roles),
        cursor_path=cursor if cursor is not None else mailbox_cursor_path(for_name),
        pm=plugins,
        ack=ack,
        quiet=True,
    )
    waiter = Waiter(spec, output=got.extend)
    code = await waiter.run()
    if code == EXIT_OK:
        return tuple(Message.of(f) for f in got)
    if code == EXIT_TIMEOUT:
        return ()
    if waiter.error is not None:
        raise translate(waiter.error)
    raise SynapseError(f"wait ended with exit code {code}")
