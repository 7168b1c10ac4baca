"""Who may do what: the one place the hub's authorization rules live.

Every connection reaches the core carrying its :class:`Grant` (the seat it
authenticated with, or none on an open or shared-token hub) and, once
registered, its bound name. The handlers ask this module, so every door (wire
verb, later HTTP routes and MCP tools) shares the same rules:

* a connection speaks for its registered base identity and nothing else
  (:func:`speaks_for`);
* a seat may register only the names it owns (:func:`seat_allows_name`);
* an observer seat reads and never writes (:func:`verb_allowed`);
* an admin seat may act for anyone;
* a question for a human is answered by a person (:func:`may_answer`).

Pure functions over plain data: nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from ..protocol import addresses, base_identity, is_fleet_wide

if TYPE_CHECKING:
    from .roster import Conn

AGENT = "agent"
OBSERVER = "observer"
ADMIN = "admin"
SEAT_ROLES = (AGENT, OBSERVER, ADMIN)

#: Verbs an observer may use: reads, keepalives and acking its own mail.
READ_VERBS = frozenset(
    {
        "heartbeat",
        "who_request",
        "history_request",
        "resume_request",
        "state_request",
        "claim_check",
        "board_request",
        "message_status_request",
        "attention_request",
        "dashboard_login_request",
        "search_request",
        "ack",
    }
)

#: The project whose seats are people: their seats may answer ``ask-human`` questions.
OPERATOR_PROJECT = "human"

FORBIDDEN = "FORBIDDEN"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a seat credential grants: its name, role and the identities it owns.

    ``key_id`` identifies the secret in use, so rotating a seat can drop the
    sockets that authenticated with the old one.
    """

    seat: str
    role: str = AGENT
    patterns: tuple[str, ...] = ()
    key_id: str = ""

    @property
    def is_admin(self) -> bool:
        """Admins may act for any identity."""
        return self.role == ADMIN

    def owns(self, identity: str) -> bool:
        """Does this seat own ``identity`` (its own name or one its patterns allow)?"""
        if self.is_admin or identity == self.seat:
            return True
        return any(fnmatchcase(identity, p) for p in self.patterns)

    def public(self) -> dict[str, Any]:
        """The grant as shown to its holder and in the audit log (no secret)."""
        return {"seat": self.seat, "role": self.role, "names": list(self.patterns)}


def seat_allows_name(grant: Grant | None, name: str) -> bool:
    """May a connection with ``grant`` register ``name``? (No grant: open rules.)"""
    return grant is None or grant.owns(base_identity(name))


def is_admin(conn: Conn) -> bool:
    """True for a connection authenticated with an admin seat."""
    return conn.grant is not None and conn.grant.is_admin


def verb_allowed(conn: Conn, verb: str) -> bool:
    """Observers may only read; agents, admins and open connections may use any verb."""
    return conn.grant is None or conn.grant.role != OBSERVER or verb in READ_VERBS


def speaks_for(conn: Conn, identity: str) -> bool:
    """May ``conn`` read or change ``identity``'s mailbox? Its own identity, or any for an admin."""
    if conn.name is None:
        return False
    return is_admin(conn) or base_identity(conn.name) == identity


def may_see(conn: Conn, frame: dict[str, Any]) -> bool:
    """May ``conn`` see this chat in history or a resume?

    Fleet-wide chats are public; any other chat (globs included) is visible
    to its sender, to the identities (and granted roles) it addresses, and
    to admins.
    """
    return may_see_as(conn.name, conn.roles, is_admin(conn), frame)


def may_see_as(name: str | None, roles: tuple[str, ...], admin: bool, frame: dict[str, Any]) -> bool:
    """:func:`may_see` for a connection given by its parts (search runs it in a worker thread)."""
    target = frame.get("target", "")
    if not isinstance(target, str) or is_fleet_wide(target) or admin:
        return True
    if name is None:
        return False
    me = base_identity(name)
    sender = frame.get("sender")
    if isinstance(sender, str) and base_identity(sender) == me:
        return True
    return addresses(target, me, roles)


def may_answer(conn: Conn, asker: str) -> str | None:
    """Why ``conn`` may not answer a question ``asker`` filed (None: it may).

    Nobody answers their own question: the point is a second opinion. On a
    hub with seats the answer must come from a person: an admin seat or a
    seat of the ``human`` project (``synapse seat add human/ana``); agent
    seats may not, observers never write. A connection without a seat (the
    open loopback hub's local user, or a shared-token holder, who can
    already act as anyone) may answer.
    """
    me = base_identity(conn.name or "")
    if me == asker:
        return f"{asker!r} may not answer its own question; a person must"
    grant = conn.grant
    if grant is None or grant.is_admin:
        return None
    if grant.role == OBSERVER:
        return "an observer seat may not answer questions"
    if grant.seat.split("/", 1)[0] == OPERATOR_PROJECT:
        return None
    return (
        f"seat {grant.seat!r} is an agent seat; a person answers: an admin seat "
        f"or a seat of project {OPERATOR_PROJECT!r} (synapse seat add {OPERATOR_PROJECT}/NAME)"
    )
