"""``who_request``: the roster and pending mail, within the frame budget.

The common answer is one frame: its roster fields are encoded as usual and
``mailbox_pending`` is spliced in from the mailbox's running, pre-encoded
counts, so a ``who`` over 10k names with mail costs a string join, not a
recount. When the whole answer would pass ``max_frame_bytes`` (tens of
thousands of names), it is paged by name: each page carries the names in
``(after, cursor]`` (sorted) in every list and map, with ``has_more`` and
``cursor``; ask again with ``after = cursor``. A 0.99 client reads the first
page as the whole answer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..protocol import Command, encode, owner_of
from . import paging
from .pending import encode_key

if TYPE_CHECKING:
    from .hubcore import HubCore
    from .outcome import Outcome
    from .roster import Conn

#: The name-keyed maps of a ``who_snapshot`` (``online_agents`` is the name list).
MAPS = ("agent_roles", "agent_liveness", "wake_capabilities", "mailbox_pending")


def handle_who(core: HubCore, conn: Conn, cmd: Command, now: float, out: Outcome) -> None:
    roster = core.roster
    identities = {owner_of(c.name) for c in roster.named() if c.name}
    after = paging.after_field(cmd.raw)
    frame = core.frame(
        "who_snapshot",
        conn.name or "self",
        "Who snapshot",
        now,
        online_agents=roster.online(),
        agent_roles=roster.roles(),
        connected_clients=len(roster.conns),
        hub_version=__version__,
        agent_liveness=roster.liveness(now),
        wake_capabilities=roster.wake_capabilities(),
        delivery_sessions={},
    )
    budget = core.max_frame_bytes
    if after is None:
        base = encode(frame)
        if len(base) < budget:  # else the roster alone is over the budget: page it without trying
            wire = base[:-1] + ',"mailbox_pending":' + core.mailbox.pending_json(identities) + "}"
            if len(wire) * 4 <= budget or len(wire.encode()) <= budget:
                out.send(conn.conn_id, frame, encoded=wire)  # the wire text is the reply; the dict lacks the counts
                return
    frame["mailbox_pending"] = core.mailbox.pending_counts(identities)
    out.send(conn.conn_id, page_of(frame, after, budget))


def page_of(frame: dict[str, Any], after: str | None, budget: int) -> dict[str, Any]:
    """The names after ``after`` that fit ``budget``, in every list and map of ``frame``.

    At least one name is always included, so paging always advances.
    """
    online = set(frame["online_agents"])
    maps = {key: frame[key] for key in MAPS}
    names = sorted({*online, *(n for m in maps.values() for n in m)})
    if after is not None:
        names = [n for n in names if n > after]
    shell = {**frame, "online_agents": [], **{key: {} for key in MAPS}}
    room = paging.room_for(shell, budget)
    used, page = 0, list[str]()
    for name in names:
        size = len(encode_key(name).encode())
        cost = size + 1 if name in online else 0
        cost += sum(size + 2 + _value_size(m[name]) for m in maps.values() if name in m)
        if page and used + cost > room:
            break
        page.append(name)
        used += cost
    shell["online_agents"] = [n for n in page if n in online]
    for field, values in maps.items():
        shell[field] = {n: values[n] for n in page if n in values}
    if len(page) < len(names):
        shell.update(has_more=True, cursor=page[-1])
    return shell


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _value_size(value: Any) -> int:
    """Encoded UTF-8 size of one map value; counts and capabilities skip the encoder (10k names per page)."""
    if isinstance(value, int):
        return len(str(value))
    if isinstance(value, str):
        return len(encode_key(value).encode())
    return len(_ENCODE(value).encode())
